"""`async-code migrate`: bring a PostgreSQL database's schema `async_code` up to date.

The migrations are the `.sql` files shipped in `app/migrations/postgres/`, applied in the order
of their names, each recorded with a checksum of its text. One run is one transaction under an
advisory lock, so two runs at once apply each file once, and a run that fails changes nothing.
Every run also takes the schema's privileges away from PUBLIC and from Supabase's Data API
roles (anon, authenticated), whichever of them exist by then.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import psycopg

SCHEMA = "async_code"
# pg_advisory_xact_lock's key for migrating: any constant no other lock of the database uses.
_MIGRATE_LOCK = 0x6173796E63636F64  # "asynccod"
_RECORD = """
CREATE TABLE IF NOT EXISTS async_code.schema_migrations (
    name       text PRIMARY KEY,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE async_code.schema_migrations ENABLE ROW LEVEL SECURITY;
"""
_API_ROLES = ("anon", "authenticated")


class MigrationError(Exception):
    """The database's schema cannot be brought up to date; the message says why and what to do."""


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def product_migrations() -> list[Migration]:
    """The task store's migrations, shipped in the package, in the order they apply."""
    folder = resources.files("app") / "migrations" / "postgres"
    return [Migration(entry.name, entry.read_text(encoding="utf-8"))
            for entry in sorted(folder.iterdir(), key=lambda entry: entry.name)
            if entry.name.endswith(".sql")]


# The job queue's tables: row level security with no policy, like the product's own. The
# service connects as the role that migrated (the tables' owner), which row level security
# does not hold back without FORCE; it is there so a privilege granted by mistake to another
# role (Supabase's anon, authenticated) still shows no row.
_ENGINE_TABLES = ("procrastinate_workers", "procrastinate_jobs", "procrastinate_periodic_defers",
                  "procrastinate_events")
ENGINE_SCHEMA_NAME = "engine/procrastinate-3.10.0-schema.sql"
# The queue's functions and triggers name its tables unqualified: pinned to the schema, they
# work from any connection (an operator's psql too), not only those whose search_path is set.
_PINNED_SEARCH_PATH = f"""
DO $$
DECLARE f regprocedure;
BEGIN
    FOR f IN SELECT p.oid FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = '{SCHEMA}' AND p.proname LIKE 'procrastinate%'
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = {SCHEMA}, pg_catalog', f);
    END LOOP;
END
$$;
"""


def _package_folder(package: str) -> Path:
    """Where an installed package's files are, found without importing it: a receiver never
    loads the job queue's worker, only reads its schema's checksum."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MigrationError(f"the package {package} is not installed: reinstall async-code")
    return Path(list(spec.submodule_search_locations)[0])


def engine_schemas() -> list[Migration]:
    """The schemas of libraries the service builds on, applied after the product's own and
    recorded the same way: the job queue's (procrastinate, pinned in pyproject.toml), made in
    schema async_code like everything else."""
    schema = (_package_folder("procrastinate") / "sql" / "schema.sql").read_text(encoding="utf-8")
    locked = "".join(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;\n" for table in _ENGINE_TABLES)
    return [Migration(ENGINE_SCHEMA_NAME, schema + "\n-- async-code: no rows for other roles\n"
                      + locked + _PINNED_SEARCH_PATH)]


def queue_migrations() -> list[Migration]:
    """The product's own additions to the job queue's schema (`queue/` in the migrations
    folder), applied after the queue's schema they build on."""
    folder = resources.files("app") / "migrations" / "postgres" / "queue"
    return [Migration(f"queue/{entry.name}", entry.read_text(encoding="utf-8"))
            for entry in sorted(folder.iterdir(), key=lambda entry: entry.name)
            if entry.name.endswith(".sql")]


def all_migrations() -> list[Migration]:
    return product_migrations() + engine_schemas() + queue_migrations()


def migrate(conninfo: str, wanted: list[Migration] | None = None) -> list[str]:
    """Apply what the database lacks of `wanted` (all the migrations this version has);
    returns the names applied, none when it was up to date. Raises MigrationError when a file
    applied before has changed or the database was migrated by a newer async-code; then
    nothing is applied."""
    wanted = all_migrations() if wanted is None else wanted
    with psycopg.connect(conninfo, autocommit=False) as db:
        with db.transaction():
            db.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
            # Created only when missing: an owner of the schema needs no CREATE on the database.
            if db.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (SCHEMA,)).fetchone() is None:
                db.execute(f"CREATE SCHEMA {SCHEMA}")
            _lock_down(db)
            db.execute(_RECORD)
            applied = dict(db.execute("SELECT name, checksum FROM async_code.schema_migrations").fetchall())
            problems = differences(applied, wanted)
            if problems:
                raise MigrationError("; ".join(problems))
            db.execute(f"SET LOCAL search_path TO {SCHEMA}")
            done = []
            for migration in wanted:
                if migration.name in applied:
                    continue
                db.execute(migration.sql)
                db.execute("INSERT INTO async_code.schema_migrations (name, checksum) VALUES (%s, %s)",
                           (migration.name, migration.checksum))
                done.append(migration.name)
            _lock_down(db)  # what the migrations created, too
    return done


def differences(applied: dict[str, str], wanted: list[Migration]) -> list[str]:
    """Why the applied migrations (name → checksum) cannot be brought to `wanted`."""
    problems = []
    for migration in wanted:
        if migration.name in applied and applied[migration.name] != migration.checksum:
            problems.append(f"the migration {migration.name} was changed after it was applied to "
                            "this database: restore the file as it was and put the change in a "
                            "new migration")
    unknown = sorted(set(applied) - {migration.name for migration in wanted})
    if unknown:
        problems.append(f"this database was migrated by a newer async-code (it has "
                        f"{', '.join(unknown)}): upgrade async-code")
    return problems


def _lock_down(db: psycopg.Connection) -> None:
    """Nobody but the schema's owner (and superusers) may use it: no privilege for PUBLIC, nor
    for the roles Supabase's Data API answers as."""
    roles = ["PUBLIC"] + [row[0] for row in db.execute(
        "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (list(_API_ROLES),)).fetchall()]
    for role in roles:
        grantee = role if role == "PUBLIC" else f'"{role}"'
        for kind in ("SCHEMA", "ALL TABLES IN SCHEMA", "ALL SEQUENCES IN SCHEMA",
                     "ALL FUNCTIONS IN SCHEMA"):
            db.execute(f"REVOKE ALL ON {kind} {SCHEMA} FROM {grantee}")
