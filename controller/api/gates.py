"""Gates, hooks and the breach policy: what must hold before a canary starts, and after.

The checklist this controller automates says: migrations applied, and
backward compatible; the production database backed up; migrations off-peak;
every production variable set and none carrying test values. Each of those
is a gate here. A failed gate keeps the release from starting (phase
`Blocked`, with the reason); a closed deploy window makes it wait (phase
`Waiting`, with the time it may start). Gates are re-checked while the
release waits, so fixing the cause is enough to unblock it.

Database access never takes a connection string from the CR: it names a
Secret key, so the credentials stay where RBAC already protects them.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ConfigDict, Field, WithJsonSchema, field_validator, model_validator

from controller.api.base import SpecModel, StatusModel
from controller.api.durations import DURATION_PATTERN, parse_duration
from controller.gates.cron import CronError, parse_cron
from controller.gates.schema import parse_type

Duration = Annotated[str, Field(pattern=DURATION_PATTERN, max_length=32)]
ObjectName = Annotated[str, Field(min_length=1, max_length=253)]
Identifier = Annotated[str, Field(min_length=1, max_length=127)]

#: A Job's `spec`, passed through to Kubernetes as written (the apiserver validates it).
JobSpec = Annotated[
    dict[str, Any],
    WithJsonSchema(
        {
            "type": "object",
            "description": "a batch/v1 Job spec; container images may use {tag}",
            "x-kubernetes-preserve-unknown-fields": True,
        }
    ),
]

MAX_WINDOW = timedelta(days=31)


def _one_of(*fields: str) -> ConfigDict:
    """Exactly one of `fields` is set: enforced in the apiserver (CEL) and in the models."""
    has = ", ".join(f"has(self.{f})" for f in fields)
    rule = f"[{has}].filter(x, x).size() == 1"
    message = f"set exactly one of {', '.join(fields)}"
    extra: dict[str, Any] = {"x-kubernetes-validations": [{"rule": rule, "message": message}]}
    return ConfigDict(**SpecModel.model_config, json_schema_extra=extra)


class SecretKeyRef(SpecModel):
    name: ObjectName
    key: str = Field(min_length=1, max_length=253)


class DatabaseRef(SpecModel):
    """Where the gates find PostgreSQL: a libpq connection string in a Secret key.

    Every query runs in a READ ONLY transaction with a statement timeout.
    """

    secret_key_ref: SecretKeyRef = Field(
        description="Secret (in the release's namespace) and key holding a libpq URI or DSN"
    )
    statement_timeout: Duration = "5s"
    connect_timeout: Duration = "5s"


# -- schema ---------------------------------------------------------------------------


class ColumnRequirement(SpecModel):
    name: Identifier
    type: str | None = Field(
        default=None,
        max_length=128,
        description="SQL type as written in a migration, e.g. varchar(255); omit to skip",
    )

    @field_validator("type")
    @classmethod
    def _is_a_type(cls, value: str | None) -> str | None:
        if value is not None:
            parse_type(value)
        return value


class TableRequirement(SpecModel):
    name: str = Field(
        min_length=1,
        max_length=255,
        pattern=r"^[^.\s]+(\.[^.\s]+)?$",
        description="table, optionally schema-qualified (public by default)",
    )
    columns: list[ColumnRequirement] = Field(default_factory=list, max_length=200)


class SchemaGate(SpecModel):
    """Declared tables and columns exist, with their types where given (information_schema)."""

    tables: list[TableRequirement] = Field(min_length=1, max_length=100)


# -- migrations -----------------------------------------------------------------------


class MigrationHistory(SpecModel):
    """The tool's history table shows at least `expectedVersion`.

    alembic: alembic_version holds exactly that revision (revisions are not ordered);
    flyway: a successful version >= expectedVersion, and no failed one;
    django: django_migrations has `expectedVersion` (a migration name) for `app`;
    prisma: _prisma_migrations has it finished and not rolled back;
    custom: `query` returns versions; one must be >= expectedVersion.
    """

    model_config = ConfigDict(
        **SpecModel.model_config,
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.tool != 'custom' || has(self.query)",
                    "message": "tool custom needs a query",
                },
                {"rule": "self.tool != 'django' || has(self.app)", "message": "django needs app"},
            ]
        },
    )

    tool: Literal["alembic", "flyway", "django", "prisma", "custom"]
    expected_version: str = Field(min_length=1, max_length=255)
    table: str | None = Field(
        default=None,
        max_length=255,
        pattern=r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$",
        description="override the preset's table (e.g. a Flyway table not named the default)",
    )
    app: str | None = Field(default=None, max_length=255, description="Django app label")
    query: str | None = Field(default=None, max_length=4096, description="custom: SELECT versions")

    @model_validator(mode="after")
    def _needs(self) -> MigrationHistory:
        if self.tool == "custom" and not self.query:
            raise ValueError("tool custom needs a query")
        if self.tool == "django" and not self.app:
            raise ValueError("tool django needs app (the Django app label)")
        if self.query and self.tool != "custom":
            raise ValueError("query is only for tool custom")
        return self


class ConfigMapSource(SpecModel):
    name: ObjectName
    keys: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="keys to lint, in order; default: every key ending in .sql, sorted",
    )


class ImageSource(SpecModel):
    """Migration files inside an image: a Job prints them, the controller reads its log."""

    path: str = Field(min_length=1, max_length=1024, pattern=r"^/")
    image: str | None = Field(
        default=None,
        max_length=512,
        description="image with a {tag} placeholder; default: the release image",
    )
    timeout: Duration = "5m"

    def timeout_length(self) -> timedelta:
        return parse_duration(self.timeout)


class MigrationLint(SpecModel):
    """The release's migration SQL, parsed by PostgreSQL's own parser (pglast)."""

    model_config = _one_of("configMapRef", "image")

    config_map_ref: ConfigMapSource | None = None
    image: ImageSource | None = None
    policy: Literal["expand-only", "warn"] = Field(
        default="expand-only",
        description="expand-only: a statement that breaks the running version blocks; warn: report",
    )
    locks: Literal["warn", "block"] = Field(
        default="warn", description="whether statements that lock large tables block the release"
    )

    @model_validator(mode="after")
    def _one_source(self) -> MigrationLint:
        if (self.config_map_ref is None) == (self.image is None):
            raise ValueError("set exactly one of configMapRef, image")
        return self


class MigrationGate(SpecModel):
    model_config = ConfigDict(
        **SpecModel.model_config,
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "has(self.history) || has(self.lint)", "message": "set history or lint"}
            ]
        },
    )

    history: MigrationHistory | None = None
    lint: MigrationLint | None = None

    @model_validator(mode="after")
    def _something(self) -> MigrationGate:
        if self.history is None and self.lint is None:
            raise ValueError("migrations needs history or lint")
        return self


# -- environment ----------------------------------------------------------------------


class ForbiddenValue(SpecModel):
    """A value that must never reach production, such as a test default."""

    pattern: str = Field(min_length=1, max_length=512, description="Python regular expression")
    variables: list[str] = Field(
        default_factory=list, max_length=100, description="only these variables (default: all)"
    )
    reason: str | None = Field(default=None, max_length=256)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"pattern {value!r} is not a regular expression: {exc}") from exc
        return value


class EnvironmentGate(SpecModel):
    """The new pod template defines every required variable, and every reference resolves."""

    required: list[str] = Field(default_factory=list, max_length=200)
    forbidden: list[ForbiddenValue] = Field(default_factory=list, max_length=50)
    container: str | None = Field(
        default=None,
        max_length=63,
        description="container whose variables are required (default: the release container)",
    )


# -- backup ---------------------------------------------------------------------------


class JobRef(SpecModel):
    name: ObjectName


class VolumeSnapshotRef(SpecModel):
    model_config = _one_of("name", "selector")

    name: ObjectName | None = None
    selector: dict[str, str] | None = Field(default=None, description="label selector (equality)")

    @model_validator(mode="after")
    def _one(self) -> VolumeSnapshotRef:
        if (self.name is None) == (self.selector is None):
            raise ValueError("volumeSnapshot needs exactly one of name, selector")
        return self


class BackupGate(SpecModel):
    """Evidence of a backup newer than `maxAge`, from exactly one source."""

    model_config = _one_of("cronJob", "job", "volumeSnapshot", "sql")

    max_age: Duration
    cron_job: JobRef | None = Field(default=None, description="its last successful run")
    job: JobRef | None = Field(default=None, description="its completion time")
    volume_snapshot: VolumeSnapshotRef | None = Field(
        default=None, description="the newest readyToUse VolumeSnapshot"
    )
    sql: str | None = Field(
        default=None,
        max_length=4096,
        description="a query on gates.database returning the last backup time",
    )

    @model_validator(mode="after")
    def _one(self) -> BackupGate:
        sources = [self.cron_job, self.job, self.volume_snapshot, self.sql]
        if sum(s is not None for s in sources) != 1:
            raise ValueError("backup needs exactly one of cronJob, job, volumeSnapshot, sql")
        return self

    def max_age_length(self) -> timedelta:
        return parse_duration(self.max_age)


# -- deploy windows -------------------------------------------------------------------


def _check_cron(value: str) -> str:
    try:
        parse_cron(value)
    except CronError as exc:
        raise ValueError(str(exc)) from exc
    return value


def _check_window_length(value: str) -> str:
    length = parse_duration(value)
    if length <= timedelta(0) or length > MAX_WINDOW:
        raise ValueError(f"duration {value} must be above 0 and at most 31d")
    return value


class Window(SpecModel):
    """Opens whenever `schedule` (cron, in the time zone) matches, for `duration`."""

    schedule: str = Field(min_length=1, max_length=128, examples=["0 22 * * 1-5"])
    duration: Duration

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        return _check_cron(value)

    @field_validator("duration")
    @classmethod
    def _length(cls, value: str) -> str:
        return _check_window_length(value)

    def length(self) -> timedelta:
        return parse_duration(self.duration)


class Blackout(SpecModel):
    """No start and no promotion: a period (start/end) or a recurring one (schedule/duration)."""

    model_config = ConfigDict(
        **SpecModel.model_config,
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "(has(self.start) && has(self.end) && !has(self.schedule)"
                    " && !has(self.duration)) || (has(self.schedule) && has(self.duration)"
                    " && !has(self.start) && !has(self.end))",
                    "message": "a blackout has start and end, or schedule and duration",
                }
            ]
        },
    )

    start: datetime | None = None
    end: datetime | None = None
    schedule: str | None = Field(default=None, max_length=128)
    duration: Duration | None = None
    reason: str | None = Field(default=None, max_length=256)

    @model_validator(mode="after")
    def _shape(self) -> Blackout:
        period = self.start is not None and self.end is not None
        recurring = self.schedule is not None and self.duration is not None
        partial = (self.start, self.end, self.schedule, self.duration).count(None) not in (2,)
        if period == recurring or partial:
            raise ValueError("a blackout has start and end, or schedule and duration")
        if self.start is not None and self.end is not None:
            if self.start.tzinfo is None or self.end.tzinfo is None:
                raise ValueError("blackout start and end need a UTC offset (RFC 3339)")
            if self.end <= self.start:
                raise ValueError("blackout end must be after its start")
        if self.schedule is not None:
            _check_cron(self.schedule)
        if self.duration is not None:
            _check_window_length(self.duration)
        return self


class DeployWindows(SpecModel):
    """When releases may start and be promoted. Rollbacks are never held by a window."""

    time_zone: str = Field(default="UTC", max_length=64, examples=["Europe/Berlin"])
    start: list[Window] = Field(
        default_factory=list, max_length=20, description="when a release may start (none: any time)"
    )
    promote: list[Window] = Field(
        default_factory=list, max_length=20, description="when a canary may be promoted"
    )
    blackouts: list[Blackout] = Field(default_factory=list, max_length=50)

    @field_validator("time_zone")
    @classmethod
    def _zone_exists(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from exc
        return value


# -- all gates ------------------------------------------------------------------------


class Gates(SpecModel):
    database: DatabaseRef | None = Field(
        default=None, description="for the schema, migration-history and SQL backup gates"
    )
    schema_check: SchemaGate | None = Field(default=None, alias="schema")
    migrations: MigrationGate | None = None
    environment: EnvironmentGate | None = None
    backup: BackupGate | None = None
    windows: DeployWindows | None = None

    @model_validator(mode="after")
    def _database_when_needed(self) -> Gates:
        users = []
        if self.schema_check is not None:
            users.append("schema")
        if self.migrations is not None and self.migrations.history is not None:
            users.append("migrations.history")
        if self.backup is not None and self.backup.sql is not None:
            users.append("backup.sql")
        if users and self.database is None:
            raise ValueError(f"gates.database is required by {', '.join(users)}")
        return self


# -- hooks ----------------------------------------------------------------------------

HookName = Literal["preRollout", "postPromotion", "onRollback"]


class Hook(SpecModel):
    """A Job the controller runs; its outcome is read from the Job's status.

    The controller adds CANARY_RELEASE, CANARY_TAG, CANARY_IMAGE, CANARY_STABLE_TAG,
    CANARY_HOOK and CANARY_REASON to every container, replaces {tag} in images,
    and sets backoffLimit 0 and activeDeadlineSeconds from `timeout` unless given.
    A ttlSecondsAfterFinished is dropped: the finished Job is the run's record.
    """

    job: JobSpec
    timeout: Duration = "10m"

    def timeout_length(self) -> timedelta:
        return parse_duration(self.timeout)


class Hooks(SpecModel):
    pre_rollout: Hook | None = Field(
        default=None,
        description="before the canary starts (e.g. the migration); failure blocks the release",
    )
    post_promotion: Hook | None = Field(default=None, description="after a promotion")
    on_rollback: Hook | None = Field(default=None, description="after a rollback; never waited on")

    def get(self, name: str) -> Hook | None:
        """The hook by its spec name (preRollout, postPromotion, onRollback), if configured."""
        field = _HOOK_FIELDS.get(name)
        hook: Hook | None = getattr(self, field) if field else None
        return hook


_HOOK_FIELDS: dict[str, str] = {
    "preRollout": "pre_rollout",
    "postPromotion": "post_promotion",
    "onRollback": "on_rollback",
}

BreachPolicy = Literal["rollback", "freeze"]

# -- status ---------------------------------------------------------------------------

GateVerdict = Literal["pass", "fail", "warn", "pending"]
HookState = Literal["Running", "Succeeded", "Failed", "TimedOut"]

MAX_GATE_RESULTS = 12
MAX_EVIDENCE = 10
MAX_EVIDENCE_CHARS = 300
MAX_MESSAGE_CHARS = 1024
MAX_HOOK_RUNS = 10


class GateResult(StatusModel):
    """One gate's verdict with the evidence behind it; `since` moves only when it changes."""

    gate: str
    verdict: GateVerdict
    reason: str
    message: str = Field(default="", max_length=MAX_MESSAGE_CHARS)
    evidence: list[str] = Field(default_factory=list, max_length=MAX_EVIDENCE)
    since: datetime


class HookRun(StatusModel):
    hook: HookName
    tag: str
    job: str
    state: HookState
    started_at: datetime
    finished_at: datetime | None = None
    message: str = Field(default="", max_length=MAX_MESSAGE_CHARS)
    reason: str = Field(default="", max_length=MAX_MESSAGE_CHARS, description="why it ran")


class FreezeRecord(StatusModel):
    """A breach under breachPolicy freeze: the canary holds until a human decides."""

    reason: str
    message: str = Field(default="", max_length=MAX_MESSAGE_CHARS)
    since: datetime


class GatesStatus(StatusModel):
    """What may hold a release back: gate verdicts, hook Jobs, and a freeze."""

    tag: str | None = Field(default=None, description="the release the gates were checked for")
    results: list[GateResult] = Field(default_factory=list, max_length=MAX_GATE_RESULTS)
    not_before: datetime | None = Field(
        default=None, description="Waiting: the earliest time the release may start or promote"
    )
    hooks: list[HookRun] = Field(default_factory=list, max_length=MAX_HOOK_RUNS)
    freeze: FreezeRecord | None = None
