"""Rate limits per API key and the queued-export quota per owner: 429 with Retry-After.

- ``SPILLWAY_EXPORTS_PER_MINUTE``: ``POST /exports`` requests per key in any 60 s (a moving
  window, so a burst at a minute's boundary cannot pass twice the limit). Every request counts,
  refused ones too: validating and counting rows is work.
- ``SPILLWAY_INLINE_BYTES_PER_HOUR``: bytes of inline answers per key in the current hour (a
  fixed window: a moving one stores one entry per unit, here per byte). The answer's size is
  known once it is streamed, so it is counted then; a key past the limit gets 429 for
  ``delivery: inline`` and an async export for ``auto``.
- ``SPILLWAY_MAX_QUEUED_PER_OWNER``: exports of one owner waiting to start (``queued``), checked
  in PostgreSQL under a per-owner advisory lock when an export is created (exports.py).

The windows live in Redis through ``limits``, the engine flask-limiter is built on, used
directly: ``GET /limits`` must read the same windows back, and the byte counter is charged
after the response, neither of which flask-limiter's decorator exposes. Without Redis the limits
fail open (logged): the queue is down then anyway, and the queued quota still holds.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from functools import cached_property

from limits import RateLimitItem, RateLimitItemPerHour, RateLimitItemPerMinute
from limits.storage import RedisStorage
from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter
from redis.exceptions import RedisError

from api.errors import ApiError
from shared.settings import Settings

log = logging.getLogger(__name__)


def rate_limited(limit: str, message: str, retry_after_s: int, **details: str) -> ApiError:
    """The 429 of a limit: ``rate_limited``, the limit's name, a message naming its setting, Retry-After."""
    return ApiError(429, "rate_limited", message, headers={"Retry-After": str(retry_after_s)}, limit=limit, **details)


@dataclass(frozen=True)
class Use:
    """One limit as ``GET /limits`` shows it: the limit, what is used, when the window frees."""

    limit: int
    used: int | None
    reset_in_s: float | None

    def json(self) -> dict[str, int | float | None]:
        return {"limit": self.limit, "used": self.used, "reset_in_s": self.reset_in_s}


class RateLimits:
    """The per-key windows of one API process (Redis holds the counts, shared by all)."""

    def __init__(self, settings: Settings, redis_pool) -> None:
        self.settings = settings
        self._pool = redis_pool
        self.requests = RateLimitItemPerMinute(settings.exports_per_minute) if settings.exports_per_minute else None
        self.inline_bytes = (
            RateLimitItemPerHour(settings.inline_bytes_per_hour) if settings.inline_bytes_per_hour else None
        )

    @cached_property
    def _storage(self) -> RedisStorage:
        # The API's own Redis connection pool; keys under "<queue prefix>:limits".
        return RedisStorage(
            self.settings.redis_url, connection_pool=self._pool, key_prefix=f"{self.settings.queue_prefix}:limits"
        )

    @cached_property
    def _moving(self) -> MovingWindowRateLimiter:
        return MovingWindowRateLimiter(self._storage)

    @cached_property
    def _fixed(self) -> FixedWindowRateLimiter:
        return FixedWindowRateLimiter(self._storage)

    def take_export_request(self, key_id: str) -> None:
        """Count one ``POST /exports`` of this key; 429 when it is one too many."""
        if self.requests is None:
            return
        try:
            allowed = self._moving.hit(self.requests, "exports", key_id)
            if allowed:
                return
            wait = self._reset_in(self._moving, self.requests, "exports", key_id)
        except RedisError as exc:
            log.warning("rate limit not checked: Redis is unavailable (%s)", exc)
            return
        raise rate_limited(
            "exports_per_minute",
            f"more than {self.requests.amount} export requests a minute for this key"
            f" (SPILLWAY_EXPORTS_PER_MINUTE); retry in {wait} s",
            wait,
        )

    def inline_bytes_left(self, key_id: str) -> int | None:
        """Seconds until inline answers are allowed again for this key; None while they are."""
        if self.inline_bytes is None:
            return None
        try:
            if self._fixed.test(self.inline_bytes, "inline-bytes", key_id):
                return None
            return self._reset_in(self._fixed, self.inline_bytes, "inline-bytes", key_id)
        except RedisError as exc:
            log.warning("inline byte limit not checked: Redis is unavailable (%s)", exc)
            return None

    def inline_bytes_exceeded(self, key_id: str, wait: int) -> ApiError:
        assert self.inline_bytes is not None
        return rate_limited(
            "inline_bytes_per_hour",
            f"this key has had more than {self.inline_bytes.amount} bytes of inline answers this hour"
            f" (SPILLWAY_INLINE_BYTES_PER_HOUR); retry in {wait} s, or use delivery 'async'",
            wait,
            field="delivery",
        )

    def charge_inline_bytes(self, key_id: str, size: int) -> None:
        """Add an inline answer's bytes to this key's hour (after it was streamed)."""
        if self.inline_bytes is None or size <= 0:
            return
        try:
            self._fixed.hit(self.inline_bytes, "inline-bytes", key_id, cost=size)
        except RedisError as exc:
            log.warning("inline bytes of key %s not counted: Redis is unavailable (%s)", key_id, exc)

    def usage(self, key_id: str) -> dict[str, Use | None]:
        """This key's windows now (None: that limit is off; ``used`` None: Redis did not answer,
        and the limits are not enforced while it does not)."""
        windows = {
            "exports_per_minute": (self._moving, self.requests, "exports"),
            "inline_bytes_per_hour": (self._fixed, self.inline_bytes, "inline-bytes"),
        }
        found: dict[str, Use | None] = {}
        for name, (strategy, item, scope) in windows.items():
            try:
                found[name] = self._use(strategy, item, scope, key_id)
            except RedisError as exc:
                log.warning("limits not read: Redis is unavailable (%s)", exc)
                found[name] = Use(item.amount, None, None) if item is not None else None
        return found

    def _use(self, strategy, item: RateLimitItem | None, *identifiers: str) -> Use | None:
        if item is None:
            return None
        stats = strategy.get_window_stats(item, *identifiers)
        if strategy is self._fixed:  # the counter itself: an answer streamed past the limit counts in full
            used = int(self._storage.get(item.key_for(*identifiers)))
        else:  # a moving window holds at most the limit: a refused request is not added
            used = item.amount - stats.remaining
        return Use(limit=item.amount, used=used, reset_in_s=round(max(0.0, stats.reset_time - time.time()), 1))

    @staticmethod
    def _reset_in(strategy, item: RateLimitItem, *identifiers: str) -> int:
        """Whole seconds until the window lets one more in (at least 1: Retry-After is an integer)."""
        stats = strategy.get_window_stats(item, *identifiers)
        return max(1, math.ceil(stats.reset_time - time.time()))
