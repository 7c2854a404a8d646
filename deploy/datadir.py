"""The local stack's own directory, ``.data/`` (git-ignored): data, logs, PIDs and secrets.

Invariant: whatever the stack writes there that may hold a secret is readable by its owner
only, from the moment it exists: generated passwords and the client environment are 0600
files, every log is a 0600 file in the 0700 ``logs/`` (the S3 endpoint's log holds presigned
URLs with their signatures; the API's access log holds every request line).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import BinaryIO

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / ".data"
LOGS = DATA / "logs"
RUN = DATA / "run"
PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
SECRET_BYTES = 18  # 24 URL-safe characters: usable as they are in a URL and a config file


def private_dir(path: Path) -> Path:
    """Create ``path`` (and its parents) if missing and make it 0700; return it."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(PRIVATE_DIR)
    return path


def open_private(path: Path) -> BinaryIO:
    """Open ``path`` for appending, creating it 0600; an existing file is made 0600 too."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_FILE)
    os.fchmod(fd, PRIVATE_FILE)
    return os.fdopen(fd, "ab")


def write_private(path: Path, text: str) -> None:
    """Replace the content of ``path`` with ``text``; the file is 0600 before it holds anything."""
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CREAT, PRIVATE_FILE)
    os.fchmod(fd, PRIVATE_FILE)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def generated_secret(path: Path) -> str:
    """The secret kept in ``path``: generated once (URL-safe, 0600), the same on every later call."""
    value = path.read_text().strip() if path.exists() else ""
    if not value:
        value = secrets.token_urlsafe(SECRET_BYTES)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_private(path, value + "\n")
    return value


def read_pid(name: str, run: Path = RUN) -> int | None:
    """Return the live PID recorded in ``<run>/<name>.pid``, or None."""
    try:
        pid = int((run / f"{name}.pid").read_text().split()[0])
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError, IndexError):
        return None
