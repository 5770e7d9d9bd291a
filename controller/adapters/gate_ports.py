"""The seams the gate checks read through: Kubernetes objects and a PostgreSQL database.

The runtime's gate checker talks only to these protocols; kubernetes_gates.py
and postgres_gates.py implement them against the real systems.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from controller.engine.gate_observations import JobView
from controller.gates.schema import ColumnFact


class DatabaseUnreachable(Exception):
    """No answer from the database (connection refused, timeout): the gate blocks."""


class QueryFailed(Exception):
    """The database answered with an error (no such table, permission denied, timeout)."""


class ApiMissing(Exception):
    """A Kubernetes API the gate needs is not served (e.g. no VolumeSnapshot CRD)."""


class GateObjects(Protocol):
    def secret_data(self, namespace: str, name: str) -> Mapping[str, str] | None: ...

    def config_map_data(self, namespace: str, name: str) -> Mapping[str, str] | None: ...

    def pod_template(self, namespace: str, deployment: str) -> Mapping[str, Any] | None: ...

    def job_completed_at(self, namespace: str, name: str) -> tuple[bool, datetime | None]:
        """(the Job exists, when it completed successfully or None)."""
        ...

    def cron_job_last_success(self, namespace: str, name: str) -> tuple[bool, datetime | None]:
        """(the CronJob exists, its last successful run or None)."""
        ...

    def newest_ready_snapshot(
        self, namespace: str, name: str | None, selector: Mapping[str, str] | None
    ) -> datetime | None:
        """Creation time of the newest readyToUse VolumeSnapshot; raises ApiMissing."""
        ...

    def hook_jobs(self, namespace: str, release: str) -> tuple[JobView, ...]: ...

    def job_log(self, namespace: str, job: str) -> str:
        """The log of the Job's succeeded pod; raises LookupError when there is none."""
        ...


class Database(Protocol):
    def tables(self, names: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of the (schema, table) pairs exist."""
        ...

    def columns(self, names: Sequence[tuple[str, str]]) -> list[ColumnFact]: ...

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...
