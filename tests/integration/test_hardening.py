"""Inputs an attacker would send: each class answers a 4xx that names the problem, enqueues
nothing, and leaves no connection open in a transaction."""

from __future__ import annotations

import json
import uuid

import pytest

from shared.db import connect_state
from shared.lifecycle import admit
from tests.support.api import ApiSession
from tests.support.factories import from_now, make_export
from tests.support.state import exports_and_jobs, idle_in_transaction

HUGE_INT = "9" * 5000  # a JSON number of 5,000 digits (more than Python converts by default)


def _post_raw(api, raw: bytes, content_type: str | None = "application/json"):
    headers = {"Content-Type": content_type} if content_type else {}
    return api.post("/exports", data=raw, headers=headers)


def _assert_refused(response, status: int, *words: str, field: str | None = None) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    error = response.get_json()["error"]
    for word in words:
        assert word in error["message"], error
    if field is not None:
        assert error.get("field") == field, error
    return error


VALUES_THAT_USED_TO_500 = [
    # (filters, the field the answer names, words of its message)
    ({"quantity": {"eq": "__HUGE__"}}, "filters.quantity.eq", "5000 characters"),
    ({"id": {"in": [1, "__HUGE__"]}}, "filters.id.in[1]", "expected an integer"),
    ({"price": {"gte": "__HUGE__"}}, "filters.price.gte", "expected a number"),
    ({"price": {"gte": "1e999999999"}}, "filters.price.gte", "out of range"),
    ({"price": {"lt": "-1e-999999999"}}, "filters.price.lt", "out of range"),
    ({"created_at": {"gte": "2024-01-01T00:00:00+23:59"}}, None, None),  # accepted: normalised to UTC
    ({"created_at": {"gte": "0001-01-01T00:00:00+23:59"}}, "filters.created_at.gte", "out of range"),
    ({"id": {"in": [1, 2.5]}}, "filters.id.in[1]", "expected an integer"),
    ({"id": {"in": [1, "2"]}}, "filters.id.in[1]", "expected an integer"),
    ({"price": {"in": [1, 2.5, "3.25"]}}, None, None),  # accepted: one numeric type per list
    ({"name": {"in": ["a", 1]}}, "filters.name.in[1]", "expected a string"),
    ({"quantity": {"eq": True}}, "filters.quantity.eq", "expected an integer"),
]


@pytest.mark.parametrize(("filters", "field", "words"), VALUES_THAT_USED_TO_500)
def test_filter_values_that_used_to_answer_500(api, settings, redis, filters, field, words):
    body = json.dumps({"dataset": "products", "filters": filters}).replace('"__HUGE__"', str(HUGE_INT))
    before = exports_and_jobs(settings, redis)
    response = _post_raw(api, body.encode())
    if field is None:
        assert response.status_code in (200, 202), response.get_data(as_text=True)[:300]
    else:
        _assert_refused(response, 400, words, field=field)
        assert exports_and_jobs(settings, redis) == before
    assert not idle_in_transaction(settings)


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b'{"dataset": "products", "filters": {"name": {"eq": "\\ud800"}}}', "lone surrogate"),
        (b'{"dataset": "\\udfff"}', "lone surrogate"),
        (b"[" * 100_000 + b"]" * 100_000, "nested more than"),
        (b'{"a":' * 50 + b"1" + b"}" * 50, "nested more than"),
        (b'{"dataset": "products", "dataset": "uneven_rows"}', "appears twice"),
        (b'{"dataset": "products", "filters": {"price": {"gte": NaN}}}', "NaN is not a JSON value"),
        (b'{"dataset": "products", "filters": {"price": {"gte": Infinity}}}', "Infinity is not a JSON value"),
        (b'{"dataset": "products", "filters": {"price": {"gte": -Infinity}}}', "is not a JSON value"),
        ('{"dataset": "products"}'.encode("utf-16"), "not UTF-8"),
        ('{"dataset": "products"}'.encode("utf-32-le"), "not valid JSON"),
        (b'\xef\xbb\xbf{"dataset": "products"}', "byte order mark"),
        (b"", "empty"),
    ],
)
def test_bodies_the_parser_used_to_let_through_or_crash_on(api, settings, redis, raw, words):
    before = exports_and_jobs(settings, redis)
    _assert_refused(_post_raw(api, raw), 400, words)
    assert exports_and_jobs(settings, redis) == before


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "application/json; charset=utf-16",
        "application/json; charset=latin-1",
    ],
)
def test_a_body_that_is_not_declared_utf8_json_is_415(api, settings, redis, content_type):
    before = exports_and_jobs(settings, redis)
    _assert_refused(_post_raw(api, b'{"dataset": "products"}', content_type), 415)
    assert exports_and_jobs(settings, redis) == before


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/json;charset=UTF-8",
        "application/merge-patch+json",
    ],
)
def test_json_media_types_are_accepted(api, content_type):
    body = b'{"dataset": "products", "filters": {"id": {"lte": 3}}}'
    assert _post_raw(api, body, content_type).status_code == 200


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"filename": 0}, "filename", "filename must be"),
        ({"filename": False}, "filename", "filename must be"),
        ({"filename": ""}, "filename", "filename must be"),
        ({"filename": "report\n"}, "filename", "filename must be"),
        ({"filename": "report.csv\n"}, "filename", "filename must be"),
        ({"filename": "a\r\nSet-Cookie: x=1"}, "filename", "filename must be"),
        ({"filename": "x" * 200}, "filename", "filename must be"),
        ({"csv": 0}, "csv", "csv must be an object"),
        ({"csv": []}, "csv", "csv must be an object"),
        ({"csv": "bom"}, "csv", "csv must be an object"),
        ({"columns": "id"}, "columns", "non-empty list"),
        ({"delivery": ["async"]}, "delivery", "unknown delivery"),
    ],
)
def test_fields_the_readme_promises_to_refuse(api, settings, redis, body, field, words):
    before = exports_and_jobs(settings, redis)
    for delivery in ("inline", "async"):
        response = api.post("/exports", json={"dataset": "products", "delivery": delivery, **body})
        _assert_refused(response, 400, words, field=field)
    assert exports_and_jobs(settings, redis) == before
    assert not idle_in_transaction(settings)


