"""The real service against the tests' loopback fakes, for benchmarks.

Starts the fake GitHub (one repository, one writer) and the fake Messages API, then
`async-code serve` as a subprocess on the test sandbox image. Needs what `scripts/test` sets up.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from app.store import Store, Task  # noqa: E402
from tests.conftest import APP_ID, APP_PERMISSIONS, CLI_SOURCE, INSTALLATION_ID, REPO, SANDBOX_IMAGE  # noqa: E402
from tests.fakes.anthropic import FakeAnthropic  # noqa: E402
from tests.fakes.github import FakeGitHub  # noqa: E402
from tests.fakes.keys import generate_app_key  # noqa: E402
from tests.payloads import issue_comment, sign  # noqa: E402

WRITER, WRITER_ID = "alice", 9


@dataclass
class RunningService:
    url: str
    secret: str
    process: subprocess.Popen
    github: FakeGitHub
    model: FakeAnthropic
    store: Store

    def comment(self, body: str, *, number: int, comment_id: int) -> None:
        """Deliver a new comment by the writer, as GitHub would (and tell the fake about it)."""
        self.github.add_comment(REPO, number, comment_id, WRITER, body)
        payload = json.dumps(issue_comment(body, number=number, comment_id=comment_id,
                                           login=WRITER, user_id=WRITER_ID)).encode()
        request = urllib.request.Request(self.url + "/webhooks", data=payload, method="POST", headers={
            "Content-Type": "application/json", "X-GitHub-Event": "issue_comment",
            "X-GitHub-Delivery": secrets.token_hex(16), "X-Hub-Signature-256": sign(payload, self.secret)})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 202

    def wait_for_all(self, count: int, timeout: float = 3600) -> list[Task]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            tasks = self.store.list(count + 10)
            if len(tasks) == count and all(t.status in ("completed", "failed", "rejected") for t in tasks):
                return tasks
            time.sleep(0.1)
        raise TimeoutError("the tasks did not finish")


@contextlib.contextmanager
def running_service(*, workers: int = 1, settings: dict[str, str] | None = None) -> Iterator[RunningService]:
    private_key, public_key = generate_app_key()
    with tempfile.TemporaryDirectory() as root:
        github = FakeGitHub(Path(root) / "github", app_id=APP_ID, public_key_pem=public_key).start()
        model = FakeAnthropic(api_key="sk-ant-bench-" + secrets.token_hex(8)).start()
        github.add_user(WRITER, WRITER_ID)
        github.add_repo(REPO, {"cli.py": CLI_SOURCE})
        github.add_installation(INSTALLATION_ID, [REPO], permissions=APP_PERMISSIONS)
        github.set_permission(REPO, WRITER, "write")
        data = Path(root) / "data"
        data.mkdir()
        secret = secrets.token_hex(12)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        env = {"PATH": os.environ["PATH"], "HOME": root, "GITHUB_APP_ID": str(APP_ID),
               "GITHUB_PRIVATE_KEY": private_key, "GITHUB_WEBHOOK_SECRET": secret,
               "GITHUB_API_URL": github.base_url, "ANTHROPIC_API_KEY": model.api_key,
               "ANTHROPIC_BASE_URL": model.base_url, "ASYNC_CODE_DATA_DIR": str(data),
               "ASYNC_CODE_SANDBOX_IMAGE": SANDBOX_IMAGE,
               "PYTHONPATH": str(Path(__file__).resolve().parent.parent), **(settings or {})}
        process = subprocess.Popen([sys.executable, "-m", "app", "serve", "--port", str(port),
                                    "--workers", str(workers)], env=env, cwd=data,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}"
            for _ in range(300):
                try:
                    urllib.request.urlopen(url + "/healthz", timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.1)
            yield RunningService(url, secret, process, github, model, Store(data / "async-code.db"))
        finally:
            process.terminate()
            process.wait()
            github.stop()
            model.stop()
