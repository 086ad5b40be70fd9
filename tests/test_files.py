import os
from pathlib import Path

import pytest

from runner.files import MAX_FILE_BYTES, FileEditor, ToolError, resolve_inside


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "src" / "pkg" / "deep").mkdir()
    (root / "src" / "pkg" / "deep" / "hidden_by_depth.txt").write_text("x\n")
    (root / "src" / "app.py").write_text("def main():\n    return 1\n")
    (root / ".git").mkdir()
    (root / ".env").write_text("SECRET=1\n")
    (root / "README.md").write_text("# title\n")
    return root


@pytest.fixture
def editor(tree: Path) -> FileEditor:
    return FileEditor(tree)


# ---- path confinement -------------------------------------------------------------------------

def _symlink_to_etc(root: Path) -> None:
    (root / "link").symlink_to("/etc")


def _symlink_dir_outside(root: Path) -> None:
    outside = root.parent / "outside"
    outside.mkdir()
    (outside / "file").write_text("not yours\n")
    (root / "link").symlink_to(outside)


def _dangling_outside(root: Path) -> None:
    (root / "link").symlink_to(root.parent / "does-not-exist-yet")


def _relative_symlink_out(root: Path) -> None:
    (root / "src" / "up").symlink_to("../../")


@pytest.mark.parametrize(
    ("setup", "path", "problem"),
    [
        (None, "..", "outside the work tree"),
        (None, "../tree2/x", "outside the work tree"),
        (None, "a/../../x", "outside the work tree"),
        (None, "/etc/passwd", "absolute paths must be under /workspace"),
        (None, "/workspace/../etc", "outside the work tree"),
        (None, "/workspacex/file", "absolute paths must be under /workspace"),
        (_symlink_to_etc, "link", "symbolic link"),
        (_symlink_to_etc, "link/passwd", "symbolic link"),
        (_symlink_dir_outside, "link/file", "symbolic link"),
        (_dangling_outside, "link", "symbolic link"),
        (_relative_symlink_out, "src/up/tree2", "symbolic link"),
        (None, "", "non-empty"),
        (None, "a\0b", "NUL"),
    ],
)
def test_resolve_inside_refuses_escapes(tree, setup, path, problem):
    if setup:
        setup(tree)
    with pytest.raises(ToolError, match=problem):
        resolve_inside(tree, path)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("src/app.py", "src/app.py"),
        ("./src/../README.md", "README.md"),
        ("/workspace/src/app.py", "src/app.py"),
        ("/workspace", "."),
        ("/workspace/", "."),
        ("new/file.txt", "new/file.txt"),
        ("inside-link/app.py", "src/app.py"),
    ],
)
def test_resolve_inside_maps_paths_into_the_tree(tree, path, expected):
    (tree / "inside-link").symlink_to("src")
    assert resolve_inside(tree, path) == (tree / expected).resolve()


def test_resolve_inside_uses_the_given_mount_point(tree):
    assert resolve_inside(tree, "/repo/README.md", mount_point="/repo") == tree / "README.md"
    with pytest.raises(ToolError, match="under /repo"):
        resolve_inside(tree, "/workspace/README.md", mount_point="/repo")


@pytest.mark.parametrize(
    "request_",
    [
        {"command": "view", "path": "link/passwd"},
        {"command": "create", "path": "link/evil", "file_text": "x"},
        {"command": "str_replace", "path": "link/passwd", "old_str": "root", "new_str": "x"},
        {"command": "insert", "path": "link/passwd", "insert_line": 0, "insert_text": "x"},
    ],
)
def test_every_command_refuses_a_symlink_out(tree, editor, request_):
    outside = tree.parent / "outside"
    outside.mkdir()
    (outside / "passwd").write_text("root:x:0:0\n")
    (tree / "link").symlink_to(outside)
    with pytest.raises(ToolError, match="symbolic link"):
        editor.handle(request_)
    assert (outside / "passwd").read_text() == "root:x:0:0\n"
    assert sorted(p.name for p in outside.iterdir()) == ["passwd"]


