"""Rich renderings of the views in views.py, for a human at a terminal.

Colour carries meaning only where it helps at a glance (a failing metric, a
rolled-back phase); every fact is also in the text, so the output reads the
same when piped or in a terminal without colour.
"""

from __future__ import annotations

import io
from typing import Any, TextIO

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from controller.cli.views import View, seconds_text

PHASE_STYLE = {
    "Idle": "dim",
    "Progressing": "cyan",
    "Paused": "yellow",
    "Promoting": "blue",
    "Succeeded": "green",
    "RolledBack": "bold red",
    "Failed": "bold red",
}
VERDICT_STYLE = {
    "pass": "green",
    "fail": "bold red",
    "inconclusive": "yellow",
    "error": "red",
    "warn": "yellow",
    "pending": "dim",
}


def _value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _styled(text: str | None, styles: dict[str, str]) -> Text:
    return Text(text or "-", style=styles.get(text or "", ""))


def list_table(rows: list[View], *, all_namespaces: bool) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    if all_namespaces:
        table.add_column("NAMESPACE")
    for column in ("NAME", "PHASE", "STABLE", "CANARY", "WEIGHT", "STEP", "LEFT", "MESSAGE"):
        table.add_column(column, overflow="fold")
    for row in rows:
        cells: list[RenderableType] = [row["namespace"]] if all_namespaces else []
        cells += [
            row["name"],
            _styled(row["phase"], PHASE_STYLE),
            row["stableTag"] or "-",
            row["canaryTag"] or "-",
            f"{row['weight']}%",
            row["step"] or "-",
            seconds_text(row["secondsLeft"]) or "-",
            row["message"] or "",
        ]
        table.add_row(*cells)
    return table


def _headline(view: View) -> Text:
    text = Text()
    text.append(f"{view['namespace']}/{view['name']}  ", style="bold")
    text.append(view["phase"], style=PHASE_STYLE.get(view["phase"], ""))
    if view["reason"]:
        text.append(f" ({view['reason']})")
    if view["paused"]:
        # A freeze holds through the same flag, but no human paused it.
        held = "frozen after a breach" if view["reason"] == "Frozen" else "paused by a human"
        text.append(f"  {held}", style="yellow")
    return text


def _overview(view: View) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("stable", view["stableTag"] or "-")
    grid.add_row("canary", f"{view['canaryTag'] or '-'} at {view['weight']}%")
    if view["previousStableTag"]:
        grid.add_row("previous", view["previousStableTag"])
    step = view["step"]
    if step is not None:
        grid.add_row("step", f"{step['number']}/{step['of']}: {step['description']}")
        if step["secondsLeft"] is not None:
            grid.add_row("time left", seconds_text(step["secondsLeft"]))
        if step["waitingFor"]:
            grid.add_row("waiting for", step["waitingFor"])
    if view["nextAnalysisInSeconds"] is not None:
        grid.add_row("next analysis", f"in {seconds_text(view['nextAnalysisInSeconds'])}")
    if view["message"]:
        grid.add_row("message", view["message"])
    if view["lastCommand"]:
        grid.add_row("last command", view["lastCommand"])
    return grid


def _metrics(metrics: list[View], title: str = "metrics") -> Table:
    """One row per metric; an `evidence` column only when some metric is judged sequentially."""
    sequential = any(m["evidence"] for m in metrics)
    table = Table(title=title, title_justify="left", header_style="bold", expand=False)
    columns = ["metric", "canary", "stable", "bound", "verdict", "trend"]
    columns += ["evidence (e-value/needed)"] if sequential else []
    for column in [*columns, "reason"]:
        table.add_column(column, overflow="fold")
    for m in metrics:
        cells: list[RenderableType] = [
            m["name"],
            _value(m["canary"]),
            _value(m["stable"]),
            m["bound"] or "-",
            _styled(m["verdict"], VERDICT_STYLE),
            m["sparkline"] or "",
        ]
        if sequential:
            cells.append(m["evidence"]["progress"] if m["evidence"] else "-")
        table.add_row(*cells, m["reason"] or "")
    return table


def _audit_log(audit: View) -> list[RenderableType]:
    head = Text("audit log ", style="bold")
    head.append_text(_styled(audit["verdict"], VERDICT_STYLE))
    comparison = audit["comparison"] or "no comparison yet"
    head.append(f"  {comparison}, {audit['actionsTested']} actions tested")
    if audit["baselineDays"]:
        head.append(f", baseline {audit['baselineDays']} days")
    if audit["unreachableSince"]:
        head.append(f"  unreachable since {audit['unreachableSince']}", style="yellow")
    parts: list[RenderableType] = [head, Text(audit["reason"])]
    if audit["anomalies"]:
        table = Table(title="audit-log anomalies", title_justify="left", header_style="bold")
        for column in ("action", "kind", "count", "expected", "ratio", "p", "actors"):
            table.add_column(column, overflow="fold")
        for a in audit["anomalies"]:
            action = Text(a["action"], style="bold red" if a["sensitive"] else "")
            if a["sensitive"]:
                action.append(" (sensitive)")
            table.add_row(
                action,
                a["kind"],
                _value(a["count"]),
                _value(a["expected"]),
                _value(a["ratio"]),
                _value(a["pValue"]),
                _value(a["actors"]),
            )
        parts.append(table)
    return parts


