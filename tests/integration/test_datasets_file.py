"""The datasets file, checked against the real catalog: every failure kind is a DatasetsError
naming the file, the dataset and the field; what the catalog allows loads; and a bad file stops
every process that needs it (worker, reconciler, gunicorn, ``flask datasets check``, ``make up``)
while ``flask keys create`` still works.

The relations live in a throwaway schema ``dsf_<random>`` of the test database, dropped at the
end. In-process checks use :func:`shared.datasets.load_registry`, which does not install the
registry (the session's shipped registry stays the one other tests see).
"""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from psycopg import sql

import shared.datasets as datasets_module
from deploy import stack
from deploy.services import StackError
from shared import pgtypes
from shared.datasets import Dataset, DatasetsError, load_registry, read_file
from shared.keys import authenticate
from shared.settings import DEFAULT_DATASETS_FILE, Settings
from tests.support.processes import ROOT, env_for, signal_groups
from tests.support.waiting import free_port

PROCESS_TIMEOUT_S = 90  # a process refusing a bad file exits within seconds; this only bounds a hang
SCHEMA_SQL = """
CREATE DOMAIN {s}.quantity AS integer CHECK (VALUE >= 0);
CREATE DOMAIN {s}.small_quantity AS {s}.quantity CHECK (VALUE < 1000);
CREATE DOMAIN {s}.ident AS bigint NOT NULL;
CREATE TABLE {s}.items (
    id bigint PRIMARY KEY,
    status text NOT NULL,
    tenant_id integer NOT NULL,
    code uuid NOT NULL,
    payload jsonb,
    tags text[],
    price numeric(10, 2),
    flag boolean,
    created_at timestamptz NOT NULL DEFAULT now(),
    qty {s}.quantity,
    small_qty {s}.small_quantity,
    internal_notes text,
    nullable_key bigint UNIQUE,
    plain_indexed bigint NOT NULL,
    unindexed bigint NOT NULL,
    partial_key bigint NOT NULL,
    doc_key jsonb NOT NULL
);
CREATE INDEX ON {s}.items (plain_indexed);
CREATE UNIQUE INDEX ON {s}.items (partial_key) WHERE partial_key > 0;
CREATE UNIQUE INDEX ON {s}.items (doc_key);
COMMENT ON TABLE {s}.items IS 'Items of the datasets-file tests';
COMMENT ON COLUMN {s}.items.status IS 'Where the item is';
CREATE VIEW {s}.items_view AS SELECT id, status, tenant_id FROM {s}.items;
CREATE MATERIALIZED VIEW {s}.items_mv AS SELECT id, status, tenant_id FROM {s}.items;
CREATE UNIQUE INDEX ON {s}.items_mv (id);
CREATE INDEX ON {s}.items_mv (tenant_id);
CREATE MATERIALIZED VIEW {s}.items_mv_bare AS SELECT id, status FROM {s}.items;
CREATE TABLE {s}.text_keyed (code text PRIMARY KEY, label text);
CREATE TABLE {s}.uuid_keyed (id uuid PRIMARY KEY, label text);
CREATE TABLE {s}.domain_keyed (id {s}.ident PRIMARY KEY, qty {s}.quantity);
CREATE TABLE {s}.parted (id bigint NOT NULL, region text NOT NULL, PRIMARY KEY (id)) PARTITION BY RANGE (id);
CREATE TABLE {s}.parted_low PARTITION OF {s}.parted FOR VALUES FROM (0) TO (1000);
CREATE TABLE {s}.parted_high PARTITION OF {s}.parted FOR VALUES FROM (1000) TO (MAXVALUE);
CREATE SEQUENCE {s}.counter;
CREATE TYPE {s}.pair AS (id bigint, label text);
"""


