"""Showing a replay: a rich table of analyses, then the verdict in one line."""

from __future__ import annotations

from datetime import datetime, timedelta

from rich.console import Console
from rich.table import Table
from rich.text import Text

from controller.api.durations import format_duration
from controller.api.status import MetricResult
from controller.replay.replaying import Timeline

STYLES = {"pass": "green", "fail": "bold red", "inconclusive": "yellow", "error": "magenta"}


def render(timeline: Timeline, console: Console, *, every_look: bool = False) -> None:
    """The table shows each change of verdict (every look with `every_look`)."""
    names = [m.name for m in timeline.looks[0].metrics] if timeline.looks else []
    table = Table(
        title=f"replay of {timeline.namespace}/{timeline.name} from {_clock(timeline.start)}",
        show_lines=False,
    )
    table.add_column("time")
    table.add_column("+")
    table.add_column("phase")
    table.add_column("step", justify="right")
    table.add_column("weight", justify="right")
    for name in names:
        table.add_column(name, overflow="fold", max_width=70)
    previous: tuple[str, ...] | None = None
    for index, look in enumerate(timeline.looks):
        verdicts = (*(m.verdict for m in look.metrics), look.phase)
        last = index == len(timeline.looks) - 1
        if not every_look and verdicts == previous and not last:
            continue
        previous = verdicts
        table.add_row(
            _clock(look.at),
            _since(look.at - timeline.start),
            look.phase,
            "-" if look.step is None else str(look.step + 1),
            f"{look.weight}%",
            *(_cell(m) for m in look.metrics),
        )
    console.print(table)
    console.print(summary(timeline))


def summary(timeline: Timeline) -> Text:
    final, at = timeline.final, timeline.decided_at
    when = f" at {_clock(at)} (+{_since(at - timeline.start)})" if at else ""
    if timeline.outcome == "RolledBack":
        return Text(f"would have rolled back{when}: {final.reason}: {final.message}", "bold red")
    if timeline.outcome == "Succeeded":
        return Text(f"would have promoted{when}", "bold green")
    if timeline.outcome == "Failed":
        return Text(f"failed{when}: {final.message}", "bold magenta")
    return Text(
        f"no decision by {_clock(timeline.end)}: {final.phase}; {final.message or ''}", "yellow"
    )


def _cell(metric: MetricResult) -> Text:
    text = Text(metric.verdict, STYLES.get(metric.verdict, ""))
    text.append(f" {metric.reason}", "dim")
    return text


def _clock(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S")


def _since(delta: timedelta) -> str:
    return format_duration(delta)
