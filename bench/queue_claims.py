"""The task queue alone: claims per second, and how soon a recorded task is claimed, on SQLite
and on PostgreSQL, with 1, 4 and 8 workers.

Usage: .venv/bin/python bench/queue_claims.py [--backend sqlite postgres] [--workers 1 4 8]
           [--tasks 400] [--trickle 100] [--interval 0.1] [--issues 0]
           [--work-ms 0] [--database-url URL]

No Docker, GitHub or model. Tasks are recorded with intake's store call (`record_delivery`) and
acknowledged with the store calls the acknowledger makes (its GitHub calls left out), and the
product's own runner takes them: on SQLite `runner.worker.Runner` (an acknowledger and N slot
threads calling `claim_next`, woken by intake in the same process), on PostgreSQL
`runner.queue.QueueRunner` (procrastinate's workers, as `async-code worker --concurrency N`).
A task's body only notes when it started and finishes the task (after `--work-ms`).

Each run has a fresh database and two phases:
- drain: `--tasks` tasks recorded and acknowledged before the workers start; claims per
  second between the first claim and the last;
- trickle: the workers idle, `--trickle` tasks recorded one every `--interval` seconds through
  the whole path (record, acknowledge, claim); latency from recorded to claimed, and from
  acknowledged (the task put in line to run) to claimed.
Each task is on an issue of its own, or with `--issues N` the tasks take turns over N issues,
where one task at a time may run (the lock contention of several requests on one issue).

PostgreSQL: a throwaway cluster on loopback with PostgreSQL's default durability, or
`--database-url`, a superuser's URL on a server where the benchmark may create databases.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import runner.queue  # noqa: E402
import runner.worker  # noqa: E402
from app.records import COMPLETED, NewTask, TaskRecords  # noqa: E402
from app.settings import Settings  # noqa: E402
from app.store import Store  # noqa: E402
from bench.postgres_server import (durability, migrated_database, postgres_server,  # noqa: E402
                                   server_version)

REPO, INSTALLATION = "acme/widgets", 1


@dataclass
class Clock:
    recorded: dict[str, float] = field(default_factory=dict)
    queued: dict[str, float] = field(default_factory=dict)
    claimed: dict[str, float] = field(default_factory=dict)
    work: float = 0.0


def acknowledge_without_github(clock: Clock) -> Callable[..., None]:
    """runner.acknowledge.acknowledge's store calls, in its order, without its GitHub calls."""

    def acknowledge(task: Any, *, store: TaskRecords, **_: Any) -> None:
        store.installation_refusal(task.installation_id, task.repo)
        store.queued_for_repo(task.repo)
        store.ahead_on_same(task.id)
        store.waiting_ahead_of(task.id)
        store.mark_queued(task.id, status_comment_id=None, check_run_id=None)
        clock.queued[task.id] = time.perf_counter()

    return acknowledge


def execute_nothing(clock: Clock) -> Callable[..., None]:
    """runner.execute.execute's place: note the start, finish the task."""

    def execute(task: Any, services: Any, **_: Any) -> None:
        clock.claimed[task.id] = time.perf_counter()
        if clock.work:
            time.sleep(clock.work)
        services.store.finish(task.id, COMPLETED)

    return execute


def new_task(number: int, comment_id: int) -> NewTask:
    return NewTask(trigger="comment", repo=REPO, installation_id=INSTALLATION, number=number,
                   comment_id=comment_id, instruction="add retries to the fetch client",
                   requested_by="alice", requested_by_id=9)


def record(store: TaskRecords, number: int, comment_id: int) -> str:
    task = store.record_delivery(uuid.uuid4().hex, "issue_comment", "created",
                                 new_task(number, comment_id))
    return task.id