@pytest.fixture(scope="module")
def conn(db: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the test database (catalog reads, DDL of the tests)."""
    with psycopg.connect(db, autocommit=True) as connection:
        yield connection


@pytest.fixture(scope="module")
def schema(conn: psycopg.Connection) -> Iterator[str]:
    """A throwaway schema with the relations of the cases, dropped afterwards."""
    name = f"dsf_{secrets.token_hex(4)}"
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    try:
        conn.execute(SCHEMA_SQL.format(s=name).encode())
        yield name
    finally:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


def write(directory: Path, content: Any, name: str = "datasets.yml") -> Path:
    """Write a datasets file: ``content`` as YAML (a dict) or as it is (str, bytes)."""
    path = directory / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False))
    return path


def qualified(schema: str, entry: dict[str, Any]) -> dict[str, Any]:
    """``entry`` with its table in ``schema``."""
    return {**entry, "table": f"{schema}.{entry['table']}"} if "table" in entry else entry


def check(conn: psycopg.Connection, directory: Path, schema: str, **entries: dict[str, Any]) -> dict[str, Dataset]:
    """Load a file holding ``entries`` (tables in ``schema``) against the catalog."""
    path = write(directory, {"datasets": {name: qualified(schema, e) for name, e in entries.items()}})
    return load_registry(conn, path)


def refused(
    conn: psycopg.Connection, directory: Path, schema: str, entry: dict[str, Any], field: str, dataset: str = "broken"
) -> str:
    """Load a file whose dataset ``dataset`` is ``entry``; return the message, checked to name
    the file, the dataset and the field, in that order."""
    path = write(directory, {"datasets": {dataset: qualified(schema, entry)}})
    with pytest.raises(DatasetsError) as caught:
        load_registry(conn, path)
    message = str(caught.value)
    assert message.startswith(f'{path}: dataset "{dataset}", field "{field}": '), message
    return message


# --- each failure kind names the file, the dataset and the field ------------------------------

ITEMS = {"table": "items", "key": "id"}

CATALOG_FAILURES = [
    pytest.param({"table": "no_such_table", "key": "id"}, "table", "no table or view", id="missing-table"),
    pytest.param({**ITEMS, "key": "no_such"}, "key", "has no column 'no_such'", id="missing-key-column"),
    pytest.param({**ITEMS, "columns": ["id", "no_such"]}, "columns", "has no column 'no_such'", id="missing-in-list"),
    pytest.param({**ITEMS, "exclude": ["no_such"]}, "exclude", "has no column 'no_such'", id="missing-in-exclude"),
    pytest.param(
        {**ITEMS, "filters": {"no_such": ["eq"]}},
        "filters.no_such",
        "column 'no_such' is not one of the dataset's columns",
        id="missing-in-filters",
    ),
    pytest.param(
        {**ITEMS, "scope": {"no_such": "tenant"}}, "scope.no_such", "has no column 'no_such'", id="missing-in-scope"
    ),
    pytest.param({**ITEMS, "key": "nullable_key"}, "key", "is nullable; a key must be NOT NULL", id="key-nullable"),
    pytest.param({**ITEMS, "key": "plain_indexed"}, "key", "has no unique index on it alone", id="key-not-unique"),
    pytest.param({**ITEMS, "key": "unindexed"}, "key", "has no index", id="key-no-index"),
    pytest.param(
        {**ITEMS, "key": "partial_key"}, "key", "a key needs a unique b-tree index on it alone", id="key-partial-unique"
    ),
    pytest.param({**ITEMS, "key": "doc_key"}, "key", "column 'doc_key' is jsonb; a key must be one of", id="key-jsonb"),
    pytest.param({**ITEMS, "key": "price"}, "key", "is numeric(10,2); a key must be one of", id="key-numeric"),
    pytest.param({**ITEMS, "key": "flag"}, "key", "is boolean; a key must be one of", id="key-boolean"),
    pytest.param(
        {"table": "items_view", "key": "id"}, "key", "is a view: the catalog cannot prove", id="view-no-key-unique"
    ),
    pytest.param(
        {"table": "items_mv", "key": "id"},
        "key",
        "is a materialized view: the catalog cannot prove 'id' unique and never NULL; say so with key_unique: true",
        id="matview-unique-index-no-key-unique",
    ),
    pytest.param(
        {"table": "items_mv_bare", "key": "id", "key_unique": True}, "key", "has no index", id="matview-no-index"
    ),
    pytest.param(
        {"table": "items_mv", "key": "tenant_id", "key_unique": True},
        "key",
        "has no unique index on it alone",
        id="matview-plain-index",
    ),
    pytest.param(
        {**ITEMS, "key_unique": True}, "key_unique", "is a table, whose key the catalog checks", id="key-unique-table"
    ),
    pytest.param(
        {"table": "parted", "key": "id", "key_unique": True},
        "key_unique",
        "is a partitioned table, whose key the catalog checks",
        id="key-unique-on-partitioned-table",
    ),
    pytest.param(
        {**ITEMS, "filters": {"status": ["like"]}},
        "filters.status",
        "operator 'like' does not apply",
        id="unknown-operator",
    ),
    pytest.param(
        {**ITEMS, "exclude": ["internal_notes"], "filters": {"internal_notes": ["eq"]}},
        "filters.internal_notes",
        "column 'internal_notes' is excluded",
        id="filter-on-excluded",
    ),
    pytest.param(
        {**ITEMS, "columns": ["id", "status"], "filters": {"tenant_id": ["eq"]}},
        "filters.tenant_id",
        "is not one of the dataset's columns",
        id="filter-on-unlisted",
    ),
    pytest.param(
        {**ITEMS, "columns": ["id", "internal_notes"], "exclude": ["internal_notes"]},
        "columns",
        "'internal_notes' is also excluded",
        id="listed-and-excluded",
    ),
    pytest.param(
        {"table": "text_keyed", "key": "code", "exclude": ["code", "label"]},
        "columns",
        "no column left to export",
        id="everything-excluded",
    ),
    pytest.param(
        {**ITEMS, "scope": {"payload": "tenant"}},
        "scope.payload",
        "a jsonb column cannot scope rows (no equality)",
        id="scope-on-jsonb",
    ),
    pytest.param(
        {**ITEMS, "scope": {"tags": "tenant"}},
        "scope.tags",
        "a text[] column cannot scope rows (no equality)",
        id="scope-on-array",
    ),
]


@pytest.mark.parametrize(("entry", "field", "problem"), CATALOG_FAILURES)
def test_catalog_failure_names_file_dataset_and_field(conn, tmp_path, schema, entry, field, problem):
    message = refused(conn, tmp_path, schema, entry, field)
    assert problem in message


@pytest.mark.parametrize(
    ("column", "kind"),
    [
        ("tenant_id", pgtypes.INTEGER),
        ("code", pgtypes.UUID),
        ("flag", pgtypes.BOOLEAN),
        ("created_at", pgtypes.TIMESTAMPTZ),
        ("payload", pgtypes.JSON),
        ("tags", pgtypes.ARRAY),
        ("qty", pgtypes.INTEGER),  # a domain over integer
        ("small_qty", pgtypes.INTEGER),  # a domain over that domain
    ],
    ids=lambda value: value if isinstance(value, str) else value.name,
)
def test_an_operator_the_column_s_type_does_not_have(conn, tmp_path, schema, column, kind):
    """Each kind refuses the first operator it lacks (which ones a kind has is pgtypes' to say)."""
    op = next(op for op in pgtypes.OPERATORS if op not in kind.operators)
    entry = {**ITEMS, "filters": {column: [*kind.operators[:1], op]}}
    message = refused(conn, tmp_path, schema, entry, f"filters.{column}")
    have = ", ".join(kind.operators) or "none"
    assert message.endswith(f"operator {op!r} does not apply to a {kind.name} column (it has: {have})")


SHAPE_FAILURES = [
    pytest.param({**ITEMS, "frobnicate": 1}, "frobnicate", "unknown option (allowed: table, key,", id="unknown-option"),
    pytest.param({**ITEMS, "Key": "id"}, "Key", "unknown option", id="option-in-wrong-case"),
    pytest.param({"key": "id"}, "table", "is required (a name)", id="no-table"),
    pytest.param({"table": "items"}, "key", "is required (a name)", id="no-key"),
    pytest.param({**ITEMS, "key": ["id"]}, "key", "is required (a name)", id="key-a-list"),
    pytest.param({**ITEMS, "columns": "id"}, "columns", "must be a list of column names", id="columns-a-string"),
    pytest.param({**ITEMS, "exclude": ["flag", "flag"]}, "exclude", "'flag' is listed twice", id="exclude-twice"),
    pytest.param({**ITEMS, "filters": ["id"]}, "filters", "must map column names to lists", id="filters-a-list"),
    pytest.param({**ITEMS, "filters": {"id": "eq"}}, "filters.id", "must be a list of operators", id="ops-a-string"),
    pytest.param({**ITEMS, "scope": {}}, "scope", "must map columns to key attribute names", id="scope-empty"),
    pytest.param(
        {**ITEMS, "scope": {"tenant_id": "no spaces"}}, "scope.tenant_id", "is not an attribute name", id="bad-attr"
    ),
    pytest.param({**ITEMS, "description": ["x"]}, "description", "must be a string", id="description-a-list"),
    pytest.param({**ITEMS, "key_unique": "sure"}, "key_unique", "must be true or false", id="key-unique-a-string"),
]


@pytest.mark.parametrize(("entry", "field", "problem"), SHAPE_FAILURES)
def test_shape_failure_names_file_dataset_and_field(conn, tmp_path, schema, entry, field, problem):
    message = refused(conn, tmp_path, schema, entry, field)
    assert problem in message


def test_error_names_the_bad_dataset_among_good_ones(conn, tmp_path, schema):
    path = write(
        tmp_path,
        {
            "datasets": {
                "first": qualified(schema, ITEMS),
                "second": qualified(schema, {**ITEMS, "key": "unindexed"}),
                "third": qualified(schema, ITEMS),
            }
        },
    )
    with pytest.raises(DatasetsError, match=r'dataset "second", field "key": column \'unindexed\' has no index'):
        load_registry(conn, path)


GOOD = "datasets:\n  items:\n    table: {s}.items\n    key: id\n"

FILE_FAILURES = [
    pytest.param(GOOD + "extra: 1\n", "the file must hold one top-level key, 'datasets'", id="unknown-top-level-key"),
    pytest.param("sets:\n  items: {{table: items, key: id}}\n", "one top-level key, 'datasets'", id="no-datasets-key"),
    pytest.param(GOOD + "  items:\n    table: {s}.items\n    key: id\n", "'items' is written twice (line 5)", id="dup"),
    pytest.param(GOOD + "    key: code\n", "'key' is written twice (line 5)", id="duplicate-option"),
    pytest.param(GOOD + "datasets:\n  other: {{}}\n", "'datasets' is written twice (line 5)", id="duplicate-top-level"),
    pytest.param("datasets: [unclosed\n", "not valid YAML: while parsing a flow sequence", id="not-yaml"),
    pytest.param("datasets:\n\titems: {{}}\n", "not valid YAML", id="tab-indented"),
    pytest.param("just some words\n", "the file must hold one top-level key", id="plain-text"),
    pytest.param("- items\n- orders\n", "the file must hold one top-level key", id="a-list"),
    pytest.param("", "the file must hold one top-level key", id="empty-file"),
    pytest.param("datasets: {{}}\n", "'datasets' must map at least one dataset name", id="no-datasets"),
    pytest.param("datasets:\n  items: {s}.items\n", 'dataset "items": must be a mapping of options', id="entry-a-str"),
    pytest.param("datasets:\n  Items: {{table: {s}.items, key: id}}\n", "dataset name 'Items' must be", id="upper"),
    pytest.param("datasets:\n  1items: {{table: {s}.items, key: id}}\n", "dataset name '1items' must", id="digit"),
    pytest.param("datasets:\n  my-items: {{table: {s}.items, key: id}}\n", "name 'my-items' must be", id="dash"),
    pytest.param("datasets:\n  " + "i" * 64 + ": {{table: {s}.items, key: id}}\n", "must be lower-case", id="long"),
    pytest.param("datasets:\n  12: {{table: {s}.items, key: id}}\n", "dataset name 12 must be", id="number-name"),
]


@pytest.mark.parametrize(("text", "problem"), FILE_FAILURES)
def test_file_failure_names_file_and_problem(conn, tmp_path, schema, text, problem):
    path = write(tmp_path, text.format(s=schema))
    with pytest.raises(DatasetsError) as caught:
        load_registry(conn, path)
    assert str(caught.value).startswith(f"{path}: "), caught.value
    assert problem in str(caught.value)


def test_missing_file_names_it(conn, tmp_path):
    path = tmp_path / "nowhere" / "datasets.yml"
    with pytest.raises(DatasetsError) as caught:
        load_registry(conn, path)
    assert str(caught.value) == f"{path}: cannot read the datasets file: No such file or directory"


def test_a_directory_is_not_a_datasets_file(conn, tmp_path):
    with pytest.raises(DatasetsError) as caught:
        load_registry(conn, tmp_path)
    assert str(caught.value) == f"{tmp_path}: cannot read the datasets file: Is a directory"


# --- problems shared/datasets.py lets through as other exceptions or accepts (see the report) ---


def test_a_file_that_is_not_utf8_is_a_datasets_error(conn, tmp_path):
    path = write(tmp_path, b"\xff\xfedatasets:\n")
    with pytest.raises(DatasetsError, match=r"not UTF-8"):
        load_registry(conn, path)


def test_an_unhashable_yaml_key_is_a_datasets_error(conn, tmp_path):
    path = write(tmp_path, "datasets:\n  ? [a, b]\n  : {table: items, key: id}\n")
    with pytest.raises(DatasetsError, match=r"not valid YAML"):
        load_registry(conn, path)


@pytest.mark.parametrize("table", ["a.b.c.d", "otherdb.public.items", '"unterminated', "public."])
def test_a_table_name_postgres_cannot_parse_is_a_datasets_error(conn, tmp_path, table):
    path = write(tmp_path, {"datasets": {"broken": {"table": table, "key": "id"}}})
    with pytest.raises(DatasetsError) as caught:
        load_registry(conn, path)
    assert str(caught.value).startswith(f'{path}: dataset "broken", field "table": ')


@pytest.mark.parametrize(("table", "key"), [("counter", "last_value"), ("pair", "id")])
def test_only_tables_and_views_can_be_datasets(conn, tmp_path, schema, table, key):
    refused(conn, tmp_path, schema, {"table": table, "key": key, "key_unique": True}, "table")


# --- what the catalog allows loads ------------------------------------------------------------


def test_a_table_loads_with_its_columns_in_table_order(conn, tmp_path, schema):
    items = check(conn, tmp_path, schema, items={**ITEMS, "exclude": ["internal_notes"]})["items"]
    assert (items.schema, items.relation, items.relation_kind) == (schema, "items", "table")
    assert items.key.name == "id" and items.key.kind.name == "integer"
    assert "internal_notes" not in items.column_names
    assert items.column_names[:4] == ("id", "status", "tenant_id", "code")
    assert items.description == "Items of the datasets-file tests"  # the table's comment by default
    assert items.column("status").description == "Where the item is"


def test_table_names_fold_like_sql(conn, tmp_path, schema):
    items = check(conn, tmp_path, schema.upper(), items={"table": "ITEMS", "key": "id"})["items"]
    assert (items.schema, items.relation) == (schema, "items")


def test_view_with_key_unique_loads(conn, tmp_path, schema):
    view = check(conn, tmp_path, schema, v={"table": "items_view", "key": "id", "key_unique": True})["v"]
    assert view.relation_kind == "view" and view.column_names == ("id", "status", "tenant_id")


def test_materialized_view_needs_a_unique_index_and_key_unique(conn, tmp_path, schema):
    """A materialized view's unique index is checked (as a table's), and since the catalog
    cannot prove NOT NULL of its columns, the file must still say ``key_unique: true``
    (both refusals are in CATALOG_FAILURES)."""
    mv = check(conn, tmp_path, schema, mv={"table": "items_mv", "key": "id", "key_unique": True})["mv"]
    assert mv.relation_kind == "materialized view" and mv.key.name == "id"


def test_partitioned_table_loads(conn, tmp_path, schema):
    parted = check(conn, tmp_path, schema, parted={"table": "parted", "key": "id"})["parted"]
    assert parted.relation_kind == "partitioned table"
    assert parted.column_names == ("id", "region")


@pytest.mark.parametrize(
    ("table", "key", "kind", "display"),
    [
        ("text_keyed", "code", "text", "text"),
        ("uuid_keyed", "id", "uuid", "uuid"),
        ("domain_keyed", "id", "integer", "{s}.ident"),
    ],
)
def test_key_types(conn, tmp_path, schema, table, key, kind, display):
    dataset = check(conn, tmp_path, schema, d={"table": table, "key": key})["d"]
    assert dataset.key.name == key
    assert dataset.key.kind.name == kind
    assert dataset.key.type.display == display.format(s=schema)


def test_a_domain_column_has_the_kind_of_its_base_type(conn, tmp_path, schema):
    items = check(conn, tmp_path, schema, items={**ITEMS, "filters": {"qty": ["gte"], "small_qty": ["eq", "lt"]}})
    qty, small = items["items"].column("qty"), items["items"].column("small_qty")
    assert (qty.type.display, qty.type.base, qty.kind.name) == (f"{schema}.quantity", "int4", "integer")
    assert (small.type.display, small.type.base, small.kind.name) == (f"{schema}.small_quantity", "int4", "integer")
    assert qty.filters == ("gte",) and small.filters == ("eq", "lt")


def test_filters_default_to_each_kind_s_operators_and_otherwise_to_those_listed(conn, tmp_path, schema):
    loaded = check(
        conn,
        tmp_path,
        schema,
        open={**ITEMS},
        listed={**ITEMS, "filters": {"status": ["eq", "in", "eq"], "id": []}},
    )
    everything = {c.name: c.filters for c in loaded["open"].columns}
    assert everything == {c.name: c.kind.operators for c in loaded["open"].columns}
    assert everything["id"] == pgtypes.INTEGER.operators and everything["qty"] == pgtypes.INTEGER.operators
    assert everything["payload"] == () and everything["tags"] == ()
    listed = {c.name: c.filters for c in loaded["listed"].columns}
    assert listed["status"] == ("eq", "in")  # a repeated operator once
    assert all(ops == () for name, ops in listed.items() if name != "status")


def test_scope_loads_on_a_column_with_equality(conn, tmp_path, schema):
    items = check(conn, tmp_path, schema, items={**ITEMS, "scope": {"tenant_id": "tenant", "code": "team.id"}})
    rules = [(rule.column.name, rule.attribute) for rule in items["items"].scope]
    assert rules == [("tenant_id", "tenant"), ("code", "team.id")]


def test_columns_star_follows_the_catalog(conn, tmp_path, schema):
    table = sql.Identifier(schema, "growing")
    conn.execute(sql.SQL("CREATE TABLE {} (id bigint PRIMARY KEY, label text)").format(table))
    entry = {"table": "growing", "key": "id", "columns": "*"}
    assert check(conn, tmp_path, schema, growing=entry)["growing"].column_names == ("id", "label")

    conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN added_later integer").format(table))
    assert check(conn, tmp_path, schema, growing=entry)["growing"].column_names == ("id", "label", "added_later")

    conn.execute(sql.SQL("ALTER TABLE {} DROP COLUMN label").format(table))
    assert check(conn, tmp_path, schema, growing=entry)["growing"].column_names == ("id", "added_later")


def test_the_shipped_file_loads(conn):
    loaded = load_registry(conn, DEFAULT_DATASETS_FILE)
    assert list(loaded) == list(read_file(DEFAULT_DATASETS_FILE))


# --- a bad file stops every process that needs it ---------------------------------------------


@pytest.fixture(params=["missing-table", "missing-file"])
def bad(request, conn, tmp_path) -> tuple[Path, str]:
    """A bad datasets file and the message the in-process check gives for it."""
    if request.param == "missing-file":
        path = tmp_path / "no-such-datasets.yml"
    else:
        path = write(tmp_path, {"datasets": {"broken": {"table": "public.dsf_no_such_table", "key": "id"}}})
    with pytest.raises(DatasetsError) as caught:
        load_registry(conn, path)
    return path, str(caught.value)


def run(settings: Settings, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run ``python argv`` from the repository root with ``settings`` in its environment, in a
    process group of its own (killed with whatever it left behind, and failing the test, if it
    has not exited within PROCESS_TIMEOUT_S)."""
    proc = subprocess.Popen(
        [sys.executable, *argv],
        cwd=ROOT,
        env=env_for(settings),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=PROCESS_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        signal_groups([proc.pid], signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(argv)} still running after {PROCESS_TIMEOUT_S}s:\n{out}\n{err}")
    finally:
        signal_groups([proc.pid], signal.SIGKILL)  # anything of its group still there (gunicorn's workers)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def test_worker_does_not_start_with_a_bad_file(settings, bad):
    path, message = bad
    done = run(settings.replace(datasets_file=str(path)), "-m", "worker", "--burst")
    assert done.returncode != 0
    assert f"spillway worker: not starting: {message}" in done.stderr


def test_reconciler_does_not_start_with_a_bad_file(settings, bad):
    path, message = bad
    done = run(settings.replace(datasets_file=str(path)), "-m", "worker.reconciler", "--once")
    assert done.returncode != 0
    assert f"spillway reconciler: not starting: {message}" in done.stderr


def test_gunicorn_does_not_start_with_a_bad_file(settings, bad):
    path, message = bad
    api = settings.replace(datasets_file=str(path), api_port=free_port())
    done = run(api, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "api.wsgi:app")
    assert done.returncode != 0
    log = done.stdout + done.stderr
    assert f"DatasetsError: {message}" in log
    assert "Worker failed to boot" in log


def test_datasets_check_fails_naming_the_problem(settings, bad):
    path, message = bad
    done = run(settings.replace(datasets_file=str(path)), "-m", "flask", "--app", "api.wsgi", "datasets", "check")
    assert done.returncode == 1
    assert done.stderr.strip() == f"Error: {message}"
    assert done.stdout == ""


def test_datasets_check_passes_with_the_shipped_file(settings):
    assert settings.datasets_file == DEFAULT_DATASETS_FILE
    done = run(settings, "-m", "flask", "--app", "api.wsgi", "datasets", "check")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [f"ok {name}" for name in read_file(DEFAULT_DATASETS_FILE)]
    assert "ok orders: table shop.orders, key id (uuid)" in done.stdout
    assert "ok tenant_orders: table shop.orders, key id (uuid)" in done.stdout and "scoped by tenant" in done.stdout


def test_keys_create_works_with_a_bad_file(settings, bad):
    path, _ = bad
    owner = f"dsf-someone-{secrets.token_hex(3)}"
    done = run(settings.replace(datasets_file=str(path)), "-m", "flask", "--app", "api.wsgi", "keys", "create", owner)
    assert done.returncode == 0, done.stderr
    assert f"created a key for owner {owner!r}" in done.stderr
    assert len(done.stdout.strip().splitlines()) == 1 and len(done.stdout.strip()) >= 20


def test_keys_create_stores_the_attributes_scopes_bind_to(settings, db):
    owner = f"dsf-acme-{secrets.token_hex(3)}"
    done = run(
        settings,
        "-m",
        "flask",
        "--app",
        "api.wsgi",
        "keys",
        "create",
        owner,
        "--attr",
        "tenant=42",
        "--attr",
        "region=eu",
    )
    assert done.returncode == 0, done.stderr
    with psycopg.connect(db) as conn:
        principal = authenticate(conn, done.stdout.strip().splitlines()[-1])
    assert principal is not None and principal.owner == owner
    assert principal.attributes == {"tenant": "42", "region": "eu"}
    for bad in ("tenant", "=42", "tenant=", "1x=2", "tenant=a\nb"):
        refused = run(settings, "-m", "flask", "--app", "api.wsgi", "keys", "create", owner, "--attr", bad)
        assert refused.returncode == 2 and "--attr" in refused.stderr, (bad, refused.stderr)


# --- make up checks the file after seeding, before it starts the processes --------------------


@pytest.fixture
def keep_registry(monkeypatch):
    """Restore the session's installed registry after a test that runs ``load`` (which installs)."""
    monkeypatch.setattr(datasets_module, "_registry", datasets_module._registry)


def test_stack_check_raises_a_stack_error_with_the_message(settings, bad):
    path, message = bad
    with pytest.raises(StackError) as caught:
        stack.check_datasets(settings.replace(datasets_file=str(path)))
    assert str(caught.value).startswith(f"{message} (the API and workers were not started")


def test_stack_check_passes_with_the_shipped_file(settings, keep_registry, capsys):
    assert stack.check_datasets(settings) == list(read_file(DEFAULT_DATASETS_FILE))
    assert "[stack] datasets: products, uneven_rows, orders" in capsys.readouterr().out


@pytest.fixture
def fake_stack(monkeypatch, settings, keep_registry) -> list[str]:
    """``deploy.stack``'s services, seeding and process starts replaced by recorders (the check
    of the datasets file is the real one), with the test settings in the environment; return
    the list of what ``up`` did, in order."""
    done: list[str] = []
    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(stack, "ensure_postgres", lambda s: done.append("postgres"))
    monkeypatch.setattr(stack.local_redis, "ensure_redis", lambda s: done.append("redis") or s.redis_url)
    monkeypatch.setattr(stack, "ensure_s3", lambda s: done.append("s3"))
    monkeypatch.setattr(stack, "migrate_and_seed", lambda s, seed: done.append(f"migrate seed={seed}"))
    real_check = stack.check_datasets
    monkeypatch.setattr(stack, "check_datasets", lambda s: done.append("check datasets") or real_check(s))
    monkeypatch.setattr(stack, "start_process", lambda name, command, env=None: done.append(f"start {name}"))
    monkeypatch.setattr(stack, "wait_for_api", lambda s: done.append("wait for api"))
    monkeypatch.setattr(stack, "dashboard_env", lambda s: {})
    return done


def test_stack_up_stops_before_starting_processes_with_a_bad_file(fake_stack, monkeypatch, capsys, bad):
    path, message = bad
    monkeypatch.setenv("SPILLWAY_DATASETS_FILE", str(path))
    assert stack.main(["up"]) == 1
    assert fake_stack == ["postgres", "redis", "s3", "migrate seed=True", "check datasets"]
    assert f"[stack] error: {message} (the API and workers were not started" in capsys.readouterr().out


def test_stack_up_deps_only_does_not_check_the_file(fake_stack, monkeypatch, bad):
    monkeypatch.setenv("SPILLWAY_DATASETS_FILE", str(bad[0]))
    assert stack.main(["up", "--deps-only"]) == 0
    assert fake_stack == ["postgres", "redis", "s3", "migrate seed=False"]


def test_stack_up_checks_the_file_after_seeding_and_before_the_processes(fake_stack):
    assert stack.main(["up"]) == 0
    assert fake_stack[:5] == ["postgres", "redis", "s3", "migrate seed=True", "check datasets"]
    assert fake_stack[5] == "start web" and fake_stack[-1] == "wait for api"
