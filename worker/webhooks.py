"""One webhook delivery attempt: check the destination again, POST the signed export JSON to the
address just checked, record the outcome (delivered, retry later, or failed).

Retries are not RQ's: a failed attempt sets the delivery's ``next_attempt_at``
(``SPILLWAY_WEBHOOK_RETRY_DELAYS_S``) and the reconciler enqueues the next attempt when it is due,
so a Redis restart loses no delivery. Redirects are not followed (they could lead anywhere,
a private address included): a 3xx is a failed attempt like a 5xx.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import ssl
import time
import uuid

import urllib3
from redis import Redis

from shared import exports_repo, metrics, webhooks
from shared.db import connect_state, state_label
from shared.export_view import export_view
from shared.logs import bind_log_context
from shared.queue import WEBHOOK_JOB_MARGIN_S
from shared.settings import Settings

log = logging.getLogger(__name__)
USER_AGENT = "Spillway-Webhook/1"


def _post(destination: webhooks.Destination, body: bytes, headers: dict[str, str], timeout_s: float) -> int:
    """POST to the first checked address, with the URL's host for Host, SNI and the certificate."""
    address = destination.addresses[0]
    timeout = urllib3.Timeout(connect=min(5.0, timeout_s), read=timeout_s)
    pool: urllib3.HTTPConnectionPool
    if destination.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            address,
            destination.port,
            timeout=timeout,
            retries=False,
            server_hostname=destination.host,
            assert_hostname=destination.host,
            ssl_context=ssl.create_default_context(),
        )
    else:
        pool = urllib3.HTTPConnectionPool(address, destination.port, timeout=timeout, retries=False)
    host = destination.host if ":" not in destination.host else f"[{destination.host}]"
    default_port = 443 if destination.scheme == "https" else 80
    try:
        response = pool.urlopen(
            "POST",
            destination.target,
            body=body,
            headers={**headers, "Host": host if destination.port == default_port else f"{host}:{destination.port}"},
            redirect=False,
            preload_content=False,  # the status is the answer; the body is not read into memory
        )
        response.release_conn()
        return int(response.status)
    finally:
        pool.close()


def _post_within(destination: webhooks.Destination, body: bytes, headers: dict[str, str], timeout_s: float) -> int:
    """:func:`_post` with a deadline for the whole attempt: urllib3's read timeout is per read, so
    a receiver that drips its answer a byte at a time would hold the attempt for ever. A thread
    past the deadline is left behind; the job's process ends after the job."""
    runner = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="webhook-post")
    try:
        return runner.submit(_post, destination, body, headers, timeout_s).result(timeout=timeout_s)
    except concurrent.futures.TimeoutError:
        raise TimeoutError(f"the receiver did not answer within {timeout_s:g} s") from None
    finally:
        runner.shutdown(wait=False)


def deliver(settings: Settings, redis: Redis, delivery_id: uuid.UUID, attempt: int) -> str:
    """Make attempt ``attempt`` of a delivery; return what happened."""
    label = state_label("webhook")
    with connect_state(settings, label) as state:
        lease = int(settings.webhook_timeout_s) + WEBHOOK_JOB_MARGIN_S
        claimed = webhooks.claim(state, delivery_id, attempt, lease, settings.webhook_attempts)
        if claimed is None:
            return f"skipped: attempt {attempt} of delivery {delivery_id} is not due, taken or over"
        export = exports_repo.get_export(state, claimed.delivery.export_id)
        deliveries = webhooks.deliveries_of(state, [claimed.delivery.export_id]).get(claimed.delivery.export_id)
    assert export is not None  # a delivery's export is never deleted
    bind_log_context(export=export.id, part="webhook", attempt=attempt, owner=export.owner)
    body = json.dumps(export_view(export, deliveries), separators=(",", ":")).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Spillway-Event": claimed.delivery.event,
        "X-Spillway-Delivery": str(delivery_id),
        "X-Spillway-Timestamp": timestamp,
        "X-Spillway-Signature": webhooks.signature(claimed.secret, timestamp, body),
    }
    status_code: int | None = None
    error: str | None = None
    final = False
    try:
        destination = webhooks.check_destination(claimed.url, settings)  # again: DNS may answer otherwise now
    except webhooks.DestinationError as exc:
        error, final = f"refused at delivery: notify.url {exc}", True
    else:
        try:
            status_code = _post_within(destination, body, headers, settings.webhook_timeout_s)
            if not 200 <= status_code < 300:
                error = f"the receiver answered {status_code}"
        except (urllib3.exceptions.HTTPError, OSError) as exc:  # TimeoutError is an OSError
            error = f"no answer from the receiver: {exc}"
        except Exception as exc:  # noqa: BLE001 - any other failure is this attempt's outcome, not a crash
            log.exception("webhook attempt %d failed unexpectedly", attempt)
            error = f"the attempt failed: {type(exc).__name__}: {exc}"
    delays = settings.webhook_retry_delays
    retry_in = None if error is None or final or attempt > len(delays) else delays[attempt - 1]
    with connect_state(settings, label) as state:
        outcome = webhooks.record_attempt(state, delivery_id, attempt, status_code, error, retry_in)
    kind = {"delivered": "delivered", "pending": "retry", "failed": "refused" if final else "failed"}.get(outcome)
    if kind:
        metrics.count(redis, settings, "spillway_webhook_deliveries", outcome=kind)
    if error is None:
        log.info("webhook delivered (attempt %d, %s)", attempt, status_code)
        return f"delivered: attempt {attempt}, {status_code}"
    log.warning(
        "webhook attempt %d: %s; %s", attempt, error, f"retry in {retry_in} s" if retry_in is not None else outcome
    )
    return f"{outcome}: {error}"
