"""The compose file and the Procfile only name modules and scripts that exist in the repo; the
compose file publishes only what must be reached from the host, on loopback, and writes no password."""

from __future__ import annotations

import re
import shlex
import stat
from urllib.parse import urlsplit

import yaml

from deploy.compose_env import filled, write_env
from deploy.stack import procfile
from tests.support.deployfiles import ROOT, assert_runnable, module_of

OUR_IMAGE = "spillway:local"


def test_compose_parses_and_our_services_run_existing_modules():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "minio", "create-bucket", "api", "worker", "seed"} <= set(services)
    ours = {name: s for name, s in services.items() if s.get("image") == OUR_IMAGE}
    assert {"api", "worker", "seed", "migrate", "dashboard", "reconciler"} <= set(ours)
    for service in ours.values():
        assert_runnable(service["command"])
        assert (ROOT / service["build"]["dockerfile"]).is_file()
    assert services["worker"]["deploy"]["replicas"] > 1
    probe = services["worker"]["healthcheck"]["test"]
    assert probe[0] == "CMD" and module_of(probe[1:]) == "worker.alive"
    assert_runnable(probe[1:])
    assert "/health/live" in " ".join(services["api"]["healthcheck"]["test"])  # a route test_operations.py calls
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
        assert_runnable(shlex.split(command))


# --- deployment defaults: what the compose file publishes, and where its passwords come from ---

ENV_EXAMPLE = ROOT / ".env.example"
# ${NAME}, ${NAME:-default}, ${NAME:?message} and $$ (a literal $), as compose interpolates them.
INTERPOLATION = re.compile(r"\$\$|\$\{(\w+)(?::?([-?])([^}]*))?\}")
PUBLISHED = {"api", "dashboard", "minio"}  # the API, rq-dashboard, MinIO's S3 port (downloads) and console
NOT_PUBLISHED = {"postgres", "redis"}


def interpolate(text: str, env: dict[str, str]) -> tuple[str, set[str]]:
    """``text`` as compose would see it with ``env`` (its .env), and the required variables missing."""
    missing: set[str] = set()

    def value(m: re.Match[str]) -> str:
        name, operator, argument = m.groups()
        if name is None:
            return "$"
        if env.get(name):
            return env[name]
        if operator == "?":
            missing.add(name)
        return argument if operator == "-" else ""

    return INTERPOLATION.sub(value, text), missing


def example_env() -> dict[str, str]:
    """``.env`` as ``make .env`` writes it (random passwords), as a mapping."""
    pairs = (line.split("=", 1) for line in filled(ENV_EXAMPLE.read_text()).splitlines() if "=" in line)
    return {name: value for name, value in pairs if not name.startswith("#")}


def compose(env: dict[str, str] | None = None) -> dict:
    text, missing = interpolate((ROOT / "docker-compose.yml").read_text(), example_env() if env is None else env)
    assert not missing, f"compose would refuse to start: {missing} missing"
    return yaml.safe_load(text)["services"]


def published_ports(service: dict) -> list[tuple[str | None, str]]:
    """(host address or None, host port) of each port a service publishes, short or long syntax."""
    ports = []
    for spec in service.get("ports", []):
        if isinstance(spec, dict):
            ports.append((spec.get("host_ip"), str(spec.get("published"))))
        else:
            parts = str(spec).rsplit(":", 2)
            ports.append((parts[0] if len(parts) == 3 else None, parts[-2] if len(parts) > 1 else parts[-1]))
    return ports


def test_compose_refuses_to_start_without_each_password_and_env_example_lists_them():
    _, missing = interpolate((ROOT / "docker-compose.yml").read_text(), {})
    assert missing == {"POSTGRES_PASSWORD", "REDIS_PASSWORD", "MINIO_ROOT_PASSWORD", "SPILLWAY_DASHBOARD_PASSWORD"}
    assert missing <= set(example_env())


def test_compose_writes_no_password_of_its_own():
    """Every password, secret key or URL password in the raw file is a required variable."""
    raw = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name, service in raw["services"].items():
        for key, value in (service.get("environment") or {}).items():
            value = str(value)
            if re.search("PASSWORD|SECRET|AUTH", key):
                assert re.fullmatch(r"\$\{\w+:\?[^}]*\}", value), f"{name}: {key} is written in the file"
            if "://" in value and "@" in value:
                password = value.split("://", 1)[1].rsplit("@", 1)[0].partition(":")[2]
                assert re.fullmatch(r"\$\{\w+:\?[^}]*\}", password), f"{name}: {key} carries a written password"


def test_postgres_and_redis_are_not_published_and_nothing_shares_the_host_network():
    services = compose()
    for name in NOT_PUBLISHED:
        assert not services[name].get("ports"), f"{name} is published"
    for name, service in services.items():
        assert service.get("network_mode") != "host", f"{name} uses the host's network"
    assert {name for name, service in services.items() if service.get("ports")} == PUBLISHED


def test_published_ports_listen_on_loopback_unless_told_otherwise():
    for name, service in compose().items():
        for host, port in published_ports(service):
            assert host == "127.0.0.1", f"{name} publishes {port} on {host or 'every interface'}"
    elsewhere = compose({**example_env(), "PUBLISH_ADDRESS": "192.0.2.10"})
    assert {host for s in elsewhere.values() for host, _ in published_ports(s)} == {"192.0.2.10"}


def test_redis_requires_a_password_and_every_redis_url_carries_it():
    env = example_env()
    services = compose(env)
    command = services["redis"]["command"]
    assert "--requirepass" in command
    password = command[command.index("--requirepass") + 1]
    assert password == env["REDIS_PASSWORD"] and len(password) >= 16
    assert services["redis"]["environment"]["REDISCLI_AUTH"] == password  # the healthcheck's redis-cli
    users = {name for name, s in services.items() if "SPILLWAY_REDIS_URL" in (s.get("environment") or {})}
    assert {"api", "worker", "reconciler", "dashboard"} <= users
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            if str(value).startswith("redis://"):
                assert urlsplit(value).password == password, f"{name}: {key} reaches Redis without its password"
                assert urlsplit(value).hostname == "redis"


def test_make_env_writes_random_private_passwords_once(tmp_path):
    target = tmp_path / ".env"
    assert write_env(ENV_EXAMPLE, target) is True
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    first = target.read_text()
    values = dict(line.split("=", 1) for line in first.splitlines() if "=" in line and not line.startswith("#"))
    for name in ("POSTGRES_PASSWORD", "REDIS_PASSWORD", "MINIO_ROOT_PASSWORD", "SPILLWAY_DASHBOARD_PASSWORD"):
        assert re.fullmatch(r"[A-Za-z0-9_-]{24}", values[name]), name  # URL-safe: it goes into URLs as it is
    assert len(set(values.values())) == len(values)
    assert write_env(ENV_EXAMPLE, target) is False and target.read_text() == first  # never overwritten
