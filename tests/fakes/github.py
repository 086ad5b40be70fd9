"""A loopback GitHub for tests.

It serves the REST endpoints the app uses, one GraphQL query (a pull request's review threads)
and one mutation (markPullRequestReadyForReview), checks app JWTs and installation tokens the
way GitHub does, each endpoint with the permission GitHub's tables name for it, and serves git
smart HTTP from real bare repositories through `git http-backend`. Tests set the scene with
helpers (add_issue, add_pull, push_commit, add_review_comment, add_check_run,
plan_manifest_code, ...), and everything the fake is asked to do is recorded for them to assert
on. Responses carry every field githubkit's models require, so `.parsed_data` works. For the App
manifest flow it also plays the browser's side: GitHub's "new GitHub App" page with its button
pressed.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import re
import secrets
import subprocess
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jwt
from flask import Flask, Response, request

from tests.fakes.server import LoopbackServer

TOKEN_LIFETIME = timedelta(hours=1)
JWT_MAX_LIFETIME = timedelta(minutes=10)
CLOCK_SKEW = timedelta(seconds=60)
MAX_COMMENT_LENGTH = 65536
# Above any id a test gives its triggering comments, so the two never collide.
FIRST_COMMENT_ID = 5000
FIRST_PULL_NUMBER = 100
DOCS_URL = "https://docs.github.com/rest"
NOT_ACCESSIBLE = "Resource not accessible by integration"
SUSPENDED = "This installation has been suspended"
ARCHIVED = "Repository was archived so is read-only."
GIT_USERNAME = "x-access-token"
GRAPHQL_AUTHENTICATION = "This endpoint requires you to be authenticated."
GRAPHQL_MAX_PAGE = 100

# What a token gets when it is minted without an explicit `permissions` body.
DEFAULT_INSTALLATION_PERMISSIONS = {
    "metadata": "read",
    "contents": "write",
    "issues": "write",
    "pull_requests": "write",
}
PERMISSION_RANK = {"read": 1, "write": 2, "admin": 3}
# The REST API reports maintain and triage as the nearest classic level and keeps the
# real role in role_name.
CLASSIC_PERMISSION = {
    "admin": "admin",
    "maintain": "write",
    "write": "write",
    "triage": "read",
    "read": "read",
    "none": "none",
}
ROLE_RANK = {"none": 0, "read": 1, "triage": 2, "write": 3, "maintain": 4, "admin": 5}
REACTION_CONTENTS = frozenset(
    {"+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"}
)
GIT_SERVICE_PERMISSION = {"git-upload-pack": "read", "git-receive-pack": "write"}

REPO_URL_TEMPLATES = {
    "archive_url": "/{archive_format}{/ref}",
    "assignees_url": "/assignees{/user}",
    "blobs_url": "/git/blobs{/sha}",
    "branches_url": "/branches{/branch}",
    "collaborators_url": "/collaborators{/collaborator}",
    "comments_url": "/comments{/number}",
    "commits_url": "/commits{/sha}",
    "compare_url": "/compare/{base}...{head}",
    "contents_url": "/contents/{+path}",
    "contributors_url": "/contributors",
    "deployments_url": "/deployments",
    "downloads_url": "/downloads",
    "events_url": "/events",
    "forks_url": "/forks",
    "git_commits_url": "/git/commits{/sha}",
    "git_refs_url": "/git/refs{/sha}",
    "git_tags_url": "/git/tags{/sha}",
    "hooks_url": "/hooks",
    "issue_comment_url": "/issues/comments{/number}",
    "issue_events_url": "/issues/events{/number}",
    "issues_url": "/issues{/number}",
    "keys_url": "/keys{/key_id}",
    "labels_url": "/labels{/name}",
    "languages_url": "/languages",
    "merges_url": "/merges",
    "milestones_url": "/milestones{/number}",
    "notifications_url": "/notifications{?since,all,participating}",
    "pulls_url": "/pulls{/number}",
    "releases_url": "/releases{/id}",
    "stargazers_url": "/stargazers",
    "statuses_url": "/statuses/{sha}",
    "subscribers_url": "/subscribers",
    "subscription_url": "/subscription",
    "tags_url": "/tags",
    "teams_url": "/teams",
    "trees_url": "/git/trees{/sha}",
}

# Run for every push. FAKE_REJECT_PUSHES plays a branch protection refusing everything;
# FAKE_WORKFLOWS_ALLOWED says whether the pushing token has the `workflows` permission, without
# which GitHub refuses any new commit that adds, changes or deletes a file in .github/workflows.
PRE_RECEIVE = r"""#!/bin/sh
if [ "$FAKE_REJECT_PUSHES" = 1 ]; then
    echo "push declined: this repository does not accept pushes" >&2
    exit 1
fi
[ "$FAKE_WORKFLOWS_ALLOWED" = 1 ] && exit 0
while read old new ref; do
    [ "$new" = 0000000000000000000000000000000000000000 ] && continue
    for commit in $(git rev-list "$new" --not --all); do
        workflow=$(git diff-tree -r --root --no-commit-id --name-only "$commit" |
                   grep -E '^[.]github/workflows(/|$)' | head -n 1)
        if [ -n "$workflow" ]; then
            echo "refusing to allow a GitHub App to create or update workflow \`$workflow\` without \`workflows\` permission" >&2
            exit 1
        fi
    done
done
exit 0
"""
MAX_PULL_TITLE_LENGTH = 256
MAX_INLINE_CONTENT_BYTES = 1024 * 1024  # larger files come without their content
CHECK_STATUSES = frozenset(
    {"queued", "in_progress", "completed", "waiting", "requested", "pending"}
)
CHECK_CONCLUSIONS = frozenset(
    {"success", "failure", "neutral", "cancelled", "skipped", "timed_out", "action_required"}
)
# What an app may set through the API, in the order GitHub lists them when it refuses a value:
# waiting, requested and pending are GitHub Actions' own, stale is set by GitHub alone.
APP_CHECK_STATUSES = ["queued", "in_progress", "completed"]
APP_CHECK_CONCLUSIONS = ["success", "failure", "neutral", "cancelled", "timed_out",
                         "action_required", "skipped"]
SUITE_CONCLUSION_RANK = ["action_required", "cancelled", "timed_out", "failure", "neutral",
                         "skipped", "success"]
# What a check run's history keeps of each state it was in.
CHECK_RUN_TRACKED = ("name", "status", "conclusion", "title", "summary", "text", "details_url",
                     "external_id", "actions", "started_at", "completed_at")
SCHEMA_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "object": (dict,), "array": (list,), "integer": (int,)}
MAX_CHECK_OUTPUT = 65535  # characters to the schema, bytes to the model behind it
MAX_CHECK_ACTIONS = 3
MAX_CHECK_ANNOTATIONS = 50  # per request; they add up over updates
ANNOTATION_LEVELS = ["notice", "warning", "failure"]
DATE_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})", re.IGNORECASE)
_CHECK_OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "summary": {"type": "string", "maxLength": MAX_CHECK_OUTPUT},
        "text": {"type": "string", "maxLength": MAX_CHECK_OUTPUT},
        "annotations": {"type": "array", "maxItems": MAX_CHECK_ANNOTATIONS, "items": {
            "type": "object",
            "properties": {
                "path": {"type": "string"},
                "start_line": {"type": "integer"},
                "end_line": {"type": "integer"},
                "start_column": {"type": "integer"},
                "end_column": {"type": "integer"},
                "annotation_level": {"type": "string", "enum": ANNOTATION_LEVELS},
                "message": {"type": "string"},
                "title": {"type": "string"},
                "raw_details": {"type": "string"},
            },
            "required": ["path", "start_line", "end_line", "annotation_level", "message"],
        }},
        "images": {"type": "array", "items": {
            "type": "object",
            "properties": {"alt": {"type": "string"}, "image_url": {"type": "string"},
                           "caption": {"type": "string"}},
            "required": ["alt", "image_url"],
        }},
    },
    # The update docs mark title **Required** too, though their schema lists only summary.
    "required": ["title", "summary"],
}
# The request body of creating and of updating a check run, as far as GitHub's schema checks it.
_CHECK_RUN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "head_sha": {"type": "string"},
        "details_url": {"type": "string"},
        "external_id": {"type": "string"},
        "status": {"type": "string", "enum": APP_CHECK_STATUSES},
        "started_at": {"type": "string", "format": "date-time"},
        "conclusion": {"type": "string", "enum": APP_CHECK_CONCLUSIONS},
        "completed_at": {"type": "string", "format": "date-time"},
        "output": _CHECK_OUTPUT_SCHEMA,
        "actions": {"type": "array", "maxItems": MAX_CHECK_ACTIONS, "items": {
            "type": "object",
            "properties": {
                "label": {"type": "string", "maxLength": 20},
                "description": {"type": "string", "maxLength": 40},
                "identifier": {"type": "string", "maxLength": 20},
            },
            "required": ["label", "description", "identifier"],
        }},
    },
}
NO_COMMIT = "0" * 40
GIT_DIFF_STATUS = {"A": "added", "D": "removed", "M": "modified", "R": "renamed", "C": "copied",
                   "T": "changed"}
DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 100
LABEL_NOT_FOUND = "Label does not exist"
REFERENCE_NOT_FOUND = "Reference does not exist"
PROTECTED_BRANCH = "Cannot delete a protected branch"
READY_FOR_REVIEW = "markPullRequestReadyForReview"
# GitHub's answer to a manifest code it does not know, has converted already, or let expire.
MANIFEST_CODE_REFUSED = "Validation Failed"


class _Rejection(Exception):
    """Ends a request with a GitHub-style JSON error."""

    def __init__(self, status: int, message: str, **extra: Any):
        super().__init__(message)
        self.status = status
        self.payload = {"message": message, **extra, "documentation_url": DOCS_URL}


class _GraphQLError(Exception):
    """Ends a GraphQL request the way GitHub does: HTTP 200 with `errors`, and `data` if any."""

    def __init__(self, message: str, *, type: str | None = None, path: list[str] | None = None,
                 data: dict[str, Any] | None = None):
        super().__init__(message)
        self.error: dict[str, Any] = {"message": message}
        if type is not None:
            self.error["type"] = type
        if path is not None:
            self.error["path"] = path
        self.data = data


class _GitAnswer(Exception):
    """Ends a git request with a plain response, since git clients read text, not JSON."""

    def __init__(self, response: Response):
        super().__init__(response.status)
        self.response = response


@dataclass
class _Account:
    login: str
    id: int
    type: str


@dataclass
class _Repo:
    id: int
    full_name: str
    default_branch: str
    archived: bool
    private: bool
    created_at: str
    roles: dict[str, str] = field(default_factory=dict)
    parent: str | None = None  # the repository a fork was made from

    @property
    def fork(self) -> bool:
        return self.parent is not None

    @property
    def owner(self) -> str:
        return self.full_name.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.full_name.split("/", 1)[1]


@dataclass
class _Installation:
    id: int
    repos: list[str]
    suspended: bool
    permissions: dict[str, str]
    created_at: str


@dataclass
class _Credentials:
    kind: str | None
    secret: str | None = None
    username: str | None = None


@dataclass
class _PlannedFailure:
    method: str
    path_pattern: re.Pattern[str]
    status: int
    body: Any
    headers: dict[str, str]


@dataclass
class _PlannedApp:
    """An App GitHub creates from a manifest, and what converting its code answers."""

    code: str
    pem: str
    webhook_secret: str | None
    slug: str
    manifest: dict[str, Any] | None = None  # what the browser posted, once it has
    owner: str | None = None  # the organisation that owns it, when created under one
    converted: bool = False


def _timestamp(moment: datetime) -> str:
    # githubkit parses token expiry with exactly this format; no fractional seconds.
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def _json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(payload), status=status, headers=headers, mimetype="application/json"
    )


def _read_credentials(header: str | None) -> _Credentials:
    if not header:
        return _Credentials(kind=None)
    scheme, _, value = header.partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return _Credentials(kind="basic")
        username, _, password = decoded.partition(":")
        return _Credentials(kind="basic", secret=password, username=username)
    if scheme == "bearer":
        # GitHub takes both app JWTs and installation tokens as bearer credentials.
        return _Credentials(kind="jwt" if value.count(".") == 2 else "token", secret=value)
    if scheme == "token":
        return _Credentials(kind="token", secret=value)
    return _Credentials(kind=None)


def _git_environment(**extra: str) -> dict[str, str]:
    """An environment where only the given settings affect git, not the caller's config."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    env.update(
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_AUTHOR_NAME="Fake GitHub",
        GIT_AUTHOR_EMAIL="fake-github@example.invalid",
        GIT_COMMITTER_NAME="Fake GitHub",
        GIT_COMMITTER_EMAIL="fake-github@example.invalid",
    )
    env.update(extra)
    return env


def _run_git(git_dir: Path, *args: str, stdin: bytes | None = None, **env: str) -> str:
    completed = subprocess.run(
        ["git", *args],
        input=stdin,
        capture_output=True,
        env=_git_environment(GIT_DIR=str(git_dir), **env),
        timeout=60,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"git {' '.join(args)} failed: {completed.stderr.decode(errors='replace')}"
        )
    return completed.stdout.decode().strip()


def _run_git_bytes(git_dir: Path, *args: str) -> bytes:
    """git's output as it is, for -z listings and patches, where every byte counts."""
    completed = subprocess.run(
        ["git", *args],
        capture_output=True,
        env=_git_environment(GIT_DIR=str(git_dir)),
        timeout=60,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"git {' '.join(args)} failed: {completed.stderr.decode(errors='replace')}"
        )
    return completed.stdout


