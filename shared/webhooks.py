"""Webhooks: a signed POST to the owner's URL when an export ends (completed, failed, cancelled).

Invariants:

- A destination is checked twice: when the export is requested (400 naming the address) and
  again by every delivery attempt, which then connects to the very address it checked (no second
  lookup a DNS rebinding could answer differently). Loopback, private, link-local (the cloud
  metadata address 169.254.169.254 among them), shared, multicast, reserved and unspecified
  addresses are refused unless ``SPILLWAY_WEBHOOK_ALLOW_PRIVATE`` is true; plain ``http`` unless
  ``SPILLWAY_WEBHOOK_ALLOW_HTTP`` is (a delivery holds the export's metadata).
- An export has at most one delivery (``webhook_deliveries.export_id`` is unique); its id is the
  ``X-Spillway-Delivery`` header of every attempt, so a receiver drops the duplicates that
  at-least-once delivery can bring (an attempt whose answer was lost is made again).
- Postgres holds each delivery's state; Redis only carries the attempt jobs. Attempts are fenced
  by their number: a late attempt cannot overwrite a newer one's outcome.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import hmac
import ipaddress
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import psycopg

from shared.models import Export, ExportStatus
from shared.records import fetch_all, fetch_one, fetch_tuples
from shared.settings import Settings
from shared.spec import SpecError

EVENTS = {
    ExportStatus.COMPLETED: "export.completed",
    ExportStatus.FAILED: "export.failed",
    ExportStatus.CANCELLED: "export.cancelled",
}
Conn = psycopg.Connection[Any]
MAX_URL_CHARS = 2000
SECRET_CHARS = (16, 256)  # a shorter secret is guessable; a longer one is a mistake
MAX_ERROR_CHARS = 500
RESOLVE_TIMEOUT_S = 5.0  # getaddrinfo has no timeout of its own: a silent nameserver would hold a thread
# Lookups run here so that the caller can stop waiting; a stuck one keeps one of these threads.
_RESOLVER = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="webhook-dns")


@dataclass(frozen=True)
class Notify:
    """Where to deliver and what to sign with."""

    url: str
    secret: str


@dataclass(frozen=True)
class Destination:
    """A checked destination: the URL's parts and the addresses it resolved to."""

    scheme: str
    host: str
    port: int
    target: str  # path and query
    addresses: tuple[str, ...]


class DestinationError(ValueError):
    """The URL may not be delivered to (the message says why)."""


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`` with the secret."""
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def _address_problem(address: str) -> str | None:
    """Why a resolved address is not a public one (None: it is)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # a scope id (fe80::1%eth0) names no other address
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None:  # an IPv4 address carried inside: judge that one
            problem = _address_problem(str(embedded))
            if problem:
                return problem
    for kind, flag in (  # the most telling first: 0.0.0.0 and 169.254/16 are "private" too
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local (cloud metadata lives there)", ip.is_link_local),
        ("private", ip.is_private),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
    ):
        if flag:
            return kind
    return None if ip.is_global else "non-public"


