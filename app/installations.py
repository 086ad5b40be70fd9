"""What GitHub says about the App's installations: recorded, so work is refused where the App
was uninstalled, suspended or removed from a repository, without a GitHub call bound to fail.

The decision itself is `app.store.installation_refusal`; these handlers only read the events.
"""

from __future__ import annotations

from typing import Any

from app.payload import REPO_FULL_NAME, MalformedPayload, read_id, read_text
from app.store import InstallationChange

# An installation can hold every repository of a large organisation.
MAX_REPOSITORIES = 100_000


def installation_change(payload: dict[str, Any]) -> InstallationChange:
    """An `installation` delivery: created, deleted, suspend or unsuspend."""
    return InstallationChange(read_id(payload, "installation.id"), payload["action"])


def repositories_change(payload: dict[str, Any]) -> InstallationChange | None:
    """An `installation_repositories` delivery: repositories added or removed."""
    action = payload["action"]
    key = f"repositories_{action}"
    listed = payload.get(key)
    if not isinstance(listed, list) or len(listed) > MAX_REPOSITORIES:
        raise MalformedPayload(f"{key} is not a list of repositories")
    repos = []
    for index, item in enumerate(listed):
        if not isinstance(item, dict):
            raise MalformedPayload(f"{key}[{index}] is not an object")
        repos.append(read_text({"repository": item}, "repository.full_name", pattern=REPO_FULL_NAME))
    installation_id = read_id(payload, "installation.id")
    if not repos:
        return None
    return InstallationChange(installation_id, action, tuple(dict.fromkeys(repos)))
