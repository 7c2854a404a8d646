"""API keys: created by an operator's command, stored only as a SHA-256 hash.

Invariant: a key is shown once, when it is created; the database holds its hash (keys are
256-bit random, so a fast hash is safe) and a short prefix to tell keys apart.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from shared.records import fetch_tuples

KEY_PREFIX = "sw_"
ATTRIBUTE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,62}", re.ASCII)  # as the datasets file names them
MAX_ATTRIBUTE_VALUE = 200


@dataclass(frozen=True)
class Principal:
    """Who is calling: the owner a key belongs to, whether it is an operator's key, and the
    key's attributes (``{"tenant": "42"}``), which scoped datasets bind their row scope to."""

    owner: str
    is_admin: bool = False
    attributes: Mapping[str, str] = field(default_factory=dict)
    key_id: int | None = None  # the key's row (api_keys.id): what rate limits count per key


def parse_attribute(text: str) -> tuple[str, str]:
    """``name=value`` as given to ``keys create --attr``.

    Raises:
        ValueError: not ``name=value``, a name the datasets file could not use, or a value
            that is empty, too long or not printable.
    """
    name, sep, value = text.partition("=")
    if not sep or not ATTRIBUTE_NAME.fullmatch(name):
        raise ValueError(
            f"{text!r}: expected name=value, the name letters, digits, _ . - (starting with a letter or _)"
        )
    if not value or len(value) > MAX_ATTRIBUTE_VALUE or not value.isprintable():
        raise ValueError(f"{text!r}: the value must be 1-{MAX_ATTRIBUTE_VALUE} printable characters")
    return name, value


def hash_key(key: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(
    conn: psycopg.Connection[Any], owner: str, is_admin: bool = False, attributes: Mapping[str, str] | None = None
) -> str:
    """Create and return a new key for ``owner`` with ``attributes``."""
    if not owner or len(owner) > 200 or not owner.isprintable():
        raise ValueError("owner must be 1-200 printable characters")
    for name, value in (attributes or {}).items():
        parse_attribute(f"{name}={value}")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO api_keys (owner, key_hash, key_prefix, is_admin, attributes) VALUES (%s, %s, %s, %s, %s)",
        (owner, hash_key(key), key[:10], is_admin, Jsonb(dict(attributes or {}))),
    )
    return key


def authenticate(conn: psycopg.Connection[Any], key: str) -> Principal | None:
    """Return the principal of a valid, unrevoked key, or None; note when it was used (at
    most once a minute, so a busy key does not rewrite its row on every check)."""
    rows = fetch_tuples(
        conn,
        "SELECT id, owner, is_admin, attributes, last_used_at IS NULL OR last_used_at < now() - interval '1 minute'"
        " FROM api_keys WHERE key_hash = %s AND revoked_at IS NULL",
        (hash_key(key),),
    )
    if not rows:
        return None
    key_id, owner, is_admin, attributes, stale = rows[0]
    if stale:
        conn.execute("UPDATE api_keys SET last_used_at = now() WHERE id = %s", (key_id,))
    return Principal(owner, is_admin, attributes, key_id)


@dataclass(frozen=True)
class KeyRecord:
    """A key as ``keys list`` shows it (never the key itself: only its first characters)."""

    id: int
    prefix: str
    owner: str
    is_admin: bool
    attributes: dict[str, str]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def list_keys(conn: psycopg.Connection[Any], owner: str | None = None, revoked: bool = True) -> list[KeyRecord]:
    """Every key (of ``owner`` when given), oldest first; ``revoked`` False leaves revoked ones out."""
    rows = fetch_tuples(
        conn,
        "SELECT id, key_prefix, owner, is_admin, attributes, created_at, last_used_at, revoked_at FROM api_keys"
        " WHERE (%s::text IS NULL OR owner = %s) AND (%s OR revoked_at IS NULL) ORDER BY id",
        (owner, owner, revoked),
    )
    return [KeyRecord(*row) for row in rows]


def revoke_key(conn: psycopg.Connection[Any], key_id: int) -> KeyRecord | None:
    """Revoke a key by its id (idempotent: a revoked key keeps its first revocation time);
    None when there is no such key. API processes stop trusting it within ``SPILLWAY_AUTH_CACHE_S``."""
    conn.execute("UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = %s", (key_id,))
    found = [k for k in list_keys(conn) if k.id == key_id]
    return found[0] if found else None