def _split_cgi_output(output: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    head, separator, body = output.partition(b"\r\n\r\n")
    if not separator:
        head, _, body = output.partition(b"\n\n")
    status = 200
    headers = []
    for line in head.decode("latin-1").splitlines():
        name, _, value = line.partition(":")
        if name.lower() == "status":
            status = int(value.strip().split()[0])
        elif name:
            headers.append((name.strip(), value.strip()))
    return status, headers, body


class FakeGitHub:
    """A GitHub on 127.0.0.1 that serves REST, app auth and git over HTTP for tests."""

    def __init__(
        self,
        root: Path,
        *,
        app_id: int,
        public_key_pem: str,
        app_slug: str = "async-code",
        bot_user_id: int = 41898282 + 1000,
    ):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.app_id = app_id
        self.app_slug = app_slug
        self.bot_login = f"{app_slug}[bot]"
        self.bot_user_id = bot_user_id
        self._public_key_pem = public_key_pem
        self._lock = threading.Lock()

        self.requests: list[dict[str, Any]] = []
        self.token_requests: list[dict[str, Any]] = []
        self.minted_tokens: dict[str, dict[str, Any]] = {}
        self.comments: dict[int, dict[str, Any]] = {}  # the App's own
        self.people_comments: dict[int, dict[str, Any]] = {}  # made with add_comment
        self.reactions: list[dict[str, Any]] = []
        self.pulls: list[dict[str, Any]] = []
        self.auth_failures: list[tuple[str, str, str]] = []

        self._accounts: dict[str, _Account] = {}
        self._repos: dict[str, _Repo] = {}
        self._installations: dict[int, _Installation] = {}
        self._planned_failures: list[_PlannedFailure] = []
        self._push_rejected: set[str] = set()
        # Issues and pull requests by number: GitHub gives both one number space per repository,
        # and a pull request is an issue too. A pull request's record is the one in self.pulls.
        self._issues: dict[tuple[str, int], dict[str, Any]] = {}
        self._issue_comment_order: list[int] = []  # people's and the App's, as they were made
        self._labels: dict[tuple[str, str], dict[str, Any]] = {}
        self._next_repo_id = 200_000
        self._next_comment_id = FIRST_COMMENT_ID
        self._next_reaction_id = 1
        self._next_pull_id = 700_000
        self._next_issue_id = 1_800_000
        self._next_label_id = 2_700_000
        self._next_person_id = 7_500_000
        self._next_check_run_id = 4_100_000
        self._check_runs: list[dict[str, Any]] = []
        self._check_suites: dict[tuple[str, str, str], int] = {}
        self._check_apps: dict[str, int] = {}
        self._protected_branches: set[tuple[str, str]] = set()
        # Review comments on pull requests, people's and the App's; the App's keep their edits in
        # "history". A reply's "in_reply_to" is always the top comment of its thread.
        self.review_comments: dict[int, dict[str, Any]] = {}
        self._review_comment_order: list[int] = []
        self._resolved_threads: set[int] = set()  # by the id of the thread's top comment
        self._next_review_id = 6_300_000
        self._app_owner = _Account("async-code-dev", 9_000_001, "Organization")
        # The manifest flow: codes planned by tests, manifests browsers posted, conversions made.
        self._planned_apps: list[_PlannedApp] = []
        self.manifests_posted: list[dict[str, Any]] = []
        self.conversions: list[dict[str, Any]] = []
        self.add_user(self.bot_login, bot_user_id, type="Bot")

        self._custom_roles: dict[tuple[str, str], str | None] = {}
        self._app = self._build_app()
        self._server = LoopbackServer(self._app, "fake-github")

    def start(self) -> FakeGitHub:
        if not self._server.running:
            self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> FakeGitHub:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return self._server.url

    def add_user(self, login: str, id: int, type: str = "User") -> None:
        with self._lock:
            self._accounts[login] = _Account(login, id, type)

    def rename_user(self, login: str, new_login: str) -> None:
        """A user changes their login: same id, and their access moves with them."""
        with self._lock:
            account = self._accounts.pop(login)
            self._accounts[new_login] = _Account(new_login, account.id, account.type)
            for repo in self._repos.values():
                if login in repo.roles:
                    repo.roles[new_login] = repo.roles.pop(login)

    def add_installation(
        self,
        installation_id: int,
        repos: list[str],
        suspended: bool = False,
        *,
        permissions: dict[str, str] | None = None,
    ) -> None:
        """`permissions` is what the app was granted; tokens can narrow it, never widen it."""
        granted = dict(permissions or DEFAULT_INSTALLATION_PERMISSIONS)
        granted.setdefault("metadata", "read")
        with self._lock:
            self._installations[installation_id] = _Installation(
                installation_id, list(repos), suspended, granted, _timestamp(_now())
            )

    def add_repo(
        self,
        full_name: str,
        files: dict[str, str] | None,
        default_branch: str = "main",
        archived: bool = False,
        private: bool = False,
        submodules: dict[str, str] | None = None,
    ) -> int:
        """Create a bare repo with one commit holding `files`; None makes it empty.

        `submodules` maps a path to the commit a submodule there points at (a gitlink)."""
        owner = full_name.split("/", 1)[0]
        path = self.repo_path(full_name)
        path.parent.mkdir(parents=True, exist_ok=True)
        _run_git(path, "init", "--bare", "--quiet", f"--initial-branch={default_branch}", str(path))
        if files is not None:
            self._commit_initial_files(path, files, default_branch, submodules or {})
        with self._lock:
            if owner not in self._accounts:
                self._accounts[owner] = _Account(owner, 8_000_000 + len(self._accounts), "User")
            repo_id = self._next_repo_id
            self._next_repo_id += 1
            self._repos[full_name] = _Repo(
                repo_id, full_name, default_branch, archived, private, _timestamp(_now())
            )
        return repo_id

    def add_issue(self, full_name: str, number: int, *, title: str | None = None, body: str = "",
                  user: str = "reporter", labels: tuple[str, ...] | list[str] = ()) -> None:
        """An issue someone opened; calling it again for the same number redefines it."""
        self._ensure_account(user)
        with self._lock:
            record = self._issues.get((full_name, number))
            if record is not None and _is_pull(record):
                raise ValueError(f"{full_name}#{number} is a pull request")
            if record is None:
                record = self._new_issue(full_name, number)
            record.update(title=title if title is not None else f"Issue {number}", body=body,
                          user=user, labels=[], updated_at=_timestamp(_now()))
            for name in labels:
                self._attach_label(record, name)

    def add_comment(self, full_name: str, number: int, comment_id: int, login: str, body: str) -> None:
        """A comment someone made on issue or pull request `number`; an unknown number becomes an issue."""
        self._ensure_account(login)
        with self._lock:
            if comment_id in self.comments or comment_id in self.review_comments:
                raise ValueError(f"comment id {comment_id} is already taken")
            if (full_name, number) not in self._issues:
                self._new_issue(full_name, number)
            created_at = _timestamp(_now())
            self.people_comments[comment_id] = {"id": comment_id, "repo": full_name,
                                                "issue_number": number, "user": login, "body": body,
                                                "created_at": created_at, "updated_at": created_at}
            if comment_id not in self._issue_comment_order:
                self._issue_comment_order.append(comment_id)

    def label_issue(self, full_name: str, number: int, name: str) -> None:
        """Someone adds label `name` to an issue or pull request; the repository gets it if new."""
        with self._lock:
            record = self._issues.get((full_name, number))
            if record is None:
                raise ValueError(f"{full_name}#{number} does not exist")
            self._attach_label(record, name)
            record["updated_at"] = _timestamp(_now())

    def issue_labels(self, full_name: str, number: int) -> list[str]:
        with self._lock:
            record = self._issues.get((full_name, number))
            if record is None:
                raise ValueError(f"{full_name}#{number} does not exist")
            return list(record["labels"])

    def push_commit(self, full_name: str, branch: str, files: dict[str, str | None], *,
                    message: str = "Change files", parent_branch: str | None = None) -> str:
        """Someone pushes a commit writing `files` (None deletes one) on top of `branch`.

        With `parent_branch`, `branch` is new and starts there. Returns the new commit's sha."""
        repo = self._known_repo(full_name)
        current = self._branch_sha(repo, branch)
        if parent_branch is None:
            if current is None:
                raise ValueError(
                    f"{full_name} has no branch {branch}; name a parent_branch to make it")
            parent = current
        else:
            if current is not None:
                raise ValueError(f"{full_name} already has a branch {branch}")
            parent = self._branch_sha(repo, parent_branch)
            if parent is None:
                raise ValueError(f"{full_name} has no branch {parent_branch}")
        return self._commit_onto(full_name, branch, parent, files, message, current)

    def add_pull(self, full_name: str, *, head: str, base: str = "main", title: str | None = None,
                 body: str = "", user: str = "carol", files: dict[str, str | None] | None = None,
                 number: int | None = None, fork: str | None = None, state: str = "open",
                 merged: bool = False, draft: bool = False) -> int:
        """A pull request someone opened from `head` into `base`; returns its number.

        `fork` ("carol/widgets") puts `head` in a fork of the repository, made here if new. With
        `files`, a commit holding them is pushed to `head` first, which starts from `base` if it
        does not exist yet. `merged` implies closed."""
        if state not in ("open", "closed"):
            raise ValueError(f"state must be open or closed, not {state!r}")
        base_repo = self._known_repo(full_name)
        head_full_name = self._ensure_fork(full_name, fork) if fork else full_name
        head_repo = self._known_repo(head_full_name)
        base_sha = self._branch_sha(base_repo, base)
        if base_sha is None:
            raise ValueError(f"{full_name} has no branch {base}")
        if files is not None:
            current = self._branch_sha(head_repo, head)
            self._commit_onto(head_full_name, head, current or base_sha, files,
                              title or f"Change {head}", current)
        head_sha = self._branch_sha(head_repo, head)
        if head_sha is None:
            raise ValueError(f"{head_full_name} has no branch {head}; pass files to push one")
        git_dir = self.repo_path(head_full_name)
        if int(_run_git(git_dir, "rev-list", "--count", f"{base_sha}..{head_sha}")) == 0:
            raise ValueError(f"no commits between {base} and {head}")
        self._ensure_account(user)
        with self._lock:
            if number is None:
                number = self._allocate_number(full_name)
            elif (full_name, number) in self._issues:
                raise ValueError(f"{full_name}#{number} already exists")
            self._register_pull(full_name, number, title=title or f"Changes from {head}", body=body,
                                user=user, head_repo=head_full_name, head=head, base=base,
                                head_sha=head_sha, base_sha=base_sha, draft=draft)
        if merged or state == "closed":
            self.close_pull(full_name, number, merged=merged)
        return number

    def close_pull(self, full_name: str, number: int, merged: bool = False) -> None:
        """Someone closes or merges the pull request; its head and base stop following branches."""
        pull = self._issue_record(full_name, number)
        if pull is None or not _is_pull(pull):
            raise ValueError(f"{full_name}#{number} is not a pull request")
        if pull["state"] != "open":
            raise ValueError(f"{full_name}#{number} is already closed")
        self._pull_shas(pull)
        now = _timestamp(_now())
        with self._lock:
            pull.update(state="closed", closed_at=now, updated_at=now, merged=merged,
                        merged_at=now if merged else None)

    def branch_sha(self, full_name: str, branch: str) -> str | None:
        """The commit `branch` points at, or None when the repository has no such branch."""
        return self._branch_sha(self._known_repo(full_name), branch)

    def protect_branch(self, full_name: str, branch: str) -> None:
        with self._lock:
            self._protected_branches.add((full_name, branch))

    def add_check_run(self, full_name: str, head_sha: str, name: str, *, status: str = "completed",
                      conclusion: str | None = "failure", title: str | None = None,
                      summary: str | None = None, text: str | None = None,
                      app_slug: str = "ci", external_id: str = "",
                      actions: list[dict[str, str]] | None = None) -> int:
        """A check run some app (`app_slug`) reported on a commit; returns its id.

        With `app_slug` the fake's own, it is a run the App made earlier, which it may update."""
        self._known_repo(full_name)
        if status not in CHECK_STATUSES:
            raise ValueError(f"unknown check run status {status!r}")
        if status != "completed":
            conclusion = None
        elif conclusion not in CHECK_CONCLUSIONS:
            raise ValueError(f"unknown check run conclusion {conclusion!r}")
        now = _timestamp(_now())
        return self._store_check_run({
            "repo": full_name, "head_sha": head_sha, "name": name, "status": status,
            "conclusion": conclusion, "title": title, "summary": summary, "text": text,
            "details_url": None, "external_id": external_id,
            "actions": [dict(action) for action in actions or []],
            "started_at": now, "completed_at": now if status == "completed" else None,
        }, app_slug)

    def check_runs_of(self, full_name: str, head_sha: str | None = None,
                      app_slug: str | None = None) -> list[dict[str, Any]]:
        """Check runs on the repository, oldest first, each with its `history`: the run as it
        stood after its creation and after each update."""
        with self._lock:
            return [copy.deepcopy(run) for run in self._check_runs if run["repo"] == full_name
                    and head_sha in (None, run["head_sha"])
                    and app_slug in (None, run["app_slug"])]

    def check_run(self, run_id: int) -> dict[str, Any]:
        """One check run's record, with its `history`."""
        with self._lock:
            run = self._check_run_record(run_id)
            if run is None:
                raise ValueError(f"no check run {run_id}")
            return copy.deepcopy(run)

    def check_run_event(self, run_id: int, action: str, *, sender_login: str,
                        identifier: str | None = None) -> dict[str, Any]:
        """The `check_run` webhook payload GitHub sends when `sender_login` clicks one of the run's
        buttons (`requested_action`, naming the button's `identifier`) or asks for it to be run
        again (`rerequested`). GitHub sends either only to the app that made the run, shows the
        buttons only once the run is completed, and changes nothing in the run itself."""
        if action not in ("requested_action", "rerequested"):
            raise ValueError(f"action must be requested_action or rerequested, not {action!r}")
        run = self.check_run(run_id)
        if run["app_slug"] != self.app_slug:
            raise ValueError(f"check run {run_id} belongs to {run['app_slug']}; GitHub sends its "
                             f"events to that app, not to {self.app_slug}")
        if action == "requested_action":
            identifiers = [each["identifier"] for each in run["actions"]]
            if identifier not in identifiers:
                raise ValueError(f"check run {run_id} has no button {identifier!r}; "
                                 f"it has {identifiers}")
            if run["status"] != "completed":
                raise ValueError(f"check run {run_id} is {run['status']}; GitHub displays a "
                                 "run's buttons only after it completes")
        elif identifier is not None:
            raise ValueError("only a requested_action event names a button")
        repo = self._known_repo(run["repo"])
        with self._lock:
            installation = next((each for each in self._installations.values()
                                 if repo.full_name in each.repos), None)
        if installation is None:
            raise ValueError(f"no installation covers {repo.full_name}")
        self._ensure_account(sender_login)
        check_run = self._check_run_payload(run)
        # Webhooks carry the whole suite; re-running one of its runs queues the suite again.
        check_run["check_suite"] = self._check_suite_payload(run, queued=action == "rerequested")
        payload: dict[str, Any] = {"action": action, "check_run": check_run}
        if action == "requested_action":
            payload["requested_action"] = {"identifier": identifier}
        payload.update(
            repository=self._repo_payload(repo),
            installation={"id": installation.id, "node_id": f"IN_fake{installation.id}"},
            sender=self._user_payload(self._account(sender_login)),
        )
        return payload

    def _store_check_run(self, fields: dict[str, Any], app_slug: str) -> int:
        with self._lock:
            run_id = self._next_check_run_id
            self._next_check_run_id += 1
            suite = self._check_suites.setdefault((fields["repo"], fields["head_sha"], app_slug),
                                                  5_200_000 + len(self._check_suites))
            other_app_id = 3_300_000 + len(self._check_apps)
            app_id = self._check_apps.setdefault(
                app_slug, self.app_id if app_slug == self.app_slug else other_app_id)
            run = {"id": run_id, "annotations": [], "images": [], **fields,
                   "app_slug": app_slug, "app_id": app_id, "check_suite_id": suite}
            run["history"] = [_check_run_state(run)]
            self._check_runs.append(run)
        return run_id

    def _check_run_record(self, run_id: int) -> dict[str, Any] | None:
        """The stored run; the caller holds the lock."""
        return next((run for run in self._check_runs if run["id"] == run_id), None)

    def add_review_comment(self, full_name: str, pull_number: int, comment_id: int, login: str,
                           body: str, *, path: str | None = None, line: int | None = None,
                           start_line: int | None = None, side: str = "RIGHT",
                           diff_hunk: str | None = None, in_reply_to: int | None = None) -> None:
        """Someone's inline comment on a pull request's diff, at `line` of `path` on `side`.

        `diff_hunk` defaults to the hunk of the real diff up to that line, which must be in it. A
        reply (`in_reply_to`) joins the thread of that comment and takes its place in the diff."""
        pull = self._issue_record(full_name, pull_number)
        if pull is None or not _is_pull(pull):
            raise ValueError(f"{full_name}#{pull_number} is not a pull request")
        self._ensure_account(login)
        with self._lock:
            if (comment_id in self.review_comments or comment_id in self.comments
                    or comment_id in self.people_comments):
                raise ValueError(f"comment id {comment_id} is already taken")
        if in_reply_to is not None:
            with self._lock:
                root = self._thread_root(full_name, pull_number, in_reply_to)
            if root is None:
                raise ValueError(f"no review comment {in_reply_to} on {full_name}#{pull_number}")
            place = {key: root[key] for key in ("path", "line", "start_line", "side", "diff_hunk",
                                                "position", "commit_id")}
            top: int | None = root["id"]
        else:
            top = None
            if path is None or line is None:
                raise ValueError("a review comment that is not a reply needs a path and a line")
            if side not in ("LEFT", "RIGHT"):
                raise ValueError(f"side must be LEFT or RIGHT, not {side!r}")
            head_sha, base_sha = self._pull_shas(pull)
            changed = {each["filename"]: each
                       for each in self._pull_files(pull, head_sha, base_sha)}
            if path not in changed:
                raise ValueError(f"{path} is not changed by {full_name}#{pull_number}")
            found = _diff_position(changed[path].get("patch"), line, side)
            if found is None:
                raise ValueError(f"{side} line {line} of {path} is not in the diff")
            hunk, position = found
            place = {"path": path, "line": line, "start_line": start_line, "side": side,
                     "diff_hunk": diff_hunk if diff_hunk is not None else hunk,
                     "position": position, "commit_id": head_sha}
        self._store_review_comment(full_name, pull_number, comment_id, login, body, place, top)

    def resolve_thread(self, full_name: str, comment_id: int, resolved: bool = True) -> None:
        """Someone resolves (or unresolves) the review thread holding comment `comment_id`."""
        with self._lock:
            comment = self.review_comments.get(comment_id)
            if comment is None or comment["repo"] != full_name:
                raise ValueError(f"no review comment {comment_id} in {full_name}")
            top = comment["in_reply_to"] or comment["id"]
            if resolved:
                self._resolved_threads.add(top)
            else:
                self._resolved_threads.discard(top)

    def repo_path(self, full_name: str) -> Path:
        owner, name = full_name.split("/", 1)
        return self.root / owner / f"{name}.git"

    def set_permission(self, full_name: str, login: str, permission: str, *,
                       custom_role: str | None = None) -> None:
        """`custom_role` names an organisation's custom repository role built on `permission`:
        GitHub then reports that name as `role_name` and the base level as `permission`."""
        if permission not in ROLE_RANK:
            raise ValueError(f"unknown permission {permission!r}; use one of {sorted(ROLE_RANK)}")
        with self._lock:
            self._repos[full_name].roles[login] = permission
            self._custom_roles[(full_name, login)] = custom_role

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int,
        json_body: Any,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next request whose path matches `path_regex` (re.search) with this error, once."""
        with self._lock:
            self._planned_failures.append(
                _PlannedFailure(
                    method.upper(), re.compile(path_regex), status, json_body, dict(headers or {})
                )
            )

    def reject_pushes(self, full_name: str, reject: bool = True) -> None:
        """Make pushes to the repo fail the way a server-side hook refusal does."""
        with self._lock:
            if reject:
                self._push_rejected.add(full_name)
            else:
                self._push_rejected.discard(full_name)

    def expire_token(self, token: str) -> None:
        with self._lock:
            self.minted_tokens[token]["expires_at"] = _now() - timedelta(seconds=1)

    def plan_manifest_code(self, private_key_pem: str, *, code: str | None = None,
                           webhook_secret: str | None = "", slug: str | None = None) -> str:
        """Someone will create an App from a manifest; returns the one-time code GitHub hands
        back for it. Converting the code (POST /app-manifests/{code}/conversions) answers with
        the App: this fake's app id, `slug` (the fake's own by default), `private_key_pem`, and
        `webhook_secret` (a new random one for "", or None as GitHub's schema allows). The next
        manifest a browser posts to .../settings/apps/new is the one the code stands for."""
        planned = _PlannedApp(code=code or secrets.token_hex(10), pem=private_key_pem,
                              webhook_secret=(secrets.token_hex(20) if webhook_secret == ""
                                              else webhook_secret),
                              slug=slug or self.app_slug)
        with self._lock:
            self._planned_apps.append(planned)
        return planned.code

    def planned_webhook_secret(self, code: str) -> str | None:
        """The webhook secret converting `code` hands out."""
        with self._lock:
            return next(each.webhook_secret for each in self._planned_apps if each.code == code)

    def _commit_initial_files(self, path: Path, files: dict[str, str], branch: str,
                              submodules: dict[str, str]) -> None:
        index = path / "initial-commit-index"
        try:
            entries = [f"160000 {commit}\t{module_path}\n" for module_path, commit in submodules.items()]
            for file_path, content in files.items():
                blob = _run_git(path, "hash-object", "-w", "--stdin", stdin=content.encode())
                entries.append(f"100644 {blob}\t{file_path}\n")
            _run_git(
                path,
                "update-index",
                "--index-info",
                stdin="".join(entries).encode(),
                GIT_INDEX_FILE=str(index),
            )
            tree = _run_git(path, "write-tree", GIT_INDEX_FILE=str(index))
            commit = _run_git(path, "commit-tree", tree, "-m", "Initial commit")
            _run_git(path, "update-ref", f"refs/heads/{branch}", commit)
        finally:
            index.unlink(missing_ok=True)

    def _known_repo(self, full_name: str) -> _Repo:
        with self._lock:
            repo = self._repos.get(full_name)
        if repo is None:
            raise ValueError(f"no repository {full_name}; add it with add_repo first")
        return repo

    def _ensure_fork(self, full_name: str, fork: str) -> str:
        """Make `fork` a fork of `full_name` unless it already is one."""
        with self._lock:
            existing = self._repos.get(fork)
        if existing is not None:
            if existing.parent != full_name:
                raise ValueError(f"{fork} exists and is not a fork of {full_name}")
            return fork
        parent = self._known_repo(full_name)
        path = self.repo_path(fork)
        path.parent.mkdir(parents=True, exist_ok=True)
        _run_git(path, "init", "--bare", "--quiet", f"--initial-branch={parent.default_branch}",
                 str(path))
        # A fork sees its parent's objects, as forks on GitHub share one object store; so a pull
        # request's base and head are both at hand in the head's repository.
        parent_objects = (self.repo_path(full_name) / "objects").resolve()
        (path / "objects" / "info" / "alternates").write_text(f"{parent_objects}\n")
        _run_git(path, "fetch", "--quiet", str(self.repo_path(full_name)),
                 "refs/heads/*:refs/heads/*")
        owner = fork.split("/", 1)[0]
        self._ensure_account(owner)
        with self._lock:
            repo_id = self._next_repo_id
            self._next_repo_id += 1
            self._repos[fork] = _Repo(repo_id, fork, parent.default_branch, False, parent.private,
                                      _timestamp(_now()), parent=full_name)
        return fork

    def _commit_onto(self, full_name: str, branch: str, parent: str,
                     files: dict[str, str | None], message: str, expected_old: str | None) -> str:
        """Commit `files` onto `parent`; move `branch` there if it still is at `expected_old`."""
        git_dir = self.repo_path(full_name)
        index = git_dir / f"commit-index-{secrets.token_hex(6)}"
        try:
            _run_git(git_dir, "read-tree", parent, GIT_INDEX_FILE=str(index))
            entries = []
            for file_path, content in files.items():
                if content is None:
                    entries.append(f"0 {NO_COMMIT}\t{file_path}\n")  # mode 0 drops the path
                else:
                    blob = _run_git(git_dir, "hash-object", "-w", "--stdin", stdin=content.encode())
                    entries.append(f"100644 {blob}\t{file_path}\n")
            _run_git(git_dir, "update-index", "--index-info", stdin="".join(entries).encode(),
                     GIT_INDEX_FILE=str(index))
            tree = _run_git(git_dir, "write-tree", GIT_INDEX_FILE=str(index))
        finally:
            index.unlink(missing_ok=True)
        commit = _run_git(git_dir, "commit-tree", tree, "-p", parent, "-m", message)
        _run_git(git_dir, "update-ref", f"refs/heads/{branch}", commit, expected_old or NO_COMMIT)
        return commit

    def _register_pull(self, full_name: str, number: int, *, title: str, body: str | None,
                       user: str, head_repo: str, head: str, base: str, head_sha: str,
                       base_sha: str, draft: bool) -> dict[str, Any]:
        """Record a new open pull request; the caller holds the lock."""
        created_at = _timestamp(_now())
        pull = {
            "id": self._next_pull_id,
            "issue_id": self._next_issue_id,
            "number": number,
            "title": title,
            "body": body,
            "head": head,
            "head_repo": head_repo,
            "base": base,
            # While it is open these follow the branches; see _pull_shas.
            "head_sha": head_sha,
            "base_sha": base_sha,
            "draft": draft,
            "repo": full_name,
            "html_url": f"{self.base_url}/{full_name}/pull/{number}",
            "user": user,
            "labels": [],
            "state": "open",
            "merged": False,
            "merged_at": None,
            "closed_at": None,
            "created_at": created_at,
            "updated_at": created_at,
        }
        self._next_pull_id += 1
        self._next_issue_id += 1
        self.pulls.append(pull)
        self._issues[(full_name, number)] = pull
        return pull

    def _pull_shas(self, pull: dict[str, Any]) -> tuple[str, str]:
        """The head and base commits: the branches' tips while open, as they were at closing."""
        if pull["state"] == "open":
            head_sha = self._branch_sha(self._find_repo(pull["head_repo"]), pull["head"])
            base_sha = self._branch_sha(self._find_repo(pull["repo"]), pull["base"])
            with self._lock:
                # A deleted branch leaves the last commit it had.
                pull["head_sha"] = head_sha or pull["head_sha"]
                pull["base_sha"] = base_sha or pull["base_sha"]
        with self._lock:
            return pull["head_sha"], pull["base_sha"]

    def _pull_files(self, pull: dict[str, Any], head_sha: str, base_sha: str) -> list[dict[str, Any]]:
        """The files a pull request changes: git's diff from the merge base to the head."""
        git_dir = self.repo_path(pull["head_repo"])
        merge_base = _run_git(git_dir, "merge-base", base_sha, head_sha)

        def diff(*options: str) -> bytes:
            return _run_git_bytes(git_dir, "diff", "-M", "--no-color", "--no-ext-diff",
                                  "--no-textconv", *options, merge_base, head_sha)

        raw = diff("--raw", "-z", "--no-abbrev").split(b"\0")
        counts = diff("--numstat", "-z").split(b"\0")
        # Lines inside a patch start with " ", "+", "-" or "\\", so only headers match here.
        patches = re.split(r"^diff --git ", diff("--patch").decode("utf-8", "replace"),
                           flags=re.MULTILINE)[1:]
        files = []
        raw_at = count_at = 0
        for patch in patches:
            _modes_and_shas, old_sha, new_sha, status = raw[raw_at].decode().rsplit(" ", 3)
            paths = 2 if status[0] in "RC" else 1
            names = [name.decode("utf-8", "replace") for name in raw[raw_at + 1:raw_at + 1 + paths]]
            raw_at += 1 + paths
            added, deleted, counted_path = counts[count_at].split(b"\t", 2)
            count_at += 1 if counted_path else 3
            hunk_start = patch.find("\n@@")
            entry = {
                "filename": names[-1],
                "status": GIT_DIFF_STATUS[status[0]],
                # Binary files show "-" for both counts.
                "additions": int(added) if added.isdigit() else 0,
                "deletions": int(deleted) if deleted.isdigit() else 0,
                "sha": old_sha if status[0] == "D" else new_sha,
            }
            entry["changes"] = entry["additions"] + entry["deletions"]
            if hunk_start != -1:
                entry["patch"] = patch[hunk_start + 1:].rstrip("\n")
            if len(names) == 2:
                entry["previous_filename"] = names[0]
            files.append(entry)
        return files

    def _thread_root(self, full_name: str, pull_number: int,
                     comment_id: int) -> dict[str, Any] | None:
        """The top comment of the thread holding `comment_id` on that pull request; lock held."""
        comment = self.review_comments.get(comment_id)
        if comment is None or (comment["repo"], comment["pull_number"]) != (full_name, pull_number):
            return None
        return self.review_comments[comment["in_reply_to"]] if comment["in_reply_to"] else comment

    def _store_review_comment(self, full_name: str, pull_number: int, comment_id: int,
                              login: str, body: str, place: dict[str, Any],
                              in_reply_to: int | None) -> dict[str, Any]:
        created_at = _timestamp(_now())
        with self._lock:
            comment = {
                "id": comment_id,
                "repo": full_name,
                "pull_number": pull_number,
                "user": login,
                "body": body,
                "history": [body],
                "in_reply_to": in_reply_to,
                **place,
                # GitHub files every review comment, a reply too, under a review of its own.
                "review_id": self._next_review_id,
                "created_at": created_at,
                "updated_at": created_at,
            }
            self._next_review_id += 1
            self.review_comments[comment_id] = comment
            self._review_comment_order.append(comment_id)
        return comment

    def _pull_review_comments(self, full_name: str, pull_number: int) -> list[dict[str, Any]]:
        with self._lock:
            comments = [self.review_comments[each] for each in self._review_comment_order]
        return [comment for comment in comments
                if (comment["repo"], comment["pull_number"]) == (full_name, pull_number)]

    def _outdated_threads(self, pull: dict[str, Any], comments: list[dict[str, Any]],
                          head_sha: str) -> dict[int, bool]:
        """Whether each thread is outdated, by its top comment's id.

        GitHub moves a comment along while its line stays put and calls it outdated once the
        line itself changed. This fake is coarser: any later change to the file outdates it."""
        outdated = {}
        for comment in comments:
            top = comment["in_reply_to"] or comment["id"]
            if top in outdated:
                continue
            if comment["commit_id"] == head_sha:
                outdated[top] = False
                continue
            changed = subprocess.run(
                ["git", "--literal-pathspecs", "diff", "--quiet", comment["commit_id"], head_sha,
                 "--", comment["path"]],
                capture_output=True,
                env=_git_environment(GIT_DIR=str(self.repo_path(pull["head_repo"]))),
                timeout=60,
                check=False,
            )
            outdated[top] = changed.returncode == 1
        return outdated

    def _review_comment_payload(self, comment: dict[str, Any], head_sha: str,
                                outdated: bool) -> dict[str, Any]:
        api = f"{self.base_url}/repos/{comment['repo']}"
        pull_api = f"{api}/pulls/{comment['pull_number']}"
        html_url = (f"{self.base_url}/{comment['repo']}/pull/{comment['pull_number']}"
                    f"#discussion_r{comment['id']}")
        payload = {
            "url": f"{api}/pulls/comments/{comment['id']}",
            "pull_request_review_id": comment["review_id"],
            "id": comment["id"],
            "node_id": f"PRRC_fake{comment['id']}",
            "diff_hunk": comment["diff_hunk"],
            "path": comment["path"],
            # An outdated comment keeps only where it was first made.
            "position": None if outdated else comment["position"],
            "original_position": comment["position"],
            "commit_id": comment["commit_id"] if outdated else head_sha,
            "original_commit_id": comment["commit_id"],
            "user": self._user_payload(self._account(comment["user"])),
            "body": comment["body"],
            "created_at": comment["created_at"],
            "updated_at": comment["updated_at"],
            "html_url": html_url,
            "pull_request_url": pull_api,
            "author_association": self._association(comment["repo"], comment["user"]),
            "_links": {
                "self": {"href": f"{api}/pulls/comments/{comment['id']}"},
                "html": {"href": html_url},
                "pull_request": {"href": pull_api},
            },
            "start_line": None if outdated else comment["start_line"],
            "original_start_line": comment["start_line"],
            "start_side": comment["side"] if comment["start_line"] is not None else None,
            "line": None if outdated else comment["line"],
            "original_line": comment["line"],
            "side": comment["side"],
            "subject_type": "line",
            "reactions": self._reaction_rollup(f"{api}/pulls/comments/{comment['id']}/reactions",
                                               comment["id"]),
        }
        if comment["in_reply_to"] is not None:
            payload["in_reply_to_id"] = comment["in_reply_to"]
        return payload

    def _reaction_rollup(self, url: str, comment_id: int) -> dict[str, Any]:
        with self._lock:
            contents = [each["content"] for each in self.reactions
                        if each["comment_id"] == comment_id]
        return {"url": url, "total_count": len(contents),
                **{content: contents.count(content) for content in sorted(REACTION_CONTENTS)}}

    def _build_app(self) -> Flask:
        app = Flask("fake_github")
        app.before_request(self._record_and_maybe_fail)
        app.register_error_handler(_Rejection, self._answer_rejection)
        app.register_error_handler(_GitAnswer, lambda answer: answer.response)
        app.register_error_handler(404, self._answer_not_found)
        app.register_error_handler(405, self._answer_not_found)

        routes = [
            ("/app", "GET", self._get_app),
            (
                "/app/installations/<int:installation_id>/access_tokens",
                "POST",
                self._create_access_token,
            ),
            ("/repos/<owner>/<repo>/installation", "GET", self._get_repo_installation),
            ("/repos/<owner>/<repo>", "GET", self._get_repo),
            ("/repos/<owner>/<repo>/collaborators/<login>/permission", "GET", self._get_permission),
            ("/repos/<owner>/<repo>/issues/<int:number>", "GET", self._get_issue),
            ("/repos/<owner>/<repo>/issues/<int:number>/comments", "POST", self._create_comment),
            ("/repos/<owner>/<repo>/issues/<int:number>/comments", "GET", self._list_comments),
            # Label names may hold "/", which arrives decoded whether it was sent as %2F or not.
            (
                "/repos/<owner>/<repo>/issues/<int:number>/labels/<path:name>",
                "DELETE",
                self._remove_label,
            ),
            ("/repos/<owner>/<repo>/issues/comments/<int:comment_id>", "GET", self._get_comment),
            (
                "/repos/<owner>/<repo>/issues/comments/<int:comment_id>",
                "PATCH",
                self._update_comment,
            ),
            (
                "/repos/<owner>/<repo>/issues/comments/<int:comment_id>/reactions",
                "POST",
                self._create_reaction,
            ),
            ("/repos/<owner>/<repo>/pulls", "POST", self._create_pull),
            ("/repos/<owner>/<repo>/pulls", "GET", self._list_pulls),
            ("/repos/<owner>/<repo>/pulls/<int:number>", "GET", self._get_pull),
            ("/repos/<owner>/<repo>/pulls/<int:number>", "PATCH", self._update_pull),
            ("/repos/<owner>/<repo>/pulls/<int:number>/files", "GET", self._list_pull_files),
            (
                "/repos/<owner>/<repo>/pulls/<int:number>/comments",
                "GET",
                self._list_review_comments,
            ),
            (
                "/repos/<owner>/<repo>/pulls/<int:number>/comments/<int:comment_id>/replies",
                "POST",
                self._reply_to_review_comment,
            ),
            (
                "/repos/<owner>/<repo>/pulls/comments/<int:comment_id>",
                "PATCH",
                self._update_review_comment,
            ),
            (
                "/repos/<owner>/<repo>/pulls/comments/<int:comment_id>/reactions",
                "POST",
                self._create_review_comment_reaction,
            ),
            ("/graphql", "POST", self._graphql),
            # Branch names and refs may hold "/".
            ("/repos/<owner>/<repo>/branches/<path:branch>", "GET", self._get_branch),
            ("/repos/<owner>/<repo>/git/refs/<path:ref>", "DELETE", self._delete_ref),
            ("/repos/<owner>/<repo>/contents", "GET", self._get_contents),
            ("/repos/<owner>/<repo>/contents/<path:path>", "GET", self._get_contents),
            ("/repos/<owner>/<repo>/commits/<path:ref>/check-runs", "GET", self._list_check_runs),
            ("/repos/<owner>/<repo>/check-runs", "POST", self._create_check_run),
            ("/repos/<owner>/<repo>/check-runs/<int:run_id>", "GET", self._get_check_run),
            ("/repos/<owner>/<repo>/check-runs/<int:run_id>", "PATCH", self._update_check_run),
            ("/app-manifests/<code>/conversions", "POST", self._convert_manifest_code),
            # The browser's side of the manifest flow: GitHub's "new GitHub App" page, with the
            # owner's click on "Create GitHub App" already made.
            ("/settings/apps/new", "POST", self._create_app_from_manifest),
            ("/organizations/<org>/settings/apps/new", "POST", self._create_app_from_manifest),
            ("/users/<login>", "GET", self._get_user),
            ("/user/<int:user_id>", "GET", self._get_user_by_id),
            ("/git/<owner>/<repo_dir>/<path:git_path>", "GET", self._serve_git),
            ("/git/<owner>/<repo_dir>/<path:git_path>", "POST", self._serve_git),
        ]
        for rule, method, view in routes:
            app.add_url_rule(rule, f"{method} {rule}", view, methods=[method])
        return app

    def _record_and_maybe_fail(self) -> Response | None:
        credentials = _read_credentials(request.headers.get("Authorization"))
        body = request.get_json(silent=True) if request.is_json else None
        with self._lock:
            self.requests.append(
                {
                    "method": request.method,
                    "path": request.path,
                    "query": request.query_string.decode(),
                    "json": body,
                    "auth": credentials.kind,
                }
            )
            failure = next(
                (
                    planned
                    for planned in self._planned_failures
                    if planned.method == request.method
                    and planned.path_pattern.search(request.path)
                ),
                None,
            )
            if failure is not None:
                self._planned_failures.remove(failure)
        if failure is not None:
            return _json_response(failure.status, failure.body, failure.headers)
        return None

    def _answer_rejection(self, rejection: _Rejection) -> Response:
        return _json_response(rejection.status, rejection.payload)

    def _answer_not_found(self, _error: Exception) -> Response:
        return _json_response(404, {"message": "Not Found", "documentation_url": DOCS_URL})

    def _record_auth_failure(self, reason: str) -> None:
        with self._lock:
            self.auth_failures.append((request.method, request.path, reason))

    def _deny(self, status: int, message: str, reason: str) -> _Rejection:
        self._record_auth_failure(reason)
        return _Rejection(status, message)

    def _jwt_problem(self, token: str) -> str | None:
        try:
            claims = jwt.decode(
                token,
                self._public_key_pem,
                algorithms=["RS256"],
                leeway=CLOCK_SKEW,
                options={"require": ["iat", "exp", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            return "jwt expired"
        except jwt.InvalidTokenError as error:
            return f"jwt invalid: {error}"
        # githubkit sends the app id as a string; GitHub takes either.
        if str(claims["iss"]) != str(self.app_id):
            return f"jwt issuer {claims['iss']!r} is not app {self.app_id}"
        if claims["exp"] - claims["iat"] > JWT_MAX_LIFETIME.total_seconds():
            return "jwt lifetime is over 10 minutes"
        latest_expiry = _now() + JWT_MAX_LIFETIME + CLOCK_SKEW
        if claims["exp"] > latest_expiry.timestamp():
            return "jwt expires more than 10 minutes from now"
        return None

    def _authenticate_app(self) -> None:
        credentials = _read_credentials(request.headers.get("Authorization"))
        if credentials.kind != "jwt" or not credentials.secret:
            raise self._deny(
                401, "Bad credentials", f"app JWT required, got {credentials.kind or 'nothing'}"
            )
        problem = self._jwt_problem(credentials.secret)
        if problem is not None:
            raise self._deny(401, "Bad credentials", problem)

    def _live_token(self, secret: str | None) -> dict[str, Any] | None:
        """The minted token's record, or None when it is unknown or expired."""
        with self._lock:
            record = self.minted_tokens.get(secret or "")
        if record is None or record["expires_at"] <= _now():
            return None
        return record

    def _authenticate_installation(
        self, full_name: str, scope: str, level: str, *,
        alternatives: tuple[tuple[str, str], ...] = (),
    ) -> dict[str, Any]:
        """Check the request's installation token may use `scope` at `level` on the repo.

        `alternatives` are other (scope, level) pairs GitHub accepts instead for this call."""
        credentials = _read_credentials(request.headers.get("Authorization"))
        if credentials.kind not in ("token", "basic"):
            raise self._deny(
                401,
                "Bad credentials",
                f"installation token required, got {credentials.kind or 'nothing'}",
            )
        token = self._live_token(credentials.secret)
        if token is None:
            raise self._deny(401, "Bad credentials", "token unknown or expired")
        repo = self._find_repo(full_name)
        self._check_token_scope(token, repo, scope, level, alternatives=alternatives)
        return token

    def _check_token_scope(
        self, token: dict[str, Any], repo: _Repo, scope: str, level: str, *,
        alternatives: tuple[tuple[str, str], ...] = (),
    ) -> None:
        with self._lock:
            installation = self._installations[token["installation_id"]]
            covered = (
                token["repositories"] if token["repositories"] is not None else installation.repos
            )
            suspended = installation.suspended
        if suspended:
            raise self._deny(403, SUSPENDED, f"installation {installation.id} is suspended")
        if repo.full_name not in covered:
            raise self._deny(403, NOT_ACCESSIBLE, f"token does not cover {repo.full_name}")
        accepted = ((scope, level), *alternatives)
        if not any(
            PERMISSION_RANK.get(token["permissions"].get(each_scope, ""), 0)
            >= PERMISSION_RANK[each_level]
            for each_scope, each_level in accepted
        ):
            needed = " or ".join(f"{each_scope}:{each_level}" for each_scope, each_level in accepted)
            raise self._deny(403, NOT_ACCESSIBLE, f"token lacks {needed}")

    def _authenticate_any(self) -> None:
        """Public endpoints: no credentials are fine, bad ones are not."""
        credentials = _read_credentials(request.headers.get("Authorization"))
        if credentials.kind is None and "Authorization" not in request.headers:
            return
        if credentials.kind == "jwt" and credentials.secret:
            problem = self._jwt_problem(credentials.secret)
            if problem is not None:
                raise self._deny(401, "Bad credentials", problem)
            return
        if self._live_token(credentials.secret) is None:
            raise self._deny(401, "Bad credentials", "token unknown or expired")

    def _find_repo(self, full_name: str) -> _Repo:
        with self._lock:
            repo = self._repos.get(full_name)
        if repo is None:
            raise _Rejection(404, "Not Found")
        return repo

    def _known_repos(self, full_names: list[str]) -> list[_Repo]:
        with self._lock:
            return [self._repos[name] for name in full_names if name in self._repos]

    def _account(self, login: str) -> _Account:
        with self._lock:
            account = self._accounts.get(login)
        if account is None:
            raise _Rejection(404, "Not Found")
        return account

    def _user_payload(self, account: _Account) -> dict[str, Any]:
        api = f"{self.base_url}/users/{account.login}"
        html_url = (
            f"{self.base_url}/apps/{self.app_slug}"
            if account.login == self.bot_login
            else f"{self.base_url}/{account.login}"
        )
        return {
            "login": account.login,
            "id": account.id,
            "node_id": f"U_fake{account.id}",
            "avatar_url": f"{self.base_url}/avatars/u/{account.id}",
            "gravatar_id": "",
            "url": api,
            "html_url": html_url,
            "followers_url": f"{api}/followers",
            "following_url": f"{api}/following{{/other_user}}",
            "gists_url": f"{api}/gists{{/gist_id}}",
            "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{api}/subscriptions",
            "organizations_url": f"{api}/orgs",
            "repos_url": f"{api}/repos",
            "events_url": f"{api}/events{{/privacy}}",
            "received_events_url": f"{api}/received_events",
            "type": account.type,
            "user_view_type": "public",
            "site_admin": False,
        }

    def _bot_payload(self) -> dict[str, Any]:
        return self._user_payload(self._account(self.bot_login))

    def _ensure_account(self, login: str) -> None:
        with self._lock:
            self._ensure_account_locked(login)

    def _ensure_account_locked(self, login: str) -> None:
        """People named by test helpers exist on GitHub; make an account for any not added yet."""
        if login not in self._accounts:
            self._accounts[login] = _Account(login, self._next_person_id, "User")
            self._next_person_id += 1

    def _new_issue(self, full_name: str, number: int) -> dict[str, Any]:
        """Register a default issue; the caller holds the lock."""
        created_at = _timestamp(_now())
        record = {"id": self._next_issue_id, "repo": full_name, "number": number,
                  "title": f"Issue {number}", "body": "", "user": "reporter", "labels": [],
                  "state": "open", "created_at": created_at, "updated_at": created_at,
                  "closed_at": None}
        self._next_issue_id += 1
        self._issues[(full_name, number)] = record
        self._ensure_account_locked(record["user"])
        return record

    def _attach_label(self, record: dict[str, Any], name: str) -> None:
        """Put label `name` on an issue, creating it in the repository first; the caller holds the lock."""
        key = (record["repo"], name)
        if key not in self._labels:
            self._labels[key] = {"id": self._next_label_id, "name": name,
                                 # A stable colour per name, as GitHub picks one when a label is made.
                                 "color": hashlib.sha256(name.encode()).hexdigest()[:6]}
            self._next_label_id += 1
        if name not in record["labels"]:
            record["labels"].append(name)

    def _label_payloads(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        api = f"{self.base_url}/repos/{record['repo']}"
        with self._lock:
            labels = [self._labels[(record["repo"], name)] for name in record["labels"]]
        return [
            {
                "id": label["id"],
                "node_id": f"LA_fake{label['id']}",
                "url": f"{api}/labels/{quote(label['name'], safe='')}",
                "name": label["name"],
                "color": label["color"],
                "default": False,
                "description": None,
                "archived_at": None,
                "archived_by": None,
            }
            for label in labels
        ]

    def _association(self, full_name: str, login: str) -> str:
        with self._lock:
            repo = self._repos.get(full_name)
            collaborator = repo is not None and login in repo.roles
        if repo is not None and login == repo.owner:
            return "OWNER"
        return "COLLABORATOR" if collaborator else "NONE"

    def _allocate_number(self, full_name: str) -> int:
        """The next issue or pull request number in a repository; the caller holds the lock."""
        taken = [number for repo, number in self._issues if repo == full_name]
        return max([FIRST_PULL_NUMBER - 1, *taken]) + 1

    def _issue_record(self, full_name: str, number: int) -> dict[str, Any] | None:
        with self._lock:
            return self._issues.get((full_name, number))

    @staticmethod
    def _pull_alternative(record: dict[str, Any] | None, level: str) -> tuple[tuple[str, str], ...]:
        """On a pull request GitHub takes pull_requests instead of issues for the shared endpoints."""
        return (("pull_requests", level),) if record is not None and _is_pull(record) else ()

    def _paginate(self, items: list[Any]) -> tuple[list[Any], dict[str, str]]:
        """One page of `items` as `per_page` and `page` ask, with GitHub's Link header."""

        def number_arg(name: str, default: int) -> int:
            try:
                value = int(request.args.get(name, default))
            except ValueError:
                return default
            return value if value >= 1 else default

        per_page = min(number_arg("per_page", DEFAULT_PER_PAGE), MAX_PER_PAGE)
        page = number_arg("page", 1)
        last = max(1, -(-len(items) // per_page))

        def link(target: int, rel: str) -> str:
            query = {**request.args.to_dict(), "per_page": per_page, "page": target}
            return f'<{self.base_url}{request.path}?{urlencode(query)}>; rel="{rel}"'

        links = []
        if page > 1:
            links += [link(min(page - 1, last), "prev"), link(1, "first")]
        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        start = (page - 1) * per_page
        return items[start:start + per_page], ({"Link": ", ".join(links)} if links else {})

    def _has_commits(self, repo: _Repo) -> bool:
        refs = _run_git(self.repo_path(repo.full_name), "for-each-ref", "--count=1", "refs/heads")
        return bool(refs)

    def _branch_sha(self, repo: _Repo, branch: str) -> str | None:
        return self._commit_sha(repo, f"refs/heads/{branch}")

    def _commit_sha(self, repo: _Repo, revision: str) -> str | None:
        """The commit `revision` names in the repo, or None."""
        completed = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", "--end-of-options",
             f"{revision}^{{commit}}"],
            capture_output=True,
            env=_git_environment(GIT_DIR=str(self.repo_path(repo.full_name))),
            timeout=60,
            check=False,
        )
        if completed.returncode != 0:
            return None
        return completed.stdout.decode().strip() or None

    def _repo_payload(self, repo: _Repo, token: dict[str, Any] | None = None) -> dict[str, Any]:
        api = f"{self.base_url}/repos/{repo.full_name}"
        html_url = f"{self.base_url}/{repo.full_name}"
        can_push = (
            token is None or PERMISSION_RANK.get(token["permissions"].get("contents", ""), 0) >= 2
        )
        return {
            "id": repo.id,
            "node_id": f"R_fake{repo.id}",
            "name": repo.name,
            "full_name": repo.full_name,
            "owner": self._user_payload(self._account(repo.owner)),
            "private": repo.private,
            "visibility": "private" if repo.private else "public",
            "html_url": html_url,
            "description": None,
            "fork": repo.fork,
            "url": api,
            **{name: api + suffix for name, suffix in REPO_URL_TEMPLATES.items()},
            "clone_url": f"{self.base_url}/git/{repo.full_name}.git",
            "git_url": f"git://127.0.0.1/{repo.full_name}.git",
            "ssh_url": f"git@127.0.0.1:{repo.full_name}.git",
            "svn_url": html_url,
            "mirror_url": None,
            "homepage": None,
            "language": None,
            "forks_count": 0,
            "forks": 0,
            "stargazers_count": 0,
            "watchers_count": 0,
            "watchers": 0,
            "subscribers_count": 0,
            "network_count": 0,
            "size": 1 if self._has_commits(repo) else 0,
            "default_branch": repo.default_branch,
            "open_issues_count": 0,
            "open_issues": 0,
            "is_template": False,
            "topics": [],
            "has_issues": True,
            "has_projects": True,
            "has_wiki": True,
            "has_pages": False,
            "has_downloads": True,
            "has_discussions": False,
            "archived": repo.archived,
            "disabled": False,
            "pushed_at": repo.created_at,
            "created_at": repo.created_at,
            "updated_at": repo.created_at,
            "permissions": {
                "admin": False,
                "maintain": False,
                "push": can_push,
                "triage": True,
                "pull": True,
            },
            "allow_forking": True,
            "web_commit_signoff_required": False,
            "license": None,
        }

    def _installation_payload(
        self, installation: _Installation, account: _Account
    ) -> dict[str, Any]:
        return {
            "id": installation.id,
            "account": self._user_payload(account),
            "repository_selection": "selected",
            "access_tokens_url": f"{self.base_url}/app/installations/{installation.id}/access_tokens",
            "repositories_url": f"{self.base_url}/installation/repositories",
            "html_url": f"{self.base_url}/settings/installations/{installation.id}",
            "app_id": self.app_id,
            "app_slug": self.app_slug,
            "client_id": f"Iv1.fake{self.app_id}",
            "target_id": account.id,
            "target_type": account.type,
            "permissions": installation.permissions,
            "events": ["issue_comment"],
            "created_at": installation.created_at,
            "updated_at": installation.created_at,
            "single_file_name": None,
            "has_multiple_single_files": False,
            "single_file_paths": [],
            "suspended_by": self._user_payload(self._app_owner) if installation.suspended else None,
            "suspended_at": installation.created_at if installation.suspended else None,
        }

    def _comment_payload(self, comment: dict[str, Any]) -> dict[str, Any]:
        api = f"{self.base_url}/repos/{comment['repo']}"
        return {
            "id": comment["id"],
            "node_id": f"IC_fake{comment['id']}",
            "url": f"{api}/issues/comments/{comment['id']}",
            "html_url": f"{self.base_url}/{comment['repo']}/issues/{comment['issue_number']}"
            f"#issuecomment-{comment['id']}",
            "issue_url": f"{api}/issues/{comment['issue_number']}",
            "body": comment["body"],
            "user": self._user_payload(self._account(comment["user"])),
            "author_association": self._association(comment["repo"], comment["user"]),
            "created_at": comment["created_at"],
            "updated_at": comment["updated_at"],
        }

    def _issue_payload(self, record: dict[str, Any]) -> dict[str, Any]:
        full_name, number = record["repo"], record["number"]
        api = f"{self.base_url}/repos/{full_name}"
        issue_api = f"{api}/issues/{number}"
        is_pull = _is_pull(record)
        html_url = f"{self.base_url}/{full_name}/{'pull' if is_pull else 'issues'}/{number}"
        issue_id = record["issue_id"] if is_pull else record["id"]
        payload = {
            "id": issue_id,
            # A pull request's issue carries the pull request's node id, as on GitHub.
            "node_id": f"PR_fake{record['id']}" if is_pull else f"I_fake{issue_id}",
            "url": issue_api,
            "repository_url": api,
            "labels_url": f"{issue_api}/labels{{/name}}",
            "comments_url": f"{issue_api}/comments",
            "events_url": f"{issue_api}/events",
            "html_url": html_url,
            "timeline_url": f"{issue_api}/timeline",
            "number": number,
            "state": record["state"],
            # GitHub gives a reason for closed issues only, never for pull requests.
            "state_reason": "completed" if record["state"] == "closed" and not is_pull else None,
            "title": record["title"],
            "body": record["body"],
            "user": self._user_payload(self._account(record["user"])),
            "labels": self._label_payloads(record),
            "assignee": None,
            "assignees": [],
            "milestone": None,
            "locked": False,
            "active_lock_reason": None,
            "comments": len(self._issue_comments(full_name, number)),
            "closed_at": record["closed_at"],
            "created_at": record["created_at"],
            "updated_at": record["updated_at"],
            "author_association": self._association(full_name, record["user"]),
            "performed_via_github_app": None,
        }
        if is_pull:
            payload["draft"] = record["draft"]
            payload["pull_request"] = {
                "url": f"{api}/pulls/{number}",
                "html_url": html_url,
                "diff_url": f"{html_url}.diff",
                "patch_url": f"{html_url}.patch",
                "merged_at": record["merged_at"],
            }
        return payload

    def _issue_comments(self, full_name: str, number: int) -> list[dict[str, Any]]:
        """People's and the App's comments on an issue or pull request, oldest first."""
        with self._lock:
            found = [self.people_comments.get(comment_id) or self.comments.get(comment_id)
                     for comment_id in self._issue_comment_order]
        return [comment for comment in found if comment is not None
                and (comment["repo"], comment["issue_number"]) == (full_name, number)]

    def _pull_payload(self, pull: dict[str, Any]) -> dict[str, Any]:
        repo = self._find_repo(pull["repo"])
        head_repo = self._find_repo(pull["head_repo"])
        api = f"{self.base_url}/repos/{repo.full_name}"
        pull_api = f"{api}/pulls/{pull['number']}"
        issue_api = f"{api}/issues/{pull['number']}"
        head_sha, base_sha = self._pull_shas(pull)
        files = self._pull_files(pull, head_sha, base_sha)
        commits = int(_run_git(self.repo_path(head_repo.full_name), "rev-list", "--count",
                               f"{base_sha}..{head_sha}"))

        def branch(branch_repo: _Repo, ref: str, sha: str) -> dict[str, Any]:
            return {
                "label": f"{branch_repo.owner}:{ref}",
                "ref": ref,
                "sha": sha,
                "user": self._user_payload(self._account(branch_repo.owner)),
                "repo": self._repo_payload(branch_repo),
            }

        return {
            "url": pull_api,
            "id": pull["id"],
            "node_id": f"PR_fake{pull['id']}",
            "number": pull["number"],
            "html_url": pull["html_url"],
            "diff_url": f"{pull['html_url']}.diff",
            "patch_url": f"{pull['html_url']}.patch",
            "issue_url": issue_api,
            "commits_url": f"{pull_api}/commits",
            "review_comments_url": f"{pull_api}/comments",
            "review_comment_url": f"{api}/pulls/comments{{/number}}",
            "comments_url": f"{issue_api}/comments",
            "statuses_url": f"{api}/statuses/{head_sha}",
            "state": pull["state"],
            "locked": False,
            "title": pull["title"],
            "body": pull["body"],
            "user": self._user_payload(self._account(pull["user"])),
            "labels": self._label_payloads(pull),
            "milestone": None,
            "active_lock_reason": None,
            "created_at": pull["created_at"],
            "updated_at": pull["updated_at"],
            "closed_at": pull["closed_at"],
            "merged_at": pull["merged_at"],
            "merge_commit_sha": None,
            "assignee": None,
            "assignees": [],
            "requested_reviewers": [],
            "requested_teams": [],
            "head": branch(head_repo, pull["head"], head_sha),
            "base": branch(repo, pull["base"], base_sha),
            "_links": {
                "self": {"href": pull_api},
                "html": {"href": pull["html_url"]},
                "issue": {"href": issue_api},
                "comments": {"href": f"{issue_api}/comments"},
                "review_comments": {"href": f"{pull_api}/comments"},
                "review_comment": {"href": f"{api}/pulls/comments{{/number}}"},
                "commits": {"href": f"{pull_api}/commits"},
                "statuses": {"href": f"{api}/statuses/{head_sha}"},
            },
            "author_association": self._association(repo.full_name, pull["user"]),
            "auto_merge": None,
            "draft": pull["draft"],
            "merged": pull["merged"],
            "mergeable": None,
            "rebaseable": None,
            "mergeable_state": "unknown",
            "merged_by": self._user_payload(self._account(repo.owner)) if pull["merged"] else None,
            "comments": len(self._issue_comments(repo.full_name, pull["number"])),
            "review_comments": len(self._pull_review_comments(repo.full_name, pull["number"])),
            "maintainer_can_modify": False,
            "commits": commits,
            "additions": sum(each["additions"] for each in files),
            "deletions": sum(each["deletions"] for each in files),
            "changed_files": len(files),
        }

    def _file_payload(self, repo: _Repo, head_sha: str, entry: dict[str, Any]) -> dict[str, Any]:
        path = quote(entry["filename"])
        html_url = f"{self.base_url}/{repo.full_name}"
        return {
            **entry,
            "blob_url": f"{html_url}/blob/{head_sha}/{path}",
            "raw_url": f"{html_url}/raw/{head_sha}/{path}",
            "contents_url":
                f"{self.base_url}/repos/{repo.full_name}/contents/{path}?ref={head_sha}",
        }

    def _commit_payload(self, repo: _Repo, sha: str) -> dict[str, Any]:
        api = f"{self.base_url}/repos/{repo.full_name}"
        html_url = f"{self.base_url}/{repo.full_name}"
        fields = _run_git(self.repo_path(repo.full_name), "show", "-s",
                          "--format=%T%x00%P%x00%an%x00%ae%x00%at%x00%cn%x00%ce%x00%ct%x00%B", sha)
        tree, parents, *people, message = fields.split("\0", 8)

        def person(name: str, email: str, at: str) -> dict[str, str]:
            moment = datetime.fromtimestamp(int(at), timezone.utc)
            return {"name": name, "email": email, "date": _timestamp(moment)}

        return {
            "sha": sha,
            "node_id": f"C_fake{sha}",
            "commit": {
                "author": person(*people[0:3]),
                "committer": person(*people[3:6]),
                "message": message,
                "tree": {"sha": tree, "url": f"{api}/git/trees/{tree}"},
                "url": f"{api}/git/commits/{sha}",
                "comment_count": 0,
                "verification": {"verified": False, "reason": "unsigned", "signature": None,
                                 "payload": None, "verified_at": None},
            },
            "url": f"{api}/commits/{sha}",
            "html_url": f"{html_url}/commit/{sha}",
            "comments_url": f"{api}/commits/{sha}/comments",
            # GitHub links commits to accounts by email; these emails belong to no one.
            "author": None,
            "committer": None,
            "parents": [
                {"sha": parent, "url": f"{api}/commits/{parent}",
                 "html_url": f"{html_url}/commit/{parent}"}
                for parent in parents.split()
            ],
        }

    def _branch_payload(self, repo: _Repo, branch: str, sha: str) -> dict[str, Any]:
        api = f"{self.base_url}/repos/{repo.full_name}"
        with self._lock:
            protected = (repo.full_name, branch) in self._protected_branches
        return {
            "name": branch,
            "commit": self._commit_payload(repo, sha),
            "_links": {"self": f"{api}/branches/{quote(branch)}",
                       "html": f"{self.base_url}/{repo.full_name}/tree/{quote(branch)}"},
            "protected": protected,
            "protection": {
                "enabled": protected,
                "required_status_checks": {
                    "enforcement_level": "non_admins" if protected else "off",
                    "contexts": [],
                    "checks": [],
                },
            },
            "protection_url": f"{api}/branches/{quote(branch)}/protection",
        }

    def _integration_payload(self, slug: str, app_id: int) -> dict[str, Any]:
        owner = (self._app_owner if slug == self.app_slug
                 else _Account(f"{slug}-developers", app_id + 1_000_000, "Organization"))
        return {
            "id": app_id,
            "slug": slug,
            "node_id": f"A_fake{app_id}",
            "client_id": f"Iv1.fake{app_id}",
            "owner": self._user_payload(owner),
            "name": slug,
            "description": "",
            "external_url": f"{self.base_url}/apps/{slug}",
            "html_url": f"{self.base_url}/apps/{slug}",
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": "2024-01-01T00:00:00Z",
            "permissions": {"checks": "write", "metadata": "read"},
            "events": [],
        }

    def _check_run_payload(self, run: dict[str, Any]) -> dict[str, Any]:
        api = f"{self.base_url}/repos/{run['repo']}"
        html_url = f"{self.base_url}/{run['repo']}/runs/{run['id']}"
        return {
            "id": run["id"],
            "head_sha": run["head_sha"],
            "node_id": f"CR_fake{run['id']}",
            "external_id": run["external_id"],
            "url": f"{api}/check-runs/{run['id']}",
            "html_url": html_url,
            "details_url": run["details_url"] or html_url,
            "status": run["status"],
            "conclusion": run["conclusion"],
            "started_at": run["started_at"],
            "completed_at": run["completed_at"],
            "output": {
                "title": run["title"],
                "summary": run["summary"],
                "text": run["text"],
                "annotations_count": len(run["annotations"]),
                "annotations_url": f"{api}/check-runs/{run['id']}/annotations",
            },
            "name": run["name"],
            "check_suite": {"id": run["check_suite_id"]},
            "app": self._integration_payload(run["app_slug"], run["app_id"]),
            "pull_requests": self._check_run_pulls(run["repo"], run["head_sha"]),
        }

    def _check_suite_payload(self, run: dict[str, Any], *, queued: bool) -> dict[str, Any]:
        """The check suite as webhooks give it, its state summed up from its runs."""
        api = f"{self.base_url}/repos/{run['repo']}"
        with self._lock:
            runs = [each for each in self._check_runs
                    if each["check_suite_id"] == run["check_suite_id"]]
        statuses = {each["status"] for each in runs}
        if queued or statuses == {"queued"}:
            status, conclusion = "queued", None
        elif statuses == {"completed"}:
            # The suite takes its runs' most pressing conclusion.
            status = "completed"
            conclusion = min((each["conclusion"] for each in runs), key=SUITE_CONCLUSION_RANK.index)
        else:
            status, conclusion = "in_progress", None
        return {
            "id": run["check_suite_id"],
            "node_id": f"CS_fake{run['check_suite_id']}",
            "head_branch": self._suite_head_branch(run["repo"], run["head_sha"]),
            "head_sha": run["head_sha"],
            "status": status,
            "conclusion": conclusion,
            "url": f"{api}/check-suites/{run['check_suite_id']}",
            "before": None,
            "after": run["head_sha"],
            "pull_requests": self._check_run_pulls(run["repo"], run["head_sha"]),
            "app": self._integration_payload(run["app_slug"], run["app_id"]),
            "created_at": min(each["started_at"] for each in runs),
            "updated_at": _timestamp(_now()),
        }

    def _suite_head_branch(self, full_name: str, sha: str) -> str | None:
        """The branch a suite's commit is the tip of: the repository's own, default first, else
        the head branch of a pull request into it."""
        repo = self._find_repo(full_name)
        branches = _run_git(self.repo_path(full_name), "for-each-ref", f"--points-at={sha}",
                            "--format=%(refname:short)", "refs/heads").split()
        if branches:
            return repo.default_branch if repo.default_branch in branches else sorted(branches)[0]
        with self._lock:
            pulls = [pull for pull in self.pulls if pull["repo"] == full_name]
        return next((pull["head"] for pull in pulls if self._pull_shas(pull)[0] == sha), None)

    def _check_run_pulls(self, full_name: str, sha: str) -> list[dict[str, Any]]:
        """Open pull requests whose head is this commit; GitHub leaves out those from forks."""
        with self._lock:
            candidates = [pull for pull in self.pulls
                          if pull["repo"] == pull["head_repo"] == full_name
                          and pull["state"] == "open"]
        repo = self._find_repo(full_name)
        minimal_repo = {"id": repo.id, "url": f"{self.base_url}/repos/{full_name}",
                        "name": repo.name}
        found = []
        for pull in candidates:
            head_sha, base_sha = self._pull_shas(pull)
            if head_sha == sha:
                found.append({
                    "id": pull["id"],
                    "number": pull["number"],
                    "url": f"{self.base_url}/repos/{full_name}/pulls/{pull['number']}",
                    "head": {"ref": pull["head"], "sha": head_sha, "repo": minimal_repo},
                    "base": {"ref": pull["base"], "sha": base_sha, "repo": minimal_repo},
                })
        return found

    def _get_app(self) -> Response:
        self._authenticate_app()
        with self._lock:
            installations_count = len(self._installations)
        return _json_response(
            200,
            {
                "id": self.app_id,
                "slug": self.app_slug,
                "node_id": f"A_fake{self.app_id}",
                "client_id": f"Iv1.fake{self.app_id}",
                "owner": self._user_payload(self._app_owner),
                "name": self.app_slug,
                "description": "",
                "external_url": self.base_url,
                "html_url": f"{self.base_url}/apps/{self.app_slug}",
                "created_at": "2024-01-01T00:00:00Z",
                "updated_at": "2024-01-01T00:00:00Z",
                "permissions": DEFAULT_INSTALLATION_PERMISSIONS,
                "events": ["issue_comment"],
                "installations_count": installations_count,
            },
        )

    def _create_app_from_manifest(self, org: str | None = None) -> Response:
        """GitHub shows the manifest, the owner clicks "Create GitHub App", and GitHub sends the
        browser to the manifest's redirect_url with a one-time code and the state it was given."""
        try:
            manifest = json.loads(request.form.get("manifest", ""))
        except ValueError:
            return Response("Invalid GitHub App configuration: the manifest is not JSON",
                            status=422, mimetype="text/plain")
        problems = _manifest_problems(manifest)
        if problems:
            return Response("Invalid GitHub App configuration: " + "; ".join(problems),
                            status=422, mimetype="text/plain")
        with self._lock:
            self.manifests_posted.append({"manifest": manifest, "org": org,
                                          "state": request.args.get("state")})
            planned = next((each for each in self._planned_apps if each.manifest is None), None)
            if planned is not None:
                planned.manifest, planned.owner = manifest, org
        if planned is None:
            raise RuntimeError("a manifest was posted but no code was planned: call "
                               "plan_manifest_code first")
        if "redirect_url" not in manifest:
            return Response(f"Created {manifest['name']}", status=200, mimetype="text/plain")
        query = {"code": planned.code}
        if request.args.get("state") is not None:
            query["state"] = request.args["state"]
        separator = "&" if "?" in manifest["redirect_url"] else "?"
        return Response(status=302, headers={
            "Location": f"{manifest['redirect_url']}{separator}{urlencode(query)}"})

    def _convert_manifest_code(self, code: str) -> Response:
        # The code is the credential: the endpoint takes no authentication, and ignores none given.
        if "Authorization" in request.headers:
            self._authenticate_any()
        with self._lock:
            planned = next((each for each in self._planned_apps if each.code == code), None)
            refused = planned is None or planned.converted
            if not refused:
                planned.converted = True
            self.conversions.append({"code": code, "refused": refused})
        if refused:
            raise _Rejection(422, MANIFEST_CODE_REFUSED, errors=[
                {"resource": "Integration", "code": "invalid", "field": "code",
                 "message": "The code is invalid or has expired"}])
        manifest = planned.manifest or {}
        owner = (_Account(planned.owner, 9_000_002, "Organization") if planned.owner
                 else self._app_owner)
        permissions = {"metadata": "read", **manifest.get("default_permissions", {})}
        now = _timestamp(_now())
        return _json_response(201, {
            "id": self.app_id,
            "slug": planned.slug,
            "node_id": f"A_fake{self.app_id}",
            "client_id": f"Iv23.fake{self.app_id}",
            "owner": self._user_payload(owner),
            "name": manifest.get("name", planned.slug),
            "description": manifest.get("description", ""),
            "external_url": manifest.get("url", self.base_url),
            "html_url": f"{self.base_url}/apps/{planned.slug}",
            "created_at": now,
            "updated_at": now,
            "permissions": permissions,
            "events": list(manifest.get("default_events", [])),
            "client_secret": secrets.token_hex(20),
            "webhook_secret": planned.webhook_secret,
            "pem": planned.pem,
        })

    def _create_access_token(self, installation_id: int) -> Response:
        self._authenticate_app()
        body = request.get_json(silent=True) or {}
        with self._lock:
            self.token_requests.append(
                {
                    "installation_id": installation_id,
                    "repositories": body.get("repositories"),
                    "repository_ids": body.get("repository_ids"),
                    "permissions": body.get("permissions"),
                    "body": body,
                }
            )
            installation = self._installations.get(installation_id)
        if installation is None:
            raise _Rejection(404, "Not Found")
        if installation.suspended:
            raise self._deny(403, SUSPENDED, f"installation {installation_id} is suspended")

        covered = self._narrow_repositories(
            installation, body.get("repositories"), body.get("repository_ids")
        )
        permissions = self._narrow_permissions(installation, body.get("permissions"))
        token = f"ghs_{secrets.token_hex(18)}"
        expires_at = _now() + TOKEN_LIFETIME
        with self._lock:
            self.minted_tokens[token] = {
                "installation_id": installation_id,
                "repositories": covered,
                "permissions": permissions,
                "expires_at": expires_at,
            }
        visible = covered if covered is not None else installation.repos
        return _json_response(
            201,
            {
                "token": token,
                "expires_at": _timestamp(expires_at),
                "permissions": permissions,
                "repository_selection": "selected",
                "repositories": [self._repo_payload(repo) for repo in self._known_repos(visible)],
            },
        )

    def _narrow_repositories(
        self, installation: _Installation, names: list[str] | None, ids: list[int] | None
    ) -> list[str] | None:
        """Full names the token is limited to, or None for the whole installation."""
        if names is None and ids is None:
            return None
        not_in_installation = _Rejection(
            422,
            "There is at least one repository that does not exist or is not accessible "
            "to the parent installation.",
        )
        covered: list[str] = []
        # GitHub takes bare repository names here, not owner/name.
        for name in names or []:
            matches = [full for full in installation.repos if full.split("/", 1)[1] == name]
            if not matches:
                raise not_in_installation
            covered.extend(matches)
        with self._lock:
            by_id = {repo.id: repo.full_name for repo in self._repos.values()}
        for repo_id in ids or []:
            full_name = by_id.get(repo_id)
            if full_name is None or full_name not in installation.repos:
                raise not_in_installation
            covered.append(full_name)
        return list(dict.fromkeys(covered))

    def _narrow_permissions(
        self, installation: _Installation, requested: dict[str, str] | None
    ) -> dict[str, str]:
        if requested is None:
            return dict(installation.permissions)
        for scope, level in requested.items():
            granted = installation.permissions.get(scope)
            if (
                level not in PERMISSION_RANK
                or granted is None
                or PERMISSION_RANK[level] > PERMISSION_RANK[granted]
            ):
                raise _Rejection(
                    422, "The permissions requested are not granted to this installation."
                )
        # GitHub always adds metadata:read, whatever was asked for.
        return {"metadata": "read", **requested}

    def _get_repo_installation(self, owner: str, repo: str) -> Response:
        self._authenticate_app()
        found = self._find_repo(f"{owner}/{repo}")
        with self._lock:
            installation = next(
                (each for each in self._installations.values() if found.full_name in each.repos),
                None,
            )
        if installation is None:
            raise _Rejection(404, "Not Found")
        return _json_response(200, self._installation_payload(installation, self._account(owner)))

    def _get_repo(self, owner: str, repo: str) -> Response:
        full_name = f"{owner}/{repo}"
        token = self._authenticate_installation(full_name, "metadata", "read")
        return _json_response(200, self._repo_payload(self._find_repo(full_name), token))

    def _get_permission(self, owner: str, repo: str, login: str) -> Response:
        full_name = f"{owner}/{repo}"
        self._authenticate_installation(full_name, "metadata", "read")
        found = self._find_repo(full_name)
        account = self._account(login)
        with self._lock:
            role = found.roles.get(login)
            custom_role = self._custom_roles.get((full_name, login))
        if role is None:
            # Owners administer their repos, and anyone can read a public one.
            role = "admin" if login == found.owner else ("none" if found.private else "read")
        rank = ROLE_RANK[role]
        user = {
            **self._user_payload(account),
            "permissions": {
                "pull": rank >= ROLE_RANK["read"],
                "triage": rank >= ROLE_RANK["triage"],
                "push": rank >= ROLE_RANK["write"],
                "maintain": rank >= ROLE_RANK["maintain"],
                "admin": rank >= ROLE_RANK["admin"],
            },
            "role_name": custom_role or role,
        }
        return _json_response(
            200,
            {"permission": CLASSIC_PERMISSION[role], "role_name": custom_role or role, "user": user},
        )

    def _refuse_if_archived(self, repo: _Repo) -> None:
        if repo.archived:
            raise _Rejection(403, ARCHIVED)

    def _comment_body_from_request(self, resource: str = "IssueComment") -> str:
        body = (request.get_json(silent=True) or {}).get("body")
        if not isinstance(body, str):
            raise _Rejection(422, 'Invalid request.\n\n"body" wasn\'t supplied.')
        if len(body) > MAX_COMMENT_LENGTH:
            raise _Rejection(
                422,
                "Validation Failed",
                errors=[
                    {
                        "resource": resource,
                        "code": "custom",
                        "field": "body",
                        "message": f"body is too long (maximum is {MAX_COMMENT_LENGTH} characters)",
                    }
                ],
            )
        return body

    def _allocate_comment_id(self) -> int:
        """The next id for a comment the App makes; the caller holds the lock.

        Issue comments and review comments share it, so their ids never collide, and it skips
        any id a test gave a person's comment."""
        while (self._next_comment_id in self.comments
               or self._next_comment_id in self.people_comments
               or self._next_comment_id in self.review_comments):
            self._next_comment_id += 1
        comment_id = self._next_comment_id
        self._next_comment_id += 1
        return comment_id

    def _create_comment(self, owner: str, repo: str, number: int) -> Response:
        full_name = f"{owner}/{repo}"
        record = self._issue_record(full_name, number)
        self._authenticate_installation(full_name, "issues", "write",
                                        alternatives=self._pull_alternative(record, "write"))
        self._refuse_if_archived(self._find_repo(full_name))
        if record is None:
            raise _Rejection(404, "Not Found")
        body = self._comment_body_from_request()
        created_at = _timestamp(_now())
        with self._lock:
            comment_id = self._allocate_comment_id()
            comment = {
                "id": comment_id,
                "repo": full_name,
                "issue_number": number,
                "body": body,
                "user": self.bot_login,
                "history": [body],
                "created_at": created_at,
                "updated_at": created_at,
            }
            self.comments[comment_id] = comment
            self._issue_comment_order.append(comment_id)
        return _json_response(201, self._comment_payload(comment))

    def _list_comments(self, owner: str, repo: str, number: int) -> Response:
        full_name = f"{owner}/{repo}"
        record = self._issue_record(full_name, number)
        self._authenticate_installation(full_name, "issues", "read",
                                        alternatives=self._pull_alternative(record, "read"))
        if record is None:
            raise _Rejection(404, "Not Found")
        page, headers = self._paginate(self._issue_comments(full_name, number))
        return _json_response(200, [self._comment_payload(each) for each in page], headers)

    def _comment_alternative(self, comment: dict[str, Any] | None, level: str) -> tuple[tuple[str, str], ...]:
        if comment is None:
            return ()
        return self._pull_alternative(
            self._issue_record(comment["repo"], comment["issue_number"]), level)

    def _get_comment(self, owner: str, repo: str, comment_id: int) -> Response:
        full_name = f"{owner}/{repo}"
        with self._lock:
            comment = self.comments.get(comment_id) or self.people_comments.get(comment_id)
        self._authenticate_installation(full_name, "issues", "read",
                                        alternatives=self._comment_alternative(comment, "read"))
        if comment is None or comment["repo"] != full_name:
            raise _Rejection(404, "Not Found")
        return _json_response(200, self._comment_payload(comment))

    def _update_comment(self, owner: str, repo: str, comment_id: int) -> Response:
        full_name = f"{owner}/{repo}"
        with self._lock:
            comment = self.comments.get(comment_id)
        self._authenticate_installation(full_name, "issues", "write",
                                        alternatives=self._comment_alternative(comment, "write"))
        self._refuse_if_archived(self._find_repo(full_name))
        if comment is None or comment["repo"] != full_name:
            raise _Rejection(404, "Not Found")
        body = self._comment_body_from_request()
        with self._lock:
            comment["body"] = body
            comment["history"].append(body)
            comment["updated_at"] = _timestamp(_now())
        return _json_response(200, self._comment_payload(comment))

    def _get_issue(self, owner: str, repo: str, number: int) -> Response:
        full_name = f"{owner}/{repo}"
        # Unlike the comment and label endpoints, GitHub takes only the issues permission here,
        # even for a pull request's number.
        self._authenticate_installation(full_name, "issues", "read")
        record = self._issue_record(full_name, number)
        if record is None:
            raise _Rejection(404, "Not Found")
        return _json_response(200, self._issue_payload(record))

    def _remove_label(self, owner: str, repo: str, number: int, name: str) -> Response:
        full_name = f"{owner}/{repo}"
        record = self._issue_record(full_name, number)
        self._authenticate_installation(full_name, "issues", "write",
                                        alternatives=self._pull_alternative(record, "write"))
        self._refuse_if_archived(self._find_repo(full_name))
        if record is None:
            raise _Rejection(404, "Not Found")
        with self._lock:
            present = name in record["labels"]
            if present:
                record["labels"].remove(name)
                record["updated_at"] = _timestamp(_now())
        if not present:
            raise _Rejection(404, LABEL_NOT_FOUND)
        return _json_response(200, self._label_payloads(record))

    def _create_reaction(self, owner: str, repo: str, comment_id: int) -> Response:
        full_name = f"{owner}/{repo}"
        self._authenticate_installation(full_name, "issues", "write")
        self._refuse_if_archived(self._find_repo(full_name))
        with self._lock:
            target = self.people_comments.get(comment_id) or self.comments.get(comment_id)
        if target is None or target["repo"] != full_name:
            raise _Rejection(404, "Not Found")
        return self._react(full_name, comment_id)

    def _create_review_comment_reaction(self, owner: str, repo: str, comment_id: int) -> Response:
        full_name = f"{owner}/{repo}"
        self._authenticate_installation(full_name, "pull_requests", "write")
        self._refuse_if_archived(self._find_repo(full_name))
        with self._lock:
            target = self.review_comments.get(comment_id)
        if target is None or target["repo"] != full_name:
            raise _Rejection(404, "Not Found")
        return self._react(full_name, comment_id)

    def _react(self, full_name: str, comment_id: int) -> Response:
        """The App reacts to a comment; issue and review comment ids never collide here."""
        content = (request.get_json(silent=True) or {}).get("content")
        if content not in REACTION_CONTENTS:
            raise _Rejection(
                422,
                "Validation Failed",
                errors=[{"resource": "Reaction", "field": "content", "code": "invalid"}],
            )
        with self._lock:
            existing = next(
                (
                    each
                    for each in self.reactions
                    if (each["repo"], each["comment_id"], each["content"], each["user"])
                    == (full_name, comment_id, content, self.bot_login)
                ),
                None,
            )
            # Reacting twice with the same content is not an error on GitHub: it answers 200.
            status = 200 if existing else 201
            if existing is None:
                existing = {
                    "id": self._next_reaction_id,
                    "repo": full_name,
                    "comment_id": comment_id,
                    "content": content,
                    "user": self.bot_login,
                    "created_at": _timestamp(_now()),
                }
                self._next_reaction_id += 1
                self.reactions.append(existing)
        return _json_response(
            status,
            {
                "id": existing["id"],
                "node_id": f"REA_fake{existing['id']}",
                "user": self._bot_payload(),
                "content": content,
                "created_at": existing["created_at"],
            },
        )

    def _create_pull(self, owner: str, repo: str) -> Response:
        full_name = f"{owner}/{repo}"
        self._authenticate_installation(full_name, "pull_requests", "write")
        found = self._find_repo(full_name)
        self._refuse_if_archived(found)
        data = request.get_json(silent=True) or {}
        title, head, base = data.get("title"), data.get("head"), data.get("base")
        if not all(isinstance(value, str) and value for value in (title, head, base)):
            raise _Rejection(422, "Invalid request.\n\ntitle, head and base are required.")
        for field_name, value, limit in (("title", title, MAX_PULL_TITLE_LENGTH),
                                         ("body", data.get("body") or "", MAX_COMMENT_LENGTH)):
            if len(value) > limit:
                raise _Rejection(422, "Validation Failed", errors=[{
                    "resource": "PullRequest", "code": "custom", "field": field_name,
                    "message": f"{field_name} is too long (maximum is {limit} characters)"}])
        head_owner, separator, head_branch = head.partition(":")
        if not separator:
            head_owner, head_branch = owner, head
        if head_owner != owner:
            raise _invalid_field("PullRequest", "head")
        head_sha = self._branch_sha(found, head_branch)
        if head_sha is None:
            raise _invalid_field("PullRequest", "head")
        base_sha = self._branch_sha(found, base)
        if base_sha is None:
            raise _invalid_field("PullRequest", "base")
        git_dir = self.repo_path(full_name)
        commits = int(_run_git(git_dir, "rev-list", "--count", f"{base_sha}..{head_sha}"))
        if head_branch == base or commits == 0:
            raise _Rejection(
                422,
                "Validation Failed",
                errors=[
                    {
                        "resource": "PullRequest",
                        "code": "custom",
                        "message": f"No commits between {base} and {head_branch}",
                    }
                ],
            )
        with self._lock:
            # Only an open pull request blocks another from the same branch.
            if any(
                pull["repo"] == full_name and pull["head_repo"] == full_name
                and pull["head"] == head_branch and pull["base"] == base and pull["state"] == "open"
                for pull in self.pulls
            ):
                raise _Rejection(
                    422,
                    "Validation Failed",
                    errors=[
                        {
                            "resource": "PullRequest",
                            "code": "custom",
                            "message": f"A pull request already exists for {owner}:{head_branch}.",
                        }
                    ],
                )
            pull = self._register_pull(
                full_name, self._allocate_number(full_name), title=title, body=data.get("body"),
                user=self.bot_login, head_repo=full_name, head=head_branch, base=base,
                head_sha=head_sha, base_sha=base_sha, draft=bool(data.get("draft", False)))
        return _json_response(201, self._pull_payload(pull))

    def _stored_pull(self, full_name: str, number: int) -> dict[str, Any]:
        record = self._issue_record(full_name, number)
        if record is None or not _is_pull(record):
            raise _Rejection(404, "Not Found")
        return record

    def _list_pulls(self, owner: str, repo: str) -> Response:
        """GET /pulls: `state` (open, closed, all; open by default) and `head` (owner:branch)."""
        full_name = f"{owner}/{repo}"
        self._authenticate_installation(full_name, "pull_requests", "read",
                                        alternatives=(("contents", "read"),))
        state = request.args.get("state", "open")
        head_owner, _, head_branch = request.args.get("head", "").partition(":")
        with self._lock:
            found = [pull for pull in self.pulls if pull["repo"] == full_name
                     and (state == "all" or pull["state"] == state)
                     and (not head_owner or (pull["head_repo"].split("/")[0] == head_owner
                                             and (not head_branch or pull["head"] == head_branch)))]
        page, headers = self._paginate(found)
        return _json_response(200, [self._pull_payload(pull) for pull in page], headers)

    def _update_pull(self, owner: str, repo: str, number: int) -> Response:
        """PATCH /pulls/N: its title, body and state (closing it, or reopening it)."""
        full_name = f"{owner}/{repo}"
        self._authenticate_installation(full_name, "pull_requests", "write")
        data = request.get_json(silent=True) or {}
        pull = self._stored_pull(full_name, number)
        state = data.get("state", pull["state"])
        if state not in ("open", "closed"):
            raise _invalid_field("PullRequest", "state")
        if state == "open" and pull["state"] == "closed" and (
                pull["merged"] or self.branch_sha(pull["head_repo"], pull["head"]) is None):
            raise _Rejection(422, "Validation Failed", errors=[{
                "resource": "PullRequest", "code": "custom", "field": "state",
                "message": "state cannot be changed. The pull request cannot be reopened."}])
        self._pull_shas(pull)  # closing freezes head and base where the branches are now
        now = _timestamp(_now())
        with self._lock:
            for field_name in ("title", "body"):
                if field_name in data:
                    pull[field_name] = data[field_name]
            if state != pull["state"]:
                pull.update(state=state, closed_at=now if state == "closed" else None)
            pull["updated_at"] = now
        return _json_response(200, self._pull_payload(pull))

    def _get_pull(self, owner: str, repo: str, number: int) -> Response:
        full_name = f"{owner}/{repo}"
        self._authenticate_installation(full_name, "pull_requests", "read",
                                        alternatives=(("contents", "read"),))
        return _json_response(200, self._pull_payload(self._stored_pull(full_name, number)))

    def _list_pull_files(self, owner: str, repo: str, number: int) -> Response:
        full_name = f"{owner}/{repo}"
        self._authenticate_installation(full_name, "pull_requests", "read")
        pull = self._stored_pull(full_name, number)
        head_sha, base_sha = self._pull_shas(pull)
        page, headers = self._paginate(self._pull_files(pull, head_sha, base_sha))
        found = self._find_repo(full_name)
        return _json_response(
            200, [self._file_payload(found, head_sha, each) for each in page], headers)

    def _list_review_comments(self, owner: str, repo: str, number: int) -> Response:
        full_name = f"{owner}/{repo}"
        self._authenticate_installation(full_name, "pull_requests", "read")
        pull = self._stored_pull(full_name, number)
        head_sha, _base_sha = self._pull_shas(pull)
        comments = self._pull_review_comments(full_name, number)
        outdated = self._outdated_threads(pull, comments, head_sha)
        page, headers = self._paginate(comments)
        payloads = [self._review_comment_payload(each, head_sha,
                                                 outdated[each["in_reply_to"] or each["id"]])
                    for each in page]
        return _json_response(200, payloads, headers)

    def _reply_to_review_comment(self, owner: str, repo: str, number: int,
                                 comment_id: int) -> Response:
        full_name = f"{owner}/{repo}"
        self._authenticate_installation(full_name, "pull_requests", "write")
        self._refuse_if_archived(self._find_repo(full_name))
        pull = self._stored_pull(full_name, number)
        with self._lock:
            # A reply to a reply joins the thread under its top comment.
            root = self._thread_root(full_name, number, comment_id)
        if root is None:
            raise _Rejection(404, "Not Found")
        body = self._comment_body_from_request("PullRequestReviewComment")
        place = {key: root[key] for key in ("path", "line", "start_line", "side", "diff_hunk",
                                            "position", "commit_id")}
        with self._lock:
            reply_id = self._allocate_comment_id()
        reply = self._store_review_comment(full_name, number, reply_id, self.bot_login, body,
                                           place, root["id"])
        head_sha, _base_sha = self._pull_shas(pull)
        outdated = self._outdated_threads(pull, [root], head_sha)[root["id"]]
        return _json_response(201, self._review_comment_payload(reply, head_sha, outdated))

    def _update_review_comment(self, owner: str, repo: str, comment_id: int) -> Response:
        full_name = f"{owner}/{repo}"
        self._authenticate_installation(full_name, "pull_requests", "write")
        self._refuse_if_archived(self._find_repo(full_name))
        with self._lock:
            comment = self.review_comments.get(comment_id)
        if comment is None or comment["repo"] != full_name:
            raise _Rejection(404, "Not Found")
        if comment["user"] != self.bot_login:
            raise self._deny(403, NOT_ACCESSIBLE, f"review comment {comment_id} is not the App's")
        body = self._comment_body_from_request("PullRequestReviewComment")
        with self._lock:
            comment["body"] = body
            comment["history"].append(body)
            comment["updated_at"] = _timestamp(_now())
        pull = self._stored_pull(full_name, comment["pull_number"])
        head_sha, _base_sha = self._pull_shas(pull)
        top = comment["in_reply_to"] or comment["id"]
        with self._lock:
            top_comment = self.review_comments[top]
        outdated = self._outdated_threads(pull, [top_comment], head_sha)[top]
        return _json_response(200, self._review_comment_payload(comment, head_sha, outdated))

    def _get_branch(self, owner: str, repo: str, branch: str) -> Response:
        full_name = f"{owner}/{repo}"
        self._authenticate_installation(full_name, "contents", "read")
        found = self._find_repo(full_name)
        sha = self._branch_sha(found, branch)
        if sha is None:
            raise _Rejection(404, "Branch not found")
        return _json_response(200, self._branch_payload(found, branch, sha))

    def _delete_ref(self, owner: str, repo: str, ref: str) -> Response:
        """DELETE /git/refs/heads/<branch> (or tags/<tag>): the ref goes, its commits stay."""
        full_name = f"{owner}/{repo}"
        self._authenticate_installation(full_name, "contents", "write")
        found = self._find_repo(full_name)
        self._refuse_if_archived(found)
        git_dir = self.repo_path(full_name)
        # --verify takes only the exact ref, never a branch of the same name elsewhere.
        shown = subprocess.run(["git", "show-ref", "--verify", "--hash", f"refs/{ref}"],
                               capture_output=True, env=_git_environment(GIT_DIR=str(git_dir)),
                               timeout=60, check=False)
        if shown.returncode != 0:
            raise _Rejection(422, REFERENCE_NOT_FOUND)
        branch = ref.removeprefix("heads/") if ref.startswith("heads/") else None
        with self._lock:
            protected = (full_name, branch) in self._protected_branches
        if protected:
            raise _Rejection(422, PROTECTED_BRANCH)
        _run_git(git_dir, "update-ref", "-d", f"refs/{ref}", shown.stdout.decode().strip())
        return Response(status=204)

    def _get_contents(self, owner: str, repo: str, path: str = "") -> Response:
        """A file as GitHub sends it (base64 in `content`), or a directory's entries, at `ref`
        (a branch, tag or commit; the default branch when absent)."""
        full_name = f"{owner}/{repo}"
        self._authenticate_installation(full_name, "contents", "read")
        found = self._find_repo(full_name)
        if not self._has_commits(found):
            raise _Rejection(404, "This repository is empty.")
        ref = request.args.get("ref") or found.default_branch
        sha = self._branch_sha(found, ref) or self._commit_sha(found, f"refs/tags/{ref}")
        if sha is None and re.fullmatch(r"[0-9a-fA-F]{7,40}", ref):
            sha = self._commit_sha(found, ref)
        if sha is None:
            raise _Rejection(404, f"No commit found for the ref {ref}")
        path = path.strip("/")
        if path and any(part in ("", ".", "..") for part in path.split("/")):
            raise _Rejection(404, "Not Found")
        if not path:
            return _json_response(200, self._directory_entries(found, sha, ref, ""))
        entries = self._tree_entries(found, sha, path)
        if not entries:
            raise _Rejection(404, "Not Found")
        entry = entries[0]
        if entry["type"] == "dir":
            return _json_response(200, self._directory_entries(found, sha, ref, path))
        return _json_response(200, self._content_payload(found, ref, entry, with_content=True))

    def _tree_entries(self, repo: _Repo, sha: str, pathspec: str | None) -> list[dict[str, Any]]:
        """`git ls-tree` of one path, of a directory's contents (a trailing "/"), or of the root
        (None)."""
        listing = _run_git(self.repo_path(repo.full_name), "ls-tree", "-z", "--long", sha, "--",
                           *([pathspec] if pathspec else []), GIT_LITERAL_PATHSPECS="1")
        entries = []
        for line in filter(None, listing.split("\0")):
            meta, _, entry_path = line.partition("\t")
            mode, kind, object_id, size = meta.split()
            entries.append({
                "path": entry_path, "sha": object_id, "size": 0 if size == "-" else int(size),
                "type": {"tree": "dir", "commit": "submodule"}.get(kind, "symlink" if mode == "120000"
                                                                    else "file"),
            })
        return entries

    def _directory_entries(self, repo: _Repo, sha: str, ref: str, path: str) -> list[dict[str, Any]]:
        entries = self._tree_entries(repo, sha, f"{path}/" if path else None)
        return [self._content_payload(repo, ref, entry, with_content=False) for entry in entries]

    def _content_payload(self, repo: _Repo, ref: str, entry: dict[str, Any], *,
                         with_content: bool) -> dict[str, Any]:
        api = f"{self.base_url}/repos/{repo.full_name}"
        html = f"{self.base_url}/{repo.full_name}"
        path, kind = entry["path"], entry["type"]
        quoted_path, quoted_ref = quote(path), quote(ref, safe="")
        url = f"{api}/contents/{quoted_path}?ref={quoted_ref}"
        git_url = f"{api}/git/{'trees' if kind == 'dir' else 'blobs'}/{entry['sha']}"
        html_url = f"{html}/{'tree' if kind == 'dir' else 'blob'}/{quoted_ref}/{quoted_path}"
        payload: dict[str, Any] = {
            # A directory listing calls a submodule a file, for compatibility (GitHub's docs).
            "type": "file" if kind == "submodule" and not with_content else kind,
            "size": entry["size"],
            "name": path.rsplit("/", 1)[-1],
            "path": path,
            "sha": entry["sha"],
            "url": url,
            "git_url": None if kind == "submodule" else git_url,
            "html_url": None if kind == "submodule" else html_url,
            "download_url": f"{html}/raw/{quoted_ref}/{quoted_path}" if kind == "file" else None,
            "_links": {"self": url, "git": None if kind == "submodule" else git_url,
                       "html": None if kind == "submodule" else html_url},
        }
        if with_content and kind == "submodule":
            payload["submodule_git_url"] = f"{self.base_url}/git/unknown/submodule.git"
        if with_content and kind == "file":
            if entry["size"] > MAX_INLINE_CONTENT_BYTES:
                # Over 1 MB GitHub leaves the content out and says so with encoding "none".
                payload.update(content="", encoding="none")
            else:
                data = _run_git_bytes(self.repo_path(repo.full_name), "cat-file", "blob", entry["sha"])
                encoded = base64.b64encode(data).decode()
                # GitHub wraps the base64 at 60 characters, as Ruby's Base64.encode64 does.
                lines = [encoded[at:at + 60] + "\n" for at in range(0, len(encoded), 60)]
                payload.update(content="".join(lines), encoding="base64")
        return payload

    def _list_check_runs(self, owner: str, repo: str, ref: str) -> Response:
        full_name = f"{owner}/{repo}"
        self._authenticate_installation(full_name, "checks", "read")
        found = self._find_repo(full_name)
        # A branch, a tag or a commit's sha, in that order.
        sha = self._branch_sha(found, ref) or self._commit_sha(found, f"refs/tags/{ref}")
        if sha is None and re.fullmatch(r"[0-9a-fA-F]{7,40}", ref):
            sha = self._commit_sha(found, ref)
        if sha is None and self._checkable_commit(found, ref):
            sha = ref
        if sha is None:
            raise _Rejection(422, f"No commit found for SHA: {ref}")
        with self._lock:
            runs = [run for run in self._check_runs
                    if run["repo"] == full_name and run["head_sha"] == sha]
        if "check_name" in request.args:
            runs = [run for run in runs if run["name"] == request.args["check_name"]]
        if "status" in request.args:
            runs = [run for run in runs if run["status"] == request.args["status"]]
        if "app_id" in request.args:
            runs = [run for run in runs if str(run["app_id"]) == request.args["app_id"]]
        if request.args.get("filter", "latest") == "latest":
            newest: dict[tuple[str, int], dict[str, Any]] = {}
            for run in runs:
                newest[(run["name"], run["app_id"])] = run  # later runs replace earlier ones
            runs = list(newest.values())
        runs.sort(key=lambda run: run["id"], reverse=True)
        page, headers = self._paginate(runs)
        return _json_response(
            200,
            {"total_count": len(runs),
             "check_runs": [self._check_run_payload(run) for run in page]},
            headers,
        )

    def _checkable_commit(self, repo: _Repo, sha: str) -> bool:
        """Whether `sha` (in full) is a commit of the repository, or of the head repository of a
        pull request into it, which GitHub keeps reachable as refs/pull/N/head."""
        if not re.fullmatch(r"[0-9a-f]{40}", sha):
            return False
        if self._commit_sha(repo, sha) == sha:
            return True
        with self._lock:
            heads = {pull["head_repo"] for pull in self.pulls
                     if pull["repo"] == repo.full_name and pull["head_repo"] != repo.full_name}
        return any(self._commit_sha(each, sha) == sha for each in self._known_repos(sorted(heads)))

    def _check_run_body(self, *, creating: bool) -> dict[str, Any]:
        """The request's check run fields, refused as GitHub refuses them."""
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise _Rejection(400, "Problems parsing JSON")
        problems = _check_run_body_problems(body, creating=creating)
        if not problems and "completed_at" in body and "conclusion" not in body:
            # The docs require a conclusion with completed_at, which the schema does not say.
            problems = ['"conclusion" wasn\'t supplied.']
        if problems:
            raise _Rejection(422, "Invalid request.\n\n" + "\n".join(problems))
        return body

    def _stored_check_run(self, full_name: str, run_id: int) -> dict[str, Any]:
        """A copy of the run, which must be on this repository."""
        with self._lock:
            run = self._check_run_record(run_id)
            if run is None or run["repo"] != full_name:
                raise _Rejection(404, "Not Found")
            return copy.deepcopy(run)

    def _create_check_run(self, owner: str, repo: str) -> Response:
        full_name = f"{owner}/{repo}"
        self._authenticate_installation(full_name, "checks", "write")
        found = self._find_repo(full_name)
        self._refuse_if_archived(found)
        body = self._check_run_body(creating=True)
        if not self._checkable_commit(found, body["head_sha"]):
            raise _Rejection(422, f"No commit found for SHA: {body['head_sha']}")
        errors = _check_output_size_errors(body.get("output") or {})
        if errors:
            raise _Rejection(422, "Validation Failed", errors=errors)
        now = _timestamp(_now())
        run = {
            "repo": full_name, "head_sha": body["head_sha"], "name": body["name"],
            "status": "queued", "conclusion": None, "title": None, "summary": None,
            "text": None, "external_id": "", "actions": [], "annotations": [], "images": [],
            # Without one, GitHub links the run to the App's homepage.
            "details_url": self._integration_payload(self.app_slug, self.app_id)["external_url"],
            "started_at": now, "completed_at": None,
        }
        _apply_check_run_body(run, body, now)
        run_id = self._store_check_run(run, self.app_slug)
        return _json_response(201, self._check_run_payload(self._stored_check_run(full_name,
                                                                                  run_id)))

    def _get_check_run(self, owner: str, repo: str, run_id: int) -> Response:
        full_name = f"{owner}/{repo}"
        self._authenticate_installation(full_name, "checks", "read")
        return _json_response(200, self._check_run_payload(self._stored_check_run(full_name,
                                                                                  run_id)))

    def _update_check_run(self, owner: str, repo: str, run_id: int) -> Response:
        full_name = f"{owner}/{repo}"
        self._authenticate_installation(full_name, "checks", "write")
        self._refuse_if_archived(self._find_repo(full_name))
        run = self._stored_check_run(full_name, run_id)
        if run["app_id"] != self.app_id:
            raise self._deny(403, NOT_ACCESSIBLE,
                             f"check run {run_id} belongs to app {run['app_slug']}")
        body = self._check_run_body(creating=False)
        errors = _check_output_size_errors(body.get("output") or {})
        if errors:
            raise _Rejection(422, "Validation Failed", errors=errors)
        with self._lock:
            stored = self._check_run_record(run_id)
            assert stored is not None
            _apply_check_run_body(stored, body, _timestamp(_now()))
            stored["history"].append(_check_run_state(stored))
            updated = copy.deepcopy(stored)
        return _json_response(200, self._check_run_payload(updated))

    def _graphql(self) -> Response:
        """GitHub's GraphQL API, as far as the app uses it: a pull request's review threads, and
        marking a draft pull request ready for review."""
        credentials = _read_credentials(request.headers.get("Authorization"))
        if credentials.kind is None:
            self._record_auth_failure("graphql needs credentials")
            raise _Rejection(401, GRAPHQL_AUTHENTICATION)
        if credentials.kind not in ("token", "basic"):
            raise self._deny(401, "Bad credentials",
                             f"installation token required, got {credentials.kind}")
        token = self._live_token(credentials.secret)
        if token is None:
            raise self._deny(401, "Bad credentials", "token unknown or expired")
        data = request.get_json(silent=True)
        if not isinstance(data, dict) or not isinstance(data.get("query"), str):
            raise _Rejection(400, "Problems parsing JSON")
        variables = data.get("variables") or {}
        if not isinstance(variables, dict):
            raise _Rejection(400, "Problems parsing JSON")
        answer_query = (self._ready_for_review_mutation
                        if re.search(rf"\b{READY_FOR_REVIEW}\b", data["query"])
                        else self._review_threads_query)
        try:
            answer = answer_query(token, data["query"], variables)
        except _GraphQLError as error:
            payload: dict[str, Any] = {"errors": [error.error]}
            if error.data is not None:
                payload = {"data": error.data, **payload}
            return _json_response(200, payload)
        return _json_response(200, {"data": answer})

    def _review_threads_query(self, token: dict[str, Any], query: str,
                              variables: dict[str, Any]) -> dict[str, Any]:
        if not all(re.search(pattern, query) for pattern in
                   (r"\brepository\s*\(", r"\bpullRequest\s*\(", r"\breviewThreads\b")):
            raise _GraphQLError("This fake GitHub answers only a query for a pull request's "
                                "reviewThreads, with variables owner, name and number, and the "
                                f"{READY_FOR_REVIEW} mutation.")
        for name, kind, type_name in (("owner", str, "String!"), ("name", str, "String!"),
                                      ("number", int, "Int!")):
            value = variables.get(name)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise _GraphQLError(
                    f"Variable ${name} of type {type_name} was provided invalid value")
        thread_count = _connection_size(query, variables, "reviewThreads")
        comment_count = _connection_size(query, variables, "comments")
        start = _connection_start(query, variables, "reviewThreads")
        full_name = f"{variables['owner']}/{variables['name']}"
        with self._lock:
            repo = self._repos.get(full_name)
            installation = self._installations[token["installation_id"]]
            covered = (token["repositories"] if token["repositories"] is not None
                       else installation.repos)
        if repo is None or full_name not in covered:
            self._record_auth_failure(f"graphql: token does not cover {full_name}")
            raise _GraphQLError(f"Could not resolve to a Repository with the name '{full_name}'.",
                                type="NOT_FOUND", path=["repository"], data={"repository": None})
        try:
            self._check_token_scope(token, repo, "pull_requests", "read")
        except _Rejection as refusal:
            raise _GraphQLError(refusal.payload["message"], type="FORBIDDEN",
                                path=["repository", "pullRequest"],
                                data={"repository": {"pullRequest": None}}) from None
        pull = self._issue_record(full_name, variables["number"])
        if pull is None or not _is_pull(pull):
            raise _GraphQLError(
                f"Could not resolve to a PullRequest with the number of {variables['number']}.",
                type="NOT_FOUND", path=["repository", "pullRequest"],
                data={"repository": {"pullRequest": None}})
        threads = self._review_threads(pull, comment_count)
        page = threads[start:start + thread_count]
        end = start + len(page)
        return {"repository": {"pullRequest": {"reviewThreads": {
            "nodes": page,
            "pageInfo": {"hasNextPage": end < len(threads),
                         "endCursor": _cursor(end - 1) if page else None},
        }}}}

    def _ready_for_review_mutation(self, token: dict[str, Any], query: str,
                                   variables: dict[str, Any]) -> dict[str, Any]:
        """markPullRequestReadyForReview(input: {pullRequestId: ...}): the draft is a draft no
        more. Whatever the selection, it answers `pullRequest { isDraft }`."""
        if not re.match(r"\s*mutation\b", query):
            raise _GraphQLError(f"Field '{READY_FOR_REVIEW}' doesn't exist on type 'Query'")
        argument = re.search(r'\bpullRequestId\s*:\s*(\$\w+|"[^"]*")', query)
        if argument is None:
            raise _GraphQLError("Argument 'pullRequestId' on InputObject 'MarkPullRequestReady"
                                "ForReviewInput' is required. Expected type ID!")
        given = argument[1]
        node_id = variables.get(given[1:]) if given.startswith("$") else given.strip('"')
        if not isinstance(node_id, str):
            raise _GraphQLError(f"Variable {given} of type ID! was provided invalid value")

        def failure(message: str, type: str) -> _GraphQLError:
            return _GraphQLError(message, type=type, path=[READY_FOR_REVIEW],
                                 data={READY_FOR_REVIEW: None})

        with self._lock:
            pull = next((each for each in self.pulls if f"PR_fake{each['id']}" == node_id), None)
            installation = self._installations[token["installation_id"]]
            covered = (token["repositories"] if token["repositories"] is not None
                       else installation.repos)
        # A node the token cannot see is one that does not exist.
        if pull is None or pull["repo"] not in covered:
            if pull is not None:
                self._record_auth_failure(f"graphql: token does not cover {pull['repo']}")
            raise failure(f"Could not resolve to a node with the global id of '{node_id}'.",
                          "NOT_FOUND")
        repo = self._find_repo(pull["repo"])
        try:
            self._check_token_scope(token, repo, "pull_requests", "write")
            self._refuse_if_archived(repo)
        except _Rejection as refusal:
            raise failure(refusal.payload["message"], "FORBIDDEN") from None
        if pull["state"] != "open":
            raise failure("Pull request is closed and cannot be marked ready for review.",
                          "UNPROCESSABLE")
        with self._lock:
            if pull["draft"]:
                pull.update(draft=False, updated_at=_timestamp(_now()))
        return {READY_FOR_REVIEW: {"pullRequest": {"isDraft": False}}}

    def _review_threads(self, pull: dict[str, Any], comment_count: int) -> list[dict[str, Any]]:
        head_sha, _base_sha = self._pull_shas(pull)
        comments = self._pull_review_comments(pull["repo"], pull["number"])
        outdated = self._outdated_threads(pull, comments, head_sha)
        with self._lock:
            resolved = set(self._resolved_threads)
            bots = {login for login, account in self._accounts.items() if account.type == "Bot"}
        threads = []
        for top in (each for each in comments if each["in_reply_to"] is None):
            in_thread = [each for each in comments
                         if top["id"] in (each["id"], each["in_reply_to"])]
            threads.append({
                "id": f"PRRT_fake{top['id']}",
                "isResolved": top["id"] in resolved,
                "isOutdated": outdated[top["id"]],
                "path": top["path"],
                "line": None if outdated[top["id"]] else top["line"],
                "startLine": None if outdated[top["id"]] else top["start_line"],
                "diffSide": top["side"],
                "comments": {"nodes": [
                    {
                        "databaseId": each["id"],
                        "body": each["body"],
                        # GraphQL names a bot by its app's slug, without REST's "[bot]".
                        "author": {"login": each["user"].removesuffix("[bot]")
                                   if each["user"] in bots else each["user"]},
                        "diffHunk": each["diff_hunk"],
                        "createdAt": each["created_at"],
                    }
                    for each in in_thread[:comment_count]
                ]},
            })
        return threads

    def _get_user_by_id(self, user_id: int) -> Response:
        with self._lock:
            login = next((a.login for a in self._accounts.values() if a.id == user_id), None)
        if login is None:
            self._authenticate_any()
            raise _Rejection(404, "Not Found")
        return self._get_user(login)

    def _get_user(self, login: str) -> Response:
        self._authenticate_any()
        account = self._account(login)
        return _json_response(
            200,
            {
                **self._user_payload(account),
                "name": None,
                "company": None,
                "blog": "",
                "location": None,
                "email": None,
                "hireable": None,
                "bio": None,
                "twitter_username": None,
                "public_repos": 0,
                "public_gists": 0,
                "followers": 0,
                "following": 0,
                "created_at": "2024-01-01T00:00:00Z",
                "updated_at": "2024-01-01T00:00:00Z",
            },
        )

    def _serve_git(self, owner: str, repo_dir: str, git_path: str) -> Response:
        if not repo_dir.endswith(".git"):
            raise _Rejection(404, "Not Found")
        full_name = f"{owner}/{repo_dir.removesuffix('.git')}"
        if request.method == "GET" and git_path == "info/refs":
            service = request.args.get("service", "")
        elif request.method == "POST":
            service = git_path
        else:
            service = ""
        # Only the smart protocol is served; dumb HTTP would bypass the service checks.
        if service not in GIT_SERVICE_PERMISSION:
            raise _Rejection(404, "Not Found")

        token = self._authenticate_git(full_name, service)
        repo = self._find_repo(full_name)
        with self._lock:
            push_rejected = full_name in self._push_rejected
        if service == "git-receive-pack" and repo.archived:
            return Response(
                "This repository was archived so it is read-only.\n", 403, mimetype="text/plain"
            )

        config = [("http.receivepack", "true")]
        if service == "git-receive-pack":
            config.append(("core.hooksPath", str(self._receive_hooks_dir())))
        env = _git_environment(
            FAKE_REJECT_PUSHES="1" if push_rejected else "0",
            FAKE_WORKFLOWS_ALLOWED="1" if token["permissions"].get("workflows") == "write" else "0",
            GIT_PROJECT_ROOT=str(self.root),
            GIT_HTTP_EXPORT_ALL="1",
            REQUEST_METHOD=request.method,
            PATH_INFO=f"/{full_name}.git/{git_path}",
            QUERY_STRING=request.query_string.decode(),
            CONTENT_TYPE=request.headers.get("Content-Type", ""),
            REMOTE_USER=GIT_USERNAME,
            REMOTE_ADDR="127.0.0.1",
            GIT_CONFIG_COUNT=str(len(config)),
        )
        for index, (key, value) in enumerate(config):
            env[f"GIT_CONFIG_KEY_{index}"] = key
            env[f"GIT_CONFIG_VALUE_{index}"] = value
        if protocol := request.headers.get("Git-Protocol"):
            env["HTTP_GIT_PROTOCOL"] = protocol
        # http-backend inflates gzip bodies itself when told the encoding.
        if encoding := request.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = encoding
        # Chunked bodies from git arrive already de-chunked by werkzeug; read them to the end.
        body = request.get_data() if request.method == "POST" else b""
        env["CONTENT_LENGTH"] = str(len(body))

        completed = subprocess.run(
            ["git", "http-backend"],
            input=body,
            capture_output=True,
            env=env,
            timeout=120,
            check=False,
        )
        if not completed.stdout:
            return Response(completed.stderr, 500, mimetype="text/plain")
        status, headers, payload = _split_cgi_output(completed.stdout)
        return Response(payload, status=status, headers=headers)

    def _authenticate_git(self, full_name: str, service: str) -> dict[str, Any]:
        credentials = _read_credentials(request.headers.get("Authorization"))
        # Without a Basic challenge git never asks its credential helper for a token.
        challenge = {"WWW-Authenticate": 'Basic realm="GitHub"'}
        if credentials.kind != "basic":
            self._record_auth_failure(f"git needs basic auth, got {credentials.kind or 'nothing'}")
            raise _GitAnswer(
                Response("Authentication required\n", 401, challenge, mimetype="text/plain")
            )
        if credentials.username != GIT_USERNAME:
            self._record_auth_failure(f"git username must be {GIT_USERNAME}")
            raise _GitAnswer(
                Response("Invalid username or password.\n", 401, challenge, mimetype="text/plain")
            )
        token = self._live_token(credentials.secret)
        if token is None:
            self._record_auth_failure("token unknown or expired")
            raise _GitAnswer(
                Response("Invalid username or password.\n", 401, challenge, mimetype="text/plain")
            )
        repo = self._find_repo(full_name)
        try:
            self._check_token_scope(token, repo, "contents", GIT_SERVICE_PERMISSION[service])
        except _Rejection as rejection:
            raise _GitAnswer(
                Response(f"{rejection.payload['message']}\n", 403, mimetype="text/plain")
            ) from None
        return token

    def _receive_hooks_dir(self) -> Path:
        hooks = self.root / ".receive-hooks"
        hook = hooks / "pre-receive"
        with self._lock:
            if not hook.exists():
                hooks.mkdir(exist_ok=True)
                hook.write_text(PRE_RECEIVE)
                hook.chmod(0o755)
        return hooks


def _invalid_field(resource: str, field_name: str) -> _Rejection:
    return _Rejection(
        422,
        "Validation Failed",
        errors=[{"resource": resource, "field": field_name, "code": "invalid"}],
    )


def _manifest_problems(manifest: Any) -> list[str]:
    """What GitHub's "new GitHub App" page refuses in a manifest."""
    if not isinstance(manifest, dict):
        return ["the manifest must be a JSON object"]
    problems = []
    for name in ("name", "url"):
        if not isinstance(manifest.get(name), str) or not manifest[name]:
            problems.append(f"{name} is required")
    hook = manifest.get("hook_attributes")
    if not isinstance(hook, dict) or not isinstance(hook.get("url"), str) or not hook["url"]:
        problems.append("hook_attributes.url is required")
    for name, kind, described in (("default_permissions", dict, "an object"),
                                  ("default_events", list, "an array"),
                                  ("redirect_url", str, "a string")):
        if name in manifest and not isinstance(manifest[name], kind):
            problems.append(f"{name} must be {described}")
    return problems


def _is_pull(record: dict[str, Any]) -> bool:
    return "head" in record


def _check_run_state(run: dict[str, Any]) -> dict[str, Any]:
    """What a check run's history keeps of each of its states."""
    return copy.deepcopy({key: run[key] for key in CHECK_RUN_TRACKED})


def _ruby_inspect(value: Any) -> str:
    """A JSON value as GitHub's (Ruby) validator quotes it in its messages."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_ruby_inspect(each) for each in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_ruby_inspect(key)}=>{_ruby_inspect(each)}"
                               for key, each in value.items()) + "}"
    return json.dumps(value, ensure_ascii=False)


def _ruby_text(value: Any) -> str:
    """A value as Ruby interpolates it: strings bare, nil empty."""
    if value is None:
        return ""
    return value if isinstance(value, str) else _ruby_inspect(value)


def _plural(count: int, one: str, many: str) -> str:
    return one if count == 1 else many


def _schema_problems(value: Any, schema: dict[str, Any], pointer: str) -> list[str]:
    """What GitHub's JSON schema validator says of `value`, one message a problem."""
    kind = schema.get("type")
    if kind is not None and (not isinstance(value, SCHEMA_TYPES[kind])
                             or isinstance(value, bool)):
        article = "an" if kind[0] in "aeiou" else "a"
        return [f"For '{pointer}', {_ruby_inspect(value)} is not {article} {kind}."]
    problems = []
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{_ruby_text(value)} is not a member of {_ruby_inspect(schema['enum'])}.")
    if kind == "string":
        limit = schema.get("maxLength")
        if limit is not None and len(value) > limit:
            problems.append(f"Only {limit} character{_plural(limit, ' is', 's are')} allowed; "
                            f"{len(value)} {_plural(len(value), 'was', 'were')} supplied.")
        if schema.get("format") == "date-time" and not _is_date_time(value):
            problems.append(f"{value} is not a valid date-time.")
    elif kind == "array":
        limit = schema.get("maxItems")
        if limit is not None and len(value) > limit:
            problems.append(f"No more than {limit} item{_plural(limit, ' is', 's are')} allowed; "
                            f"{len(value)} {_plural(len(value), 'was', 'were')} supplied.")
        for item in value:
            problems += _schema_problems(item, schema["items"], f"{pointer}/items")
    elif kind == "object":
        for key, subschema in schema.get("properties", {}).items():
            if key in value:
                prefix = f"{pointer}/" if pointer else ""
                problems += _schema_problems(value[key], subschema, f"{prefix}properties/{key}")
        missing = sorted(set(schema.get("required", ())) - value.keys())
        if missing:
            names = '", "'.join(missing)
            verb = _plural(len(missing), "wasn't", "weren't")
            problems.append(f'"{names}" {verb} supplied.')
    return problems


def _check_status_problems(body: dict[str, Any]) -> list[str]:
    """GitHub checks status and conclusion against two alternatives (anyOf): completed with a
    conclusion, or queued / in_progress. Their messages when neither fits, or none."""
    status = body.get("status")
    completed = []
    if "status" in body and status != "completed":
        completed.append(f'{_ruby_text(status)} is not a member of ["completed"].')
    if "conclusion" not in body:
        completed.append('"conclusion" wasn\'t supplied.')
    still_open = []
    if "status" in body and status not in ("queued", "in_progress"):
        still_open.append(f'{_ruby_text(status)} is not a member of ["queued", "in_progress"].')
    return completed + still_open if completed and still_open else []


def _check_run_body_problems(body: dict[str, Any], *, creating: bool) -> list[str]:
    """Everything GitHub's schema finds wrong with a check run request body, in its order:
    an unmatched anyOf first, then the fields, then each alternative's complaints."""
    schema = dict(_CHECK_RUN_SCHEMA)
    if creating:
        schema["required"] = ["name", "head_sha"]
    else:
        schema["properties"] = {key: value for key, value in schema["properties"].items()
                                if key != "head_sha"}  # a run's commit never changes
    alternatives = _check_status_problems(body)
    problems = (['No subschema in "anyOf" matched.'] if alternatives else [])
    return problems + _schema_problems(body, schema, "") + alternatives


def _check_output_size_errors(output: dict[str, Any]) -> list[dict[str, str]]:
    """The model behind the schema counts UTF-8 bytes, so text within the schema's character
    limit can still be refused."""
    return [
        {"resource": "CheckRun", "code": "custom", "field": field_name,
         "message": f"{field_name} exceeds a maximum bytesize of {MAX_CHECK_OUTPUT}"}
        for field_name in ("title", "summary", "text")
        if isinstance(output.get(field_name), str)
        and len(output[field_name].encode("utf-8")) > MAX_CHECK_OUTPUT
    ]


def _apply_check_run_body(run: dict[str, Any], body: dict[str, Any], now: str) -> None:
    """Change a run as a valid create or update body asks; fields left out stay as they are."""
    for key in ("name", "details_url", "external_id"):
        if key in body:
            run[key] = body[key]
    if "started_at" in body:
        run["started_at"] = _normal_time(body["started_at"])
    if body.get("status") in ("queued", "in_progress"):
        # An app may take a completed run back; it then has no conclusion any more.
        run.update(status=body["status"], conclusion=None, completed_at=None)
    if "conclusion" in body:
        # A conclusion completes the run, whatever status came with it.
        completed_at = body.get("completed_at")
        run.update(status="completed", conclusion=body["conclusion"],
                   completed_at=_normal_time(completed_at) if completed_at
                   else run["completed_at"] or now)
    if "output" in body:
        output = body["output"]
        run.update(title=output["title"], summary=output["summary"], text=output.get("text"))
        run["annotations"] += copy.deepcopy(output.get("annotations", []))
        if "images" in output:
            run["images"] = copy.deepcopy(output["images"])
    if "actions" in body:
        # The buttons are replaced, never added to.
        run["actions"] = [{key: action[key] for key in ("label", "description", "identifier")}
                          for action in body["actions"]]


def _is_date_time(value: str) -> bool:
    if not DATE_TIME.fullmatch(value):
        return False
    try:
        _normal_time(value)
    except ValueError:  # the shape of a time, but no such day or hour
        return False
    return True


def _normal_time(value: str) -> str:
    """An ISO 8601 time as GitHub gives it back: UTC, whole seconds."""
    moment = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    return _timestamp(moment)


def _diff_position(patch: str | None, line: int, side: str) -> tuple[str, int] | None:
    """Where a review comment on `line` of `side` sits in a file's patch: the hunk up to that
    line (GitHub's diff_hunk) and its position, counted in lines below the first "@@"."""
    if not patch:
        return None
    hunk: list[str] = []
    old_line = new_line = 0
    for position, text in enumerate(patch.split("\n")):
        header = re.match(r"@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@", text)
        if header:
            old_line, new_line = int(header[1]), int(header[2])
            hunk = [text]
            continue
        hunk.append(text)
        on_left, on_right = text[:1] in (" ", "-"), text[:1] in (" ", "+")
        if (side == "LEFT" and on_left and old_line == line) or (
                side == "RIGHT" and on_right and new_line == line):
            return "\n".join(hunk), position
        old_line += on_left
        new_line += on_right
    return None


def _cursor(index: int) -> str:
    return base64.b64encode(f"cursor:v2:{index}".encode()).decode()


def _connection_size(query: str, variables: dict[str, Any], connection: str) -> int:
    """How many nodes `first` asks of a connection; GitHub insists on it and caps it at 100."""
    arguments = re.search(rf"\b{connection}\s*\(([^)]*)\)", query)
    first = re.search(r"\bfirst\s*:\s*(\$\w+|-?\d+)", arguments[1]) if arguments else None
    if first is None:
        raise _GraphQLError(f"You must provide a `first` or `last` value to properly paginate "
                            f"the `{connection}` connection.")
    size: Any = first[1]
    if size.startswith("$"):
        name = size[1:]
        declared = re.search(rf"\${name}\s*:\s*Int!?\s*=\s*(\d+)", query)
        size = variables.get(name, int(declared[1]) if declared else None)
        if not isinstance(size, int) or isinstance(size, bool):
            raise _GraphQLError(f"Variable ${name} of type Int was provided invalid value")
    size = int(size)
    if size < 0:
        raise _GraphQLError(f"`first` on the `{connection}` connection cannot be less than zero.")
    if size > GRAPHQL_MAX_PAGE:
        raise _GraphQLError(f"Requesting {size} records on the `{connection}` connection exceeds "
                            f"the `first` limit of {GRAPHQL_MAX_PAGE} records.")
    return size


def _connection_start(query: str, variables: dict[str, Any], connection: str) -> int:
    """Where a page starts: just past the `after` cursor, if one was given."""
    arguments = re.search(rf"\b{connection}\s*\(([^)]*)\)", query)
    after = re.search(r'\bafter\s*:\s*(\$\w+|"[^"]*")', arguments[1]) if arguments else None
    if after is None:
        return 0
    cursor = variables.get(after[1][1:]) if after[1].startswith("$") else after[1].strip('"')
    if cursor is None:
        return 0
    try:
        prefix, _, index = base64.b64decode(cursor, validate=True).decode().rpartition(":")
        if prefix != "cursor:v2":
            raise ValueError(cursor)
        return int(index) + 1
    except (TypeError, ValueError):
        raise _GraphQLError(f"`{cursor}` does not appear to be a valid cursor.") from None
