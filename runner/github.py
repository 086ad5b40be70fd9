"""The one place that talks to GitHub: App auth, narrowed installation tokens, REST calls.

Installation tokens are minted per (installation, repository, permission set), narrowed to that
one repository and those permissions, cached in memory until five minutes before they expire,
and never stored or logged. Callers get a `RepoClient` bound to one repository.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

from githubkit import AppAuthStrategy, GitHub, TokenAuthStrategy
from githubkit.exception import GitHubException, GraphQLFailed, RequestFailed

log = logging.getLogger(__name__)

# What each stage of a task may do, and nothing more.
# Acknowledging reads a pull request (is it a fork's? still open?), may answer in its review
# threads (pull_requests:write) and opens the task's check run (checks:write). It never reads
# code: a request from someone who may not write is answered without contents access.
ACKNOWLEDGE_PERMISSIONS = {"issues": "write", "pull_requests": "write", "checks": "write",
                           "metadata": "read"}
# `pick` marks one pull request ready and closes the others, deleting their branches.
PICK_PERMISSIONS = {"contents": "write", "pull_requests": "write", "metadata": "read"}
# `help` shows the repository's .github/async-code.yml, read with a token of its own.
CONFIG_READ_PERMISSIONS = {"contents": "read", "metadata": "read"}
# checks: the agent sees a pull request's failing checks; the task reports on its check run.
EXECUTE_PERMISSIONS = {"contents": "write", "issues": "write", "pull_requests": "write",
                       "checks": "write", "metadata": "read"}
PAGE_SIZE = 100
_REFRESH_MARGIN = timedelta(minutes=5)
# githubkit waits forever by default; a stalled connection must not hang a runner thread.
API_TIMEOUT = 30.0


class GitHubError(RuntimeError):
    """A GitHub call failed; the message is meant for the person who asked for the task."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class AppNotInstalled(GitHubError):
    pass


def _status(error: GitHubException) -> int | None:
    return error.response.status_code if isinstance(error, RequestFailed) else None


def _message(error: GitHubException) -> str | None:
    """The `message` of GitHub's JSON error body, if it sent one."""
    try:
        body = error.response.json() if isinstance(error, RequestFailed) else None
    except ValueError:
        return None
    return body.get("message") if isinstance(body, dict) else None


@dataclass(frozen=True)
class _CachedToken:
    token: str
    expires_at: datetime


