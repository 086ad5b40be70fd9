"""The `async-code` command: `serve` runs the service, `tasks` lists what it recorded.

This is the one place that puts the parts together: the webhook app from `app/` (or, before a
GitHub App is registered, setup mode) and, for `serve` with workers, the runner from `runner/`
(imported only then, so `tasks`, setup mode and `--workers 0` never load Docker or the model
SDK).
"""

from __future__ import annotations

import ctypes
import json
import logging
import signal
import sys
from dataclasses import replace
from functools import partial
from pathlib import Path

import click

from app import Handover, create_app, create_setup_app
from app.settings import Settings, SettingsError, load_settings
from app.setup import (JustRegistered, OperatorAccess, Setup, convert_manifest_code,
                       new_setup_token)
from app.records import TaskRecords
from app.store import Store

log = logging.getLogger(__name__)

_M_MMAP_THRESHOLD = -3  # mallopt's parameter number in glibc's malloc.h


class _RedactSecrets(logging.Filter):
    """Last line of defence: nothing that looks like a GitHub token or a known secret is logged."""

    def __init__(self, secrets: list[str]):
        super().__init__()
        import re

        self._pattern = re.compile("|".join(
            [r"gh[sopu]_[A-Za-z0-9_]{8,}"] + [re.escape(s) for s in secrets if len(s) >= 8]))

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self._pattern.sub("[redacted]", message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def configure_logging(settings: Settings, also_redact: tuple[str, ...] = ()) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s"))
    handler.addFilter(_RedactSecrets([settings.github_webhook_secret, settings.anthropic_api_key,
                                      settings.openai_api_key, settings.supabase_key,
                                      settings.database_password, *also_redact]))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    # procrastinate logs every job it starts and ends; the runner logs each task itself.
    for noisy in ("httpx", "httpx2", "httpcore", "urllib3", "waitress.queue", "procrastinate"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _interrupt(*_signal_args) -> None:
    raise KeyboardInterrupt


def _settings_for(**needs: bool) -> Settings:
    return _checked(load_settings(), **needs)


def _checked(settings: Settings, **needs: bool) -> Settings:
    problems = settings.problems(**needs)
    if problems:
        raise click.ClickException(str(SettingsError(problems)))
    return settings


@click.group()
@click.version_option(package_name="async-code")
def cli() -> None:
    """async-code: @-mention it on an issue and get a pull request."""


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(0, 64),
              help="Task execution slots; 0 records deliveries without acting on them (on "
                   "PostgreSQL, a receiver only: `async-code worker` processes run the tasks).")
def serve(host: str, port: int, workers: int) -> None:
    """Receive webhooks and run tasks; with no GitHub App yet, register one first."""
    dotenv_path = Path.cwd() / ".env"
    settings = load_settings(dotenv_path=str(dotenv_path))
    setting_up = settings.app_unregistered
    if setting_up:
        # A first run: setup mode needs neither Docker nor the model key, but a value that is
        # set and wrong is reported now rather than after registering.
        settings = _checked(settings, setup=True, agent=workers > 0)
    else:
        problems = settings.problems(webhooks=True, github=workers > 0, agent=workers > 0)
        if problems and not settings.app_credentials_complete:
            problems.append("or, to register a new GitHub App from a setup page instead, unset "
                            "GITHUB_APP_ID, GITHUB_PRIVATE_KEY_PATH, GITHUB_PRIVATE_KEY and "
                            "GITHUB_WEBHOOK_SECRET")
        if problems:
            raise click.ClickException(str(SettingsError(problems)))
    configure_logging(settings)
    store = open_store(settings, max_connections=10 + workers)
    service = _Service(store, workers, dotenv_path)

    import waitress

    if setting_up:
        token = new_setup_token()
        service.web = Handover(create_setup_app(service.setup(settings, host, token)))
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else f"[{host}]" if ":" in host else host
        base = settings.public_url.rstrip("/") if settings.public_url else f"http://{shown}:{port}"
        # The one place the token is shown: whoever opens the page owns the App it registers.
        log.info("setup mode: no GitHub App is configured; open %s/?token=%s in a browser to "
                 "register one (the address works once; deliveries are refused until then)",
                 base, token)
        configure_logging(settings, also_redact=(token,))  # and never again
    else:
        try:
            service.start(settings)
        except ServiceUnavailable as error:
            raise click.ClickException(str(error)) from None
        log.info("listening on http://%s:%d with %d execution slot(s); data in %s", host, port,
                 workers, settings.database_shown)

    _return_freed_buffers_to_the_system()
    # waitress exits on SIGINT; make SIGTERM (docker stop, systemd) do the same.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        waitress.serve(service.web, host=host, port=port, threads=8, ident="async-code",
                       _quiet=True)
    except KeyboardInterrupt:
        pass
    finally:
        service.stop()
        log.info("stopped")