def check_destination(url: str, settings: Settings) -> Destination:
    """Parse, resolve and check a webhook URL.

    Raises:
        DestinationError: not an http(s) URL with a host, credentials in it, a scheme or address
            the settings do not allow, or a host that does not resolve.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise DestinationError(f"is not a URL: {exc}") from None
    allowed = ("https", "http") if settings.webhook_allow_http else ("https",)
    if parts.scheme not in allowed:
        hint = "" if settings.webhook_allow_http else " (http needs SPILLWAY_WEBHOOK_ALLOW_HTTP=true)"
        raise DestinationError(f"must be an {' or '.join(allowed)} URL{hint}")
    if not parts.hostname:
        raise DestinationError("has no host")
    if parts.username is not None or parts.password is not None:
        raise DestinationError("must not hold credentials: the signature authenticates Spillway")
    if parts.fragment:
        raise DestinationError("must not have a #fragment")
    if port == 0:
        raise DestinationError("has port 0")
    port = port or (443 if parts.scheme == "https" else 80)
    try:  # one ASCII form for the lookup, the Host header, SNI and the certificate check
        host = parts.hostname.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise DestinationError(f"host {parts.hostname!r} is not a valid host name ({exc})") from None
    lookup = _RESOLVER.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    try:
        found = lookup.result(timeout=RESOLVE_TIMEOUT_S)
    except concurrent.futures.TimeoutError:
        raise DestinationError(f"host {host!r} did not resolve within {RESOLVE_TIMEOUT_S:.0f} s") from None
    except (OSError, UnicodeError) as exc:
        raise DestinationError(f"host {host!r} does not resolve ({exc})") from None
    addresses = tuple(dict.fromkeys(str(info[4][0]) for info in found))
    if not settings.webhook_allow_private:
        for address in addresses:
            problem = _address_problem(address)
            if problem:
                raise DestinationError(
                    f"host {host!r} resolves to {address}, a {problem} address; webhooks go to"
                    " public addresses only (SPILLWAY_WEBHOOK_ALLOW_PRIVATE=true allows others)"
                )
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Destination(parts.scheme, host, port, target, addresses)


def parse_notify(value: Any, settings: Settings) -> Notify | None:
    """The ``notify`` field of ``POST /exports``, checked (its address included).

    Raises:
        SpecError: naming ``notify``, ``notify.url`` or ``notify.secret``.
    """
    if value is None:
        return None
    if not isinstance(value, dict):
        raise SpecError('notify must be an object like {"url": "https://…", "secret": "…"}', "notify")
    unknown = sorted(set(value) - {"url", "secret"})
    if unknown:
        raise SpecError(f"unknown notify field {unknown[0]!r} (allowed: secret, url)", f"notify.{unknown[0]}")
    url, secret = value.get("url"), value.get("secret")
    if not isinstance(url, str) or not 1 <= len(url) <= MAX_URL_CHARS or not url.isprintable():
        raise SpecError(f"notify.url must be a URL of at most {MAX_URL_CHARS} characters", "notify.url")
    low, high = SECRET_CHARS
    if not isinstance(secret, str) or not low <= len(secret) <= high or not (secret.isascii() and secret.isprintable()):
        raise SpecError(f"notify.secret must be {low}-{high} printable ASCII characters", "notify.secret")
    try:
        check_destination(url, settings)
    except DestinationError as exc:
        raise SpecError(f"notify.url {exc}", "notify.url") from None
    return Notify(url, secret)


# ---- delivery state (Postgres) -----------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """One row of ``webhook_deliveries``."""

    id: uuid.UUID
    export_id: uuid.UUID
    event: str
    status: str
    attempts: int
    next_attempt_at: datetime
    lease_expires_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None

    def json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "event": self.event,
            "status": self.status,
            "attempts": self.attempts,
            "last_status_code": self.last_status_code,
            "last_error": self.last_error,
            "delivered_at": self.delivered_at.isoformat().replace("+00:00", "Z") if self.delivered_at else None,
        }


_FIELDS = (
    "id, export_id, event, status, attempts, next_attempt_at, lease_expires_at, last_status_code,"
    " last_error, created_at, delivered_at"
)


def schedule(conn: Conn, export: Export) -> uuid.UUID | None:
    """Create the delivery of an ended export that asked for one; return its id when new."""
    event = EVENTS.get(export.status)
    if export.notify_url is None or event is None:
        return None
    rows = fetch_tuples(
        conn,
        "INSERT INTO webhook_deliveries (id, export_id, event) VALUES (%s, %s, %s)"
        " ON CONFLICT (export_id) DO NOTHING RETURNING id",
        (uuid.uuid4(), export.id, event),
    )
    return rows[0][0] if rows else None


def schedule_missed(conn: Conn, limit: int = 100) -> int:
    """Create the deliveries a process died before creating (the reconciler's backstop)."""
    rows = fetch_tuples(
        conn,
        "INSERT INTO webhook_deliveries (id, export_id, event)"
        " SELECT gen_random_uuid(), e.id, 'export.' || e.status FROM exports e"
        " WHERE e.notify_url IS NOT NULL AND e.status IN ('completed', 'failed', 'cancelled')"
        " AND e.finished_at > now() - interval '1 day'"
        " AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.export_id = e.id)"
        " LIMIT %s ON CONFLICT (export_id) DO NOTHING RETURNING id",
        (limit,),
    )
    return len(rows)


def due(conn: Conn, max_attempts: int, limit: int = 100) -> list[tuple[uuid.UUID, int]]:
    """Pending deliveries whose next attempt is due and not in progress: ``(id, next attempt)``.

    First ends as ``failed`` those that used every attempt without recording an outcome (their
    last attempts were killed: a job past its limit, a dead worker).
    """
    conn.execute(
        "UPDATE webhook_deliveries SET status = 'failed', lease_expires_at = NULL,"
        " last_error = coalesce(last_error || '; ', '') || 'gave up: no attempt recorded an outcome'"
        " WHERE status = 'pending' AND attempts >= %s AND (lease_expires_at IS NULL OR lease_expires_at < now())",
        (max_attempts,),
    )
    rows = fetch_tuples(
        conn,
        "SELECT id, attempts + 1 FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= now()"
        " AND attempts < %s AND (lease_expires_at IS NULL OR lease_expires_at < now())"
        " ORDER BY next_attempt_at LIMIT %s",
        (max_attempts, limit),
    )
    return [(r[0], r[1]) for r in rows]


@dataclass(frozen=True)
class Claimed:
    """An attempt in progress: the delivery, its number, and where and how to sign."""

    delivery: Delivery
    attempt: int
    url: str
    secret: str


def claim(conn: Conn, delivery_id: uuid.UUID, attempt: int, lease_s: int, max_attempts: int) -> Claimed | None:
    """Start attempt ``attempt`` of a due pending delivery (None: not due, taken, or over)."""
    if attempt > max_attempts:
        return None
    rows = fetch_tuples(
        conn,
        "UPDATE webhook_deliveries d SET attempts = attempts + 1, lease_expires_at = now() + make_interval(secs => %s)"
        " FROM exports e WHERE d.id = %s AND e.id = d.export_id AND d.status = 'pending' AND d.attempts = %s"
        " AND d.next_attempt_at <= now() AND (d.lease_expires_at IS NULL OR d.lease_expires_at < now())"
        " RETURNING e.notify_url, e.notify_secret",
        (lease_s, delivery_id, attempt - 1),
    )
    if not rows:
        return None
    delivery = fetch_one(conn, Delivery, f"SELECT {_FIELDS} FROM webhook_deliveries WHERE id = %s", (delivery_id,))
    assert delivery is not None
    return Claimed(delivery, attempt, rows[0][0], rows[0][1])


def record_attempt(
    conn: Conn,
    delivery_id: uuid.UUID,
    attempt: int,
    status_code: int | None,
    error: str | None,
    retry_in_s: float | None,
) -> str:
    """Store an attempt's outcome: ``delivered`` (no error), ``pending`` again (``retry_in_s``), or
    ``failed``. Fenced by the attempt number; returns the status written (or ``superseded``)."""
    status = "delivered" if error is None else ("pending" if retry_in_s is not None else "failed")
    rows = fetch_tuples(
        conn,
        "UPDATE webhook_deliveries SET status = %s, last_status_code = %s, last_error = %s, lease_expires_at = NULL,"
        " next_attempt_at = now() + make_interval(secs => %s),"
        " delivered_at = CASE WHEN %s = 'delivered' THEN now() END"
        " WHERE id = %s AND attempts = %s AND status = 'pending' RETURNING status",
        (status, status_code, (error or "")[:MAX_ERROR_CHARS] or None, retry_in_s or 0, status, delivery_id, attempt),
    )
    return str(rows[0][0]) if rows else "superseded"


def deliveries_of(conn: Conn, export_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[Delivery]]:
    """The deliveries of these exports (one query for a page of them)."""
    if not export_ids:
        return {}
    found: dict[uuid.UUID, list[Delivery]] = {}
    for delivery in fetch_all(
        conn, Delivery, f"SELECT {_FIELDS} FROM webhook_deliveries WHERE export_id = ANY(%s)", (export_ids,)
    ):
        found.setdefault(delivery.export_id, []).append(delivery)
    return found
