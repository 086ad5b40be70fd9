"""The PostgreSQL store's own: `async-code migrate`, a schema only its owner can use, and the
answers a misconfigured database gets. The contract it shares with SQLite is in test_store.py."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from click.testing import CliRunner

from app.cli import cli
from app.migrate import (MigrationError, all_migrations, engine_schemas, migrate,
                         product_migrations)
from app.postgres_store import PostgresStore, StoreUnavailable
from app.store import CANCELLED, NewTask, utcnow
from tests.postgres_cluster import OWNER, with_database

NOT_SUPPOSED = "should never be shown"


def new_task(number=1, comment_id=None):
    return NewTask(trigger="comment", repo="acme/widgets", installation_id=1, number=number,
                   comment_id=comment_id or number, instruction="do it", requested_by="alice",
                   requested_by_id=5)


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as db:
        return {row[0] for row in db.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'p')", ("async_code",)).fetchall()}


def applied(url: str) -> dict[str, str]:
    with psycopg.connect(url) as db:
        return dict(db.execute("SELECT name, checksum FROM async_code.schema_migrations").fetchall())


def test_migrate_makes_the_schema_once(postgres_url):
    assert migrate(postgres_url) == [m.name for m in all_migrations()]
    assert tables(postgres_url) == {"meta", "deliveries", "tasks", "installation_events",
                                    "pressed_buttons", "schema_migrations",
                                    # the job queue's, in the same schema
                                    "procrastinate_jobs", "procrastinate_workers",
                                    "procrastinate_events", "procrastinate_periodic_defers"}
    assert applied(postgres_url) == {m.name: m.checksum for m in all_migrations()}
    assert migrate(postgres_url) == []
    with psycopg.connect(postgres_url) as db:  # nothing in public, whatever the search_path
        assert db.execute("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON "
                          "n.oid = c.relnamespace WHERE n.nspname = 'public'").fetchone()[0] == 0
        # nor the job queue's types and functions
        assert db.execute("SELECT count(*) FROM pg_type t JOIN pg_namespace n ON "
                          "n.oid = t.typnamespace WHERE n.nspname = 'public'").fetchone()[0] == 0
        assert db.execute("SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON "
                          "n.oid = p.pronamespace WHERE n.nspname = 'public'").fetchone()[0] == 0
        assert db.execute("SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = "
                          "p.pronamespace WHERE n.nspname = 'async_code' AND "
                          "p.proname = 'procrastinate_defer_jobs_v1'").fetchone()[0] == 1


def test_the_migrations_ship_inside_the_package():
    names = [m.name for m in product_migrations()]
    assert names and names == sorted(names) and names[0].startswith("0001_")
    assert all("CREATE TABLE" in m.sql or "ALTER" in m.sql for m in product_migrations())


def test_a_changed_migration_is_refused_and_nothing_is_applied(postgres_url):
    migrate(postgres_url)
    first = product_migrations()[0]
    changed = [type(first)(first.name, first.sql + "\n-- an edit\n"),
               type(first)("9999_more.sql", "CREATE TABLE more (id int);")]
    with pytest.raises(MigrationError, match=f"{first.name} was changed after it was applied"):
        migrate(postgres_url, changed)
    assert "more" not in tables(postgres_url)
    assert applied(postgres_url)[first.name] == first.checksum


def test_a_database_migrated_by_a_newer_version_is_refused(migrated_postgres_url):
    with psycopg.connect(migrated_postgres_url) as db:
        db.execute("INSERT INTO async_code.schema_migrations (name, checksum) VALUES ('9999_x.sql', 'x')")
    with pytest.raises(MigrationError, match="newer async-code"):
        migrate(migrated_postgres_url)
    with pytest.raises(StoreUnavailable, match="newer async-code"):
        PostgresStore(migrated_postgres_url).initialise()


def test_two_migrates_at_once_both_succeed_and_apply_once(postgres_url):
    barrier = threading.Barrier(2)

    def run(_):
        barrier.wait()
        return migrate(postgres_url)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(run, range(2)))
    assert sorted(results, key=len) == [[], [m.name for m in all_migrations()]]
    assert len(applied(postgres_url)) == len(all_migrations())


def test_an_unmigrated_database_is_refused_until_migrated(postgres_url):
    store = PostgresStore(postgres_url)
    with pytest.raises(StoreUnavailable, match="run `async-code migrate`"):
        store.initialise()
    store.close()
    migrate(postgres_url)
    with PostgresStore(postgres_url) as store:
        store.initialise()
        assert store.delivery_count() == 0


def test_an_unreachable_database_is_named_without_its_password(postgres_server):
    url = with_database(postgres_server.admin_url, "postgres", OWNER, NOT_SUPPOSED)
    with pytest.raises(StoreUnavailable, match="cannot be used") as refused:
        PostgresStore(url).initialise()
    assert NOT_SUPPOSED not in str(refused.value)


def test_created_at_and_updated_at_are_kept_by_the_database(migrated_postgres_url):
    with PostgresStore(migrated_postgres_url) as store:
        store.initialise()
        task = store.record_delivery("g1", "issue_comment", "created", new_task())
        with psycopg.connect(migrated_postgres_url) as db:
            created, updated = db.execute("SELECT created_at, updated_at FROM async_code.tasks").fetchone()
        store.update(task.id, created_at="2001-01-01T00:00:00+00:00", output="x")
        with psycopg.connect(migrated_postgres_url) as db:
            after = db.execute("SELECT created_at, updated_at FROM async_code.tasks").fetchone()
        assert after[0] == created and after[1] > updated
        assert store.get(task.id).created_at == task.created_at


def test_a_running_cancel_holds_off_a_second_one(migrated_postgres_url):
    """The second cancel waits for the first to end, then finds nothing left to cancel."""
    with PostgresStore(migrated_postgres_url) as store:
        store.initialise()
        task = store.record_delivery("g1", "issue_comment", "created", new_task())
        with psycopg.connect(migrated_postgres_url) as first:
            first.execute("UPDATE async_code.tasks SET status = 'cancelled', cancel_requested_by = "
                          "'carol', finished_at = now() WHERE id = %s", (task.id,))
            with ThreadPoolExecutor(1) as pool:
                second = pool.submit(store.request_cancel, "acme/widgets", 1, by="dave")
                with psycopg.connect(migrated_postgres_url, autocommit=True) as watcher:
                    while not watcher.execute("SELECT 1 FROM pg_locks WHERE NOT granted").fetchone():
                        pass  # the second cancel is now waiting for the first's row
                first.commit()
                assert second.result(timeout=30) == ([], [])
        assert store.get(task.id).status == CANCELLED and store.cancel_requested(task.id) == "carol"


# Supabase's Data API roles: on a database made as Supabase makes it, they see nothing.

def _make_supabase_roles(postgres_server, database: str) -> str:
    """anon and authenticated as Supabase has them, and the authenticator role its Data API
    logs in as; returns a URL for authenticator."""
    password = "authenticator-password"
    with postgres_server.admin() as db:
        for role in ("anon", "authenticated"):
            if not db.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                db.execute(f"CREATE ROLE {role} NOLOGIN NOINHERIT")
        if not db.execute("SELECT 1 FROM pg_roles WHERE rolname = 'authenticator'").fetchone():
            db.execute(f"CREATE ROLE authenticator LOGIN NOINHERIT PASSWORD '{password}'")
        db.execute("GRANT anon, authenticated TO authenticator")
        db.execute(f"GRANT CONNECT ON DATABASE {database} TO authenticator")
    return with_database(postgres_server.admin_url, database, "authenticator", password)


def _rows_seen_as(url: str, role: str) -> dict[str, object]:
    """For each table of the schema: the rows `role` reads, or the error it gets."""
    seen: dict[str, object] = {}
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(f"SET ROLE {role}")
        for table in sorted(tables_of_schema(db)):
            try:
                seen[table] = db.execute(f"SELECT count(*) FROM async_code.{table}").fetchone()[0]
            except psycopg.errors.InsufficientPrivilege:
                seen[table] = "denied"
    return seen


def tables_of_schema(db: psycopg.Connection) -> list[str]:
    return [row[0] for row in db.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'async_code' AND c.relkind IN ('r', 'p')").fetchall()]


def test_the_data_api_roles_see_nothing_even_when_granted_by_mistake(postgres_server, postgres_url):
    database = postgres_url.rsplit("/", 1)[1]
    authenticator = _make_supabase_roles(postgres_server, database)
    migrate(postgres_url)  # after the roles exist, as on Supabase
    with PostgresStore(postgres_url) as store:
        store.initialise()
        task = store.record_delivery("g1", "issue_comment", "created", new_task())
        store.update(task.id, acknowledged_at=utcnow(), output="secret output")
        store.instance_id()
    every_table = tables(postgres_url)
    for role in ("anon", "authenticated"):
        assert _rows_seen_as(authenticator, role) == dict.fromkeys(sorted(every_table), "denied")

    # A misconfiguration: someone grants them the schema and its tables.
    with psycopg.connect(postgres_url, autocommit=True) as owner:
        owner.execute("GRANT USAGE ON SCHEMA async_code TO anon, authenticated")
        owner.execute("GRANT SELECT ON ALL TABLES IN SCHEMA async_code TO anon, authenticated")
    for role in ("anon", "authenticated"):
        assert _rows_seen_as(authenticator, role) == dict.fromkeys(sorted(every_table), 0)
    with psycopg.connect(postgres_url) as owner:  # the rows are there, for the owner only
        assert owner.execute("SELECT count(*) FROM async_code.tasks").fetchone()[0] == 1

    # The next migrate takes the mistake back.
    migrate(postgres_url)
    assert _rows_seen_as(authenticator, "anon") == dict.fromkeys(sorted(every_table), "denied")


def test_the_job_queue_schema_is_recorded_like_a_migration(migrated_postgres_url):
    [engine] = engine_schemas()
    assert applied(migrated_postgres_url)[engine.name] == engine.checksum
    assert "procrastinate" in engine.name and "CREATE TABLE procrastinate_jobs" in engine.sql


def test_every_table_of_the_schema_has_row_level_security(migrated_postgres_url):
    with psycopg.connect(migrated_postgres_url) as db:
        found = dict(db.execute(
            "SELECT c.relname, c.relrowsecurity FROM pg_class c JOIN pg_namespace n ON "
            "n.oid = c.relnamespace WHERE n.nspname = 'async_code' AND c.relkind IN ('r', 'p')").fetchall())
        policies = db.execute("SELECT count(*) FROM pg_policies WHERE schemaname = 'async_code'").fetchone()[0]
    assert {"tasks", "procrastinate_jobs", "procrastinate_workers"} <= set(found), found
    assert all(found.values()), found
    assert policies == 0


def test_only_the_owner_has_privileges_on_the_schema(migrated_postgres_url):
    with psycopg.connect(migrated_postgres_url) as db:
        acl = db.execute("SELECT nspacl::text[] FROM pg_namespace WHERE nspname = 'async_code'").fetchone()[0]
        public_tables = db.execute(
            "SELECT count(*) FROM information_schema.role_table_grants WHERE table_schema = "
            "'async_code' AND grantee = 'PUBLIC'").fetchone()[0]
    assert [entry for entry in acl if not entry.startswith(f"{OWNER}=")] == []
    assert public_tables == 0


# The command line

def _invoke(args, database_url, tmp_path):
    return CliRunner().invoke(cli, args, env={"DATABASE_URL": database_url,
                                              "ASYNC_CODE_DATA_DIR": str(tmp_path)},
                              catch_exceptions=False)


def test_migrate_command_applies_then_has_nothing_to_do(postgres_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = _invoke(["migrate"], postgres_url, tmp_path)
    assert first.exit_code == 0 and "applied to" in first.output
    assert "0001_task_store.sql" in first.output and ":***@" in first.output
    assert postgres_url.split(":")[2].split("@")[0] not in first.output  # the password
    second = _invoke(["migrate"], postgres_url, tmp_path)
    assert second.exit_code == 0 and "up to date: nothing to apply" in second.output
    listed = _invoke(["tasks"], postgres_url, tmp_path)
    assert listed.exit_code == 0 and "no tasks yet" in listed.output


def test_migrate_command_on_sqlite_has_nothing_to_do(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = _invoke(["migrate"], f"sqlite:///{tmp_path}/a.db", tmp_path)
    assert result.exit_code == 0 and "nothing to migrate" in result.output


def test_tasks_on_an_unmigrated_database_says_to_migrate(postgres_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = _invoke(["tasks"], postgres_url, tmp_path)
    assert result.exit_code == 1 and "run `async-code migrate`" in result.output


def test_worker_on_sqlite_says_serve_runs_the_tasks_there(tmp_path, monkeypatch, app_key):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["worker", "--concurrency", "2"], env={
        "DATABASE_URL": f"sqlite:///{tmp_path}/a.db", "GITHUB_APP_ID": "1",
        "GITHUB_PRIVATE_KEY": app_key[0], "GITHUB_WEBHOOK_SECRET": "s" * 20},
        catch_exceptions=False)
    assert result.exit_code == 1
    assert "the store is SQLite" in result.output and "serve --workers N" in result.output


@pytest.mark.parametrize("url", ["mysql://u:hunter22@h/db", "postgresql://u:hunter22@[::1/db",
                                 "postgres://u:hunter22@h:port/db", "postgresql://u:hunter22@h/db?x=1"])
def test_a_bad_database_url_is_a_clear_error_without_its_password(url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = _invoke(["migrate"], url, tmp_path)
    assert result.exit_code == 1 and "DATABASE_URL=" in result.output
    assert "hunter22" not in result.output
    assert "u:***@" in result.output or "(a URL that cannot be read)" in result.output
