"""The exports blueprint: create (inline or async), read, list, download."""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Callable
from datetime import datetime

import psycopg
from flask import Blueprint, Response, current_app, jsonify, redirect, request, url_for
from redis.exceptions import RedisError

from api.auth import current_principal, login_required
from api.body import read_json_body
from api.errors import ApiError
from api.extensions import resources, settings
from api.inline import inline_response
from api.metrics import CANCELS, EXPORTS_ACCEPTED, INLINE_BYTES
from api.ratelimits import rate_limited
from api.views import export_json
from shared import exports_repo as repo
from shared.datasets import registry
from shared.db import connect_source, process_label
from shared.formats import formats_json
from shared.lifecycle import admit, end_export
from shared.logs import bind_log_context
from shared.models import Export, ExportStatus
from shared.query import count_capped
from shared.readslots import release_read_slot, take_read_slot
from shared.records import fetch_value
from shared.settings import Settings
from shared.spec import ExportSpec, ScopeError, SpecError, parse_spec, xlsx_too_many_rows
from shared.webhooks import Delivery, Notify, deliveries_of, parse_notify

bp = Blueprint("exports", __name__)

MAX_PAGE = 100
DEFAULT_PAGE = 20
_PAGE_SIZE = re.compile(r"[0-9]{1,3}")  # ASCII digits only: int() would take " 1_0 " or full-width digits
INLINE_SLOT_TTL_S = 600  # an inline read slot whose process died is free again after this
BUSY_RETRY_AFTER_S = 2  # what a 429 for busy read slots suggests
QUEUED_RETRY_AFTER_S = 30  # what a 429 for the queued-export quota suggests: exports take seconds to minutes


@bp.get("/datasets")
@login_required
def list_datasets():
    """The exportable datasets (the datasets file), with their columns, types, renderings,
    filters, and whether a key attribute scopes their rows."""
    return jsonify({"datasets": [d.describe() for d in registry().values()], "formats": formats_json()})


@bp.post("/exports")
@login_required
def create_export():
    """Validate, count, and answer inline (200 text/csv) or async (202 + Location)."""
    s = settings()
    resources().rate_limits.take_export_request(_key_id())
    body = read_json_body(s)
    try:
        spec = parse_spec(body, current_principal().attributes)
        notify = parse_notify(body.get("notify"), s)
    except ScopeError as exc:
        raise ApiError(403, "scope_attribute_missing", exc.message, field=exc.field) from None
    except SpecError as exc:
        raise ApiError(400, "invalid_request", exc.message, field=exc.field) from None
    key = _idempotency_key()  # validated first: a bad header is a 400 whatever the tier
    if spec.format == "xlsx":
        _check_xlsx_rows(s, spec)
    if spec.delivery != "async" and notify is None:  # a webhook asks for an export that is kept
        answer = _inline_answer(s, spec)
        if answer is not None:
            return answer
    owner = current_principal().owner
    with resources().state_pool.connection() as conn:
        export, created = _create_within_quota(conn, s, owner, spec, key, notify)
        bind_log_context(export=export.id)
        if not created:
            if export.request_hash != repo.request_hash(spec):
                raise ApiError(
                    422,
                    "idempotency_key_reused",
                    "this Idempotency-Key was used with a different request",
                    export_id=str(export.id),
                )
            return _accepted(export, replayed=True)
        try:
            admit(conn, resources().redis, s, owner)
        except RedisError as exc:
            # Postgres holds the export; the reconciler enqueues it once Redis is back.
            current_app.logger.warning(
                "export %s: queue unavailable (%s); the reconciler will enqueue it", export.id, exc
            )
    EXPORTS_ACCEPTED.labels("async", spec.format).inc()
    current_app.logger.info("export accepted: %s of %s, %s", spec.format, spec.dataset, spec.delivery)
    return _accepted(export)


def _key_id() -> str:
    """What rate limits count per key: the key's row id."""
    principal = current_principal()
    return str(principal.key_id) if principal.key_id is not None else f"owner:{principal.owner}"


def _create_within_quota(
    conn, s: Settings, owner: str, spec: ExportSpec, key: str | None, notify: Notify | None
) -> tuple[Export, bool]:
    """Create the export unless the owner already has ``max_queued_per_owner`` waiting to start
    (429); a replay of an Idempotency-Key is answered whatever the count."""
    with conn.transaction():
        queued = repo.count_queued(conn, owner, lock=True) if s.max_queued_per_owner else 0
        replay = key is not None and repo.find_by_idempotency_key(conn, owner, key) is not None
        if queued >= s.max_queued_per_owner > 0 and not replay:
            raise rate_limited(
                "queued_exports",
                f"{owner} already has {queued} exports waiting to start, the most an owner may have"
                f" (SPILLWAY_MAX_QUEUED_PER_OWNER); retry when some have started, or cancel some",
                QUEUED_RETRY_AFTER_S,
            )
        return repo.create_export(conn, owner, spec, key, notify)


