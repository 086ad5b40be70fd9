"""Shared fixtures: the test App's key, loopback fakes of GitHub and the model API, the sandbox
image, and the real service run as a subprocess against them."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest

from app.records import TaskRecords
from app.store import Store, Task
from tests.agent_sandbox import (agent_sandbox, agent_tools_dir,  # noqa: F401  (fixtures)
                                 bash_sandbox_image)
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.github import FakeGitHub
from tests.fakes.keys import generate_app_key
from tests.payloads import issue_comment, labeled, review_comment, sign

SANDBOX_IMAGE = "async-code-test-sandbox:latest"
SANDBOX_IMAGE_DIR = Path(__file__).parent / "sandbox-image"
APP_ID = 4242
INSTALLATION_ID = 77
REPO = "acme/widgets"
WRITER, WRITER_ID = "alice", 9
READER, READER_ID = "bob", 10
# What app.yml asks an installation to grant.
APP_PERMISSIONS = {"contents": "write", "pull_requests": "write", "issues": "write",
                   "checks": "write", "metadata": "read"}

pytest_plugins = ["tests.postgres_cluster"]  # a real PostgreSQL server, a database per test

CLI_SOURCE = '''import sys


def main(argv):
    print("hello from widgets")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
'''


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as error:
        raise RuntimeError(
            f"These tests need a Docker engine ({error}); run them with scripts/test, which "
            "installs and starts one.") from None
    yield client
    client.close()


@pytest.fixture(scope="session")
def sandbox_image(docker_client) -> str:
    """The busybox sandbox image, built from tests/sandbox-image when it is missing."""
    try:
        docker_client.images.get(SANDBOX_IMAGE)
        return SANDBOX_IMAGE
    except docker.errors.ImageNotFound:
        pass
    busybox = shutil.which("busybox")
    if busybox is None:
        raise RuntimeError("building the sandbox image needs busybox-static; run scripts/test")
    with tempfile.TemporaryDirectory() as context:
        shutil.copy(SANDBOX_IMAGE_DIR / "Dockerfile", context)
        shutil.copy(busybox, Path(context) / "busybox")
        docker_client.images.build(path=context, tag=SANDBOX_IMAGE, rm=True)
    return SANDBOX_IMAGE


@pytest.fixture(scope="session")
def app_key() -> tuple[str, str]:
    return generate_app_key()


@pytest.fixture
def github(tmp_path, app_key) -> Iterator[FakeGitHub]:
    fake = FakeGitHub(tmp_path / "github", app_id=APP_ID, public_key_pem=app_key[1])
    fake.start()
    fake.add_user(WRITER, WRITER_ID)
    fake.add_user(READER, READER_ID)
    fake.add_repo(REPO, {"cli.py": CLI_SOURCE, "README.md": "# widgets\n"})
    fake.add_installation(INSTALLATION_ID, [REPO], permissions=APP_PERMISSIONS)
    fake.set_permission(REPO, WRITER, "write")
    fake.set_permission(REPO, READER, "read")
    yield fake
    fake.stop()


@pytest.fixture
def model() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic(api_key="sk-ant-test-" + secrets.token_hex(16))
    fake.start()
    yield fake
    fake.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Service:
    """The real `async-code serve` process, configured against the fakes."""

    env: dict[str, str]
    data_dir: Path
    log_path: Path
    github: FakeGitHub | None = None  # told about each comment delivered, as GitHub would know it
    port: int = field(default_factory=_free_port)
    process: subprocess.Popen | None = None
    workdir: Path | None = None  # where it runs and finds .env; the data directory by default
    workers: list[WorkerProcess] = field(default_factory=list)  # `async-code worker`s it started
    _postgres: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def secret(self) -> str:
        return self.env["GITHUB_WEBHOOK_SECRET"]

    def start(self, workers: int = 2) -> Service:
        log = open(self.log_path, "a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app", "serve", "--port", str(self.port), "--workers", str(workers)],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir or self.data_dir)
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the service exited early:\n{self.logs()}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"the service did not answer /healthz:\n{self.logs()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def start_worker(self, concurrency: int = 1, **settings: str) -> WorkerProcess:
        """An `async-code worker` sharing this service's PostgreSQL database, as on another
        host: a data directory and a log of its own."""
        number = len(self.workers) + 1
        data_dir = self.data_dir.parent / f"worker-{number}"
        data_dir.mkdir()
        env = {**self.env, "ASYNC_CODE_DATA_DIR": str(data_dir), **settings}
        worker = WorkerProcess(env=env, data_dir=data_dir,
                               log_path=self.log_path.parent / f"worker-{number}.log")
        self.workers.append(worker)
        return worker.start(concurrency)

    def stop_all(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.stop()
        if self._postgres is not None:
            self._postgres.close()
            self._postgres = None

    def logs(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def deliver(self, payload: dict[str, Any], *, event: str = "issue_comment",
                guid: str | None = None, secret: str | None = None) -> tuple[int, dict]:
        """`secret` signs instead of the one in the environment, such as one setup mode saved."""
        body = json.dumps(payload).encode()
        request = urllib.request.Request(self.url + "/webhooks", data=body, method="POST", headers={
            "Content-Type": "application/json", "X-GitHub-Event": event,
            "X-GitHub-Delivery": guid or str(uuid.uuid4()),
            "X-Hub-Signature-256": sign(body, secret or self.secret)})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            with error:
                return error.code, json.loads(error.read())

    def comment(self, body: str, **kwargs: Any) -> str:
        """Deliver a new issue comment; returns the id of the task it created."""
        payload = issue_comment(body, **kwargs)
        if self.github is not None:
            self.github.add_comment(payload["repository"]["full_name"], payload["issue"]["number"],
                                    payload["comment"]["id"], payload["sender"]["login"], body)
        status, answer = self.deliver(payload)
        assert status == 202, answer
        return answer["task_id"]

    def deliver_task(self, payload: dict[str, Any], event: str) -> str:
        status, answer = self.deliver(payload, event=event)
        assert status == 202, answer
        return answer["task_id"]

    def label(self, **kwargs: Any) -> str:
        """Deliver a `labeled` event for a label the fake GitHub already shows on the issue or
        pull request; returns the task's id."""
        payload = labeled(**kwargs)
        return self.deliver_task(payload, "pull_request" if "pull_request" in payload else "issues")

    def review(self, body: str, *, number: int, comment_id: int, path: str, line: int,
               login: str = WRITER, user_id: int = WRITER_ID, in_reply_to: int | None = None) -> str:
        """Add a review comment to the fake GitHub's pull request and deliver it; returns the task."""
        assert self.github is not None
        self.github.add_review_comment(REPO, number, comment_id, login, body, path=path, line=line,
                                       in_reply_to=in_reply_to)
        stored = self.github.review_comments[comment_id]
        fields = {key: stored[key] for key in ("id", "path", "line", "start_line", "side", "diff_hunk")}
        if in_reply_to is not None:
            fields["in_reply_to_id"] = stored["in_reply_to"]
        return self.deliver_task(review_comment(body, comment=fields, number=number, login=login,
                                                user_id=user_id), "pull_request_review_comment")

    @property
    def store(self) -> TaskRecords:
        url = self.env["DATABASE_URL"]
        if not url.startswith("postgres"):
            return Store(Path(url.removeprefix("sqlite:///")))
        if self._postgres is None:
            from app.postgres_store import PostgresStore

            self._postgres = PostgresStore(url, max_connections=2)
            self._postgres.initialise()
        return self._postgres

    def task(self, task_id: str) -> Task:
        return self.store.get(task_id)

    def wait_for_task(self, task_id: str, statuses=("completed", "failed", "rejected", "cancelled"),
                      timeout: float = 90) -> Task:
        return wait_until(lambda: (t := self.task(task_id)) and t.status in statuses and t,
                          timeout, f"task {task_id} to reach {statuses}", self.logs)


