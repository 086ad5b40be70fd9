"""Whether async-code may work on a pull request's branch: pure decisions, each refusal with a
reason meant for the person who asked."""

from __future__ import annotations

from typing import Any


def refusal(pull: dict[str, Any], *, repo: str, default_branch: str | None = None) -> str | None:
    """Why the task may not work on this pull request, or None when it may.

    `default_branch` is checked when known: a head that is the default branch is never pushed to.
    """
    number = pull.get("number")
    if pull.get("merged") or pull.get("merged_at"):
        return (f"#{number} is already merged, so there is nothing to work on. Ask on an issue, "
                "or open a new pull request and ask there.")
    if pull.get("state") != "open":
        return f"#{number} is closed. Reopen it and ask again, or ask on an issue."
    head = pull.get("head") or {}
    head_repo = (head.get("repo") or {}).get("full_name") if isinstance(head.get("repo"), dict) else None
    if not isinstance(head_repo, str) or head_repo.lower() != repo.lower():
        return (f"#{number} comes from a fork, and async-code never pushes to a fork or runs "
                "anything from one with a token: code from a fork pushed to a branch of this "
                "repository would run its CI with the repository's secrets. Instead, ask on an "
                "issue (async-code then opens its own pull request), or push the fork's branch "
                "to this repository yourself and ask on that pull request.")
    if default_branch is not None and head.get("ref") == default_branch:
        return (f"the head of #{number} is `{default_branch}`, the default branch, and async-code "
                "never pushes to the default branch. Ask on an issue instead.")
    return None
