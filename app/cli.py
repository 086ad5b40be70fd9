"""The `async-code` command: `serve` runs the service, `tasks` lists what it recorded.

This is the one place that puts the parts together: the webhook app from `app/` and, for
`serve` with workers, the runner from `runner/` (imported only then, so `tasks` and
`--workers 0` never load Docker or the model SDK).
"""

from __future__ import annotations

import ctypes
import json
import logging
import signal
import sys

import click

from app.settings import Settings, SettingsError, load_settings
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


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s"))
    handler.addFilter(_RedactSecrets([settings.github_webhook_secret, settings.anthropic_api_key]))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for noisy in ("httpx", "httpx2", "httpcore", "urllib3", "waitress.queue"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _interrupt(*_signal_args) -> None:
    raise KeyboardInterrupt


def _settings_for(**needs: bool) -> Settings:
    settings = load_settings()
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
              help="Task execution slots; 0 records deliveries without acting on them.")
def serve(host: str, port: int, workers: int) -> None:
    """Receive webhooks and run tasks."""
    settings = _settings_for(webhooks=True, github=workers > 0, agent=workers > 0)
    configure_logging(settings)
    store = Store(settings.database_path)
    store.initialise()

    runner = None
    if workers:
        from runner.services import ServiceUnavailable, build_services
        from runner.recovery import RECOVERY_INTERVAL, recover
        from runner.worker import Runner

        try:
            services = build_services(settings, store)
        except ServiceUnavailable as error:
            raise click.ClickException(str(error)) from None
        try:
            recover(services, starting=True)
        except Exception:  # the recovery loop retries it; serving matters more
            log.exception("start-up recovery failed; it is retried every %d s", RECOVERY_INTERVAL)
        runner = Runner(services, workers)
        runner.start()
        for name in settings.missing_for_tasks():
            log.warning("%s is not set: each request is answered with a comment saying so, "
                        "and nothing runs until it is set and the service restarted", name)

    import waitress

    from app import create_app

    _return_freed_buffers_to_the_system()
    # waitress exits on SIGINT; make SIGTERM (docker stop, systemd) do the same.
    signal.signal(signal.SIGTERM, _interrupt)
    log.info("listening on http://%s:%d with %d execution slot(s); data in %s", host, port,
             workers, settings.database_path)
    try:
        wake_runner = runner.task_recorded if runner else (lambda: None)
        waitress.serve(create_app(settings, store, on_task_recorded=wake_runner), host=host, port=port, threads=8,
                       ident="async-code", _quiet=True)
    except KeyboardInterrupt:
        pass
    finally:
        if runner:
            runner.stop(timeout=5)
        log.info("stopped")


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
    store = Store(settings.database_path)
    if not settings.database_path.exists():
        found = []
    else:
        store.initialise()
        found = store.list(limit)
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


def main() -> None:
    cli(prog_name="async-code")
