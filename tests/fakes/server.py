"""Serve a WSGI app on a free loopback port in a background thread: what every fake runs on."""

from __future__ import annotations

import threading
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server


class _QuietRequestHandler(WSGIRequestHandler):
    # Fakes record requests themselves; per-request log lines only bury test output.
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class LoopbackServer:
    def __init__(self, app: Any, name: str):
        self._app = app
        self._name = name
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError(f"{self._name} is not started")
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError(f"{self._name} is already started")
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True,
                                   request_handler=_QuietRequestHandler)
        # A short poll interval keeps stop() quick; tests start and stop a server each.
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, name=self._name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        self._server = None
        self._thread = None
