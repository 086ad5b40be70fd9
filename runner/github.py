"""The one place that talks to GitHub: App auth, narrowed installation tokens, REST calls.

Installation tokens are minted per (installation, repository, permission set), narrowed to that
one repository and those permissions, cached in memory until five minutes before they expire,
and never stored or logged. Callers get a `RepoClient` bound to one repository.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from githubkit import AppAuthStrategy, GitHub, TokenAuthStrategy
from githubkit.exception import GitHubException, RequestFailed

log = logging.getLogger(__name__)

# What each stage of a task may do, and nothing more.
ACKNOWLEDGE_PERMISSIONS = {"issues": "write", "metadata": "read"}
EXECUTE_PERMISSIONS = {"contents": "write", "issues": "write", "pull_requests": "write",
                       "metadata": "read"}
_REFRESH_MARGIN = timedelta(minutes=5)


class GitHubError(RuntimeError):
    """A GitHub call failed; the message is meant for the person who asked for the task."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class AppNotInstalled(GitHubError):
    pass


def _status(error: GitHubException) -> int | None:
    return error.response.status_code if isinstance(error, RequestFailed) else None


@dataclass(frozen=True)
class _CachedToken:
    token: str
    expires_at: datetime


class GitHubApp:
    """The App's identity. Thread-safe; share one per process."""

    def __init__(self, *, app_id: str, private_key: str, api_url: str, slug: str):
        self.api_url = api_url.rstrip("/")
        self.slug = slug
        self._app_client = GitHub(AppAuthStrategy(app_id, private_key), base_url=self.api_url + "/")
        self._tokens: dict[tuple[int, str, tuple], _CachedToken] = {}
        self._bot_user_id: int | None = None
        self._lock = threading.Lock()

    def installation_token(self, installation_id: int, repo: str, permissions: dict[str, str]) -> str:
        key = (installation_id, repo, tuple(sorted(permissions.items())))
        with self._lock:
            cached = self._tokens.get(key)
            if cached and cached.expires_at - _REFRESH_MARGIN > datetime.now(timezone.utc):
                return cached.token
        name = repo.split("/", 1)[1]
        try:
            response = self._app_client.rest.apps.create_installation_access_token(
                installation_id, repositories=[name], permissions=permissions)
        except GitHubException as error:
            status = _status(error)
            if status in (403, 404, 422):
                raise AppNotInstalled(
                    f"The async-code App is not installed on {repo}, or the installation is "
                    "suspended or lacks access to it. Check the App's installation settings.",
                    status) from None
            raise GitHubError(f"GitHub refused the App's credentials ({status or error}). "
                              "Check GITHUB_APP_ID and the private key.", status) from None
        data = response.json()
        expires_at = datetime.fromisoformat(data["expires_at"].replace("Z", "+00:00"))
        with self._lock:
            self._tokens[key] = _CachedToken(data["token"], expires_at)
        log.info("minted an installation token for %s (%s), expires %s", repo,
                 ",".join(f"{k}:{v}" for k, v in sorted(permissions.items())), data["expires_at"])
        return data["token"]

    def repo_client(self, installation_id: int, repo: str, permissions: dict[str, str]) -> RepoClient:
        token = self.installation_token(installation_id, repo, permissions)
        return RepoClient(GitHub(TokenAuthStrategy(token), base_url=self.api_url + "/"), repo, token)

    def bot_identity(self, client: RepoClient) -> tuple[str, str]:
        """The bot's commit name and no-reply e-mail; its user id is looked up once."""
        login = f"{self.slug}[bot]"
        with self._lock:
            user_id = self._bot_user_id
        if user_id is None:
            user_id = int(client.call("GET", f"/users/{login}")["id"])
            with self._lock:
                self._bot_user_id = user_id
        return login, f"{user_id}+{login}@users.noreply.github.com"


class RepoClient:
    """REST calls on one repository with a narrowed installation token."""

    def __init__(self, github: GitHub, repo: str, token: str):
        self._github = github  # keep a reference: githubkit's namespaces need a live client
        self.repo = repo
        self.owner, self.name = repo.split("/", 1)
        self.token = token  # for host git only; never logged, stored or passed to the sandbox

    def __repr__(self) -> str:
        return f"RepoClient({self.repo!r})"

    def call(self, method: str, url: str, **kwargs: Any) -> Any:
        try:
            response = self._github.request(method, url, **kwargs)
        except GitHubException as error:
            status = _status(error)
            raise GitHubError(f"GitHub answered {status or error} to {method} {url}", status) from None
        return response.json() if response.content else None

    def repository(self) -> dict[str, Any]:
        try:
            return self.call("GET", f"/repos/{self.repo}")
        except GitHubError as error:
            if error.status in (403, 404):
                raise GitHubError(f"The repository {self.repo} is not accessible to the App "
                                  "(deleted, renamed, or removed from the installation).",
                                  error.status) from None
            raise

    def permission(self, login: str) -> str:
        """The user's effective permission: admin, maintain, write, triage, read or none."""
        try:
            data = self.call("GET", f"/repos/{self.repo}/collaborators/{login}/permission")
        except GitHubError as error:
            if error.status == 404:
                return "none"
            raise
        # `permission` folds maintain into write and triage into read; role_name keeps them.
        return data.get("role_name") or data.get("permission") or "none"

    def react(self, comment_id: int, content: str) -> None:
        self.call("POST", f"/repos/{self.repo}/issues/comments/{comment_id}/reactions",
                  json={"content": content})

    def comment(self, number: int, body: str) -> int:
        return int(self.call("POST", f"/repos/{self.repo}/issues/{number}/comments",
                             json={"body": body})["id"])

    def edit_comment(self, comment_id: int, body: str) -> None:
        self.call("PATCH", f"/repos/{self.repo}/issues/comments/{comment_id}", json={"body": body})

    def open_pull_request(self, *, title: str, body: str, head: str, base: str) -> dict[str, Any]:
        return self.call("POST", f"/repos/{self.repo}/pulls",
                         json={"title": title, "body": body, "head": head, "base": base})
