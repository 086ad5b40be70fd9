"""The Docker sandbox the agent's commands run in.

Two interfaces, as the runner sees them: a `Deployment` owns a container's lifecycle (start it,
stop it) and hands out a `Runtime`, which runs one shell command at a time with an explicit
timeout and returns a typed `CommandResult`. Everything the agent runs is untrusted, so the
container gets no network, no capabilities, no privilege escalation, bounded memory/CPU/processes
and an environment built from scratch (no host variable, hence no secret, ever reaches it).

The one exception is the operator's setup network: a sandbox created on it has that network for
the repository's setup commands only. `disconnect_setup_network()` takes it away, and
`network_state()` with `offline_problem()` confirm that nothing but `lo` is left.
"""

from __future__ import annotations

import logging
import math
import secrets
import socket
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import docker
import docker.errors
import requests
from docker.types import Mount

log = logging.getLogger(__name__)

# Where the work tree appears inside the sandbox; the agent's tools speak of this path.
MOUNT_POINT = "/workspace"
# The sandbox's uid when the runner is root; otherwise the runner's own uid, so both sides can
# write the tree without chown.

TASK_LABEL = "async-code.task"
INSTANCE_LABEL = "async-code.instance"  # the store's id: clean-up touches only its own
ATTEMPT_LABEL = "async-code.attempt"  # which attempt of the task: a later one removes it

# `sleep` with a huge argument exists in busybox and coreutils; docker-init (init=True) is PID 1
# so processes orphaned by killed commands are reaped instead of piling up as zombies.
_KEEP_ALIVE = ["sleep", "2147483647"]

# The environment variable that marks every process started by one `run`, so that a timed-out
# command can be killed together with everything it spawned (see _KILL_SCRIPT).
_RUN_MARKER = "ASYNC_CODE_RUN_ID"

# Run as the sandbox user in a separate exec, with "MARKER=run-id" as $1: kill every process whose
# environment holds that entry. Repeated because a process may fork between the scan and the kill.
_KILL_SCRIPT = r"""
tag="$1"
for round in 1 2 3 4 5; do
  found=
  for f in /proc/[0-9]*/environ; do
    tr '\0' '\n' < "$f" 2>/dev/null | grep -qxF "$tag" || continue
    p=${f#/proc/}
    kill -KILL "${p%/environ}" 2>/dev/null && found=1
  done
  [ -n "$found" ] || exit 0
done
"""

# Prints the names in /sys/class/net, one a line, with shell builtins only (any image has `sh`).
# Interface names hold no whitespace, so the output splits cleanly.
_LIST_INTERFACES = r"""
cd /sys/class/net || exit 1
for name in * .[!.]* ..?*; do
  if [ -e "$name" ] || [ -L "$name" ]; then printf '%s\n' "$name"; fi
done
"""
_LIST_INTERFACES_TIMEOUT = 30.0
# Docker's drivers for the host's own network namespace and for no network: neither can be
# taken away from a container once it runs.
_PERMANENT_NETWORK_DRIVERS = ("host", "null")

# After a timeout kill, how long the output stream may take to close before it is cut.
_KILL_GRACE = 3.0
# The in-container `timeout` only backs up the runner's own deadline (e.g. if the runner dies).
_BACKSTOP_EXTRA = 10
_POLL_INTERVAL = 0.1
_READ_CHUNK = 64 * 1024


class SandboxError(RuntimeError):
    """The sandbox could not be set up or used."""


class SandboxGone(SandboxError):
    """The container no longer exists or no longer runs (it was stopped)."""


class SetupNetworkNotFound(SandboxError):
    """The setup network the deployment was given does not exist on the Docker engine."""

    def __init__(self, network: str):
        super().__init__(f"the Docker network {network!r} does not exist")
        self.network = network


@dataclass(frozen=True)
class NetworkState:
    """A running sandbox's network, as its processes see it and as the engine records it."""

    interfaces: tuple[str, ...]  # the names in /sys/class/net inside the container
    networks: tuple[str, ...]  # the container's NetworkSettings.Networks


