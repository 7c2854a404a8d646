"""The HTTP API: a Flask app factory; routes stay thin and never import ``worker``."""

from __future__ import annotations

import click
from flask import Flask
from flask.json.provider import DefaultJSONProvider

from shared import datasets
from shared.settings import Settings, load_settings


def create_app(settings: Settings | None = None) -> Flask:
    """Build the API application.

    Args:
        settings: configuration; read from the environment when omitted.

    Raises:
        DatasetsError: the datasets file is unusable, so the API must not start (under the
            ``flask`` command it is reported by the command that needs it instead, so that
            ``datasets check`` can say what is wrong and ``keys create`` still works).
    """
    app = Flask(__name__, static_folder=None)  # the page serves its own files (api/web.py)
    app.config["SPILLWAY"] = settings = settings or load_settings()
    try:
        datasets.load_when_reachable(settings)
    except datasets.DatasetsError:
        if click.get_current_context(silent=True) is None:
            raise
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes  # every route: werkzeug refuses larger bodies
    if isinstance(app.json, DefaultJSONProvider):
        app.json.sort_keys = False  # fields in the order the views build them
    register_extensions(app)
    register_blueprints(app)
    register_errorhandlers(app)
    register_commands(app)
    return app


def register_extensions(app: Flask) -> None:
    from api import metrics, requests
    from api.extensions import init_app

    requests.init_app(app)
    init_app(app)
    metrics.init_app(app)


def register_blueprints(app: Flask) -> None:
    from api import exports, health, metrics, openapi, web

    app.register_blueprint(health.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(exports.bp)
    app.register_blueprint(web.bp)


def register_errorhandlers(app: Flask) -> None:
    from api import errors

    errors.init_app(app)


def register_commands(app: Flask) -> None:
    from api import commands

    commands.init_app(app)
