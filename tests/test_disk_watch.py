"""runner.disk_watch: the work tree's size, measured from outside the sandbox."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from runner.disk_watch import DiskWatch, disk_usage

MB = 1024 * 1024


def _write(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))


def test_disk_usage_counts_what_is_on_disk_and_follows_no_link(tmp_path):
    tree = tmp_path / "tree"
    _write(tree / "a" / "b" / "data.bin", 3 * MB)
    _write(tmp_path / "outside" / "huge.bin", 8 * MB)
    (tree / "link").symlink_to(tmp_path / "outside")
    (tree / "file-link").symlink_to(tmp_path / "outside" / "huge.bin")
    with open(tree / "sparse.bin", "wb") as sparse:
        sparse.truncate(50 * MB)  # apparent size only

    usage = disk_usage(tree)

    assert 3 * MB <= usage < 4 * MB


def test_a_watch_calls_back_once_when_the_tree_outgrows_its_limit(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    exceeded = threading.Event()
    calls: list[int] = []
    watch = DiskWatch(tree, 2 * MB, lambda: (calls.append(1), exceeded.set()), interval=0.05)
    watch.start()
    try:
        assert not exceeded.wait(0.3)
        _write(tree / "big.bin", 3 * MB)
        assert exceeded.wait(10)
        assert watch.check() is True
    finally:
        watch.stop()
    # The watch may fire while the file is still being written: past the limit is what counts.
    assert calls == [1] and watch.exceeded_with > 2 * MB


def test_check_within_the_limit_is_quiet(tmp_path):
    _write(tmp_path / "small.bin", MB // 2)
    watch = DiskWatch(tmp_path, 2 * MB, lambda: (_ for _ in ()).throw(AssertionError("called")))
    assert watch.check() is False and watch.exceeded_with is None
