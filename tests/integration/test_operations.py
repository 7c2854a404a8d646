"""Operations: liveness and readiness probes, a worker's liveness check, listing and revoking keys."""

from __future__ import annotations

import socket
import subprocess
import sys

import psycopg

from api import create_app
from shared.keys import create_key, list_keys, revoke_key
from tests.support.processes import ROOT
from tests.support.waiting import free_port, wait_for
from worker.alive import check


def test_live_asks_nothing_and_ready_asks_every_dependency(settings, db, bucket):
    broken = create_app(settings.replace(s3_endpoint_url=f"http://127.0.0.1:{free_port()}", health_timeout_s=1.0))
    client = broken.test_client()
    assert client.get("/health/live").status_code == 200  # S3 down: the process still lives
    ready = client.get("/health/ready")
    assert ready.status_code == 503 and ready.get_json()["down"] == ["s3"]
    broken.extensions["spillway"].close()


def test_a_worker_of_this_host_is_alive_and_none_elsewhere(settings, workers):
    alive, why = check(settings, socket.gethostname())
    assert alive, why
    assert check(settings, "another-host") == (
        False,
        f"no RQ worker of host 'another-host' serves {settings.queue_chunks!r}",
    )
    done = subprocess.run(
        [sys.executable, "-m", "worker.alive"], cwd=ROOT, env={**settings.to_env(), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0 and done.stdout.startswith("alive: worker "), done.stdout + done.stderr
    stopped = subprocess.run(
        [sys.executable, "-m", "worker.alive"], cwd=ROOT,
        env={**settings.replace(queue_prefix="nobody-serves-this").to_env(), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert stopped.returncode == 1 and stopped.stdout.startswith("not alive: no RQ worker")


def test_keys_list_shows_use_and_revoke_answers_401_after_the_cache(settings, db, bucket):
    app = create_app(settings.replace(auth_cache_s=1))
    client = app.test_client()
    with psycopg.connect(db, autocommit=True) as conn:
        key = create_key(conn, "revoke-me", attributes={"tenant": "7"})
        record = next(k for k in list_keys(conn, "revoke-me") if k.prefix == key[:10])
        assert record.last_used_at is None and record.revoked_at is None
    headers = {"Authorization": f"Bearer {key}"}
    assert client.get("/exports", headers=headers).status_code == 200
    runner = app.test_cli_runner()
    context = app.app_context()  # as the flask command provides it
    context.push()
    listing = runner.invoke(args=["keys", "list", "--owner", "revoke-me"])
    assert listing.exit_code == 0 and key[:10] in listing.output and "tenant=7" in listing.output
    with psycopg.connect(db, autocommit=True) as conn:
        assert next(k for k in list_keys(conn, "revoke-me") if k.id == record.id).last_used_at is not None
    revoked = runner.invoke(args=["keys", "revoke", str(record.id)])
    assert revoked.exit_code == 0 and "revoked key" in revoked.output
    wait_for(
        lambda: client.get("/exports", headers=headers).status_code == 401, timeout=10, what="the revoked key's 401"
    )
    with psycopg.connect(db, autocommit=True) as conn:
        assert revoke_key(conn, record.id).revoked_at is not None  # idempotent
        assert all(k.id != record.id for k in list_keys(conn, "revoke-me", revoked=False))
    missing = runner.invoke(args=["keys", "revoke", "999999999"])
    assert missing.exit_code != 0 and "no key with id 999999999" in missing.output
    context.pop()
    app.extensions["spillway"].close()
