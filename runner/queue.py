"""The runner on PostgreSQL: tasks are jobs of procrastinate's queue, taken by workers on any
number of hosts sharing the database.

A recorded task has an `acknowledge` job, deferred in the transaction that records it
(app/postgres_store.py); once acknowledged it has a `run` job locked on its issue or pull
request, so one task at a time runs there whichever worker takes it. A process runs two of the
queue's workers on one event loop in a thread of its own:

- "acknowledge": acknowledge jobs and the periodic stalled-job pass, so a new request gets its
  👀 and "queued" comment at once even while every execution slot is busy;
- "tasks": run jobs, `concurrency` at a time. The jobs are sync and run in the loop's threads.

Claims, heartbeats and locks are the queue's. A worker that stops beating for
ASYNC_CODE_LEASE_SECONDS counts as dead; the stalled-job pass starts its tasks again, up to
ASYNC_CODE_MAX_ATTEMPTS starts, then fails them and says why. A worker asked to stop takes no
new job, lets its tasks run for ASYNC_CODE_SHUTDOWN_GRACE seconds, then hands them back: the
sandbox stops, the status comment says so, and the queue retries the job elsewhere.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import procrastinate
import psycopg
from procrastinate import exceptions as queue_errors
from procrastinate.job_context import AbortReason, JobContext
from procrastinate.jobs import Job, Status
from procrastinate.manager import JobManager
from procrastinate.worker import Worker

from app.postgres_store import (ACKNOWLEDGE_JOB, ACKNOWLEDGE_QUEUE, RUN_JOB, RUN_QUEUE,
                                PostgresStore)
from app.migrate import SCHEMA
from app.store import CANCELLED, FAILED, FINISHED, PENDING, RUNNING, Task
from runner import unconfigured
from runner.acknowledge import acknowledge
from runner.cancel_watch import CANCEL, SHUTDOWN, HandedBack
from runner.execute import execute
from runner.recovery import (_fail_interrupted, gave_up, remove_leftovers, say_reattempted,
                             worker_identity)
from runner.sandbox import ATTEMPT_LABEL, task_containers
from runner.services import Services
from runner.text import github_web_url
from runner.worker import guard

log = logging.getLogger(__name__)

STALLED_JOB = "reattempt_stalled"
STALLED_EVERY = "* * * * * */2"  # cron with seconds: every 2 s (a pass finding nothing is a query)
ACKNOWLEDGERS = 2
FETCH_POLL = 1.0  # a retried job is found by polling (only new jobs are announced)
LEFTOVER_EVERY = 30.0
NOT_ACKNOWLEDGED = ("the workers that took it stopped each time before they could answer it; "
                    "ask again to retry.")


class _HandBackRetry(procrastinate.BaseRetryStrategy):
    """A run job handed back at shutdown waits again at once; any other error is the task's
    own end, already recorded (runner.worker.guard), so it is not retried."""

    def get_retry_decision(self, *, exception: BaseException, job: Job):
        if isinstance(exception, HandedBack):
            return procrastinate.RetryDecision(retry_in={"seconds": 0})
        return None


def _abort_reason(context: JobContext) -> str | None:
    reason = context.abort_reason()
    if reason is AbortReason.SHUTDOWN:
        return SHUTDOWN
    return CANCEL if reason is AbortReason.USER_REQUEST else None


async def _configure(conn: Any) -> None:
    await conn.execute(f"SET search_path TO {SCHEMA}")
    await conn.commit()


def build_app(services: Services, *, pool_size: int = 4) -> procrastinate.App:
    """The queue's app with async-code's jobs, on the database of `services.store`; its
    connections work in schema async_code, where `async-code migrate` put the queue's tables."""
    store = services.store
    assert isinstance(store, PostgresStore), "the job queue runs on PostgreSQL only"
    connector = procrastinate.PsycopgConnector(
        conninfo=store.conninfo, configure=_configure, min_size=1, max_size=pool_size,
        kwargs={"connect_timeout": 10}, name="async-code-queue")
    app = procrastinate.App(connector=connector)

    @app.task(name=ACKNOWLEDGE_JOB, queue=ACKNOWLEDGE_QUEUE)
    def acknowledge_job(task_id: str) -> None:
        acknowledge_task(services, task_id)

    @app.task(name=RUN_JOB, queue=RUN_QUEUE, pass_context=True, retry=_HandBackRetry())
    def run_job(context: JobContext, task_id: str) -> None:
        run_task(services, task_id, abort_reason=lambda: _abort_reason(context))
        if context.should_abort():  # cancelled: the job ends as aborted, not succeeded
            raise queue_errors.JobAborted

    @app.periodic(cron=STALLED_EVERY)
    @app.task(name=STALLED_JOB, queue=ACKNOWLEDGE_QUEUE, lock=STALLED_JOB,
              queueing_lock=STALLED_JOB, pass_context=True)
    async def reattempt_stalled_job(context: JobContext, timestamp: int) -> None:
        await reattempt_stalled(context.app.job_manager, services)

    return app