def sandbox_network(setup_commands: Sequence[str], setup_network: str | None) -> str | None:
    """The network a task's sandbox is created on: the operator's setup network when there are
    setup commands to use it, and no network at all otherwise."""
    return setup_network if setup_commands and setup_network else None


def offline_problem(state: NetworkState) -> str | None:
    """Why a sandbox in this state is not offline, or None when it is: its only interface is
    `lo`, and the engine attaches it to no network (`none` is Docker's name for no network)."""
    problems = []
    if not state.interfaces:
        problems.append("its network interfaces could not be listed")
    elif state.interfaces != ("lo",):
        others = [name for name in state.interfaces if name != "lo"]
        problems.append("it has the network interface" + ("s " if len(others) > 1 else " ")
                        + ", ".join(others) + (" and no `lo`" if "lo" not in state.interfaces
                                               else " besides `lo`"))
    attached = [name for name in state.networks if name != "none"]
    if attached:
        problems.append("the Docker engine still attaches it to the network"
                        + ("s " if len(attached) > 1 else " ") + ", ".join(attached))
    if not problems:
        return None
    return "the sandbox is not offline: " + "; ".join(problems)


@dataclass(frozen=True)
class SandboxLimits:
    memory: str = "2g"
    cpus: float = 2.0
    pids: int = 512
    tmp_bytes: int = 1024**3  # /tmp, the sandbox's only writable place besides the work tree


@dataclass(frozen=True)
class CommandResult:
    exit_code: int | None  # None when the command timed out or its status is unknown
    output: str  # stdout and stderr interleaved, capped
    timed_out: bool
    truncated: bool


class Runtime(Protocol):
    def run(self, command: str, *, timeout: float, max_output: int = 30_000) -> CommandResult: ...


class Deployment(Protocol):
    container_id: str | None
    setup_network: str | None

    def start(self) -> Runtime: ...

    def disconnect_setup_network(self) -> None: ...

    def network_state(self) -> NetworkState: ...

    def stop(self) -> None: ...


