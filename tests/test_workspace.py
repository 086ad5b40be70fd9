"""runner.workspace against real git, served over loopback smart HTTP with Basic auth."""

from __future__ import annotations

import base64
import os
import shutil
import secrets
import stat
import tempfile
import subprocess
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import pytest

from runner import workspace
from runner.workspace import (
    FETCH_DEPTH,
    Changes,
    EmptyRepository,
    FileStat,
    GitError,
    PushRejected,
    Workspace,
    collect_changes,
    commit,
    prepare,
    push,
    remove,
)
from tests.hostile_repos import assert_the_plants_are_live, commit_library, plant_repository
from tests.unprivileged import needs_root, run_as

SANDBOX_UID = 1000
BINARY = bytes(range(256)) * 4



def _plain_git_env() -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": "/nonexistent",
        "LC_ALL": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": "Upstream Author",
        "GIT_AUTHOR_EMAIL": "upstream@example.com",
        "GIT_COMMITTER_NAME": "Upstream Author",
        "GIT_COMMITTER_EMAIL": "upstream@example.com",
    }


def _git(*args: str | Path, check: bool = True) -> str:
    """Plain git for setting up and inspecting test repositories (not the code under test)."""
    result = subprocess.run(
        ["git", *map(str, args)], env=_plain_git_env(), capture_output=True, timeout=60, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"git {args} failed: {result.stderr.decode(errors='replace')}")
    return result.stdout.decode(errors="replace")


class _GitServer(ThreadingHTTPServer):
    """`git http-backend` behind Basic auth that accepts exactly one token."""

    daemon_threads = False  # server_close() then waits for every request to finish

    def __init__(self, project_root: Path, token: str) -> None:
        super().__init__(("127.0.0.1", 0), _GitBackendHandler)
        self.project_root = project_root
        credentials = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        self.expected_authorization = f"Basic {credentials}"
        self.requests: list[tuple[str, str, str | None]] = []
        self.stall = False
        self.release = threading.Event()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server_port}/{name}"


