"""A gate's verdict as the judges return it and the engine reads it.

`fail` blocks the release, `pending` makes it wait (something is still
running, such as the Job that extracts migration files), `warn` is recorded
but lets it start. A gate that could not look (a database that does not
answer, a Secret that is missing) fails: not knowing is never a pass.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Verdict = Literal["pass", "fail", "warn", "pending"]

#: Gate names, as they appear in status.gates.results.
SCHEMA = "schema"
MIGRATION_HISTORY = "migrations"
MIGRATION_LINT = "migration-lint"
ENVIRONMENT = "environment"
BACKUP = "backup"
START_WINDOW = "start-window"
PROMOTE_WINDOW = "promote-window"
PRE_ROLLOUT = "pre-rollout"

#: Gates that describe the database *after* the pre-rollout hook (the migration) ran.
AFTER_HOOK = frozenset({SCHEMA, MIGRATION_HISTORY})


@dataclass(frozen=True)
class GateCheck:
    gate: str
    verdict: Verdict
    reason: str
    message: str
    evidence: tuple[str, ...] = ()

    @property
    def blocks(self) -> bool:
        return self.verdict == "fail"


def passed(gate: str, message: str, evidence: Iterable[str] = ()) -> GateCheck:
    return GateCheck(gate, "pass", "Passed", message, tuple(evidence))


def failed(gate: str, reason: str, message: str, evidence: Iterable[str] = ()) -> GateCheck:
    return GateCheck(gate, "fail", reason, message, tuple(evidence))


#: The lint gate's reason when its files live in an image and the extraction Job is not there.
FILES_NOT_EXTRACTED = "MigrationFilesNotExtracted"
#: The reason of a database gate shown while the pre-rollout hook has not succeeded yet.
AFTER_PRE_ROLLOUT = "AfterPreRolloutHook"


def worst(checks: Iterable[GateCheck]) -> GateCheck | None:
    """The check that decides: the first failure, else the first pending one, else None."""
    listed = list(checks)
    return next((c for c in listed if c.verdict == "fail"), None) or next(
        (c for c in listed if c.verdict == "pending"), None
    )