def test_symlink_swapped_in_after_the_check_is_not_followed(tree, editor, monkeypatch):
    # The sandbox can replace a checked path with a symlink at any moment: the open must not
    # follow it even though resolve_inside approved the path a moment earlier.
    outside = tree.parent / "outside"
    outside.mkdir()
    (outside / "target").write_text("untouched\n")
    import runner.files as files

    real_resolve = files.resolve_inside

    def resolve_then_swap(root, path, **kwargs):
        resolved = real_resolve(root, path, **kwargs)
        (tree / "src" / "app.py").unlink()
        (tree / "src" / "app.py").symlink_to(outside / "target")
        return resolved

    monkeypatch.setattr(files, "resolve_inside", resolve_then_swap)
    with pytest.raises(ToolError, match="symbolic link"):
        editor.handle({"command": "create", "path": "src/app.py", "file_text": "pwned\n"})
    assert (outside / "target").read_text() == "untouched\n"


def test_directory_swapped_for_symlink_after_the_check_is_not_followed(tree, editor, monkeypatch):
    outside = tree.parent / "outside"
    outside.mkdir()
    import runner.files as files

    real_resolve = files.resolve_inside

    def resolve_then_swap(root, path, **kwargs):
        resolved = real_resolve(root, path, **kwargs)
        (tree / "src").rename(tree / "src-moved")
        (tree / "src").symlink_to(outside)
        return resolved

    monkeypatch.setattr(files, "resolve_inside", resolve_then_swap)
    with pytest.raises(ToolError, match="symbolic link"):
        editor.handle({"command": "create", "path": "src/new.py", "file_text": "pwned\n"})
    assert list(outside.iterdir()) == []


# ---- view -------------------------------------------------------------------------------------

def test_view_file_numbers_lines(editor):
    out = editor.handle({"command": "view", "path": "src/app.py"})
    assert "/workspace/src/app.py" in out
    assert "     1\tdef main():\n     2\t    return 1\n" in out


def test_view_range(tree, editor):
    (tree / "many.txt").write_text("".join(f"line {n}\n" for n in range(1, 11)))
    out = editor.handle({"command": "view", "path": "many.txt", "view_range": [3, 4]})
    assert "     3\tline 3\n     4\tline 4\n" in out
    assert "line 2" not in out and "line 5" not in out
    tail = editor.handle({"command": "view", "path": "many.txt", "view_range": [9, -1]})
    assert "     9\tline 9\n    10\tline 10\n" in tail and "line 8" not in tail


@pytest.mark.parametrize(
    ("view_range", "message"),
    [
        ([0, 2], "start 0 is out of range"),
        ([2, 1], "end 1 is before start 2"),
        ([5, 6], "start 5 is out of range: the file has 2 lines"),
        ([1], "two integers"),
        ("1-2", "two integers"),
    ],
)
def test_view_range_errors(editor, view_range, message):
    with pytest.raises(ToolError, match=message):
        editor.handle({"command": "view", "path": "src/app.py", "view_range": view_range})


def test_view_directory_lists_two_levels_without_hidden_entries(editor):
    out = editor.handle({"command": "view", "path": "."})
    listed = out.splitlines()[1:]
    assert listed == [
        "/workspace/README.md",
        "/workspace/src/",
        "/workspace/src/app.py",
        "/workspace/src/pkg/",
    ]


def test_view_caps_output(tree):
    (tree / "big.txt").write_text("x" * 100 + "\n" * 5000)
    out = FileEditor(tree, max_output=500).handle({"command": "view", "path": "big.txt"})
    assert len(out) <= 500
    assert "output truncated at 500 characters" in out


def test_view_refuses_binary_large_and_special_files(tree, editor):
    (tree / "blob.bin").write_bytes(b"abc\0def")
    with pytest.raises(ToolError, match="binary"):
        editor.handle({"command": "view", "path": "blob.bin"})
    (tree / "huge.txt").write_bytes(b"a" * (MAX_FILE_BYTES + 1))
    with pytest.raises(ToolError, match="larger than 1 MB"):
        editor.handle({"command": "view", "path": "huge.txt"})
    os.mkfifo(tree / "pipe")
    with pytest.raises(ToolError, match="not a regular file"):
        editor.handle({"command": "view", "path": "pipe"})


