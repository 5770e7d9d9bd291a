"""What the gates cost: the migration lint, deploy-window arithmetic, database checks.

Gates run on every reconcile while a release is held (every 10 s by
default), so each must be cheap, and an unreachable database must fail fast
rather than stall a reconcile. This times:
- the linter on a generated migration set (statements per second);
- `next_allowed` for a weeknight window, and for a calendar that has to jump
  over a two-week blackout of a minute-by-minute window;
- the schema gate's two queries against a real PostgreSQL, and how long a
  database that is down takes to report it (connect timeout 2 s, nothing
  listening: refused at once).

Usage: python -m bench.gates [--rounds 30]
Writes bench/results/gates.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg

from controller.adapters.gate_ports import DatabaseUnreachable
from controller.adapters.postgres_gates import PostgresGates
from controller.gates.cron import parse_cron
from controller.gates.lint import MigrationFile, lint_migrations
from controller.gates.windows import Calendar, Period, Recurring
from devenv.postgres import PostgresServer, free_port

RESULTS = Path(__file__).resolve().parent / "results" / "gates.json"
BERLIN = ZoneInfo("Europe/Berlin")


def _ms(fn: Callable[[], object], rounds: int) -> dict[str, float]:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return {
        "median_ms": round(statistics.median(samples), 2),
        "p90_ms": round(samples[int(0.9 * (len(samples) - 1))], 2),
        "max_ms": round(samples[-1], 2),
    }


def migration_set(files: int, per_file: int) -> list[MigrationFile]:
    statements = [
        "ALTER TABLE t{i} ADD COLUMN c{i} varchar(255);",
        "CREATE TABLE IF NOT EXISTS n{i} (id bigint PRIMARY KEY, v numeric(20, 8) NOT NULL);",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS i{i} ON t{i} (c{i});",
        "UPDATE t{i} SET c{i} = 'x' WHERE c{i} IS NULL;",
    ]
    return [
        MigrationFile(
            f"V{f}.sql",
            "\n".join(statements[i % 4].format(i=f * per_file + i) for i in range(per_file)),
        )
        for f in range(files)
    ]


def bench_lint(rounds: int) -> dict[str, float]:
    files = migration_set(20, 100)
    timing = _ms(lambda: lint_migrations(files), rounds)
    return {
        "statements": 2000,
        **timing,
        "statements_per_s": round(2000 / timing["median_ms"] * 1000),
    }


def bench_windows(rounds: int) -> dict[str, dict[str, float]]:
    weeknights = Calendar((Recurring(parse_cron("0 22 * * 1-5"), timedelta(hours=6), BERLIN),))
    saturday = datetime(2026, 11, 28, 12, tzinfo=UTC)
    every_minute = Recurring(parse_cron("* * * * *"), timedelta(minutes=1), BERLIN)
    blackout = Period(saturday, saturday + timedelta(days=14))
    frozen = Calendar((every_minute,), (blackout,))
    assert weeknights.next_allowed(saturday) is not None
    assert frozen.next_allowed(saturday) == blackout.end
    return {
        "weeknight_window": _ms(lambda: weeknights.next_allowed(saturday), rounds),
        "minute_window_two_week_blackout": _ms(lambda: frozen.next_allowed(saturday), rounds),
    }


def bench_database(rounds: int) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory() as base, PostgresServer.start(Path(base)) as server:
        dsn = server.create_database("bench")
        with psycopg.connect(dsn, autocommit=True) as conn:
            for i in range(200):  # a catalogue the size of a real application's
                conn.execute(f"CREATE TABLE t{i} (id serial PRIMARY KEY, a text, b numeric(20,8))")
        gates = PostgresGates(dsn)
        names = [("public", f"t{i}") for i in range(0, 200, 20)]
        schema = _ms(lambda: (gates.tables(names), gates.columns(names)), rounds)
        down = PostgresGates(
            f"postgresql://postgres@127.0.0.1:{free_port()}/x", connect_timeout=timedelta(seconds=2)
        )

        def refused() -> None:
            try:
                down.rows("SELECT 1")
            except DatabaseUnreachable:
                return
            raise AssertionError("a closed port answered")

        return {"schema_gate_10_tables": schema, "database_down": _ms(refused, rounds)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args(argv)
    results = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "rounds": args.rounds,
        "lint": bench_lint(args.rounds),
        "windows": bench_windows(args.rounds),
        "database": bench_database(args.rounds),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
