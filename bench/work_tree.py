"""What the runner's own handling of the work tree costs, next to plain git on the same data.

Usage: .venv/bin/python bench/work_tree.py [--files 10000] [--megabytes 100] [--ignored-files N] [--runs 3]

Builds a synthetic repository on local disk (files of mixed sizes, mostly text, some binary,
a few executables and symlinks, some directories nested deep, a `.gitignore` at the root and
one further down), then, for each run, sets up a fresh workspace as `workspace.prepare` does
(a bare git directory fetched over file://, no network) and times:

  write      `_write_tree(ws, _tracked(ws, "HEAD"))`: HEAD's files into the empty tree
  unchanged  `collect_changes` on the tree as written
  edited     `collect_changes` after the "agent" changed 1% of the tracked files, added 100 new
             ones and left ignored files behind (a `node_modules` of `--ignored-files` files,
             logs, `__pycache__`)
  commit     `commit` of what `edited` proposed

The same steps are timed with plain git in an ordinary repository fetched the same way, as a
baseline only: `git checkout`, `git add --all` + `git diff --cached --numstat` (before and
after the same edits), `git commit`.

Every run of either side is a fresh interpreter, and the sides take turns, so load on the
machine that comes and goes hits both alike. Dirty pages are synced before each timed step;
files are read back from the page cache. Reported per step: the median over the runs of wall
time and of CPU time (the process and its git children, user + system), and the peak RSS
(`ru_maxrss`, largest over the runs) of the Python process and of its largest git child.
Both only grow during a run, so the step that raises them is the one that needed the memory.
Linux counts a child's image before exec in its peak, so a git figure no larger than the
Python one says only that git stayed below it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from runner import workspace  # noqa: E402

STEPS = ("write", "unchanged", "edited", "commit")
BRANCH = "bench"
SEED = 7
LARGEST_FILE = 8 * 1024 * 1024
DEEP_LEVELS = 24
ADDED_FILES = 100
ROOT_GITIGNORE = b"node_modules/\n*.log\n__pycache__/\n/build/\n*.tmp\n!important.log\n"
NESTED_GITIGNORE = b"*.generated\n"
IDENTITY = {"GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
            "GIT_COMMITTER_NAME": "Bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid"}


def git(args: list[str], cwd: Path, home: Path, env: dict[str, str] | None = None) -> bytes:
    """Plain git with the runner's hardening options and no global or system config."""
    command = ["git", *workspace._HARDENING_OPTIONS, "-c", "protocol.file.allow=always", *args]
    base = {"PATH": os.environ["PATH"], "HOME": str(home), "LC_ALL": "C", "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull, "GIT_ATTR_NOSYSTEM": "1"}
    return subprocess.run(command, cwd=cwd, env=base | (env or {}), check=True,
                          stdout=subprocess.PIPE).stdout


def text(rng: random.Random, size: int) -> bytes:
    """Hex digits in 64-byte lines: line-based like source code; zlib halves it."""
    data = bytearray(rng.randbytes((size + 1) // 2).hex().encode()[:size])
    data[63::64] = b"\n" * len(range(63, size, 64))
    return bytes(data)


def write(path: Path, content: bytes, executable: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    if executable:
        path.chmod(0o755)


def build_repository(source: Path, home: Path, files: int, total: int) -> int:
    """A one-commit repository on `main`; returns the bytes committed."""
    rng = random.Random(SEED)
    directories = [""]
    for n in range(max(1, files // 20)):
        directories.append(f"{rng.choice(directories)}/d{n}".lstrip("/"))
    directories.append("/".join(f"deep{n}" for n in range(DEEP_LEVELS)))

    # Log-normal sizes: many small files, a long tail of large ones.
    raw = [rng.lognormvariate(0, 1.6) for _ in range(files)]
    scale = total / sum(raw)
    sizes = [max(1, min(LARGEST_FILE, int(r * scale))) for r in raw]
    for n, size in enumerate(sizes):
        directory = source / rng.choice(directories)
        if rng.random() < 0.1:
            write(directory / f"blob{n}.bin", rng.randbytes(size))
        else:
            write(directory / f"file{n}.py", text(rng, size), executable=rng.random() < 0.02)
    for n in range(10):
        link = source / rng.choice(directories) / f"link{n}"
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(f"file{n}.py", link)
    write(source / ".gitignore", ROOT_GITIGNORE)
    write(source / directories[1] / ".gitignore", NESTED_GITIGNORE)

    git(["init", "--quiet", "--initial-branch=main"], source, home)
    git(["add", "--all"], source, home)
    git(["commit", "--quiet", "--no-verify", "-m", "Synthetic repository"], source, home, IDENTITY)
    return sum(sizes)


def edit_like_an_agent(tree: Path, source: Path, home: Path, ignored_files: int) -> None:
    """Change 1% of the tracked files, add new ones, and leave ignored files behind."""
    rng = random.Random(SEED)
    listing = git(["ls-tree", "-r", "-z", "--full-tree", "HEAD"], source, home).split(b"\0")
    tracked = sorted(os.fsdecode(record.partition(b"\t")[2]) for record in listing
                     if record.startswith((b"100644", b"100755")))
    for name in rng.sample(tracked, max(1, len(tracked) // 100)):
        with open(tree / name, "ab") as handle:
            handle.write(b"a line the agent added\n")
    directories = sorted({str(Path(name).parent) for name in tracked})
    for n in range(ADDED_FILES):
        where = rng.choice(directories) if n % 2 else f"added/part{n % 5}"
        write(tree / where / f"new{n}.py", text(rng, rng.randint(100, 4000)))
    for n in range(ignored_files):
        write(tree / "node_modules" / f"pkg{n // 10}" / f"module{n}.js", text(rng, rng.randint(100, 3000)))
    for n in range(50):
        write(tree / rng.choice(directories) / f"run{n}.log", text(rng, 500))
        write(tree / rng.choice(directories) / "__pycache__" / f"file{n}.pyc", rng.randbytes(500))


def cpu_seconds() -> float:
    """User and system time of this process and its finished children so far."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def peaks() -> tuple[int, int]:
    """Peak RSS in KiB of this process and of the largest child so far."""
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)


class Stopwatch:
    """Wall time, CPU time and peak RSS after each step of one run."""

    def __init__(self) -> None:
        self.figures: dict = {"start": {"rss": peaks()}}

    def mark(self, name: str) -> None:
        self.figures[name] = {"rss": peaks()}

    def time(self, name: str, action):
        os.sync()
        started, cpu = time.perf_counter(), cpu_seconds()
        result = action()
        self.figures[name] = {"wall": time.perf_counter() - started, "cpu": cpu_seconds() - cpu,
                              "rss": peaks()}
        return result


def run_runner(scratch: Path, source: Path, ignored_files: int) -> dict:
    watch = Stopwatch()
    root = scratch / "runner"
    root.mkdir(mode=0o700)
    ws = workspace.Workspace(root=root, tree=root / "tree", git_dir=root / "git", branch=BRANCH)
    ws.tree.mkdir()
    workspace._home(ws).mkdir(mode=0o700)
    workspace._run_git(ws, ["init", "--quiet", "--bare", "--template=", f"--initial-branch={BRANCH}"],
                       what="git init")
    workspace._run_git(ws, ["-c", "protocol.file.allow=always", "fetch", "--quiet", "--no-tags",
                            f"--depth={workspace.FETCH_DEPTH}", source.as_uri(),
                            "+refs/heads/main:refs/remotes/origin/main"], what="git fetch")
    base = workspace._rev_parse(ws, "refs/remotes/origin/main^{commit}")
    workspace._run_git(ws, ["update-ref", f"refs/heads/{BRANCH}", base, ""], what="git update-ref")
    watch.mark("setup")

    watch.time("write", lambda: workspace._write_tree(ws, workspace._tracked(ws, "HEAD")))
    unchanged = watch.time("unchanged", lambda: workspace.collect_changes(ws))
    assert not unchanged.files, unchanged.files[:5]
    edit_like_an_agent(ws.tree, source, scratch, ignored_files)
    changes = watch.time("edited", lambda: workspace.collect_changes(ws))
    assert not changes.left_out_count, changes.left_out[:5]
    watch.time("commit", lambda: workspace.commit(ws, changes, message="Edit", author_name="Bench",
                                                  author_email="bench@example.invalid"))
    workspace.remove(ws)
    return {"steps": watch.figures, "changed": len(changes.files)}


def run_git(scratch: Path, source: Path, ignored_files: int) -> dict:
    watch = Stopwatch()
    tree = scratch / "git"
    git(["init", "--quiet", f"--initial-branch={BRANCH}", str(tree)], scratch, scratch)
    git(["fetch", "--quiet", "--no-tags", f"--depth={workspace.FETCH_DEPTH}", source.as_uri(),
         "+refs/heads/main:refs/remotes/origin/main"], tree, scratch)
    watch.mark("setup")

    def in_tree(*commands: list[str]):
        return lambda: [git(command, tree, scratch, IDENTITY) for command in commands][-1]

    watch.time("write", in_tree(["checkout", "--quiet", "--force", "-B", BRANCH, "refs/remotes/origin/main"]))
    unchanged = watch.time("unchanged", in_tree(["add", "--all"], ["diff", "--cached", "--numstat", "-z"]))
    assert not unchanged, unchanged[:200]
    edit_like_an_agent(tree, source, scratch, ignored_files)
    numstat = watch.time("edited", in_tree(["add", "--all"], ["diff", "--cached", "--numstat", "-z"]))
    watch.time("commit", in_tree(["commit", "--quiet", "--no-verify", "-m", "Edit"]))
    shutil.rmtree(tree)
    return {"steps": watch.figures, "changed": len(workspace._parse_numstat(numstat))}


def in_fresh_interpreter(side: str, scratch: Path, source: Path, ignored_files: int) -> dict:
    command = [sys.executable, __file__, "--side", side, "--scratch", str(scratch),
               "--source", str(source), "--ignored-files", str(ignored_files)]
    return json.loads(subprocess.run(command, check=True, stdout=subprocess.PIPE).stdout)


def report(runs: dict[str, list[dict]]) -> None:
    def mib(kib: int) -> str:
        return f"{kib / 1024:.0f}"

    def median(side: str, step: str, figure: str) -> float:
        return statistics.median(run["steps"][step][figure] for run in runs[side])

    def peak(side: str, step: str, which: int) -> int:
        return max(run["steps"][step]["rss"][which] for run in runs[side])

    for side in runs:
        print(f"{side}: changed paths proposed {[run['changed'] for run in runs[side]]}, "
              f"peak RSS before the first step {mib(peak(side, 'start', 0))} MiB, "
              f"largest git while fetching {mib(peak(side, 'setup', 1))} MiB")
    print("| step | runner, wall (CPU) | runner peak RSS, Python / largest git "
          "| plain git, wall (CPU) | plain git peak RSS |")
    print("| --- | --- | --- | --- | --- |")
    for step in STEPS:
        cells = [step]
        for side in runs:
            cells.append(f"{median(side, step, 'wall'):.2f} s ({median(side, step, 'cpu'):.2f} s)")
            if side == "runner":
                cells.append(f"{mib(peak(side, step, 0))} / {mib(peak(side, step, 1))} MiB")
            else:
                cells.append(f"{mib(peak(side, step, 1))} MiB")
        print("| " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000, help="tracked files")
    parser.add_argument("--megabytes", type=int, default=100, help="their total size")
    parser.add_argument("--ignored-files", type=int, default=10_000,
                        help="files the agent leaves in an ignored node_modules")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--side", choices=("runner", "git"), help=argparse.SUPPRESS)
    parser.add_argument("--scratch", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--source", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.side:  # one run of one side, in the fresh interpreter started below
        run = run_runner if args.side == "runner" else run_git
        print(json.dumps(run(args.scratch, args.source, args.ignored_files)))
        return

    with tempfile.TemporaryDirectory(prefix="bench-work-tree-") as scratch_dir:
        scratch = Path(scratch_dir)
        source = scratch / "source"
        started = time.perf_counter()
        size = build_repository(source, scratch, args.files, args.megabytes * 1024 * 1024)
        print(f"repository: {args.files} files, {size / 1024 / 1024:.0f} MiB, "
              f"built in {time.perf_counter() - started:.1f} s; {args.runs} runs; "
              f"{args.ignored_files} ignored files left by the agent")
        runs: dict[str, list[dict]] = {"runner": [], "git": []}
        for n in range(args.runs):
            for side in ("runner", "git") if n % 2 == 0 else ("git", "runner"):
                runs[side].append(in_fresh_interpreter(side, scratch, source, args.ignored_files))
        report(runs)


if __name__ == "__main__":
    main()
