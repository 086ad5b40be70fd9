"""What happens when someone presses a button on one of the App's check runs.

GitHub sends `check_run`/`requested_action` with the button's identifier, and
`check_run`/`rerequested` for the "Re-run" link, which is a retry. The check run names its
task in `external_id`; only check runs this App created count, whatever their external id says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from app.payload import REPO_FULL_NAME, MalformedPayload, read_id, read_text, read_user
from app.triggers import is_bot

BUTTONS = ("cancel", "retry", "continue")
_TASK_ID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class ButtonPress:
    """A button pressed on a task's check run: which, on which run, by whom."""

    repo: str
    installation_id: int
    check_run_id: int
    task_id: str  # the check run's external_id
    action: str  # one of BUTTONS
    requested_by: str
    requested_by_id: int


def button_press(payload: dict[str, Any], app_id: int | None) -> ButtonPress | None:
    """The press a `check_run` `requested_action` or `rerequested` delivery holds, or None when
    it is not about one of this App's task check runs (or a bot pressed it)."""
    sender = read_user(payload, "sender")
    press = {
        "repo": read_text(payload, "repository.full_name", pattern=REPO_FULL_NAME),
        "installation_id": read_id(payload, "installation.id"),
        "check_run_id": read_id(payload, "check_run.id"),
        "task_id": read_text(payload, "check_run.external_id", optional=True),
        "requested_by": sender["login"],
        "requested_by_id": read_id(payload, "sender.id"),
    }
    owner = read_id(payload, "check_run.app.id")
    if payload["action"] == "rerequested":
        action = "retry"
    else:
        action = read_text(payload, "requested_action.identifier")
        if len(action) > 20:  # GitHub's limit on an identifier
            raise MalformedPayload("requested_action.identifier is longer than 20 characters")
    if app_id is None or owner != app_id or is_bot(sender):
        return None
    if action not in BUTTONS or not _TASK_ID.fullmatch(press["task_id"]):
        return None
    return ButtonPress(action=action, **press)
