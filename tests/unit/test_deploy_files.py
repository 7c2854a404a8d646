"""The compose file and the Procfile only name modules and scripts that exist in the repo."""

from __future__ import annotations

import importlib.util
import shlex
from pathlib import Path

import yaml

from deploy.stack import procfile

ROOT = Path(__file__).resolve().parents[2]
OUR_IMAGE = "spillway:local"


def _module_of(command: list[str]) -> str | None:
    """The module or script a command runs: ``python -m X``, ``gunicorn ... mod:app``."""
    if command[:2] == ["python", "-m"]:
        return command[2]
    if command[0] == "gunicorn":
        return command[-1].split(":")[0]  # module:app or module:factory()
    return None


def _assert_runnable(command: list[str]) -> None:
    module = _module_of(command)
    assert module, f"unexpected command {command}"
    assert importlib.util.find_spec(module) is not None, f"{module} (from {command}) does not exist"
    if "-c" in command:
        assert (ROOT / command[command.index("-c") + 1]).is_file()


def test_compose_parses_and_our_services_run_existing_modules():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "minio", "create-bucket", "api", "worker", "seed"} <= set(services)
    ours = {name: s for name, s in services.items() if s.get("image") == OUR_IMAGE}
    assert {"api", "worker", "seed", "migrate", "dashboard", "reconciler"} <= set(ours)
    for service in ours.values():
        _assert_runnable(service["command"])
        assert (ROOT / service["build"]["dockerfile"]).is_file()
    assert services["worker"]["deploy"]["replicas"] > 1
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown service {dependency}"


def test_dockerfile_copies_every_package():
    dockerfile = (ROOT / "deploy/docker/Dockerfile").read_text()
    for package in ("api", "worker", "shared", "seeds", "deploy"):
        assert f"COPY {package} ./{package}" in dockerfile


def test_procfile_processes_exist():
    entries = procfile()
    assert {"web", "worker", "dashboard", "reconciler"} <= set(entries)
    for command in entries.values():
        _assert_runnable(shlex.split(command))