@dataclass
class WorkerProcess:
    """The real `async-code worker` process: the job queue's workers, no HTTP server."""

    env: dict[str, str]
    data_dir: Path
    log_path: Path
    process: subprocess.Popen | None = None

    def start(self, concurrency: int) -> WorkerProcess:
        log = open(self.log_path, "a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app", "worker", "--concurrency", str(concurrency)],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.data_dir)
        log.close()
        wait_until(lambda: self.process.poll() is not None or "worker running" in self.logs(), 30,
                   "the worker to start", self.logs)
        if self.process.poll() is not None:
            raise RuntimeError(f"the worker exited early:\n{self.logs()}")
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        """Signal it and wait for it to exit; its exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def logs(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""


def wait_until(check: Callable[[], Any], timeout: float, what: str,
               context: Callable[[], str] = lambda: "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}\n{context()}")


@pytest.fixture
def service_factory(tmp_path, github, model, app_key, sandbox_image) -> Iterator[Callable[..., Service]]:
    started: list[Service] = []
    data_dir = tmp_path / "data"
    data_dir.mkdir()

    def make(**settings: str) -> Service:
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "DOCKER_HOST")}
        env.update({
            # The checkout under test, whichever one the environment's editable install names.
            "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
            "HOME": str(tmp_path),
            "GITHUB_APP_ID": str(APP_ID),
            "GITHUB_PRIVATE_KEY": app_key[0],
            "GITHUB_WEBHOOK_SECRET": "whsec-" + secrets.token_hex(12),
            "GITHUB_API_URL": github.base_url,
            "ANTHROPIC_API_KEY": model.api_key,
            "ANTHROPIC_BASE_URL": model.base_url,
            "ASYNC_CODE_DATA_DIR": str(data_dir),
            "DATABASE_URL": f"sqlite:///{data_dir}/async-code.db",
            "ASYNC_CODE_SANDBOX_IMAGE": sandbox_image,
            "ASYNC_CODE_TASK_TIMEOUT": "120",
            "ASYNC_CODE_SANDBOX_MEMORY": "256m",
            "ASYNC_CODE_SANDBOX_CPUS": "1",
            "ASYNC_CODE_SANDBOX_PIDS": "333",
            **settings,
        })
        service = Service(env=env, data_dir=data_dir, log_path=tmp_path / "service.log", github=github)
        started.append(service)
        return service

    yield make
    for service in started:
        service.stop_all()


@pytest.fixture
def service(service_factory) -> Service:
    return service_factory().start()


@dataclass(frozen=True)
class IsolatedNetwork:
    """A Docker network of one test's own, with a busybox httpd on it serving `page`."""

    name: str
    httpd_name: str
    httpd_ip: str
    page: str

    @property
    def url_by_name(self) -> str:
        return f"http://{self.httpd_name}:8080/"

    @property
    def url_by_ip(self) -> str:
        return f"http://{self.httpd_ip}:8080/"


