"""`canaryctl lint-migrations FILE...`: the migration gate's linter, offline, for CI.

The same rules as the controller's gate (controller/gates/lint.py), run
before a tag exists: a team can fail the pipeline on a migration that would
break the version still running during the canary.

Exit codes: 0 nothing blocks, 1 a statement blocks under the policy (or a
file does not parse), 2 bad usage or a file that cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TextIO

from controller.gates.lint import MigrationFile, blocking, lint_migrations


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="canaryctl lint-migrations",
        description="Report SQL migration statements that break the running version "
        "(DROP, renames, type changes, SET NOT NULL, ...) or lock large tables.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="SQL files, applied in order")
    parser.add_argument(
        "--policy",
        choices=("expand-only", "warn"),
        default="expand-only",
        help="expand-only (default): a breaking statement fails; warn: only report it",
    )
    parser.add_argument(
        "--locks",
        choices=("warn", "block"),
        default="warn",
        help="whether statements that lock large tables fail (default: warn)",
    )
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text")
    return parser


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    files = []
    for name in args.files:
        try:
            files.append(MigrationFile(name, Path(name).read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            sys.stderr.write(f"canaryctl lint-migrations: cannot read {name}: {exc}\n")
            return 2
    findings = lint_migrations(files)
    stopping = blocking(findings, args.policy, args.locks)
    if args.output == "json":
        rows = [
            {
                "file": f.file,
                "line": f.line,
                "severity": f.severity,
                "blocks": f in stopping,
                "problem": f.problem,
                "statement": f.statement,
            }
            for f in findings
        ]
        out.write(json.dumps(rows, indent=2) + "\n")
    else:
        for finding in findings:
            marker = "BLOCKS" if finding in stopping else "warn"
            out.write(f"{finding.describe()} [{marker}]\n")
        verdict = "fail" if stopping else "ok"
        out.write(
            f"{verdict}: {len(files)} file(s), {len(findings)} finding(s), "
            f"{len(stopping)} blocking (policy {args.policy}, locks {args.locks})\n"
        )
    return 1 if stopping else 0


if __name__ == "__main__":
    raise SystemExit(main())