def acknowledge_task(services: Services, task_id: str) -> None:
    """The acknowledge job: answer the request once (a re-attempted job finds it answered)."""
    store, settings = services.store, services.settings
    task = store.get(task_id)
    if task is None or task.status != PENDING or task.acknowledged_at is not None:
        return
    guard(services, task, lambda: acknowledge(
        task, github=services.github, store=store, slug=settings.github_app_slug,
        max_queue=settings.max_queue_per_repo, trigger_label=settings.trigger_label,
        web_url=github_web_url(settings.github_api_url), settings=settings))


def run_task(services: Services, task_id: str, *,
             abort_reason: Callable[[], str | None]) -> None:
    """The run job: one more attempt at the task, unless it was cancelled or has ended."""
    store: PostgresStore = services.store  # type: ignore[assignment]
    task = store.start_attempt(task_id, worker_identity())
    if task is None:
        _end_if_cancelled(services, task_id)
        return
    if task.attempt > 1:
        _remove_sandbox_of(services, task)  # an earlier attempt's, if it ran on this engine
    log.info("task %s started (attempt %d) on %s", task.id, task.attempt,
             threading.current_thread().name)
    if missing := services.settings.missing_for_tasks():
        guard(services, task, lambda: unconfigured.decline(task, services, missing))
        return
    guard(services, task, lambda: execute(task, services, abort_reason=abort_reason))


def _end_if_cancelled(services: Services, task_id: str) -> None:
    """A task with nothing to run because it was cancelled after a worker let it go (handed back,
    or gone): it ends cancelled here, so nothing waits for it for ever."""
    task = services.store.get(task_id)
    if task is not None and task.status not in FINISHED and task.cancel_requested_by:
        _fail_interrupted(services, task, f"cancelled by @{task.cancel_requested_by}",
                          outcome=CANCELLED)


def _remove_sandbox_of(services: Services, task: Task) -> None:
    try:
        for container in task_containers(services.docker, services.instance, task.id):
            if (container.get("Labels") or {}).get(ATTEMPT_LABEL) == str(task.attempt):
                continue
            services.docker.api.remove_container(container["Id"], force=True)
            log.info("task %s: removed the sandbox of an earlier attempt", task.id)
    except Exception:
        log.exception("task %s: could not remove an earlier attempt's sandbox", task.id)


async def reattempt_stalled(job_manager: JobManager, services: Services) -> None:
    """Start again the tasks of workers silent for longer than the lease, or fail those started
    ASYNC_CODE_MAX_ATTEMPTS times already. The queue moves each job first: a job another
    pass has moved already is left alone."""
    settings = services.settings
    for job in await job_manager.get_stalled_jobs(seconds_since_heartbeat=settings.lease):
        task_id = job.task_kwargs.get("task_id")
        task = await asyncio.to_thread(services.store.get, task_id) if task_id else None
        unfinished = task is not None and task.status not in FINISHED
        try:
            if job.task_name == RUN_JOB and unfinished and task.job_id != job.id:
                # A job the task no longer runs by (an earlier attempt's): nothing to start.
                await job_manager.finish_job(job, Status.FAILED, delete_job=False)
            elif job.task_name == RUN_JOB and unfinished and task.status == RUNNING:
                if task.cancel_requested_by:
                    # Its worker stopped after a cancel: it ends cancelled, not attempted again.
                    await job_manager.finish_job(job, Status.FAILED, delete_job=False)
                    log.warning("task %s: its worker stopped after a cancel; ending it", task.id)
                    await asyncio.to_thread(_fail_interrupted, services, task,
                                            f"cancelled by @{task.cancel_requested_by}",
                                            outcome=CANCELLED)
                elif task.counted_attempts >= settings.max_attempt_count:
                    await job_manager.finish_job(job, Status.FAILED, delete_job=False)
                    log.warning("task %s: its worker stopped during attempt %d of %d; failing it",
                                task.id, task.counted_attempts, settings.max_attempt_count)
                    await asyncio.to_thread(_fail_interrupted, services, task,
                                            gave_up(task.counted_attempts,
                                                    settings.max_attempt_count))
                elif await asyncio.to_thread(services.store.reattempt, task.id, task.attempt,
                                             job.id):
                    log.warning("task %s: its worker stopped; re-attempt %d of %d", task.id,
                                task.counted_attempts + 1, settings.max_attempt_count)
                    await asyncio.to_thread(say_reattempted, services, task)
            elif job.task_name == ACKNOWLEDGE_JOB and unfinished \
                    and job.attempts + 1 >= settings.max_attempt_count:
                # Its acknowledgers keep dying on it: a task that stops every worker taking it.
                await job_manager.finish_job(job, Status.FAILED, delete_job=False)
                log.warning("task %s: %d workers stopped while acknowledging it; failing it",
                            task.id, job.attempts + 1)
                await asyncio.to_thread(services.store.finish, task.id, FAILED,
                                        error=NOT_ACKNOWLEDGED)
            elif job.task_name in (RUN_JOB, ACKNOWLEDGE_JOB) and unfinished:
                # Taken but not started (or an acknowledgement cut short): the same job again.
                await job_manager.retry_job(job)
            else:  # nothing left to do for it: the task ended, or it was a pass of a dead worker
                await job_manager.finish_job(job, Status.FAILED, delete_job=False)
        except (queue_errors.ConnectorException, psycopg.Error) as error:
            log.info("job %s was moved by someone else meanwhile: %s", job.id, error)
        except Exception:  # one job's trouble must not stop the rest of the pass
            log.exception("job %s: the stalled-job pass could not move it", job.id)


