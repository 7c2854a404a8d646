"""The dataset registry: what can be exported, read from the datasets file and checked
against the live catalog.

Invariant: every identifier that reaches SQL comes from this registry (never from a request),
and the registry holds only what the catalog confirmed when the process started: the relation
exists, every column named exists, the key is one column that is NOT NULL, unique and b-tree
indexed (for a view, which cannot prove it, the file says ``key_unique: true``), every filter
operator is one its column's type has, every scope column exists. Anything else stops the
process with a :class:`DatasetsError` naming the dataset and the field. The file's own
shape (YAML, options, names) is checked by :mod:`shared.datasets_file`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from shared import catalog
from shared.catalog import CatalogColumn, Relation
from shared.datasets_file import DatasetsError as DatasetsError  # re-exported: the error of the whole check
from shared.datasets_file import read_file
from shared.db import connect_source, process_label
from shared.pgtypes import KEY_TYPES, ColumnType, Kind
from shared.settings import Settings

log = logging.getLogger(__name__)
KEY_TYPE_NAMES = "smallint, integer, bigint, uuid, text, varchar, date, timestamp, timestamptz"


@dataclass(frozen=True)
class Column:
    """One column a dataset can export or filter (or scope by).

    Attributes:
        name: the column's name in the relation and in the CSV header.
        type: its type, as the catalog gave it.
        filters: the operators a request may filter it with (empty: not filterable).
        description: the column's comment in the database, for ``GET /datasets``.
    """

    name: str
    type: ColumnType
    filters: tuple[str, ...] = ()
    description: str = ""

    @property
    def kind(self) -> Kind:
        return self.type.kind


@dataclass(frozen=True)
class ScopeRule:
    """Only rows where ``column`` equals the calling key's attribute ``attribute``."""

    column: Column
    attribute: str


@dataclass(frozen=True)
class Dataset:
    """One exportable relation, its key column and its columns, as checked at start."""

    name: str
    schema: str
    relation: str
    relation_kind: str
    key: Column
    columns: tuple[Column, ...]
    scope: tuple[ScopeRule, ...] = ()
    description: str = ""

    @property
    def table(self) -> sql.Identifier:
        """The relation, schema-qualified, for SQL composition."""
        return sql.Identifier(self.schema, self.relation)

    def find_column(self, name: str) -> Column | None:
        """Return the exportable column called ``name``, or None."""
        return next((c for c in self.columns if c.name == name), None)

    def column(self, name: str) -> Column:
        """Return the exportable column called ``name``.

        Raises:
            KeyError: the dataset has no such column (requests are validated against
                :meth:`find_column` first, so this means a spec that skipped validation).
        """
        found = self.find_column(name)
        if found is None:
            raise KeyError(f"dataset {self.name!r} has no column {name!r}")
        return found

    @property
    def column_names(self) -> tuple[str, ...]:
        """All exportable column names, in table order."""
        return tuple(c.name for c in self.columns)

    def describe(self) -> dict[str, object]:
        """The JSON a client needs to build an export form."""
        return {
            "name": self.name,
            "description": self.description,
            "relation": f"{self.schema}.{self.relation}",
            "relation_kind": self.relation_kind,
            "key": self.key.name,
            "default_columns": list(self.column_names),
            "scoped": bool(self.scope),
            "scope_attributes": [rule.attribute for rule in self.scope],
            "columns": [
                {
                    "name": c.name,
                    "type": c.type.display,
                    "kind": c.kind.name,
                    "renders_as": c.kind.rendering,
                    "filters": list(c.filters),
                    **({"values": list(c.type.labels)} if c.type.labels else {}),
                    "description": c.description,
                }
                for c in self.columns
            ],
        }