def _check_xlsx_rows(s: Settings, spec: ExportSpec) -> None:
    """400 when more rows match than an XLSX may hold (counted with the count's time limit;
    past it the planner checks the exact figure and fails the export with the same message)."""
    matching = _count_matching(s, spec, s.xlsx_max_rows + 1)
    if matching is not None and matching > s.xlsx_max_rows:
        raise ApiError(400, "too_many_rows_for_xlsx", xlsx_too_many_rows(matching, s.xlsx_max_rows), field="format")


def _count_matching(s: Settings, spec: ExportSpec, cap: int | None = None) -> int | None:
    """Rows matching the spec, counted up to ``cap`` (``inline_max_rows + 1``); None if it took too long."""
    query, params = count_capped(spec.source, spec, cap or s.inline_max_rows + 1)
    with connect_source(s, process_label("api:count")) as conn:
        conn.execute("SELECT set_config('statement_timeout', %s, false)", (str(s.count_timeout_ms),))
        try:
            return int(fetch_value(conn, query, params) or 0)
        except psycopg.errors.QueryCanceled:
            return None
        except psycopg.errors.DataError as exc:  # a value the checks let through that the type refuses
            raise ApiError(
                400,
                "invalid_request",
                f"a filter value does not fit its column: {exc.diag.message_primary}",
                field="filters",
            ) from None


def _inline_answer(s: Settings, spec: ExportSpec) -> Response | None:
    """The inline answer when the export is small and a read slot is free; None: go async.

    With ``delivery: inline`` the reasons to go async are errors instead (400, or 429 with
    Retry-After when every read slot stays busy).
    """
    forced = spec.delivery == "inline"
    matching = _count_matching(s, spec)
    if matching is None:
        if forced:
            raise ApiError(
                400,
                "count_timeout",
                f"counting the matching rows took longer than {s.count_timeout_ms} ms"
                " (SPILLWAY_COUNT_TIMEOUT_MS); use delivery 'async'",
                field="delivery",
            )
        return None
    if matching > s.inline_max_rows:
        if forced:
            raise ApiError(
                400,
                "too_many_rows_for_inline",
                f"more than {s.inline_max_rows} rows match; use delivery 'async' or 'auto'",
                field="delivery",
            )
        return None
    limits, key_id = resources().rate_limits, _key_id()
    wait = limits.inline_bytes_left(key_id)
    if wait is not None:
        if forced:
            raise limits.inline_bytes_exceeded(key_id, wait)
        return None
    redis = resources().redis
    try:
        slot = take_read_slot(redis, s, s.inline_slot_wait_s, INLINE_SLOT_TTL_S)
    except RedisError as exc:  # no queue, no chunk reads either: the cap holds without Redis
        current_app.logger.warning("read slots unavailable (%s); answering inline without one", exc)
        return _answer_inline(s, spec, matching, lambda: None)
    if slot is None:
        if forced:
            raise ApiError(
                429,
                "read_slots_busy",
                f"all {s.max_concurrent_reads} read slots"
                " (SPILLWAY_MAX_CONCURRENT_READS) are busy; retry, or use delivery 'auto' or 'async'",
                field="delivery",
                headers={"Retry-After": str(BUSY_RETRY_AFTER_S)},
            )
        return None

    def release() -> None:
        try:
            release_read_slot(redis, s, slot)
        except RedisError as exc:  # the slot's hash expires on its own
            current_app.logger.warning("read slot %s not released (%s)", slot, exc)

    return _answer_inline(s, spec, matching, release)


def _answer_inline(s: Settings, spec: ExportSpec, matching: int, release_slot: Callable[[], None]) -> Response:
    """The inline answer; once streamed, its slot is released and its bytes charged and counted."""
    key_id = _key_id()

    def done(sent: int) -> None:
        try:
            release_slot()
        finally:
            resources().rate_limits.charge_inline_bytes(key_id, sent)
            INLINE_BYTES.inc(sent)

    EXPORTS_ACCEPTED.labels("inline", spec.format).inc()
    return inline_response(s, spec, matching, release=done)


def _idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 1 <= len(key) <= 200 or not key.isprintable():
        raise ApiError(
            400, "invalid_request", "Idempotency-Key must be 1-200 printable characters", field="Idempotency-Key"
        )
    return key


def _accepted(export: Export, replayed: bool = False):
    """202 with the export and its Location (also when an idempotent request is replayed)."""
    response = jsonify(export_json(export, settings()))
    response.status_code = 202
    response.headers["Location"] = url_for("exports.get_export", export_id=export.id)
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


