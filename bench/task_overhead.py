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
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from app.store import Store  # noqa: E402
from tests.conftest import APP_ID, CLI_SOURCE, INSTALLATION_ID, REPO, SANDBOX_IMAGE  # noqa: E402
from tests.fakes.anthropic import FakeAnthropic, Final, ToolCall, Turn  # noqa: E402
from tests.fakes.github import FakeGitHub  # noqa: E402
from tests.fakes.keys import generate_app_key  # noqa: E402
from tests.payloads import issue_comment, sign  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def deliver(url: str, secret: str, payload: dict) -> None:
    import json

    body = json.dumps(payload).encode()
    request = urllib.request.Request(url + "/webhooks", data=body, method="POST", headers={
        "Content-Type": "application/json", "X-GitHub-Event": "issue_comment",
        "X-GitHub-Delivery": secrets.token_hex(16), "X-Hub-Signature-256": sign(body, secret)})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 202


def parse_time(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    private_key, public_key = generate_app_key()
    with tempfile.TemporaryDirectory() as root:
        github = FakeGitHub(Path(root) / "github", app_id=APP_ID, public_key_pem=public_key).start()
        model = FakeAnthropic(api_key="sk-ant-bench-" + secrets.token_hex(8)).start()
        github.add_user("alice", 9)
        github.add_repo(REPO, {"cli.py": CLI_SOURCE})
        github.add_installation(INSTALLATION_ID, [REPO])
        github.set_permission(REPO, "alice", "write")
        for n in range(args.tasks):
            model.add_script(f"bench task {n}\n", [
                Turn([ToolCall("bash", {"command": "ls"})]),
                Turn([ToolCall("edit_file", {"command": "create", "path": f"note_{n}.txt",
                                             "file_text": "hello\n"})]),
                Final(f"Add note {n}"),
            ])
        data = Path(root) / "data"
        data.mkdir()
        secret = secrets.token_hex(12)
        port = free_port()
        env = {"PATH": os.environ["PATH"], "HOME": root, "GITHUB_APP_ID": str(APP_ID),
               "GITHUB_PRIVATE_KEY": private_key, "GITHUB_WEBHOOK_SECRET": secret,
               "GITHUB_API_URL": github.base_url, "ANTHROPIC_API_KEY": model.api_key,
               "ANTHROPIC_BASE_URL": model.base_url, "ASYNC_CODE_DATA_DIR": str(data),
               "ASYNC_CODE_SANDBOX_IMAGE": SANDBOX_IMAGE}
        service = subprocess.Popen([sys.executable, "-m", "app", "serve", "--port", str(port),
                                    "--workers", str(args.workers)], env=env, cwd=data,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}"
            for _ in range(300):
                try:
                    urllib.request.urlopen(url + "/healthz", timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.1)
            started = time.monotonic()
            for n in range(args.tasks):
                deliver(url, secret, issue_comment(f"@async-code bench task {n}\n", number=100 + n,
                                                   comment_id=n + 1, login="alice"))
            store = Store(data / "async-code.db")
            while True:
                tasks = store.list()
                if len(tasks) == args.tasks and all(t.status in ("completed", "failed") for t in tasks):
                    break
                time.sleep(0.1)
            wall = time.monotonic() - started
        finally:
            service.terminate()
            service.wait()
            github.stop()
            model.stop()

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