def wait_for(clock: Clock, count: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while len(clock.claimed) < count:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def percentiles(values: list[float]) -> str:
    if not values:
        return "—"
    values = sorted(values)
    p95 = values[min(len(values) - 1, int(0.95 * len(values)))]
    return f"{statistics.median(values):.1f} / {p95:.1f} / {values[-1]:.1f}"


@dataclass
class Result:
    backend: str
    workers: int
    issues: str
    claims_per_second: float | None
    first_claim_ms: float | None
    recorded_to_claimed: list[float]
    queued_to_claimed: list[float]
    missing: int


def run_once(backend: str, store: TaskRecords, workers: int, issues: int,
             args: argparse.Namespace) -> Result:
    clock = Clock(work=args.work_ms / 1000)
    settings = Settings(anthropic_api_key="unused")  # no setting a task needs is missing
    services = SimpleNamespace(settings=settings, store=store, github=None, docker=None)
    # The runner's own loops, with the task bodies (and Docker clean-ups) left out.
    for module in (runner.worker, runner.queue):
        module.acknowledge = acknowledge_without_github(clock)
        module.execute = execute_nothing(clock)
    runner.worker.recover = lambda *a, **k: None
    runner.queue.remove_leftovers = lambda *a, **k: None

    def number(i: int, base: int) -> int:
        return base + (i % issues if issues else i)

    # Drain: every task in line before the workers start.
    ids = [record(store, number(i, 1), i + 1) for i in range(args.tasks)]
    for task_id in ids:
        store.mark_queued(task_id, status_comment_id=None, check_run_id=None)
    if backend == "postgres":
        # Acknowledged here already: their acknowledge jobs would only find that out.
        with store._connect() as db:
            db.execute("DELETE FROM procrastinate_jobs WHERE queue_name = ?",
                       (runner.queue.ACKNOWLEDGE_QUEUE,))
        workers_of = runner.queue.QueueRunner(services, workers)  # type: ignore[arg-type]
    else:
        workers_of = runner.worker.Runner(services, workers)  # type: ignore[arg-type]
    started = time.perf_counter()
    workers_of.start()
    try:
        drained = wait_for(clock, len(ids), args.timeout)
        times = sorted(clock.claimed[i] for i in ids if i in clock.claimed)
        rate = (len(times) - 1) / (times[-1] - times[0]) if drained and len(times) > 1 else None
        first = (times[0] - started) * 1000 if times else None

        # Trickle: the workers idle; each task goes the whole way.
        time.sleep(0.5)
        base = args.tasks + 1_000_000
        wake = getattr(workers_of, "task_recorded", lambda: None)  # intake's call on SQLite
        trickle = []
        begin = time.perf_counter()
        for i in range(args.trickle):
            task_id = record(store, number(i, base), base + i)
            clock.recorded[task_id] = time.perf_counter()
            wake()
            trickle.append(task_id)
            pause = begin + (i + 1) * args.interval - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        wait_for(clock, len(ids) + len(trickle), args.timeout)
    finally:
        workers_of.stop(60)
    done = [t for t in trickle if t in clock.claimed]
    return Result(
        backend, workers, f"{issues}" if issues else "one each", rate, first,
        [(clock.claimed[t] - clock.recorded[t]) * 1000 for t in done],
        [(clock.claimed[t] - clock.queued[t]) * 1000 for t in done if t in clock.queued],
        len(ids) + len(trickle) - len(clock.claimed))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", nargs="+", choices=["sqlite", "postgres"],
                        default=["sqlite", "postgres"])
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 4, 8])
    parser.add_argument("--tasks", type=int, default=400, help="drained, per run")
    parser.add_argument("--trickle", type=int, default=100, help="recorded one at a time, per run")
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between trickled tasks")
    parser.add_argument("--issues", type=int, default=0,
                        help="spread the tasks over this many issues (0: an issue each)")
    parser.add_argument("--work-ms", type=float, default=0.0, help="how long a task's body takes")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per phase, at most")
    parser.add_argument("--database-url", help="a superuser's URL (default: a throwaway cluster)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    results: list[Result] = []
    print(f"drain {args.tasks} tasks, trickle {args.trickle} one every {args.interval * 1000:g} ms, "
          f"task body {args.work_ms:g} ms")
    if "sqlite" in args.backend:
        import sqlite3
        print(f"SQLite {sqlite3.sqlite_version}, WAL")
        for workers in args.workers:
            with tempfile.TemporaryDirectory() as data:
                store = Store(Path(data) / "async-code.db")
                store.initialise()
                results.append(run_once("sqlite", store, workers, args.issues, args))
                print(row(results[-1]), flush=True)
    if "postgres" in args.backend:
        from app.postgres_store import PostgresStore
        with postgres_server(args.database_url) as server:
            print(f"PostgreSQL {server_version(server)}, {durability(server)}")
            for workers in args.workers:
                with migrated_database(server) as url:
                    store = PostgresStore(url, max_connections=10 + workers)
                    store.initialise()
                    try:
                        results.append(run_once("postgres", store, workers, args.issues, args))
                    finally:
                        store.close()
                print(row(results[-1]), flush=True)
    print()
    print("| store | workers | issues | drain: claims/s | start → first claim | "
          "trickle: recorded → claimed, ms (median / p95 / max) | acknowledged → claimed, ms |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for result in results:
        print(row(result))
    lost = sum(r.missing for r in results)
    if lost:
        sys.exit(f"{lost} tasks were not claimed within --timeout")


def row(r: Result) -> str:
    rate = f"{r.claims_per_second:.0f}" if r.claims_per_second else "timed out"
    first = f"{r.first_claim_ms:.0f} ms" if r.first_claim_ms is not None else "—"
    name = "SQLite" if r.backend == "sqlite" else "PostgreSQL"
    return (f"| {name} | {r.workers} | {r.issues} | {rate} | {first} | "
            f"{percentiles(r.recorded_to_claimed)} | {percentiles(r.queued_to_claimed)} |")


if __name__ == "__main__":
    main()
