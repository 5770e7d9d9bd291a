"""Checking the gates: read the facts through the adapters, judge them with controller/gates.

Runs only when the engine asks (a `CheckGates` action: a release is about to
start, or is Blocked or Waiting). Every gate yields a verdict, whatever goes
wrong: a database that does not answer, a Secret that is missing, an API
that errors all become a failed gate with the reason, never a pass and
never an exception that would stop the reconcile.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from kubernetes.client.exceptions import ApiException

from controller.adapters.gate_ports import (
    ApiMissing,
    Database,
    DatabaseUnreachable,
    GateObjects,
    QueryFailed,
)
from controller.adapters.postgres_gates import PostgresGates
from controller.api.durations import parse_duration
from controller.api.gates import BackupGate, DatabaseRef, EnvironmentGate, Gates, MigrationLint
from controller.api.spec import CanaryReleaseSpec
from controller.api.status import CanaryReleaseStatus
from controller.engine.gate_observations import GateObservations, JobView
from controller.engine.gating import gates_configured
from controller.engine.hooks import hook_job_name, hooks_running
from controller.gates.backup import judge_backup
from controller.gates.checks import (
    BACKUP,
    ENVIRONMENT,
    FILES_NOT_EXTRACTED,
    MIGRATION_HISTORY,
    MIGRATION_LINT,
    SCHEMA,
    GateCheck,
    failed,
)
from controller.gates.environment import Forbidden, judge_environment, objects_needed
from controller.gates.history import history_query, judge_history
from controller.gates.lint import MigrationFile, judge_lint, lint_migrations, split_extracted
from controller.gates.schema import TableWanted, judge_schema

log = structlog.get_logger("controller.gates")

DatabaseFactory = Callable[[str, DatabaseRef], Database]


def postgres_database(dsn: str, ref: DatabaseRef) -> Database:
    return PostgresGates(
        dsn,
        statement_timeout=parse_duration(ref.statement_timeout),
        connect_timeout=parse_duration(ref.connect_timeout),
    )


class _Blocked(Exception):
    """A gate cannot be judged; carries the failed verdict to report instead."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class _Context:
    spec: CanaryReleaseSpec
    gates: Gates
    namespace: str
    release: str
    tag: str
    now: datetime
    jobs: tuple[JobView, ...] | None
    database: Database | None = None