class ServiceUnavailable(RuntimeError):
    """Something the runner needs (Docker) is not there; the message says what to do."""


class _Service:
    """What `serve` runs: the web app and, with workers, the runner (loaded only then, so setup
    mode and `--workers 0` never load Docker or the model SDK). Setup mode hands over to it
    once the App is registered."""

    def __init__(self, store: TaskRecords, workers: int, dotenv_path: Path):
        self.store, self.workers, self.dotenv_path = store, workers, dotenv_path
        self.runner = None
        self.web: Handover | None = None

    def setup(self, settings: Settings, listen_host: str, token: str) -> Setup:
        from app.manifest import app_yml_path

        return Setup(settings=settings, dotenv_path=self.dotenv_path,
                     app_yml=app_yml_path(Path.cwd()),
                     convert=partial(convert_manifest_code, settings.github_api_url),
                     registered=self.take_over, access=OperatorAccess(token),
                     listen_host=listen_host)

    def start(self, settings: Settings, just_registered: JustRegistered | None = None) -> None:
        """Start the runner (raises ServiceUnavailable) and serve webhooks."""
        if self.workers and settings.on_postgres:
            self.runner = start_queue_workers(settings, self.store, self.workers)
        elif self.workers:
            from runner.recovery import RECOVERY_INTERVAL, recover
            from runner.services import ServiceUnavailable as RunnerUnavailable
            from runner.services import build_services
            from runner.worker import Runner

            try:
                services = build_services(settings, self.store)
            except RunnerUnavailable as error:
                raise ServiceUnavailable(str(error)) from None
            try:
                recover(services, starting=True)
            except Exception:  # the recovery loop retries it; serving matters more
                log.exception("start-up recovery failed; it is retried every %d s", RECOVERY_INTERVAL)
            self.runner = Runner(services, self.workers)
            self.runner.start()
            for name in settings.missing_for_tasks():
                log.warning("%s is not set: each request is answered with a comment saying so, "
                            "and nothing runs until it is set and the service restarted", name)
        self._serve(create_app(settings, self.store, on_task_recorded=self._task_recorded,
                               just_registered=just_registered))

    def take_over(self, just_registered: JustRegistered) -> list[str]:
        """Setup mode registered the App and saved its settings: serve with them, no restart.
        Returns what kept that from happening, for the setup page to show."""
        settings = load_settings(dotenv_path=str(self.dotenv_path))
        problems = settings.problems(webhooks=True, github=True, agent=self.workers > 0)
        if problems:
            log.error("the registered App's settings cannot be used: %s", "; ".join(problems))
            return [f"The saved settings cannot be used yet: {'; '.join(problems)}. Fix them and "
                    "restart async-code serve."]
        configure_logging(settings)  # the new webhook secret joins the redacted values
        notices = []
        registered_slug = just_registered.registration.slug
        if settings.github_app_slug != registered_slug:
            notices.append(f"GITHUB_APP_SLUG={settings.github_app_slug} in the environment "
                           f"overrides the registered @{registered_slug} from .env: mentions of "
                           f"@{registered_slug} start nothing until it is unset.")
        try:
            self.start(settings, replace(just_registered, problems=tuple(notices)))
        except ServiceUnavailable as error:
            log.error("the runner cannot start, so tasks are recorded but not run: %s", error)
            notices.append(f"Tasks are recorded but not run until async-code serve is restarted "
                           f"with this fixed: {error}")
            self._serve(create_app(settings, self.store,
                                   just_registered=replace(just_registered, problems=tuple(notices))))
        log.info("serving webhooks as the GitHub App %s", settings.github_app_slug)
        return []

    def _serve(self, app) -> None:
        if self.web is None:
            self.web = Handover(app)
        else:
            self.web.switch_to(app)

    def _task_recorded(self) -> None:
        # On PostgreSQL the queue tells its workers itself (LISTEN/NOTIFY).
        if self.runner is not None and hasattr(self.runner, "task_recorded"):
            self.runner.task_recorded()

    def stop(self) -> None:
        if self.runner is not None:
            # The queue's workers let running tasks finish for the shutdown grace first.
            self.runner.stop(timeout=5 if not self.store_on_postgres else None)
        self.store.close()

    @property
    def store_on_postgres(self) -> bool:
        return not isinstance(self.store, Store)


