"""The agent CLIs a sandbox runs, pinned, and how a sandbox starts them.

`scripts/agent-tools` installs them into one directory, which the runner bind-mounts read-only
into every sandbox at MOUNT_POINT, whatever the sandbox's image: Claude Code's musl binary with
musl's libc as its loader, Codex's static binary, and the forwarder (forwarder.c here), which
exposes the runner's per-task model socket on the sandbox's loopback. The installer records each
file in a manifest (tool -> version, file, sha256); `verify()` checks the files against it and
its versions against the pins below, the one place they are kept. Standard library only: the
installer runs this module before any virtualenv exists.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

# Where the tools directory appears inside a sandbox.
MOUNT_POINT = "/opt/async-code/agents"
MANIFEST = "manifest.json"
ENV_VAR = "ASYNC_CODE_AGENT_TOOLS"


@dataclass(frozen=True)
class NpmPin:
    """A CLI's native binary, taken from one npm package tarball (never installed with npm)."""

    tool: str  # the manifest's key and the binary's file name in the tools directory
    version: str  # the CLI's own version, as `--version` prints it
    package: str  # the npm package spec `npm pack` fetches
    member: str  # the binary's path inside the tarball
    integrity: str  # the tarball's sha512, as the registry's `dist.integrity` gives it


# To update: pick versions, set them here with `npm view PACKAGE@VERSION dist.integrity` for each
# package spec, then run scripts/agent-tools (it refuses a tarball that does not match).
CLAUDE = NpmPin(
    tool="claude",
    version="2.1.332",
    package="@anthropic-ai/claude-code-linux-x64-musl@2.1.332",
    member="package/claude",
    integrity="sha512-QoQzwipnqRAdBKDAJNJ2Qvl37G6x8nCugfOQa+nuMcGIRgGEOLeWoq3pTLMQRScL37estAQBGH9ygR3WFVbIfw==",
)
CODEX = NpmPin(
    tool="codex",
    version="0.171.0",
    package="@openai/codex@0.171.0-linux-x64",
    member="package/vendor/x86_64-unknown-linux-musl/bin/codex",
    integrity="sha512-l66NZkQgdk2C3pbcfULDz42yEUB581MVA6I+Y43Wp4OIqEy73HCdmZ0GTjeAHY2ycuH4N00d9VsLrwT1jxshTw==",
)
NPM_PINS = {pin.tool: pin for pin in (CLAUDE, CODEX)}

# musl's libc.so is also its dynamic loader; Claude Code's binary asks for it by this name.
MUSL = "musl"
LOADER_FILE = "ld-musl-x86_64.so.1"
FORWARDER = "forwarder"
FORWARDER_SOURCE = Path(__file__).with_name("forwarder.c")

# tool -> its file in the tools directory
FILES = {CLAUDE.tool: CLAUDE.tool, CODEX.tool: CODEX.tool, MUSL: LOADER_FILE, FORWARDER: FORWARDER}


class AgentToolsError(RuntimeError):
    """The tools directory is missing, incomplete, or does not match its manifest or the pins."""


@dataclass(frozen=True)
class ManifestEntry:
    version: str
    file: str
    sha256: str


def tools_dir(environ: Mapping[str, str], data_path: Path) -> Path:
    """ASYNC_CODE_AGENT_TOOLS when set, else `agent-tools` in the service's data directory."""
    configured = environ.get(ENV_VAR, "").strip()
    return Path(configured).expanduser().resolve() if configured else data_path / "agent-tools"


def forwarder_version() -> str:
    """The forwarder is built from source here, so its version is its source's hash."""
    return "source-sha256:" + hashlib.sha256(FORWARDER_SOURCE.read_bytes()).hexdigest()[:16]


def expected_versions() -> dict[str, str | None]:
    """tool -> the version the manifest must record (None: whatever the host's package was)."""
    return {CLAUDE.tool: CLAUDE.version, CODEX.tool: CODEX.version, MUSL: None,
            FORWARDER: forwarder_version()}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def npm_integrity(path: Path) -> str:
    """A file's Subresource Integrity string in npm's form: sha512-<base64>."""
    digest = hashlib.sha512()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return "sha512-" + base64.b64encode(digest.digest()).decode()


