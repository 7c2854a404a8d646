"""The local stack without Docker: ``python -m deploy.stack up|down|status|exec``.

``up`` brings up PostgreSQL, Redis and the S3 endpoint (see :mod:`deploy.services` and
:mod:`deploy.local_redis`), applies the migrations, seeds the demo data if the table is empty,
and starts the Procfile's processes (the API and ``SPILLWAY_RQ_WORKERS`` workers) in the
background, with private logs under ``.data/logs/`` and PIDs under ``.data/run/``. It is
idempotent. ``down`` stops, by PID, exactly what ``up`` started. ``exec -- COMMAND`` runs a
command as a client of the stack: with the password of the stack's own Redis added to
``SPILLWAY_REDIS_URL`` (see :func:`deploy.local_redis.client_url`); Make runs the tests, the
demo, ``make key`` and the benchmark that way.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from deploy import local_redis
from deploy.datadir import DATA, LOGS, ROOT, RUN, generated_secret, open_private, private_dir, read_pid
from deploy.services import StackError, ensure_postgres, ensure_s3, say, stop_postgres, wait_until
from shared.settings import Settings, SettingsError, load_settings

VENV_BIN = Path(sys.executable).parent


def procfile() -> dict[str, str]:
    """Return the Procfile's process types and commands."""
    entries: dict[str, str] = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, command = line.partition(":")
            entries[name.strip()] = command.strip()
    return entries


def process_names(settings: Settings) -> list[tuple[str, str]]:
    """(instance name, process type) for every process ``up`` runs, in start order."""
    names = [("web", "web")]
    names += [(f"worker-{n}", "worker") for n in range(1, settings.rq_workers + 1)]
    names += [(kind, kind) for kind in procfile() if kind not in ("web", "worker")]
    return names


