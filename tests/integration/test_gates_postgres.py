"""The database gates against a real PostgreSQL: the seed's own migrations, lint, outages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from controller.adapters.gate_ports import DatabaseUnreachable, QueryFailed
from controller.adapters.postgres_gates import APPLICATION_NAME, PostgresGates
from controller.api.gates import DatabaseRef
from controller.api.spec import CanaryReleaseSpec
from controller.api.status import CanaryReleaseStatus
from controller.engine.decide import decide
from controller.engine.gate_observations import GateObservations
from controller.engine.observations import DeploymentView, Observed
from controller.gates.backup import judge_backup
from controller.gates.history import history_query, judge_history
from controller.gates.lint import MigrationFile, judge_lint, lint_migrations
from controller.gates.schema import TableWanted, judge_schema
from controller.runtime.gate_checks import GateChecker
from devenv.postgres import PostgresServer
from tests.frozen_postgres import frozen_backend

# The checklist's "Required migrations before deployment", verbatim.
SEED_MIGRATIONS = """
ALTER TABLE security_keys ADD COLUMN IF NOT EXISTS key_hash VARCHAR(255);

CREATE TABLE IF NOT EXISTS crypto_prices (
  id VARCHAR(255) PRIMARY KEY,
  currency VARCHAR(10) NOT NULL,
  price DECIMAL(20, 8) NOT NULL,
  cached_at TIMESTAMP NOT NULL,
  created_at TIMESTAMP DEFAULT NOW(),
  updated_at TIMESTAMP DEFAULT NOW()
);
"""
# What the running (old) version already has.
OLD_SCHEMA = "CREATE TABLE security_keys (id serial PRIMARY KEY, name text NOT NULL);"
# What the new version needs, as a user would declare it in spec.gates.schema.
WANTED = [
    TableWanted("security_keys", (("key_hash", "VARCHAR(255)"),)),
    TableWanted(
        "crypto_prices",
        (
            ("id", "varchar(255)"),
            ("currency", "varchar(10)"),
            ("price", "decimal(20,8)"),
            ("cached_at", "timestamp"),
            ("created_at", None),
            ("updated_at", None),
        ),
    ),
]


def _execute(dsn: str, sql: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.encode())


def _schema_check(dsn: str) -> Any:
    gates = PostgresGates(dsn)
    names = [w.qualified for w in WANTED]
    return judge_schema(WANTED, gates.tables(names), gates.columns(names))


def test_seed_migrations_block_the_schema_gate_before_and_pass_it_after(database: str) -> None:
    _execute(database, OLD_SCHEMA)
    before = _schema_check(database)
    assert before.verdict == "fail" and before.reason == "SchemaMismatch"
    assert list(before.evidence) == [
        "column public.security_keys.key_hash does not exist",
        "table public.crypto_prices does not exist",
    ]
    _execute(database, SEED_MIGRATIONS)
    after = _schema_check(database)
    assert after.verdict == "pass", after


def test_a_wrong_type_blocks_with_both_types_named(database: str) -> None:
    _execute(database, OLD_SCHEMA + "ALTER TABLE security_keys ADD COLUMN key_hash varchar(64);")
    check = judge_schema(
        WANTED[:1],
        PostgresGates(database).tables([("public", "security_keys")]),
        PostgresGates(database).columns([("public", "security_keys")]),
    )
    assert check.evidence == (
        "column public.security_keys.key_hash is character varying(64), "
        "expected character varying(255)",
    )


def test_drop_column_is_caught_by_the_lint_and_really_breaks_the_running_version(
    database: str,
) -> None:
    _execute(database, OLD_SCHEMA + SEED_MIGRATIONS)
    migration = "-- 003: cleanup\nALTER TABLE crypto_prices ADD COLUMN source text;\n" + (
        "ALTER TABLE security_keys\n  DROP COLUMN name;\n"
    )
    files = [MigrationFile("001_seed.sql", SEED_MIGRATIONS), MigrationFile("003.sql", migration)]
    check = judge_lint(files, lint_migrations(files), "expand-only", "warn")
    assert check.verdict == "fail" and check.reason == "UnsafeMigration"
    assert check.message.endswith(
        "003.sql:3: breaking: drops column security_keys.name: the running version reads it: "
        "ALTER TABLE security_keys DROP COLUMN name"
    )
    # The linter is right: the old version's query fails once the migration is applied.
    old_version_query = "SELECT id, name FROM security_keys"
    _execute(database, old_version_query)
    _execute(database, migration)
    with pytest.raises(psycopg.errors.UndefinedColumn):
        _execute(database, old_version_query)


def test_every_gate_query_runs_read_only_with_a_statement_timeout(database: str) -> None:
    _execute(database, "CREATE TABLE backups (finished_at timestamptz);")
    gates = PostgresGates(database, statement_timeout=timedelta(milliseconds=300))
    with pytest.raises(QueryFailed, match="read-only transaction"):
        gates.rows("INSERT INTO backups VALUES (now()) RETURNING finished_at")
    with pytest.raises(QueryFailed, match="statement timeout"):
        gates.rows("SELECT pg_sleep(3)")
    with pytest.raises(QueryFailed, match='relation "flyway_schema_history" does not exist'):
        gates.rows(history_query("flyway").sql)


@pytest.mark.parametrize(
    "query",
    [  # a custom history query or a backup query, from the CanaryRelease
        "COMMIT; DROP TABLE victims; SELECT '1.0'",
        "SELECT '1'; COMMIT; DELETE FROM victims",
    ],
)
def test_a_gate_query_of_several_statements_is_refused_and_writes_nothing(
    database: str, query: str
) -> None:
    """Without parameters psycopg runs every statement in the text: a COMMIT would end the
    READ ONLY transaction and the statement timeout with it."""
    _execute(database, "CREATE TABLE victims (id int); INSERT INTO victims VALUES (1);")
    with pytest.raises(QueryFailed, match="one statement"):
        PostgresGates(database).rows(query)
    with psycopg.connect(database, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM victims").fetchone() == (1,)


def test_migration_history_presets_read_the_real_tables(database: str) -> None:
    _execute(
        database,
        """
        CREATE TABLE flyway_schema_history (installed_rank int, version text, success bool);
        INSERT INTO flyway_schema_history VALUES (1, '1.9', true), (2, '1.10', true);
        CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);
        INSERT INTO alembic_version VALUES ('ae1027a6acf');
        CREATE TABLE django_migrations (id serial, app text, name text, applied timestamptz);
        INSERT INTO django_migrations (app, name) VALUES ('keys', '0002_key_hash');
        CREATE TABLE _prisma_migrations (
            migration_name text, finished_at timestamptz, rolled_back_at timestamptz);
        INSERT INTO _prisma_migrations VALUES ('20261120_prices', now(), NULL);
        """,
    )
    gates = PostgresGates(database)
    expectations = [
        ("flyway", "1.10", {}, "pass"),
        ("flyway", "2", {}, "fail"),
        ("alembic", "ae1027a6acf", {}, "pass"),
        ("django", "0002_key_hash", {"app": "keys"}, "pass"),
        ("django", "0002_key_hash", {"app": "other"}, "fail"),
        ("prisma", "20261120_prices", {}, "pass"),
        ("custom", "1.10", {"query": "SELECT version FROM flyway_schema_history"}, "pass"),
    ]
    for tool, expected, options, verdict in expectations:
        query = history_query(tool, **options)
        check = judge_history(tool, expected, gates.rows(query.sql, query.params))
        assert check.verdict == verdict, (tool, expected, check)


def test_backup_time_from_a_query(database: str) -> None:
    _execute(database, "CREATE TABLE backups (finished_at timestamptz);")
    _execute(database, "INSERT INTO backups VALUES (now() - interval '2 hours')")
    [(last,)] = PostgresGates(database).rows("SELECT max(finished_at) FROM backups")
    now = datetime.now(UTC)
    assert judge_backup(last, "backup query", timedelta(hours=24), now).verdict == "pass"
    assert judge_backup(last, "backup query", timedelta(hours=1), now).reason == "BackupTooOld"


# -- a database that is down ------------------------------------------------------


class SecretObjects:
    """Only the Secret read of GateObjects: the connection string, as the Secret holds it."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        return {"url": self.dsn} if name == "app-db" else None

    def hook_jobs(self, namespace: str, release: str) -> tuple[()]:
        return ()


