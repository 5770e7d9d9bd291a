"""Audit-log detector over simulated 24-hour canaries: false rollbacks and time to detect.

Simulates the counts a provider would return (Poisson events per action, per
5-minute analysis interval) and runs the real `detect` at every look, as the
controller does. Two settings:

* track: canary (10% of pods) against stable over the step, 20 actions.
* seasonal: all events against the same hours of 7 previous days, 20 actions,
  with a +-80% daily swing (the baseline days see the same swing).

Reports the share of no-change runs that would have rolled back at any of the
288 looks, and for an injected rise of one sensitive action the share detected
and the median / 90th-percentile time to detect.

    python -m bench.auditlog.run --runs 200 --out bench/results/auditlog.json
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
from datetime import UTC, datetime, timedelta

import numpy as np

from controller.api.auditlog import AuditLog
from controller.auditlog import AuditPlan, AuditSample
from controller.auditlog.detection import detect

LOOK = timedelta(minutes=5)
LOOKS = 288  # 24 hours
ACTIONS = 20
START = datetime(2026, 1, 5, tzinfo=UTC)
CONFIG = AuditLog.model_validate({"sql": {"secretRef": {"name": "db", "key": "dsn"}}})


def _rates(rng: np.random.Generator) -> dict[str, float]:
    """Events per minute over all pods: a few busy actions, many rare ones."""
    names = [f"action.{i}" for i in range(ACTIONS - 1)] + ["user.delete"]
    per_min = np.exp(rng.uniform(math.log(0.02), math.log(20), ACTIONS))
    per_min[-1] = 0.5
    return dict(zip(names, per_min, strict=True))


def _swing(minute: float) -> float:
    return 1 + 0.8 * math.sin(2 * math.pi * minute / 1440)


def _run_track(rng: np.random.Generator, effect: float, onset: int) -> int | None:
    rates, share = _rates(rng), 0.1
    canary = dict.fromkeys(rates, 0.0)
    stable = dict.fromkeys(rates, 0.0)
    plan = AuditPlan(START, START, by_track=True, baseline_days=7)
    for look in range(1, LOOKS + 1):
        for action, rate in rates.items():
            boost = effect if action == "user.delete" and look > onset else 1.0
            canary[action] += rng.poisson(rate * share * boost * 5)
            stable[action] += rng.poisson(rate * (1 - share) * 5)
        now = START + look * LOOK
        sample = AuditSample(canary=canary, stable=stable, seen_before=frozenset(rates))
        report = detect(CONFIG, plan, sample, canary_share=share, now=now)
        if report.verdict == "fail":
            return look
    return None


def _run_seasonal(rng: np.random.Generator, effect: float, onset: int) -> int | None:
    rates, days = _rates(rng), 7
    canary = dict.fromkeys(rates, 0.0)
    baseline = [dict.fromkeys(rates, 0.0) for _ in range(days)]
    plan = AuditPlan(START, START, by_track=False, baseline_days=days)
    for look in range(1, LOOKS + 1):
        swing = _swing(look * 5)
        for action, rate in rates.items():
            boost = effect if action == "user.delete" and look > onset else 1.0
            canary[action] += rng.poisson(rate * swing * 5 * (1 + 0.1 * (boost - 1)))
            for day in baseline:
                day[action] += rng.poisson(rate * swing * 5)
        now = START + look * LOOK
        sample = AuditSample(canary=canary, baseline=tuple(baseline), seen_before=frozenset(rates))
        report = detect(CONFIG, plan, sample, canary_share=None, now=now)
        if report.verdict == "fail":
            return look
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--out", type=pathlib.Path, default=None)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(4)
    records = []
    onset = 24  # two hours into the canary
    for comparison, simulate in (("track", _run_track), ("seasonal", _run_seasonal)):
        for effect in (1.0, 3.0, 10.0):
            hits = [simulate(rng, effect, onset) for _ in range(args.runs)]
            detected = [h for h in hits if h is not None]
            delays = [(h - onset) * 5 for h in detected if h > onset and effect != 1.0]
            record = {
                "comparison": comparison,
                "effect": "none" if effect == 1.0 else f"user.delete_x{effect:g}",
                "runs": args.runs,
                "rollback_rate": len(detected) / args.runs,
                "ttd_median_min": float(np.median(delays)) if delays else None,
                "ttd_p90_min": float(np.percentile(delays, 90)) if delays else None,
            }
            records.append(record)
            print(json.dumps(record))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(records, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