@pytest.mark.parametrize("limit", ["１０", "1_0", " 10", "10 ", "+10", "0x10", "1e1", "", "-1", "0", "101", "٣"])
def test_limit_must_be_plain_ascii_digits_in_range(api, limit):
    _assert_refused(api.get(f"/exports?limit={limit}"), 400, "limit must be", field="limit")


def test_export_ids_are_accepted_only_in_their_canonical_form(api):
    export = api.export({"dataset": "products", "filters": {"id": {"lte": 5}}})
    canonical = export["id"]
    assert api.get(f"/exports/{canonical}").status_code == 200
    plain = uuid.UUID(canonical)
    for other in (canonical.upper(), plain.hex, f"{{{canonical}}}", f"urn:uuid:{canonical}", canonical + " "):
        for path in (f"/exports/{other}", f"/exports/{other}/download"):
            _assert_refused(api.get(path), 404, "no export")
        _assert_refused(api.post(f"/exports/{other}/cancel"), 404, "no export")


def test_a_body_over_the_limit_is_413_before_it_is_parsed(api, settings, redis):
    before = exports_and_jobs(settings, redis)
    big = b'{"dataset": "products", "x": "' + b"a" * settings.max_body_bytes + b'"}'
    _assert_refused(_post_raw(api, big), 413, "larger than", "SPILLWAY_MAX_BODY_BYTES")
    assert exports_and_jobs(settings, redis) == before


def test_an_inline_file_name_ending_in_a_newline_leaves_no_connection_behind(api, settings):
    for name in ("x\n", "x.csv\n", "x\n.csv"):
        _assert_refused(
            api.post("/exports", json={"dataset": "products", "filters": {"id": {"lte": 3}}, "filename": name}),
            400,
            field="filename",
        )
    ok = api.post("/exports", json={"dataset": "products", "filters": {"id": {"lte": 3}}, "filename": "fine"})
    assert ok.status_code == 200 and ok.headers["Content-Disposition"] == 'attachment; filename="fine.csv"'
    assert not idle_in_transaction(settings)


def test_a_stored_request_that_no_longer_validates_fails_at_once_and_frees_its_owner(api, settings, redis, keys_for):
    """A worker meeting a validation error fails the export without retries (2, 5, 15 s) and
    admits the owner's next export: a bad export never blocks its owner."""
    owner = f"stale-{uuid.uuid4().hex[:8]}"
    s = settings.replace(max_running_per_owner=1)
    with connect_state(settings, "test") as conn:  # autocommit: the workers must see these rows
        bad = make_export(conn, owner=owner, created_at=from_now(-2))
        good = make_export(
            conn, owner=owner, spec={"dataset": "products", "filters": {"id": {"lte": 10}}}, created_at=from_now(-1)
        )
        conn.execute("UPDATE exports SET spec = jsonb_set(spec, '{filename}', '\"x\\n.csv\"') WHERE id = %s", (bad,))
        try:
            admit(conn, redis, s, owner)
            mine = ApiSession(api.client, keys_for(owner))
            failed = mine.wait(str(bad), timeout=min(settings.retry_delays) * 3)  # before a first retry would end
            assert failed["status"] == "failed" and "filename" in failed["error"], failed
            assert mine.wait(str(good), timeout=60)["status"] == "completed"
        finally:
            conn.execute("DELETE FROM exports WHERE owner = %s", (owner,))
