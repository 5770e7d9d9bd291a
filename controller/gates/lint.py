"""The migration linter: which statements break the version that is still running.

During a canary the old and the new version run side by side against one
database, so a migration must only *expand* the schema. The SQL is parsed by
pglast (PostgreSQL's own parser), never by regular expressions, so comments,
quoting and multi-statement files are read exactly as the server would.

Two kinds of finding:
- `breaking`: the running version can fail (DROP TABLE/COLUMN, renames, type
  changes, SET NOT NULL, a new NOT NULL column without a default, dropping or
  narrowing constraints, TRUNCATE);
- `locking`: the statement takes a lock that stalls a large table (CREATE
  INDEX without CONCURRENTLY, a validated constraint, a table rewrite).
Tables created earlier in the same files (without IF NOT EXISTS, which may
meet a live table) are new and empty, so nothing about them is reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pglast import ast, enums, parse_plpgsql, parse_sql
from pglast.parser import ParseError

from controller.gates.checks import MIGRATION_LINT, GateCheck, failed, passed

Severity = Literal["breaking", "locking", "error"]
_AT = enums.AlterTableType
_CONSTR = enums.ConstrType
_OBJ = enums.ObjectType

_DROPPED_OBJECTS = {
    _OBJ.OBJECT_TABLE: "DROP TABLE",
    _OBJ.OBJECT_VIEW: "DROP VIEW",
    _OBJ.OBJECT_MATVIEW: "DROP MATERIALIZED VIEW",
    _OBJ.OBJECT_SCHEMA: "DROP SCHEMA",
    _OBJ.OBJECT_SEQUENCE: "DROP SEQUENCE",
    _OBJ.OBJECT_TYPE: "DROP TYPE",
    _OBJ.OBJECT_FUNCTION: "DROP FUNCTION",
}
_RENAMES = {
    _OBJ.OBJECT_TABLE: "renames table",
    _OBJ.OBJECT_COLUMN: "renames column",
    _OBJ.OBJECT_VIEW: "renames view",
    _OBJ.OBJECT_SCHEMA: "renames schema",
    _OBJ.OBJECT_TABCONSTRAINT: "renames constraint",
    _OBJ.OBJECT_TYPE: "renames type",
    _OBJ.OBJECT_FUNCTION: "renames function",
}
_NARROWING = {
    _CONSTR.CONSTR_CHECK: "CHECK",
    _CONSTR.CONSTR_FOREIGN: "FOREIGN KEY",
    _CONSTR.CONSTR_UNIQUE: "UNIQUE",
    _CONSTR.CONSTR_PRIMARY: "PRIMARY KEY",
    _CONSTR.CONSTR_EXCLUSION: "EXCLUDE",
    _CONSTR.CONSTR_NOTNULL: "NOT NULL",
}
_SNIPPET = 200


@dataclass(frozen=True)
class Finding:
    file: str
    line: int
    severity: Severity
    problem: str
    statement: str

    def describe(self) -> str:
        return f"{self.file}:{self.line}: {self.severity}: {self.problem}: {self.statement}"


@dataclass(frozen=True)
class MigrationFile:
    name: str
    sql: str


def _line_of(sql: str, offset: int) -> int:
    return sql.count("\n", 0, max(0, offset)) + 1


def _snippet(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _SNIPPET else flat[: _SNIPPET - 3] + "..."


def _relation(node: Any) -> str:
    if not isinstance(node, ast.RangeVar):
        return "?"
    return ".".join(p for p in (node.schemaname, node.relname) if p)


def _key(name: str) -> str:
    """Unqualified names are taken to be in public (the default search_path)."""
    return name if "." in name else f"public.{name}"


def _plpgsql_queries(node: Any) -> Iterable[str]:
    """Every SQL statement embedded in a parsed PL/pgSQL body (static SQL only)."""
    if isinstance(node, dict):
        if "sqlstmt" in node:
            query = (node["sqlstmt"].get("PLpgSQL_expr") or {}).get("query")
            if query:
                yield query
        for value in node.values():
            yield from _plpgsql_queries(value)
    elif isinstance(node, list):
        for value in node:
            yield from _plpgsql_queries(value)


def _names(obj: Any) -> str:
    """A DROP target: a list of String nodes (schema, name) or a bare String."""
    items = obj if isinstance(obj, tuple | list) else (obj,)
    parts = [getattr(i, "sval", None) for i in items]
    if all(parts):
        return ".".join(p for p in parts if p)
    return "?"


_SERIAL = {"smallserial", "serial", "bigserial", "serial2", "serial4", "serial8"}


def _has_default(column: ast.ColumnDef) -> bool:
    type_name = column.typeName.names or () if column.typeName else ()
    names = [getattr(n, "sval", "") for n in type_name]
    if len(names) == 1 and names[0] in _SERIAL:
        return True  # nextval() of its own sequence
    return column.raw_default is not None or any(
        c.contype in (_CONSTR.CONSTR_DEFAULT, _CONSTR.CONSTR_IDENTITY, _CONSTR.CONSTR_GENERATED)
        for c in column.constraints or ()
    )


def _not_null(column: ast.ColumnDef) -> bool:
    return bool(column.is_not_null) or any(
        c.contype in (_CONSTR.CONSTR_NOTNULL, _CONSTR.CONSTR_PRIMARY)
        for c in column.constraints or ()
    )


class _Linter:
    def __init__(self) -> None:
        self.created: set[str] = set()
        self.findings: list[Finding] = []
        self._file = ""
        self._line = 0
        self._text = ""

    def _add(self, severity: Severity, problem: str) -> None:
        self.findings.append(Finding(self._file, self._line, severity, problem, self._text))

    def _is_new(self, relation: Any) -> bool:
        return _key(_relation(relation)) in self.created

    def lint_file(self, migration: MigrationFile) -> None:
        self._file = migration.name
        try:
            statements = parse_sql(migration.sql)
        except ParseError as exc:
            offset = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else 0
            self._line = _line_of(migration.sql, offset)
            self._text = _snippet(migration.sql[offset : offset + 80])
            self._add("error", f"does not parse: {exc.args[0]}")
            return
        for raw in statements:
            start = raw.stmt_location or 0
            end = start + raw.stmt_len if raw.stmt_len else len(migration.sql)
            self._line = _line_of(migration.sql, start)
            self._text = _snippet(migration.sql[start:end])
            self._statement(raw.stmt)

    def _statement(self, stmt: Any) -> None:
        match stmt:
            case ast.CreateStmt():
                # IF NOT EXISTS may meet a live table: later changes to it still count.
                if not stmt.if_not_exists:
                    self.created.add(_key(_relation(stmt.relation)))
            case ast.DoStmt():
                self._do(stmt)
            case ast.DropStmt():
                self._drop(stmt)
            case ast.RenameStmt() if stmt.relation is not None and self._is_new(stmt.relation):
                pass
            case ast.RenameStmt():
                what = _RENAMES.get(stmt.renameType) if stmt.renameType is not None else None
                what = what or "renames an object"
                self._add("breaking", f"{what}: the running version still uses the old name")
            case ast.AlterTableStmt():
                if stmt.objtype == _OBJ.OBJECT_TABLE and not self._is_new(stmt.relation):
                    for cmd in stmt.cmds or ():
                        self._alter(_relation(stmt.relation), cmd)
            case ast.IndexStmt():
                if not stmt.concurrent and not self._is_new(stmt.relation):
                    self._add(
                        "locking",
                        f"CREATE INDEX on {_relation(stmt.relation)} without CONCURRENTLY "
                        "blocks writes for the whole build",
                    )
            case ast.TruncateStmt():
                live = [r for r in stmt.relations or () if not self._is_new(r)]
                if not live:
                    return
                tables = ", ".join(_relation(r) for r in live)
                self._add("breaking", f"TRUNCATE {tables} removes rows the running version reads")
            case ast.ReindexStmt():
                if not any(getattr(o, "defname", "") == "concurrently" for o in stmt.params or ()):
                    self._add("locking", "REINDEX without CONCURRENTLY blocks writes")
            case ast.VacuumStmt():
                options = {getattr(o, "defname", "") for o in stmt.options or ()}
                if "full" in options:
                    self._add("locking", "VACUUM FULL rewrites the table under an exclusive lock")
            case ast.ClusterStmt():
                self._add("locking", "CLUSTER rewrites the table under an exclusive lock")
            case ast.LockStmt():
                tables = ", ".join(_relation(r) for r in stmt.relations or ())
                self._add("locking", f"LOCK TABLE {tables}")

    def _do(self, stmt: ast.DoStmt) -> None:
        """A DO block's static statements are linted like the file's own."""
        body = next((a.arg.sval for a in stmt.args or () if a.defname == "as"), None)
        language = next((a.arg.sval for a in stmt.args or () if a.defname == "language"), None)
        if body is None or (language or "plpgsql").lower() != "plpgsql":
            return
        quote = "$canary_lint$"
        try:
            parsed = parse_plpgsql(
                f"CREATE FUNCTION pg_temp.canary_lint() RETURNS void LANGUAGE plpgsql "
                f"AS {quote}{body}{quote}"
            )
        except ParseError as exc:
            self._add("error", f"DO block does not parse: {exc.args[0]}")
            return
        for query in _plpgsql_queries(parsed):
            try:
                inner = parse_sql(query)
            except ParseError:
                continue
            for raw in inner:
                self._statement(raw.stmt)

    def _drop(self, stmt: ast.DropStmt) -> None:
        kind = _DROPPED_OBJECTS.get(stmt.removeType) if stmt.removeType is not None else None
        if kind is None:
            return
        names = [_names(o) for o in stmt.objects or ()]
        if stmt.removeType == _OBJ.OBJECT_TABLE:
            names = [n for n in names if _key(n) not in self.created]
            if not names:
                return
        self._add("breaking", f"{kind} {', '.join(names)}: the running version still uses it")

    def _alter(self, table: str, cmd: Any) -> None:
        if not isinstance(cmd, ast.AlterTableCmd):
            return
        sub, column = cmd.subtype, cmd.name
        if sub == _AT.AT_DropColumn:
            self._add("breaking", f"drops column {table}.{column}: the running version reads it")
        elif sub == _AT.AT_AlterColumnType:
            self._add("breaking", f"changes the type of {table}.{column}")
            self._add("locking", f"changing the type of {table}.{column} rewrites the table")
        elif sub == _AT.AT_SetNotNull:
            self._add(
                "breaking",
                f"SET NOT NULL on {table}.{column}: the running version may still write NULL",
            )
            self._add("locking", f"SET NOT NULL on {table}.{column} scans the whole table")
        elif sub == _AT.AT_DropNotNull:
            self._add(
                "breaking",
                f"drops NOT NULL on {table}.{column}: the running version may read NULL",
            )
        elif sub == _AT.AT_AddColumn and isinstance(cmd.def_, ast.ColumnDef):
            self._add_column(table, cmd.def_)
        elif sub == _AT.AT_DropConstraint:
            self._add("breaking", f"drops constraint {column} on {table}")
        elif sub == _AT.AT_AddConstraint and isinstance(cmd.def_, ast.Constraint):
            self._add_constraint(table, cmd.def_)

    def _add_column(self, table: str, column: ast.ColumnDef) -> None:
        if _not_null(column) and not _has_default(column):
            self._add(
                "breaking",
                f"adds NOT NULL column {table}.{column.colname} without a default: "
                "the running version's INSERTs fail",
            )

    def _add_constraint(self, table: str, constraint: ast.Constraint) -> None:
        kind = _NARROWING.get(constraint.contype) if constraint.contype is not None else None
        if kind is None:
            return
        name = f" {constraint.conname}" if constraint.conname else ""
        self._add(
            "breaking",
            f"adds {kind} constraint{name} on {table}: narrows what the running version may write",
        )
        if not constraint.skip_validation:
            self._add("locking", f"validating {kind} constraint{name} scans {table}; use NOT VALID")


def lint_migrations(files: Iterable[MigrationFile]) -> list[Finding]:
    """Every finding, in file and statement order; files are applied in the order given."""
    linter = _Linter()
    for migration in files:
        linter.lint_file(migration)
    return linter.findings


def blocking(findings: Iterable[Finding], policy: str, locks: str) -> list[Finding]:
    """The findings that stop a release under the gate's policy."""
    result = []
    for finding in findings:
        if (
            finding.severity == "error"
            or (finding.severity == "breaking" and policy == "expand-only")
            or (finding.severity == "locking" and locks == "block")
        ):
            result.append(finding)
    return result