def _fence_rules(bridge: str) -> list[list[str]]:
    """What Docker's own rules make of an --internal network, which an engine started with
    --iptables=false leaves out (its containers keep a default route through the host): nothing
    leaves the bridge, nothing enters it from elsewhere, and the host itself does not answer."""
    return [["FORWARD", "-i", bridge, "!", "-o", bridge, "-j", "DROP"],
            ["FORWARD", "!", "-i", bridge, "-o", bridge, "-j", "DROP"],
            ["INPUT", "-i", bridge, "-j", "DROP"]]


@pytest.fixture
def isolated_network(docker_client, sandbox_image) -> Iterator[IsolatedNetwork]:
    """An --internal bridge network only this test's containers share, fenced off from the host
    and the outside, with an httpd on it; the network, the httpd, anything still attached and
    the fence go afterwards, whatever happened."""
    iptables = shutil.which("iptables")
    if os.geteuid() != 0 or iptables is None:
        pytest.skip("fencing the test's network off from the host needs root and iptables")
    token = secrets.token_hex(5)
    name, bridge, page = f"async-code-test-{token}", f"ac-t{token}", f"served by {token}"
    rules = _fence_rules(bridge)
    fenced: list[list[str]] = []
    network = docker_client.networks.create(
        name, driver="bridge", internal=True, labels={"async-code.test": token},
        options={"com.docker.network.bridge.name": bridge})
    httpd = None
    try:
        for rule in rules:
            subprocess.run([iptables, "-w", "-I", *rule], check=True, capture_output=True)
            fenced.append(rule)
        httpd = docker_client.containers.run(
            sandbox_image, ["sh", "-c", f'mkdir /tmp/www && echo "{page}" > /tmp/www/index.html '
                                        '&& exec httpd -f -p 8080 -h /tmp/www'],
            name=f"async-code-test-httpd-{token}", network=name, detach=True, read_only=True,
            tmpfs={"/tmp": "size=1m"}, cap_drop=["ALL"], labels={"async-code.test": token})
        wait_until(lambda: httpd.exec_run(["wget", "-qO-", "http://127.0.0.1:8080/"]).exit_code == 0,
                   10, "the test network's httpd to answer")
        httpd.reload()
        ip = httpd.attrs["NetworkSettings"]["Networks"][name]["IPAddress"]
        yield IsolatedNetwork(name=name, httpd_name=httpd.name, httpd_ip=ip, page=page)
    finally:
        if httpd is not None:
            httpd.remove(force=True)
        try:
            network.reload()
            for container in network.containers:
                network.disconnect(container, force=True)
            network.remove()
        except docker.errors.NotFound:
            pass  # the test removed it itself
        for rule in fenced:
            subprocess.run([iptables, "-w", "-D", *rule], check=True, capture_output=True)
