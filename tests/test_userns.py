"""The sandbox on a Docker engine that remaps user namespaces, the recommended host set-up.

A second engine is started for these tests with `--userns-remap=default`, on sockets and
directories of its own (and no network, like the first), and stopped afterwards.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from runner.sandbox import DockerDeployment, SandboxLimits, remapped_root, sandbox_user
from tests.conftest import SANDBOX_IMAGE, SANDBOX_IMAGE_DIR

SANDBOX_UID = 61000


@pytest.fixture(scope="module")
def remapping_engine() -> Iterator[docker.DockerClient]:
    if os.geteuid() != 0:
        raise RuntimeError("starting a second Docker engine needs root; run scripts/test as root")
    root = Path(tempfile.mkdtemp(prefix="async-code-userns-"))
    root.chmod(0o755)  # the remapped root must be able to pass through to its data
    socket_path = root / "docker.sock"
    log = open(root / "dockerd.log", "w")
    engine = subprocess.Popen(
        ["dockerd", "--userns-remap=default", "--bridge=none", "--iptables=false",
         "--ip-masq=false", "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
         "--pidfile", str(root / "docker.pid"), "-H", f"unix://{socket_path}"],
        stdout=log, stderr=subprocess.STDOUT)
    client = None
    try:
        deadline = time.monotonic() + 60
        # The engine makes its socket once it listens; before that, a client would leak its
        # failed connections.
        while not socket_path.exists():
            if engine.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the remapping Docker engine did not start:\n"
                                   + (root / "dockerd.log").read_text()[-3000:])
            time.sleep(0.2)
        client = docker.DockerClient(base_url=f"unix://{socket_path}")
        client.ping()
        with tempfile.TemporaryDirectory() as context:
            shutil.copy(SANDBOX_IMAGE_DIR / "Dockerfile", context)
            shutil.copy(shutil.which("busybox"), Path(context) / "busybox")
            client.images.build(path=context, tag=SANDBOX_IMAGE, rm=True, network_mode="none")
        yield client
    finally:
        if client is not None:
            client.close()
        engine.send_signal(signal.SIGTERM)
        try:
            engine.wait(timeout=30)
        except subprocess.TimeoutExpired:
            engine.kill()
            engine.wait()
        log.close()
        subprocess.run(["rm", "-rf", "--one-file-system", "--", str(root)], check=False, timeout=120)


def test_the_sandbox_writes_the_tree_through_the_remapped_ids(remapping_engine, tmp_path):
    remapped = remapped_root(remapping_engine.info())
    assert remapped is not None and remapped[0] > 0
    user = sandbox_user(SANDBOX_UID, remapped, euid=0, egid=0)
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "README.md").write_text("hello\n")
    tmp_path.chmod(0o755)
    for path in (tree, tree / "README.md"):
        os.chown(path, *user.host_owner)
    deployment = DockerDeployment(remapping_engine, image=SANDBOX_IMAGE, work_tree=tree,
                                  task_id=uuid.uuid4().hex, instance="userns-test",
                                  user=user.container_user,
                                  limits=SandboxLimits(memory="128m", cpus=0.5, pids=32,
                                                       tmp_bytes=8 * 1024 * 1024))
    runtime = deployment.start()
    try:
        result = runtime.run("id -u && echo edited >> README.md && echo new > new.txt", timeout=30)
    finally:
        deployment.stop()

    assert result.exit_code == 0, result.output
    assert result.output.split()[0] == str(SANDBOX_UID)  # the container's view
    assert (tree / "README.md").read_text() == "hello\nedited\n"
    created = (tree / "new.txt").stat()
    assert (created.st_uid, created.st_gid) == user.host_owner == (remapped[0] + SANDBOX_UID,
                                                                   remapped[1] + SANDBOX_UID)
