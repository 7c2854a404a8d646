"""Slots of the global read cap for work that is not an RQ job: the inline tier's streams.

Invariant: every source read — a chunk job or an inline export — holds one entry of RQ's
``allowed`` set of the shared rate limit (:func:`shared.queue.reads_limit`), so at most
``SPILLWAY_MAX_CONCURRENT_READS`` of them run at once, whichever kind they are. An inline slot
is an entry ``inline-<uuid>`` with a job hash of its own in status ``started`` that expires
after ``ttl_s``: a process that dies holding a slot loses it with the hash, when RQ's own
maintenance frees allowed entries whose job is gone.
"""

from __future__ import annotations

import time
import uuid

from redis import Redis
from rq.job import Job
from rq.rate_limit import RateLimitRegistry

from shared.queue import reads_limit
from shared.settings import Settings

SLOT_PREFIX = "inline-"
POLL_S = 0.05  # how often a waiting inline export looks for a free slot

# KEYS: allowed set, the slot's job hash. ARGV: concurrency, timestamp, slot id, ttl seconds.
_TAKE = """
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[2], 'status', 'started', 'origin', 'inline', 'description', 'inline export read')
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
return 1
"""


def read_slots(redis: Redis, settings: Settings) -> RateLimitRegistry:
    """RQ's registry of the read cap: slots in use (``allowed``) and chunk jobs waiting for one."""
    return RateLimitRegistry(key=reads_limit(settings).key, connection=redis)


def take_read_slot(redis: Redis, settings: Settings, wait_s: float, ttl_s: int) -> str | None:
    """Take a slot of the global read cap, waiting up to ``wait_s``; return its id, or None."""
    registry = read_slots(redis, settings)
    slot = f"{SLOT_PREFIX}{uuid.uuid4()}"
    deadline = time.monotonic() + wait_s
    while True:
        taken = redis.eval(
            _TAKE, 2, registry.allowed_key, Job.key_for(slot), settings.max_concurrent_reads, time.time(), slot, ttl_s
        )
        if taken:
            return slot
        if time.monotonic() >= deadline:
            return None
        time.sleep(POLL_S)


def release_read_slot(redis: Redis, settings: Settings, slot: str) -> None:
    """Give a slot back and let the oldest waiting chunk jobs take the free slots."""
    redis.delete(Job.key_for(slot))
    read_slots(redis, settings).release_and_enqueue(slot)
