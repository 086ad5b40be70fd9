"""How soon a pull request task shows in GitHub's checks UI after its delivery.

Usage: .venv/bin/python bench/check_run_latency.py [--tasks 20]

Runs the real service against the loopback fakes (as the tests do) with one execution slot.
For each task, someone comments on their own pull request; the figures are the time from
sending the delivery to the fake GitHub receiving the check run's creation (`queued`) and its
first `in_progress` update. Tasks go one at a time, so no task waits for a slot. Needs what
`scripts/test` sets up.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from service_harness import WRITER, WRITER_ID, running_service  # noqa: E402

from tests.conftest import REPO  # noqa: E402
from tests.fakes.anthropic import Final  # noqa: E402
from tests.payloads import issue_comment, sign  # noqa: E402

POLL = 0.002


def first_request(github, start: int, matches) -> float | None:
    for record in github.requests[start:]:
        if matches(record):
            return time.monotonic()
    return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=20)
    args = parser.parse_args()
    queued, in_progress = [], []
    with running_service(workers=1) as service:
        github = service.github
        service.model.add_script("bench check run", [Final("Nothing to change.")])
        for n in range(args.tasks):
            number = github.add_pull(REPO, head=f"bench-{n}", files={f"note_{n}.txt": "x\n"},
                                     user=WRITER)
            body = "@async-code bench check run"
            github.add_comment(REPO, number, 10_000 + n, WRITER, body)
            payload = json.dumps(issue_comment(body, number=number, comment_id=10_000 + n,
                                               login=WRITER, user_id=WRITER_ID,
                                               pull_request=True)).encode()
            request = urllib.request.Request(service.url + "/webhooks", data=payload, method="POST",
                                             headers={"Content-Type": "application/json",
                                                      "X-GitHub-Event": "issue_comment",
                                                      "X-GitHub-Delivery": secrets.token_hex(16),
                                                      "X-Hub-Signature-256": sign(payload, service.secret)})
            start = len(github.requests)
            sent = time.monotonic()
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.status == 202
            seen_queued = seen_running = None
            deadline = sent + 60
            while seen_running is None and time.monotonic() < deadline:
                seen_queued = seen_queued or first_request(
                    github, start, lambda r: r["method"] == "POST" and r["path"].endswith("/check-runs"))
                seen_running = first_request(
                    github, start, lambda r: r["method"] == "PATCH" and "/check-runs/" in r["path"]
                    and (r["json"] or {}).get("status") == "in_progress")
                time.sleep(POLL)
            assert seen_queued and seen_running, "no check run appeared"
            queued.append(seen_queued - sent)
            in_progress.append(seen_running - sent)
            service.wait_for_all(n + 1)

    for name, values in (("queued", queued), ("in_progress", in_progress)):
        values.sort()
        print(f"delivery -> check run {name}: median {statistics.median(values) * 1000:.0f} ms, "
              f"p90 {values[int(len(values) * 0.9) - 1] * 1000:.0f} ms, max {values[-1] * 1000:.0f} ms "
              f"({len(values)} tasks, polled every {POLL * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
