"""What the PostgreSQL catalog says about a relation: its kind, columns, types and key indexes.

Invariant: read-only queries of ``pg_catalog``; nothing here decides what is allowed (that is
:mod:`shared.datasets`), it only reports what the database has.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from shared.pgtypes import ColumnType, kind_of
from shared.records import fetch_tuples

TABLE_KINDS = {"r": "table", "p": "partitioned table", "m": "materialized view", "f": "foreign table"}
VIEW_KINDS = {"v": "view"}
_MAX_DOMAIN_DEPTH = 16


@dataclass(frozen=True)
class CatalogColumn:
    """One column of a relation: name, whether it may be NULL, its type, its comment."""

    name: str
    not_null: bool
    type: ColumnType
    attnum: int
    collation: int
    comment: str


@dataclass(frozen=True)
class Relation:
    """A table, view or materialized view, as the catalog describes it."""

    oid: int
    schema: str
    name: str
    relkind: str
    columns: tuple[CatalogColumn, ...]
    comment: str

    @property
    def kind_name(self) -> str:
        """``table``, ``view``, ``materialized view``…"""
        return TABLE_KINDS.get(self.relkind) or VIEW_KINDS.get(self.relkind) or f"relation of kind {self.relkind!r}"

    @property
    def is_view(self) -> bool:
        return self.relkind in VIEW_KINDS

    def column(self, name: str) -> CatalogColumn | None:
        return next((c for c in self.columns if c.name == name), None)


def _column_type(conn: psycopg.Connection[Any], type_oid: int, display: str) -> ColumnType:
    """Unwrap domains down to the base type and classify it."""
    oid = type_oid
    for _ in range(_MAX_DOMAIN_DEPTH):
        ((typname, cast, typtype, basetype, category),) = fetch_tuples(
            conn,
            "SELECT t.typname, format('%%I.%%I', n.nspname, t.typname), t.typtype, t.typbasetype, t.typcategory"
            " FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.oid = %s",
            (oid,),
        )
        if typtype != "d":
            break
        oid = basetype
    labels: tuple[str, ...] = ()
    if typtype == "e":
        labels = tuple(
            r[0]
            for r in fetch_tuples(
                conn, "SELECT enumlabel FROM pg_enum WHERE enumtypid = %s ORDER BY enumsortorder", (oid,)
            )
        )
    return ColumnType(
        display=display,
        base=typname,
        cast=cast,
        kind=kind_of(typname, is_enum=typtype == "e", is_array=category == "A"),
        labels=labels,
    )


def find_relation(conn: psycopg.Connection[Any], name: str) -> Relation | None:
    """The relation ``name`` (``schema.table`` or a name on the search path), or None.

    ``name`` follows SQL's rules: unquoted parts are folded to lower case.
    """
    rows = fetch_tuples(
        conn,
        "SELECT c.oid, n.nspname, c.relname, c.relkind, coalesce(obj_description(c.oid, 'pg_class'), '')"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass(%s)",
        (name,),
    )
    if not rows:
        return None
    oid, schema, relname, relkind, comment = rows[0]
    columns = tuple(
        CatalogColumn(
            name=attname,
            not_null=not_null,
            type=_column_type(conn, type_oid, display),
            attnum=attnum,
            collation=collation,
            comment=col_comment,
        )
        for attname, not_null, type_oid, display, attnum, collation, col_comment in fetch_tuples(
            conn,
            "SELECT a.attname, a.attnotnull, a.atttypid, format_type(a.atttypid, a.atttypmod), a.attnum,"
            " a.attcollation, coalesce(col_description(a.attrelid, a.attnum), '')"
            " FROM pg_attribute a WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            (oid,),
        )
    )
    return Relation(oid, schema, relname, relkind, columns, comment)


def has_btree_index(conn: psycopg.Connection[Any], relation: Relation, column: CatalogColumn, unique: bool) -> bool:
    """Whether a valid b-tree index leads with this column in the column's own collation (so
    the planner's and the chunks' comparisons can use it); with ``unique``, a non-partial
    unique index on exactly this column."""
    only = " AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL AND i.indnkeyatts = 1" if unique else ""
    rows = fetch_tuples(
        conn,
        "SELECT 1 FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam"
        " WHERE i.indrelid = %s AND i.indisvalid AND i.indkey[0] = %s AND am.amname = 'btree'"
        " AND i.indcollation[0] = %s" + only,
        (relation.oid, column.attnum, column.collation),
    )
    return bool(rows)
