"""JSON logs (``SPILLWAY_LOG_FORMAT=json``) of a real gunicorn API and real workers: every line
is one JSON object, and the lines of one export, from the API's request to the finalizer, are
found by its id, each with its part, attempt, owner and (in the API) the request id."""

from __future__ import annotations

import json
import urllib.request

import pytest

from tests.support.processes import LOGS
from tests.support.servers import gunicorn_api
from tests.support.waiting import wait_for
from tests.support.workers import WorkerPool

ROWS = 160_000  # about 31 MB of products: at least three parts of 5 MiB or more


def _call(base: str, key: str, path: str, body: dict | None = None, headers: dict | None = None):
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode() if body is not None else None,
        method="POST" if body is not None else "GET",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json", **(headers or {})},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return answer.status, dict(answer.headers), json.load(answer)


def test_json_lines_of_one_export_from_api_to_finalizer_are_found_by_its_id(settings, seeded, bucket, redis, keys_for):
    s = settings.replace(queue_prefix="jsonlogs", log_format="json", part_min_bytes=5 * 1024 * 1024)
    key = keys_for("log-reader")
    names = ["test-gunicorn-jsonlogs", *(f"test-worker-jsonlogs-{n}" for n in (1, 2))]
    offsets = {n: (LOGS / f"{n}.log").stat().st_size if (LOGS / f"{n}.log").exists() else 0 for n in names}
    pool = WorkerPool(s)
    pool.start(2)
    try:
        with gunicorn_api(s, names[0]) as (base, _health):
            status, headers, export = _call(
                base,
                key,
                "/exports",
                {"dataset": "products", "filters": {"id": {"lte": ROWS}}, "delivery": "async"},
                {"X-Request-Id": "trace-7f3a"},
            )
            assert status == 202 and headers["X-Request-Id"] == "trace-7f3a"
            done = wait_for(
                lambda: (e := _call(base, key, f"/exports/{export['id']}")[2])["status"] == "completed" and e,
                timeout=120,
                what="the export to complete",
            )
            _, polled, _ = _call(base, key, "/health/live")
            assert len(polled["X-Request-Id"]) == 32  # none sent: one is made
    finally:
        pool.stop()

    lines = []
    for name in names:
        with open(LOGS / f"{name}.log", encoding="utf-8") as log:
            log.seek(offsets[name])
            for text in log.read().splitlines():
                if text.strip():
                    lines.append(json.loads(text))  # every line is JSON: a line that is not fails here
    assert all(key not in json.dumps(line) for line in lines)
    mine = [line for line in lines if line.get("export") == export["id"]]
    assert mine and all(line["owner"] == "log-reader" for line in mine if line["logger"].startswith("spillway")), mine

    (accepted,) = [line for line in mine if line["message"].startswith("export accepted")]
    assert accepted["request_id"] == "trace-7f3a" and accepted["owner"] == "log-reader"
    access = [line for line in lines if line["logger"] == "gunicorn.access" and line.get("request_id") == "trace-7f3a"]
    assert [(line["method"], line["path"], line["status"]) for line in access] == [("POST", "/exports", "202")]
    assert any(line.get("part") == "plan" and line["owner"] == "log-reader" for line in mine)
    recorded = {int(line["part"]): line for line in mine if line["message"].startswith("part recorded")}
    parts = done["progress"]["parts_total"]
    assert parts >= 3 and sorted(recorded) == list(range(1, parts + 1))
    assert all(line["attempt"] == "1" and line["owner"] == "log-reader" for line in recorded.values())
    (completed,) = [line for line in mine if line["message"].startswith("export completed")]
    assert completed["part"] == "finalize" and completed["message"] == (
        f"export completed: {done['progress']['total_rows']} rows, {done['object_bytes']} bytes"
    )
    assert any(line["logger"].startswith("rq.") for line in mine)  # RQ's own lines about its jobs carry the export


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("trace-7f3a", True),
        ("a" * 100, True),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", True),  # a W3C traceparent
        ("a" * 101, False),  # too long
        ("two words", False),
        ('quote"d', False),
        ("-leading-dash", False),
        ("caf\u00e9", False),  # not ASCII
        ("", False),
    ],
)
def test_a_callers_request_id_is_kept_only_when_it_is_a_plain_token(client, sent, kept):
    answer = client.get("/health/live", headers={"X-Request-Id": sent})
    echoed = answer.headers["X-Request-Id"]
    if kept:
        assert echoed == sent
    else:
        assert echoed != sent and len(echoed) == 32 and int(echoed, 16) >= 0  # a new random id
    assert client.get("/health/live").headers["X-Request-Id"] != echoed  # one per request