def test_view_missing_file(editor):
    with pytest.raises(ToolError, match="/workspace/nope.txt does not exist"):
        editor.handle({"command": "view", "path": "nope.txt"})


# ---- create -----------------------------------------------------------------------------------

def test_create_makes_parent_directories(tree, editor):
    out = editor.handle({"command": "create", "path": "/workspace/a/b/c.txt", "file_text": "héllo\n"})
    assert out == "Created /workspace/a/b/c.txt."
    assert (tree / "a" / "b" / "c.txt").read_text(encoding="utf-8") == "héllo\n"


def test_create_overwrites_a_regular_file(tree, editor):
    out = editor.handle({"command": "create", "path": "README.md", "file_text": "new\n"})
    assert out == "Overwrote /workspace/README.md."
    assert (tree / "README.md").read_text() == "new\n"


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"command": "create", "path": "src", "file_text": "x"}, "/workspace/src is a directory"),
        ({"command": "create", "path": "README.md/x", "file_text": "x"}, "parent of this path is not a dir"),
        ({"command": "create", "path": "x.txt"}, "`file_text` is required for `create`"),
        ({"command": "create", "path": 3, "file_text": "x"}, "`path` is required"),
        ({"command": "delete", "path": "x.txt"}, "unknown command 'delete'"),
    ],
)
def test_create_errors(editor, request_, message):
    with pytest.raises(ToolError, match=message):
        editor.handle(request_)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")
def test_written_files_and_created_directories_are_chowned_to_owner(tree):
    editor = FileEditor(tree, owner=(1000, 1000))
    editor.handle({"command": "create", "path": "new/dir/f.txt", "file_text": "x\n"})
    for path in (tree / "new", tree / "new" / "dir", tree / "new" / "dir" / "f.txt"):
        assert (path.stat().st_uid, path.stat().st_gid) == (1000, 1000), path
    assert (tree / "src").stat().st_uid == 0  # existing directories are left alone
    editor.handle({"command": "str_replace", "path": "src/app.py", "old_str": "1", "new_str": "2"})
    assert (tree / "src" / "app.py").stat().st_uid == 1000


def test_without_owner_files_keep_the_writers_ownership(tree, editor):
    editor.handle({"command": "create", "path": "f.txt", "file_text": "x\n"})
    assert (tree / "f.txt").stat().st_uid == os.geteuid()


# ---- str_replace ------------------------------------------------------------------------------

def test_str_replace_edits_and_shows_a_snippet(tree, editor):
    out = editor.handle(
        {"command": "str_replace", "path": "src/app.py", "old_str": "return 1", "new_str": "return 2"}
    )
    assert (tree / "src" / "app.py").read_text() == "def main():\n    return 2\n"
    assert out.startswith("Edited /workspace/src/app.py.")
    assert "     2\t    return 2" in out


def test_str_replace_without_new_str_deletes(tree, editor):
    editor.handle({"command": "str_replace", "path": "src/app.py", "old_str": "    return 1\n"})
    assert (tree / "src" / "app.py").read_text() == "def main():\n"


def test_str_replace_keeps_the_file_mode(tree, editor):
    script = tree / "run.sh"
    script.write_text("echo a\n")
    script.chmod(0o755)
    editor.handle({"command": "str_replace", "path": "run.sh", "old_str": "a", "new_str": "b"})
    assert script.read_text() == "echo b\n"
    assert script.stat().st_mode & 0o777 == 0o755


def test_str_replace_missing_old_str(tree, editor):
    with pytest.raises(ToolError, match="`old_str` does not occur in /workspace/src/app.py"):
        editor.handle({"command": "str_replace", "path": "src/app.py", "old_str": "nope", "new_str": ""})
    assert (tree / "src" / "app.py").read_text() == "def main():\n    return 1\n"


