"""The agent tools, installed once into a cache outside the repository, and a sandbox that runs
them: the tests' busybox image as the sandbox's uid, no network, a read-only root, the tools
mounted read-only where the runner mounts them, and a directory of the host's (for Unix sockets)
mounted at SOCKET_DIR.

The tools come from scripts/agent-tools (the CLIs are several hundred MB). scripts/test installs
them before pytest starts and names the directory in ASYNC_CODE_TEST_AGENT_TOOLS; without it the
fixture installs into ${XDG_CACHE_HOME:-~/.cache}/async-code/agent-tools itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
from docker.models.containers import Container
from docker.types import Mount

from runner import agent_tools

REPO_ROOT = Path(__file__).resolve().parent.parent
INSTALLER = REPO_ROOT / "scripts" / "agent-tools"
CACHE_ENV = "ASYNC_CODE_TEST_AGENT_TOOLS"
SANDBOX_UID = "61000"
SOCKET_DIR = "/run/async-code-test"


def cache_dir() -> Path:
    configured = os.environ.get(CACHE_ENV, "").strip()
    if configured:
        return Path(configured)
    cache_home = os.environ.get("XDG_CACHE_HOME", "").strip() or Path.home() / ".cache"
    return Path(cache_home) / "async-code" / "agent-tools"


@pytest.fixture(scope="session")
def agent_tools_dir() -> Path:
    """A verified tools directory; installing it when needed. Never skips: a machine that cannot
    install the tools fails these tests, saying why."""
    directory = cache_dir()
    if not agent_tools.problems(directory):
        return directory
    result = subprocess.run([str(INSTALLER), "--dir", str(directory)], capture_output=True,
                            text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        pytest.fail(f"scripts/agent-tools --dir {directory} failed (exit {result.returncode}); "
                    "these tests need the agent CLIs, which it installs with npm from the npm "
                    f"registry:\n{result.stdout}{result.stderr}", pytrace=False)
    try:
        agent_tools.verify(directory)
    except agent_tools.AgentToolsError as error:
        pytest.fail(str(error), pytrace=False)
    return directory


@dataclass
class AgentSandbox:
    container: Container
    socket_dir: Path  # on the host; SOCKET_DIR in the sandbox

    def run(self, argv: list[str]) -> tuple[int, str]:
        result = self.container.exec_run(argv, environment={"HOME": "/tmp"})
        return result.exit_code, result.output.decode(errors="replace")

    def run_split(self, argv: list[str]) -> tuple[int, str, str]:
        """Exit code, stdout and stderr apart."""
        result = self.container.exec_run(argv, environment={"HOME": "/tmp"}, demux=True)
        stdout, stderr = result.output
        return result.exit_code, (stdout or b"").decode(errors="replace"), (stderr or b"").decode(errors="replace")

    def sh(self, script: str) -> tuple[int, str]:
        return self.run(["sh", "-c", script])

    def start(self, argv: list[str]) -> str:
        """Start a process in the background; returns its exec id for `exec_state`."""
        api = self.container.client.api
        exec_id = api.exec_create(self.container.id, argv)["Id"]
        api.exec_start(exec_id, detach=True)
        return exec_id

    def exec_state(self, exec_id: str) -> dict:
        return self.container.client.api.exec_inspect(exec_id)


@pytest.fixture
def agent_sandbox(docker_client, sandbox_image, agent_tools_dir, tmp_path) -> Iterator[AgentSandbox]:
    socket_dir = tmp_path / "sockets"
    socket_dir.mkdir()
    socket_dir.chmod(0o755)  # the sandbox's user must reach the socket inside
    container = docker_client.containers.run(
        sandbox_image, ["sleep", "2147483647"], detach=True, init=True,
        user=SANDBOX_UID, network_mode="none", read_only=True,
        tmpfs={"/tmp": "rw,nosuid,nodev,size=64m,mode=1777"},
        cap_drop=["ALL"], security_opt=["no-new-privileges"],
        mounts=[Mount(target=agent_tools.MOUNT_POINT, source=str(agent_tools_dir), type="bind",
                      read_only=True),
                Mount(target=SOCKET_DIR, source=str(socket_dir), type="bind", read_only=True)],
        labels={"async-code.test": "agent-tools"})
    try:
        yield AgentSandbox(container=container, socket_dir=socket_dir)
    finally:
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass


BASH_SANDBOX_IMAGE = "async-code-test-sandbox-bash:latest"
BASH_STATIC = Path("/bin/bash-static")  # Debian's bash-static


@pytest.fixture(scope="session")
def bash_sandbox_image(docker_client, sandbox_image) -> str:
    """The busybox sandbox image with a static bash at /bin/bash, which Claude Code's Bash tool
    needs (any Debian-based image has one); built when missing."""
    try:
        docker_client.images.get(BASH_SANDBOX_IMAGE)
        return BASH_SANDBOX_IMAGE
    except docker.errors.ImageNotFound:
        pass
    if not BASH_STATIC.is_file():
        pytest.fail(f"building {BASH_SANDBOX_IMAGE} needs {BASH_STATIC} (Debian: apt-get install "
                    "bash-static; scripts/test installs it)", pytrace=False)
    with tempfile.TemporaryDirectory() as context:
        (Path(context) / "Dockerfile").write_text(
            f"FROM {sandbox_image}\nCOPY bash /bin/bash\n")
        shutil.copy(BASH_STATIC, Path(context) / "bash")
        docker_client.images.build(path=context, tag=BASH_SANDBOX_IMAGE, rm=True, network_mode="none")
    return BASH_SANDBOX_IMAGE