def _post_promotion(watch: View) -> list[RenderableType]:
    head = Text("after promotion ", style="bold")
    style = {
        "Watching": "cyan",
        "Passed": "green",
        "RolledBack": "bold red",
        "Breached": "red",
        "Ended": "dim",
    }
    head.append(watch["state"], style=style.get(watch["state"], ""))
    head.append(f"  since {watch['startedAt']}, until {watch['until']}")
    if watch["secondsLeft"] is not None:
        head.append(f" ({seconds_text(watch['secondsLeft'])} left)")
    parts: list[RenderableType] = [head]
    if watch["metrics"]:
        parts.append(_metrics(watch["metrics"], title="metrics after promotion"))
    return parts


def _gates(gates: View) -> list[RenderableType]:
    parts: list[RenderableType] = []
    freeze = gates["freeze"]
    if freeze:
        body = Text(f"{freeze.get('reason')}: {freeze.get('message') or ''}\n", style="bold")
        body.append(
            f"since {freeze.get('since')}; "
            "canaryctl promote --full accepts it, abort rolls back, resume goes on"
        )
        parts.append(
            Panel(body, title="frozen", title_align="left", border_style="yellow", expand=False)
        )
    if gates["notBefore"]:
        parts.append(Text(f"waiting for a deploy window until {gates['notBefore']}", "yellow"))
    if gates["results"]:
        table = Table(title="gates", title_justify="left", header_style="bold")
        for column in ("gate", "verdict", "reason", "message"):
            table.add_column(column, overflow="fold")
        for g in gates["results"]:
            message = "\n".join([g["message"], *g["evidence"][:3]]).strip()
            table.add_row(g["gate"], _styled(g["verdict"], VERDICT_STYLE), g["reason"], message)
        parts.append(table)
    if gates["hooks"]:
        hooks = Table(title="hooks", title_justify="left", header_style="bold")
        for column in ("hook", "tag", "job", "state", "message"):
            hooks.add_column(column, overflow="fold")
        for h in gates["hooks"]:
            hooks.add_row(
                *(str(h.get(k) or "") for k in ("hook", "tag", "job", "state", "message"))
            )
        parts.append(hooks)
    return parts


def _rollback(rollback: View) -> Panel:
    body = Text()
    body.append(f"{rollback['reason'] or 'unknown reason'}\n", style="bold")
    body.append(rollback["message"] or "")
    if rollback["tag"]:
        body.append(f"\ntag {rollback['tag']}")
    if rollback["at"]:
        body.append(f", at {rollback['at']}")
    return Panel(
        body, title="why it rolled back", title_align="left", border_style="red", expand=False
    )


def status_panel(view: View) -> Group:
    parts: list[RenderableType] = [_headline(view), _overview(view)]
    if view["rollback"] is not None:
        parts.append(_rollback(view["rollback"]))
    if view["metrics"]:
        parts.append(_metrics(view["metrics"]))
    if view["auditLog"]:
        parts += _audit_log(view["auditLog"])
    if view["postPromotion"]:
        parts += _post_promotion(view["postPromotion"])
    if view["gates"]:
        parts += _gates(view["gates"])
    for condition in view["conditions"]:
        parts.append(
            Text(
                f"condition {condition['type']}={condition['status']} "
                f"({condition['reason']}): {condition['message']}",
                style="yellow",
            )
        )
    if not view["specValid"]:
        parts.append(Text(f"the spec is invalid: {view['specProblem']}", style="bold red"))
    return Group(*parts)


def history_table(rows: list[View]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("TAG", "OUTCOME", "FINISHED", "TOOK", "REASON"):
        table.add_column(column, overflow="fold")
    styles = {"Succeeded": "green", "RolledBack": "red", "Aborted": "red", "Superseded": "yellow"}
    for row in rows:
        table.add_row(
            row["tag"],
            _styled(row["outcome"], styles),
            row["finishedAt"],
            row["duration"] or "-",
            row["reason"],
        )
    return table


def events_table(events: list[View]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("LAST SEEN", "TYPE", "REASON", "MESSAGE"):
        table.add_column(column, overflow="fold")
    for e in events:
        style = "yellow" if e["type"] == "Warning" else ""
        table.add_row(e["time"] or "-", Text(e["type"], style=style), e["reason"], e["message"])
    return table


def print_to(out: TextIO, renderable: RenderableType) -> None:
    """Colour on a terminal; when piped, plain text, wide enough that nothing is cut,
    with no trailing blanks, so `grep` and `diff` see what a human sees."""
    if out.isatty():
        Console(file=out, highlight=False).print(renderable)
        return
    buffer = io.StringIO()
    Console(file=buffer, width=200, highlight=False, color_system=None).print(renderable)
    out.write("".join(line.rstrip() + "\n" for line in buffer.getvalue().splitlines()))
