"""The migration linter: what breaks the running version, what locks, and where."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from controller.cli.lint_migrations import main
from controller.gates.lint import (
    FILE_MARKER,
    MigrationFile,
    blocking,
    judge_lint,
    lint_migrations,
    split_extracted,
)

SEED = """-- Required migrations before deployment:
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


def lint(sql: str, name: str = "001.sql") -> list[tuple[int, str, str]]:
    return [(f.line, f.severity, f.problem) for f in lint_migrations([MigrationFile(name, sql)])]


def test_the_seed_migrations_only_expand() -> None:
    assert lint(SEED) == []


def test_drop_column_is_breaking_with_its_line_and_statement() -> None:
    sql = (
        "-- v2\nALTER TABLE users ADD COLUMN email text;\n\n"
        "ALTER TABLE users\n  DROP COLUMN legacy;\n"
    )
    [finding] = lint_migrations([MigrationFile("002_cleanup.sql", sql)])
    assert (finding.file, finding.line, finding.severity) == ("002_cleanup.sql", 4, "breaking")
    assert finding.statement == "ALTER TABLE users DROP COLUMN legacy"
    assert "drops column users.legacy" in finding.describe()


@pytest.mark.parametrize(
    ("sql", "problem"),
    [
        ("DROP TABLE audit_logs;", "DROP TABLE audit_logs"),
        ("ALTER TABLE users RENAME COLUMN name TO full_name;", "renames column"),
        ("ALTER TABLE users RENAME TO accounts;", "renames table"),
        ("ALTER TABLE prices ALTER COLUMN price TYPE numeric(10, 2);", "changes the type"),
        ("ALTER TABLE users ALTER COLUMN email SET NOT NULL;", "SET NOT NULL on users.email"),
        ("ALTER TABLE users ADD COLUMN tier int NOT NULL;", "without a default"),
        ("ALTER TABLE users DROP CONSTRAINT users_email_key;", "drops constraint"),
        ("ALTER TABLE users ADD CONSTRAINT c CHECK (age > 0);", "adds CHECK constraint c"),
        ("ALTER TABLE users ALTER COLUMN email DROP NOT NULL;", "drops NOT NULL"),
        ("TRUNCATE sessions;", "TRUNCATE sessions"),
    ],
)
def test_breaking_statements(sql: str, problem: str) -> None:
    findings = lint(sql)
    assert any(sev == "breaking" and problem in text for _, sev, text in findings), findings


@pytest.mark.parametrize(
    ("sql", "problem"),
    [
        ("CREATE INDEX users_email ON users (email);", "without CONCURRENTLY"),
        ("REINDEX TABLE users;", "REINDEX"),
        ("VACUUM FULL users;", "VACUUM FULL"),
        ("ALTER TABLE users ADD CONSTRAINT c CHECK (age > 0);", "use NOT VALID"),
    ],
)
def test_locking_statements(sql: str, problem: str) -> None:
    findings = lint(sql)
    assert any(sev == "locking" and problem in text for _, sev, text in findings), findings


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE INDEX CONCURRENTLY users_email ON users (email);",
        "ALTER TABLE users ADD COLUMN tier int NOT NULL DEFAULT 0;",
        "ALTER TABLE users ADD COLUMN nickname text;",
        "ALTER TABLE users ADD COLUMN id2 bigint GENERATED ALWAYS AS IDENTITY;",
        "CREATE TABLE t (a int NOT NULL);\nCREATE INDEX ON t (a);\nALTER TABLE t DROP COLUMN a;",
        "CREATE TABLE t (a int);\nDROP TABLE t;",
        "-- ALTER TABLE users DROP COLUMN legacy;\nSELECT 'DROP TABLE users';",
    ],
)
def test_expanding_and_new_table_statements_pass(sql: str) -> None:
    assert lint(sql) == []


def test_create_if_not_exists_may_meet_a_live_table() -> None:
    sql = "CREATE TABLE IF NOT EXISTS t (a int);\nALTER TABLE t DROP COLUMN a;"
    assert [(line, sev) for line, sev, _ in lint(sql)] == [(2, "breaking")]


def test_a_file_that_does_not_parse_is_an_error_at_its_line() -> None:
    assert lint("SELECT 1;\n\nALTER TABL users ADD x int;") == [
        (3, "error", 'does not parse: syntax error at or near "TABL"')
    ]