class DockerDeployment:
    """One container per task. `stop()` is idempotent and may be called from any thread.

    With `setup_network`, the container is created on that Docker network (a container created
    without one can never join one later) until `disconnect_setup_network()`.
    """

    def __init__(
        self,
        client: docker.DockerClient,
        *,
        image: str,
        work_tree: Path,
        task_id: str,
        instance: str,
        user: str,
        limits: SandboxLimits,
        mount_point: str = MOUNT_POINT,
        setup_network: str | None = None,
        mounts: Sequence[Mount] = (),
        attempt: int = 1,
    ) -> None:
        if not task_id or not instance:
            raise ValueError("task_id and instance must not be empty")
        self.instance = instance
        self.container_id: str | None = None
        self._client = client
        self._image = image
        self._work_tree = Path(work_tree)
        self.task_id = task_id
        self.attempt = attempt
        self._user = user
        self._limits = limits
        self._mount_point = mount_point
        self.setup_network = setup_network
        # Besides the work tree, e.g. an agent's tools and its model socket.
        self._mounts = list(mounts)
        self._setup_network_id: str | None = None  # set while the container is on it
        self._runtime: DockerRuntime | None = None
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._started = False
        self._removed = False

    @property
    def name(self) -> str:
        # Two attempts of one task may briefly both have a container on one engine.
        return f"async-code-{self.task_id[:12]}-{self.attempt}"

    def start(self) -> DockerRuntime:
        with self._lock:
            if self._started:
                raise SandboxError("this deployment was already started; create a new one")
            self._started = True
        work_tree = self._work_tree.resolve()
        if not work_tree.is_dir():
            raise SandboxError(f"work tree {work_tree} is not a directory")
        network_mode = self._network_mode()  # first: a missing network fails before any pull
        self._ensure_image()  # may take long: not under the lock, so stop() is not held up
        with self._lock:
            if self._stopped.is_set():
                raise SandboxGone("the sandbox was stopped before it started")
            try:
                container = self._client.containers.create(
                    self._image,
                    entrypoint=_KEEP_ALIVE[:1],
                    command=_KEEP_ALIVE[1:],
                    name=self.name,
                    labels={TASK_LABEL: self.task_id, INSTANCE_LABEL: self.instance,
                            ATTEMPT_LABEL: str(self.attempt)},
                    user=self._user,
                    working_dir=self._mount_point,
                    environment={"HOME": "/tmp"},
                    mounts=[Mount(target=self._mount_point, source=str(work_tree), type="bind"),
                            *self._mounts],
                    # The image's own files stay as built; scratch space is a sized tmpfs
                    # (charged to the memory limit), so the sandbox cannot fill the host's disk
                    # except through the work tree, which runner/disk_watch.py measures.
                    read_only=True,
                    tmpfs={"/tmp": f"rw,nosuid,nodev,size={self._limits.tmp_bytes},mode=1777"},
                    network_mode=network_mode,
                    cap_drop=["ALL"],
                    security_opt=["no-new-privileges"],
                    mem_limit=self._limits.memory,
                    nano_cpus=int(self._limits.cpus * 1_000_000_000),
                    pids_limit=self._limits.pids,
                    init=True,
                )
            except docker.errors.APIError as exc:
                raise SandboxError(f"cannot create sandbox container {self.name}: {_explain(exc)}") from exc
            self.container_id = container.id
            try:
                container.start()
            except docker.errors.APIError as exc:
                self._remove()
                raise SandboxError(f"cannot start sandbox container {self.name}: {_explain(exc)}") from exc
            if self.setup_network is not None:
                self._setup_network_id = network_mode
            log.info("sandbox %s started for task %s (image %s, network %s)", self.name,
                     self.task_id, self._image, self.setup_network or "none")
            self._runtime = DockerRuntime(
                self._client, container.id, user=self._user, workdir=self._mount_point, stopped=self._stopped
            )
            return self._runtime

    def disconnect_setup_network(self) -> None:
        """Take the setup network away from the running sandbox; nothing to do without one.

        Raises SandboxGone when the sandbox was stopped and SandboxError when the engine refuses:
        either way nothing may run in the sandbox after it.
        """
        with self._lock:
            if self._setup_network_id is None:
                return
            if self._stopped.is_set() or self.container_id is None:
                raise SandboxGone("the sandbox was stopped")
            try:
                self._client.api.disconnect_container_from_network(self.container_id,
                                                                   self._setup_network_id)
            except (docker.errors.DockerException, requests.RequestException) as exc:
                if self._stopped.is_set():
                    raise SandboxGone("the sandbox was stopped") from exc
                raise SandboxError(f"cannot disconnect sandbox container {self.name} from the setup "
                                   f"network {self.setup_network}: {_explain(exc)}") from exc
            self._setup_network_id = None
        log.info("sandbox %s disconnected from the setup network %s", self.name, self.setup_network)

    def network_state(self) -> NetworkState:
        """What the running sandbox can reach: the interfaces its processes see in
        /sys/class/net, and the networks the engine attaches it to."""
        if self._runtime is None or self.container_id is None:
            raise SandboxError("the sandbox was not started")
        listed = self._runtime.run(_LIST_INTERFACES, timeout=_LIST_INTERFACES_TIMEOUT, max_output=4096)
        if listed.exit_code != 0 or listed.truncated:
            raise SandboxError("cannot list the sandbox's network interfaces: "
                               + ("the listing timed out" if listed.timed_out else
                                  f"exit code {listed.exit_code}, output {listed.output[:200]!r}"))
        try:
            info = self._client.api.inspect_container(self.container_id)
        except docker.errors.NotFound as exc:
            raise SandboxGone("the sandbox container no longer exists") from exc
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise SandboxError(f"cannot inspect sandbox container {self.name}: {_explain(exc)}") from exc
        networks = (info.get("NetworkSettings") or {}).get("Networks") or {}
        return NetworkState(interfaces=tuple(sorted(listed.output.split())),
                            networks=tuple(sorted(networks)))

    def stop(self) -> None:
        """Remove the container; a command running meanwhile raises SandboxGone.

        Never raises: it runs in `finally` blocks and timer threads. A container that could not
        be removed is logged, and remove_task_containers() catches it on the next recovery pass.
        """
        # Set first: a command running in another thread notices it without waiting for the lock.
        self._stopped.set()
        with self._lock:
            self._remove()

    def _remove(self) -> None:
        if self.container_id is None or self._removed:
            return
        try:
            self._client.api.remove_container(self.container_id, force=True, v=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: a removal is already in progress
                log.error("could not remove sandbox container %s: %s", self.name, _explain(exc))
                return
        except (docker.errors.DockerException, requests.RequestException) as exc:
            log.error("could not remove sandbox container %s: %s", self.name, exc)
            return
        self._removed = True
        log.info("sandbox %s removed", self.name)

    def _network_mode(self) -> str:
        """`none`, or the id of the setup network, checked to exist and to be one a container
        can leave again (an id prefix could name the host's own network)."""
        if self.setup_network is None:
            return "none"
        try:
            network = self._client.api.inspect_network(self.setup_network)
        except docker.errors.NotFound:
            raise SetupNetworkNotFound(self.setup_network) from None
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise SandboxError(f"cannot inspect the setup network {self.setup_network}: "
                               f"{_explain(exc)}") from exc
        if network.get("Driver") in _PERMANENT_NETWORK_DRIVERS:
            raise SandboxError(f"the setup network {self.setup_network} is Docker's "
                               f"{network.get('Name')!r} network, which a container cannot leave")
        return network["Id"]

    def _ensure_image(self) -> None:
        try:
            self._client.images.get(self._image)
            return
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.APIError as exc:
            raise SandboxError(f"cannot inspect sandbox image {self._image}: {_explain(exc)}") from exc
        log.info("pulling sandbox image %s (first use)", self._image)
        try:
            self._client.images.pull(self._image)
        except docker.errors.DockerException as exc:
            raise SandboxError(
                f"sandbox image {self._image} is not on this host and pulling it failed: {_explain(exc)}. "
                "Check the image name, or build/load the image on the Docker host."
            ) from exc


class DockerRuntime:
    """Runs commands in a started container as the sandbox user."""

    def __init__(
        self,
        client: docker.DockerClient,
        container_id: str,
        *,
        user: str,
        workdir: str,
        stopped: threading.Event | None = None,
    ) -> None:
        self._api = client.api
        self._container_id = container_id
        self._user = user
        self._workdir = workdir
        self._stopped = stopped if stopped is not None else threading.Event()

    def run(self, command: str, *, timeout: float, max_output: int = 30_000) -> CommandResult:
        if max_output <= 0:
            raise ValueError("max_output must be positive")
        log.debug("running %r (timeout %g s)", command[:200], timeout)
        output = _CappedOutput(max_output)
        # One pipe for stdout and stderr keeps their lines in the order they were written.
        exit_code, timed_out = self._execute(
            lambda backstop: ["sh", "-c", 'exec timeout -s KILL "$1" sh -c "$2" 2>&1', "sh",
                              backstop, command], {}, timeout, output.add, output.add)
        text, truncated = output.text()
        return CommandResult(exit_code=exit_code, output=text, timed_out=timed_out, truncated=truncated)

    def run_process(self, argv: Sequence[str], *, environment: Mapping[str, str], timeout: float,
                    on_stdout: Callable[[bytes], None], max_stderr: int = 30_000) -> CommandResult:
        """Run `argv` (no shell) with `environment` added, feeding its stdout to `on_stdout` as
        it arrives, from another thread; the result's output is its stderr, capped. Killed with
        everything it started at `timeout`, like `run`."""
        if not argv:
            raise ValueError("argv must not be empty")
        if max_stderr <= 0:
            raise ValueError("max_stderr must be positive")
        errors = _CappedOutput(max_stderr)
        exit_code, timed_out = self._execute(
            lambda backstop: ["sh", "-c", 'limit="$1"; shift; exec timeout -s KILL "$limit" "$@"',
                              "sh", backstop, *argv], environment, timeout, on_stdout, errors.add)
        text, truncated = errors.text()
        return CommandResult(exit_code=exit_code, output=text, timed_out=timed_out, truncated=truncated)

    def start_background(self, argv: Sequence[str]) -> str:
        """Start `argv` detached, for as long as the sandbox runs; returns the exec's id."""
        if self._stopped.is_set():
            raise SandboxGone("the sandbox was stopped")
        exec_id = self._exec_create(list(argv), environment=None)
        try:
            self._api.exec_start(exec_id, detach=True)
        except docker.errors.APIError as exc:
            raise self._translate(exc, "start a background process") from exc
        return exec_id

    def _execute(self, argv_with_backstop: Callable[[str], list[str]],
                 environment: Mapping[str, str], timeout: float,
                 on_stdout: Callable[[bytes], None],
                 on_stderr: Callable[[bytes], None]) -> tuple[int | None, bool]:
        """Run the argv built around the in-container backstop (seconds, as text); returns the
        exit code (None when it timed out) and whether it timed out."""
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if self._stopped.is_set():
            raise SandboxGone("the sandbox was stopped")
        run_id = secrets.token_hex(16)
        backstop = str(math.ceil(timeout) + _BACKSTOP_EXTRA)
        exec_id = self._exec_create(argv_with_backstop(backstop),
                                    environment={**environment, _RUN_MARKER: run_id})
        started = time.monotonic()
        try:
            stream = _ExecStream(self._api.exec_start(exec_id, socket=True))
        except docker.errors.APIError as exc:
            raise self._translate(exc, "start the command") from exc
        pump = threading.Thread(target=stream.pump, args=(on_stdout, on_stderr),
                                name="sandbox-output", daemon=True)
        pump.start()
        try:
            timed_out = not self._wait(pump, started + timeout, stream)
            if timed_out:
                log.info("command timed out after %g s; killing its processes", timeout)
                self._kill_run(run_id)
                # Background processes that escaped the kill may hold the stream open: cut it.
                self._wait(pump, time.monotonic() + _KILL_GRACE, stream)
        finally:
            stream.abort()
            pump.join(_KILL_GRACE)
            stream.close()
        return (None if timed_out else self._exit_code(exec_id)), timed_out

    def _wait(self, pump: threading.Thread, deadline: float, stream: _ExecStream) -> bool:
        """Wait for the output to end; False at the deadline. Raises SandboxGone on stop()."""
        while pump.is_alive():
            if self._stopped.is_set():
                stream.abort()
                raise SandboxGone("the sandbox was stopped while the command ran")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            pump.join(min(remaining, _POLL_INTERVAL))
        return True

    def _exit_code(self, exec_id: str) -> int | None:
        try:
            info = self._api.exec_inspect(exec_id)
        except docker.errors.APIError as exc:
            raise self._translate(exc, "read the command's exit status") from exc
        # A container killed under the command also ends the stream; that is not an exit status.
        self._check_alive()
        return None if info.get("Running") else info.get("ExitCode")

    def _kill_run(self, run_id: str) -> None:
        try:
            exec_id = self._exec_create(
                ["sh", "-c", _KILL_SCRIPT, "sh", f"{_RUN_MARKER}={run_id}"], environment=None
            )
            self._api.exec_start(exec_id, detach=True)
        except SandboxGone:
            raise
        except (SandboxError, docker.errors.APIError) as exc:
            log.warning("could not kill the timed-out command's processes: %s", exc)

    def _exec_create(self, argv: list[str], *, environment: dict[str, str] | None) -> str:
        try:
            created = self._api.exec_create(
                self._container_id,
                argv,
                stdout=True,
                stderr=True,
                stdin=False,
                tty=False,
                user=self._user,
                workdir=self._workdir,
                environment=environment,
            )
        except docker.errors.APIError as exc:
            raise self._translate(exc, "run a command") from exc
        return created["Id"]

    def _check_alive(self) -> None:
        if self._stopped.is_set():
            raise SandboxGone("the sandbox was stopped")
        try:
            state = self._api.inspect_container(self._container_id)["State"]
        except docker.errors.NotFound as exc:
            raise SandboxGone("the sandbox container no longer exists") from exc
        except docker.errors.APIError as exc:
            raise SandboxError(f"cannot inspect the sandbox container: {_explain(exc)}") from exc
        if not state.get("Running") or self._stopped.is_set():
            raise SandboxGone("the sandbox container is no longer running")

    def _translate(self, exc: docker.errors.APIError, action: str) -> SandboxError:
        # 404: container (or exec) removed; 409: container stopped.
        if self._stopped.is_set() or exc.status_code in (404, 409):
            return SandboxGone(f"cannot {action}: the sandbox is gone ({_explain(exc)})")
        return SandboxError(f"cannot {action} in the sandbox: {_explain(exc)}")


def attempt_of(labels: dict[str, str] | None) -> tuple[str, int | None]:
    """(task id, attempt) a container's labels name; attempt None for a container made before
    attempts were labelled."""
    labels = labels or {}
    attempt = labels.get(ATTEMPT_LABEL, "")
    return labels.get(TASK_LABEL, ""), int(attempt) if attempt.isdigit() else None


def attempts_with_containers(client: docker.DockerClient,
                             instance: str) -> set[tuple[str, int | None]]:
    """The attempts of this instance's tasks that have a sandbox container, running or not."""
    return {attempt_of(summary.get("Labels")) for summary in _instance_containers(client, instance)}


def task_containers(client: docker.DockerClient, instance: str, task_id: str) -> list[dict]:
    """This instance's containers of one task, whichever attempt made them."""
    return client.api.containers(all=True, filters={
        "label": [f"{TASK_LABEL}={task_id}", f"{INSTANCE_LABEL}={instance}"]})


def _instance_containers(client: docker.DockerClient, instance: str) -> list[dict]:
    # Both labels must match: another instance on the same engine keeps its own containers.
    return client.api.containers(all=True, filters={
        "label": [TASK_LABEL, f"{INSTANCE_LABEL}={instance}"]})


def remove_task_containers(client: docker.DockerClient, instance: str,
                           keep: Collection[tuple[str, int]] = ()) -> list[str]:
    """Force-remove this instance's task containers whose (task id, attempt) is not in `keep`;
    return the task ids of those removed. One made before attempts were labelled stays while
    any attempt of its task is kept.

    Recovery (at start-up and every 30 s) uses it to clean up after runners that crashed, and
    after attempts that were superseded.
    """
    kept_tasks = {task_id for task_id, _ in keep}
    removed: list[str] = []
    for summary in _instance_containers(client, instance):
        task_id, attempt = attempt_of(summary.get("Labels"))
        if (task_id, attempt) in keep or (attempt is None and task_id in kept_tasks):
            continue
        try:
            client.api.remove_container(summary["Id"], force=True, v=True)
        except docker.errors.NotFound:
            continue
        except docker.errors.APIError as exc:
            if exc.status_code != 409:
                # One container that will not go must not keep the others: the next pass retries.
                log.warning("cannot remove leftover sandbox container %s: %s",
                            summary["Id"][:12], _explain(exc))
                continue
        log.info("removed leftover sandbox container %s (task %s, attempt %s)",
                 summary["Id"][:12], task_id, attempt)
        removed.append(task_id)
    return removed


class _ExecStream:
    """The multiplexed stdout/stderr stream of one exec.

    Reads go through the HTTP response's buffered reader: bytes that arrived together with the
    response headers sit in its buffer and would be lost reading the bare socket.
    """

    def __init__(self, sock) -> None:
        self._response = getattr(sock, "_response", None)
        self._socket = getattr(sock, "_sock", sock)
        self._sock_io = sock
        try:
            self._reader = self._response.raw._fp.fp
        except AttributeError:
            self._reader = sock
        self._closed = False

    def pump(self, sink, error_sink=None) -> None:
        """Feed payload bytes to `sink`, stderr's to `error_sink` when given, until the stream
        ends (runs in its own thread)."""
        try:
            while True:
                header = self._read_exactly(8)
                if header is None:
                    return
                size = int.from_bytes(header[4:8], "big")
                target = error_sink if header[0] == 2 and error_sink is not None else sink
                while size > 0:
                    chunk = self._reader.read(min(size, _READ_CHUNK))
                    if not chunk:
                        return
                    target(chunk)
                    size -= len(chunk)
        except (OSError, ValueError):
            return  # aborted from another thread

    def _read_exactly(self, n: int) -> bytes | None:
        data = b""
        while len(data) < n:
            chunk = self._reader.read(n - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def abort(self) -> None:
        """Make a blocked read return; safe to call from another thread and more than once."""
        try:
            self._socket.shutdown(socket.SHUT_RDWR)
        except (OSError, AttributeError):
            pass

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for closable in (self._response, self._sock_io, self._socket):
            try:
                if closable is not None:
                    closable.close()
            except (OSError, ValueError, AttributeError):
                pass


class _CappedOutput:
    """Keeps the head and the tail of a stream of bytes, in bounded memory."""

    def __init__(self, max_chars: int) -> None:
        self._max_chars = max_chars
        # UTF-8 needs at most 4 bytes per character.
        self._budget = 4 * max_chars
        self._head = bytearray()
        self._tail = bytearray()
        self._total = 0

    def add(self, chunk: bytes) -> None:
        self._total += len(chunk)
        room = self._budget - len(self._head)
        if room > 0:
            self._head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self._tail += chunk
            if len(self._tail) > 2 * self._budget:
                del self._tail[: len(self._tail) - self._budget]

    def text(self) -> tuple[str, bool]:
        head = self._head.decode("utf-8", errors="replace")
        if not self._tail and len(head) <= self._max_chars:
            return head, False
        dropped = self._total > len(self._head) + len(self._tail)
        # Without a gap the tail may reach back into the head; with one, the kept tail is long
        # enough (>= 4 * max_chars bytes) for the characters shown.
        tail = (self._tail if dropped else self._head + self._tail).decode("utf-8", errors="replace")
        marker = (
            f"\n\n[... output truncated: {self._total} bytes in all; "
            f"showing the beginning and the end, at most {self._max_chars} characters ...]\n\n"
        )
        room = self._max_chars - len(marker)
        if room < 2:
            return head[: self._max_chars], True
        keep_head = room // 2
        keep_tail = room - keep_head
        return head[:keep_head] + marker + tail[-keep_tail:], True


def _explain(exc: Exception) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc)


@dataclass(frozen=True)
class SandboxUser:
    """Who the sandbox runs as (`container_user`), and who must own the work tree on the host
    for it to write there (`host_owner`): the same ids, unless the engine remaps them."""

    container_user: str
    host_owner: tuple[int, int]


def sandbox_user(sandbox_uid: int, remapped_root: tuple[int, int] | None, *,
                 euid: int, egid: int) -> SandboxUser:
    """A root service hands the tree to `sandbox_uid` (ASYNC_CODE_SANDBOX_UID), a user of no
    one else's; a service that is not root can only give the sandbox its own uid. With
    user-namespace remapping, container uid N is host uid base + N.
    """
    if euid != 0:
        if remapped_root is not None:
            raise SandboxError("the Docker engine remaps user namespaces, so the sandbox's files "
                               "on the host belong to remapped ids: run the service as root")
        return SandboxUser(f"{euid}:{egid}", (euid, egid))
    base_uid, base_gid = remapped_root or (0, 0)
    return SandboxUser(f"{sandbox_uid}:{sandbox_uid}", (base_uid + sandbox_uid, base_gid + sandbox_uid))


def remapped_root(engine_info: dict) -> tuple[int, int] | None:
    """The host uid and gid of a container's root under user-namespace remapping, or None.

    The engine does not report them directly; its data directory is named after them
    (`/var/lib/docker/100000.100000`) whenever `userns-remap` is on.
    """
    options = engine_info.get("SecurityOptions") or []
    if not any(option == "name=userns" or option.startswith("name=userns,") for option in options):
        return None
    uid, _, gid = Path(engine_info.get("DockerRootDir") or "").name.partition(".")
    if not (uid.isdigit() and gid.isdigit()):
        raise SandboxError("the Docker engine remaps user namespaces, but its data directory "
                           f"{engine_info.get('DockerRootDir')!r} does not say to which ids")
    return int(uid), int(gid)