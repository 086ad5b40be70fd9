"""async-code's GitHub-facing service. `create_app` builds it; importing starts nothing."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, jsonify

from app.settings import Settings
from app.store import Store


def create_app(settings: Settings, store: Store,
               on_task_recorded: Callable[[], None] = lambda: None) -> Flask:
    """The webhook service. `on_task_recorded` runs after a task is stored (in-process only:
    it must not block or call out)."""
    from app.webhooks import MAX_BODY_BYTES, blueprint, too_large

    app = Flask(__name__)
    app.config.update(SETTINGS=settings, STORE=store, MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
                      ON_TASK_RECORDED=on_task_recorded)
    app.register_blueprint(blueprint)

    # Bodies without a Content-Length are cut off by MAX_CONTENT_LENGTH while being read.
    app.register_error_handler(413, lambda _error: too_large())

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok", "deliveries": store.delivery_count()})

    return app
