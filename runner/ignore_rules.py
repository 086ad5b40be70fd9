""".gitignore rules, decided by git itself without git reading the agent's tree.

The runner copies each `.gitignore` it finds (read safely, by `runner/snapshot.py`) into a
scratch tree of its own that holds only those copies and the directories being asked about,
and asks `git check-ignore` there. So the rules mean exactly what they mean to `git add --all`
(pattern syntax, precedence, negation, directory-only patterns, bytes not characters), matching
runs in git's C code in another process, which cannot hold up the service's threads, and a
deadline bounds it however the patterns are written.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from runner.tree_removal import remove_tree

DEEP_DIRECTORY = 16  # components; see GitIgnoreRules._ignored_deep
RULES_LIMIT = 8 * 1024 * 1024  # bytes of .gitignore copies in all; real repositories use far less
DEFAULT_TIMEOUT = 120.0


class IgnoreRulesError(RuntimeError):
    """The rules could not be applied: too large, too slow, or git failed."""


class GitIgnoreRules:
    """One `git check-ignore --stdin` for a whole walk; directories are visited top-down.

    Use as a context manager. Call `enter(directory, rules)` before asking about anything in
    `directory`, then `ignored(directory, children)`.
    """

    def __init__(self, *, scratch_parent: Path | None = None, timeout: float = DEFAULT_TIMEOUT,
                 rules_limit: int = RULES_LIMIT):
        self._deadline = time.monotonic() + timeout
        self._timed_out = False
        self._rules_limit = rules_limit
        self._rules_bytes = 0
        self._ruled: set[bytes] = set()  # directories given a .gitignore
        self._scratch = Path(tempfile.mkdtemp(prefix="ignore-rules-", dir=scratch_parent))
        self._tree = self._scratch / "tree"
        self._tree.mkdir()
        self._git_dir = self._scratch / "git"
        self._env = {"PATH": os.environ.get("PATH") or os.defpath, "LC_ALL": "C",
                     "HOME": str(self._scratch), "GIT_CONFIG_NOSYSTEM": "1",
                     "GIT_CONFIG_GLOBAL": os.devnull, "GIT_FLUSH": "1"}
        subprocess.run(["git", "init", "--quiet", "--bare", "--template=", str(self._git_dir)],
                       env=self._env, check=True, capture_output=True, timeout=30)
        self._process = self._start()
        self._buffer = bytearray()
        self._position = 0
        self._timer = threading.Timer(max(0.0, timeout), self._kill)
        self._timer.daemon = True
        self._timer.start()

    def _command(self, *, verbose: bool) -> list[str]:
        # No excludes file and an empty info/exclude: only the tree's own .gitignore files count.
        return ["git", f"--git-dir={self._git_dir}", f"--work-tree={self._tree}", "-c", "core.bare=false",
                "-c", f"core.excludesFile={os.devnull}", "check-ignore", "--no-index", "--stdin", "-z",
                *(["--verbose", "--non-matching"] if verbose else [])]

    def _start(self) -> subprocess.Popen:
        return subprocess.Popen(self._command(verbose=True), cwd=self._scratch, env=self._env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, start_new_session=True)

    def _kill(self) -> None:
        self._timed_out = True
        self._process.kill()

    def __enter__(self) -> GitIgnoreRules:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._timer.cancel()
        self._stop_process()
        remove_tree(self._scratch)  # as deep as the agent's tree: never shutil.rmtree

    def _stop_process(self) -> None:
        self._process.kill()
        self._process.wait()
        for stream in (self._process.stdin, self._process.stdout):
            if stream is not None:
                with contextlib.suppress(BrokenPipeError):  # git is gone: nothing to flush to
                    stream.close()

    def enter(self, directory: bytes, rules: bytes | None) -> None:
        """`directory` (relative, "/"-separated, b"" for the root) has these .gitignore rules."""
        if rules is None:
            return
        self._rules_bytes += len(rules)
        if self._rules_bytes > self._rules_limit:
            raise IgnoreRulesError(f"the tree's .gitignore files hold more than "
                                   f"{self._rules_limit // (1024 * 1024)} MB of rules")
        target = self._mirror(directory)
        (target / ".gitignore").write_bytes(rules)
        self._ruled.add(directory)

    def ignored(self, directory: bytes, children: list[tuple[bytes, bool]]) -> set[bytes]:
        """The names among `children` (name, is_directory) that git's rules exclude."""
        if not children or not self._has_rules_above(directory):
            # Only the tree's own .gitignore files count, so with none in `directory` or above
            # it nothing there is ignored, and git need not be asked.
            return set()
        base = self._mirror(directory)
        for name, is_directory in children:
            if is_directory:  # git tells directories by looking: the mirror must have them
                (base / os.fsdecode(name)).mkdir(exist_ok=True)
        # "./" first: git reads its input as pathspecs, where a leading ":" would be magic.
        prefix = b"./" + directory + b"/" if directory else b"./"
        request = b"".join(prefix + name + b"\0" for name, _ in children)
        if directory.count(b"/") + 1 >= DEEP_DIRECTORY:
            return self._ignored_deep(prefix, request)
        writer = threading.Thread(target=self._send, args=(request,), daemon=True)
        writer.start()
        excluded = set()
        try:
            for name, _ in children:
                _source, _line, pattern, path = (self._field() for _ in range(4))
                if path != prefix + name:
                    raise IgnoreRulesError("git check-ignore answered out of order")
                if pattern and not pattern.startswith(b"!"):
                    excluded.add(name)
        except BaseException:
            self._process.kill()  # so the writer, if git stopped reading, stops too
            raise
        finally:
            writer.join()
        return excluded

    def _ignored_deep(self, prefix: bytes, request: bytes) -> set[bytes]:
        # git 2.39's check-ignore --verbose crashes (SIGSEGV) once it has matched a path 25
        # components deep, so deep directories get a process of their own without --verbose,
        # which prints just the ignored paths.
        if self._timed_out or time.monotonic() >= self._deadline:
            raise IgnoreRulesError("applying the .gitignore rules took too long")
        try:
            answer = subprocess.run(self._command(verbose=False), input=request, cwd=self._scratch,
                                    env=self._env, capture_output=True, timeout=self._remaining())
        except subprocess.TimeoutExpired:
            raise IgnoreRulesError("applying the .gitignore rules took too long") from None
        if answer.returncode not in (0, 1):  # 1: nothing is ignored
            raise IgnoreRulesError(f"git check-ignore failed (exit status {answer.returncode})")
        return {path[len(prefix):] for path in answer.stdout.split(b"\0") if path}

    def _has_rules_above(self, directory: bytes) -> bool:
        """Whether `directory` or a directory above it has a .gitignore."""
        if b"" in self._ruled:
            return True
        parts = directory.split(b"/") if directory else []
        return any(b"/".join(parts[:depth]) in self._ruled for depth in range(1, len(parts) + 1))

    def _remaining(self) -> float:
        return max(0.1, self._deadline - time.monotonic())

    def _mirror(self, directory: bytes) -> Path:
        target = self._tree / os.fsdecode(directory) if directory else self._tree
        target.mkdir(parents=True, exist_ok=True)
        return target

    def _send(self, request: bytes) -> None:
        assert self._process.stdin is not None
        try:
            self._process.stdin.write(request)
            self._process.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass  # git is gone: the reader reports it

    def _field(self) -> bytes:
        assert self._process.stdout is not None
        while (end := self._buffer.find(b"\0", self._position)) < 0:
            del self._buffer[:self._position]
            self._position = 0
            chunk = self._process.stdout.read1(65536)
            if not chunk:
                if self._timed_out:
                    raise IgnoreRulesError("applying the .gitignore rules took too long")
                raise IgnoreRulesError(f"git check-ignore stopped answering (exit status "
                                       f"{self._process.wait()})")
            self._buffer += chunk
        field = bytes(self._buffer[self._position:end])
        self._position = end + 1
        return field
