"""Webhook intake latency: signed deliveries to a real `async-code serve --workers 0` on loopback.

Usage: .venv/bin/python bench/intake.py [--deliveries 1000] [--kind command|ignored]
           [--store sqlite|postgres] [--database-url URL]

Starts the service in a temporary data directory, sends deliveries one at a time over a
kept-alive connection, and prints latency percentiles and the service's resident memory.
The store is SQLite in the data directory, or with `--store postgres` a fresh migrated database
on a throwaway PostgreSQL cluster on loopback (or on the server of `--database-url`, a
superuser's URL), where recording a task also defers its acknowledge job.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import secrets
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.postgres_server import (durability, migrated_database, postgres_server,  # noqa: E402
                                   server_version)
from tests.payloads import issue_comment, sign  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def recorded_tasks(database_url: str | None, sqlite_path: Path) -> int:
    if database_url:
        import psycopg
        with psycopg.connect(database_url) as db:
            return db.execute("SELECT count(*) FROM async_code.tasks").fetchone()[0]
    with contextlib.closing(sqlite3.connect(sqlite_path)) as db:
        return db.execute("SELECT count(*) FROM tasks").fetchone()[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deliveries", type=int, default=1000)
    parser.add_argument("--kind", choices=["command", "ignored"], default="command")
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--database-url", help="PostgreSQL: a superuser's URL (default: a throwaway cluster)")
    args = parser.parse_args()

    secret = secrets.token_hex(16)
    port = free_port()
    with contextlib.ExitStack() as stack:
        data = stack.enter_context(tempfile.TemporaryDirectory())
        env = {"PATH": os.environ["PATH"], "HOME": data, "GITHUB_WEBHOOK_SECRET": secret,
               "ASYNC_CODE_DATA_DIR": data}
        if args.store == "postgres" or args.database_url:
            postgres = stack.enter_context(postgres_server(args.database_url))
            env["DATABASE_URL"] = stack.enter_context(migrated_database(postgres))
            store = f"PostgreSQL {server_version(postgres)}, {durability(postgres)}"
        else:
            store = f"SQLite {sqlite3.sqlite_version}, WAL"
        server = subprocess.Popen([sys.executable, "-m", "app", "serve", "--workers", "0",
                                   "--port", str(port)], env=env, cwd=data,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(300):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                    break
                except OSError:
                    time.sleep(0.05)
            rss_before = rss_mib(server.pid)
            connection = http.client.HTTPConnection("127.0.0.1", port)
            timings = []
            for n in range(args.deliveries):
                text = "@async-code add retries to the fetch client" if args.kind == "command" else "looks good"
                body = json.dumps(issue_comment(text, comment_id=n + 1)).encode()
                headers = {"Content-Type": "application/json", "X-GitHub-Event": "issue_comment",
                           "X-GitHub-Delivery": str(uuid.uuid4()),
                           "X-Hub-Signature-256": sign(body, secret)}
                started = time.perf_counter()
                connection.request("POST", "/webhooks", body, headers)
                response = connection.getresponse()
                response.read()
                timings.append((time.perf_counter() - started) * 1000)
                expected = 202 if args.kind == "command" else 200
                assert response.status == expected, response.status
            connection.close()
            rss_after = rss_mib(server.pid)
        finally:
            server.terminate()
            server.wait()
        tasks = recorded_tasks(env.get("DATABASE_URL"), Path(data) / "async-code.db")

    timings.sort()
    pick = lambda q: timings[min(len(timings) - 1, int(q * len(timings)))]  # noqa: E731
    print(f"deliveries: {args.deliveries} ({args.kind}), store: {store}")
    print(f"latency ms: median {statistics.median(timings):.2f}  p95 {pick(0.95):.2f}  "
          f"p99 {pick(0.99):.2f}  max {timings[-1]:.2f}")
    print(f"tasks recorded: {tasks}")
    print(f"service RSS MiB: {rss_before:.1f} at start, {rss_after:.1f} after")


if __name__ == "__main__":
    main()
