"""The pure judges of the gates: schema types, migration history, environment, backups."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from controller.api.gates import Gates
from controller.gates.backup import judge_backup
from controller.gates.environment import Forbidden, judge_environment, objects_needed
from controller.gates.history import history_query, judge_history, version_key
from controller.gates.schema import ColumnFact, TableWanted, judge_schema, parse_type

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)

# -- schema -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "data_type", "modifiers"),
    [
        ("VARCHAR(255)", "character varying", (255,)),
        ("decimal(20, 8)", "numeric", (20, 8)),
        ("NUMERIC(10)", "numeric", (10, 0)),
        ("TIMESTAMP", "timestamp without time zone", ()),
        ("timestamptz", "timestamp with time zone", ()),
        ("int", "integer", ()),
        ("bigserial", "bigint", ()),
        ("double precision", "double precision", ()),
        ("text", "text", ()),
    ],
)
def test_types_are_read_as_postgres_reads_them(
    written: str, data_type: str, modifiers: tuple[int, ...]
) -> None:
    parsed = parse_type(written)
    assert (parsed.data_type, parsed.modifiers) == (data_type, modifiers)


def test_not_a_type_is_refused_at_admission() -> None:
    with pytest.raises(ValueError, match="not a SQL type"):
        parse_type("varchar(255) NOT NULL")
    with pytest.raises(ValidationError, match="not a SQL type"):
        Gates.model_validate(
            {
                "database": {"secretKeyRef": {"name": "db", "key": "url"}},
                "schema": {"tables": [{"name": "t", "columns": [{"name": "c", "type": "(("}]}]},
            }
        )


def _fact(column: str, data_type: str, **kw: Any) -> ColumnFact:
    return ColumnFact("public", "security_keys", column, data_type, kw.pop("udt", data_type), **kw)


def test_schema_names_each_missing_table_column_and_wrong_type() -> None:
    wanted = [
        TableWanted("security_keys", (("key_hash", "varchar(255)"), ("id", None))),
        TableWanted("crypto_prices"),
    ]
    facts = [
        _fact("key_hash", "character varying", character_maximum_length=64),
        _fact("id", "integer"),
    ]
    check = judge_schema(wanted, {("public", "security_keys")}, facts)
    assert check.verdict == "fail" and check.reason == "SchemaMismatch"
    assert check.evidence == (
        "column public.security_keys.key_hash is character varying(64), "
        "expected character varying(255)",
        "table public.crypto_prices does not exist",
    )
    facts[0] = _fact("key_hash", "character varying", character_maximum_length=255)
    tables = {("public", "security_keys"), ("public", "crypto_prices")}
    assert judge_schema(wanted, tables, facts).verdict == "pass"


# -- migration history ------------------------------------------------------------


def test_flyway_versions_are_ordered_numerically() -> None:
    assert version_key("1.10") > version_key("1.9") > version_key("1.2.3")
    rows = [("1.9", True), ("1.10", True)]
    assert judge_history("flyway", "1.10", rows).verdict == "pass"
    assert judge_history("flyway", "1.11", rows).reason == "MigrationsBehind"
    failed = judge_history("flyway", "1.9", [*rows, ("1.11", False)])
    assert failed.reason == "MigrationFailed" and "1.11" in failed.message


def test_alembic_needs_the_exact_head_django_and_prisma_the_name() -> None:
    assert judge_history("alembic", "ae1027a6acf", [("ae1027a6acf",)]).verdict == "pass"
    assert judge_history("alembic", "ae1027a6acf", [("1975ea83b712",)]).verdict == "fail"
    names = [("0001_initial",), ("0002_key_hash",)]
    assert judge_history("django", "0002_key_hash", names).verdict == "pass"
    assert judge_history("django", "0003_prices", names).verdict == "fail"
    prisma = [("20261101_init", True, False), ("20261120_prices", False, False)]
    assert judge_history("prisma", "20261101_init", prisma).reason == "MigrationFailed"
    assert judge_history("prisma", "20261101_init", prisma[:1]).verdict == "pass"


def test_preset_queries_quote_the_table_and_bind_the_app() -> None:
    query = history_query("django", app="payments")
    assert query.sql == 'SELECT name FROM "django_migrations" WHERE app = %s'
    assert query.params == ("payments",)
    assert '"ops"."flyway_history"' in history_query("flyway", table="ops.flyway_history").sql
    assert history_query("custom", query="SELECT v FROM versions").sql == "SELECT v FROM versions"


# -- environment ------------------------------------------------------------------

TEMPLATE: dict[str, Any] = {
    "spec": {
        "containers": [
            {
                "name": "app",
                "env": [
                    {"name": "NODE_ENV", "value": "production"},
                    {
                        "name": "DATABASE_URL",
                        "valueFrom": {"secretKeyRef": {"name": "app-db", "key": "url"}},
                    },
                    {
                        "name": "FEATURE",
                        "valueFrom": {
                            "configMapKeyRef": {"name": "flags", "key": "f", "optional": True}
                        },
                    },
                ],
                "envFrom": [{"secretRef": {"name": "app-secrets"}, "prefix": "APP_"}],
            }
        ],
        "volumes": [{"name": "tls", "secret": {"secretName": "tls", "items": [{"key": "crt"}]}}],
    }
}
OBJECTS: dict[Any, Any] = {
    ("Secret", "app-db"): {"url": "postgresql://db/prod"},
    ("Secret", "app-secrets"): {"JWT_SECRET": "s3cr3t-value"},
    ("Secret", "tls"): {"crt": "..."},
    ("ConfigMap", "flags"): None,
}


def test_environment_passes_when_everything_resolves() -> None:
    assert objects_needed(TEMPLATE) == [
        ("ConfigMap", "flags"),
        ("Secret", "app-db"),
        ("Secret", "app-secrets"),
        ("Secret", "tls"),
    ]
    required = ["DATABASE_URL", "APP_JWT_SECRET"]
    check = judge_environment(TEMPLATE, "app", required, [], OBJECTS)
    assert check.verdict == "pass", check


def test_missing_key_missing_variable_and_forbidden_value_are_named_without_values() -> None:
    objects = {**OBJECTS, ("Secret", "app-db"): {"uri": "x"}, ("Secret", "tls"): None}
    objects[("Secret", "app-secrets")] = {"JWT_SECRET": "test-secret-from-jest-setup"}
    forbidden = [Forbidden(r"(?i)jest|test", reason="jest.setup.js default")]
    check = judge_environment(TEMPLATE, "app", ["REDIS_URL"], forbidden, objects)
    assert check.verdict == "fail" and check.reason == "ReferenceMissing"
    assert check.evidence == (
        "Secret app-db has no key url (container app env DATABASE_URL)",
        "Secret tls not found (volume tls)",
        "required variable REDIS_URL is not defined in container app",
        "variable APP_JWT_SECRET in container app (Secret app-secrets) matches forbidden "
        "pattern '(?i)jest|test' (jest.setup.js default)",
    )
    assert "test-secret-from-jest-setup" not in str(check)


def test_forbidden_pattern_can_target_named_variables() -> None:
    rule = Forbidden("^production$", variables=("NODE_ENV",))
    check = judge_environment(TEMPLATE, None, [], [rule], OBJECTS)
    assert check.reason == "EnvironmentInvalid" and "NODE_ENV" in check.message


# -- backup -----------------------------------------------------------------------


def test_backup_age() -> None:
    day = timedelta(hours=24)
    assert judge_backup(NOW - timedelta(hours=3), "CronJob db-backup", day, NOW).verdict == "pass"
    old = judge_backup(NOW - timedelta(hours=30), "CronJob db-backup", day, NOW)
    assert old.reason == "BackupTooOld" and "30h old (max 24h" in old.message
    assert judge_backup(None, "CronJob db-backup", day, NOW).reason == "NoBackup"
