"""Showing a replay: a rich table of analyses, then the verdict in one line."""

from __future__ import annotations

from datetime import datetime, timedelta

from rich.console import Console
from rich.table import Table
from rich.text import Text

from controller.api.durations import format_duration
from controller.api.status import MetricResult
from controller.replay.replaying import Look, Timeline

STYLES = {"pass": "green", "fail": "bold red", "inconclusive": "yellow", "error": "magenta"}


def render(timeline: Timeline, console: Console, *, every_look: bool = False) -> None:
    """The table shows each change of verdict (every look with `every_look`)."""
    title = f"replay of {timeline.namespace}/{timeline.name} from {_clock(timeline.start)}"
    console.print(_table(title, timeline.looks, timeline.start, every_look))
    if timeline.watch:
        title = f"watch after promotion of {timeline.final.stable_tag or 'the release'}"
        console.print(_table(title, timeline.watch, timeline.start, every_look))
    console.print(summary(timeline))


def _table(title: str, looks: list[Look], start: datetime, every_look: bool) -> Table:
    names = [m.name for m in looks[0].metrics] if looks else []
    audited = any(look.audit is not None for look in looks)
    table = Table(title=title, show_lines=False)
    for column in ("time", "+", "phase"):
        table.add_column(column)
    table.add_column("step", justify="right")
    table.add_column("weight", justify="right")
    for name in names:
        table.add_column(name, overflow="fold", max_width=70)
    if audited:
        table.add_column("audit log", overflow="fold", max_width=70)
    previous: tuple[str | None, ...] | None = None
    for index, look in enumerate(looks):
        verdicts = (*(m.verdict for m in look.metrics), look.phase, _verdict(look.audit))
        last = index == len(looks) - 1
        if not every_look and verdicts == previous and not last:
            continue
        previous = verdicts
        audit = [_audit_cell(look.audit)] if audited else []
        table.add_row(
            _clock(look.at),
            _since(look.at - start),
            look.phase,
            "-" if look.step is None else str(look.step + 1),
            f"{look.weight}%",
            *(_cell(m) for m in look.metrics),
            *audit,
        )
    return table


def summary(timeline: Timeline) -> Text:
    final, at = timeline.final, timeline.decided_at
    when = f" at {_clock(at)} (+{_since(at - timeline.start)})" if at else ""
    if timeline.problem is not None:
        return Text(f"could not judge: {timeline.problem}", "bold magenta")
    if timeline.outcome == "RolledBack":
        return Text(f"would have rolled back{when}: {final.reason}: {final.message}", "bold red")
    if timeline.outcome == "Succeeded" and timeline.watch:
        return Text(f"would have promoted, and passed the watch after it{when}", "bold green")
    if timeline.outcome == "Succeeded":
        return Text(f"would have promoted{when}", "bold green")
    if timeline.outcome == "Failed":
        return Text(f"failed{when}: {final.message}", "bold magenta")
    return Text(
        f"no decision by {_clock(timeline.end)}: {final.phase}; {final.message or ''}", "yellow"
    )


def _verdict(audit: str | None) -> str | None:
    return audit.split(" ", 1)[0] if audit else None


def _audit_cell(audit: str | None) -> Text:
    if audit is None:
        return Text("")
    verdict, _, reason = audit.partition(" ")
    text = Text(verdict, STYLES.get(verdict, ""))
    text.append(f" {reason}", "dim")
    return text


def _cell(metric: MetricResult) -> Text:
    text = Text(metric.verdict, STYLES.get(metric.verdict, ""))
    text.append(f" {metric.reason}", "dim")
    return text


def _clock(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S")


def _since(delta: timedelta) -> str:
    return format_duration(delta)
