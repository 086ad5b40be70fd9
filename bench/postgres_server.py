"""A PostgreSQL server for benchmarks: the one a superuser's URL names, or a throwaway cluster on
a free loopback port (the tests' `ThrowawayCluster`), removed at the end.

The tests' cluster runs without durability (fsync off) to be quick; a benchmark's restarts it
with PostgreSQL's defaults, so a commit costs what it costs in production, as SQLite's does
(WAL, `synchronous` at its default, FULL).
"""

from __future__ import annotations

import contextlib
import secrets
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from app.migrate import migrate  # noqa: E402
from tests.postgres_cluster import (OWNER, PostgresServer, ThrowawayCluster,  # noqa: E402
                                    _cluster_user, _free_loopback_port, find_postgres_bin)


def _restart_durable(cluster: ThrowawayCluster) -> None:
    stopped = cluster._run("pg_ctl", "-D", str(cluster.data_dir), "-m", "fast", "-w", "stop")
    if stopped.returncode != 0:
        raise RuntimeError(f"pg_ctl stop failed:\n{stopped.stdout}{stopped.stderr}")
    options = (f"-c listen_addresses=127.0.0.1 -p {cluster.port} -k {cluster.root} "
               "-c max_connections=200")
    started = cluster._run("pg_ctl", "-D", str(cluster.data_dir), "-l", str(cluster.root / "server.log"),
                           "-o", options, "-w", "-t", "60", "start")
    if started.returncode != 0:
        raise RuntimeError(f"pg_ctl start failed:\n{started.stdout}{started.stderr}")


@contextlib.contextmanager
def postgres_server(database_url: str | None = None) -> Iterator[PostgresServer]:
    """A server to make databases on: `database_url` (a superuser's), else a throwaway cluster."""
    cluster = None
    if database_url:
        admin_url = database_url
    else:
        bin_dir = find_postgres_bin()
        if bin_dir is None:
            raise SystemExit("no PostgreSQL server found (Debian: apt-get install postgresql); "
                             "or pass --database-url with a superuser's URL")
        cluster = ThrowawayCluster(bin_dir=bin_dir, root=Path(tempfile.mkdtemp(prefix="async-code-pg-")),
                                   port=_free_loopback_port(), password=secrets.token_hex(16),
                                   user=_cluster_user())
        try:
            cluster.start()
            _restart_durable(cluster)
        except Exception:
            cluster.stop()
            raise
        admin_url = cluster.url
    server = PostgresServer(admin_url=admin_url, owner_password=secrets.token_hex(16))
    try:
        with server.admin() as db:
            if db.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (OWNER,)).fetchone():
                db.execute(f"ALTER ROLE {OWNER} PASSWORD '{server.owner_password}'")
            else:
                db.execute(f"CREATE ROLE {OWNER} LOGIN PASSWORD '{server.owner_password}'")
        yield server
    finally:
        if cluster is not None:
            cluster.stop()


@contextlib.contextmanager
def migrated_database(server: PostgresServer) -> Iterator[str]:
    """A new database with every migration applied, dropped at the end: its owner's URL."""
    name = server.new_database()
    try:
        url = server.owner_url(name)
        migrate(url)
        yield url
    finally:
        server.drop_database(name)


def server_version(server: PostgresServer) -> str:
    with server.admin() as db:
        return db.execute("SHOW server_version").fetchone()[0]


def durability(server: PostgresServer) -> str:
    with server.admin() as db:
        return ", ".join(f"{name} {db.execute(f'SHOW {name}').fetchone()[0]}"
                         for name in ("fsync", "synchronous_commit"))