def _owned_export(export_id: str, admin_sees_all: bool = False) -> Export:
    principal = current_principal()
    owner = None if admin_sees_all and principal.is_admin else principal.owner
    with resources().state_pool.connection() as conn:
        export = repo.get_export(conn, export_id, owner)
    if export is None:
        raise ApiError(404, "not_found", f"no export {export_id}")
    return export


@bp.get("/exports/<export_id>")
@login_required
def get_export(export_id: str):
    """Status, progress and, when completed, a freshly signed download URL."""
    export = _owned_export(export_id)
    return jsonify(export_json(export, settings(), with_download=True, notify=_deliveries([export]).get(export.id)))


@bp.get("/exports/<export_id>/download")
@login_required
def download(export_id: str):
    """302 to a presigned URL when completed and its object checked; 410 when expired or the
    object is gone; 409 when not completed or the object was replaced."""
    export = _owned_export(export_id)
    if export.status == ExportStatus.EXPIRED:
        raise ApiError(410, "expired", f"export {export_id} has expired and its file was deleted")
    if export.status != ExportStatus.COMPLETED:
        raise ApiError(
            409, "not_ready", f"export {export_id} is {export.status}, not completed", export_status=export.status
        )
    body = export_json(export, settings(), with_download=True)
    if body["download_error"]:
        problem = body["download_error"]
        raise ApiError(problem["status"], problem["code"], problem["message"])
    response = redirect(body["download"]["url"], code=302)
    if not body["download"]["verified"]:
        response.headers["X-Spillway-Object-Check"] = "unverified"  # S3 could not be asked; see api/views.py
    return response


@bp.post("/exports/<export_id>/cancel")
@login_required
def cancel(export_id: str):
    """Cancel a queued or running export (its owner, or an admin key); idempotent."""
    export = _owned_export(export_id, admin_sees_all=True)
    s, redis = settings(), resources().redis
    with resources().state_pool.connection() as conn:
        cancelled = end_export(conn, redis, s, export.id, ExportStatus.CANCELLED)
        current = cancelled or repo.get_export(conn, export.id) or export
    if cancelled is not None:
        CANCELS.inc()
    if cancelled is None and current.status != ExportStatus.CANCELLED:
        raise ApiError(409, "already_finished", f"export {export_id} is {current.status}", export_status=current.status)
    return jsonify(export_json(current, s))


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        stamp, _, export_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return datetime.fromisoformat(stamp), uuid.UUID(export_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ApiError(400, "invalid_request", "cursor is not one this API returned", field="cursor") from None


@bp.get("/exports")
@login_required
def list_exports():
    """The caller's exports, newest first; ``?limit=`` (1-100) and ``?cursor=`` for the next page."""
    raw = request.args.get("limit", str(DEFAULT_PAGE))
    if not _PAGE_SIZE.fullmatch(raw):
        raise ApiError(400, "invalid_request", f"limit must be an integer from 1 to {MAX_PAGE}", field="limit")
    limit = int(raw)
    if not 1 <= limit <= MAX_PAGE:
        raise ApiError(400, "invalid_request", f"limit must be between 1 and {MAX_PAGE}", field="limit")
    before = _decode_cursor(request.args["cursor"]) if request.args.get("cursor") else None
    with resources().state_pool.connection() as conn:
        rows = repo.list_exports(conn, current_principal().owner, limit + 1, before)
    page, more = rows[:limit], len(rows) > limit
    next_cursor = None
    if more:
        last = page[-1]
        next_cursor = base64.urlsafe_b64encode(f"{last.created_at.isoformat()}|{last.id}".encode()).decode()
    deliveries = _deliveries(page)
    return jsonify(
        {"exports": [export_json(r, settings(), notify=deliveries.get(r.id)) for r in page], "next_cursor": next_cursor}
    )


def _deliveries(exports: list[Export]) -> dict[uuid.UUID, list[Delivery]]:
    """The webhook deliveries of the exports that asked for one (one query)."""
    wanted = [e.id for e in exports if e.notify_url is not None]
    if not wanted:
        return {}
    with resources().state_pool.connection() as conn:
        return deliveries_of(conn, wanted)


@bp.get("/limits")
@login_required
def limits():
    """The caller's limits and what it has used of each (a limit that is off is null)."""
    s, principal = settings(), current_principal()
    usage = resources().rate_limits.usage(_key_id())
    with resources().state_pool.connection() as conn:
        queued = repo.count_queued(conn, principal.owner)
    return jsonify(
        {
            "owner": principal.owner,
            "limits": {
                "exports_per_minute": usage["exports_per_minute"] and usage["exports_per_minute"].json(),
                "inline_bytes_per_hour": usage["inline_bytes_per_hour"] and usage["inline_bytes_per_hour"].json(),
                "queued_exports": {"limit": s.max_queued_per_owner, "used": queued} if s.max_queued_per_owner else None,
                "running_exports": {"limit": s.max_running_per_owner},
            },
        }
    )
