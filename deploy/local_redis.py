"""The local stack's Redis: started with a password, and reached with it by every client.

Invariant: a redis-server the stack starts listens on 127.0.0.1 only and requires a password
— the one ``SPILLWAY_REDIS_URL`` carries, else one generated once into ``.data/redis-password``
— given on its standard input, never on its command line. The stack records the URL that
reaches it, password included, in ``.data/stack.env`` (0600); :func:`client_url` is the one
rule by which the processes the stack starts and the commands Make runs get that password: it
is added to a URL without one that names that server. Any other URL is used as it is: a Redis
the stack did not start keeps whatever password the configured URL gives it.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from redis import Redis
from redis.exceptions import RedisError

from deploy.datadir import DATA, generated_secret, open_private, private_dir, read_pid, write_private
from deploy.services import LOOPBACK, StackError, apt_install, is_listening, require_loopback, say, wait_until
from shared.settings import DEFAULT_REDIS_PORT, PREFIX, Settings

PASSWORD_FILE = "redis-password"  # under .data/: the generated password, kept across down and up
STACK_ENV_FILE = "stack.env"  # under .data/: the URL of the running Redis of the stack, while it runs
URL_VARIABLE = f"{PREFIX}REDIS_URL"


def server_command(port: int, data: Path = DATA) -> list[str]:
    """The redis-server command line of the stack's Redis; its configuration comes on stdin."""
    return [
        "redis-server",
        "-",  # read the configuration (the password) from standard input
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--daemonize",
        "yes",
        "--dir",
        str(data / "redis"),
        "--logfile",
        str(data / "logs" / "redis.log"),
        "--pidfile",
        str(data / "run" / "redis.pid"),
        "--save",
        "",
        "--appendonly",
        "no",
    ]


def server_config(password: str) -> str:
    """The configuration given on the server's standard input: ``requirepass``, quoted for Redis."""
    return f'requirepass "{"".join(_config_char(c) for c in password)}"\n'


def _config_char(c: str) -> str:
    """One character inside a double-quoted string of a Redis configuration line."""
    if c in '"\\':
        return "\\" + c
    return f"\\x{ord(c):02x}" if ord(c) < 32 or ord(c) == 127 else c


def with_password(url: str, password: str) -> str:
    """``url`` with ``password`` (URL-quoted) in place of the one it has, if any."""
    return _with_quoted_password(url, quote(password, safe=""))


def redacted(url: str) -> str:
    """``url`` with its password, if any, shown as ``***`` (for messages)."""
    return _with_quoted_password(url, "***") if urlsplit(url).password is not None else url


def _with_quoted_password(url: str, quoted: str) -> str:
    u = urlsplit(url)
    userinfo, _, host = u.netloc.rpartition("@")
    return urlunsplit(u._replace(netloc=f"{userinfo.partition(':')[0]}:{quoted}@{host}"))


def _address(url: str) -> tuple[str, int]:
    u = urlsplit(url)
    host = u.hostname or "127.0.0.1"
    return ("loopback" if host in LOOPBACK else host, u.port or DEFAULT_REDIS_PORT)


def own_url(data: Path = DATA) -> str | None:
    """The URL (with its password) of the Redis the stack started, while it runs; else None."""
    try:
        lines = (data / STACK_ENV_FILE).read_text().splitlines()
    except OSError:
        return None
    if read_pid("redis", data / "run") is None:
        return None
    for line in lines:
        name, _, value = line.partition("=")
        if name == URL_VARIABLE and value:
            return shlex.split(value)[0]
    return None


def client_url(url: str, data: Path = DATA) -> str:
    """The URL a client of the stack uses for the configured ``url``.

    The stack's password is added when ``url`` has none and names the Redis the stack started
    (same port, on loopback); any other URL — one with a password, another server — is returned
    as it is.
    """
    own = own_url(data)
    if urlsplit(url).password or own is None or _address(own) != _address(url):
        return url
    return with_password(url, unquote(urlsplit(own).password or ""))


def stack_env_text(url: str) -> str:
    """The content of ``.data/stack.env``: the URL of the stack's Redis, as a sourceable line."""
    return (
        "# Written by `python -m deploy.stack up`: the URL of the Redis the stack started, with its\n"
        "# password. Make's recipes add it by themselves; in a shell: set -a; . .data/stack.env; set +a\n"
        f"{URL_VARIABLE}={shlex.quote(url)}\n"
    )


def ensure_redis(settings: Settings, data: Path = DATA) -> str:
    """Use the Redis on the configured port, or start one with a password (installing it if missing).

    Returns:
        The URL the stack's clients use (see :func:`client_url`).

    Raises:
        StackError: nothing listens on a host that is not loopback, or the server refuses the URL.
    """
    url = settings.redis_url
    u = urlsplit(url)
    host, port = u.hostname or "127.0.0.1", u.port or DEFAULT_REDIS_PORT
    if is_listening(host, port):
        own = own_url(data)
        if own is not None and _address(own) == _address(url):
            say(f"redis: already running on {host}:{port} (with a password)")
        elif own is None and read_pid("redis", data / "run"):
            say(f"redis: already running on {host}:{port}, without a password (make down && make up gives it one)")
        else:
            say(f"redis: using the server on {host}:{port}")
        client = client_url(url, data)
        _check_login(client)
        return client
    require_loopback("redis", host, port)
    if not shutil.which("redis-server"):
        apt_install("redis-server")
    password = unquote(u.password) if u.password else generated_secret(data / PASSWORD_FILE)
    client = url if u.password else with_password(url, password)
    (data / "redis").mkdir(parents=True, exist_ok=True)
    (data / "run").mkdir(parents=True, exist_ok=True)
    open_private(private_dir(data / "logs") / "redis.log").close()  # redis-server keeps the mode
    where = URL_VARIABLE if u.password else f".data/{PASSWORD_FILE}"
    say(f"redis: starting on 127.0.0.1:{port} (password in {where})")
    config = server_config(password)
    subprocess.run(server_command(port, data), input=config, text=True, check=True, stdout=subprocess.DEVNULL)
    write_private(data / STACK_ENV_FILE, stack_env_text(client))
    wait_until(lambda: is_listening(host, port), 20, "redis to listen")
    return client


def _hint(url: str) -> str:
    return f"{URL_VARIABLE}={redacted(url)}"


def _check_login(url: str) -> None:
    client = Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
    except RedisError as exc:
        raise StackError(
            f"the Redis server refuses {_hint(url)}: {exc}. Put its password in the URL "
            "(redis://:<password>@host:port/0), or name a free port to get a Redis of the stack's own."
        ) from None
    finally:
        client.close()


def forget(data: Path = DATA) -> None:
    """Remove ``.data/stack.env`` once the stack's Redis is stopped."""
    (data / STACK_ENV_FILE).unlink(missing_ok=True)