#: Marker line the migration-extraction Job prints before each file.
FILE_MARKER = "--- canary-migration-file: "


def split_extracted(log: str) -> list[MigrationFile]:
    """Files printed by the extraction Job: a marker line with the path, then the content."""
    files: list[MigrationFile] = []
    name: str | None = None
    lines: list[str] = []
    for line in log.splitlines(keepends=True):
        if line.startswith(FILE_MARKER):
            if name is not None:
                files.append(MigrationFile(name, "".join(lines)))
            name, lines = line[len(FILE_MARKER) :].strip(), []
        elif name is not None:
            lines.append(line)
    if name is not None:
        files.append(MigrationFile(name, "".join(lines)))
    return files


def judge_lint(
    files: Sequence[MigrationFile], findings: Sequence[Finding], policy: str, locks: str
) -> GateCheck:
    """The lint gate's verdict: fail on what blocks under the policy, warn on the rest."""
    if not files:
        return failed(MIGRATION_LINT, "NoMigrationFiles", "no migration files found to lint")
    names = ", ".join(f.name for f in files)
    stopping = blocking(findings, policy, locks)
    # Evidence lists what blocks first, then the warnings.
    evidence = [f.describe() for f in [*stopping, *(f for f in findings if f not in stopping)]]
    if stopping:
        first = stopping[0]
        return failed(
            MIGRATION_LINT,
            "MigrationSyntaxError" if first.severity == "error" else "UnsafeMigration",
            f"{len(stopping)} blocking statement(s) (policy {policy}); first: {first.describe()}",
            evidence,
        )
    if findings:
        return GateCheck(
            MIGRATION_LINT,
            "warn",
            "MigrationWarnings",
            f"{len(findings)} finding(s) in {names}, none blocking under policy {policy}",
            tuple(evidence),
        )
    return passed(MIGRATION_LINT, f"{len(files)} file(s) expand the schema only: {names}")
