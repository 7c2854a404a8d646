"""``python -m deploy.compose_env`` (``make .env``): the ``.env`` that docker compose reads,
written from ``.env.example`` with every empty value filled with a random one.

Invariant: an existing ``.env`` is never changed (PostgreSQL keeps the password its volume was
created with, so a new one would lock the services out), and a new one is 0600 before it holds
a password. Standard library only: it runs before any virtualenv exists.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

from deploy.datadir import ROOT, SECRET_BYTES, write_private

TEMPLATE = ROOT / ".env.example"
TARGET = ROOT / ".env"


def filled(template: str) -> str:
    """``template`` with a random URL-safe value for every ``NAME=`` line that has none."""
    lines = []
    for line in template.splitlines():
        name, equals, value = line.partition("=")
        if equals and not name.lstrip().startswith("#") and not value.strip():
            line = f"{name}={secrets.token_urlsafe(SECRET_BYTES)}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def write_env(template: Path = TEMPLATE, target: Path = TARGET) -> bool:
    """Write ``target`` from ``template`` unless it exists; return whether it was written."""
    if target.exists():
        return False
    write_private(target, filled(template.read_text()))
    return True


def main() -> int:
    """Command line entry point."""
    if write_env():
        print(f"wrote {TARGET.name} (mode 0600) with random passwords; now: docker compose up --build")
    else:
        print(f"{TARGET.name} exists: left as it is (docker compose up --build reads it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
