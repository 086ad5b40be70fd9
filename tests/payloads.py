"""Webhook payloads and signatures as GitHub sends them, trimmed to the fields the app reads."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def issue_comment(body: str, *, repo: str = "acme/widgets", number: int = 7, comment_id: int = 42,
                  login: str = "alice", user_id: int = 9, user_type: str = "User",
                  installation_id: int = 77, action: str = "created",
                  pull_request: bool = False,
                  issue_body: str = "The CLI cannot tell which version it is.",
                  issue_author: str = "reporter") -> dict[str, Any]:
    owner, name = repo.split("/")
    issue: dict[str, Any] = {"number": number, "title": f"Issue {number}", "body": issue_body,
                             "user": {"login": issue_author, "id": 1, "type": "User"}}
    if pull_request:
        issue["pull_request"] = {"url": f"https://api.github.invalid/repos/{repo}/pulls/{number}"}
    user = {"login": login, "id": user_id, "type": user_type}
    return {
        "action": action,
        "issue": issue,
        "comment": {"id": comment_id, "body": body, "user": user},
        "repository": {"full_name": repo, "name": name, "owner": {"login": owner}},
        "installation": {"id": installation_id},
        "sender": user,
    }


def _repository(repo: str) -> dict[str, Any]:
    owner, name = repo.split("/")
    return {"full_name": repo, "name": name, "owner": {"login": owner}}


def labeled(*, subject: str = "issue", label: str = "async-code", repo: str = "acme/widgets",
            number: int = 7, title: str = "Issue 7", body: str = "", author: str = "reporter",
            login: str = "alice", user_id: int = 9, installation_id: int = 77) -> dict[str, Any]:
    """An `issues` or `pull_request` (subject "pull_request") `labeled` delivery."""
    item = {"number": number, "title": title, "body": body,
            "user": {"login": author, "id": 1, "type": "User"}}
    return {"action": "labeled", subject: item, "label": {"id": 1, "name": label},
            "repository": _repository(repo), "installation": {"id": installation_id},
            "sender": {"login": login, "id": user_id, "type": "User"}}


def review_comment(body: str, *, comment: dict[str, Any], repo: str = "acme/widgets",
                   number: int, login: str = "alice", user_id: int = 9,
                   installation_id: int = 77, title: str = "", pr_body: str = "",
                   pr_author: str = "carol") -> dict[str, Any]:
    """A `pull_request_review_comment`/`created` delivery; `comment` holds the fields GitHub
    gives the review comment (path, line, side, diff_hunk, in_reply_to_id, ...)."""
    user = {"login": login, "id": user_id, "type": "User"}
    return {"action": "created", "comment": {**comment, "body": body, "user": user},
            "pull_request": {"number": number, "title": title, "body": pr_body,
                             "user": {"login": pr_author, "id": 2, "type": "User"}},
            "repository": _repository(repo), "installation": {"id": installation_id},
            "sender": user}
