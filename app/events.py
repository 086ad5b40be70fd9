"""Which deliveries the service acts on: one handler per (event, action).

A handler is a pure function from the payload to what it asks for: a task, an installation
change, or None. Adding a behaviour means adding a module with its function and one line here.
A handler raises MalformedPayload (app/payload.py) for a payload it cannot read; the delivery
is then ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.buttons import ButtonPress, button_press
from app.comments import task_from_comment
from app.installations import installation_change, repositories_change
from app.labels import task_from_issue_label, task_from_pull_request_label
from app.payload import MalformedPayload
from app.review_comments import task_from_review_comment
from app.store import InstallationChange, NewTask


@dataclass(frozen=True)
class Intake:
    """What the handlers need to know about this App."""

    slug: str  # the App's login: "@slug" addresses it
    trigger_label: str  # the label that asks for work
    app_id: int | None = None  # the App's id: only its own check runs have buttons to press


Outcome = NewTask | InstallationChange | ButtonPress | None
Handler = Callable[[dict[str, Any], Intake], Outcome]

HANDLERS: dict[tuple[str, str | None], Handler] = {
    ("issue_comment", "created"): lambda payload, intake: task_from_comment(payload, intake.slug),
    ("pull_request_review_comment", "created"):
        lambda payload, intake: task_from_review_comment(payload, intake.slug),
    ("issues", "labeled"): lambda payload, intake: task_from_issue_label(payload, intake.trigger_label),
    ("pull_request", "labeled"):
        lambda payload, intake: task_from_pull_request_label(payload, intake.trigger_label),
    **{("check_run", action): lambda payload, intake: button_press(payload, intake.app_id)
       for action in ("requested_action", "rerequested")},
    **{("installation", action): lambda payload, _intake: installation_change(payload)
       for action in ("created", "deleted", "suspend", "unsuspend")},
    **{("installation_repositories", action): lambda payload, _intake: repositories_change(payload)
       for action in ("added", "removed")},
}

# GitHub's actions are short snake_case words; anything else is recorded as no action.
_ACTION = re.compile(r"[a-z0-9_]{1,64}")


def action_of(payload: dict[str, Any]) -> str | None:
    """The payload's action when it has the shape of one, else None."""
    action = payload.get("action")
    return action if isinstance(action, str) and _ACTION.fullmatch(action) else None


def outcome_of_delivery(event: str, payload: dict[str, Any], intake: Intake) -> Outcome:
    action = action_of(payload)
    if action is None and payload.get("action") is not None:
        # Not read as "no action": that would route it to a handler for events without one.
        raise MalformedPayload("action is not a short lower-case word")
    handler = HANDLERS.get((event, action))
    return handler(payload, intake) if handler else None
