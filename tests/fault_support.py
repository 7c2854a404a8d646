"""Fault-test helpers: a private Redis that can be restarted, a fault-injecting S3 proxy,
process-tree signals, and a stack (workers + reconciler + API) wired to them."""

from __future__ import annotations

import http.client
import http.server
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from redis import Redis

from tests.exports_support import ROOT, WorkerPool, settings_env
from tests.support import free_port, wait_for


class PrivateRedis:
    """A redis-server of the test's own, without persistence, that can be killed and restarted."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(self.workdir)], stdout=subprocess.DEVNULL)
        client = Redis.from_url(self.url)
        wait_for(lambda: _pings(client), what="private redis to answer")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart_empty(self) -> None:
        """SIGKILL and start again: everything in Redis is gone."""
        self.kill()
        self.start()


def _pings(client: Redis) -> bool:
    try:
        return bool(client.ping())
    except Exception:
        return False


class FaultProxy(http.server.ThreadingHTTPServer):
    """An HTTP proxy in front of the S3 endpoint that answers 500 to chosen requests.

    ``fail_upload_part_every``: every n-th UploadPart gets a 500 (and never reaches S3).
    ``lose_complete_answers``: CompleteMultipartUpload reaches S3, but its answer is replaced
    by a 500 — the ambiguous completion a client must resolve.
    """

    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream = urlsplit(upstream)
        self.fail_upload_part_every = 0
        self.lose_complete_answers = 0
        self.upload_parts = 0
        self.injected = 0
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FaultProxy

    def log_message(self, *args: object) -> None:
        pass

    def _relay(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        query = parse_qs(urlsplit(self.path).query, keep_blank_values=True)
        is_part = self.command == "PUT" and "partNumber" in query and "uploadId" in query
        is_complete = self.command == "POST" and "uploadId" in query
        with self.server.lock:
            fail_part = False
            if is_part:
                self.server.upload_parts += 1
                every = self.server.fail_upload_part_every
                fail_part = bool(every) and self.server.upload_parts % every == 0
            lose = is_complete and self.server.lose_complete_answers > 0
            if lose:
                self.server.lose_complete_answers -= 1
            if fail_part or lose:
                self.server.injected += 1
        if fail_part:
            return self._error()
        upstream = http.client.HTTPConnection(self.server.upstream.hostname, self.server.upstream.port, timeout=120)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
        upstream.request(self.command, self.path, body=body, headers=headers)
        answer = upstream.getresponse()
        data = answer.read()
        upstream.close()
        if lose:
            return self._error()
        self.send_response(answer.status)
        for key, value in answer.getheaders():
            if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(key, value)
        # A HEAD answer has no body but the Content-Length of the object: pass it through.
        length = answer.getheader("Content-Length") if self.command == "HEAD" else str(len(data))
        self.send_header("Content-Length", length or "0")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _error(self) -> None:
        body = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code>'
                b"<Message>injected by the test's fault proxy</Message></Error>")
        self.send_response(500)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def signal_tree(pid: int, sig: signal.Signals) -> list[int]:
    """Send ``sig`` to a worker's process group and to its horses' groups; return the horses."""
    horses = children(pid)
    for target in [pid, *horses]:
        try:
            os.killpg(os.getpgid(target), sig)
        except ProcessLookupError:
            pass
    return horses


@dataclass
class FaultStack:
    """Workers and a reconciler on the given settings, each a real process."""

    settings: object
    workers: WorkerPool = field(init=False)
    reconciler: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        self.workers = WorkerPool(self.settings)

    def start(self, workers: int) -> None:
        self.workers.start(workers)
        log = open(ROOT / ".data" / "logs" / "test-reconciler.log", "ab")
        self.reconciler = subprocess.Popen([sys.executable, "-m", "worker.reconciler"], cwd=ROOT,
                                           env=settings_env(self.settings), stdout=log, stderr=log,
                                           start_new_session=True)

    def stop(self) -> None:
        if self.reconciler and self.reconciler.poll() is None:
            self.reconciler.terminate()
            self.reconciler.wait(timeout=20)
        self.workers.stop()


def now() -> float:
    return time.time()
