"""The programs the tests drive besides the stack: installed when missing, as the stack's own are.

``make test`` runs this before the tests: LibreOffice's spreadsheet (``soffice``), which must open
every XLSX Spillway writes (tests/integration/test_formats.py), and Chromium with its WebDriver
(``chromium``, ``chromedriver``), the real browser the web page is tested in (tests/browser/).
Debian's packages, so a fresh machine needs nothing installed by hand.
"""

from __future__ import annotations

import shutil
import sys

from deploy.services import StackError, apt_install, say

# command: the Debian package that provides it
TOOLS = {"soffice": "libreoffice-calc", "chromium": "chromium", "chromedriver": "chromium-driver"}


def ensure_tools() -> None:
    """Install the Debian package of every missing command of :data:`TOOLS`."""
    missing = sorted({package for command, package in TOOLS.items() if not shutil.which(command)})
    if missing:
        apt_install(*missing)
    for command in TOOLS:
        if not shutil.which(command):
            raise StackError(f"{command} is still missing after installing {TOOLS[command]}")
    say(f"test tools: {', '.join(TOOLS)} present")


if __name__ == "__main__":
    try:
        ensure_tools()
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
