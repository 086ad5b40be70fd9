"""The service's memory while one task floods it, each flood against the cap meant to hold it.

Usage: .venv/bin/python bench/runner_memory.py [--entries 200000] [--file-mb 2048] [--stdout-mb 1024]

Runs the real service (bench/service_harness.py) with one execution slot and one task whose
agent, in the sandbox:

1. creates a directory of `--entries` files with long names and views it with the file tool
   (caps: a view reads at most 1,000 names and answers at most 30,000 characters; reading the
   tree afterwards stops at the first new file past ASYNC_CODE_MAX_CHANGED_FILES, 1,000);
2. writes a `--file-mb` MB file into the work tree (cap: files over GitHub's 100 MB limit are
   left out unread, and the disk watch stops trees over ASYNC_CODE_MAX_TREE_BYTES);
3. prints `--stdout-mb` MB to stdout (cap: command output is streamed through a 30,000
   character window).

It samples the service's resident memory (VmRSS) every 50 ms and reports its baseline (after
start-up and a warm-up task) and peak per step. Needs what `scripts/test` sets up.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from service_harness import running_service  # noqa: E402

from tests.fakes.anthropic import Final, ToolCall, Turn  # noqa: E402


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Sampler:
    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self.peak = max(self.peak, rss_kib(self.pid))
            except OSError:
                return

    def __enter__(self) -> Sampler:
        self.peak = rss_kib(self.pid)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


def run_task(service, number: int, instruction: str, steps: list) -> tuple[str, int]:
    service.model.add_script(instruction, steps)
    with Sampler(service.process.pid) as sampler:
        service.comment(f"@async-code {instruction}", number=number, comment_id=number)
        [task] = [t for t in service.wait_for_all(number) if t.number == number]
    return task.status + (f" ({task.error})" if task.error else ""), sampler.peak


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--file-mb", type=int, default=2048)
    parser.add_argument("--stdout-mb", type=int, default=1024)
    args = parser.parse_args()
    long_name = "x" * 120

    # Default limits, except room in the tree for the big file: the point is what the caps hold.
    settings = {"ASYNC_CODE_MAX_TREE_BYTES": f"{args.file_mb + 1024}m", "ASYNC_CODE_TASK_TIMEOUT": "3600"}
    with running_service(workers=1, settings=settings) as service:
        run_task(service, 1, "warm up", [Turn([ToolCall("bash", {"command": "true"})]), Final("ok")])
        baseline = rss_kib(service.process.pid)
        results = []
        steps = {
            f"list a directory of {args.entries:,} entries": [
                Turn([ToolCall("bash", {"timeout": 600, "command":
                    f"mkdir many && cd many && seq {args.entries} | sed 's/$/-{long_name}/' | xargs touch"})]),
                Turn([ToolCall("edit_file", {"command": "view", "path": "many"})]),
                Turn([ToolCall("edit_file", {"command": "view", "path": "."})]),
                Final("Listed."),
            ],
            f"write a {args.file_mb:,} MB file": [
                Turn([ToolCall("bash", {"timeout": 600, "command":
                    f"dd if=/dev/zero of=big.bin bs=1M count={args.file_mb} 2>&1 | tail -1"})]),
                Final("Wrote it."),
            ],
            f"print {args.stdout_mb:,} MB to stdout": [
                Turn([ToolCall("bash", {"timeout": 600, "command":
                    f"yes 'a line of output' | head -c {args.stdout_mb}M"})]),
                Final("Printed."),
            ],
        }
        for number, (what, script) in enumerate(steps.items(), start=2):
            started = time.monotonic()
            outcome, peak = run_task(service, number, what, script)
            results.append((what, outcome, peak, time.monotonic() - started))

    print(f"service RSS after start-up and a warm-up task: {baseline / 1024:.1f} MiB")
    print("| step | task | peak RSS | growth | time |")
    print("| --- | --- | --- | --- | --- |")
    for what, outcome, peak, seconds in results:
        print(f"| {what} | {outcome} | {peak / 1024:.1f} MiB | +{(peak - baseline) / 1024:.1f} MiB "
              f"| {seconds:.1f} s |")


if __name__ == "__main__":
    main()
