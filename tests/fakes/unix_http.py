"""A small HTTP server on a Unix socket, standing in for the runner's per-task model socket.

    GET  /hello              a fixed greeting
    GET  /bytes?n=N          N bytes of `pattern(N)`
    POST /echo               the request body back; its sha256 is recorded in `received`
    POST /until-eof          reads the body up to the client's end of stream (no
                             Content-Length), then answers its size and sha256 and closes,
                             again with no Content-Length: only half-closes end either side
    GET  /together?i=I       answers only once `together` (a Barrier) has all its parties, so
                             every such request must be in flight at the same time

Every request's path is recorded in `paths`. HTTP/1.0: the server closes each connection after
its answer, which a relay must pass on as the end of the stream.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import socketserver
import threading
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

GREETING = b"hello from the Unix socket\n"


def pattern(size: int) -> bytes:
    """Deterministic bytes that are not one repeated value, so a misordered relay shows."""
    block = b"".join(i.to_bytes(4, "big") for i in range(16384))  # 64 KiB
    return (block * (size // len(block) + 1))[:size]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: UnixHTTPServer

    def log_message(self, format: str, *args: object) -> None:
        pass  # tests read `paths` instead

    def _answer(self, body: bytes, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        self.server.paths.append(self.path)
        if url.path == "/hello":
            self._answer(GREETING)
        elif url.path == "/bytes":
            self._answer(pattern(int(query["n"][0])))
        elif url.path == "/together" and self.server.together is not None:
            try:
                self.server.together.wait()
            except threading.BrokenBarrierError:
                self._answer(b"not all requests arrived together\n", 503)
                return
            self._answer(f"together {query['i'][0]}\n".encode())
        else:
            self._answer(b"not found\n", 404)

    def do_POST(self) -> None:
        self.server.paths.append(self.path)
        if self.path == "/until-eof":
            body = self.rfile.read()
            self.server.received.append(hashlib.sha256(body).hexdigest())
            self.send_response(200)
            self.end_headers()
            self.wfile.write(f"{len(body)} {hashlib.sha256(body).hexdigest()}\n".encode())
            return
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path != "/echo":
            self._answer(b"not found\n", 404)
            return
        self.server.received.append(hashlib.sha256(body).hexdigest())
        self._answer(body)


class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: Path):
        super().__init__(str(path), _Handler)
        # The sandbox connects as another user; connecting needs write permission on the socket.
        os.chmod(path, 0o666)
        self.path = path
        self.paths: list[str] = []
        self.received: list[str] = []
        self.together: threading.Barrier | None = None
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="unix-http", daemon=True)

    def start(self) -> UnixHTTPServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self.together is not None:
            self.together.abort()
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=10)