class _GitBackendHandler(BaseHTTPRequestHandler):
    server: _GitServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        authorization = self.headers.get("Authorization")
        self.server.requests.append((self.command, self.path, authorization))
        if self.server.stall:
            self.server.release.wait(30)
            return
        if authorization != self.server.expected_authorization:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = self._request_body()
        path, _, query = self.path.partition("?")
        env = _plain_git_env() | {
            "GIT_PROJECT_ROOT": str(self.server.project_root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REMOTE_USER": "x-access-token",  # enables receive-pack
            "REMOTE_ADDR": "127.0.0.1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": unquote(path),
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
        }
        for header, variable in (
            ("Git-Protocol", "HTTP_GIT_PROTOCOL"),
            ("Content-Encoding", "HTTP_CONTENT_ENCODING"),
            ("Authorization", "HTTP_AUTHORIZATION"),  # lets a server hook echo it back
        ):
            if header in self.headers:
                env[variable] = self.headers[header]
        backend = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, timeout=60, check=False
        )
        head, _, payload = backend.stdout.partition(b"\r\n\r\n")
        status, headers = 200, []
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _request_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length", 0)))
        chunks = []
        while size := int(self.rfile.readline().split(b";")[0], 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass
        return b"".join(chunks)


@dataclass
class Upstream:
    server: _GitServer
    bare: Path
    url: str
    token: str
    head: str

    def ref(self, name: str) -> str | None:
        out = _git("--git-dir", self.bare, "rev-parse", "--verify", "--quiet", name, check=False).strip()
        return out or None

    def refs(self) -> set[str]:
        return set(_git("--git-dir", self.bare, "for-each-ref", "--format=%(refname)").split())


UPSTREAM_FILES = {
    "README.md": "# Project\n\nOne line.\n",
    "src/app.py": "print('hello')\n",
    "docs/old.txt": "first\nsecond\nthird\n",
    "docs/guide.md": "".join(f"guide line {n}\n" for n in range(20)),
}


@pytest.fixture
def token() -> str:
    return "ghs_" + secrets.token_hex(18)


@pytest.fixture
def server(tmp_path: Path, token: str):
    project_root = tmp_path / "served"
    project_root.mkdir()
    git_server = _GitServer(project_root, token)
    thread = threading.Thread(target=git_server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield git_server
    git_server.release.set()
    git_server.shutdown()
    git_server.server_close()
    thread.join()


def _make_upstream(
    tmp_path: Path,
    server: _GitServer,
    token: str,
    name: str = "repo.git",
    files: dict[str, str | bytes] = UPSTREAM_FILES,
    links: dict[str, Path] | None = None,
    gitlinks: dict[str, str] | None = None,
) -> Upstream:
    bare = server.project_root / name
    _git("init", "--quiet", "--bare", "--initial-branch=main", bare)
    if files:
        source = tmp_path / f"source-{name}"
        _git("init", "--quiet", "--initial-branch=main", source)
        for path, content in files.items():
            _write(source / path, content)
        for path, target in (links or {}).items():
            (source / path).symlink_to(target)
        _git("-C", source, "add", "--all")
        for path, commit_id in (gitlinks or {}).items():  # submodules, as GitHub stores them
            _git("-C", source, "update-index", "--add", "--cacheinfo", f"160000,{commit_id},{path}")
        _git("-C", source, "commit", "--quiet", "-m", "Initial commit")
        _git("-C", source, "push", "--quiet", bare, "main")
    head = _git("--git-dir", bare, "rev-parse", "--verify", "--quiet", "main", check=False).strip()
    return Upstream(server=server, bare=bare, url=server.url(name), token=token, head=head)


@pytest.fixture
def upstream(tmp_path: Path, server: _GitServer, token: str) -> Upstream:
    return _make_upstream(tmp_path, server, token, files=UPSTREAM_FILES | {"logo.bin": BINARY})


def _write(path: Path, content: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)


def _prepare(tmp_path: Path, upstream: Upstream, task_id: str = "task-1", **overrides) -> Workspace:
    arguments = dict(
        clone_url=upstream.url,
        token=upstream.token,
        default_branch="main",
        branch=f"async-code/{task_id}",
        timeout=60,
    )
    return prepare(tmp_path / "workspaces", task_id, **(arguments | overrides))


def _commit(ws: Workspace, changes: Changes | None = None, message: str = "Change things") -> str:
    """Commit what `changes` proposes; without it, collect the tree's changes first."""
    return commit(ws, changes or collect_changes(ws), message=message, author_name="Async Code",
                  author_email="bot@example.com")


def _files_under(root: Path) -> list[Path]:
    return [Path(d) / name for d, _, names in os.walk(root) for name in names if (Path(d) / name).is_file()]


def _assert_token_nowhere_on_disk(root: Path, token: str) -> None:
    credentials = base64.b64encode(f"x-access-token:{token}".encode())
    files = _files_under(root)
    assert files
    for path in files:
        content = path.read_bytes()
        assert token.encode() not in content, path
        assert credentials not in content, path


def _committed_paths(git_dir: Path, sha: str) -> list[str]:
    return _git("--git-dir", git_dir, "ls-tree", "-r", "--name-only", "-z", sha).rstrip("\0").split("\0")


def test_prepare_checks_out_the_default_branch_with_the_git_dir_outside_the_tree(tmp_path, upstream):
    ws = _prepare(tmp_path, upstream)

    assert ws.root == tmp_path / "workspaces" / "task-1-1"  # the task's first attempt
    assert ws.tree == ws.root / "tree" and ws.git_dir == ws.root / "git"
    assert (ws.tree / "README.md").read_text() == UPSTREAM_FILES["README.md"]
    assert (ws.tree / "logo.bin").read_bytes() == BINARY
    assert not os.path.lexists(ws.tree / ".git")
    assert not any(".git" in path.relative_to(ws.tree).parts for path in ws.tree.rglob("*"))
    assert (ws.git_dir / "HEAD").read_text() == f"ref: refs/heads/{ws.branch}\n"
    assert _git("--git-dir", ws.git_dir, "rev-parse", "HEAD").strip() == upstream.head


@pytest.fixture
def launched(monkeypatch) -> list[tuple[list[str], dict[str, str], str]]:
    """Every process the workspace starts: its arguments, environment and working directory."""
    started: list[tuple[list[str], dict[str, str], str]] = []

    class RecordingPopen(subprocess.Popen):
        def __init__(self, args, *rest, **options):
            started.append((list(args), dict(options.get("env") or {}), str(options.get("cwd"))))
            super().__init__(args, *rest, **options)

    monkeypatch.setattr(workspace.subprocess, "Popen", RecordingPopen)
    return started


def test_the_token_travels_only_in_the_authorization_header(tmp_path, upstream, monkeypatch, launched):
    monkeypatch.setenv("HOST_SECRET_CANARY", "do-not-pass-on")

    ws = _prepare(tmp_path, upstream)
    _write(ws.tree / "new.txt", "new\n")
    _commit(ws)
    push(ws, clone_url=upstream.url, token=upstream.token, timeout=60)

    ours = [(args, env) for args, env, _ in launched if f"--git-dir={ws.git_dir}" in args]
    assert ours
    for args, env in ours:
        assert not any(upstream.token in arg for arg in args)
        assert "HOST_SECRET_CANARY" not in env
        assert env["GIT_CONFIG_GLOBAL"] == os.devnull and env["GIT_CONFIG_NOSYSTEM"] == "1"
        assert "core.hooksPath=/dev/null" in args and "protocol.allow=never" in args
    with_token = [env for _, env in ours if "GIT_CONFIG_VALUE_0" in env]
    assert len(with_token) == 2  # the fetch and the push, nothing else
    header = "Authorization: " + upstream.server.expected_authorization
    assert {env["GIT_CONFIG_VALUE_0"] for env in with_token} == {header}

    assert upstream.server.requests
    assert all(auth == upstream.server.expected_authorization for _, _, auth in upstream.server.requests)
    assert not any(upstream.token in path for _, path, _ in upstream.server.requests)
    _assert_token_nowhere_on_disk(ws.root, upstream.token)
    config = _git("--git-dir", ws.git_dir, "config", "--list")
    assert upstream.token not in config and "extraheader" not in config.lower()


def test_a_wrong_token_fails_without_revealing_it(tmp_path, upstream):
    wrong = "ghs_" + secrets.token_hex(18)
    with pytest.raises(GitError) as failure:
        _prepare(tmp_path, upstream, token=wrong)

    assert not isinstance(failure.value, EmptyRepository)
    assert "git fetch failed" in str(failure.value)
    assert wrong not in str(failure.value) and upstream.token not in str(failure.value)
    assert not (tmp_path / "workspaces" / "task-1").exists()


def test_a_stalled_server_times_out_and_git_helpers_die_with_git(tmp_path, upstream):
    upstream.server.stall = True
    started = time.monotonic()
    with pytest.raises(GitError, match="timed out"):
        _prepare(tmp_path, upstream, timeout=2)
    # git-remote-http holds git's pipes: had it survived, we would still be waiting for it.
    assert time.monotonic() - started < 15
    assert not (tmp_path / "workspaces" / "task-1").exists()


def test_an_empty_repository_is_reported_as_such(tmp_path, server, token):
    empty = _make_upstream(tmp_path, server, token, name="empty.git", files={})
    with pytest.raises(EmptyRepository):
        _prepare(tmp_path, empty)
    assert not (tmp_path / "workspaces" / "task-1").exists()


def test_a_missing_default_branch_is_reported_as_an_empty_repository(tmp_path, upstream):
    with pytest.raises(EmptyRepository):
        _prepare(tmp_path, upstream, default_branch="trunk")


@pytest.mark.parametrize(
    "overrides",
    [
        {"task_id": "../escape"},
        {"task_id": ""},
        {"branch": "-f"},
        {"branch": "a..b"},
        {"branch": "has space"},
        {"default_branch": "main~1"},
        {"clone_url": "http://example.com/o/r.git"},
        {"clone_url": "file:///srv/repo.git"},
        {"clone_url": "ext::sh -c touch% /tmp/pwned"},
        {"clone_url": "https://github.com/o/r.git?access_token=abc"},
    ],
)
def test_prepare_refuses_unsafe_names_and_urls(tmp_path, upstream, overrides):
    task_id = overrides.pop("task_id", "task-1")
    with pytest.raises(ValueError):
        _prepare(tmp_path, upstream, task_id=task_id, **overrides)
    assert not (tmp_path / "workspaces" / "task-1").exists()
    assert not (tmp_path / "escape").exists()


def test_a_clone_url_with_credentials_is_refused_without_echoing_them(tmp_path, upstream):
    url = f"https://x-access-token:{upstream.token}@github.com/o/r.git"
    with pytest.raises(ValueError) as failure:
        _prepare(tmp_path, upstream, clone_url=url)
    assert upstream.token not in str(failure.value)


def test_prepare_will_not_reuse_an_existing_workspace(tmp_path, upstream):
    ws = _prepare(tmp_path, upstream)
    with pytest.raises(GitError, match="already exists"):
        _prepare(tmp_path, upstream)
    assert (ws.tree / "README.md").exists()


def test_collect_changes_describes_added_modified_deleted_renamed_and_binary_files(tmp_path, upstream):
    ws = _prepare(tmp_path, upstream)
    _write(ws.tree / "README.md", "# Project\n\nOne line, edited.\nAnother line.\n")
    (ws.tree / "docs/old.txt").unlink()
    (ws.tree / "docs/guide.md").rename(ws.tree / "docs/manual.md")
    _write(ws.tree / "notes/new.txt", "a\nb\n")
    _write(ws.tree / "logo.bin", BINARY[::-1])
    _write(ws.tree / "icon.bin", b"\0\1\2binary")

    changes = collect_changes(ws)

    assert isinstance(changes, Changes)
    assert sorted(changes.files, key=lambda f: f.path) == [
        FileStat("README.md", 2, 1, "M"),
        FileStat("docs/manual.md", 0, 0, "R"),
        FileStat("docs/old.txt", 0, 3, "D"),
        FileStat("icon.bin", None, None, "A"),
        FileStat("logo.bin", None, None, "M"),
        FileStat("notes/new.txt", 2, 0, "A"),
    ]
    assert "+One line, edited." in changes.diff
    assert "-One line." in changes.diff
    assert "rename from docs/guide.md" in changes.diff
    assert "Binary files a/logo.bin and b/logo.bin differ" in changes.diff


def test_collect_changes_with_nothing_changed_is_empty(tmp_path, upstream):
    ws = _prepare(tmp_path, upstream)
    changes = collect_changes(ws)
    assert (changes.files, changes.diff, changes.left_out) == ([], "", [])


def test_a_huge_diff_is_capped_with_a_marker(tmp_path, upstream):
    ws = _prepare(tmp_path, upstream)
    lines = 60_000
    _write(ws.tree / "big.txt", "".join(f"generated line {n:06d}\n" for n in range(lines)))

    changes = collect_changes(ws)

    assert changes.files == [FileStat("big.txt", lines, 0, "A")]
    assert len(changes.diff.encode()) < workspace.DIFF_LIMIT_BYTES + 200
    assert changes.diff.rstrip().endswith(" bytes]")
    assert "[diff truncated after " in changes.diff
    body = changes.diff.split("\n[diff truncated after ")[0]
    assert body.endswith("\n") and body.splitlines()[-1].startswith("+generated line ")


def test_commit_records_the_author_as_committer_without_a_signature(tmp_path, upstream):
    ws = _prepare(tmp_path, upstream)
    _write(ws.tree / "new.txt", "new\n")

    sha = _commit(ws, message="Add new.txt\n\n#42 is fixed by this.\n")

    assert sha == _git("--git-dir", ws.git_dir, "rev-parse", f"refs/heads/{ws.branch}").strip()
    log_format = "--format=%an%n%ae%n%cn%n%ce%n%P%n%B"
    fields = _git("--git-dir", ws.git_dir, "log", "-1", log_format, sha).split("\n")
    assert fields[:5] == ["Async Code", "bot@example.com", "Async Code", "bot@example.com", upstream.head]
    assert "\n".join(fields[5:]).strip() == "Add new.txt\n\n#42 is fixed by this."
    assert "gpgsig" not in _git("--git-dir", ws.git_dir, "cat-file", "commit", sha)


def test_commit_with_nothing_staged_fails_readably(tmp_path, upstream):
    ws = _prepare(tmp_path, upstream)
    with pytest.raises(GitError, match="nothing to commit"):
        _commit(ws)


def test_push_lands_only_the_task_branch(tmp_path, upstream):
    ws = _prepare(tmp_path, upstream)
    refs_before = upstream.refs()
    _write(ws.tree / "new.txt", "new\n")
    sha = _commit(ws)
    # Local refs that must stay local.
    _git("--git-dir", ws.git_dir, "tag", "v9.9", sha)
    _git("--git-dir", ws.git_dir, "branch", "scratch", sha)

    push(ws, clone_url=upstream.url, token=upstream.token, timeout=60)

    assert upstream.refs() == refs_before | {f"refs/heads/{ws.branch}"}
    assert upstream.ref(f"refs/heads/{ws.branch}") == sha
    assert upstream.ref("refs/heads/main") == upstream.head


def test_a_push_refused_by_a_server_hook_raises_push_rejected(tmp_path, upstream):
    hook = upstream.bare / "hooks" / "pre-receive"
    # A server that echoes the credentials back must not get them into our error text.
    _write(
        hook,
        "#!/bin/sh\n"
        "echo \"branch protection says no to $HTTP_AUTHORIZATION\" >&2\n"
        "echo \"${HTTP_AUTHORIZATION#Basic }\" | base64 -d >&2\n"
        "exit 1\n",
    )
    hook.chmod(0o755)
    ws = _prepare(tmp_path, upstream)
    _write(ws.tree / "new.txt", "new\n")
    _commit(ws)

    with pytest.raises(PushRejected) as failure:
        push(ws, clone_url=upstream.url, token=upstream.token, timeout=60)

    message = str(failure.value)
    assert "pre-receive hook declined" in message
    assert "branch protection says no to Basic ***" in message
    assert "remote: ***" in message
    assert upstream.token not in message
    assert upstream.server.expected_authorization.removeprefix("Basic ") not in message
    assert upstream.ref(f"refs/heads/{ws.branch}") is None


def test_a_non_fast_forward_push_raises_push_rejected(tmp_path, upstream):
    ws = _prepare(tmp_path, upstream)
    (ws.tree / "README.md").unlink()
    _commit(ws)
    first = _git("--git-dir", ws.git_dir, "rev-parse", "HEAD").strip()
    push(ws, clone_url=upstream.url, token=upstream.token, timeout=60)
    _git("--git-dir", ws.git_dir, "reset", "--soft", "HEAD~1")
    _write(ws.tree / "other.txt", "diverged\n")
    _commit(ws)

    with pytest.raises(PushRejected):
        push(ws, clone_url=upstream.url, token=upstream.token, timeout=60)
    assert upstream.ref(f"refs/heads/{ws.branch}") == first


def test_a_push_with_a_wrong_token_is_a_plain_git_error(tmp_path, upstream):
    ws = _prepare(tmp_path, upstream)
    _write(ws.tree / "new.txt", "new\n")
    _commit(ws)
    wrong = "ghs_" + secrets.token_hex(18)

    with pytest.raises(GitError) as failure:
        push(ws, clone_url=upstream.url, token=wrong, timeout=60)

    assert not isinstance(failure.value, PushRejected)
    assert wrong not in str(failure.value)


HOOK_NAMES = ("pre-commit", "prepare-commit-msg", "commit-msg", "post-commit", "pre-push", "post-checkout")


def _plant_hostile_git_files(tree: Path, markers: Path) -> None:
    """What an agent could leave in the tree to run code through a careless host git."""
    _git("init", "--quiet", tree)
    agent_git = tree / ".git"
    hook = f"#!/bin/sh\ntouch '{markers}/hook'\n"
    for hooks_dir in (agent_git / "hooks", agent_git / "evil-hooks"):
        for name in HOOK_NAMES:
            _write(hooks_dir / name, hook)
            (hooks_dir / name).chmod(0o755)
    with (agent_git / "config").open("a") as config:
        config.write(
            "[core]\n"
            "\thooksPath = .git/evil-hooks\n"
            f"\tfsmonitor = touch '{markers}/fsmonitor'\n"
            '[filter "evil"]\n'
            f"\tclean = touch '{markers}/filter'\n"
            f"\tsmudge = touch '{markers}/filter'\n"
            "\trequired = true\n"
        )
    _write(tree / ".gitattributes", "* filter=evil\n")
    _write(tree / ".gitmodules", f'[submodule "x"]\n\tpath = x\n\turl = ext::sh -c touch% {markers}/sub\n')


def test_hooks_config_and_filters_planted_in_the_tree_never_run(tmp_path, upstream):
    markers = tmp_path / "markers"
    markers.mkdir()
    ws = _prepare(tmp_path, upstream)
    _plant_hostile_git_files(ws.tree, markers)
    _write(ws.tree / "README.md", "edited by the agent\n")

    changes = collect_changes(ws)
    sha = _commit(ws, changes)
    push(ws, clone_url=upstream.url, token=upstream.token, timeout=60)
    # The pushed branch carries the attributes and .gitmodules; checking it out must not run them either.
    again = _prepare(tmp_path, upstream, task_id="task-2", default_branch=ws.branch)

    assert list(markers.iterdir()) == []
    paths = _committed_paths(upstream.bare, sha)
    assert not any(".git" in path.split("/") for path in paths)
    assert {".gitattributes", ".gitmodules", "README.md"} <= set(paths)
    assert not any(".git/" in f.path or f.path == ".git" for f in changes.files)
    assert _git("--git-dir", upstream.bare, "show", f"{sha}:README.md") == "edited by the agent\n"
    assert (again.tree / "README.md").read_text() == "edited by the agent\n"
    assert not os.path.lexists(again.tree / ".git")

    # The same files do run code for git that discovers the tree's .git: the test is live.
    _git("-C", ws.tree, "status", check=False)
    _git("-C", ws.tree, "add", "--all", check=False)
    _git("-C", ws.tree, "commit", "--quiet", "-m", "discovered", check=False)
    assert {marker.name for marker in markers.iterdir()} >= {"hook", "fsmonitor", "filter"}


def test_symlinks_are_committed_as_links_and_never_followed(tmp_path, upstream):
    outside = tmp_path / "outside"
    _write(outside / "secret.txt", "host secret\n")
    _write(outside / "dir" / "app.py", "host secret in a directory\n")
    ws = _prepare(tmp_path, upstream)
    (ws.tree / "file-link").symlink_to(outside / "secret.txt")
    (ws.tree / "dir-link").symlink_to(outside / "dir")
    # A tracked directory swapped for a link to a same-shaped directory outside.
    for path in (ws.tree / "src").iterdir():
        path.unlink()
    (ws.tree / "src").rmdir()
    (ws.tree / "src").symlink_to(outside / "dir")

    changes = collect_changes(ws)
    sha = _commit(ws, changes)

    statuses = {f.path: f.status for f in changes.files}
    assert statuses == {"file-link": "A", "dir-link": "A", "src": "A", "src/app.py": "D"}
    link_blob = _git("--git-dir", ws.git_dir, "cat-file", "blob", f"{sha}:file-link")
    assert link_blob == str(outside / "secret.txt")
    tree_listing = _git("--git-dir", ws.git_dir, "ls-tree", sha)
    assert "120000 blob" in tree_listing and "dir-link" in tree_listing
    every_object = subprocess.run(
        ["git", "--git-dir", ws.git_dir, "cat-file", "--batch-all-objects", "--batch"],
        env=_plain_git_env(), capture_output=True, timeout=60, check=True,
    ).stdout
    assert b"host secret" not in every_object


def test_agent_created_git_directories_are_never_added(tmp_path, upstream):
    ws = _prepare(tmp_path, upstream)
    _write(ws.tree / ".git" / "notes.txt", "top-level .git\n")
    _write(ws.tree / "pkg" / ".git" / "config", "[core]\n")
    _write(ws.tree / "pkg" / "module.py", "x = 1\n")

    changes = collect_changes(ws)

    assert [f.path for f in changes.files] == ["pkg/module.py"]


def _owners(tree: Path) -> set[tuple[int, int]]:
    return {(st.st_uid, st.st_gid) for path in [tree, *tree.rglob("*")] for st in [path.lstat()]}


@needs_root
def test_a_tree_owned_by_the_sandbox_user_still_commits_and_pushes(tmp_path, server, token):
    # A checked-out symlink must be chowned itself, never the file it points to.
    link_target = tmp_path / "host-file"
    _write(link_target, "host\n")
    upstream = _make_upstream(tmp_path, server, token, links={"host-link": link_target})

    ws = _prepare(tmp_path, upstream, sandbox_owner=(SANDBOX_UID, SANDBOX_UID))

    assert (ws.tree / "host-link").is_symlink()
    assert _owners(ws.tree) == {(SANDBOX_UID, SANDBOX_UID)}
    assert link_target.stat().st_uid == os.geteuid()
    assert ws.git_dir.stat().st_uid == os.geteuid()
    # Files the agent creates belong to the sandbox user too.
    _write(ws.tree / "new.txt", "written in the sandbox\n")
    os.chown(ws.tree / "new.txt", SANDBOX_UID, SANDBOX_UID)
    _write(ws.tree / "README.md", "edited in the sandbox\n")

    changes = collect_changes(ws)
    sha = _commit(ws, changes)
    push(ws, clone_url=upstream.url, token=upstream.token, timeout=60)

    assert {f.path for f in changes.files} == {"new.txt", "README.md"}
    assert upstream.ref(f"refs/heads/{ws.branch}") == sha
    assert _owners(ws.tree) == {(SANDBOX_UID, SANDBOX_UID)}


@needs_root
def test_remove_deletes_a_read_only_tree_owned_by_another_user(tmp_path, upstream):
    outside = tmp_path / "outside"
    _write(outside / "keep.txt", "keep\n")
    outside.chmod(0o555)
    ws = _prepare(tmp_path, upstream, sandbox_owner=(SANDBOX_UID, SANDBOX_UID))
    (ws.tree / "link-out").symlink_to(outside)
    _make_read_only(ws.tree)
    _chown(ws.tree, SANDBOX_UID)

    remove(ws)

    assert not os.path.lexists(ws.root)
    assert (outside / "keep.txt").read_text() == "keep\n"
    assert stat.S_IMODE(outside.stat().st_mode) == 0o555
    remove(ws)  # removing twice is harmless


@needs_root
def test_remove_as_an_unprivileged_service_opens_up_read_only_directories():
    # Everything belongs to the service user, who lacks root's power to ignore permissions.
    base = Path(tempfile.mkdtemp(prefix="async-code-remove-"))
    try:
        base.chmod(0o755)
        outside = base / "outside"
        _write(outside / "keep.txt", "keep\n")
        root = base / "task-1"
        ws = Workspace(root=root, tree=root / "tree", git_dir=root / "git", branch="async-code/task-1")
        _write(ws.tree / "src" / "deep" / "app.py", "x = 1\n")
        _write(ws.git_dir / "HEAD", "ref: refs/heads/async-code/task-1\n")
        (ws.tree / "link-out").symlink_to(outside)
        _make_read_only(ws.tree)
        outside.chmod(0o555)
        _chown(base, SANDBOX_UID)

        error = run_as(SANDBOX_UID, lambda: remove(ws))

        assert error is None, error
        assert not os.path.lexists(root)
        assert stat.S_IMODE(outside.stat().st_mode) == 0o555
        assert (outside / "keep.txt").exists()
    finally:
        subprocess.run(["rm", "-rf", "--", str(base)], check=True, timeout=60)


def _make_read_only(tree: Path) -> None:
    for directory, _, _ in sorted(os.walk(tree), reverse=True):
        os.chmod(directory, 0o555)


def _chown(root: Path, uid: int) -> None:
    for path in [root, *root.rglob("*")]:
        os.chown(path, uid, uid, follow_symlinks=False)


def test_a_long_history_is_fetched_shallow_and_the_branch_still_pushes(tmp_path, server, token):
    upstream = _make_upstream(tmp_path, server, token, name="long.git")
    source = tmp_path / "source-long.git"
    for n in range(FETCH_DEPTH + 10):
        _write(source / "counter.txt", f"{n}\n")
        _git("-C", source, "add", "counter.txt")
        _git("-C", source, "commit", "--quiet", "-m", f"Step {n}")
    _git("-C", source, "push", "--quiet", upstream.bare, "main")

    ws = _prepare(tmp_path, upstream)
    assert (ws.git_dir / "shallow").is_file()  # only the recent history came over
    _write(ws.tree / "counter.txt", "done\n")
    sha = _commit(ws)
    push(ws, clone_url=upstream.url, token=token, timeout=60)
    assert _git("--git-dir", upstream.bare, "rev-parse", ws.branch).strip() == sha
    assert _git("--git-dir", upstream.bare, "rev-list", "--count", ws.branch).strip() == str(FETCH_DEPTH + 12)


def _upstream_with_submodule(tmp_path: Path, server: _GitServer, token: str) -> tuple[Upstream, str]:
    library_commit = commit_library(tmp_path / "library")
    gitmodules = '[submodule "lib"]\n\tpath = vendor/lib\n\turl = https://github.com/example/lib.git\n'
    upstream = _make_upstream(tmp_path, server, token, name="with-submodule.git",
                              files=UPSTREAM_FILES | {".gitmodules": gitmodules},
                              gitlinks={"vendor/lib": library_commit})
    return upstream, library_commit


def _tree_entries(git_dir: Path, revision: str) -> dict[str, tuple[str, str]]:
    listing = _git("--git-dir", git_dir, "ls-tree", "-r", "-z", "--full-tree", revision)
    entries = {}
    for record in filter(None, listing.split("\0")):
        meta, path = record.split("\t", 1)
        mode, _, sha = meta.split()
        entries[path] = (mode, sha)
    return entries


def test_a_repository_planted_at_a_submodule_path_never_runs_on_the_host(tmp_path, server, token):
    """The reported attack: the agent turns a submodule's directory into a repository of its
    own with a clean filter and stale index times; `git add` on the host used to run it."""
    upstream, library_commit = _upstream_with_submodule(tmp_path, server, token)
    markers = tmp_path / "markers"
    markers.mkdir()
    ws = _prepare(tmp_path, upstream)
    assert (ws.tree / "vendor" / "lib").is_dir() and not any((ws.tree / "vendor" / "lib").iterdir())
    plant_repository(ws.tree / "vendor" / "lib", markers)
    _write(ws.tree / "README.md", "edited by the agent\n")

    changes = collect_changes(ws)
    sha = _commit(ws, changes)
    push(ws, clone_url=upstream.url, token=upstream.token, timeout=60)

    assert list(markers.iterdir()) == []
    assert [(f.path, f.status) for f in changes.files] == [("README.md", "M")]
    pushed = _tree_entries(upstream.bare, sha)
    assert pushed["vendor/lib"] == ("160000", library_commit)
    assert not any(path.startswith("vendor/lib/") for path in pushed)
    assert {item.path for item in changes.left_out} == {
        "vendor/lib/.gitattributes", "vendor/lib/lib.py", "vendor/lib/src/core.c"}
    assert {item.reason for item in changes.left_out} == {"it is inside the submodule vendor/lib"}
    assert_the_plants_are_live(ws.tree / "vendor" / "lib", markers)


@pytest.mark.parametrize("location", ["pkg", "", "deep/er/pkg"])
def test_a_repository_planted_in_the_tree_is_proposed_as_plain_files_and_never_runs(
        tmp_path, upstream, location):
    markers = tmp_path / "markers"
    markers.mkdir()
    ws = _prepare(tmp_path, upstream)
    planted = ws.tree / location
    plant_repository(planted, markers)
    prefix = f"{location}/" if location else ""

    changes = collect_changes(ws)
    sha = _commit(ws, changes)
    push(ws, clone_url=upstream.url, token=upstream.token, timeout=60)

    assert list(markers.iterdir()) == []
    pushed = _tree_entries(upstream.bare, sha)
    assert {path: mode for path, (mode, _) in pushed.items() if path.startswith(prefix)
            and path not in UPSTREAM_FILES and path != "logo.bin"} == {
        f"{prefix}.gitattributes": "100644", f"{prefix}lib.py": "100644", f"{prefix}src/core.c": "100644"}
    assert "160000" not in {mode for mode, _ in pushed.values()}
    assert not any(".git" in path.split("/") for path in pushed)
    assert _git("--git-dir", upstream.bare, "show", f"{sha}:{prefix}lib.py") == "VALUE = 2\n"
    assert changes.left_out == []
    assert_the_plants_are_live(planted, markers)


def test_the_work_tree_is_written_as_stored_whatever_the_attributes_say(tmp_path, server, token):
    files = {
        ".gitattributes": "*.txt text eol=crlf\n*.id ident\n*.bin filter=lfs\n",
        "notes.txt": "one\ntwo\n",
        "version.id": "$Id$\n",
        "data.bin": "pointer\n",
        "tool.sh": "#!/bin/sh\necho tool\n",
    }
    upstream = _make_upstream(tmp_path, server, token, name="attributes.git", files=files,
                              links={"link": Path("notes.txt")})
    source = tmp_path / "source-attributes.git"
    _git("-C", source, "update-index", "--chmod=+x", "tool.sh")
    _git("-C", source, "commit", "--quiet", "-m", "Executable")
    _git("-C", source, "push", "--quiet", upstream.bare, "main")

    ws = _prepare(tmp_path, upstream)

    for path, content in files.items():
        assert (ws.tree / path).read_bytes() == content.encode(), path
    assert os.readlink(ws.tree / "link") == "notes.txt"
    assert (ws.tree / "tool.sh").stat().st_mode & 0o777 == 0o755
    assert (ws.tree / "notes.txt").stat().st_mode & 0o777 == 0o644
    changes = collect_changes(ws)  # written as stored, read back as stored: nothing changed
    assert (changes.files, changes.left_out) == ([], [])


def test_git_never_gets_a_work_tree(tmp_path, upstream, launched):
    ws = _prepare(tmp_path, upstream)
    _write(ws.tree / "new.txt", "new\n")
    _commit(ws)
    push(ws, clone_url=upstream.url, token=upstream.token, timeout=60)

    assert launched
    for args, _, cwd in launched:
        # Only git check-ignore has a work tree: the runner's mirror of the .gitignore files.
        work_trees = [arg.removeprefix("--work-tree=") for arg in args if arg.startswith("--work-tree")]
        assert work_trees == ([] if "check-ignore" not in args else work_trees), args
        for work_tree in work_trees:
            assert Path(work_tree).parent.name.startswith("ignore-rules-"), args
        assert not any(str(ws.tree) in arg for arg in args), args
        assert str(ws.tree) not in cwd
    assert _git("--git-dir", ws.git_dir, "rev-parse", "--is-bare-repository").strip() == "true"


def test_left_out_versions_of_tracked_files_keep_what_head_has(tmp_path, upstream):
    ws = _prepare(tmp_path, upstream)
    (ws.tree / "README.md").unlink()
    os.mkfifo(ws.tree / "README.md")

    changes = collect_changes(ws)

    assert changes.files == []
    assert [(item.path, item.reason) for item in changes.left_out] == [
        ("README.md", "it is not a regular file, a directory or a symlink")]


def test_ignored_files_stay_out_and_tracked_ones_are_always_taken(tmp_path, server, token):
    upstream = _make_upstream(tmp_path, server, token, name="ignores.git",
                              files={".gitignore": "build/\n*.log\n", "app.py": "x = 1\n"})
    ws = _prepare(tmp_path, upstream)
    _write(ws.tree / "build" / "out.o", b"\0object")
    _write(ws.tree / "debug.log", "noise\n")
    _write(ws.tree / "app.py", "x = 2\n")
    _write(ws.tree / ".gitignore", "build/\n")  # the agent may change the rules themselves

    changes = collect_changes(ws)

    assert sorted((f.path, f.status) for f in changes.files) == [
        (".gitignore", "M"), ("app.py", "M"), ("debug.log", "A")]


@needs_root
def test_a_service_that_is_not_root_reads_the_tree_the_same_way(tmp_path, server, token):
    upstream, library_commit = _upstream_with_submodule(tmp_path, server, token)
    base = Path(tempfile.mkdtemp(prefix="async-code-unprivileged-"))
    markers = base / "markers"
    try:
        base.chmod(0o755)
        markers.mkdir()
        _chown(base, SANDBOX_UID)

        def as_the_service_user() -> None:
            ws = _prepare(base, upstream)
            plant_repository(ws.tree / "vendor" / "lib", markers)
            plant_repository(ws.tree / "pkg", markers)
            _write(ws.tree / "README.md", "edited by the agent\n")
            changes = collect_changes(ws)
            sha = _commit(ws, changes)
            push(ws, clone_url=upstream.url, token=upstream.token, timeout=60)
            if list(markers.iterdir()) or len(changes.left_out) != 3:
                raise AssertionError((list(markers.iterdir()), changes.left_out))
            (markers.parent / "pushed").write_text(sha)

        error = run_as(SANDBOX_UID, as_the_service_user)

        assert error is None, error
        pushed = _tree_entries(upstream.bare, (base / "pushed").read_text())
        assert pushed["vendor/lib"] == ("160000", library_commit)
        assert {"README.md", "pkg/lib.py", "pkg/src/core.c", "pkg/.gitattributes"} <= set(pushed)
        assert list(markers.iterdir()) == []
    finally:
        subprocess.run(["rm", "-rf", "--", str(base)], check=True, timeout=60)


WORKFLOW = ".github/workflows/ci.yml"


@pytest.fixture
def with_workflows(tmp_path, server, token) -> Upstream:
    return _make_upstream(tmp_path, server, token, name="workflows.git", files={
        WORKFLOW: "on: push\n", ".github/workflows/lint.yml": "on: pull_request\n",
        ".github/CODEOWNERS": "* @acme/devs\n", "app.py": "x = 1\n"})


@pytest.mark.parametrize(("edit", "verb"), [
    (lambda tree: _write(tree / WORKFLOW, "on: push\njobs: {}\n"), "change"),
    (lambda tree: _write(tree / ".github/workflows/new.yml", "on: push\n"), "add"),
    (lambda tree: (tree / WORKFLOW).unlink(), "delete"),
    (lambda tree: (tree / WORKFLOW).chmod(0o755), "change"),
])
def test_workflow_changes_are_left_out_and_the_rest_proposed(tmp_path, with_workflows, edit, verb):
    ws = _prepare(tmp_path, with_workflows)
    edit(ws.tree)
    _write(ws.tree / "app.py", "x = 2\n")

    changes = collect_changes(ws)
    sha = _commit(ws, changes)

    assert [(f.path, f.status) for f in changes.files] == [("app.py", "M")]
    [left_out] = changes.left_out
    assert left_out.path.startswith(".github/workflows/") and changes.left_out_count == 1
    assert left_out.reason == f"async-code may not {verb} workflow files (it has no `workflows` permission)"
    pushed = _tree_entries(ws.git_dir, sha)
    head = _tree_entries(ws.git_dir, with_workflows.head)
    assert {p: e for p, e in pushed.items() if p.startswith(".github/")} == {
        p: e for p, e in head.items() if p.startswith(".github/")}


@pytest.mark.parametrize("replaced", [".github/workflows", ".github"])
def test_a_file_where_the_workflows_directory_was_gives_way(tmp_path, with_workflows, replaced):
    ws = _prepare(tmp_path, with_workflows)
    subprocess.run(["rm", "-r", ws.tree / ".github" / "workflows"], check=True)
    (ws.tree / ".github" / "CODEOWNERS").unlink()
    if replaced == ".github":
        (ws.tree / ".github").rmdir()
        (ws.tree / ".github").symlink_to("/etc")
    else:
        _write(ws.tree / replaced, "a file now\n")

    changes = collect_changes(ws)
    sha = _commit(ws, changes)

    assert [(f.path, f.status) for f in changes.files] == [(".github/CODEOWNERS", "D")]
    assert sorted((item.path, item.reason.split(" (")[0]) for item in changes.left_out) == [
        (replaced, "async-code may not add workflow files" if replaced == ".github/workflows"
         else "it replaces a directory that holds workflow files"),
        (".github/workflows/ci.yml", "async-code may not delete workflow files"),
        (".github/workflows/lint.yml", "async-code may not delete workflow files"),
    ]
    assert {WORKFLOW, ".github/workflows/lint.yml"} <= set(_tree_entries(ws.git_dir, sha))


def test_unchanged_workflows_are_not_reported(tmp_path, with_workflows):
    ws = _prepare(tmp_path, with_workflows)
    _write(ws.tree / "app.py", "x = 3\n")

    changes = collect_changes(ws)

    assert (changes.left_out, changes.left_out_count) == ([], 0)


def test_too_many_changes_are_refused_before_anything_is_stored(tmp_path, upstream):
    ws = _prepare(tmp_path, upstream)
    for n in range(6):
        _write(ws.tree / f"new-{n}.txt", f"{n}\n")
    objects_before = sorted(p.name for p in (ws.git_dir / "objects").rglob("*"))

    with pytest.raises(workspace.TooManyChanges) as refused:
        collect_changes(ws, max_changed_files=5)

    assert (refused.value.described, refused.value.limit) == ("more than 5", 5)
    assert sorted(p.name for p in (ws.git_dir / "objects").rglob("*")) == objects_before
    assert len(collect_changes(ws, max_changed_files=6).files) == 6


def test_modified_files_count_towards_the_limit_too(tmp_path, upstream):
    ws = _prepare(tmp_path, upstream)
    for path in ("README.md", "src/app.py", "docs/old.txt"):
        _write(ws.tree / path, "changed\n")

    with pytest.raises(workspace.TooManyChanges):
        collect_changes(ws, max_changed_files=2)
    assert len(collect_changes(ws, max_changed_files=3).files) == 3


def test_new_content_beyond_what_github_takes_in_a_push_is_refused_unread(tmp_path, upstream):
    ws = _prepare(tmp_path, upstream)
    for n in range(21):  # sparse: no disk, but 2.1 GB to read and store, each file under 100 MB
        with open(ws.tree / f"sparse-{n}.bin", "wb") as sparse:
            sparse.truncate(snapshot_limit := 100 * 1024 * 1024)
    assert 21 * snapshot_limit > workspace.PUSH_LIMIT_BYTES
    objects_before = sorted(p.name for p in (ws.git_dir / "objects").rglob("*"))

    with pytest.raises(workspace.TooLarge, match="accepts at most 2 GB"):
        collect_changes(ws)
    assert sorted(p.name for p in (ws.git_dir / "objects").rglob("*")) == objects_before


def test_host_git_output_is_read_through_caps(tmp_path, upstream, monkeypatch):
    ws = _prepare(tmp_path, upstream)
    monkeypatch.setattr(workspace, "ERROR_LIMIT", 200)
    with pytest.raises(GitError) as failure:
        workspace._run_git(ws, ["cat-file", "-t", "x" * 20_000], what="git cat-file")
    assert "Not a valid object name" not in str(failure.value)  # its start was dropped
    assert str(failure.value).endswith("x" * 150)  # the end is what is kept

    monkeypatch.setattr(workspace, "OUTPUT_LIMIT", 1000)
    with pytest.raises(GitError, match="printed more than"):
        workspace._run_git(ws, ["cat-file", "--batch-all-objects", "--batch"], what="git cat-file")


def test_a_test_checkout_holds_the_start_in_the_tree_and_the_pushed_commit_apart(tmp_path, upstream):
    """For a side-by-side member's tests: the tree has the start's files (setup may run on them
    online), the pushed files wait apart, and `removed` clears what the commit deleted or turned
    from a directory into a file (and a file into a directory) before they are copied in."""
    from runner.workspace import prepare_test_checkout

    ws = _prepare(tmp_path, upstream)
    (ws.tree / "README.md").unlink()  # deleted
    shutil.rmtree(ws.tree / "src")
    _write(ws.tree / "src", "now a file\n")  # a directory becomes a file
    (ws.tree / "docs" / "old.txt").unlink()
    (ws.tree / "docs" / "guide.md").unlink()
    _write(ws.tree / "docs" / "guide.md" / "part1.md", "a file becomes a directory\n")
    _write(ws.tree / "VERSION", "1.0\n")
    sha = _commit(ws)
    push(ws, clone_url=upstream.url, token=upstream.token, timeout=60)

    checkout = prepare_test_checkout(tmp_path / "tests", "task-1", attempt=1, clone_url=upstream.url,
                                     token=upstream.token, branch=ws.branch, commit=sha, timeout=60)
    tree, branch = checkout.workspace.tree, checkout.branch
    assert sorted(str(p.relative_to(tree)) for p in _files_under(tree)) == sorted(
        [*UPSTREAM_FILES, "logo.bin"])
    assert sorted(str(p.relative_to(branch)) for p in _files_under(branch)) == [
        "VERSION", "docs/guide.md/part1.md", "logo.bin", "src"]
    assert checkout.removed == ("README.md", "docs/guide.md", "docs/old.txt", "src", "src/app.py")
    assert not (checkout.workspace.root / "tree" / ".git").exists()

    # A branch that no longer holds the pushed commit is not tested as if it did.
    with pytest.raises(GitError, match="no longer holds"):
        prepare_test_checkout(tmp_path / "tests", "task-2", attempt=1, clone_url=upstream.url,
                              token=upstream.token, branch=ws.branch, commit="0" * 40, timeout=60)
    assert not list((tmp_path / "tests").glob("task-2-*"))  # nothing left behind