class QueueRunner:
    """This process's workers of the queue: their own thread and event loop, started by
    `start`, stopped by `stop` (which lets running tasks finish for the shutdown grace, then
    hands them back). Signals are the caller's to handle."""

    def __init__(self, services: Services, concurrency: int):
        self._services, self._concurrency = services, concurrency
        self.app = build_app(services, pool_size=concurrency + ACKNOWLEDGERS + 4)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._workers: list[Worker] = []
        self._ready = threading.Event()
        self._stopping = threading.Event()
        # Waited on rather than joining the thread: a join cut short by a signal can leave the
        # thread looking finished while it still runs.
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="queue", daemon=True)
        self.failure: BaseException | None = None

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(30)
        if self.failure is not None:
            raise self.failure

    def wait(self) -> None:
        """Until the workers stop (asked to, or because they failed)."""
        while not self._done.wait(0.5):
            pass

    def stop(self, timeout: float | None = None) -> None:
        self._stopping.set()
        if self._loop is not None:
            for worker in self._workers:
                try:
                    self._loop.call_soon_threadsafe(worker.stop)
                except RuntimeError:  # the loop has ended already
                    break
        self._done.wait(timeout)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as error:  # noqa: BLE001 - reported to whoever waits on it
            log.exception("the job queue's workers failed")
            self.failure = error
        finally:
            self._ready.set()
            self._done.set()

    def _worker(self, name: str, queue: str, concurrency: int) -> Worker:
        settings = self._services.settings
        return Worker(self.app, queues=[queue], name=name, concurrency=concurrency,
                      install_signal_handlers=False, fetch_job_polling_interval=FETCH_POLL,
                      abort_job_polling_interval=FETCH_POLL,
                      update_heartbeat_interval=settings.lease / 4,
                      stalled_worker_timeout=settings.lease,
                      shutdown_graceful_timeout=settings.shutdown_grace_seconds,
                      # A task's row is its record; the queue keeps only runs and failures.
                      delete_jobs="successful" if queue == ACKNOWLEDGE_QUEUE else None)

    async def _main(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        # Sync jobs run in the loop's default executor: room for every slot at once, and the
        # acknowledgers besides.
        loop.set_default_executor(ThreadPoolExecutor(
            max_workers=self._concurrency + ACKNOWLEDGERS + 2, thread_name_prefix="job"))
        async with self.app.open_async():
            self._workers = [self._worker("tasks", RUN_QUEUE, self._concurrency),
                             self._worker("acknowledge", ACKNOWLEDGE_QUEUE, ACKNOWLEDGERS)]
            runs = [asyncio.create_task(worker.run()) for worker in self._workers]
            leftovers = asyncio.create_task(self._remove_leftovers())
            self._ready.set()
            if self._stopping.is_set():
                for worker in self._workers:
                    worker.stop()
            try:
                await asyncio.gather(*runs)
            finally:
                leftovers.cancel()
        log.info("job queue: the workers stopped (%d task slots)", self._concurrency)

    async def _remove_leftovers(self) -> None:
        # Containers and trees of this host no unfinished task owns (a worker killed here).
        while True:
            try:
                await asyncio.to_thread(remove_leftovers, self._services)
            except Exception:
                log.exception("removing leftovers failed")
            await asyncio.sleep(LEFTOVER_EVERY)
