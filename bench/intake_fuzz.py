"""Intake under hostile deliveries: the fuzz of tests/test_intake_fuzz.py at length, against a
real `async-code serve --workers 0` on loopback, with the service's resident memory sampled.

Usage: .venv/bin/python bench/intake_fuzz.py [--deliveries 10000] [--seed 1] [--sample-every 500]
                                            [--service-env NAME=VALUE ...]

Sends the deliveries one at a time over a kept-alive connection and prints the answers by
status, every delivery answered other than it must be, the tasks created against the commands
sent, the time taken, and the service's RSS at the start, its peak and at the end. Exits 1 when
any answer or task is wrong.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import secrets
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from app.store import Store  # noqa: E402
from tests.intake_fuzz import (TASK, DeliveryGenerator, problem_with, rss_kib,  # noqa: E402
                               running_service, send, write_for_runner)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deliveries", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sample-every", type=int, default=500)
    parser.add_argument("--service-env", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable for the service, e.g. MALLOC_MMAP_THRESHOLD_=131072")
    args = parser.parse_args()
    service_env = dict(setting.split("=", 1) for setting in args.service_env)

    secret = secrets.token_hex(16)
    statuses: collections.Counter[int] = collections.Counter()
    problems, commands, samples = [], {}, []
    body_bytes = 0
    with running_service(secret, service_env) as service:
        pid = service.process.pid
        samples.append((0, rss_kib(pid)))
        connection = service.connect()
        store = Store(service.database)
        generator = DeliveryGenerator(args.seed)
        started = time.perf_counter()
        for n, delivery in enumerate(itertools.islice(generator, args.deliveries), 1):
            write_for_runner(store, delivery)
            answer = send(connection, delivery, secret)
            generator.answered(delivery, answer)
            statuses[answer.status] += 1
            body_bytes += len(delivery.body)
            problem = problem_with(answer, delivery)
            if problem:
                problems.append(f"{delivery.description}: {problem}")
            if delivery.expected is TASK:
                commands[delivery.guid] = delivery.task
            if n % args.sample_every == 0:
                samples.append((n, rss_kib(pid)))
        elapsed = time.perf_counter() - started
        connection.close()
        tasks = {task.delivery_guid: (task.repo, task.comment_id) for task in store.list()}

    start_kib, end_kib = samples[0][1], samples[-1][1]
    peak_at, peak_kib = max(samples, key=lambda sample: sample[1])
    mib = lambda kib: kib / 1024  # noqa: E731
    print(f"deliveries: {args.deliveries} (seed {args.seed}), {body_bytes / 2**20:.0f} MiB of bodies"
          + (f"; service environment {service_env}" if service_env else ""))
    print("answers: " + ", ".join(f"{status}: {count}" for status, count in sorted(statuses.items())))
    server_errors = sum(count for status, count in statuses.items() if status >= 500)
    print(f"5xx answers: {server_errors}; wrong answers: {len(problems)}")
    print(f"tasks: {len(tasks)} created, {len(commands)} commands sent, "
          f"{'the same deliveries' if tasks == commands else 'NOT the same deliveries'}")
    print(f"time: {elapsed:.1f} s, {elapsed / args.deliveries * 1000:.2f} ms per delivery")
    print(f"service RSS MiB: {mib(start_kib):.1f} at start, peak {mib(peak_kib):.1f} after {peak_at}, "
          f"{mib(end_kib):.1f} at the end (growth {mib(end_kib - start_kib):+.1f}, "
          f"peak {mib(peak_kib - start_kib):+.1f})")
    print("RSS samples MiB: " + " ".join(f"{n}:{mib(kib):.1f}" for n, kib in samples))
    for problem in problems[:20]:
        print("  " + problem)
    if problems or tasks != commands:
        sys.exit(1)


if __name__ == "__main__":
    main()
