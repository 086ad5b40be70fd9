"""The Docker sandbox against a real engine, with the busybox test image (the `docker_client` and
`sandbox_image` fixtures come from conftest.py) and no network, except the setup network tests':
an --internal network of their own (`isolated_network`)."""

import logging
import os
import threading
import time
import tracemalloc
import uuid
from pathlib import Path

import docker
import docker.errors
import pytest

from runner.sandbox import (
    TASK_LABEL,
    CommandResult,
    DockerDeployment,
    NetworkState,
    SandboxError,
    SandboxGone,
    SandboxLimits,
    SandboxUser,
    SetupNetworkNotFound,
    attempts_with_containers,
    offline_problem,
    remapped_root,
    remove_task_containers,
    sandbox_user,
)

SANDBOX_UID = 1000
USER = f"{SANDBOX_UID}:{SANDBOX_UID}"
INSTANCE = uuid.uuid4().hex[:16]  # this run's: another run on the same engine keeps its own
SMALL_LIMITS = SandboxLimits(memory="256m", cpus=0.5, pids=64, tmp_bytes=8 * 1024 * 1024)


@pytest.fixture
def work_tree(tmp_path) -> Path:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "README.md").write_text("hello from the host\n")
    for path in (tree, tree / "README.md"):
        os.chown(path, SANDBOX_UID, SANDBOX_UID)
    return tree


