"""Which deliveries the service acts on: one handler per (event, action).

A handler is a pure function from the payload to the task it asks for (or None). Adding a
behaviour means adding a module with its function and one line here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.comments import task_from_comment
from app.store import NewTask

Handler = Callable[[dict[str, Any], str], NewTask | None]

HANDLERS: dict[tuple[str, str | None], Handler] = {
    ("issue_comment", "created"): task_from_comment,
}


def task_for_delivery(event: str, payload: dict[str, Any], slug: str) -> NewTask | None:
    handler = HANDLERS.get((event, payload.get("action")))
    return handler(payload, slug) if handler else None
