"""The dataset registry: what can be exported, which columns, which filters.

Invariant: every identifier that reaches SQL comes from this registry (never from a
request), and every column has a declared type that decides how it is rendered in CSV,
how its filter values are validated, and a cheap lower bound of its CSV width.
"""

from __future__ import annotations

from dataclasses import dataclass, field

NUMBER_OPS = ("eq", "in", "gte", "gt", "lte", "lt")
TIME_OPS = ("eq", "gte", "gt", "lte", "lt")
TEXT_OPS = ("eq", "in", "contains")
CHOICE_OPS = ("eq", "in")

TYPES = ("bigint", "integer", "numeric", "text", "timestamptz", "text[]")


@dataclass(frozen=True)
class Column:
    """One exportable column.

    Attributes:
        name: the column's name in the table and in the CSV header.
        type: one of :data:`TYPES`.
        filters: the operators a request may filter this column with (empty: not filterable).
        description: what the column holds, for ``GET /datasets``.
    """

    name: str
    type: str
    filters: tuple[str, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"column {self.name}: unknown type {self.type}")


@dataclass(frozen=True)
class Dataset:
    """One exportable table with its key column (bigint, unique, indexed) and columns."""

    name: str
    table: str
    key: str
    columns: tuple[Column, ...]
    description: str = ""
    default_columns: tuple[str, ...] = field(default=())

    def find_column(self, name: str) -> Column | None:
        """Return the column called ``name``, or None."""
        return next((c for c in self.columns if c.name == name), None)

    def column(self, name: str) -> Column:
        """Return the column called ``name``.

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
            "key": self.key,
            "default_columns": list(self.default_columns or self.column_names),
            "columns": [
                {"name": c.name, "type": c.type, "filters": list(c.filters), "description": c.description}
                for c in self.columns
            ],
        }


PRODUCTS = Dataset(
    name="products",
    table="products",
    key="id",
    description="The product catalogue (demo data, with hostile values on purpose).",
    columns=(
        Column("id", "bigint", NUMBER_OPS, "unique product id; exports are in id order"),
        Column("sku", "text", TEXT_OPS, "stock keeping unit"),
        Column("name", "text", TEXT_OPS, "product name"),
        Column("description", "text", ("contains",), "free text, may be empty or NULL"),
        Column("category", "text", CHOICE_OPS, "one of about ten categories"),
        Column("status", "text", CHOICE_OPS, "active, inactive or archived"),
        Column("price", "numeric", NUMBER_OPS, "price, two decimals; may be NULL"),
        Column("quantity", "integer", NUMBER_OPS, "units in stock"),
        Column("tags", "text[]", (), "labels, as a JSON array"),
        Column("tenant_id", "integer", NUMBER_OPS, "the tenant that owns the product"),
        Column("created_at", "timestamptz", TIME_OPS, "creation time, ISO 8601 UTC"),
        Column("updated_at", "timestamptz", TIME_OPS, "last change, ISO 8601 UTC; may be NULL"),
    ),
)

UNEVEN_ROWS = Dataset(
    name="uneven_rows",
    table="uneven_rows",
    key="id",
    description="Rows of very uneven width (tiny and ~100 KB), to exercise part sizing.",
    columns=(
        Column("id", "bigint", NUMBER_OPS, "row id"),
        Column("label", "text", TEXT_OPS, "short label"),
        Column("body", "text", (), "payload of very uneven size"),
    ),
)

REGISTRY: dict[str, Dataset] = {d.name: d for d in (PRODUCTS, UNEVEN_ROWS)}


def get_dataset(name: str) -> Dataset | None:
    """Return the registered dataset called ``name``, or None."""
    return REGISTRY.get(name)