def _key_column(conn: psycopg.Connection[Any], name: str, entry: dict[str, Any], relation: Relation) -> CatalogColumn:
    key = relation.column(entry["key"])
    if key is None:
        raise DatasetsError(
            f"{relation.kind_name} {relation.schema}.{relation.name} has no column {entry['key']!r}", name, "key"
        )
    if key.type.base not in KEY_TYPES:
        raise DatasetsError(
            f"column {key.name!r} is {key.type.display}; a key must be one of {KEY_TYPE_NAMES}", name, "key"
        )
    provable = relation.relkind in ("r", "p")  # only tables have NOT NULL and unique indexes together
    if entry.get("key_unique") and provable:
        raise DatasetsError(
            f"only for views, materialized views and foreign tables; {relation.schema}.{relation.name} is a"
            f" {relation.kind_name}, whose key the catalog checks",
            name,
            "key_unique",
        )
    if provable or relation.relkind == "m":
        if provable and not key.not_null:
            raise DatasetsError(f"column {key.name!r} is nullable; a key must be NOT NULL", name, "key")
        if not catalog.has_btree_index(conn, relation, key, unique=True):
            indexed = catalog.has_btree_index(conn, relation, key, unique=False)
            problem = (
                "has no unique index on it alone (only a partial, multi-column or plain one)"
                if indexed
                else "has no index"
            )
            raise DatasetsError(
                f"column {key.name!r} {problem}; a key needs a unique b-tree index on it alone (in its collation)",
                name,
                "key",
            )
    if not provable and not entry.get("key_unique"):
        raise DatasetsError(
            f"{relation.schema}.{relation.name} is a {relation.kind_name}: the catalog cannot prove {key.name!r}"
            " unique and never NULL; say so with key_unique: true (exports would lose or repeat rows otherwise)",
            name,
            "key",
        )
    return key


def _column(found: CatalogColumn, filters: tuple[str, ...] = ()) -> Column:
    return Column(found.name, found.type, filters, found.comment)


def resolve(conn: psycopg.Connection[Any], name: str, entry: dict[str, Any]) -> Dataset:
    """Check one shape-checked dataset entry against the catalog and build it.

    Raises:
        DatasetsError: naming the dataset and the field at fault.
    """
    try:
        relation = catalog.find_relation(conn, entry["table"])
    except (psycopg.errors.InvalidName, psycopg.errors.SyntaxError, psycopg.errors.FeatureNotSupported) as exc:
        raise DatasetsError(
            f"{entry['table']!r} is not a relation name PostgreSQL accepts: {exc.diag.message_primary}", name, "table"
        ) from None
    if relation is None:
        raise DatasetsError(f"no table or view {entry['table']!r} (or no privilege to see it)", name, "table")
    for part in (
        relation.schema,
        relation.name,
        *(c.name for c in relation.columns),
        *(c.type.cast for c in relation.columns),
    ):
        if "%" in part:  # psycopg reads % in composed SQL as a placeholder
            raise DatasetsError(f"{part!r}: names with '%' are not supported (rename, or export a view)", name, "table")
    if relation.relkind not in catalog.TABLE_KINDS and relation.relkind not in catalog.VIEW_KINDS:
        raise DatasetsError(
            f"{relation.schema}.{relation.name} is a {relation.kind_name}, not a table or view", name, "table"
        )
    where = f"{relation.kind_name} {relation.schema}.{relation.name}"
    key = _key_column(conn, name, entry, relation)
    excluded = entry.get("exclude", [])
    for column in excluded:
        if relation.column(column) is None:
            raise DatasetsError(f"{where} has no column {column!r}", name, "exclude")
    listed = entry.get("columns", "*")
    if listed == "*":
        chosen = [c for c in relation.columns if c.name not in excluded]
    else:
        chosen = []
        for column in listed:
            found = relation.column(column)
            if found is None:
                raise DatasetsError(f"{where} has no column {column!r}", name, "columns")
            if column in excluded:
                raise DatasetsError(f"{column!r} is also excluded", name, "columns")
            chosen.append(found)
    if not chosen:
        raise DatasetsError("no column left to export", name, "columns")
    chosen_names = {c.name for c in chosen}
    filters = entry.get("filters")
    if filters is None:
        allowed = {c.name: c.type.kind.operators for c in chosen}
    else:
        allowed = {}
        for column, ops in filters.items():
            if column not in chosen_names:
                why = "is excluded" if column in excluded else "is not one of the dataset's columns"
                raise DatasetsError(f"column {column!r} {why}", name, f"filters.{column}")
            kind = next(c for c in chosen if c.name == column).type.kind
            for op in ops:
                if op not in kind.operators:
                    have = ", ".join(kind.operators) or "none"
                    raise DatasetsError(
                        f"operator {op!r} does not apply to a {kind.name} column (it has: {have})",
                        name,
                        f"filters.{column}",
                    )
            allowed[column] = tuple(dict.fromkeys(ops))
    scope = []
    for column, attribute in (entry.get("scope") or {}).items():
        found = relation.column(column)
        if found is None:
            raise DatasetsError(f"{where} has no column {column!r}", name, f"scope.{column}")
        if "eq" not in found.type.kind.operators:
            raise DatasetsError(
                f"a {found.type.display} column cannot scope rows (no equality)", name, f"scope.{column}"
            )
        scope.append(ScopeRule(_column(found), attribute))
    return Dataset(
        name=name,
        schema=relation.schema,
        relation=relation.name,
        relation_kind=relation.kind_name,
        key=_column(key, allowed.get(key.name, ())),
        columns=tuple(_column(c, allowed.get(c.name, ())) for c in chosen),
        scope=tuple(scope),
        description=entry.get("description") or relation.comment,
    )