class GateChecker:
    def __init__(
        self, objects: GateObjects, database_for: DatabaseFactory = postgres_database
    ) -> None:
        self.objects = objects
        self.database_for = database_for

    def jobs(self, namespace: str, release: str) -> tuple[JobView, ...]:
        return self.objects.hook_jobs(namespace, release)

    def check(
        self,
        spec: CanaryReleaseSpec,
        namespace: str,
        release: str,
        tag: str,
        now: datetime,
        jobs: tuple[JobView, ...] | None = None,
    ) -> tuple[GateCheck, ...]:
        gates = spec.gates
        if gates is None:
            return ()
        ctx = _Context(spec, gates, namespace, release, tag, now, jobs)
        planned: list[tuple[str, Callable[[_Context], GateCheck]]] = []
        if gates.environment is not None:
            planned.append((ENVIRONMENT, self._environment))
        if gates.backup is not None:
            planned.append((BACKUP, self._backup))
        if gates.migrations is not None and gates.migrations.lint is not None:
            planned.append((MIGRATION_LINT, self._lint))
        if gates.schema_check is not None:
            planned.append((SCHEMA, self._schema))
        if gates.migrations is not None and gates.migrations.history is not None:
            planned.append((MIGRATION_HISTORY, self._history))
        return tuple(self._guarded(name, fn, ctx) for name, fn in planned)

    def _guarded(self, gate: str, fn: Callable[[_Context], GateCheck], ctx: _Context) -> GateCheck:
        try:
            return fn(ctx)
        except _Blocked as exc:
            return failed(gate, exc.reason, str(exc))
        except DatabaseUnreachable as exc:
            return failed(gate, "DatabaseUnreachable", f"database unreachable: {exc}")
        except QueryFailed as exc:
            return failed(gate, "QueryFailed", f"query failed: {exc}")
        except ApiMissing as exc:
            return failed(gate, "ApiMissing", str(exc))
        except ApiException as exc:
            return failed(gate, "KubernetesError", f"Kubernetes API: {exc.status} {exc.reason}")
        except Exception as exc:  # a bug or a surprise must block, not crash the reconcile
            log.exception("gate check failed", gate=gate)
            return failed(gate, "CheckError", f"{type(exc).__name__}: {exc}")

    # -- database -------------------------------------------------------------------

    def _database(self, ctx: _Context) -> Database:
        if ctx.database is not None:
            return ctx.database
        ref = ctx.gates.database
        assert ref is not None, "validated by the spec"
        secret = ref.secret_key_ref
        data = self.objects.secret_data(ctx.namespace, secret.name)
        if data is None:
            raise _Blocked("DatabaseSecretMissing", f"Secret {secret.name} not found")
        dsn = data.get(secret.key)
        if not dsn:
            raise _Blocked("DatabaseSecretMissing", f"Secret {secret.name} has no key {secret.key}")
        ctx.database = self.database_for(dsn.strip(), ref)
        return ctx.database

    def _schema(self, ctx: _Context) -> GateCheck:
        schema = ctx.gates.schema_check
        assert schema is not None
        wanted = [
            TableWanted(t.name, tuple((c.name, c.type) for c in t.columns)) for t in schema.tables
        ]
        names = sorted({w.qualified for w in wanted})
        database = self._database(ctx)
        return judge_schema(wanted, database.tables(names), database.columns(names))

    def _history(self, ctx: _Context) -> GateCheck:
        history = ctx.gates.migrations.history if ctx.gates.migrations else None
        assert history is not None
        query = history_query(
            history.tool, table=history.table, app=history.app, query=history.query
        )
        rows = self._database(ctx).rows(query.sql, query.params)
        return judge_history(history.tool, history.expected_version, rows)

    # -- migration lint -------------------------------------------------------------

    def _lint(self, ctx: _Context) -> GateCheck:
        lint = ctx.gates.migrations.lint if ctx.gates.migrations else None
        assert lint is not None
        files = self._files_from_config_map(ctx, lint) if lint.config_map_ref else None
        if files is None:
            pending = self._files_from_image(ctx)
            if isinstance(pending, GateCheck):
                return pending
            files = pending
        return judge_lint(files, lint_migrations(files), lint.policy, lint.locks)

    def _files_from_config_map(self, ctx: _Context, lint: MigrationLint) -> list[MigrationFile]:
        source = lint.config_map_ref
        assert source is not None
        data = self.objects.config_map_data(ctx.namespace, source.name)
        if data is None:
            raise _Blocked("ConfigMapNotFound", f"ConfigMap {source.name} not found")
        keys = source.keys or sorted(k for k in data if k.endswith(".sql"))
        missing = [k for k in keys if k not in data]
        if missing:
            raise _Blocked(
                "ConfigMapKeyMissing", f"ConfigMap {source.name} has no key {missing[0]}"
            )
        return [MigrationFile(k, data[k]) for k in keys]

    def _files_from_image(self, ctx: _Context) -> list[MigrationFile] | GateCheck:
        job = hook_job_name(ctx.release, "migrationFiles", ctx.tag)
        jobs = ctx.jobs if ctx.jobs is not None else self.jobs(ctx.namespace, ctx.release)
        found = next((j for j in jobs if j.name == job), None)
        if found is None:
            message = f"Job {job} will print the migration files of {ctx.tag}"
            return GateCheck(MIGRATION_LINT, "pending", FILES_NOT_EXTRACTED, message)
        if found.state == "Running":
            message = f"Job {job} is printing the migration files"
            return GateCheck(MIGRATION_LINT, "pending", "ExtractingMigrationFiles", message)
        if found.state == "Failed":
            raise _Blocked(
                "MigrationExtractionFailed",
                f"Job {job} failed: {found.message}; delete it to retry",
            )
        return split_extracted(self.objects.job_log(ctx.namespace, job))

    # -- environment ----------------------------------------------------------------

    def _environment(self, ctx: _Context) -> GateCheck:
        env: EnvironmentGate | None = ctx.gates.environment
        assert env is not None
        target = ctx.spec.target_ref.name
        template = self.objects.pod_template(ctx.namespace, target)
        if template is None:
            raise _Blocked("TargetNotFound", f"Deployment {target} not found")
        objects: dict[Any, Any] = {}
        for kind, name in objects_needed(template):
            read = self.objects.secret_data if kind == "Secret" else self.objects.config_map_data
            objects[(kind, name)] = read(ctx.namespace, name)
        forbidden = [Forbidden(f.pattern, tuple(f.variables), f.reason) for f in env.forbidden]
        container = env.container or ctx.spec.release.container
        return judge_environment(template, container, env.required, forbidden, objects)

    # -- backup ---------------------------------------------------------------------

    def _backup(self, ctx: _Context) -> GateCheck:
        backup: BackupGate | None = ctx.gates.backup
        assert backup is not None
        last, source = self._backup_time(ctx, backup)
        return judge_backup(last, source, backup.max_age_length(), ctx.now)

    def _backup_time(self, ctx: _Context, backup: BackupGate) -> tuple[datetime | None, str]:
        if backup.cron_job is not None:
            name = backup.cron_job.name
            exists, last = self.objects.cron_job_last_success(ctx.namespace, name)
            if not exists:
                raise _Blocked("CronJobNotFound", f"CronJob {name} not found")
            return last, f"CronJob {name} lastSuccessfulTime"
        if backup.job is not None:
            name = backup.job.name
            exists, last = self.objects.job_completed_at(ctx.namespace, name)
            if not exists:
                raise _Blocked("JobNotFound", f"Job {name} not found")
            return last, f"Job {name} completionTime"
        if backup.volume_snapshot is not None:
            ref = backup.volume_snapshot
            last = self.objects.newest_ready_snapshot(ctx.namespace, ref.name, ref.selector)
            which = ref.name or ",".join(
                f"{k}={v}" for k, v in sorted((ref.selector or {}).items())
            )
            return last, f"VolumeSnapshot {which}"
        assert backup.sql is not None
        rows = self._database(ctx).rows(backup.sql)
        value = rows[0][0] if rows and rows[0] else None
        if value is not None and not isinstance(value, datetime):
            raise _Blocked("BackupTimeInvalid", f"backup query returned {type(value).__name__}")
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)  # timestamp without time zone: read as UTC
        return value, "backup query"


