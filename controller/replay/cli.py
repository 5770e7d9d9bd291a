"""`python -m controller replay`: the command line of replay (controller/replay/replaying.py)."""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, overload

import yaml
from pydantic import ValidationError
from rich.console import Console

from controller.api.durations import parse_duration
from controller.api.spec import CanaryReleaseSpec

if TYPE_CHECKING:  # imported when used: `--help` stays quick
    from controller.adapters.ports import AuditLogSource
    from controller.adapters.prometheus import PrometheusSource


def add_parser(sub: Any) -> None:
    """Register the `replay` subcommand on the main parser's subparsers."""
    parser = sub.add_parser(
        "replay",
        help="run a CanaryRelease's analysis against recorded Prometheus data",
        description=(
            "Replays the analysis of a CanaryRelease over a past window on the real engine "
            "with a simulated clock and cluster, and prints every analysis and when the "
            "release would have rolled back or been promoted."
        ),
    )
    parser.add_argument("-f", "--file", required=True, type=pathlib.Path, help="CanaryRelease YAML")
    parser.add_argument(
        "--from",
        dest="start",
        required=True,
        help="when the release starts (ISO 8601, UTC unless it says otherwise; or Unix s)",
    )
    end = parser.add_mutually_exclusive_group()
    end.add_argument(
        "--to",
        dest="end",
        help="when replay stops (ISO 8601, UTC unless it says otherwise; or Unix s)",
    )
    end.add_argument("--for", dest="length", default="24h", help="how long to replay (24h)")
    parser.add_argument(
        "--prometheus",
        help="Prometheus address for every query (default: the spec's addresses)",
    )
    parser.add_argument(
        "--audit-dsn",
        default=os.environ.get("CANARY_AUDIT_DSN"),
        help="PostgreSQL connection string for an auditLog.sql (env CANARY_AUDIT_DSN)",
    )
    parser.add_argument("--every", help="clock tick (default: analysis.interval)")
    parser.add_argument("-n", "--namespace", help="{{namespace}} (default: metadata.namespace)")
    parser.add_argument("--name", help="{{name}} (default: metadata.name)")
    parser.add_argument("--replicas", type=int, default=10, help="the Deployment's replicas")
    parser.add_argument("--ready-delay", default="20s", help="how long a pod takes to be Ready")
    parser.add_argument(
        "--full", action="store_true", help="keep going after the release is decided"
    )
    parser.add_argument("--every-look", action="store_true", help="a row per analysis")
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table")
    parser.set_defaults(func=run)


def main(argv: list[str] | None = None) -> int:
    """`canaryctl replay ...`: the same subcommand, reached through the CLI."""
    parser = argparse.ArgumentParser(prog="canaryctl")
    add_parser(parser.add_subparsers(dest="command", required=True))
    try:
        args = parser.parse_args(["replay", *(sys.argv[1:] if argv is None else argv)])
    except SystemExit as exc:  # --help, or bad usage (already printed)
        return int(exc.code or 0)
    from controller.runtime.logs import configure_logging

    configure_logging("WARNING")  # on stderr: stdout is the timeline (JSON with -o json)
    result: int = args.func(args)
    return result


def parse_time(text: str) -> datetime:
    """ISO 8601 (a missing zone means UTC) or Unix seconds."""
    try:
        return datetime.fromtimestamp(float(text), tz=UTC)
    except (OverflowError, OSError) as exc:
        raise ValueError(f"{text}: not a time ({exc})") from exc
    except ValueError:
        pass
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def load_release(path: pathlib.Path) -> tuple[CanaryReleaseSpec, dict[str, Any]]:
    """A CanaryRelease manifest (or a bare spec): the validated spec and the metadata."""
    document = yaml.safe_load(path.read_text()) or {}
    if not isinstance(document, dict):
        raise ValueError(f"{path}: expected a YAML mapping")
    raw = document.get("spec", document) if "kind" in document or "spec" in document else document
    return CanaryReleaseSpec.model_validate(raw), dict(document.get("metadata") or {})


