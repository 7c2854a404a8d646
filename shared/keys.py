"""API keys: created by an operator's command, stored only as a SHA-256 hash.

Invariant: a key is shown once, when it is created; the database holds its hash (keys are
256-bit random, so a fast hash is safe) and a short prefix to tell keys apart.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

import psycopg

from shared.records import fetch_tuples

KEY_PREFIX = "sw_"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the owner a key belongs to, and whether it is an operator's key."""

    owner: str
    is_admin: bool = False


def hash_key(key: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(conn: psycopg.Connection[Any], owner: str, is_admin: bool = False) -> str:
    """Create and return a new key for ``owner``."""
    if not owner or len(owner) > 200 or not owner.isprintable():
        raise ValueError("owner must be 1-200 printable characters")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO api_keys (owner, key_hash, key_prefix, is_admin) VALUES (%s, %s, %s, %s)",
        (owner, hash_key(key), key[:10], is_admin),
    )
    return key


def authenticate(conn: psycopg.Connection[Any], key: str) -> Principal | None:
    """Return the principal of a valid, unrevoked key, or None."""
    rows = fetch_tuples(
        conn, "SELECT owner, is_admin FROM api_keys WHERE key_hash = %s AND revoked_at IS NULL", (hash_key(key),)
    )
    return Principal(rows[0][0], rows[0][1]) if rows else None
