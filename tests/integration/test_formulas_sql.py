"""PostgreSQL applies exactly the rule of shared/formulas.py: each payload through the real COPY."""

from __future__ import annotations

from psycopg import sql

from shared.datasets import registry
from shared.db import CopyOut, connect_source, process_label
from shared.formulas import neutralize
from shared.query import select_list
from shared.spec import parse_spec
from tests.support.api import parse_csv
from tests.support.payloads import DANGEROUS, HARMLESS


def _copy_cells(settings, values: list[str], neutralize_formulas: bool) -> list[str]:
    """The CSV cells COPY writes for ``values`` as the text column ``name`` of products."""
    spec = parse_spec({"dataset": "products", "columns": ["name"], "csv": {"neutralize_formulas": neutralize_formulas}})
    rows = sql.SQL(", ").join(sql.SQL("(%s::text)") for _ in values)
    query = sql.SQL("COPY (SELECT {} FROM (VALUES {}) AS products(name)) TO STDOUT (FORMAT csv)").format(
        select_list(registry()["products"], spec), rows
    )
    with connect_source(settings, process_label("test")) as conn:
        out = b"".join(CopyOut(conn, query, values, 1 << 20))
    return [row[0] for row in parse_csv(out)]


def test_postgres_neutralises_every_payload_as_the_rule_says(settings, db):
    payloads = DANGEROUS + HARMLESS
    assert _copy_cells(settings, payloads, True) == [neutralize(p) for p in payloads]


def test_the_opt_out_leaves_every_payload_alone(settings, db):
    payloads = DANGEROUS + HARMLESS
    assert _copy_cells(settings, payloads, False) == payloads
