"""The exports API: validation, authentication, ownership, the inline tier, listing."""

from __future__ import annotations

import psycopg
import pytest

from tests.support.api import ApiSession, parse_csv
from tests.support.state import exports_and_jobs

BAD_REQUESTS = [
    ({"dataset": "nope"}, "unknown dataset 'nope'"),
    ({}, "dataset is required"),
    ({"dataset": "products", "columns": ["id", "secret"]}, "unknown column 'secret'"),
    ({"dataset": "products", "columns": ["version()"]}, "unknown column 'version()'"),
    ({"dataset": "products", "columns": ["current_user"]}, "unknown column 'current_user'"),
    ({"dataset": "products", "columns": ["id; DROP TABLE products"]}, "unknown column"),
    ({"dataset": "products", "columns": []}, "columns must be a non-empty list"),
    ({"dataset": "products", "columns": ["id", "id"]}, "listed twice"),
    ({"dataset": "products", "filters": {"colour": {"eq": "red"}}}, "unknown filter column 'colour'"),
    ({"dataset": "products", "filters": {"price": {"like": 3}}}, "unknown operator 'like' for column 'price'"),
    ({"dataset": "products", "filters": {"price": {"gte": "cheap"}}}, "filters.price.gte: expected a number"),
    ({"dataset": "products", "filters": {"quantity": {"eq": 1.5}}}, "filters.quantity.eq: expected an integer"),
    ({"dataset": "products", "filters": {"category": {"in": "books"}}}, "expected a non-empty list"),
    ({"dataset": "products", "filters": {"created_at": {"gte": "yesterday"}}}, "is not an ISO 8601 timestamp"),
    ({"dataset": "products", "filters": {"tags": {"eq": "x"}}}, "column 'tags' cannot be filtered"),
    ({"dataset": "products", "filters": ["category"]}, "filters must be an object"),
    ({"dataset": "products", "delivery": "email"}, "unknown delivery 'email'"),
    ({"dataset": "products", "format": "xls"}, "unknown format 'xls' (available: csv, jsonl, xlsx)"),
    ({"dataset": "products", "format": "xlsx", "compression": "gzip"}, "an xlsx file is compressed already"),
    ({"dataset": "products", "compression": "zip"}, "unknown compression 'zip' (available: none, gzip)"),
    ({"dataset": "products", "format": "jsonl", "csv": {"bom": True}}, "csv options apply to format csv, not jsonl"),
    ({"dataset": "products", "format": "xlsx", "xlsx": {"bom": True}}, "unknown xlsx option 'bom'"),
    ({"dataset": "products", "xlsx": {"neutralize_formulas": False}}, "xlsx options apply to format xlsx, not csv"),
    ({"dataset": "products", "format": "xlsx", "xlsx": []}, "xlsx must be an object"),
    ({"dataset": "products", "csv": {"bom": "yes"}}, "csv.bom must be true or false"),
    ({"dataset": "products", "filename": "../../etc/passwd"}, "filename must be"),
    ({"dataset": "products", "extra": 1}, "unknown field 'extra'"),
    ([1, 2], "must be a JSON object"),
    ("products", "must be a JSON object"),
]


@pytest.mark.parametrize("body, message", BAD_REQUESTS)
def test_bad_requests_answer_400_naming_the_problem_and_enqueue_nothing(api, settings, redis, body, message):
    before = exports_and_jobs(settings, redis)
    response = api.post("/exports", json=body)
    assert response.status_code == 400
    assert message in response.get_json()["error"]["message"]
    assert exports_and_jobs(settings, redis) == before


@pytest.mark.parametrize("raw", [b"{not json", b"", b"\xff\xfe"])
def test_malformed_json_answers_400(api, settings, redis, raw):
    before = exports_and_jobs(settings, redis)
    response = api.post("/exports", data=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] in ("malformed_json", "invalid_request")
    assert exports_and_jobs(settings, redis) == before