def load_registry(conn: psycopg.Connection[Any], path: str | Path) -> dict[str, Dataset]:
    """Read the datasets file and check every dataset against the catalog of ``conn``.

    Raises:
        DatasetsError: the first problem found, naming the file, the dataset and the field.
    """
    try:
        return {name: resolve(conn, name, entry) for name, entry in read_file(path).items()}
    except DatasetsError as exc:
        error = DatasetsError(f"{path}: {exc}")
        error.dataset, error.field = exc.dataset, exc.field
        raise error from None


_registry: dict[str, Dataset] | None = None
_deferred: Settings | None = None  # the API's settings while the source database was unreachable at start


def install(registry: Mapping[str, Dataset]) -> None:
    """Make ``registry`` the process's datasets (at start, after :func:`load_registry`)."""
    global _registry, _deferred
    _registry, _deferred = dict(registry), None


def load(settings: Settings) -> dict[str, Dataset]:
    """Load ``SPILLWAY_DATASETS_FILE`` against the source database and install it: what the
    API, every worker and the reconciler do when they start.

    Raises:
        DatasetsError: the file or a dataset is unusable (the process must not start).
    """
    with connect_source(settings, process_label("datasets")) as conn:
        conn.autocommit = True  # catalog reads only: no transaction to leave open
        loaded = load_registry(conn, settings.datasets_file)
    install(loaded)
    return loaded


def load_when_reachable(settings: Settings) -> None:
    """:func:`load` now, or — if the source database cannot be reached — at the first use of
    the registry: the API then starts, and ``/health`` says which dependency is down.

    Raises:
        DatasetsError: the database answered and the file is unusable (the API must not start).
    """
    global _deferred
    try:
        load(settings)
    except psycopg.OperationalError as exc:
        log.warning("datasets not checked yet, the source database is unreachable (%s); checking at first use", exc)
        _deferred = settings


def registry() -> Mapping[str, Dataset]:
    """The process's datasets.

    Raises:
        RuntimeError: no registry was installed (a process must load it when it starts).
        DatasetsError, psycopg.OperationalError: a deferred check failed (the API answers 503).
    """
    if _registry is None and _deferred is not None:
        load(_deferred)
    if _registry is None:
        raise RuntimeError("the datasets file was not loaded (shared.datasets.install at start)")
    return _registry


def get_dataset(name: str) -> Dataset | None:
    """Return the dataset called ``name``, or None."""
    return registry().get(name)
