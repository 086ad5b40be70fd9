"""What a delivery's payload must look like: the body as one JSON object.

A valid signature says a delivery comes from GitHub, not that it has GitHub's shape. Anything
else becomes an exception with a message a person can act on, so the webhook answers 400 for a
body it cannot read, never 500.
"""

from __future__ import annotations

import json
from typing import Any

# GitHub's integers have at most 20 digits. Python refuses more than 4,300 with an error that
# would read as "not JSON"; a bound of our own says what is wrong.
MAX_INTEGER_DIGITS = 40


class BadBody(ValueError):
    """The body is not one JSON object; the message says what is wrong with it."""


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