def start_process(name: str, command: str, extra_env: dict[str, str] | None = None) -> None:
    """Start one Procfile command in its own session, unless its recorded PID is alive."""
    pid = read_pid(name)
    if pid:
        say(f"{name}: already running (pid {pid})")
        return
    env = dict(
        os.environ,
        PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        PYTHONUNBUFFERED="1",
        **(extra_env or {}),
    )
    with open_private(LOGS / f"{name}.log") as log:
        proc = subprocess.Popen(
            shlex.split(command),
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    (RUN / f"{name}.pid").write_text(f"{proc.pid}\n")
    say(f"{name}: started (pid {proc.pid}, log .data/logs/{name}.log)")


def stop_process(name: str, grace: float = 15.0) -> None:
    """SIGTERM the process group recorded for ``name``; SIGKILL it after ``grace`` seconds."""
    pid = read_pid(name)
    pidfile = RUN / f"{name}.pid"
    if pid is None:
        pidfile.unlink(missing_ok=True)
        return
    say(f"{name}: stopping (pid {pid})")
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        wait_until(lambda: read_pid(name) is None or _is_zombie(pid), grace, f"{name} to stop")
    except StackError:
        say(f"{name}: still running after {grace:.0f}s, killing")
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    pidfile.unlink(missing_ok=True)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def migrate_and_seed(settings: Settings, seed: bool) -> None:
    """Apply state migrations; create the demo tables and seed them if empty."""
    from shared.migrate import migrate_url

    applied = migrate_url(settings.state_database_url)
    say(f"migrations: {', '.join(applied) if applied else 'up to date'}")
    if seed:
        subprocess.run([sys.executable, "-m", "seeds.seed", "--table", "all", "--if-empty"], cwd=ROOT, check=True)


def check_datasets(settings: Settings) -> list[str]:
    """Check ``SPILLWAY_DATASETS_FILE`` against the source database, as the API, the workers
    and ``flask --app api.wsgi datasets check`` do; return the dataset names.

    Run before the Procfile's processes start, so that ``make up`` stops with the problem
    instead of starting an API and workers that exit at once.

    Raises:
        StackError: the datasets file is unusable (the message is the check's, naming the
            file, the dataset and the field), or the source database does not answer.
    """
    import psycopg

    from shared.datasets import DatasetsError, load

    try:
        loaded = load(settings)
    except DatasetsError as exc:
        raise StackError(
            f"{exc} (the API and workers were not started; fix the datasets file and run up again)"
        ) from None
    except psycopg.OperationalError as exc:
        raise StackError(f"cannot check the datasets file: the source database does not answer: {exc}") from None
    say(f"datasets: {', '.join(loaded)} (checked against the catalog)")
    return list(loaded)


def wait_for_api(settings: Settings) -> None:
    """Wait until the API answers /health (any status: it reports, it does not gate)."""
    url = f"http://127.0.0.1:{settings.api_port}/health"

    def answers() -> bool:
        try:
            urllib.request.urlopen(url, timeout=5)
            return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    wait_until(answers, 30, f"the API at {url}", interval=0.2)
    say(f"api: answering at http://127.0.0.1:{settings.api_port}")


def dashboard_env(settings: Settings) -> dict[str, str]:
    """The dashboard's password: the configured one, or one generated once into .data/."""
    if settings.dashboard_password:
        return {}
    return {"SPILLWAY_DASHBOARD_PASSWORD": generated_secret(DATA / "dashboard-password")}


def up(settings: Settings, deps_only: bool) -> None:
    """Bring the stack up (idempotent)."""
    private_dir(LOGS)
    RUN.mkdir(parents=True, exist_ok=True)
    ensure_postgres(settings)
    settings = settings.replace(redis_url=local_redis.ensure_redis(settings))
    ensure_s3(settings)
    migrate_and_seed(settings, seed=not deps_only)
    if deps_only:
        return
    check_datasets(settings)  # a bad datasets file stops `up` here, before the API and workers start
    commands = procfile()
    redis_env = {local_redis.URL_VARIABLE: settings.redis_url}
    for name, kind in process_names(settings):
        start_process(name, commands[kind], redis_env | (dashboard_env(settings) if kind == "dashboard" else {}))
    wait_for_api(settings)
    where = "SPILLWAY_DASHBOARD_PASSWORD" if settings.dashboard_password else ".data/dashboard-password"
    user = settings.dashboard_user
    say(f"rq-dashboard: http://127.0.0.1:{settings.dashboard_port} (user {user}, password in {where})")


def down(settings: Settings) -> None:
    """Stop what ``up`` started, newest first."""
    names = [name for name, _ in process_names(settings)]
    names += sorted(p.stem for p in RUN.glob("worker-*.pid") if p.stem not in names)
    for name in reversed(names):
        stop_process(name)
    stop_process("s3", grace=5)
    stop_process("redis", grace=10)
    local_redis.forget()
    stop_postgres()
    say("stopped")


def status(settings: Settings) -> int:
    """Print what runs; exit status 0 when every process of ours is alive."""
    names = ["postgres", "redis", "s3"] + [name for name, _ in process_names(settings)]
    missing = 0
    for name in names:
        pid = read_pid(name)
        note = ""
        if name == "redis" and pid:
            note = ", with a password" if local_redis.own_url() else ", without a password (make down && make up)"
        say(f"{name}: {f'running (pid {pid}{note})' if pid else 'not running'}")
        missing += pid is None
    return 1 if missing else 0


def client_env(settings: Settings, environ: dict[str, str], data: Path = DATA) -> dict[str, str]:
    """``environ`` for a client of the stack: the password of the stack's own Redis added to
    the Redis URL when that names it (:func:`deploy.local_redis.client_url`); else unchanged."""
    url = local_redis.client_url(settings.redis_url, data)
    return environ if url == settings.redis_url else {**environ, local_redis.URL_VARIABLE: url}


def run_as_client(command: list[str], settings: Settings) -> None:
    """Replace this process with ``command``, run with :func:`client_env`."""
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise StackError("exec needs a command: python -m deploy.stack exec -- COMMAND [ARGS...]")
    os.execvpe(command[0], command, client_env(settings, dict(os.environ)))


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="bring the stack up (idempotent)").add_argument(
        "--deps-only", action="store_true", help="only PostgreSQL, Redis, S3 and the migrations (what the tests need)"
    )
    commands.add_parser("down", help="stop what up started")
    commands.add_parser("status", help="what runs; exit status 1 when a process of ours is not running")
    client = commands.add_parser("exec", help="run a command as a client of the stack (Redis password added)")
    client.add_argument("argv", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        settings = load_settings()
        if args.command == "exec":
            run_as_client(args.argv, settings)  # does not return
        elif args.command == "up":
            up(settings, args.deps_only)
            say(f"up in {time.monotonic() - started:.1f}s")
        elif args.command == "down":
            down(settings)
        else:
            return status(settings)
    except (StackError, SettingsError, subprocess.CalledProcessError, OSError) as exc:
        say(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
