"""The agent tools as a sandbox gets them: the pinned CLIs run from the read-only tools mount as
the sandbox's user with no network, the forwarder relays the sandbox's loopback to a Unix socket
of the host's, and a tampered tools directory is refused."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from runner import agent_tools
from tests.agent_sandbox import INSTALLER, SOCKET_DIR, AgentSandbox
from tests.conftest import wait_until
from tests.fakes.unix_http import GREETING, UnixHTTPServer, pattern

PORT = 8765
SOCKET = f"{SOCKET_DIR}/model.sock"


@pytest.fixture
def unix_server(agent_sandbox: AgentSandbox):
    server = UnixHTTPServer(agent_sandbox.socket_dir / "model.sock").start()
    yield server
    server.stop()


@pytest.fixture
def forwarder(agent_sandbox: AgentSandbox, unix_server: UnixHTTPServer) -> str:
    """The forwarder running in the sandbox, answering on 127.0.0.1:PORT; its exec id."""
    exec_id = agent_sandbox.start(agent_tools.forwarder_argv(PORT, SOCKET))
    wait_until(lambda: agent_sandbox.run(["wget", "-qO", "/dev/null", url("/hello")])[0] == 0
               or not agent_sandbox.exec_state(exec_id)["Running"],
               30, "the forwarder to answer")
    assert agent_sandbox.exec_state(exec_id)["Running"], "the forwarder exited at start"
    return exec_id


def url(path: str) -> str:
    return f"http://127.0.0.1:{PORT}{path}"


def test_the_sandbox_runs_as_its_user_without_network(agent_sandbox: AgentSandbox):
    assert agent_sandbox.run(["id", "-u"]) == (0, "61000\n")
    assert agent_sandbox.sh("ls /sys/class/net") == (0, "lo\n")
    code, output = agent_sandbox.sh(f"touch {agent_tools.MOUNT_POINT}/x")
    assert code != 0 and "Read-only file system" in output


def test_claude_prints_its_pinned_version(agent_sandbox: AgentSandbox):
    code, output, errors = agent_sandbox.run_split(agent_tools.claude_argv("--version"))
    assert code == 0, errors
    assert output == f"{agent_tools.CLAUDE.version} (Claude Code)\n"


def test_codex_prints_its_pinned_version(agent_sandbox: AgentSandbox):
    # (With HOME under /tmp, Codex warns on stderr that it makes no helper links there.)
    code, output, errors = agent_sandbox.run_split(agent_tools.codex_argv("--version"))
    assert code == 0, errors
    assert output == f"codex-cli {agent_tools.CODEX.version}\n"


def test_the_forwarder_relays_a_request_to_the_unix_socket(agent_sandbox, unix_server, forwarder):
    unix_server.paths.clear()
    code, output = agent_sandbox.run(["wget", "-qO-", url("/hello?from=sandbox")])
    assert (code, output) == (0, GREETING.decode())
    assert unix_server.paths == ["/hello?from=sandbox"]


def test_the_forwarder_serves_concurrent_connections(agent_sandbox, unix_server, forwarder):
    # The server answers none of these until all are in flight: relayed one at a time, they fail.
    count = 8
    unix_server.together = threading.Barrier(count, timeout=30)
    code, output = agent_sandbox.sh(
        f"for i in $(seq {count}); do wget -qO /tmp/out$i '{url('/together')}?i='$i & done; "
        "fail=0; for job in $(jobs -p); do wait $job || fail=1; done; "
        f"for i in $(seq {count}); do cat /tmp/out$i; done; exit $fail")
    assert code == 0, output
    assert output.splitlines() == [f"together {i}" for i in range(1, count + 1)]


def test_the_forwarder_carries_large_bodies_both_ways(agent_sandbox, unix_server, forwarder):
    size = 3 * 1024 * 1024 + 17
    code, output = agent_sandbox.run(["sh", "-c", f"wget -qO- '{url(f'/bytes?n={size}')}' | sha256sum"])
    assert code == 0, output
    assert output.split()[0] == hashlib.sha256(pattern(size)).hexdigest()

    code, output = agent_sandbox.sh(
        # base64: busybox wget sends a --post-file up to its first NUL byte.
        f"head -c {size * 3 // 4} /dev/urandom | base64 | head -c {size} > /tmp/up && wget -qO /tmp/down --post-file /tmp/up "
        f"'{url('/echo')}' && sha256sum /tmp/up /tmp/down && wc -c < /tmp/down")
    assert code == 0, output
    sent, back, length = output.split()[0], output.split()[2], int(output.split()[4])
    assert unix_server.received == [sent]
    assert (back, length) == (sent, size)


def test_the_forwarder_passes_on_each_end_of_stream(agent_sandbox, unix_server, forwarder):
    # The server answers only after the client's end of stream, and marks the end of its answer
    # only by closing: without half-close either way, `nc` waits until `timeout` kills it.
    size = 1024 * 1024 + 5
    code, output = agent_sandbox.sh(
        f"head -c {size} /dev/urandom > /tmp/body && sha256sum /tmp/body && "
        f"{{ printf 'POST /until-eof HTTP/1.0\\r\\n\\r\\n'; cat /tmp/body; }} "
        f"| timeout 30 nc 127.0.0.1 {PORT}")
    assert code == 0, output
    sent = output.split()[0]
    assert unix_server.received == [sent]
    assert output.splitlines()[-1] == f"{size} {sent}"


def test_the_forwarder_listens_on_loopback_only(agent_sandbox, forwarder):
    # /proc/net/tcp: local address as hex IPv4:port; state 0A is LISTEN.
    code, output = agent_sandbox.run(["cat", "/proc/net/tcp"])
    assert code == 0, output
    listening = [line.split()[1] for line in output.splitlines()[1:] if line.split()[3] == "0A"]
    assert listening == [f"0100007F:{PORT:04X}"]


@pytest.mark.parametrize("argv", [
    ["0.0.0.0:8765", SOCKET],
    ["localhost:8765", SOCKET],
    ["8765", SOCKET, "0.0.0.0"],
    ["0", SOCKET],
    ["65536", SOCKET],
    ["8765"],
])
def test_the_forwarder_takes_only_a_port(agent_sandbox: AgentSandbox, argv):
    code, output = agent_sandbox.run([f"{agent_tools.MOUNT_POINT}/forwarder", *argv])
    assert code == 2
    assert output.startswith("usage: forwarder LISTEN_PORT UNIX_SOCKET_PATH")


def test_the_forwarder_exits_cleanly_on_sigterm(agent_sandbox, forwarder):
    code, pid = agent_sandbox.run(["pidof", "forwarder"])
    assert code == 0 and pid.strip().isdigit(), pid
    # A connection still open when the signal comes must not keep it alive.
    agent_sandbox.start(["sh", "-c", f"sleep 60 | nc 127.0.0.1 {PORT}"])
    wait_until(lambda: f"{PORT:04X} " in " ".join(
        line.split()[1] + " " + line.split()[3] for line in
        agent_sandbox.run(["cat", "/proc/net/tcp"])[1].splitlines()[1:] if line.split()[3] == "01"),
        30, "a connection to the forwarder")
    assert agent_sandbox.run(["kill", "-TERM", pid.strip()])[0] == 0
    state = wait_until(lambda: (s := agent_sandbox.exec_state(forwarder)) and not s["Running"] and s,
                       30, "the forwarder to exit")
    assert state["ExitCode"] == 0
    assert agent_sandbox.run(["wget", "-qO-", url("/hello")])[0] != 0


def test_the_sandbox_argv_starts_each_tool_from_the_mount():
    mount = agent_tools.MOUNT_POINT
    assert agent_tools.claude_argv("-p", "hi") == [
        f"{mount}/ld-musl-x86_64.so.1", f"{mount}/claude", "-p", "hi"]
    assert agent_tools.codex_argv("exec") == [f"{mount}/codex", "exec"]
    assert agent_tools.forwarder_argv(8080, "/run/m.sock") == [f"{mount}/forwarder", "8080", "/run/m.sock"]
    with pytest.raises(ValueError):
        agent_tools.forwarder_argv(0, "/run/m.sock")


def _copy_tools(source: Path, target: Path, tampered: str | None = None) -> None:
    """Copy a tools directory: hard links where possible (the CLIs are large), a real copy of
    the file that is to be tampered with."""
    target.mkdir()
    for path in source.iterdir():
        if path.name.startswith("."):
            continue
        if path.name == tampered:
            shutil.copy2(path, target / path.name)
            continue
        try:
            os.link(path, target / path.name)
        except OSError:
            shutil.copy2(path, target / path.name)


def test_an_untouched_copy_verifies(agent_tools_dir, tmp_path):
    _copy_tools(agent_tools_dir, tmp_path / "tools")
    manifest = agent_tools.verify(tmp_path / "tools")
    assert manifest["claude"].version == agent_tools.CLAUDE.version
    assert manifest["codex"].version == agent_tools.CODEX.version
    assert manifest["forwarder"].version == agent_tools.forwarder_version()
    assert set(manifest) == set(agent_tools.FILES)


@pytest.mark.parametrize("tool", sorted(agent_tools.FILES))
def test_a_tampered_binary_is_refused(agent_tools_dir, tmp_path, tool):
    copy = tmp_path / "tools"
    file = agent_tools.FILES[tool]
    _copy_tools(agent_tools_dir, copy, tampered=file)
    with open(copy / file, "r+b") as f:  # one byte in the middle: same size, other content
        middle = os.path.getsize(copy / file) // 2
        f.seek(middle)
        byte = f.read(1)
        f.seek(middle)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert agent_tools.problems(copy) == {tool: f"{copy / file} does not match its manifest entry "
                                                "(sha256 differs)"}
    with pytest.raises(agent_tools.AgentToolsError, match=f"{tool}: .*sha256 differs"):
        agent_tools.verify(copy)


def test_a_manifest_for_other_versions_is_refused(agent_tools_dir, tmp_path):
    copy = tmp_path / "tools"
    _copy_tools(agent_tools_dir, copy)
    manifest = json.loads((copy / agent_tools.MANIFEST).read_text())
    manifest["codex"]["version"] = "0.1.0"
    (copy / agent_tools.MANIFEST).unlink()  # a hard link to the cache's: replace, do not write
    (copy / agent_tools.MANIFEST).write_text(json.dumps(manifest))
    assert agent_tools.problems(copy) == {
        "codex": f"version 0.1.0 is installed, {agent_tools.CODEX.version} is pinned"}


def test_a_missing_directory_is_refused_with_what_to_run(tmp_path):
    with pytest.raises(agent_tools.AgentToolsError, match="run scripts/agent-tools --dir"):
        agent_tools.verify(tmp_path / "nowhere")


def test_the_installer_leaves_a_verified_directory_alone(agent_tools_dir):
    before = {path.name: (path.stat().st_ino, path.stat().st_mtime_ns)
              for path in agent_tools_dir.iterdir()}
    result = subprocess.run([str(INSTALLER), "--dir", str(agent_tools_dir)], capture_output=True,
                            text=True, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"==> agent tools: {agent_tools_dir.resolve()} up to date\n"
    after = {path.name: (path.stat().st_ino, path.stat().st_mtime_ns)
             for path in agent_tools_dir.iterdir()}
    assert after == before


def test_the_installer_replaces_only_what_is_stale(agent_tools_dir, tmp_path):
    copy = tmp_path / "tools"
    _copy_tools(agent_tools_dir, copy, tampered="forwarder")
    with open(copy / "forwarder", "ab") as f:
        f.write(b"tampered")
    claude = (copy / "claude").stat().st_ino
    # npm pointed at a closed loopback port: the CLIs, still as pinned, must not be fetched again.
    env = {**os.environ, "npm_config_registry": "http://127.0.0.1:9/", "npm_config_fetch_retries": "0"}
    result = subprocess.run([str(INSTALLER), "--dir", str(copy)], capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [line for line in result.stdout.splitlines() if "system packages" not in line] == [
        "==> forwarder: built", f"==> agent tools: {copy} ready"]
    assert agent_tools.problems(copy) == {}
    assert (copy / "claude").stat().st_ino == claude
    assert sorted(path.name for path in copy.iterdir()) == sorted([*agent_tools.FILES.values(),
                                                                   agent_tools.MANIFEST, ".lock"])