def test_policy_decides_what_blocks() -> None:
    findings = lint_migrations([MigrationFile("a.sql", "DROP TABLE x;\nCREATE INDEX i ON y (z);")])
    assert [f.severity for f in blocking(findings, "expand-only", "warn")] == ["breaking"]
    assert blocking(findings, "warn", "warn") == []
    assert [f.severity for f in blocking(findings, "warn", "block")] == ["locking"]
    files = [MigrationFile("a.sql", "")]
    assert judge_lint(files, findings, "expand-only", "warn").verdict == "fail"
    assert judge_lint(files, findings, "warn", "warn").verdict == "warn"
    assert judge_lint(files, [], "expand-only", "warn").verdict == "pass"
    assert judge_lint([], [], "expand-only", "warn").reason == "NoMigrationFiles"


def test_gate_message_names_file_line_and_statement() -> None:
    files = [MigrationFile("001.sql", SEED), MigrationFile("002.sql", "\nDROP TABLE users;")]
    check = judge_lint(files, lint_migrations(files), "expand-only", "warn")
    assert check.verdict == "fail" and check.reason == "UnsafeMigration"
    assert "002.sql:2: breaking: DROP TABLE users" in check.message


def test_files_printed_by_the_extraction_job_are_split_back() -> None:
    log = f"{FILE_MARKER}001.sql\nSELECT 1;\n\n{FILE_MARKER}002.sql\nDROP TABLE x;\n"
    files = split_extracted(log)
    assert [f.name for f in files] == ["001.sql", "002.sql"]
    assert lint_migrations(files)[0].line == 1 and files[1].sql == "DROP TABLE x;\n"


# -- canaryctl lint-migrations --------------------------------------------------


def _write(tmp_path: Path, name: str, sql: str) -> str:
    path = tmp_path / name
    path.write_text(sql)
    return str(path)


def test_cli_exits_non_zero_on_a_breaking_statement(tmp_path: Path) -> None:
    good = _write(tmp_path, "001.sql", SEED)
    bad = _write(tmp_path, "002.sql", "ALTER TABLE security_keys\n  DROP COLUMN key_hash;\n")
    out = io.StringIO()
    assert main([good, bad], out=out) == 1
    text = out.getvalue()
    assert f"{bad}:1: breaking: drops column security_keys.key_hash" in text
    assert "[BLOCKS]" in text and text.rstrip().endswith(
        "1 blocking (policy expand-only, locks warn)"
    )


def test_cli_passes_safe_migrations_and_warn_policy(tmp_path: Path) -> None:
    good = _write(tmp_path, "001.sql", SEED)
    assert main([good], out=io.StringIO()) == 0
    bad = _write(tmp_path, "002.sql", "DROP TABLE crypto_prices;")
    assert main(["--policy", "warn", good, bad], out=io.StringIO()) == 0


def test_cli_json_and_usage_errors(tmp_path: Path) -> None:
    bad = _write(tmp_path, "002.sql", "CREATE INDEX i ON t (a);")
    out = io.StringIO()
    assert main(["-o", "json", "--locks", "block", bad], out=out) == 1
    [row] = json.loads(out.getvalue())
    assert row["severity"] == "locking" and row["blocks"] and row["line"] == 1
    assert main([str(tmp_path / "missing.sql")], out=io.StringIO()) == 2
    assert main([], out=io.StringIO()) == 2


def _problems(sql: str) -> list[str]:
    return [f"{f.severity}: {f.problem}" for f in lint_migrations([MigrationFile("m.sql", sql)])]


@pytest.mark.parametrize(
    "sql",
    [
        "DO $$ BEGIN ALTER TABLE users DROP COLUMN email; END $$;",
        "DO $$ BEGIN IF true THEN ALTER TABLE users ALTER COLUMN email SET NOT NULL; "
        "END IF; END $$;",
    ],
)
def test_a_breaking_statement_inside_a_do_block_is_found(sql: str) -> None:
    assert any(p.startswith("breaking") for p in _problems(sql))


def test_a_new_table_does_not_hide_a_live_one_of_the_same_name_in_another_schema() -> None:
    sql = "CREATE TABLE events (id int);\nALTER TABLE archive.events DROP COLUMN payload;"
    assert any("drops column" in p for p in _problems(sql))


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TABLE fresh (a int);\nALTER TABLE fresh RENAME COLUMN a TO b;",
        "CREATE TABLE fresh (a int);\nTRUNCATE fresh;",
    ],
)
def test_nothing_is_reported_about_a_table_created_in_the_same_files(sql: str) -> None:
    assert _problems(sql) == []


def test_a_serial_column_has_a_default() -> None:
    problems = _problems("ALTER TABLE users ADD COLUMN seq bigserial NOT NULL;")
    assert not any("without a default" in p for p in problems)
