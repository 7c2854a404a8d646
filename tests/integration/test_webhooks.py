"""Signed webhooks with real workers, a real reconciler and a local receiver over HTTP:
one delivery for each of completed, failed and cancelled with a signature that verifies;
two 500s and the third attempt delivers with the same delivery id; private destinations
refused at request time and again at delivery time unless allowed."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from api import create_app
from shared.settings import Settings
from shared.webhooks import DestinationError, check_destination
from tests.support.api import ApiSession
from tests.support.processes import spawn, stop
from tests.support.waiting import wait_for
from tests.support.workers import WorkerPool
from worker.webhooks import _post, _post_within

SECRET = "a-receiver-secret-of-some-length"
SMALL = {"dataset": "products", "columns": ["id", "name"], "filters": {"id": {"lte": 2_000}}, "delivery": "async"}


@dataclass
class Receiver:
    """A local webhook receiver: records every request; answers 500 while ``fail_next`` > 0."""

    url: str = ""
    received: list[dict] = field(default_factory=list)
    fail_next: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def for_export(self, export_id: str) -> list[dict]:
        with self.lock:
            return [r for r in self.received if r["json"]["id"] == export_id]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    got = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with got.lock:
                status = 500 if got.fail_next > 0 else 204
                got.fail_next = max(0, got.fail_next - 1)
                got.received.append(
                    {
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": body,
                        "json": json.loads(body),
                        "answer": status,
                    }
                )
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    got.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/spillway?team=42"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield got
    server.shutdown()


def stack(settings: Settings, worker_settings: Settings, keys_for) -> Iterator[ApiSession]:
    pool = WorkerPool(worker_settings)
    pool.start(2)
    reconciler = spawn(worker_settings, f"test-reconciler-{worker_settings.queue_prefix}", "worker.reconciler")
    app = create_app(settings)
    try:
        yield ApiSession(app.test_client(), keys_for(f"hooks-{uuid.uuid4().hex[:6]}"))
    finally:
        app.extensions["spillway"].close()
        stop([reconciler])
        pool.stop()


@pytest.fixture(scope="module")
def hooks(settings, seeded, bucket, redis, keys_for) -> Iterator[ApiSession]:
    """API, workers and reconciler that may deliver to this machine's receiver; quick retries.
    The workers allow XLSX exports of 10 rows at most (the API allows more), so an export of 20
    rows fails in the planner: a failed export on demand."""
    s = settings.replace(
        queue_prefix=f"hooks-{uuid.uuid4().hex[:6]}",
        webhook_allow_private=True,
        webhook_allow_http=True,
        webhook_retry_delays_s="0.2,0.2,0.2",
        reconcile_interval_s=0.3,
    )
    yield from stack(s, s.replace(xlsx_max_rows=10), keys_for)


def verify(request: dict) -> None:
    headers = request["headers"]
    expected = hmac.new(
        SECRET.encode(), headers["X-Spillway-Timestamp"].encode() + b"." + request["body"], hashlib.sha256
    ).hexdigest()
    assert headers["X-Spillway-Signature"] == f"sha256={expected}"
    assert headers["Content-Type"] == "application/json"
    assert SECRET not in request["body"].decode()  # the secret signs; it is never sent


def ended(api: ApiSession, export_id: str, status: str) -> dict:
    def delivered():
        body = api.status(export_id)
        deliveries = (body["notify"] or {}).get("deliveries") or []
        return body if body["status"] == status and deliveries and deliveries[0]["status"] != "pending" else None

    return wait_for(delivered, timeout=120, what=f"export {export_id} {status} and its delivery done")


@pytest.mark.parametrize("outcome", ["completed", "failed", "cancelled"])
def test_one_signed_delivery_for_each_end(hooks, receiver, outcome):
    notify = {"notify": {"url": receiver.url, "secret": SECRET}}
    if outcome == "failed":
        body = {**SMALL, "filters": {"id": {"lte": 20}}, "format": "xlsx", **notify}
    elif outcome == "cancelled":
        body = {"dataset": "products", "delivery": "async", **notify}
    else:
        body = {**SMALL, **notify}
    export = hooks.export(body)
    assert export["notify"] == {"url": receiver.url, "deliveries": []}  # the secret is never shown
    if outcome == "cancelled":
        assert hooks.post(f"/exports/{export['id']}/cancel").status_code == 200
    final = ended(hooks, export["id"], outcome)
    [request] = receiver.for_export(export["id"])
    verify(request)
    assert request["path"] == "/hooks/spillway?team=42"
    assert request["headers"]["X-Spillway-Event"] == f"export.{outcome}"
    assert request["json"]["status"] == outcome and request["json"]["id"] == export["id"]
    [delivery] = final["notify"]["deliveries"]
    assert delivery["id"] == request["headers"]["X-Spillway-Delivery"]
    assert delivery["status"] == "delivered" and delivery["attempts"] == 1 and delivery["last_status_code"] == 204
    assert SECRET not in json.dumps(final)
    if outcome == "failed":
        assert "SPILLWAY_XLSX_MAX_ROWS" in request["json"]["error"]
    if outcome == "completed":
        assert request["json"]["progress"]["rows_done"] == 2_000 and request["json"]["checksum"] is not None


def test_a_receiver_answering_500_twice_gets_it_on_the_third_attempt(hooks, receiver):
    with receiver.lock:
        receiver.fail_next = 2
    export = hooks.export({**SMALL, "notify": {"url": receiver.url, "secret": SECRET}})
    final = ended(hooks, export["id"], "completed")
    requests = receiver.for_export(export["id"])
    assert [r["answer"] for r in requests] == [500, 500, 204]
    assert len({r["headers"]["X-Spillway-Delivery"] for r in requests}) == 1  # one id: a receiver drops repeats
    for r in requests:
        verify(r)
    [delivery] = final["notify"]["deliveries"]
    assert (delivery["status"], delivery["attempts"], delivery["last_status_code"]) == ("delivered", 3, 204)
    listed = next(e for e in hooks.get("/exports?limit=100").get_json()["exports"] if e["id"] == export["id"])
    assert listed["notify"]["deliveries"][0]["status"] == "delivered"  # also in the list


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://127.0.0.1/hook", "loopback"),
        ("https://localhost:8443/hook", "loopback"),
        ("https://[::1]/hook", "loopback"),
        ("https://[::ffff:127.0.0.1]/hook", "loopback"),
        ("https://10.1.2.3/hook", "private"),
        ("https://192.168.0.10/hook", "private"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://0.0.0.0/hook", "unspecified"),
        ("https://100.64.0.1/hook", "non-public"),
        ("http://203.0.113.9/hook", "https"),
        ("https://user:pw@203.0.113.9/hook", "credentials"),
        ("ftp://203.0.113.9/hook", "https"),
        ("https://no-such-host.invalid/hook", "does not resolve"),
        ("https://[2002:a9fe:a9fe::1]/hook", "link-local"),  # 6to4 carrying 169.254.169.254
        ("https://[2001:db8::1]/hook", "private"),
        ("https://ｌｏｃａｌｈｏｓｔ/hook", "loopback"),  # full-width letters are localhost once converted
        ("https://203.0.113.9:0/hook", "port 0"),
        ("not a url", "https"),
    ],
)
def test_destinations_are_refused_at_request_time(settings, db, bucket, redis, keys_for, url, problem):
    app = create_app(settings)  # the defaults: public https destinations only
    api = ApiSession(app.test_client(), keys_for("hooks-refused"))
    answer = api.post("/exports", json={**SMALL, "notify": {"url": url, "secret": SECRET}})
    assert answer.status_code == 400, answer.get_data(as_text=True)
    error = answer.get_json()["error"]
    assert error["field"] == "notify.url" and problem in error["message"]
    assert api.get("/exports?limit=100").get_json()["exports"] == []  # nothing created
    app.extensions["spillway"].close()


@pytest.mark.parametrize(
    ("notify", "field_name"),
    [
        ({"url": "https://203.0.113.9/h", "secret": "short"}, "notify.secret"),
        ({"url": "https://203.0.113.9/h"}, "notify.secret"),
        ({"url": "https://203.0.113.9/h", "secret": SECRET, "extra": 1}, "notify.extra"),
        ("https://203.0.113.9/h", "notify"),
        ({"url": 5, "secret": SECRET}, "notify.url"),
    ],
)
def test_a_bad_notify_is_400_naming_its_field(settings, db, bucket, redis, keys_for, notify, field_name):
    app = create_app(settings)
    answer = ApiSession(app.test_client(), keys_for("hooks-bad")).post("/exports", json={**SMALL, "notify": notify})
    assert answer.status_code == 400
    assert answer.get_json()["error"]["field"] == field_name
    app.extensions["spillway"].close()


def test_a_public_address_passes_the_check(settings):
    found = check_destination("https://1.1.1.1:8443/in?x=1", settings)
    assert (found.host, found.port, found.target, found.addresses) == ("1.1.1.1", 8443, "/in?x=1", ("1.1.1.1",))
    with pytest.raises(DestinationError, match="private"):  # TEST-NET-3: documentation, not the internet
        check_destination("https://203.0.113.9/", settings)
    with pytest.raises(DestinationError):
        check_destination("https://127.0.0.1/", settings)
    assert check_destination("http://127.0.0.1/", settings.replace(webhook_allow_private=True, webhook_allow_http=True))


def test_an_address_that_turned_private_is_refused_at_delivery(settings, seeded, bucket, redis, keys_for, receiver):
    """As after a DNS rebinding: accepted when requested, private when delivered — the
    delivery checks again and never connects."""
    s = settings.replace(
        queue_prefix=f"rebind-{uuid.uuid4().hex[:6]}",
        webhook_allow_private=True,
        webhook_allow_http=True,
        reconcile_interval_s=0.3,
    )
    for api in stack(s, s.replace(webhook_allow_private=False), keys_for):
        export = api.export({**SMALL, "notify": {"url": receiver.url, "secret": SECRET}})
        final = ended(api, export["id"], "completed")
        [delivery] = final["notify"]["deliveries"]
        assert delivery["status"] == "failed" and delivery["attempts"] == 1  # refused: not retried
        assert "refused at delivery" in delivery["last_error"] and "loopback" in delivery["last_error"]
        assert receiver.for_export(export["id"]) == []


@contextmanager
def local_server(handler_class) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/in"
    finally:
        server.shutdown()


def test_a_redirect_is_not_followed_and_a_dripping_receiver_is_cut_off(settings):
    open_settings = settings.replace(webhook_allow_private=True, webhook_allow_http=True)
    hits: list[str] = []

    class Target(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            hits.append(self.path)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    with local_server(Target) as target:

        class Redirect(Target):
            def do_POST(self):  # noqa: N802
                self.send_response(307)
                self.send_header("Location", target)
                self.end_headers()

        with local_server(Redirect) as url:
            assert _post(check_destination(url, open_settings), b"{}", {}, 5) == 307
        assert hits == []  # never followed

    class Drip(Target):
        def do_POST(self):  # noqa: N802
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            for _ in range(40):  # a header byte every 0.1 s: each read is quick, the answer never ends
                self.wfile.write(b"X")
                self.wfile.flush()
                time.sleep(0.1)

    with local_server(Drip) as url:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="within 1 s"):
            _post_within(check_destination(url, open_settings), b"{}", {}, 1.0)
        assert time.monotonic() - started < 2.5