def read_manifest(directory: Path) -> dict[str, ManifestEntry]:
    path = Path(directory) / MANIFEST
    try:
        raw = json.loads(path.read_text())
        return {tool: ManifestEntry(version=str(entry["version"]), file=str(entry["file"]),
                                    sha256=str(entry["sha256"]))
                for tool, entry in raw.items()}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as error:
        raise AgentToolsError(f"{path} is not a manifest the installer wrote ({error}); "
                              "run scripts/agent-tools again") from None


def _readable_by_all(mode: int, need: int) -> bool:
    return mode & need == need


def problems(directory: Path) -> dict[str, str]:
    """tool -> what is wrong with it in `directory` (empty when every tool is as pinned)."""
    directory = Path(directory)
    found: dict[str, str] = {}
    try:
        manifest = read_manifest(directory)
    except AgentToolsError as error:
        return {tool: str(error) for tool in FILES}
    try:
        dir_mode = directory.stat().st_mode
    except OSError:
        return {tool: f"{directory} does not exist" for tool in FILES}
    # The sandbox's user is not the owner: the directory and each file must be open to all.
    dir_problem = None if _readable_by_all(dir_mode, 0o005) else f"{directory} is not readable by all"
    for tool, file in FILES.items():
        entry = manifest.get(tool)
        expected = expected_versions()[tool]
        if entry is None:
            found[tool] = "not installed"
        elif entry.file != file:
            found[tool] = f"the manifest names the file {entry.file!r}, not {file!r}"
        elif expected is not None and entry.version != expected:
            found[tool] = f"version {entry.version} is installed, {expected} is pinned"
        else:
            path = directory / file
            try:
                st = path.lstat()
            except OSError:
                found[tool] = f"{path} is missing"
                continue
            if not stat.S_ISREG(st.st_mode):
                found[tool] = f"{path} is not a regular file"
            elif not _readable_by_all(st.st_mode, 0o005):
                found[tool] = f"{path} is not readable and executable by all"
            elif sha256_file(path) != entry.sha256:
                found[tool] = f"{path} does not match its manifest entry (sha256 differs)"
            elif dir_problem:
                found[tool] = dir_problem
    return found


def verify(directory: Path) -> dict[str, ManifestEntry]:
    """The manifest of a complete, untampered tools directory; AgentToolsError otherwise."""
    wrong = problems(directory)
    if wrong:
        raise AgentToolsError(
            f"the agent tools in {directory} cannot be used; run scripts/agent-tools --dir "
            f"{directory}:\n" + "\n".join(f"  - {tool}: {why}" for tool, why in wrong.items()))
    return read_manifest(directory)


def record(directory: Path, tool: str, version: str) -> ManifestEntry:
    """Add or replace `tool`'s manifest entry for the file now installed (atomically)."""
    directory = Path(directory)
    if tool not in FILES:
        raise AgentToolsError(f"unknown tool {tool!r}; known: {', '.join(FILES)}")
    entry = ManifestEntry(version=version, file=FILES[tool], sha256=sha256_file(directory / FILES[tool]))
    try:
        manifest = read_manifest(directory)
    except AgentToolsError:
        manifest = {}
    manifest[tool] = entry
    staged = directory / (MANIFEST + ".new")
    staged.write_text(json.dumps({name: asdict(manifest[name]) for name in sorted(manifest)},
                                 indent=2) + "\n")
    os.chmod(staged, 0o644)
    os.replace(staged, directory / MANIFEST)
    return entry


def claude_argv(*args: str) -> list[str]:
    """Claude Code in the sandbox, started through musl's loader (no image needs musl)."""
    return [f"{MOUNT_POINT}/{LOADER_FILE}", f"{MOUNT_POINT}/{CLAUDE.tool}", *args]


def codex_argv(*args: str) -> list[str]:
    return [f"{MOUNT_POINT}/{CODEX.tool}", *args]


def forwarder_argv(port: int, socket_path: str) -> list[str]:
    """Relays 127.0.0.1:port inside the sandbox to the model socket at `socket_path` there."""
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is not in 1..65535")
    return [f"{MOUNT_POINT}/{FORWARDER}", str(port), socket_path]