class GitHubApp:
    """The App's identity. Thread-safe; share one per process."""

    def __init__(self, *, app_id: str, private_key: str, api_url: str, slug: str):
        self.api_url = api_url.rstrip("/")
        self.slug = slug
        self._app_client = GitHub(AppAuthStrategy(app_id, private_key), base_url=self.api_url + "/",
                                  timeout=API_TIMEOUT)
        self._tokens: dict[tuple[int, str, tuple], _CachedToken] = {}
        self._bot_user_id: int | None = None
        self._lock = threading.Lock()

    def installation_token(self, installation_id: int, repo: str, permissions: dict[str, str]) -> str:
        key = (installation_id, repo, tuple(sorted(permissions.items())))
        with self._lock:
            cached = self._tokens.get(key)
            if cached and cached.expires_at - _REFRESH_MARGIN > datetime.now(timezone.utc):
                return cached.token
        name = repo.split("/", 1)[1]  # tokens are narrowed by repository name
        try:
            response = self._app_client.rest.apps.create_installation_access_token(
                installation_id, repositories=[name], permissions=permissions)
        except GitHubException as error:
            status = _status(error)
            if status in (403, 404, 422):
                raise AppNotInstalled(
                    f"The {self.slug} App is not installed on {repo}, or the installation is "
                    "suspended or lacks access to it. Check the App's installation settings.",
                    status) from None
            if status == 401:
                raise GitHubError("GitHub refused the App's credentials (401). Check "
                                  "GITHUB_APP_ID and the private key.", status) from None
            raise GitHubError(f"GitHub could not issue a token for {repo} "
                              f"({status or type(error).__name__}); try again later.", status) from None
        data = response.json()
        expires_at = datetime.fromisoformat(data["expires_at"].replace("Z", "+00:00"))
        with self._lock:
            self._tokens[key] = _CachedToken(data["token"], expires_at)
        log.info("minted an installation token for %s (%s), expires %s", repo,
                 ",".join(f"{k}:{v}" for k, v in sorted(permissions.items())), data["expires_at"])
        return data["token"]

    def repo_client(self, installation_id: int, repo: str, permissions: dict[str, str]) -> RepoClient:
        client = RepoClient(self, installation_id, repo, permissions)
        client.token  # mint now: a task learns at once if the App cannot reach the repository
        return client

    def token_client(self, token: str) -> GitHub:
        return GitHub(TokenAuthStrategy(token), base_url=self.api_url + "/", timeout=API_TIMEOUT)

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
    """REST calls on one repository with a narrowed installation token.

    The token is asked of the App on every use, so a long task always holds one that is valid
    for at least a few more minutes.
    """

    def __init__(self, app: GitHubApp, installation_id: int, repo: str, permissions: dict[str, str]):
        self._app = app
        self._installation_id = installation_id
        self._permissions = permissions
        self.repo = repo
        self._github: GitHub | None = None
        self._github_token: str | None = None
        self._lock = threading.Lock()

    @property
    def token(self) -> str:
        """For host git only; never logged, stored or passed to the sandbox."""
        return self._app.installation_token(self._installation_id, self.repo, self._permissions)

    def _client(self) -> GitHub:
        token = self.token
        with self._lock:
            if token != self._github_token:
                self._github, self._github_token = self._app.token_client(token), token
            return self._github

    def __repr__(self) -> str:
        return f"RepoClient({self.repo!r})"

    def call(self, method: str, url: str, **kwargs: Any) -> Any:
        try:
            response = self._client().request(method, url, **kwargs)
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
        """The user's base permission: admin, write, read or none.

        GitHub folds maintain into write and triage into read here. `role_name` is not used: for
        an organisation's custom repository role it is that role's own name, while `permission`
        is always the base level the role grants.
        """
        try:
            data = self.call("GET", f"/repos/{self.repo}/collaborators/{login}/permission")
        except GitHubError as error:
            if error.status == 404:
                return "none"
            raise
        return data.get("permission") or "none"

    def login_of(self, user_id: int) -> str:
        """The user's login now: people rename themselves, their id stays."""
        return str(self.call("GET", f"/user/{int(user_id)}")["login"])

    def react(self, comment_id: int, content: str) -> None:
        self.call("POST", f"/repos/{self.repo}/issues/comments/{comment_id}/reactions",
                  json={"content": content})

    def comment(self, number: int, body: str) -> int:
        return int(self.call("POST", f"/repos/{self.repo}/issues/{number}/comments",
                             json={"body": body})["id"])

    def edit_comment(self, comment_id: int, body: str) -> None:
        self.call("PATCH", f"/repos/{self.repo}/issues/comments/{comment_id}", json={"body": body})

    def open_pull_request(self, *, title: str, body: str, head: str, base: str,
                          draft: bool = False) -> dict[str, Any]:
        return self.call("POST", f"/repos/{self.repo}/pulls",
                         json={"title": title, "body": body, "head": head, "base": base,
                               "draft": draft})

    def open_pull_requests_from(self, branch: str) -> list[dict[str, Any]]:
        """The open pull requests whose head is `branch` of this repository."""
        owner = self.repo.split("/")[0]
        return self.call("GET", f"/repos/{self.repo}/pulls",
                         params={"head": f"{owner}:{branch}", "state": "open", "per_page": 100})

    def update_pull_request(self, number: int, *, title: str, body: str) -> dict[str, Any]:
        return self.call("PATCH", f"/repos/{self.repo}/pulls/{int(number)}",
                         json={"title": title, "body": body})

    def file_on_default_branch(self, path: str, *, max_bytes: int) -> str | None:
        """The text of the file at `path` on the default branch; None when there is none.

        Never a pull request's head: what a pull request changes must not change how the
        service treats it. Needs contents:read. A file over `max_bytes`, a path that is not a
        file (a directory, a submodule) or text that is not UTF-8 raises GitHubError saying so.
        """
        default_branch = self.repository()["default_branch"]
        try:
            found = self.call("GET", f"/repos/{self.repo}/contents/{quote(path, safe='/')}",
                              params={"ref": default_branch})
        except GitHubError as error:
            if error.status == 404:  # no such file, or an empty repository
                return None
            raise
        where = f"`{path}` on the default branch"
        if not isinstance(found, dict) or found.get("type") != "file":
            raise GitHubError(f"{where} is not a file")
        size = int(found.get("size") or 0)
        if size > max_bytes:
            raise GitHubError(f"{where} is {size:,} bytes; the most read is {max_bytes:,}")
        # Over 1 MB GitHub sends no content (encoding "none"); the base64 comes in lines,
        # whose breaks b64decode skips.
        content = found.get("content") if found.get("encoding") == "base64" else None
        try:
            data = base64.b64decode(content) if isinstance(content, str) else None
        except binascii.Error:
            data = None
        if data is None or len(data) != size:
            raise GitHubError(f"GitHub did not send the content of {where}")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise GitHubError(f"{where} is not UTF-8 text") from None

    # Pull requests, labels and review threads

    def pull_request(self, number: int) -> dict[str, Any]:
        return self.call("GET", f"/repos/{self.repo}/pulls/{int(number)}")

    def branch(self, name: str) -> dict[str, Any]:
        return self.call("GET", f"/repos/{self.repo}/branches/{quote(name, safe='')}")

    def issue_labels(self, number: int) -> list[str]:
        issue = self.call("GET", f"/repos/{self.repo}/issues/{int(number)}")
        return [label["name"] for label in issue.get("labels") or [] if isinstance(label, dict)]

    def remove_label(self, number: int, name: str) -> None:
        """Take the label off; one that is already gone is fine."""
        try:
            self.call("DELETE", f"/repos/{self.repo}/issues/{int(number)}/labels/{quote(name, safe='')}")
        except GitHubError as error:
            if error.status != 404:
                raise

    def close_pull_request(self, number: int) -> dict[str, Any]:
        return self.call("PATCH", f"/repos/{self.repo}/pulls/{int(number)}",
                         json={"state": "closed"})

    def mark_ready_for_review(self, node_id: str) -> None:
        """Take a draft pull request (by its GraphQL node id) out of draft; REST cannot."""
        what = f"GitHub could not mark pull request {node_id} ready for review"
        try:
            data = self._client().graphql.request(_MARK_READY_FOR_REVIEW, {"id": node_id})
        except GraphQLFailed as error:
            reasons = "; ".join(each.message for each in error.response.errors or [])
            raise GitHubError(f"{what}: {reasons or 'no reason given'}") from None
        except GitHubException as error:
            raise GitHubError(f"{what} ({_status(error) or type(error).__name__})",
                              _status(error)) from None
        pull = ((data or {}).get("markPullRequestReadyForReview") or {}).get("pullRequest") or {}
        if pull.get("isDraft") is not False:
            raise GitHubError(f"{what}: it is still a draft")

    def delete_branch(self, name: str) -> None:
        """Delete the branch; one that is already gone ("Reference does not exist") is fine."""
        url = f"/repos/{self.repo}/git/refs/heads/" + "/".join(
            quote(part, safe="") for part in name.split("/"))
        try:
            self._client().request("DELETE", url)
        except GitHubException as error:
            status = _status(error)
            if status in (404, 422) and _message(error) == "Reference does not exist":
                return
            raise GitHubError(f"GitHub answered {status or error} to DELETE {url}", status) from None

    def paged(self, url: str, *, limit: int, key: str | None = None) -> list[Any]:
        """Up to `limit` items of a paginated list, page by page."""
        items: list[Any] = []
        page = 1
        while len(items) < limit:
            answer = self.call("GET", url, params={"per_page": PAGE_SIZE, "page": page})
            batch = answer.get(key, []) if key else answer
            if not isinstance(batch, list):
                break
            items.extend(batch)
            if len(batch) < PAGE_SIZE:
                break
            page += 1
        return items[:limit]

    def pull_request_files(self, number: int, *, limit: int) -> list[dict[str, Any]]:
        return self.paged(f"/repos/{self.repo}/pulls/{int(number)}/files", limit=limit)

    def issue_comments(self, number: int, *, limit: int) -> list[dict[str, Any]]:
        return self.paged(f"/repos/{self.repo}/issues/{int(number)}/comments", limit=limit)

    def check_runs(self, sha: str, *, limit: int) -> list[dict[str, Any]]:
        return self.paged(f"/repos/{self.repo}/commits/{sha}/check-runs", limit=limit,
                          key="check_runs")

    def review_threads(self, number: int, *, limit: int) -> list[dict[str, Any]]:
        """The pull request's review threads with whether each is resolved (GraphQL only)."""
        owner, name = self.repo.split("/", 1)
        try:
            data = self._client().graphql.request(_REVIEW_THREADS, {
                "owner": owner, "name": name, "number": int(number), "first": min(limit, PAGE_SIZE)})
        except GitHubException as error:
            raise GitHubError(f"GitHub could not list the review threads of #{number} "
                              f"({_status(error) or type(error).__name__})", _status(error)) from None
        pull = ((data or {}).get("repository") or {}).get("pullRequest") or {}
        return list((pull.get("reviewThreads") or {}).get("nodes") or [])[:limit]

    def reply_in_review_thread(self, number: int, comment_id: int, body: str) -> int:
        return int(self.call("POST", f"/repos/{self.repo}/pulls/{int(number)}/comments/"
                                     f"{int(comment_id)}/replies", json={"body": body})["id"])

    def edit_review_comment(self, comment_id: int, body: str) -> None:
        self.call("PATCH", f"/repos/{self.repo}/pulls/comments/{int(comment_id)}", json={"body": body})

    def react_to_review_comment(self, comment_id: int, content: str) -> None:
        self.call("POST", f"/repos/{self.repo}/pulls/comments/{int(comment_id)}/reactions",
                  json={"content": content})

    # Check runs

    def create_check_run(self, fields: dict[str, Any]) -> int:
        return int(self.call("POST", f"/repos/{self.repo}/check-runs", json=fields)["id"])

    def update_check_run(self, check_run_id: int, fields: dict[str, Any]) -> None:
        self.call("PATCH", f"/repos/{self.repo}/check-runs/{int(check_run_id)}", json=fields)


_REVIEW_THREADS = """
query($owner: String!, $name: String!, $number: Int!, $first: Int!) {
  repository(owner: $owner, name: $name) {
    pullRequest(number: $number) {
      reviewThreads(first: $first) {
        nodes {
          isResolved isOutdated path line startLine
          comments(first: 20) { nodes { databaseId body author { login } } }
        }
      }
    }
  }
}
"""

_MARK_READY_FOR_REVIEW = """
mutation($id: ID!) {
  markPullRequestReadyForReview(input: {pullRequestId: $id}) { pullRequest { isDraft } }
}
"""
