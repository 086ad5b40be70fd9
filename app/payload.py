"""What a delivery's payload must look like: the body as one JSON object, and each field a
handler reads as the type GitHub sends.

A valid signature says a delivery comes from GitHub, not that it has GitHub's shape. Anything
else becomes an exception with a message a person can act on, so the webhook answers 400 for a
body it cannot read and "ignored" for a field of the wrong shape, never 500.
"""

from __future__ import annotations

import json
import re
from typing import Any

SQLITE_MAX_INTEGER = 2**63 - 1  # SQLite's INTEGER is signed 64-bit
# GitHub's integers have at most 20 digits. Python refuses more than 4,300 with an error that
# would read as "not JSON"; a bound of our own says what is wrong.
MAX_INTEGER_DIGITS = 40
# GitHub refuses issue and comment bodies longer than this, and no other field a handler reads
# comes near it. Megabytes of comment would also cost the mention grammar seconds.
MAX_TEXT_CHARS = 65_536

# An owner is letters, digits, "-" (and "_" for managed users); a repository also allows ".".
# "." and ".." are excluded because the name becomes part of API paths.
REPO_FULL_NAME = re.compile(r"(?!\.\.?/)[A-Za-z0-9_.-]+/(?!\.\.?$)[A-Za-z0-9_.-]+")
# A login also becomes part of API paths; apps' bot accounts end in "[bot]".
LOGIN = re.compile(r"[A-Za-z0-9_-]+(?:\[bot\])?")


class BadBody(ValueError):
    """The body is not one JSON object; the message says what is wrong with it."""


class MalformedPayload(ValueError):
    """A field a handler needs is missing or not what GitHub sends; the message names it."""


def payload_from_body(body: bytes) -> dict[str, Any]:
    """The JSON object a delivery carries, read strictly: UTF-8, no NaN or Infinity, no
    duplicate keys (which parsers resolve differently), no overlong integers."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadBody("body is not UTF-8") from None
    try:
        payload = json.loads(text, object_pairs_hook=_object_without_duplicate_keys,
                             parse_constant=_refuse_constant, parse_int=_bounded_int)
    except RecursionError:
        raise BadBody("body is nested too deeply") from None
    except BadBody:  # a ValueError too: keep its message
        raise
    except ValueError:
        raise BadBody("body is not JSON") from None
    if not isinstance(payload, dict):
        raise BadBody("body is not a JSON object")
    return payload


def _object_without_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        raise BadBody("body has an object with a duplicate key")
    return value


def _refuse_constant(name: str) -> Any:
    raise BadBody(f"body has {name}, which is not JSON")


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise BadBody(f"body has an integer longer than {MAX_INTEGER_DIGITS} digits")
    return int(digits)


def read_object(payload: dict[str, Any], path: str) -> dict[str, Any]:
    """The object at a dotted path such as "comment.user"."""
    value = _at(payload, path)
    if not isinstance(value, dict):
        raise MalformedPayload(f"{path} is not an object")
    return value


def read_id(payload: dict[str, Any], path: str) -> int:
    """The id at a dotted path: an integer that SQLite can store, 1 or more."""
    value = _at(payload, path)
    # JSON's true is a Python int too, and never an id.
    if type(value) is not int or not 1 <= value <= SQLITE_MAX_INTEGER:
        raise MalformedPayload(f"{path} is not a positive 64-bit integer")
    return value


def read_text(payload: dict[str, Any], path: str, *, optional: bool = False,
              pattern: re.Pattern[str] | None = None) -> str:
    """The string at a dotted path; an optional one that is missing or null reads as ""."""
    value = _at(payload, path)
    if value is None and optional:
        return ""
    if not isinstance(value, str):
        raise MalformedPayload(f"{path} is not a string")
    if len(value) > MAX_TEXT_CHARS:
        raise MalformedPayload(f"{path} is longer than {MAX_TEXT_CHARS} characters")
    if not _is_valid_unicode(value):
        # JSON can escape a lone surrogate ("\ud800"), which no UTF-8 text (or SQLite) can hold.
        raise MalformedPayload(f"{path} has a lone surrogate")
    if pattern is not None and not pattern.fullmatch(value):
        raise MalformedPayload(f"{path} is not a name GitHub gives")
    return value


def _at(payload: dict[str, Any], path: str) -> Any:
    *parents, key = path.split(".")
    value: Any = payload
    for depth, parent in enumerate(parents):
        value = value.get(parent)
        if not isinstance(value, dict):
            raise MalformedPayload(f"{'.'.join(parents[:depth + 1])} is not an object")
    return value.get(key)


def _is_valid_unicode(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def read_user(payload: dict[str, Any], path: str) -> dict[str, str]:
    """The fields of a user object that `is_bot` and a task read, each checked."""
    return {"login": read_text(payload, f"{path}.login", pattern=LOGIN),
            "type": read_text(payload, f"{path}.type", optional=True)}


def read_login_or_empty(payload: dict[str, Any], path: str) -> str:
    """A login where GitHub may leave it out (a deleted account): "" when it is not there or
    not a login, so text by that user counts as untrusted."""
    try:
        return read_text(payload, path, pattern=LOGIN)
    except MalformedPayload:
        return ""
