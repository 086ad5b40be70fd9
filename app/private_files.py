"""Files that hold secrets: the App's private key and `.env`.

Each is written whole to a new file that only its owner may read (mode 0600 from the moment
it exists), then renamed over the old one, so no reader ever sees a half-written file or a
moment where the secret is readable by others. The rename replaces the name itself, not what
a symlink there points to, unless the caller asks to follow it (`.env`, which may be kept
elsewhere). `.env` keeps every line it had; `dotenv_with` (pure) changes only the settings it
is given, and proves the result reads back exactly with python-dotenv, the reader
`load_settings` uses, before anything is written.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

from dotenv import dotenv_values
from dotenv.parser import parse_stream

_BOM = "\ufeff"


class DotenvError(ValueError):
    """The new `.env` would not read back as intended; nothing is written."""


def quoted(value: str) -> str:
    """`value` in single quotes as python-dotenv reads them: only \\\\ and \\' are escapes."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def dotenv_with(existing: str, values: dict[str, str], *, heading: str = "") -> str:
    """`existing` .env text with `values` set. The assignment python-dotenv reads (the last one
    of a name) is replaced where it stands; names not assigned yet are added at the end, under
    `heading`. Every other byte is kept."""
    bom = _BOM if existing.startswith(_BOM) else ""
    newline = "\r\n" if "\r\n" in existing else "\n"
    bindings = list(parse_stream(io.StringIO(existing)))
    last_of = {binding.key: index for index, binding in enumerate(bindings)
               if binding.key in values and not binding.error}
    pieces = []
    for index, binding in enumerate(bindings):
        if last_of.get(binding.key) == index:
            original = binding.original.string
            blank_before = original[:len(original) - len(original.lstrip())]
            ending = original[len(original.rstrip("\r\n")):] or newline
            pieces.append(f"{blank_before}{binding.key}={quoted(values[binding.key])}{ending}")
        else:
            pieces.append(binding.original.string)
    text = "".join(pieces)
    added = [f"{name}={quoted(value)}{newline}" for name, value in values.items()
             if name not in last_of]
    if added:
        if text and not text.endswith(("\n", "\r")):
            text += newline
        if heading:
            text += (newline if text else "") + "".join(
                f"# {line}{newline}" for line in heading.splitlines())
        text += "".join(added)
    text = bom + text
    unreadable = [binding.original.line for binding in bindings if binding.error]
    hint = (f" (python-dotenv cannot read line {unreadable[0]} of .env, such as an unclosed "
            "quote: fix that line)") if unreadable else ""
    _check_reads_back(existing, text, values, hint)
    return text


def _check_reads_back(before: str, after: str, values: dict[str, str], hint: str) -> None:
    # Interpolated, as load_settings reads it: "${" in a value would be expanded.
    read = dotenv_values(stream=io.StringIO(after.removeprefix(_BOM)))
    for name, value in values.items():
        if read.get(name) != value:
            raise DotenvError(f"{name} cannot be written to .env so that it reads back "
                              f"unchanged{hint}")
    old = dotenv_values(stream=io.StringIO(before.removeprefix(_BOM)), interpolate=False)
    new = dotenv_values(stream=io.StringIO(after.removeprefix(_BOM)), interpolate=False)
    if {k: v for k, v in old.items() if k not in values} != {
            k: v for k, v in new.items() if k not in values}:
        raise DotenvError(f".env cannot be updated without changing its other settings{hint}")


def write_private(path: Path, text: str, *, follow_symlink: bool = False) -> None:
    """Replace `path` with `text`, readable and writable by the owner only. A symlink at `path`
    is replaced, so a link planted at a predictable name (the key file's) cannot send the secret
    elsewhere; with `follow_symlink=True` it is followed, so a `.env` kept elsewhere stays where
    it is."""
    target = Path(os.path.realpath(path)) if follow_symlink else Path(path)
    # mkstemp creates the file with O_EXCL and mode 0600; fchmod makes it exactly 0600 whatever
    # the umask.
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".new")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as file:
            os.fchmod(file.fileno(), 0o600)
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    _sync_directory(target.parent)


def _sync_directory(directory: Path) -> None:
    """Make the rename itself durable; not every filesystem can."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_text_if_any(path: Path) -> str:
    """The file's text, line endings as they are; empty when there is none. Raises OSError or
    UnicodeDecodeError."""
    try:
        with open(path, encoding="utf-8", newline="") as file:
            return file.read()
    except FileNotFoundError:
        return ""
