"""Flask CLI commands: ``flask --app api.wsgi keys create OWNER [--admin] [--attr NAME=VALUE]...``,
``keys list [--owner OWNER] [--active]``, ``keys revoke ID``, and ``datasets check``."""

from __future__ import annotations

from datetime import datetime

import click
import psycopg
from flask import Flask, current_app

from shared.datasets import DatasetsError, load
from shared.db import connect_state, process_label
from shared.keys import KeyRecord, create_key, list_keys, parse_attribute, revoke_key


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


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment is not None else "-"


def _describe(key: KeyRecord) -> str:
    attributes = ",".join(f"{n}={v}" for n, v in sorted(key.attributes.items())) or "-"
    return (
        f"{key.id:>5}  {key.prefix:<10}  {key.owner:<20}  {'admin' if key.is_admin else '-':<5}  {attributes:<24}"
        f"  {_when(key.created_at):<25}  {_when(key.last_used_at):<25}  {_when(key.revoked_at)}"
    )


@keys.command("list")
@click.option("--owner", help="only this owner's keys")
@click.option("--active", is_flag=True, help="leave revoked keys out")
def list_command(owner: str | None, active: bool) -> None:
    """List keys: id, first characters, owner, admin, attributes, created, last used, revoked."""
    with connect_state(current_app.config["SPILLWAY"], process_label("cli")) as conn:
        found = list_keys(conn, owner, revoked=not active)
    click.echo(
        f"{'id':>5}  {'key':<10}  {'owner':<20}  {'admin':<5}  {'attributes':<24}  {'created':<25}"
        f"  {'last used':<25}  revoked"
    )
    for key in found:
        click.echo(_describe(key))


@keys.command("revoke")
@click.argument("key_id", type=int, metavar="ID")
def revoke(key_id: int) -> None:
    """Revoke the key ID (from keys list): it answers 401 once the API's auth cache
    (SPILLWAY_AUTH_CACHE_S) forgets it."""
    settings = current_app.config["SPILLWAY"]
    with connect_state(settings, process_label("cli")) as conn:
        key = revoke_key(conn, key_id)
    if key is None:
        raise click.ClickException(f"no key with id {key_id} (see keys list)")
    click.echo(
        f"revoked key {key.id} ({key.prefix}…) of {key.owner!r} at {_when(key.revoked_at)};"
        f" API processes refuse it within {settings.auth_cache_s} s"
    )


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
