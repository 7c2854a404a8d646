"""Flask CLI commands: ``flask --app api.wsgi keys create OWNER [--admin]``."""

from __future__ import annotations

import click
from flask import Flask, current_app

from shared.db import connect_state, process_label
from shared.keys import create_key


def init_app(app: Flask) -> None:
    app.cli.add_command(keys)


@click.group()
def keys() -> None:
    """Manage API keys."""


@keys.command("create")
@click.argument("owner")
@click.option("--admin", is_flag=True, help="an operator's key: may cancel any owner's export")
def create(owner: str, admin: bool) -> None:
    """Create a key for OWNER and print it as the last line (it is not shown again)."""
    with connect_state(current_app.config["SPILLWAY"], process_label("cli")) as conn:
        try:
            key = create_key(conn, owner, admin)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="OWNER") from None
    click.echo(
        f"created {'an admin' if admin else 'a'} key for owner {owner!r}; store it now, it is shown once:", err=True
    )
    click.echo(key)
