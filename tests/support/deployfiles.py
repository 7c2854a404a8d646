"""What the deployment files (compose, Procfile, Kubernetes manifests) may name: commands that run
modules and files of this repository."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def module_of(command: list[str]) -> str | None:
    """The module or script a command runs: ``python -m X``, ``gunicorn ... mod:app``."""
    if command[:2] == ["python", "-m"]:
        return command[2]
    if command[0] == "gunicorn":
        return command[-1].split(":")[0]  # module:app or module:factory()
    return None


def assert_runnable(command: list[str]) -> None:
    module = module_of(command)
    assert module, f"unexpected command {command}"
    assert importlib.util.find_spec(module) is not None, f"{module} (from {command}) does not exist"
    if "-c" in command:
        assert (ROOT / command[command.index("-c") + 1]).is_file()
