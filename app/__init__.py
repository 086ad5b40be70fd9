"""async-code's GitHub-facing service. `create_app` builds it; importing starts nothing.

Before a GitHub App is registered, `create_setup_app` builds setup mode instead (app/setup.py),
and `Handover` lets `serve` swap one for the other without a restart.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import Flask, jsonify

from app.settings import Settings
from app.store import Store

if TYPE_CHECKING:
    from app.setup import JustRegistered, Setup


def create_app(settings: Settings, store: Store,
               on_task_recorded: Callable[[], None] = lambda: None, *,
               just_registered: JustRegistered | None = None) -> Flask:
    """The webhook service. `on_task_recorded` runs after a task is stored (in-process only:
    it must not block or call out). `just_registered` is the App setup mode registered a moment
    ago, for the page at / to show."""
    from app.artifact_links import blueprint as artifact_links
    from app.setup import status_blueprint
    from app.webhooks import MAX_BODY_BYTES, blueprint, too_large

    app = Flask(__name__)
    app.config.update(SETTINGS=settings, STORE=store, MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
                      ON_TASK_RECORDED=on_task_recorded, JUST_REGISTERED=just_registered)
    app.register_blueprint(blueprint)
    app.register_blueprint(status_blueprint)
    app.register_blueprint(artifact_links)

    # Bodies without a Content-Length are cut off by MAX_CONTENT_LENGTH while being read.
    app.register_error_handler(413, lambda _error: too_large())

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok", "deliveries": store.delivery_count()})

    return app


def create_setup_app(setup: Setup) -> Flask:
    """Setup mode: the page that registers the GitHub App; deliveries are refused until then."""
    from app.setup import setup_blueprint

    app = Flask(__name__)
    app.config.update(SETTINGS=setup.settings, SETUP=setup, MAX_CONTENT_LENGTH=64 * 1024)
    app.register_blueprint(setup_blueprint)

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "setup"})

    return app


class Handover:
    """The WSGI application `serve` runs: one app until `switch_to` names the next. Requests
    already running finish on the app they started on."""

    def __init__(self, app: Flask):
        self.current = app

    def switch_to(self, app: Flask) -> None:
        self.current = app  # one reference assignment: atomic for the threads reading it

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        return self.current(environ, start_response)
