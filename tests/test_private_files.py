"""`.env` and the key file: other lines kept, values read back exactly, 0600 from the start."""

from __future__ import annotations

import io
import os
import random
import stat
import string

import pytest
from dotenv import dotenv_values

from app.private_files import DotenvError, dotenv_with, quoted, read_text_if_any, write_private

VALUES = {"GITHUB_APP_ID": "4242", "GITHUB_WEBHOOK_SECRET": "s3cr3t"}


@pytest.mark.parametrize(("existing", "expected"), [
    ("", "# Saved\nGITHUB_APP_ID='4242'\nGITHUB_WEBHOOK_SECRET='s3cr3t'\n"),
    ("A=1", "A=1\n\n# Saved\nGITHUB_APP_ID='4242'\nGITHUB_WEBHOOK_SECRET='s3cr3t'\n"),
    ("A=1\nGITHUB_APP_ID=\nB=2\n",
     "A=1\nGITHUB_APP_ID='4242'\nB=2\n\n# Saved\nGITHUB_WEBHOOK_SECRET='s3cr3t'\n"),
    ("GITHUB_APP_ID=1\nGITHUB_APP_ID=\n",  # the last one is the one read
     "GITHUB_APP_ID=1\nGITHUB_APP_ID='4242'\n\n# Saved\nGITHUB_WEBHOOK_SECRET='s3cr3t'\n"),
    ("export GITHUB_APP_ID=  # later\nGITHUB_WEBHOOK_SECRET=\"old\"\n",
     "GITHUB_APP_ID='4242'\nGITHUB_WEBHOOK_SECRET='s3cr3t'\n"),
    ("A=1\r\n\r\nGITHUB_APP_ID=\r\n",
     "A=1\r\n\r\nGITHUB_APP_ID='4242'\r\n\r\n# Saved\r\nGITHUB_WEBHOOK_SECRET='s3cr3t'\r\n"),
    ("\ufeffA=1\n", "\ufeffA=1\n\n# Saved\nGITHUB_APP_ID='4242'\nGITHUB_WEBHOOK_SECRET='s3cr3t'\n"),
    ("K=\"multi\nGITHUB_APP_ID=inside\nline\"\n",  # not an assignment: inside a quoted value
     "K=\"multi\nGITHUB_APP_ID=inside\nline\"\n\n# Saved\nGITHUB_APP_ID='4242'\n"
     "GITHUB_WEBHOOK_SECRET='s3cr3t'\n"),
    ("not a binding at all\n",
     "not a binding at all\n\n# Saved\nGITHUB_APP_ID='4242'\nGITHUB_WEBHOOK_SECRET='s3cr3t'\n"),
])
def test_env_lines_are_kept_and_settings_set_once(existing, expected):
    assert dotenv_with(existing, VALUES, heading="Saved") == expected


@pytest.mark.parametrize("value", ["plain", "with space", "it's", 'say "hi"', "back\\slash",
                                   "trailing\\", "#hash", "a=b", "$HOME", "ünïcode", "tab\tin",
                                   "new\nline", "'", "\\'", "x" * 2000])
def test_values_read_back_exactly(value):
    text = dotenv_with("OTHER=1\n", {"GITHUB_WEBHOOK_SECRET": value})
    assert dotenv_values(stream=io.StringIO(text))["GITHUB_WEBHOOK_SECRET"] == value


def test_a_value_that_would_be_expanded_is_refused():
    with pytest.raises(DotenvError, match="reads back unchanged"):
        dotenv_with("", {"GITHUB_PRIVATE_KEY_PATH": "/data/${HOME}/key.pem"})


def test_quoting():
    assert quoted("a'b\\c") == "'a\\'b\\\\c'"


def test_random_env_files_keep_their_other_values():
    rng = random.Random(11)
    pieces = ["A=1", "B='two words'", 'C="x\\"y"', "# comment", "", "   ", "export D=4",
              "GITHUB_APP_ID=", "GITHUB_APP_ID=9", "E", "garbage line", "F=${A}",
              'G="multi\nline"', "H = spaced", "\r", "I='unterminated", "GITHUB_WEBHOOK_SECRET='x'"]
    value_chars = string.ascii_letters + string.digits + " '\"\\#=$\t"
    for _ in range(500):
        existing = rng.choice(["\n", "\r\n"]).join(rng.choice(pieces) for _ in range(rng.randint(0, 8)))
        values = {name: "".join(rng.choice(value_chars) for _ in range(rng.randint(1, 20)))
                  for name in rng.sample(["GITHUB_APP_ID", "GITHUB_WEBHOOK_SECRET", "NEW"], 2)}
        try:
            text = dotenv_with(existing, values)
        except DotenvError as error:
            # Refused only for a value python-dotenv would expand, or a file it cannot read.
            assert ("$" in "".join(values.values()) or "python-dotenv cannot read line" in str(error)
                    ), (existing, values)
            continue
        read = dotenv_values(stream=io.StringIO(text))
        assert all(read[name] == value for name, value in values.items())
        before = dotenv_values(stream=io.StringIO(existing), interpolate=False)
        after = dotenv_values(stream=io.StringIO(text), interpolate=False)
        assert {k: v for k, v in before.items() if k not in values} == {
            k: v for k, v in after.items() if k not in values}


def test_a_private_file_is_0600_from_the_start_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        write_private(tmp_path / "key.pem", "secret")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "key.pem").stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["key.pem"]  # no temporary file left


def test_a_private_file_replaces_the_old_one_and_follows_a_symlink_when_asked(tmp_path):
    real = tmp_path / "elsewhere.env"
    real.write_text("A=1\n")
    real.chmod(0o644)
    (tmp_path / ".env").symlink_to(real)
    write_private(tmp_path / ".env", "A=2\n", follow_symlink=True)
    assert (tmp_path / ".env").is_symlink() and real.read_text() == "A=2\n"
    assert stat.S_IMODE(real.stat().st_mode) == 0o600


@pytest.mark.parametrize("target_exists", [False, True], ids=["dangling", "to-a-file"])
def test_a_symlink_at_a_private_file_is_replaced_not_followed(tmp_path, target_exists):
    """The key file: a link planted at its name must not carry the key out of the directory."""
    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    data.mkdir()
    elsewhere.mkdir()
    target = elsewhere / "collected.pem"
    if target_exists:
        target.write_text("theirs")
    (data / "key.pem").symlink_to(target)
    write_private(data / "key.pem", "secret")
    assert not (data / "key.pem").is_symlink()
    assert (data / "key.pem").read_text() == "secret"
    assert stat.S_IMODE((data / "key.pem").stat().st_mode) == 0o600
    assert (target.read_text() == "theirs") if target_exists else not target.exists()
    assert [p.name for p in data.iterdir()] == ["key.pem"]


def test_a_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / ".env"
    target.write_text("A=1\n")

    def broken(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError):
        write_private(target, "A=2\n")
    assert target.read_text() == "A=1\n" and [p.name for p in tmp_path.iterdir()] == [".env"]


def test_line_endings_are_read_as_they_are(tmp_path):
    (tmp_path / ".env").write_bytes(b"A=1\r\n")
    assert read_text_if_any(tmp_path / ".env") == "A=1\r\n"
    assert read_text_if_any(tmp_path / "none") == ""
