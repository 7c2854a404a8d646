"""Flask CLI commands: ``flask --app api.wsgi keys create OWNER [--admin] [--attr NAME=VALUE]...``
and ``flask --app api.wsgi datasets check``."""

from __future__ import annotations

import click
import psycopg
from flask import Flask, current_app

from shared.datasets import DatasetsError, load
from shared.db import connect_state, process_label
from shared.keys import create_key, parse_attribute


def init_app(app: Flask) -> None:
    app.cli.add_command(keys)
    app.cli.add_command(datasets)


@click.group()
def keys() -> None:
    """Manage API keys."""


@keys.command("create")
@click.argument("owner")
@click.option("--admin", is_flag=True, help="an operator's key: may cancel any owner's export")
@click.option("--attr", "attrs", multiple=True, metavar="NAME=VALUE", help="an attribute scoped datasets bind to")
def create(owner: str, admin: bool, attrs: tuple[str, ...]) -> None:
    """Create a key for OWNER and print it as the last line (it is not shown again)."""
    try:
        attributes = dict(parse_attribute(a) for a in attrs)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--attr") from None
    with connect_state(current_app.config["SPILLWAY"], process_label("cli")) as conn:
        try:
            key = create_key(conn, owner, admin, attributes)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="OWNER") from None
    click.echo(
        f"created {'an admin' if admin else 'a'} key for owner {owner!r}; store it now, it is shown once:", err=True
    )
    click.echo(key)


@click.group()
def datasets() -> None:
    """Check the datasets file."""


@datasets.command("check")
def check() -> None:
    """Check every dataset of SPILLWAY_DATASETS_FILE against the live catalog; exit 1 naming
    the first problem."""
    settings = current_app.config["SPILLWAY"]
    try:
        registry = load(settings)
    except DatasetsError as exc:
        raise click.ClickException(str(exc)) from None
    except psycopg.OperationalError as exc:
        raise click.ClickException(f"the source database is unreachable: {exc}") from None
    for dataset in registry.values():
        scoped = f", scoped by {', '.join(r.attribute for r in dataset.scope)}" if dataset.scope else ""
        click.echo(
            f"ok {dataset.name}: {dataset.relation_kind} {dataset.schema}.{dataset.relation}, key {dataset.key.name}"
            f" ({dataset.key.type.display}), {len(dataset.columns)} columns{scoped}"
        )
