"""Which deliveries the service acts on: one handler per (event, action).

A handler is a pure function from the payload to the task it asks for (or None). Adding a
behaviour means adding a module with its function and one line here. A handler raises
MalformedPayload (app/payload.py) for a payload it cannot read; the delivery is then ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from app.comments import task_from_comment
from app.payload import MalformedPayload
from app.store import NewTask

Handler = Callable[[dict[str, Any], str], NewTask | None]

HANDLERS: dict[tuple[str, str | None], Handler] = {
    ("issue_comment", "created"): task_from_comment,
}

# GitHub's actions are short snake_case words; anything else is recorded as no action.
_ACTION = re.compile(r"[a-z0-9_]{1,64}")


def action_of(payload: dict[str, Any]) -> str | None:
    """The payload's action when it has the shape of one, else None."""
    action = payload.get("action")
    return action if isinstance(action, str) and _ACTION.fullmatch(action) else None


def task_for_delivery(event: str, payload: dict[str, Any], slug: str) -> NewTask | None:
    action = action_of(payload)
    if action is None and payload.get("action") is not None:
        # Not read as "no action": that would route it to a handler for events without one.
        raise MalformedPayload("action is not a short lower-case word")
    handler = HANDLERS.get((event, action))
    return handler(payload, slug) if handler else None