SPEC = CanaryReleaseSpec.model_validate(
    {
        "targetRef": {"name": "app"},
        "release": {"tag": "v2", "image": "registry.example.com/app:{tag}"},
        "gates": {
            "database": {
                "secretKeyRef": {"name": "app-db", "key": "url"},
                "connectTimeout": "2s",
            },
            "schema": {"tables": [{"name": "security_keys", "columns": [{"name": "key_hash"}]}]},
        },
    }
)


def _decide_with_gates(checker: GateChecker, now: datetime) -> CanaryReleaseStatus:
    target = DeploymentView("app", 4, "registry.example.com/app:v1", 4, 4, 4)
    checks = checker.check(SPEC, "shop", "app", "v2", now)
    gates = GateObservations(release="app", tag="v2", checks=checks)
    status, _ = decide(SPEC, CanaryReleaseStatus(), Observed(target, gates=gates), now)
    return status


def test_a_database_that_is_down_blocks_the_release(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    server = PostgresServer.start(tmp_path_factory.mktemp("pg-down"))
    try:
        dsn = server.create_database("app")
        _execute(dsn, OLD_SCHEMA + SEED_MIGRATIONS)
        checker = GateChecker(SecretObjects(dsn))  # type: ignore[arg-type]
        assert _decide_with_gates(checker, datetime.now(UTC)).phase == "Progressing"
    finally:
        server.stop()
    with pytest.raises(DatabaseUnreachable, match=r"127\.0\.0\.1"):
        PostgresGates(dsn, connect_timeout=timedelta(seconds=2)).rows("SELECT 1")
    status = _decide_with_gates(checker, datetime.now(UTC))
    assert status.phase == "Blocked" and status.reason == "DatabaseUnreachable"
    assert "database unreachable" in (status.message or "")
    assert status.gates is not None and status.gates.results[0].verdict == "fail"


def test_a_server_that_stops_answering_blocks_within_the_timeout(database: str) -> None:
    gates = PostgresGates(database, statement_timeout=timedelta(seconds=1))
    with (
        frozen_backend(database, APPLICATION_NAME, "pg_sleep") as frozen,
        pytest.raises(DatabaseUnreachable, match=r"no answer within 3 s"),
    ):
        gates.rows("SELECT pg_sleep(60)")
    assert frozen
    assert gates.rows("SELECT 1") == [(1,)]  # the next check gets a fresh connection


def test_the_password_never_reaches_a_message(postgres: PostgresServer) -> None:
    dsn = f"postgresql://nobody:hunter2-secret@127.0.0.1:{postgres.port}/postgres"
    with pytest.raises((DatabaseUnreachable, QueryFailed)) as caught:
        PostgresGates(dsn).rows("SELECT 1")
    assert "hunter2-secret" not in str(caught.value)
    ref = DatabaseRef.model_validate({"secretKeyRef": {"name": "x", "key": "y"}})
    assert ref.statement_timeout == "5s"