def run(args: argparse.Namespace) -> int:
    """Exit codes: 0 replayed (whatever the outcome), 1 could not judge, 2 bad usage."""
    from controller.replay.rendering import render
    from controller.replay.replaying import replay

    err = Console(stderr=True)
    try:
        spec, metadata = load_release(args.file)
        start = parse_time(args.start)
        end = parse_time(args.end) if args.end else start + parse_duration(args.length)
        ready_delay = parse_duration(args.ready_delay)
        every = parse_duration(args.every) if args.every else None
    except OverflowError as exc:
        err.print(f"[red]replay: --from/--to/--for out of range ({exc})[/red]")
        return 2
    except (OSError, ValueError, ValidationError, yaml.YAMLError) as exc:
        err.print(f"[red]replay: {exc}[/red]")
        return 2
    if spec.analysis is None:
        err.print("[red]replay: the release has no analysis to replay[/red]")
        return 2
    now = datetime.now(UTC)
    if start >= now or (args.end and end > now):
        future = start if start >= now else end
        err.print(
            f"[red]replay: {future.isoformat()} is in the future: nothing is recorded yet[/red]"
        )
        return 2
    if end > now:  # --for runs past now: a release that started today replays up to now
        err.print(f"[yellow]replay: up to now ({now.isoformat(timespec='seconds')})[/yellow]")
        end = now
    every = every or spec.analysis.interval_length()
    namespace = args.namespace or metadata.get("namespace") or "default"
    name = args.name or metadata.get("name") or "release"
    sources = _Sources(args.prometheus)
    try:
        timeline = replay(
            spec,
            sources.at(spec.analysis.prometheus.address),
            start=start,
            end=end,
            every=every,
            namespace=namespace,
            name=name,
            replicas=args.replicas,
            ready_delay=ready_delay,
            stop_at_decision=not args.full,
            audit=_audit_source(spec, sources, args.audit_dsn, namespace=namespace, name=name),
            watch_source=sources.at(spec.post_promotion_address()),
        )
    except ValueError as exc:
        err.print(f"[red]replay: {exc}[/red]")
        return 2
    finally:
        sources.close()
    for part in timeline.not_replayed:
        err.print(f"[yellow]replay: not replayed: {part}[/yellow]")
    if args.output == "json":
        sys.stdout.write(json.dumps(timeline.to_json(), indent=1) + "\n")
    else:
        render(timeline, Console(), every_look=args.every_look)
    if timeline.problem is not None:
        err.print(f"[red]replay: could not judge: {timeline.problem}[/red]")
        return 1
    return 0


class _Sources:
    """One PrometheusSource per address (or every query to `override`), closed together."""

    def __init__(self, override: str | None) -> None:
        self._override = override
        self._open: dict[str, PrometheusSource] = {}

    @overload
    def at(self, address: str) -> PrometheusSource: ...
    @overload
    def at(self, address: str | None) -> PrometheusSource | None: ...
    def at(self, address: str | None) -> PrometheusSource | None:
        from controller.adapters.prometheus import PrometheusSource

        chosen = self._override or address
        if chosen is None:
            return None
        if chosen not in self._open:
            self._open[chosen] = PrometheusSource(chosen)
        return self._open[chosen]

    def close(self) -> None:
        for source in self._open.values():
            source.close()


def _audit_source(
    spec: CanaryReleaseSpec, sources: _Sources, dsn: str | None, *, namespace: str, name: str
) -> AuditLogSource | None:
    """The audit log the spec reads, from recorded data; None when it has none."""
    analysis = spec.analysis
    config = analysis.audit_log if analysis is not None else None
    if analysis is None or config is None:
        return None
    if config.sql is not None:
        if not dsn:
            raise ValueError(
                "spec.analysis.auditLog.sql: pass --audit-dsn (or CANARY_AUDIT_DSN) for the "
                "database that holds the recorded audit_logs table"
            )
        from controller.adapters.postgres_audit import PostgresAuditLog

        return PostgresAuditLog(dsn, config.sql)
    from controller.adapters.prometheus_audit import PrometheusAuditCounter

    assert config.prometheus is not None
    return PrometheusAuditCounter(
        sources.at(config.prometheus.address or analysis.prometheus.address),
        config.prometheus,
        namespace=namespace,
        name=name,
        target=spec.target_ref.name,
    )
