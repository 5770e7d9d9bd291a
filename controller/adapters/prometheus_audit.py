"""A Prometheus counter of audit events by action, e.g. audit_events_total{action=...}.

The user's query is evaluated at explicit times: at the end of the canary
window, the same instant on each previous day (the seasonal baseline), and at
the window's start over the whole history (which actions were seen before).
A day whose answer is empty is a day the counter did not exist yet: it does
not count towards the baseline.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from controller.adapters.ports import (
    AuditLogRejected,
    AuditLogUnreachable,
    MetricsUnreachable,
    QueryRejected,
)
from controller.adapters.prometheus import PrometheusSource
from controller.api.auditlog import PrometheusAuditLog
from controller.auditlog.samples import DAY, AuditPlan, AuditSample
from controller.engine.queries import render_query


class PrometheusAuditCounter:
    def __init__(
        self,
        source: PrometheusSource,
        config: PrometheusAuditLog,
        *,
        namespace: str,
        name: str,
        target: str,
    ) -> None:
        self._source = source
        self._config = config
        self._namespace, self._name, self._target = namespace, name, target

    def fetch(self, plan: AuditPlan) -> AuditSample:
        try:
            return self._fetch(plan)
        except MetricsUnreachable as exc:
            raise AuditLogUnreachable(str(exc)) from exc
        except QueryRejected as exc:
            raise AuditLogRejected(str(exc)) from exc

    def _fetch(self, plan: AuditPlan) -> AuditSample:
        window = plan.end - plan.start
        history = plan.baseline_days * DAY
        if plan.by_track:
            canary = self._by_action("canary", window, plan.end)
            stable = self._by_action("stable", window, plan.end)
            seen = self._seen("canary", history, plan.start) | self._seen(
                "stable", history, plan.start
            )
            return AuditSample(canary=canary, stable=stable, seen_before=seen)
        canary = self._by_action("", window, plan.end)
        days = []
        for back in range(1, plan.baseline_days + 1):
            day = self._by_action("", window, plan.end - back * DAY)
            if not day:
                break  # the counter did not exist yet
            days.append(day)
        seen = self._seen("", history, plan.start)
        return AuditSample(canary=canary, baseline=tuple(days), seen_before=seen)

    def _by_action(self, track: str, window: timedelta, at: datetime) -> dict[str, float]:
        promql = render_query(
            self._config.query,
            track=track,
            namespace=self._namespace,
            name=self._name,
            target=self._target,
            window=window,
            interval=window,
        )
        label = self._config.action_label
        counts: dict[str, float] = {}
        for labels, value in self._source.query_vector(promql, at):
            if label not in labels:
                raise QueryRejected(
                    f"audit query returned a series without the {label!r} label: {labels}; "
                    f"use sum by ({label}) (...)"
                )
            if math.isinf(value):
                raise QueryRejected(f"audit query returned {value} for {labels[label]!r}")
            if value == value:  # not NaN
                counts[labels[label]] = counts.get(labels[label], 0.0) + value
        return counts

    def _seen(self, track: str, history: timedelta, at: datetime) -> frozenset[str]:
        return frozenset(a for a, v in self._by_action(track, history, at).items() if v > 0)