def start_queue_workers(settings: Settings, store: TaskRecords, concurrency: int):
    """The job queue's workers of this process, started (raises ServiceUnavailable)."""
    from runner.queue import QueueRunner
    from runner.recovery import remove_leftovers
    from runner.services import ServiceUnavailable as RunnerUnavailable
    from runner.services import build_services

    try:
        services = build_services(settings, store)
    except RunnerUnavailable as error:
        raise ServiceUnavailable(str(error)) from None
    try:
        remove_leftovers(services)
    except Exception:  # the workers retry it; running tasks matters more
        log.exception("removing leftover sandboxes failed")
    runner = QueueRunner(services, concurrency)
    runner.start()
    for name in settings.missing_for_tasks():
        log.warning("%s is not set: each request is answered with a comment saying so, and "
                    "nothing runs until it is set and the worker restarted", name)
    return runner


@cli.command()
@click.option("--concurrency", default=2, show_default=True, type=click.IntRange(1, 64),
              help="Tasks run at once by this worker.")
def worker(concurrency: int) -> None:
    """Run tasks from the PostgreSQL job queue with this host's Docker engine (no HTTP server)."""
    settings = load_settings(dotenv_path=str(Path.cwd() / ".env"))
    if not settings.on_postgres:
        raise click.ClickException(
            f"the store is SQLite ({settings.database_path}): there, `async-code serve "
            "--workers N` runs the tasks itself. `async-code worker` takes tasks from a "
            "PostgreSQL DATABASE_URL shared with the receivers (`serve --workers 0`).")
    _checked(settings, github=True, agent=True)
    configure_logging(settings)
    store = open_store(settings, max_connections=concurrency + 4)
    try:
        runner = start_queue_workers(settings, store, concurrency)
    except ServiceUnavailable as error:
        store.close()
        raise click.ClickException(str(error)) from None
    log.info("worker running up to %d task(s) at once from %s", concurrency, settings.database_shown)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        runner.wait()
    except KeyboardInterrupt:
        log.info("stopping: no new task is taken; running ones have %s s to finish, then are "
                 "handed back", settings.shutdown_grace)
    finally:
        runner.stop()
        store.close()
        log.info("stopped")
    if runner.failure is not None:
        raise click.ClickException(f"the worker stopped: {runner.failure}")


def _return_freed_buffers_to_the_system() -> None:
    """Make glibc map buffers over 128 KiB on their own, so freeing one returns its memory.

    Otherwise each of waitress's threads keeps the largest request bodies it has seen in its
    own heap: 10,000 hostile deliveries grew the service by 40-90 MiB, with this by 5 MiB
    (bench/README.md). Elsewhere than glibc nothing changes.
    """
    try:
        ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, 128 * 1024)
    except (OSError, AttributeError):
        pass


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1))
def tasks(as_json: bool, limit: int) -> None:
    """List tasks, newest first."""
    settings = _settings_for()
    if not settings.on_postgres and not settings.database_path.exists():
        found = []
    else:
        store = open_store(settings)
        try:
            found = store.list(limit)
        finally:
            store.close()
    if as_json:
        click.echo(json.dumps([task.summary() for task in found], indent=2))
        return
    if not found:
        click.echo("no tasks yet")
        return
    for task in found:
        outcome = task.pr_url or task.error or ""
        click.echo(f"{task.id[:8]}  {task.status:<9}  {task.repo}#{task.number:<5} "
                   f"{task.requested_by:<16} {task.created_at[:19]}  {outcome}")


@cli.command()
def migrate() -> None:
    """Bring a PostgreSQL database's schema up to date (SQLite's brings itself up to date)."""
    settings = _settings_for()
    if not settings.on_postgres:
        click.echo(f"nothing to migrate: the store is SQLite ({settings.database_path}), which "
                   "brings its schema up to date itself when async-code starts")
        return
    import psycopg

    from app.migrate import MigrationError
    from app.migrate import migrate as apply_migrations
    from app.postgres_store import without_password

    try:
        applied = apply_migrations(settings.database_url)
    except MigrationError as error:
        raise click.ClickException(f"{settings.database_shown}: {error}") from None
    except psycopg.Error as error:
        raise click.ClickException(f"cannot migrate {settings.database_shown}: "
                                   f"{without_password(error, settings.database_url)}") from None
    if applied:
        click.echo(f"applied to {settings.database_shown}: {', '.join(applied)}")
    else:
        click.echo(f"{settings.database_shown} is up to date: nothing to apply")


def open_store(settings: Settings, max_connections: int = 10) -> TaskRecords:
    """The task store DATABASE_URL names, ready to use."""
    if not settings.on_postgres:
        store = Store(settings.database_path)
        store.initialise()
        return store
    from app.postgres_store import PostgresStore, StoreUnavailable

    postgres = PostgresStore(settings.database_url, max_connections=max_connections)
    try:
        postgres.initialise()
    except StoreUnavailable as error:
        postgres.close()
        raise click.ClickException(str(error)) from None
    return postgres


def main() -> None:
    cli(prog_name="async-code")
