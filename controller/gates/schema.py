"""The schema gate: do the tables and columns the new version needs exist, with their types?

Users write types the way their migrations do (`VARCHAR(255)`, `DECIMAL(20, 8)`,
`TIMESTAMP`); PostgreSQL reports them in information_schema's words
(`character varying`, 255). Both are brought to one form: the user's text
through pglast, so aliases and spacing are understood exactly as the
server understands them, and the catalogue row through its columns.
A type without modifiers checks the base type only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pglast import ast, parse_sql
from pglast.parser import ParseError

from controller.gates.checks import SCHEMA, GateCheck, failed, passed

# pg_catalog type names -> information_schema.columns.data_type
_DATA_TYPES = {
    "varchar": "character varying",
    "bpchar": "character",
    "int2": "smallint",
    "int4": "integer",
    "int8": "bigint",
    "float4": "real",
    "float8": "double precision",
    "bool": "boolean",
    "timestamp": "timestamp without time zone",
    "timestamptz": "timestamp with time zone",
    "time": "time without time zone",
    "timetz": "time with time zone",
    "varbit": "bit varying",
    "serial": "integer",
    "bigserial": "bigint",
    "smallserial": "smallint",
    "int": "integer",
    "decimal": "numeric",
}
_UDT = {"serial": "int4", "bigserial": "int8", "smallserial": "int2"}
_BUILTIN = set(_DATA_TYPES.values()) | {
    "numeric",
    "text",
    "uuid",
    "json",
    "jsonb",
    "date",
    "bytea",
    "interval",
    "bit",
    "inet",
    "cidr",
    "macaddr",
    "money",
    "xml",
    "tsvector",
    "oid",
}
_LENGTH_TYPES = {"character varying", "character", "bit", "bit varying"}
_PRECISION_TYPES = {
    "timestamp without time zone",
    "timestamp with time zone",
    "time without time zone",
    "time with time zone",
    "interval",
}


@dataclass(frozen=True)
class SqlType:
    """A type in information_schema's terms; `modifiers` empty means "any"."""

    data_type: str
    udt_name: str
    modifiers: tuple[int, ...] = ()
    array: bool = False

    def __str__(self) -> str:
        mods = f"({', '.join(map(str, self.modifiers))})" if self.modifiers else ""
        if self.array:
            return f"{self.udt_name.removeprefix('_')}[]"
        if self.data_type == "USER-DEFINED":
            return self.udt_name
        return f"{self.data_type}{mods}"


@dataclass(frozen=True)
class ColumnFact:
    """One row of information_schema.columns."""

    schema: str
    table: str
    column: str
    data_type: str
    udt_name: str
    character_maximum_length: int | None = None
    numeric_precision: int | None = None
    numeric_scale: int | None = None
    datetime_precision: int | None = None


@dataclass(frozen=True)
class TableWanted:
    name: str  # "table" or "schema.table"
    columns: tuple[tuple[str, str | None], ...] = ()

    @property
    def qualified(self) -> tuple[str, str]:
        schema, _, table = self.name.rpartition(".")
        return (schema or "public", table)


def parse_type(text: str) -> SqlType:
    """The information_schema form of a type written as in SQL; ValueError if it is not one."""
    try:
        statements = parse_sql(f"CREATE TABLE _t (_c {text})")
    except ParseError as exc:
        raise ValueError(f"{text!r} is not a SQL type: {exc.args[0]}") from exc
    stmt = statements[0].stmt if len(statements) == 1 else None
    elements = stmt.tableElts if isinstance(stmt, ast.CreateStmt) else None
    column = elements[0] if elements and len(elements) == 1 else None
    if not isinstance(column, ast.ColumnDef) or column.constraints or column.typeName is None:
        raise ValueError(f"{text!r} is not a SQL type")
    type_name = column.typeName
    name = str((type_name.names or ())[-1].sval).lower()
    modifiers = []
    for mod in type_name.typmods or ():
        value = getattr(getattr(mod, "val", None), "ival", None)
        if not isinstance(value, int):
            raise ValueError(f"{text!r}: type modifiers must be integers")
        modifiers.append(value)
    data_type = _DATA_TYPES.get(name, name)
    if data_type == "numeric" and len(modifiers) == 1:
        modifiers.append(0)  # numeric(p) is numeric(p, 0)
    udt = _UDT.get(name, name)
    if data_type not in _BUILTIN:
        data_type = "USER-DEFINED"
    array = bool(type_name.arrayBounds)
    if array:
        data_type, udt = "ARRAY", f"_{udt}"
    return SqlType(data_type, udt, tuple(modifiers), array)


def fact_type(fact: ColumnFact) -> SqlType:
    data_type = fact.data_type
    modifiers: tuple[int, ...] = ()
    if data_type in _LENGTH_TYPES and fact.character_maximum_length is not None:
        modifiers = (fact.character_maximum_length,)
    elif data_type == "numeric" and fact.numeric_precision is not None:
        modifiers = (fact.numeric_precision, fact.numeric_scale or 0)
    elif data_type in _PRECISION_TYPES and fact.datetime_precision is not None:
        modifiers = (fact.datetime_precision,)
    return SqlType(data_type, fact.udt_name, modifiers, data_type == "ARRAY")


def type_matches(wanted: SqlType, have: SqlType) -> bool:
    if wanted.data_type != have.data_type:
        return False
    if wanted.data_type in ("USER-DEFINED", "ARRAY") and wanted.udt_name != have.udt_name:
        return False
    return not wanted.modifiers or wanted.modifiers == have.modifiers


def judge_schema(
    wanted: Sequence[TableWanted], tables: Iterable[tuple[str, str]], columns: Iterable[ColumnFact]
) -> GateCheck:
    """Every wanted table exists, and every wanted column with a matching type where given."""
    existing = set(tables)
    by_column = {(c.schema, c.table, c.column): c for c in columns}
    problems: list[str] = []
    checked = 0
    for table in wanted:
        schema, name = table.qualified
        if (schema, name) not in existing:
            problems.append(f"table {schema}.{name} does not exist")
            continue
        checked += 1
        for column, type_text in table.columns:
            fact = by_column.get((schema, name, column))
            where = f"{schema}.{name}.{column}"
            if fact is None:
                problems.append(f"column {where} does not exist")
                continue
            checked += 1
            if type_text is None:
                continue
            want, have = parse_type(type_text), fact_type(fact)
            if not type_matches(want, have):
                problems.append(f"column {where} is {have}, expected {want}")
    if problems:
        return failed(
            SCHEMA,
            "SchemaMismatch",
            f"{len(problems)} schema problem(s): {problems[0]}",
            problems,
        )
    return passed(SCHEMA, f"{checked} table(s) and column(s) present with the expected types")
