"""A real PostgreSQL server for the tests: ASYNC_CODE_TEST_DATABASE_URL when it is set (a
superuser's URL on a server the tests may create databases and roles on), else a throwaway
cluster made with initdb in a temporary directory, on a free loopback port, removed at the end.

Each test gets a database of its own, copied from a template: `postgres_url` an empty one,
`migrated_postgres_url` one `async-code migrate` has already brought up to date. Both connect
as `async_code_owner`, a role with no privilege but CREATE on its database, as a service
would (and so not exempt from row level security as a superuser would be).
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest

from app.migrate import migrate

OWNER = "async_code_owner"
_TEMPLATE_MIGRATED = "async_code_test_migrated"


def find_postgres_bin() -> Path | None:
    """The folder holding initdb and pg_ctl: on PATH, else the newest of Debian's
    /usr/lib/postgresql/*/bin."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).resolve().parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    return Path(found[-1]).parent if found else None


def _free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cluster_user() -> str | None:
    """Who runs the cluster: initdb refuses root, so as root an existing non-root user does."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("the tests' PostgreSQL cluster cannot be made as root without a non-root "
                       "user to run it: create a `postgres` user, or set "
                       "ASYNC_CODE_TEST_DATABASE_URL to a server of your own")


@dataclass
class ThrowawayCluster:
    bin_dir: Path
    root: Path
    port: int
    password: str
    user: str | None

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql://async_code_test:{self.password}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    def start(self) -> None:
        if self.user:
            shutil.chown(self.root, self.user)
        password_file = self.root / "password"
        password_file.write_text(self.password + "\n")
        if self.user:
            shutil.chown(password_file, self.user)
        made = self._run("initdb", "-D", str(self.data_dir), "-U", "async_code_test",
                         "--auth=scram-sha-256", f"--pwfile={password_file}", "-E", "UTF8",
                         "--locale=C.UTF-8")
        password_file.unlink()
        if made.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{made.stdout}{made.stderr}")
        # Only loopback, its socket in its own folder; durability is not wanted here.
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        started = self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.root / "server.log"),
                            "-o", options, "-w", "-t", "60", "start")
        if started.returncode != 0:
            log = (self.root / "server.log")
            raise RuntimeError(f"pg_ctl start failed:\n{started.stdout}{started.stderr}\n"
                               f"{log.read_text() if log.exists() else ''}")

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


def with_database(url: str, database: str, user: str | None = None, password: str | None = None) -> str:
    """`url` naming another database (and user)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if user is not None:
        host = netloc.rsplit("@", 1)[-1]
        netloc = f"{quote(user)}:{quote(password or '')}@{host}"
    return urlunsplit((parts.scheme, netloc, "/" + database, parts.query, parts.fragment))


@dataclass(frozen=True)
class PostgresServer:
    """A server the tests may create databases and roles on: `admin_url` is a superuser's."""

    admin_url: str
    owner_password: str

    def admin(self, database: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(with_database(self.admin_url, database), autocommit=True)

    def new_database(self, template: str = "template1") -> str:
        name = "async_code_test_" + uuid.uuid4().hex[:12]
        with self.admin() as db:
            db.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
            db.execute(f"GRANT CREATE ON DATABASE {name} TO {OWNER}")
        return name

    def owner_url(self, database: str) -> str:
        return with_database(self.admin_url, database, OWNER, self.owner_password)

    def drop_database(self, name: str) -> None:
        with self.admin() as db:
            db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    given = os.environ.get("ASYNC_CODE_TEST_DATABASE_URL", "").strip()
    cluster = None
    if given:
        admin_url = given
    else:
        bin_dir = find_postgres_bin()
        if bin_dir is None:
            raise RuntimeError("these tests need PostgreSQL: install its server (Debian: apt-get "
                               "install postgresql; scripts/test does it) or set "
                               "ASYNC_CODE_TEST_DATABASE_URL to a superuser's URL")
        cluster = ThrowawayCluster(bin_dir=bin_dir, root=Path(tempfile.mkdtemp(prefix="async-code-pg-")),
                                   port=_free_loopback_port(), password=secrets.token_hex(16),
                                   user=_cluster_user())
        try:
            cluster.start()
        except Exception:
            cluster.stop()
            raise
        admin_url = cluster.url
    server = PostgresServer(admin_url=admin_url, owner_password=secrets.token_hex(16))
    try:
        with server.admin() as db:
            db.execute(f"DROP DATABASE IF EXISTS {_TEMPLATE_MIGRATED} WITH (FORCE)")
            if db.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (OWNER,)).fetchone():
                db.execute(f"ALTER ROLE {OWNER} PASSWORD '{server.owner_password}'")
            else:
                db.execute(f"CREATE ROLE {OWNER} LOGIN PASSWORD '{server.owner_password}'")
        template = server.new_database()
        migrate(server.owner_url(template))
        with server.admin() as db:
            db.execute(f"ALTER DATABASE {template} RENAME TO {_TEMPLATE_MIGRATED}")
        yield server
    finally:
        if cluster is not None:
            cluster.stop()
        else:
            with server.admin() as db:
                db.execute(f"DROP DATABASE IF EXISTS {_TEMPLATE_MIGRATED} WITH (FORCE)")


@pytest.fixture
def postgres_url(postgres_server) -> Iterator[str]:
    """A new, empty database of this test's own, as its owner would connect to it."""
    name = postgres_server.new_database()
    yield postgres_server.owner_url(name)
    postgres_server.drop_database(name)


@pytest.fixture
def migrated_postgres_url(postgres_server) -> Iterator[str]:
    """A new database of this test's own with every migration applied."""
    name = postgres_server.new_database(_TEMPLATE_MIGRATED)
    yield postgres_server.owner_url(name)
    postgres_server.drop_database(name)
