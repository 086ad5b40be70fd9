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