def test_inline_refused_when_too_many_rows(api, settings, redis):
    before = exports_and_jobs(settings, redis)
    response = api.post("/exports", json={"dataset": "products", "delivery": "inline"})
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "too_many_rows_for_inline"
    assert exports_and_jobs(settings, redis) == before


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer sw_wrong", "Basic abc"])
def test_requests_without_a_valid_key_get_401(client, workers, header):
    headers = {"Authorization": header} if header else {}
    for method, path in (
        ("post", "/exports"),
        ("get", "/exports"),
        ("get", "/datasets"),
        ("get", "/exports/00000000-0000-0000-0000-000000000000"),
    ):
        response = getattr(client, method)(path, headers=headers, json={"dataset": "products"})
        assert response.status_code == 401, (method, path)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_another_owners_export_is_404_everywhere(app, api, keys):
    export = api.export({"dataset": "products", "filters": {"id": {"lte": 100}}})
    done = api.wait(export["id"])
    assert done["status"] == "completed"
    bob = ApiSession(app.test_client(), keys["bob"])
    assert bob.get(f"/exports/{export['id']}").status_code == 404
    assert bob.get(f"/exports/{export['id']}/download").status_code == 404
    assert export["id"] not in [e["id"] for e in bob.get("/exports?limit=100").get_json()["exports"]]
    assert api.get(f"/exports/{export['id']}/download").status_code == 302
    assert api.get("/exports/not-a-uuid").status_code == 404


def test_inline_answer_is_the_file(api, seeded):
    response = api.post(
        "/exports",
        json={
            "dataset": "products",
            "columns": ["id", "name"],
            "filters": {"id": {"lte": 50}},
            "filename": "small.csv",
        },
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"] == 'attachment; filename="small.csv"'
    rows = parse_csv(response.get_data())
    assert rows[0] == ["id", "name"]
    assert [int(r[0]) for r in rows[1:]] == list(range(1, 51))


def test_auto_goes_async_above_the_inline_limit(api, seeded):
    response = api.post("/exports", json={"dataset": "products", "filters": {"id": {"lte": 10_001}}})
    assert response.status_code == 202
    body = response.get_json()
    assert response.headers["Location"] == f"/exports/{body['id']}"
    assert body["status"] == "queued" and body["download"] is None


def test_download_before_completion_is_409(api, settings):
    from psycopg.rows import dict_row

    from shared.exports_repo import create_export
    from shared.spec import parse_spec

    with psycopg.connect(settings.state_database_url, autocommit=True, row_factory=dict_row) as conn:
        export, _ = create_export(conn, "alice", parse_spec({"dataset": "products"}))  # never enqueued: stays queued
    try:
        response = api.get(f"/exports/{export.id}/download")
        assert response.status_code == 409
        assert response.get_json()["error"]["export_status"] == "queued"
    finally:
        api.post(f"/exports/{export.id}/cancel")  # or it would be admitted and run later


def test_list_is_newest_first_and_paginated(api):
    ids = [api.export({"dataset": "products", "filters": {"id": {"lte": 5}}})["id"] for _ in range(3)]
    first = api.get("/exports?limit=2").get_json()
    second = api.get(f"/exports?limit=2&cursor={first['next_cursor']}").get_json()
    listed = [e["id"] for e in first["exports"] + second["exports"]]
    assert listed[:3] == ids[::-1]
    assert len(set(listed)) == len(listed)
    assert api.get("/exports?limit=0").status_code == 400
    assert api.get("/exports?cursor=garbage").status_code == 400


def test_datasets_describe_columns_and_filters(api):
    datasets = {d["name"]: d for d in api.get("/datasets").get_json()["datasets"]}
    products = datasets["products"]
    columns = {c["name"]: c for c in products["columns"]}
    assert columns["price"]["type"] == "numeric(12,2)" and columns["price"]["kind"] == "numeric"
    assert "gte" in columns["price"]["filters"] and columns["price"]["renders_as"]
    assert columns["name"]["filters"] == ["eq", "in", "contains"]
    assert columns["created_at"]["type"] == "timestamp with time zone"
    assert products["key"] == "id" and products["relation"] == "public.products" and not products["scoped"]
    tenant = datasets["tenant_orders"]
    assert tenant["scoped"] and tenant["scope_attributes"] == ["tenant"]
    orders = {c["name"]: c for c in datasets["orders"]["columns"]}
    assert "internal_notes" not in orders  # excluded in the datasets file
    assert orders["status"]["kind"] == "enum" and "paid" in orders["status"]["values"]
    assert orders["quantity"]["type"] == "shop.quantity" and orders["quantity"]["kind"] == "integer"  # a domain


def test_revoked_key_is_refused_once_the_cache_expires(settings, db, bucket, redis, keys_for):
    from api import create_app

    key = keys_for("revoked-owner")
    app = create_app(settings.replace(auth_cache_s=0))
    client = ApiSession(app.test_client(), key)
    assert client.get("/exports").status_code == 200
    with psycopg.connect(settings.state_database_url, autocommit=True) as conn:
        conn.execute("UPDATE api_keys SET revoked_at = now() WHERE owner = 'revoked-owner'")
    assert client.get("/exports").status_code == 401
    app.extensions["spillway"].close()