def test_str_replace_ambiguous_old_str_names_the_lines(tree, editor):
    (tree / "dup.py").write_text("x = 1\ny = 2\nx = 1\n")
    with pytest.raises(ToolError, match=r"occurs 2 times in /workspace/dup.py \(lines 1, 3\)"):
        editor.handle({"command": "str_replace", "path": "dup.py", "old_str": "x = 1", "new_str": "x = 3"})
    assert (tree / "dup.py").read_text() == "x = 1\ny = 2\nx = 1\n"


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda t: (t / "f").write_bytes(b"a\0b"), "binary"),
        (lambda t: (t / "f").write_bytes(b"a" * (MAX_FILE_BYTES + 1)), "larger than 1 MB"),
        (lambda t: (t / "f").write_bytes(b"caf\xe9\n"), "not valid UTF-8"),
        (lambda t: os.mkfifo(t / "f"), "not a regular file"),
        (lambda t: (t / "f").mkdir(), "/workspace/f is a directory"),
        (lambda t: None, "/workspace/f does not exist"),
    ],
)
def test_str_replace_refuses_unsuitable_files(tree, editor, setup, message):
    setup(tree)
    with pytest.raises(ToolError, match=message):
        editor.handle({"command": "str_replace", "path": "f", "old_str": "a", "new_str": "b"})


def test_str_replace_empty_old_str(editor):
    with pytest.raises(ToolError, match="`old_str` must not be empty"):
        editor.handle({"command": "str_replace", "path": "src/app.py", "old_str": "", "new_str": "x"})


# ---- insert -----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("original", "line", "text", "expected"),
    [
        ("a\nb\n", 0, "top", "top\na\nb\n"),
        ("a\nb\n", 1, "mid\n", "a\nmid\nb\n"),
        ("a\nb\n", 2, "end", "a\nb\nend\n"),
        ("a\nb", 2, "end", "a\nb\nend\n"),
        ("", 0, "only", "only\n"),
        ("a\fb\n", 1, "x", "a\fb\nx\n"),  # only "\n" separates lines, as in grep -n
    ],
)
def test_insert(tree, editor, original, line, text, expected):
    (tree / "f.txt").write_text(original)
    out = editor.handle({"command": "insert", "path": "f.txt", "insert_line": line, "insert_text": text})
    assert (tree / "f.txt").read_text() == expected
    assert out.startswith(f"Inserted 1 line(s) after line {line} of /workspace/f.txt.")


def test_insert_accepts_new_str_as_the_text(tree, editor):
    editor.handle({"command": "insert", "path": "README.md", "insert_line": 1, "new_str": "more"})
    assert (tree / "README.md").read_text() == "# title\nmore\n"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (3, "`insert_line` 3 is out of range: /workspace/src/app.py has 2 lines"),
        (-1, "out of range"),
        ("1", "must be an integer"),
        (True, "must be an integer"),
        (None, "must be an integer"),
    ],
)
def test_insert_errors(tree, editor, line, message):
    with pytest.raises(ToolError, match=message):
        editor.handle({"command": "insert", "path": "src/app.py", "insert_line": line, "insert_text": "x"})
    assert (tree / "src" / "app.py").read_text() == "def main():\n    return 1\n"


def test_viewing_a_huge_directory_reads_a_bounded_number_of_entries(tmp_path, monkeypatch):
    from runner import files

    (tmp_path / "many").mkdir()
    for n in range(1500):
        (tmp_path / "many" / f"f{n:04d}").touch()
    for n in range(5):
        (tmp_path / f"dir-{n}").mkdir()
        for m in range(300):
            (tmp_path / f"dir-{n}" / f"f{m}").touch()
    limits: list[int] = []
    real = files._visible_entries
    monkeypatch.setattr(files, "_visible_entries",
                        lambda fd, limit: (limits.append(limit), real(fd, limit))[1])
    editor = FileEditor(tmp_path, owner=None, max_output=200_000)

    many = editor.handle({"command": "view", "path": "many"})
    top = editor.handle({"command": "view", "path": "."})
    small = FileEditor(tmp_path, owner=None, max_output=2_000).handle({"command": "view", "path": "many"})

    assert many.count("/workspace/many/f") == files.LISTED_PER_DIRECTORY
    assert f"more than {files.LISTED_PER_DIRECTORY} entries in /workspace/many" in many
    assert "/workspace/dir-0/… (more entries; view /workspace/dir-0 to list them)" in top
    assert top.count("/workspace/dir-0/f") == files.LISTED_PER_SUBDIRECTORY
    assert len(small) <= 2_000 and "output truncated" in small
    assert max(limits) <= files.LISTED_PER_DIRECTORY