# -- the runtime's side of the CheckGates protocol -------------------------------------


def _wants_jobs(spec: CanaryReleaseSpec) -> bool:
    lint = spec.gates.migrations.lint if spec.gates and spec.gates.migrations else None
    return spec.hooks is not None or (lint is not None and lint.image is not None)


def observe_hooks(
    checker: GateChecker | None,
    spec: CanaryReleaseSpec,
    status: CanaryReleaseStatus,
    namespace: str,
    name: str,
) -> GateObservations | None:
    """Before deciding: the release's name (hook Jobs are named after it), and the hook
    Jobs while a hook runs, so their outcomes reach status without any gate I/O."""
    if not (gates_configured(spec) or spec.hooks is not None or status.gates is not None):
        return None
    jobs = None
    if checker is not None and hooks_running(status.gates):
        jobs = checker.jobs(namespace, name)
    return GateObservations(release=name, jobs=jobs)


def check_gates(
    checker: GateChecker | None,
    spec: CanaryReleaseSpec,
    namespace: str,
    name: str,
    tag: str,
    now: datetime,
) -> GateObservations:
    """Answer a CheckGates request: every gate's verdict for `tag`, and the hook Jobs."""
    if checker is None:
        unavailable = failed("gates", "GatesUnavailable", "this runtime cannot check gates")
        return GateObservations(release=name, tag=tag, checks=(unavailable,))
    jobs = checker.jobs(namespace, name) if _wants_jobs(spec) else None
    checks = checker.check(spec, namespace, name, tag, now, jobs)
    return GateObservations(release=name, tag=tag, checks=checks, jobs=jobs)
