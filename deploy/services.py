"""Local dependencies: PostgreSQL and an S3 endpoint on loopback, without Docker (Redis:
:mod:`deploy.local_redis`), and the helpers the stack scripts share.

Invariant: a service that is already listening on its configured port is used as it is and
never stopped by us; a service we start listens on 127.0.0.1 only, keeps its data under
``.data/`` and its PID under ``.data/run/``, so ``make down`` stops exactly what ``make up``
started; its log is private (see :mod:`deploy.datadir`).
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

from deploy.datadir import DATA, LOGS, PRIVATE_DIR, ROOT, RUN, open_private, private_dir, read_pid
from shared.settings import Settings
from shared.storage import s3_client

PG_DIR = DATA / "pg"
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})  # hosts of a URL the stack may start a server for


class StackError(RuntimeError):
    """A dependency could not be installed or started; the message says what to do."""


def say(message: str) -> None:
    """Print one progress line of the stack scripts."""
    print(f"[stack] {message}", flush=True)


def is_listening(host: str, port: int) -> bool:
    """Return whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1) -> None:
    """Poll ``predicate`` until it is true, or raise StackError naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise StackError(f"timed out after {timeout:.0f}s waiting for {what}")


def apt_install(*packages: str) -> None:
    """Install Debian packages (root only); ``apt-get update`` once if the first try fails."""
    if os.geteuid() != 0:
        raise StackError(f"{' '.join(packages)} is missing; install it (e.g. apt-get install {' '.join(packages)})")
    say(f"installing {' '.join(packages)} with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
    if subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL, check=True)
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, check=True)


def require_loopback(what: str, host: str, port: int) -> None:
    """Refuse to start a server for a URL whose host is not this machine's loopback.

    Raises:
        StackError: naming the service and the address where nothing listens.
    """
    if host not in LOOPBACK:
        raise StackError(
            f"{what}: nothing listens on {host}:{port}, and the stack starts its own servers on 127.0.0.1 only"
        )


# --- PostgreSQL -----------------------------------------------------------------------------


def _pg_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _as_pg_owner(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the ``postgres`` user then."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _pg_url_parts(url: str) -> tuple[str, int, str, str, str]:
    u = urlsplit(url)
    return (
        u.hostname or "127.0.0.1",
        u.port or 5432,
        u.username or "spillway",
        u.password or "",
        (u.path or "/spillway").lstrip("/"),
    )


def ensure_postgres(settings: Settings) -> None:
    """Use the PostgreSQL on the configured port, or create and start a private cluster."""
    host, port, user, password, _ = _pg_url_parts(settings.state_database_url)
    if is_listening(host, port):
        if not (PG_DIR / "data" / "postmaster.pid").exists():
            say(f"postgres: using the server already listening on {host}:{port}")
            _check_pg_login(settings)
            return
        say(f"postgres: already running on {host}:{port} (.data/pg)")
    else:
        require_loopback("postgres", host, port)
        bindir = _pg_bindir()
        if bindir is None:
            apt_install("postgresql")
            bindir = _pg_bindir()
        if bindir is None:
            raise StackError("PostgreSQL server binaries not found after installing postgresql")
        _start_private_cluster(bindir, port)
    _bootstrap_roles(settings, port)


def _check_pg_login(settings: Settings) -> None:
    for url in {settings.state_database_url, settings.source_database_url}:
        try:
            psycopg.connect(url, connect_timeout=3).close()
        except psycopg.Error as exc:
            raise StackError(
                f"a PostgreSQL server is listening but refuses {url!r}: {exc}. "
                "Create that role and database, or point SPILLWAY_*_DATABASE_URL elsewhere."
            ) from None


def _pg_home() -> Path:
    """Where the private cluster lives: ``.data/pg``, or a link from there when the server's
    user cannot reach the checkout.

    PostgreSQL runs as ``postgres`` when we are root; a checkout under a directory only root
    may enter (``mktemp -d`` makes those) is out of its reach, so the cluster then lives under
    ``/var/tmp/spillway-pg-<hash of the checkout path>`` and ``.data/pg`` links to it.
    """
    if PG_DIR.is_symlink() or PG_DIR.is_dir() or os.geteuid() != 0:
        return PG_DIR.resolve()
    DATA.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", str(DATA)], cwd="/").returncode == 0:
        PG_DIR.mkdir()
        return PG_DIR
    home = Path("/var/tmp") / f"spillway-pg-{hashlib.sha1(str(ROOT).encode()).hexdigest()[:12]}"
    home.mkdir(exist_ok=True)
    PG_DIR.symlink_to(home, target_is_directory=True)
    say(f"postgres: {ROOT} is out of the postgres user's reach; the cluster lives in {home}")
    return home


def _start_private_cluster(bindir: Path, port: int) -> None:
    home = _pg_home()
    data, sock = home / "data", home / "run"
    # The server's user writes the log: into .data/logs (0700) only when that user is us.
    log = home / "postgres.log" if os.geteuid() == 0 else private_dir(LOGS) / "postgres.log"
    for d in (home, sock):
        d.mkdir(parents=True, exist_ok=True)
    sock.chmod(PRIVATE_DIR)  # local connections are trusted: only the server's user reaches the socket
    open_private(log).close()
    if os.geteuid() == 0:
        for path in (home, sock, log):  # the server process writes these
            shutil.chown(path, "postgres")
    if not (data / "PG_VERSION").exists():
        say(f"postgres: initdb {data}")
        subprocess.run(
            _as_pg_owner(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                ]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
            cwd="/",
        )
    options = (
        f"-p {port} -c listen_addresses=127.0.0.1 -k {sock} -c max_connections=200 "
        "-c shared_buffers=256MB -c wal_level=minimal -c max_wal_senders=0"
    )
    say(f"postgres: starting a private cluster on 127.0.0.1:{port}")
    subprocess.run(
        _as_pg_owner(
            [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start"]
        ),
        check=True,
        stdout=subprocess.DEVNULL,
        cwd="/",
    )
    RUN.mkdir(parents=True, exist_ok=True)
    (RUN / "postgres.pid").write_text((data / "postmaster.pid").read_text().split()[0] + "\n")


def _bootstrap_roles(settings: Settings, port: int) -> None:
    """Create the roles and databases of the configured URLs (idempotent), as the superuser."""
    conninfo = f"host={PG_DIR / 'run'} port={port} user=postgres dbname=postgres"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for url in (settings.state_database_url, settings.source_database_url):
            _, _, user, password, dbname = _pg_url_parts(url)
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone()
            verb = "ALTER" if exists else "CREATE"
            conn.execute(
                sql.SQL(verb + " ROLE {} LOGIN CREATEDB PASSWORD {}").format(
                    sql.Identifier(user), sql.Literal(password)
                )
            )
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone():
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(dbname), sql.Identifier(user))
                )
                say(f"postgres: created database {dbname}")


def stop_postgres() -> None:
    """Stop the private cluster if we started it."""
    data = (PG_DIR / "data").resolve()
    if not (data / "postmaster.pid").exists():
        return
    bindir = _pg_bindir()
    say("postgres: stopping")
    subprocess.run(
        _as_pg_owner([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
        stdout=subprocess.DEVNULL,
        check=False,
        cwd="/",
    )
    (RUN / "postgres.pid").unlink(missing_ok=True)


# --- S3 (moto server) -----------------------------------------------------------------------


def ensure_s3(settings: Settings) -> None:
    """Use the S3 endpoint on the configured port, or start moto in server mode; create the bucket."""
    u = urlsplit(settings.s3_endpoint_url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    if is_listening(host, port):
        say(f"s3: {'already running' if read_pid('s3') else 'using the endpoint'} at {settings.s3_endpoint_url}")
    else:
        require_loopback("s3", host, port)
        moto = Path(sys.executable).parent / "moto_server"
        RUN.mkdir(parents=True, exist_ok=True)
        say(f"s3: starting moto server on 127.0.0.1:{port}")
        with open_private(private_dir(LOGS) / "s3.log") as log:  # its request lines hold presigned URLs
            proc = subprocess.Popen(
                [str(moto), "-H", "127.0.0.1", "-p", str(port)],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        (RUN / "s3.pid").write_text(f"{proc.pid}\n")
        wait_until(lambda: is_listening(host, port), 30, "the S3 endpoint to listen")
    ensure_bucket(settings)


def ensure_bucket(settings: Settings, bucket: str | None = None) -> None:
    """Create the bucket if it does not exist."""
    client = s3_client(settings)
    name = bucket or settings.s3_bucket
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    if name not in existing:
        extra = (
            {}
            if settings.s3_region == "us-east-1"
            else {"CreateBucketConfiguration": {"LocationConstraint": settings.s3_region}}
        )
        client.create_bucket(Bucket=name, **extra)
        say(f"s3: created bucket {name}")
