"""The local stack's secrets and logs, without starting a server: private files, the redis-server
command and configuration, and the rule that gives the stack's clients its Redis password."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from deploy import stack
from deploy.datadir import generated_secret, open_private, private_dir, write_private
from deploy.local_redis import (
    STACK_ENV_FILE,
    client_url,
    own_url,
    redacted,
    server_command,
    server_config,
    stack_env_text,
    with_password,
)
from deploy.services import StackError, require_loopback
from deploy.stack import client_env
from shared.settings import Settings, load_settings

OWN = "redis://:s3cr3t-Pass_word@127.0.0.1:6391/0"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_generated_secret_is_private_url_safe_and_made_once(tmp_path):
    path = tmp_path / "sub" / "redis-password"
    secret = generated_secret(path)
    assert mode(path) == 0o600
    assert len(secret) == 24 and all(c.isalnum() or c in "-_" for c in secret)
    assert generated_secret(path) == secret


def test_logs_and_written_files_are_private_even_when_they_existed(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir(mode=0o755)
    assert mode(private_dir(logs)) == 0o700
    old = logs / "web.log"
    old.write_text("before\n")
    old.chmod(0o644)
    with open_private(old) as f:
        f.write(b"after\n")
    assert mode(old) == 0o600 and old.read_text() == "before\nafter\n"
    with open_private(logs / "s3.log"):
        pass
    assert mode(logs / "s3.log") == 0o600
    write_private(tmp_path / "stack.env", "x\n")
    assert mode(tmp_path / "stack.env") == 0o600


def test_redis_server_listens_on_loopback_and_gets_its_password_on_stdin_only(tmp_path):
    command = server_command(6391, tmp_path)
    assert command[:2] == ["redis-server", "-"]  # "-": the configuration comes on standard input
    assert command[command.index("--bind") + 1] == "127.0.0.1"
    assert command[command.index("--port") + 1] == "6391"
    assert not any("requirepass" in arg or "s3cr3t" in arg for arg in command)  # nothing in ps or /proc
    assert server_config("s3cr3t") == 'requirepass "s3cr3t"\n'
    assert server_config('a"b\\c\nd') == 'requirepass "a\\"b\\\\c\\x0ad"\n'  # one line, quoted as Redis reads it


def test_urls_get_a_password_and_messages_never_show_it():
    assert with_password("redis://127.0.0.1:6379/15", "p@ss") == "redis://:p%40ss@127.0.0.1:6379/15"
    assert with_password("redis://:old@127.0.0.1/0", "new") == "redis://:new@127.0.0.1/0"
    assert redacted(OWN) == "redis://:***@127.0.0.1:6391/0"
    assert redacted("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


@pytest.fixture
def stack_data(tmp_path) -> Path:
    """A .data/ whose Redis runs (its PID is this test's) with the password of OWN."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "redis.pid").write_text(f"{os.getpid()}\n")
    write_private(tmp_path / STACK_ENV_FILE, stack_env_text(OWN))
    return tmp_path


def test_clients_get_the_password_of_the_stacks_own_redis(stack_data):
    assert own_url(stack_data) == OWN
    # unset (the default URL names another port) or explicit: only a URL of that server gains it
    assert client_url("redis://127.0.0.1:6391/0", stack_data) == OWN
    assert client_url("redis://localhost:6391/15", stack_data) == "redis://:s3cr3t-Pass_word@localhost:6391/15"
    assert client_url("redis://127.0.0.1:6379/0", stack_data) == "redis://127.0.0.1:6379/0"  # another server
    assert client_url("redis://:mine@127.0.0.1:6391/0", stack_data) == "redis://:mine@127.0.0.1:6391/0"  # it wins


def test_no_password_is_added_once_the_stacks_redis_is_gone(stack_data):
    dead = subprocess.Popen(["true"])
    dead.wait()
    (stack_data / "run" / "redis.pid").write_text(f"{dead.pid}\n")
    assert own_url(stack_data) is None
    assert client_url("redis://127.0.0.1:6391/0", stack_data) == "redis://127.0.0.1:6391/0"
    (stack_data / STACK_ENV_FILE).unlink()
    assert client_url("redis://127.0.0.1:6391/0", stack_data) == "redis://127.0.0.1:6391/0"


def test_stack_env_is_a_sourceable_shell_file(stack_data):
    done = subprocess.run(
        ["sh", "-c", f'set -a; . "{stack_data / STACK_ENV_FILE}"; set +a; printf %s "$SPILLWAY_REDIS_URL"'],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout == OWN


def test_the_stack_starts_servers_for_loopback_addresses_only():
    for host in ("127.0.0.1", "localhost", "::1"):
        require_loopback("redis", host, 6379)
    with pytest.raises(StackError, match="redis: nothing listens on redis.example:6379"):
        require_loopback("redis", "redis.example", 6379)


def test_make_runs_its_clients_with_the_password_and_an_explicit_one_wins(stack_data):
    environ = {"PATH": "/bin"}
    default = client_env(Settings(redis_url="redis://127.0.0.1:6391/0"), environ, stack_data)
    assert default == {"PATH": "/bin", "SPILLWAY_REDIS_URL": OWN}
    mine = {"SPILLWAY_REDIS_URL": "redis://:mine@127.0.0.1:6391/0"}
    assert client_env(load_settings(mine), mine, stack_data) == mine
    assert client_env(Settings(), environ, stack_data) == environ  # 6379: not the stack's Redis


def test_command_line_keeps_up_options_apart_from_exec_arguments(monkeypatch):
    seen = {}
    monkeypatch.setattr(stack, "up", lambda settings, deps_only: seen.setdefault("deps_only", deps_only))
    monkeypatch.setattr(stack, "run_as_client", lambda argv, settings: seen.setdefault("argv", argv))
    assert stack.main(["up", "--deps-only"]) == 0
    stack.main(["exec", "--", "pytest", "--deps-only"])
    assert seen == {"deps_only": True, "argv": ["--", "pytest", "--deps-only"]}
