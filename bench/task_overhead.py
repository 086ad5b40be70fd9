"""What the runner itself costs per task, model time excluded.

Usage: .venv/bin/python bench/task_overhead.py [--tasks 10] [--workers 1]

Runs the real service against the loopback fakes of GitHub and the Messages API (the same
ones the tests use) and the test sandbox image on the local Docker engine. Each task makes one
shell call in its sandbox and one file edit, so a pull request is opened: the figures cover
acknowledgement, token minting, clone, container start and removal, two model round trips on
loopback, commit, push and the pull request. Needs what `scripts/test` sets up.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from service_harness import running_service  # noqa: E402

from tests.fakes.anthropic import Final, ToolCall, Turn  # noqa: E402


def parse_time(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    with running_service(workers=args.workers) as service:
        for n in range(args.tasks):
            service.model.add_script(f"bench task {n}\n", [
                Turn([ToolCall("bash", {"command": "ls"})]),
                Turn([ToolCall("edit_file", {"command": "create", "path": f"note_{n}.txt",
                                             "file_text": "hello\n"})]),
                Final(f"Add note {n}"),
            ])
        started = time.monotonic()
        for n in range(args.tasks):
            service.comment(f"@async-code bench task {n}\n", number=100 + n, comment_id=n + 1)
        tasks = service.wait_for_all(args.tasks)
        wall = time.monotonic() - started

    failed = [t for t in tasks if t.status != "completed" or not t.pr_url]
    assert not failed, [t.error for t in failed]
    run_times = sorted(parse_time(t.finished_at) - parse_time(t.started_at) for t in tasks)
    waits = sorted(parse_time(t.acknowledged_at) - parse_time(t.created_at) for t in tasks)
    print(f"tasks: {args.tasks}, workers: {args.workers}, all opened a pull request")
    print(f"per task, claim to done: median {statistics.median(run_times):.2f} s, "
          f"max {run_times[-1]:.2f} s")
    print(f"delivery to acknowledgement: median {statistics.median(waits):.2f} s, max {waits[-1]:.2f} s")
    print(f"wall clock for all: {wall:.2f} s ({args.tasks / wall * 60:.1f} tasks/min)")


if __name__ == "__main__":
    main()