@pytest.fixture
def make_deployment(docker_client, sandbox_image, work_tree):
    """Build deployments with unique task ids; every container they made is removed afterwards,
    whatever the test did."""
    task_ids = []

    def make(**overrides) -> DockerDeployment:
        options = dict(image=sandbox_image, work_tree=work_tree, task_id=uuid.uuid4().hex,
                       instance=INSTANCE, user=USER, limits=SMALL_LIMITS)
        options.update(overrides)
        task_ids.append(options["task_id"])
        return DockerDeployment(docker_client, **options)

    yield make
    for task_id in task_ids:
        for summary in docker_client.api.containers(all=True, filters={"label": f"{TASK_LABEL}={task_id}"}):
            try:
                docker_client.api.remove_container(summary["Id"], force=True, v=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as error:
                if error.status_code != 409:  # 409: already being removed
                    raise


@pytest.fixture
def sandbox(make_deployment):
    deployment = make_deployment()
    runtime = deployment.start()
    yield deployment, runtime
    deployment.stop()


def _exists(client, container_id: str) -> bool:
    try:
        client.api.inspect_container(container_id)
    except docker.errors.NotFound:
        return False
    return True


def test_container_is_confined(docker_client, make_deployment, work_tree):
    deployment = make_deployment()
    runtime = deployment.start()
    info = docker_client.api.inspect_container(deployment.container_id)
    host = info["HostConfig"]
    assert host["NetworkMode"] == "none"
    assert host["CapDrop"] == ["ALL"]
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["Memory"] == 256 * 1024 * 1024
    assert host["NanoCpus"] == 500_000_000
    assert host["PidsLimit"] == 64
    assert host["Init"] is True
    assert info["Config"]["User"] == USER
    assert info["Config"]["WorkingDir"] == "/workspace"
    assert info["Config"]["Labels"][TASK_LABEL] == deployment.task_id
    assert info["Name"] == f"/async-code-{deployment.task_id[:12]}-1"  # its first attempt
    [mount] = info["Mounts"]
    assert (mount["Type"], mount["Source"], mount["Destination"], mount["RW"]) == (
        "bind",
        str(work_tree.resolve()),
        "/workspace",
        True,
    )
    assert host["ReadonlyRootfs"] is True
    assert host["Tmpfs"] == {"/tmp": f"rw,nosuid,nodev,size={8 * 1024 * 1024},mode=1777"}
    # And from the inside: no capabilities (the bounding set too), no privilege gain, only a
    # loopback interface.
    status = runtime.run("grep -e CapBnd -e NoNewPrivs /proc/self/status; cat /proc/net/dev", timeout=10)
    assert "CapBnd:\t0000000000000000" in status.output
    assert "NoNewPrivs:\t1" in status.output
    interfaces = [line.split(":")[0].strip() for line in status.output.splitlines() if ":" in line]
    assert [name for name in interfaces if name not in ("CapBnd", "NoNewPrivs")] == ["lo"]


def test_only_the_work_tree_and_a_sized_tmp_are_writable(make_deployment, work_tree):
    runtime = make_deployment().start()

    image = runtime.run("touch /bin/planted; echo rc=$?", timeout=10)
    tmp = runtime.run("echo scratch > /tmp/a && cat /tmp/a", timeout=10)
    full = runtime.run("dd if=/dev/zero of=/tmp/big bs=1M count=16 2>&1; echo rc=$?", timeout=30)
    tree = runtime.run("echo kept > /workspace/out.txt && echo ok", timeout=10)

    assert "Read-only file system" in image.output and "rc=1" in image.output
    assert tmp.exit_code == 0 and "scratch" in tmp.output
    assert "No space left on device" in full.output and "rc=1" in full.output
    assert tree.output.strip() == "ok" and (work_tree / "out.txt").read_text() == "kept\n"


def test_run_echo(sandbox):
    _, runtime = sandbox
    assert runtime.run("echo hi", timeout=10) == CommandResult(
        exit_code=0, output="hi\n", timed_out=False, truncated=False
    )


def test_commands_run_as_the_sandbox_user_in_the_mount_point(sandbox):
    _, runtime = sandbox
    assert runtime.run("id -u; pwd; cat README.md", timeout=10).output == (
        f"{SANDBOX_UID}\n/workspace\nhello from the host\n"
    )


@pytest.mark.parametrize(
    ("command", "exit_code", "output"),
    [
        ("exit 3", 3, ""),
        ("false", 1, ""),
        ("no-such-command-here", 127, "not found"),
        ("echo out; echo err >&2; echo out2", 0, "out\nerr\nout2\n"),
        ("printf 'caf\\351\\n'", 0, "caf\ufffd\n"),
    ],
)
def test_exit_codes_and_combined_output(sandbox, command, exit_code, output):
    _, runtime = sandbox
    result = runtime.run(command, timeout=10)
    assert result.exit_code == exit_code
    assert output in result.output
    assert not result.timed_out


def test_sandbox_user_can_write_the_chowned_tree(sandbox, work_tree):
    _, runtime = sandbox
    result = runtime.run("echo made inside > new.txt && mkdir -p sub && echo x > sub/y", timeout=10)
    assert result.exit_code == 0, result.output
    made = work_tree / "new.txt"
    assert made.read_text() == "made inside\n"
    assert made.stat().st_uid == SANDBOX_UID
    assert (work_tree / "sub" / "y").read_text() == "x\n"


def test_output_is_capped_keeping_head_and_tail(sandbox):
    _, runtime = sandbox
    result = runtime.run("echo START; yes | head -n 100000; echo END", timeout=30, max_output=1000)
    assert result.exit_code == 0
    assert result.truncated
    assert len(result.output) <= 1000
    assert result.output.startswith("START\ny\n")
    assert result.output.endswith("y\nEND\n")
    assert "output truncated: 200010 bytes in all" in result.output


def test_huge_output_is_streamed_in_bounded_memory(sandbox):
    _, runtime = sandbox
    tracemalloc.start()
    try:
        started = time.monotonic()
        result = runtime.run("yes abcdefghij | head -c 100000000; echo; echo END", timeout=60)
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.exit_code == 0
    assert result.truncated and result.output.endswith("END\n")
    assert peak < 5 * 1024 * 1024, f"peak Python memory {peak} bytes for 100 MB of output"
    assert elapsed < 30


def test_timeout_kills_the_command_and_everything_it_started(sandbox):
    _, runtime = sandbox
    started = time.monotonic()
    result = runtime.run("sleep 300 & sleep 301 & echo started; sleep 302", timeout=1)
    elapsed = time.monotonic() - started
    assert result.timed_out
    assert result.exit_code is None
    assert result.output == "started\n"
    assert 1 <= elapsed < 3
    # The container is still usable, and nothing of the timed-out command survives.
    processes = runtime.run("ps -o args", timeout=10)
    assert processes.exit_code == 0
    assert "sleep 30" not in processes.output


def test_timeout_returns_even_if_a_process_escapes_the_kill_and_holds_the_output(sandbox):
    _, runtime = sandbox
    started = time.monotonic()
    result = runtime.run("env -u ASYNC_CODE_RUN_ID sleep 300 & sleep 301", timeout=1)
    assert result.timed_out
    assert time.monotonic() - started < 6
    assert runtime.run("echo ok", timeout=10).output == "ok\n"


def test_fast_command_is_not_reported_as_timed_out(sandbox):
    _, runtime = sandbox
    result = runtime.run("sleep 0.2; echo done", timeout=5)
    assert (result.exit_code, result.timed_out, result.output) == (0, False, "done\n")


def test_sandbox_sees_no_host_environment(make_deployment, monkeypatch):
    marker = f"marker-{uuid.uuid4().hex}"
    monkeypatch.setenv("ASYNC_CODE_TEST_SECRET", marker)
    deployment = make_deployment()
    runtime = deployment.start()
    result = runtime.run("env", timeout=10)
    assert result.exit_code == 0
    assert "HOME=/tmp" in result.output.splitlines()
    assert marker not in result.output
    assert "ASYNC_CODE_TEST_SECRET" not in result.output


def test_stop_from_another_thread_ends_a_running_command(docker_client, sandbox):
    deployment, runtime = sandbox
    outcome = {}

    def run_long_command():
        try:
            outcome["result"] = runtime.run("sleep 120", timeout=300)
        except Exception as exc:  # recorded for the assertions below
            outcome["error"] = exc

    worker = threading.Thread(target=run_long_command)
    worker.start()
    time.sleep(0.5)
    stopping = time.monotonic()
    deployment.stop()
    worker.join(timeout=10)
    assert not worker.is_alive()
    assert time.monotonic() - stopping < 3
    assert isinstance(outcome.get("error"), SandboxGone), outcome
    assert not _exists(docker_client, deployment.container_id)
    with pytest.raises(SandboxGone):
        runtime.run("echo again", timeout=5)


def test_stop_is_idempotent(docker_client, make_deployment):
    deployment = make_deployment()
    deployment.stop()  # before start: nothing to do
    deployment = make_deployment()
    deployment.start()
    deployment.stop()
    deployment.stop()
    assert not _exists(docker_client, deployment.container_id)


def test_run_after_the_container_was_removed_raises_sandbox_gone(docker_client, sandbox):
    deployment, runtime = sandbox
    docker_client.api.remove_container(deployment.container_id, force=True)
    with pytest.raises(SandboxGone):
        runtime.run("echo hi", timeout=5)


def test_start_twice_is_refused(sandbox):
    deployment, _ = sandbox
    with pytest.raises(SandboxError, match="already started"):
        deployment.start()


def test_remove_task_containers_touches_only_this_instance_s(docker_client, sandbox_image,
                                                            make_deployment):
    stale, kept = make_deployment(), make_deployment(attempt=2)
    superseded = make_deployment(task_id=kept.task_id, attempt=1)  # the same task's earlier attempt
    other_instance = make_deployment(instance="another-instance")
    for deployment in (stale, kept, superseded, other_instance):
        deployment.start()
    unlabelled = docker_client.containers.create(sandbox_image, ["sleep", "600"], network_mode="none")
    try:
        assert attempts_with_containers(docker_client, INSTANCE) == {
            (stale.task_id, 1), (kept.task_id, 2), (kept.task_id, 1)}

        removed = remove_task_containers(docker_client, INSTANCE, keep={(kept.task_id, 2)})

        assert sorted(removed) == sorted([stale.task_id, kept.task_id])
        assert not _exists(docker_client, stale.container_id)
        assert not _exists(docker_client, superseded.container_id)
        assert _exists(docker_client, kept.container_id)
        assert _exists(docker_client, other_instance.container_id)
        assert _exists(docker_client, unlabelled.id)
        labels = docker_client.api.inspect_container(kept.container_id)["Config"]["Labels"]
        assert labels == {TASK_LABEL: kept.task_id, "async-code.instance": INSTANCE,
                          "async-code.attempt": "2"}
    finally:
        unlabelled.remove(force=True)


def test_missing_image_that_cannot_be_pulled(docker_client, make_deployment, caplog):
    # A registry on a closed loopback port: the pull fails at once and nothing leaves the host.
    image = "127.0.0.1:9/async-code-test/missing:latest"
    deployment = make_deployment(image=image)
    with caplog.at_level(logging.INFO, logger="runner.sandbox"):
        with pytest.raises(SandboxError, match=f"{image} is not on this host and pulling it failed"):
            deployment.start()
    assert f"pulling sandbox image {image} (first use)" in caplog.messages
    assert deployment.container_id is None


def test_a_sandbox_on_a_setup_network_has_it_until_disconnected(make_deployment, isolated_network):
    deployment = make_deployment(setup_network=isolated_network.name)
    runtime = deployment.start()
    try:
        fetched = runtime.run(f"wget -qO- {isolated_network.url_by_name}", timeout=20)
        assert (fetched.exit_code, fetched.output.strip()) == (0, isolated_network.page)
        online = deployment.network_state()
        assert online.interfaces == ("eth0", "lo") and online.networks == (isolated_network.name,)
        assert "eth0" in offline_problem(online) and isolated_network.name in offline_problem(online)

        deployment.disconnect_setup_network()

        assert deployment.network_state() == NetworkState(interfaces=("lo",), networks=())
        cut_off = runtime.run(f"wget -qO- {isolated_network.url_by_ip}", timeout=20)
        assert cut_off.exit_code != 0 and isolated_network.page not in cut_off.output
    finally:
        deployment.stop()


def test_a_sandbox_without_a_setup_network_is_offline_from_the_start(sandbox):
    deployment, _ = sandbox
    deployment.disconnect_setup_network()  # nothing to take away
    state = deployment.network_state()
    assert state == NetworkState(interfaces=("lo",), networks=("none",))
    assert offline_problem(state) is None


def test_a_setup_network_that_does_not_exist_fails_before_any_pull(make_deployment, caplog):
    missing = "async-code-test-missing-" + uuid.uuid4().hex[:8]
    deployment = make_deployment(setup_network=missing,
                                 image="127.0.0.1:9/async-code-test/missing:latest")
    with caplog.at_level(logging.INFO, logger="runner.sandbox"):
        with pytest.raises(SetupNetworkNotFound) as raised:
            deployment.start()
    assert raised.value.network == missing and deployment.container_id is None
    assert not any("pulling" in message for message in caplog.messages)


def test_networks_a_container_cannot_leave_are_refused_by_name_or_id(docker_client, make_deployment):
    host_id = docker_client.api.inspect_network("host")["Id"]
    for network in ("host", host_id[:12], "none"):
        deployment = make_deployment(setup_network=network)
        with pytest.raises(SandboxError, match="which a container cannot leave"):
            deployment.start()
        assert deployment.container_id is None


def test_a_disconnect_the_engine_refuses_is_an_error(docker_client, make_deployment, isolated_network):
    deployment = make_deployment(setup_network=isolated_network.name)
    deployment.start()
    try:
        # Taken away by someone else first: the engine refuses the deployment's own disconnect.
        docker_client.api.disconnect_container_from_network(deployment.container_id,
                                                            isolated_network.name, force=True)
        with pytest.raises(SandboxError, match="cannot disconnect sandbox container") as raised:
            deployment.disconnect_setup_network()
        assert not isinstance(raised.value, SandboxGone)
    finally:
        deployment.stop()


def test_disconnecting_a_stopped_sandbox_raises_sandbox_gone(make_deployment, isolated_network):
    deployment = make_deployment(setup_network=isolated_network.name)
    deployment.start()
    deployment.stop()
    with pytest.raises(SandboxGone):
        deployment.disconnect_setup_network()


def test_host_git_waits_for_a_sandbox_that_could_not_be_removed(docker_client, sandbox_image, tmp_path):
    from runner.execute import TaskFailed, _require_sandbox_gone

    class Task:
        id = "stuck" + "0" * 27
        attempt = 2

    _require_sandbox_gone(docker_client, Task())  # nothing labelled: fine
    container = docker_client.containers.create(
        sandbox_image, ["true"], network_mode="none",
        labels={"async-code.task": Task.id, "async-code.attempt": "2"})
    earlier = docker_client.containers.create(  # an earlier attempt's is none of its business
        sandbox_image, ["true"], network_mode="none",
        labels={"async-code.task": Task.id, "async-code.attempt": "1"})
    try:
        with pytest.raises(TaskFailed, match="could not be removed"):
            _require_sandbox_gone(docker_client, Task())
        container.remove(force=True)
        _require_sandbox_gone(docker_client, Task())
    finally:
        for each in (container, earlier):
            try:
                each.remove(force=True)
            except docker.errors.NotFound:
                pass


@pytest.mark.parametrize(("info", "expected"), [
    ({"SecurityOptions": ["name=seccomp,profile=default"], "DockerRootDir": "/var/lib/docker"}, None),
    ({"SecurityOptions": ["name=seccomp,profile=default", "name=userns"],
      "DockerRootDir": "/var/lib/docker/100000.100000"}, (100000, 100000)),
    ({"SecurityOptions": ["name=userns"], "DockerRootDir": "/srv/docker/231072.231073"}, (231072, 231073)),
    ({}, None),
])
def test_remapped_root(info, expected):
    assert remapped_root(info) == expected


def test_remapping_that_cannot_be_read_is_an_error():
    with pytest.raises(SandboxError, match="does not say to which ids"):
        remapped_root({"SecurityOptions": ["name=userns"], "DockerRootDir": "/var/lib/docker"})


@pytest.mark.parametrize(("uid", "remapped", "euid", "expected"), [
    (61000, None, 0, SandboxUser("61000:61000", (61000, 61000))),
    (61000, (100000, 100000), 0, SandboxUser("61000:61000", (161000, 161000))),
    (5000, (231072, 231073), 0, SandboxUser("5000:5000", (236072, 236073))),
    (61000, None, 1234, SandboxUser("1234:1234", (1234, 1234))),
])
def test_sandbox_user(uid, remapped, euid, expected):
    assert sandbox_user(uid, remapped, euid=euid, egid=euid) == expected


def test_a_service_that_is_not_root_cannot_use_a_remapping_engine():
    with pytest.raises(SandboxError, match="run the service as root"):
        sandbox_user(61000, (100000, 100000), euid=1234, egid=1234)
