"""What GitHub sends the App, event by event, for tests/intake_fuzz.py: realistic payloads, the
fields each intake handler reads with values that keep, drop or break the request, and what the
store must hold once intake has accepted one.

Every (event, action) in app/events.py HANDLERS is a Kind here. A Kind's field table lists the
fields its handler reads, each with values labelled VALID (the request stands), NOTHING_ASKED
(the handler asks for nothing: not a command, not the trigger label, a bot, no repositories,
another App's check run) or BROKEN (not what GitHub sends: recorded and ignored with a reason). Fields outside
`read_paths` are noise that must change nothing.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

# Removes a field instead of setting it.
MISSING = object()

VALID, NOTHING_ASKED, BROKEN = "valid", "nothing asked", "malformed"

# Where the generator picks repositories, installations and numbers, so that labels meet
# labels and installation events meet the tasks they finish. Installation 79 has no tasks.
REPOSITORIES = ["acme/widgets", "acme/gadgets"]
INSTALLATIONS = [77, 78]
LABEL_NUMBERS = [7, 8, 9, 10, 11, 12]
TRIGGER_LABEL = "async-code"  # the service's default ASYNC_CODE_TRIGGER_LABEL
APP_ID = 1012345  # the service's GITHUB_APP_ID: check runs of this App have buttons it acts on
OTHER_APP_ID = 3300001  # a CI App's check runs


@dataclass(frozen=True)
class Make:
    """A value built for each delivery (a fresh list of repositories, say)."""

    build: Callable[[random.Random], Any]
    text: str

    def __repr__(self) -> str:
        return self.text


# Stands for a valid comment id no other delivery uses.
UNIQUE_ID = object()

# --- Text --------------------------------------------------------------------------------

# Comment bodies the mention grammar reads as a request for work, and ones it does not.
COMMANDS = [
    "@async-code add a --version flag",
    "@async-code",
    "@async-code: fix the typo in README",
    "@ASYNC-CODE please add tests",
    "@async-code make it \U0001F680 faster",
    "@async-code rename \u202eevil\u202c to good",
    "@async-code\r\nsecond line of the instruction",
    "Some context first.\n\n@async-code do the thing",
    "@async-code, keep the \x00 byte",
    "  @async-code three spaces are fine",
    "@async-code e\u0301\u200d\ufeff\uffff\U0010ffff\u2028 odd but valid",
    "@async-code " + "x" * (65_536 - len("@async-code ")),  # GitHub's longest body
]
NOT_COMMANDS = [
    "looks good to me", "thanks @async-code!", "> @async-code do it", "```\n@async-code do it\n```",
    "    @async-code indented code", "@async-codex do it", "<!-- @async-code do it -->", "",
    "`@async-code` do it", "@async-code-bot do it", "@async-code/team do it", "- @async-code in a list",
]
ODD_TEXT = ["\u202e", "\u200d", "e\u0301", "\ufeff", "\uffff", "\U0010ffff", "\U0001F680", "\u2028",
            "\x00", "\x7f", "\u03a9", "\u4e2d\u6587", "\\", '"', "\n\r\t", "</script>", "%00", "../"]
LONE_SURROGATES = ["\ud800", "\udfff", "\ude00\ud83d", "x\udc80y"]

ISSUE_ONLY = "only apply to requests on issues"
SIDE_BY_SIDE_ON_ISSUES = "`--agents` only applies to requests on issues"


@dataclass(frozen=True)
class ExpectedRequest:
    """What a mention asks for, as the task must record it."""

    command: str | None = None
    instruction: str | None = None  # None: not checked
    base: str | None = None
    draft: bool = False
    problem: str | None = None  # a part of the problem the task must record; None: no problem
    agents: list[str] | None = None  # --agents
    picked_pr: int | None = None  # pick N

    def on_pull_request(self) -> ExpectedRequest:
        """The same words on a pull request, which keeps its base and draft state and has one
        branch, so no side-by-side run."""
        if self.problem is None and (self.base is not None or self.draft):
            return replace(self, problem=ISSUE_ONLY)
        if self.problem is None and self.agents is not None:
            return replace(self, problem=SIDE_BY_SIDE_ON_ISSUES)
        return self


WORK = ExpectedRequest()

# Mentions with commands and options, and what each asks for on an issue.
REQUESTS: dict[str, ExpectedRequest] = {
    "@async-code cancel": ExpectedRequest(command="cancel", instruction=""),
    "@async-code STATUS": ExpectedRequest(command="status", instruction=""),
    "@async-code retry  ": ExpectedRequest(command="retry", instruction=""),
    "@async-code: help": ExpectedRequest(command="help", instruction=""),
    "@async-code\nstatus": ExpectedRequest(command="status", instruction=""),
    "@async-code -- cancel": ExpectedRequest(command="cancel", instruction=""),
    "@async-code --base x --draft do it": ExpectedRequest(instruction="do it", base="x", draft=True),
    "@async-code --draft fix the flaky test": ExpectedRequest(instruction="fix the flaky test", draft=True),
    "@async-code --base release/2.0 add retries\nand tests":
        ExpectedRequest(instruction="add retries\nand tests", base="release/2.0"),
    "@async-code --base=main -- --version should print it":
        ExpectedRequest(instruction="--version should print it", base="main"),
    '@async-code --draft "an unclosed quote in the instruction is text':
        ExpectedRequest(instruction='"an unclosed quote in the instruction is text', draft=True),
    "@async-code it's a \"quoted\" instruction": ExpectedRequest(instruction="it's a \"quoted\" instruction"),
    "@async-code --force do it": ExpectedRequest(instruction="", problem="unknown option `--force`"),
    "@async-code --base x --yolo do it": ExpectedRequest(instruction="", problem="unknown option `--yolo`"),
    "@async-code --Draft do it": ExpectedRequest(instruction="", problem="unknown option `--Draft`"),
    "@async-code --ba x do it": ExpectedRequest(instruction="", problem="unknown option `--ba`"),
    "@async-code --base 'x do it": ExpectedRequest(instruction="", problem="quote that is not closed"),
    '@async-code --base "x do it': ExpectedRequest(instruction="", problem="quote that is not closed"),
    "@async-code --base main\\": ExpectedRequest(instruction="", problem="escapes nothing"),
    '@async-code --base "release 2" do it': ExpectedRequest(instruction="", problem="is not a branch name"),
    "@async-code --base ../x do it": ExpectedRequest(instruction="", problem="is not a branch name"),
    "@async-code --base": ExpectedRequest(instruction="", problem="`--base` needs a branch name"),
    "@async-code --base -x do it": ExpectedRequest(instruction="", problem="`--base` needs a branch name"),
    "@async-code --draft=yes do it": ExpectedRequest(instruction="", problem="`--draft` takes no value"),
    "@async-code --draft --draft do it": ExpectedRequest(instruction="", problem="given more than once"),
    "@async-code --draft cancel": ExpectedRequest(instruction="", problem="take no options"),
    "@async-code --agents claude,codex add retries": ExpectedRequest(
        instruction="add retries", agents=["claude", "codex"]),
    "@async-code --agents claude do it": ExpectedRequest(instruction="", problem="2 to 4 agents"),
    "@async-code --agents=-- do it": ExpectedRequest(instruction="", problem="`--agents` needs"),
    "@async-code --agent claude --agents claude,codex do it": ExpectedRequest(
        instruction="", problem="not both"),
    "@async-code pick #12": ExpectedRequest(command="pick", instruction="", picked_pr=12),
    "@async-code PICK 3": ExpectedRequest(command="pick", instruction="", picked_pr=3),
    "@async-code pick": ExpectedRequest(instruction="", problem="`pick` needs the number"),
    "@async-code pick 0": ExpectedRequest(instruction="pick 0"),
}


def request_in(body: str, *, on_pull_request: bool) -> ExpectedRequest:
    request = REQUESTS.get(body, WORK)
    return request.on_pull_request() if on_pull_request else request


# --- Values for the fields handlers read --------------------------------------------------

Values = list[tuple[Any, str]]
FieldTable = list[tuple[int, list[str], Values]]

NOT_IDS = [0, -1, -(2**63), 2**63, 2**64, 10**39, True, False, 1.5, 7.0, 1e300, "7", "", None,
           [], {}, [7], {"id": 7}, MISSING]
NOT_OBJECTS = [5, "x", [], [{"id": 1}], None, True, MISSING]
NOT_TEXT = [5, 0, True, [], ["x"], {}, {"text": "x"}]

IDS: Values = [(value, VALID) for value in (1, 2**31, 2**53 + 1, 2**63 - 1)] + [(value, BROKEN) for value in NOT_IDS]
COMMENT_IDS: Values = [(UNIQUE_ID, VALID)] + [(value, BROKEN) for value in NOT_IDS]
OBJECTS: Values = [(value, BROKEN) for value in NOT_OBJECTS]
BODIES: Values = ([(body, VALID) for body in COMMANDS + list(REQUESTS)]
                  + [(body, NOTHING_ASKED) for body in NOT_COMMANDS]
                  + [(None, NOTHING_ASKED), (MISSING, NOTHING_ASKED)] + [(value, BROKEN) for value in NOT_TEXT]
                  + [("@async-code fix " + s, BROKEN) for s in LONE_SURROGATES]
                  + [("@async-code " + "x" * 65_536, BROKEN)])
# Optional text: a title, a description, a diff hunk.
TEXTS: Values = ([(None, VALID), (MISSING, VALID), ("", VALID), ("x" * 65_536, VALID)]
                 + [("title " + s, VALID) for s in ODD_TEXT] + [(value, BROKEN) for value in NOT_TEXT]
                 + [("text " + s, BROKEN) for s in LONE_SURROGATES] + [("x" * 65_537, BROKEN)])
# A review comment's hunk may be long (one near the end of a large new file): intake keeps its
# last 20,000 characters.
HUNK_KEPT_CHARS = 20_000
HUNKS: Values = [(value, VALID if value == "x" * 65_537 else label) for value, label in TEXTS] + [
    ("@@ -0,0 +1,9000 @@\n" + "+line\n" * 30_000, VALID)]
LOGINS: Values = [
    ("alice", VALID), ("alice_acme", VALID), ("Bob-2", VALID), ("dependabot[bot]", NOTHING_ASKED),
    ("async-code[bot]", NOTHING_ASKED), ("", BROKEN), ("../admin", BROKEN), ("a/b", BROKEN),
    ("al ice", BROKEN), ("alice\n", BROKEN), ("al\ud800", BROKEN), ("x" * 70_000, BROKEN),
    (None, BROKEN), (MISSING, BROKEN), (5, BROKEN), (["alice"], BROKEN)]
USER_TYPES: Values = [
    ("User", VALID), ("Organization", VALID), ("Mannequin", VALID), (None, VALID), (MISSING, VALID),
    ("Bot", NOTHING_ASKED), (5, BROKEN), ([], BROKEN), (True, BROKEN), ("Us\ud800er", BROKEN)]
GOOD_REPO_NAMES = ["acme/widgets", "acme/.github", "Acme-Corp/widgets_2.0", "o/r"]
BAD_REPO_NAMES = ["acme", "acme/widgets/issues", "acme/..", "../widgets", "./widgets", "", "acme/wid gets",
                  "acme/widgets\x00", "acme/\ud800"]
REPO_NAMES: Values = ([(name, VALID) for name in GOOD_REPO_NAMES] + [(name, BROKEN) for name in BAD_REPO_NAMES]
                      + [(5, BROKEN), (None, BROKEN), (MISSING, BROKEN), (["acme/widgets"], BROKEN)])
# Read where GitHub may leave a user out (a deleted account): whatever is there, the request stands.
LENIENT_USERS: Values = [(value, VALID) for value in (None, MISSING, 5, "", "../x", "al ice", [], {}, {"login": 5},
                                                      "x" * 70_000, "al\ud800")]
LABEL_NAMES: Values = (
    [(name, VALID) for name in (TRIGGER_LABEL, "Async-Code", "ASYNC-CODE")]
    + [(name, NOTHING_ASKED) for name in ("bug", "", "async-code ", " async-code", "async_code", "async-codex",
                                          "a\u017fync-code", "async\u2010code", "async-code\u200d", "x" * 100,
                                          "\U0001F680")]
    + [(value, BROKEN) for value in ("x" * 101, "x" * 65_537, "async-code\ud800", None, MISSING, 5, True, [],
                                     ["async-code"], {"name": "async-code"})])
PATHS: Values = (
    [(path, VALID) for path in ("src/cli.py", "a", "x" * 4096, "d\u00efr with space/\u00fcn\u00efcode.py", "../x",
                                "README")]
    + [(value, BROKEN) for value in ("", None, MISSING, 5, [], {}, "x" * 4097, "src/\ud800.py")])
LINES: Values = ([(value, VALID) for value in (1, 7, 2**31, 2**63 - 1, None, MISSING)]
                 + [(value, BROKEN) for value in NOT_IDS if value is not None and value is not MISSING])
SIDES: Values = ([(value, VALID) for value in ("LEFT", "RIGHT", "", None, MISSING)]
                 + [(value, BROKEN) for value in ("left", "BOTH", "RIGHT ", 5, [], {}, "R\ud800")])


def _bad_action(word: str) -> Values:
    """Actions no handler can be chosen by: not a short lower-case word."""
    return [(value, BROKEN) for value in (word.capitalize(), word + " ", "", "c" * 65, 1, True, [], {}, [word],
                                          {word: True}, word + "\ud800", word.replace("e", "\u0435", 1))]


def _actions(handled: list[str], others: list[str]) -> Values:
    return ([(action, VALID) for action in handled]
            + [(action, NOTHING_ASKED) for action in others + [None, MISSING]] + _bad_action(handled[0]))


# --- Payloads as GitHub sends them ----------------------------------------------------------

def user_payload(login: str, user_id: int, kind: str = "User") -> dict[str, Any]:
    return {"login": login, "id": user_id, "node_id": f"MDQ6VXNlcj{user_id}",
            "avatar_url": f"https://avatars.githubusercontent.com/u/{user_id}?v=4", "gravatar_id": "",
            "url": f"https://api.github.com/users/{login}", "html_url": f"https://github.com/{login}",
            "type": kind, "site_admin": False}


def repository_payload(full_name: str = "acme/widgets") -> dict[str, Any]:
    owner, name = full_name.split("/")
    api = f"https://api.github.com/repos/{full_name}"
    return {"id": 186853002, "node_id": "MDEwOlJlcG9zaXRvcnkxODY4NTMwMDI=", "name": name,
            "full_name": full_name, "private": False, "owner": user_payload(owner, 38302899, "Organization"),
            "html_url": f"https://github.com/{full_name}", "description": None, "fork": False,
            "url": api, "issues_url": api + "/issues{/number}", "pulls_url": api + "/pulls{/number}",
            "created_at": "2026-05-15T15:19:25Z", "pushed_at": "2026-11-20T10:20:13Z",
            "clone_url": f"https://github.com/{full_name}.git", "homepage": None, "size": 0,
            "stargazers_count": 0, "language": "Python", "has_issues": True, "forks_count": 0,
            "archived": False, "disabled": False, "open_issues_count": 1, "license": None,
            "default_branch": "main", "topics": [], "visibility": "public"}


def _organization() -> dict[str, Any]:
    return {"login": "acme", "id": 38302899, "node_id": "MDEyOk9yZ2FuaXphdGlvbjM4MzAyODk5",
            "url": "https://api.github.com/orgs/acme", "description": ""}


def _reactions(url: str) -> dict[str, Any]:
    return {"url": url + "/reactions", "total_count": 0, "+1": 0, "-1": 0, "laugh": 0, "hooray": 0,
            "confused": 0, "heart": 0, "rocket": 0, "eyes": 0}


def _label(name: str = TRIGGER_LABEL) -> dict[str, Any]:
    return {"id": 5913457216, "node_id": "LA_kwDOBhOi6M8AAAABYHfKQA",
            "url": f"https://api.github.com/repos/acme/widgets/labels/{name}", "name": name,
            "color": "5319e7", "default": False, "description": "Ask async-code to do the work"}


def _installation_reference(installation_id: int) -> dict[str, Any]:
    """What events on repositories say about the installation that receives them."""
    return {"id": installation_id, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9u" + str(installation_id)}


def issue_payload(number: int, *, repo: str = "acme/widgets", pull_request: bool = False,
           labels: tuple[str, ...] = ("bug",)) -> dict[str, Any]:
    url = f"https://api.github.com/repos/{repo}/issues/{number}"
    issue = {"url": url, "repository_url": f"https://api.github.com/repos/{repo}",
             "html_url": f"https://github.com/{repo}/issues/{number}",
             "id": 444500041, "node_id": "MDU6SXNzdWU0NDQ1MDAwNDE=", "number": number,
             "title": "The CLI cannot tell its version", "user": user_payload("reporter", 1),
             "labels": [{"id": 1362934389, "name": name, "color": "d73a4a", "default": name == "bug",
                         "description": None} for name in labels],
             "state": "open", "locked": False, "assignee": None, "assignees": [], "milestone": None,
             "comments": 1, "created_at": "2026-11-20T15:20:18Z", "updated_at": "2026-11-20T15:20:21Z",
             "closed_at": None, "author_association": "OWNER", "active_lock_reason": None,
             "body": "Running `widgets --version` prints nothing.", "reactions": _reactions(url),
             "timeline_url": url + "/timeline", "performed_via_github_app": None, "state_reason": None}
    if pull_request:
        issue["pull_request"] = {"url": url.replace("/issues/", "/pulls/"),
                                 "html_url": issue["html_url"].replace("/issues/", "/pull/"),
                                 "diff_url": None, "patch_url": None, "merged_at": None}
    return issue


def _branch(repo: str, ref: str, sha: str) -> dict[str, Any]:
    owner = repo.split("/")[0]
    return {"label": f"{owner}:{ref}", "ref": ref, "sha": sha, "user": user_payload(owner, 38302899, "Organization"),
            "repo": repository_payload(repo)}


def pull_request_payload(number: int, *, repo: str = "acme/widgets", labels: tuple[str, ...] = ()) -> dict[str, Any]:
    api = f"https://api.github.com/repos/{repo}"
    url = f"{api}/pulls/{number}"
    html = f"https://github.com/{repo}/pull/{number}"
    return {"url": url, "id": 1710000000 + number, "node_id": "PR_kwDOBhOi6M5l6yv2", "html_url": html,
            "diff_url": html + ".diff", "patch_url": html + ".patch", "issue_url": f"{api}/issues/{number}",
            "number": number, "state": "open", "locked": False, "title": "Print the version",
            "user": user_payload("carol", 2), "body": "Adds `--version`.\n\nFixes #7",
            "created_at": "2026-11-21T09:00:00Z", "updated_at": "2026-11-21T09:30:00Z", "closed_at": None,
            "merged_at": None, "merge_commit_sha": "c" * 40, "assignee": None, "assignees": [],
            "requested_reviewers": [], "requested_teams": [],
            "labels": [_label(name) for name in labels], "milestone": None, "draft": False,
            "commits_url": url + "/commits", "review_comments_url": url + "/comments",
            "review_comment_url": f"{api}/pulls/comments{{/number}}", "comments_url": f"{api}/issues/{number}/comments",
            "statuses_url": f"{api}/statuses/{'a' * 40}", "head": _branch(repo, "version-flag", "a" * 40),
            "base": _branch(repo, "main", "b" * 40),
            "_links": {"self": {"href": url}, "html": {"href": html}, "issue": {"href": f"{api}/issues/{number}"}},
            "author_association": "CONTRIBUTOR", "auto_merge": None, "active_lock_reason": None}


def issue_comment(action: str, comment_id: int, body: str, *, pull_request: bool = False,
                  repo: str = "acme/widgets", installation_id: int = 77, number: int = 7) -> dict[str, Any]:
    """An `issue_comment` delivery with the fields GitHub sends (a trimmed real payload)."""
    issue = issue_payload(number, repo=repo, pull_request=pull_request)
    url = f"https://api.github.com/repos/{repo}/issues/comments/{comment_id}"
    author = user_payload("alice", 9)
    return {
        "action": action,
        "issue": issue,
        "comment": {"url": url, "html_url": issue["html_url"] + f"#issuecomment-{comment_id}",
                    "issue_url": issue["url"], "id": comment_id, "node_id": "MDEyOklzc3VlQ29tbWVudA==",
                    "user": author, "created_at": "2026-11-20T15:20:21Z",
                    "updated_at": "2026-11-20T15:20:21Z", "author_association": "MEMBER",
                    "performed_via_github_app": None, "body": body, "reactions": _reactions(url)},
        "repository": repository_payload(repo),
        "organization": _organization(),
        "installation": _installation_reference(installation_id),
        "sender": user_payload("alice", 9),
    }


def labeled(subject: str, number: int, *, repo: str = "acme/widgets", installation_id: int = 77,
            label: str = TRIGGER_LABEL) -> dict[str, Any]:
    """An `issues` (subject "issue") or `pull_request` (subject "pull_request") `labeled` delivery."""
    payload: dict[str, Any] = {"action": "labeled"}
    if subject == "issue":
        payload["issue"] = issue_payload(number, repo=repo, labels=("bug", label))
    else:
        payload["number"] = number
        payload["pull_request"] = {**pull_request_payload(number, repo=repo, labels=(label,)), "merged": False,
                                   "mergeable": None, "rebaseable": None, "mergeable_state": "unknown",
                                   "merged_by": None, "comments": 0, "review_comments": 1,
                                   "maintainer_can_modify": False, "commits": 1, "additions": 12,
                                   "deletions": 1, "changed_files": 2}
    return {**payload, "label": _label(label), "repository": repository_payload(repo), "organization": _organization(),
            "installation": _installation_reference(installation_id), "sender": user_payload("alice", 9)}


def review_comment(comment_id: int, body: str, *, number: int = 9, repo: str = "acme/widgets",
                   installation_id: int = 77, reply_to: int | None = None,
                   lines: tuple[int | None, int | None] = (None, 14)) -> dict[str, Any]:
    """A `pull_request_review_comment`/`created` delivery; `lines` is (start_line, line), and
    a comment on a whole file has no line at all."""
    pull_request = pull_request_payload(number, repo=repo)
    url = f"https://api.github.com/repos/{repo}/pulls/comments/{comment_id}"
    html = pull_request["html_url"] + f"#discussion_r{comment_id}"
    start, line = lines
    comment = {
        "url": url, "pull_request_review_id": 1834000000 + comment_id, "id": comment_id,
        "node_id": "PRRC_kwDOBhOi6M5xVv2Z", "diff_hunk": "@@ -10,6 +10,8 @@ def main():\n     args = parse()\n+"
        "    if args.version:\n+        print(__version__)", "path": "src/widgets/cli.py", "commit_id": "a" * 40,
        "original_commit_id": "a" * 40, "user": user_payload("alice", 9), "body": body,
        "created_at": "2026-11-21T10:00:00Z", "updated_at": "2026-11-21T10:00:00Z", "html_url": html,
        "pull_request_url": pull_request["url"], "author_association": "MEMBER",
        "_links": {"self": {"href": url}, "html": {"href": html}, "pull_request": {"href": pull_request["url"]}},
        "reactions": _reactions(url), "start_line": start, "original_start_line": start,
        "start_side": "RIGHT" if start else None, "line": line, "original_line": line, "side": "RIGHT",
        "original_position": 4, "position": 4, "subject_type": "line" if line else "file"}
    if reply_to is not None:
        comment["in_reply_to_id"] = reply_to
    return {"action": "created", "comment": comment, "pull_request": pull_request,
            "repository": repository_payload(repo), "organization": _organization(),
            "installation": _installation_reference(installation_id), "sender": user_payload("alice", 9)}


def _installation(installation_id: int, action: str) -> dict[str, Any]:
    """The installation object of `installation` and `installation_repositories` events."""
    suspended = action == "suspend"
    return {"id": installation_id, "client_id": "Iv1.8a61f9b3a7aba766",
            "account": user_payload("acme", 38302899, "Organization"), "repository_selection": "selected",
            "access_tokens_url": f"https://api.github.com/app/installations/{installation_id}/access_tokens",
            "repositories_url": "https://api.github.com/installation/repositories",
            "html_url": f"https://github.com/organizations/acme/settings/installations/{installation_id}",
            "app_id": 1012345, "app_slug": "async-code", "target_id": 38302899, "target_type": "Organization",
            "permissions": {"contents": "write", "issues": "write", "metadata": "read", "pull_requests": "write",
                            "checks": "read"},
            "events": ["issue_comment", "issues", "pull_request", "pull_request_review_comment"],
            "created_at": "2026-05-15T15:30:00.000Z", "updated_at": "2026-11-21T11:00:00.000Z",
            "single_file_name": None, "has_multiple_single_files": False, "single_file_paths": [],
            "suspended_by": user_payload("acme-admin", 12) if suspended else None,
            "suspended_at": "2026-11-21T11:00:00Z" if suspended else None}


def repository_entry(full_name: str, index: int = 0) -> dict[str, Any]:
    """A repository as installation events list it."""
    return {"id": 186853002 + index, "node_id": "MDEwOlJlcG9zaXRvcnkxODY4NTMwMDI=",
            "name": full_name.split("/")[-1], "full_name": full_name, "private": index % 2 == 1}


def installation(action: str, installation_id: int = 77) -> dict[str, Any]:
    """An `installation` delivery: created, deleted, suspend or unsuspend."""
    payload = {"action": action, "installation": _installation(installation_id, action),
               "repositories": [repository_entry(name, i) for i, name in enumerate(REPOSITORIES)],
               "requester": None, "sender": user_payload("acme-admin", 12)}
    if action in ("suspend", "unsuspend"):
        del payload["repositories"]  # GitHub lists them only when the App is installed or removed
    return payload


def installation_repositories(action: str, repos: list[str], installation_id: int = 77) -> dict[str, Any]:
    """An `installation_repositories` delivery: `repos` added or removed."""
    listed = [repository_entry(name, i) for i, name in enumerate(repos)]
    return {"action": action, "installation": _installation(installation_id, action),
            "repository_selection": "selected",
            "repositories_added": listed if action == "added" else [],
            "repositories_removed": listed if action == "removed" else [],
            "requester": None, "sender": user_payload("acme-admin", 12)}


def _app(app_id: int) -> dict[str, Any]:
    """The App that made a check run, as `check_run` events show it."""
    ours = app_id == APP_ID
    slug = "async-code" if ours else "ci"
    return {"id": app_id, "client_id": "Iv1.8a61f9b3a7aba766", "slug": slug, "node_id": "MDM6QXBwMTAxMjM0NQ==",
            "owner": user_payload("acme", 38302899, "Organization"), "name": slug,
            "description": "", "external_url": f"https://{slug}.example.invalid",
            "html_url": f"https://github.com/apps/{slug}", "created_at": "2026-05-15T15:00:00Z",
            "updated_at": "2026-05-15T15:00:00Z", "permissions": {"checks": "write", "metadata": "read"},
            "events": []}


def check_run_event(action: str, check_run_id: int, external_id: str, *, identifier: str | None = "retry",
                    repo: str = "acme/widgets", installation_id: int = 77, app_id: int = APP_ID,
                    sender: str = "alice", sender_type: str = "User") -> dict[str, Any]:
    """A `check_run` delivery: `requested_action` (a button, named by `identifier`, pressed) or
    `rerequested` (the "Re-run" link), on a completed run whose `external_id` names its task."""
    api = f"https://api.github.com/repos/{repo}"
    sha = "a" * 40
    suite = {"id": 5200000 + check_run_id % 1000, "node_id": "CS_kwDOBhOi6M8AAAAB", "head_branch": "version-flag",
             "head_sha": sha, "status": "queued" if action == "rerequested" else "completed",
             "conclusion": None if action == "rerequested" else "success",
             "url": f"{api}/check-suites/5200000", "before": "b" * 40, "after": sha, "pull_requests": [],
             "app": _app(app_id), "created_at": "2026-11-21T10:00:00Z", "updated_at": "2026-11-21T10:05:00Z"}
    check_run = {
        "id": check_run_id, "name": "async-code", "node_id": "CR_kwDOBhOi6M8AAAAC", "head_sha": sha,
        "external_id": external_id, "url": f"{api}/check-runs/{check_run_id}",
        "html_url": f"https://github.com/{repo}/runs/{check_run_id}", "details_url": None,
        "status": "completed", "conclusion": "success", "started_at": "2026-11-21T10:00:00Z",
        "completed_at": "2026-11-21T10:05:00Z",
        "output": {"title": "Changes pushed", "summary": "2 files changed", "text": None, "annotations_count": 0,
                   "annotations_url": f"{api}/check-runs/{check_run_id}/annotations"},
        "check_suite": suite, "app": _app(app_id), "pull_requests": [], "deployment": None}
    payload: dict[str, Any] = {"action": action, "check_run": check_run}
    if action == "requested_action":
        payload["requested_action"] = {"identifier": identifier}
    return {**payload, "repository": repository_payload(repo), "organization": _organization(),
            "installation": _installation_reference(installation_id),
            "sender": user_payload(sender, 9, sender_type)}


def _some_repositories(rng: random.Random) -> list[str]:
    return rng.sample(REPOSITORIES + ["acme/.github", "o/r"], rng.randint(1, 3))


def _listed(rng: random.Random) -> list[dict[str, Any]]:
    return [repository_entry(name, i) for i, name in enumerate(_some_repositories(rng))]


def _listed_twice(rng: random.Random) -> list[dict[str, Any]]:
    return 2 * _listed(rng)


def _names_only(rng: random.Random) -> list[dict[str, Any]]:
    return [{"full_name": name} for name in _some_repositories(rng)]


def _odd_unread_fields(rng: random.Random) -> list[dict[str, Any]]:
    return [{"full_name": name, "id": "x", "name": None, "private": "yes", "": []} for name in _some_repositories(rng)]


def _many(rng: random.Random) -> list[dict[str, Any]]:
    return [repository_entry(f"acme/r{i}", i) for i in range(1000)] + _listed(rng)


def _one_bad(bad: str) -> Make:
    return Make(lambda rng: [repository_entry(rng.choice(REPOSITORIES)), {"full_name": bad}],
                f"[a repository, {{'full_name': {bad!r}}}]")


# The repositories an `installation_repositories` delivery lists.
REPOSITORY_LISTS: Values = (
    [(Make(_listed, "[repositories]"), VALID), (Make(_listed_twice, "[each repository twice]"), VALID),
     (Make(_names_only, "[{'full_name': ...}]"), VALID),
     (Make(_odd_unread_fields, "[repositories with odd unread fields]"), VALID),
     (Make(_many, "[a thousand repositories and more]"), VALID), ([], NOTHING_ASKED)]
    + [(value, BROKEN) for value in (5, "acme/widgets", {}, None, MISSING, True, {"full_name": "acme/widgets"},
                                     [5], [None], ["acme/widgets"], [[]], [{}], [{"full_name": None}],
                                     [{"full_name": 5}], [{"name": "widgets"}])]
    + [(_one_bad(bad), BROKEN) for bad in BAD_REPO_NAMES]
    + [(Make(lambda rng: [{"full_name": "acme/widgets"}] * 100_001, "[100,001 repositories]"), BROKEN)])


# --- What the store must hold --------------------------------------------------------------

@dataclass(frozen=True)
class ExpectedTask:
    """A task intake must record, as the store must hold it."""

    trigger: str
    repo: str
    installation_id: int
    number: int
    comment_id: int | None
    requested_by: str
    requested_by_id: int
    issue_title: str
    issue_body: str
    request: ExpectedRequest = WORK
    label: str | None = None
    review_context: dict[str, Any] | None = None
    status: str = "pending"
    error: str | None = None  # a part of the error a finished task records
    target_task: str | None = None  # for a button's command: the task whose check run showed it

    def differences(self, task: Any) -> list[str]:
        """How a stored task differs from this one."""
        found = []
        request = self.request
        expected = {"trigger": self.trigger, "repo": self.repo, "installation_id": self.installation_id,
                    "number": self.number, "comment_id": self.comment_id, "requested_by": self.requested_by,
                    "requested_by_id": self.requested_by_id, "issue_title": self.issue_title,
                    "issue_body": self.issue_body, "label": self.label, "status": self.status,
                    "command": request.command, "base_branch": request.base, "draft": request.draft,
                    "target_task": self.target_task, "picked_pr": request.picked_pr}
        if request.problem is None and not (request.agents is None and task.agents is None):
            expected["agents"] = request.agents
        if request.instruction is not None:
            expected["instruction"] = request.instruction
        if self.review_context is not None:
            expected["review_context"] = self.review_context
        for name, value in expected.items():
            value = as_stored(value)
            if getattr(task, name) != value:
                found.append(f"{name} {shown(getattr(task, name))}, expected {shown(value)}")
        if self.label is not None and f"#{self.number}" not in task.instruction:
            found.append(f"instruction {task.instruction!r} does not name #{self.number}")
        if (task.problem is None) != (request.problem is None) or (
                request.problem is not None and request.problem not in task.problem):
            found.append(f"problem {task.problem!r}, expected {request.problem!r}")
        if (task.error is None) != (self.error is None) or (
                self.error is not None and self.error not in task.error):
            found.append(f"error {task.error!r}, expected {self.error!r}")
        return found

    @property
    def asked_by_label(self) -> bool:
        return self.label is not None


@dataclass(frozen=True)
class ExpectedChange:
    """An installation change intake must record: one row per repository, or one for all."""

    installation_id: int
    action: str
    repos: tuple[str, ...] = ()

    def rows(self, guid: str) -> list[tuple[str, int, str | None, str]]:
        return [(guid, self.installation_id, repo, self.action) for repo in self.repos or (None,)]

    def finishes(self, task: ExpectedTask) -> str | None:
        """What a finished task's error says when this change finishes it, or None."""
        if task.status != "pending" or task.installation_id != self.installation_id:
            return None
        if not self.repos:
            return {"deleted": "uninstalled", "suspend": "suspended"}.get(self.action)
        if self.action == "removed" and task.repo in self.repos:
            return f"{task.repo} was removed"
        return None


@dataclass(frozen=True)
class ExpectedPress:
    """A button pressed on a check run, as intake reads it. Whether it becomes a command task
    depends on the store: the check run must be one of the task its external_id names, on that
    repository and installation (`StoreModel.record`)."""

    repo: str
    installation_id: int
    check_run_id: int
    task_id: str  # the check run's external_id
    action: str  # cancel, retry or continue
    requested_by: str
    requested_by_id: int


def as_stored(value: Any) -> Any:
    """`value` as both stores keep it: PostgreSQL refuses NUL in text, so each store keeps a NUL
    character as U+FFFD."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {as_stored(key): as_stored(item) for key, item in value.items()}
    return value


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _comment_task(payload: dict[str, Any]) -> ExpectedTask:
    issue, comment = payload["issue"], payload["comment"]
    on_pull_request = issue.get("pull_request") is not None
    return ExpectedTask(
        trigger="pr_comment" if on_pull_request else "comment", repo=payload["repository"]["full_name"],
        installation_id=payload["installation"]["id"], number=issue["number"], comment_id=comment["id"],
        requested_by=payload["sender"]["login"], requested_by_id=payload["sender"]["id"],
        issue_title=_text(issue.get("title")), issue_body=_text(issue.get("body")),
        request=request_in(comment["body"], on_pull_request=on_pull_request))


def _review_task(payload: dict[str, Any]) -> ExpectedTask:
    pull_request, comment = payload["pull_request"], payload["comment"]
    line = comment.get("line") or comment.get("original_line")
    start = comment.get("start_line") or comment.get("original_start_line")
    context = {"path": comment["path"], "line": line, "start_line": start if start != line else None,
               "side": comment.get("side") or "RIGHT",
               "diff_hunk": _text(comment.get("diff_hunk"))[-HUNK_KEPT_CHARS:],
               "thread_id": comment.get("in_reply_to_id") or comment["id"]}
    return ExpectedTask(
        trigger="review_comment", repo=payload["repository"]["full_name"],
        installation_id=payload["installation"]["id"], number=pull_request["number"], comment_id=comment["id"],
        requested_by=payload["sender"]["login"], requested_by_id=payload["sender"]["id"],
        issue_title=_text(pull_request.get("title")), issue_body=_text(pull_request.get("body")),
        request=request_in(comment["body"], on_pull_request=True), review_context=context)


def _label_task(subject: str, trigger: str) -> Callable[[dict[str, Any]], ExpectedTask]:
    def task(payload: dict[str, Any]) -> ExpectedTask:
        item = payload[subject]
        return ExpectedTask(
            trigger=trigger, repo=payload["repository"]["full_name"], installation_id=payload["installation"]["id"],
            number=item["number"], comment_id=None, requested_by=payload["sender"]["login"],
            requested_by_id=payload["sender"]["id"], issue_title=_text(item.get("title")),
            issue_body=_text(item.get("body")), label=payload["label"]["name"])
    return task


def _installation_change(payload: dict[str, Any]) -> ExpectedChange:
    return ExpectedChange(payload["installation"]["id"], payload["action"])


def _repositories_change(payload: dict[str, Any]) -> ExpectedChange:
    action = payload["action"]
    names = [entry["full_name"] for entry in payload[f"repositories_{action}"]]
    return ExpectedChange(payload["installation"]["id"], action, tuple(dict.fromkeys(names)))


def _button_press(payload: dict[str, Any]) -> ExpectedPress:
    check_run = payload["check_run"]
    action = "retry" if payload["action"] == "rerequested" else payload["requested_action"]["identifier"]
    return ExpectedPress(repo=payload["repository"]["full_name"], installation_id=payload["installation"]["id"],
                         check_run_id=check_run["id"], task_id=check_run.get("external_id") or "", action=action,
                         requested_by=payload["sender"]["login"], requested_by_id=payload["sender"]["id"])


# --- Kinds ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Kind:
    """One (event, action) intake acts on."""

    name: str
    event: str
    build: Callable[[random.Random, int], dict[str, Any]]  # (rng, a fresh comment id) -> a valid payload
    fields: FieldTable  # the fields the handler reads, how often to damage each, and with what
    read_paths: frozenset[str]  # those fields and their ancestors: noise goes elsewhere
    result: Callable[[dict[str, Any]], ExpectedTask | ExpectedChange]  # for a valid payload
    # Other X-GitHub-Event headers for the same payload (with its own action), and what intake
    # makes of it: NOTHING_ASKED where no handler takes the action, BROKEN where one does but
    # reads an object the payload lacks.
    swaps: tuple[tuple[str, str], ...] = ()
    # Read fields a handler skips given the rest of the payload.
    unread: Callable[[dict[str, Any]], set[str]] = field(default=lambda payload: set())


def _paths_of(table: FieldTable) -> frozenset[str]:
    paths = set()
    for _, names, _ in table:
        for name in names:
            parts = name.split(".")
            paths.update(".".join(parts[:end]) for end in range(1, len(parts) + 1))
    return frozenset(paths)


def _user_fields(*users: str) -> FieldTable:
    return [(8, [f"{user}.login" for user in users], LOGINS), (6, [f"{user}.type" for user in users], USER_TYPES)]


COMMENT_FIELDS: FieldTable = [
    (12, ["action"], _actions(["created"], ["edited", "deleted", "pinned"])),
    (4, ["comment.id"], COMMENT_IDS),
    (8, ["installation.id", "issue.number", "sender.id"], IDS),
    (8, ["issue", "comment", "comment.user", "sender", "repository", "installation"], OBJECTS),
    (16, ["comment.body"], BODIES),
    (12, ["issue.title", "issue.body"], TEXTS),
    *_user_fields("sender", "comment.user"),
    (10, ["repository.full_name"], REPO_NAMES),
    # Any value but null marks a comment on a pull request, which asks for work on its branch.
    (12, ["issue.pull_request"], [
        (None, VALID), (MISSING, VALID), ({"url": "https://api.github.com/repos/acme/widgets/pulls/7"}, VALID),
        ({}, VALID), ("", VALID), (0, VALID), (False, VALID), ([], VALID)]),
    (3, ["issue.user", "issue.user.login"], LENIENT_USERS),
]

REVIEW_FIELDS: FieldTable = [
    (10, ["action"], _actions(["created"], ["edited", "deleted"])),
    (4, ["comment.id"], COMMENT_IDS),
    (8, ["installation.id", "pull_request.number", "sender.id"], IDS),
    (8, ["pull_request", "comment", "comment.user", "sender", "repository", "installation"], OBJECTS),
    (14, ["comment.body"], BODIES),
    (8, ["pull_request.title", "pull_request.body"], TEXTS),
    (4, ["comment.diff_hunk"], HUNKS),
    *_user_fields("sender", "comment.user"),
    (8, ["repository.full_name"], REPO_NAMES),
    (8, ["comment.path"], PATHS),
    (12, ["comment.line", "comment.original_line", "comment.start_line", "comment.original_start_line",
          "comment.in_reply_to_id"], LINES),
    (6, ["comment.side"], SIDES),
    (3, ["pull_request.user", "pull_request.user.login"], LENIENT_USERS),
]


def _review_unread(payload: dict[str, Any]) -> set[str]:
    """The original lines are read only where the current ones are null."""
    comment = payload.get("comment")
    if not isinstance(comment, dict):
        return set()
    return {f"comment.original_{name}" for name in ("line", "start_line") if comment.get(name) is not None}


def _label_fields(subject: str, number_paths: list[str]) -> FieldTable:
    table: FieldTable = [
        (10, ["action"], _actions(["labeled"], ["unlabeled", "opened", "edited", "closed"])),
        (14, ["label.name"], LABEL_NAMES),
        (8, number_paths, IDS),
        (8, [subject, "label", "sender", "repository", "installation"], OBJECTS),
        (8, [f"{subject}.title", f"{subject}.body"], TEXTS),
        *_user_fields("sender"),
        (8, ["repository.full_name"], REPO_NAMES),
        (3, [f"{subject}.user", f"{subject}.user.login"], LENIENT_USERS),
    ]
    if subject == "issue":
        # A label on a pull request also arrives as an `issues` event; only `pull_request` acts on it.
        table.append((8, ["issue.pull_request"], [
            (None, VALID), (MISSING, VALID), ({"url": "https://api.github.com/repos/acme/widgets/pulls/7"},
                                              NOTHING_ASKED),
            ({}, NOTHING_ASKED), ("", NOTHING_ASKED), (0, NOTHING_ASKED), (False, NOTHING_ASKED),
            ([], NOTHING_ASKED)]))
    return table


BUTTONS = ["cancel", "retry", "continue"]


def _task_id(rng: random.Random) -> str:
    return "%032x" % rng.getrandbits(128)


# A check run's external_id: a task id (which task, if any, the model knows), or not one.
EXTERNAL_IDS: Values = (
    [(Make(_task_id, "<a task id nobody recorded>"), VALID)]
    + [(value, NOTHING_ASKED) for value in (
        "", None, MISSING, "A" * 32, "a" * 31, "a" * 33, "0123456789abcdef-0123456789abcde",
        "01234567-89ab-cdef-0123-456789abcdef", "../" + "a" * 29, "a" * 32 + "\n", "a" * 31 + "\x00",
        "a" * 31 + "\u0430", "x" * 65_536)]
    + [(value, BROKEN) for value in (5, 0, True, [], {}, ["a" * 32], {"id": "a" * 32}, "a" * 31 + "\ud800",
                                     "x" * 65_537)])
IDENTIFIERS: Values = (
    [(name, VALID) for name in BUTTONS]
    + [(name, NOTHING_ASKED) for name in ("", "Cancel", "RETRY", "rerun", "cancel ", " retry", "x" * 20,
                                          "canc\u0435l", "continue\x00", "\U0001F680")]
    + [(value, BROKEN) for value in ("x" * 21, "cancel" + " " * 15, "c" * 65_537, "retry\ud800", None, MISSING,
                                     5, True, [], {}, ["cancel"], {"identifier": "cancel"})])
APP_IDS: Values = ([(APP_ID, VALID)] + [(value, NOTHING_ASKED) for value in (OTHER_APP_ID, 1, APP_ID + 1, 2**63 - 1)]
                   + [(value, BROKEN) for value in NOT_IDS])


def _button_fields(action: str) -> FieldTable:
    table: FieldTable = [
        (10, ["action"], _actions([action], ["created", "completed"])),
        (8, ["installation.id", "sender.id", "check_run.id"], IDS),
        (10, ["check_run.app.id"], APP_IDS),
        (8, ["check_run", "check_run.app", "sender", "repository", "installation"], OBJECTS),
        (12, ["check_run.external_id"], EXTERNAL_IDS),
        *_user_fields("sender"),
        (8, ["repository.full_name"], REPO_NAMES),
    ]
    if action == "requested_action":
        table += [(14, ["requested_action.identifier"], IDENTIFIERS), (4, ["requested_action"], OBJECTS)]
    return table


def _installation_fields(actions: Values) -> FieldTable:
    return [(10, ["action"], actions), (10, ["installation.id"], IDS), (4, ["installation"], OBJECTS)]


def _pick(rng: random.Random) -> tuple[str, int]:
    return rng.choice(REPOSITORIES), rng.choice(INSTALLATIONS)


def _build_comment(rng: random.Random, comment_id: int) -> dict[str, Any]:
    repo, installation_id = _pick(rng)
    body = rng.choice(COMMANDS + list(REQUESTS))
    return issue_comment("created", comment_id, body, pull_request=rng.random() < 0.4, repo=repo,
                         installation_id=installation_id, number=rng.choice([7, 9, 15]))


def _build_review(rng: random.Random, comment_id: int) -> dict[str, Any]:
    repo, installation_id = _pick(rng)
    line = rng.choice([1, 14, 200])
    lines = rng.choice([(None, line), (line, line), (max(1, line - 3), line), (None, None)])
    reply_to = rng.choice([None, None, comment_id - 1])
    return review_comment(comment_id, rng.choice(COMMANDS + list(REQUESTS)), number=rng.choice([9, 15]),
                          repo=repo, installation_id=installation_id, reply_to=reply_to, lines=lines)


def _build_labeled(subject: str) -> Callable[[random.Random, int], dict[str, Any]]:
    def build(rng: random.Random, _comment_id: int) -> dict[str, Any]:
        repo, installation_id = _pick(rng)
        return labeled(subject, rng.choice(LABEL_NUMBERS), repo=repo, installation_id=installation_id,
                       label=rng.choice([TRIGGER_LABEL, TRIGGER_LABEL, "Async-Code"]))
    return build


INSTALLATION_ACTIONS = ["created", "deleted", "suspend", "unsuspend"]


def _build_installation(rng: random.Random, _comment_id: int) -> dict[str, Any]:
    # Installation 79 never has tasks: what happens to it must leave the others alone.
    return installation(rng.choice(INSTALLATION_ACTIONS), rng.choice(INSTALLATIONS + [79]))


def _build_repositories(action: str) -> Callable[[random.Random, int], dict[str, Any]]:
    def build(rng: random.Random, _comment_id: int) -> dict[str, Any]:
        return installation_repositories(action, _some_repositories(rng), rng.choice(INSTALLATIONS + [79]))
    return build


def _build_press(action: str) -> Callable[[random.Random, int], dict[str, Any]]:
    def build(rng: random.Random, _comment_id: int) -> dict[str, Any]:
        repo, installation_id = _pick(rng)
        return check_run_event(action, rng.randint(9_000_000, 9_999_999), _task_id(rng),
                               identifier=rng.choice(BUTTONS), repo=repo, installation_id=installation_id)
    return build


def aim(payload: dict[str, Any], task_id: str, repo: str, installation_id: int, check_run_id: int) -> None:
    """Point a `check_run` payload at a check run the store gave a task."""
    payload["check_run"]["id"], payload["check_run"]["external_id"] = check_run_id, task_id
    payload["repository"] = repository_payload(repo)
    payload["installation"] = _installation_reference(installation_id)


def _kind(name: str, event: str, build: Callable[[random.Random, int], dict[str, Any]], fields: FieldTable,
          result: Callable[[dict[str, Any]], ExpectedTask | ExpectedChange], **extra: Any) -> Kind:
    return Kind(name, event, build, fields, _paths_of(fields), result, **extra)


ISSUE_COMMENT = _kind(
    "comment", "issue_comment", _build_comment, COMMENT_FIELDS, _comment_task,
    swaps=(("issues", NOTHING_ASKED), ("Issue_Comment", NOTHING_ASKED),
           # Its handler reads a pull_request object this payload lacks.
           ("pull_request_review_comment", BROKEN)))
REVIEW_COMMENT = _kind(
    "review comment", "pull_request_review_comment", _build_review, REVIEW_FIELDS, _review_task,
    swaps=(("pull_request_review", NOTHING_ASKED), ("issue_comment", BROKEN)), unread=_review_unread)
ISSUE_LABEL = _kind(
    "issue label", "issues", _build_labeled("issue"), _label_fields("issue", ["issue.number", "installation.id",
                                                                              "sender.id"]),
    _label_task("issue", "label"), swaps=(("label", NOTHING_ASKED), ("pull_request", BROKEN)))
PULL_REQUEST_LABEL = _kind(
    "pull request label", "pull_request", _build_labeled("pull_request"),
    _label_fields("pull_request", ["pull_request.number", "installation.id", "sender.id"]),
    _label_task("pull_request", "pr_label"), swaps=(("pull_request_target", NOTHING_ASKED), ("issues", BROKEN)))
INSTALLATION = _kind(
    "installation", "installation", _build_installation,
    _installation_fields(_actions(INSTALLATION_ACTIONS, ["new_permissions_accepted", "added", "removed",
                                                         "suspended"])),
    _installation_change, swaps=(("installation_repositories", NOTHING_ASKED),
                                 ("integration_installation", NOTHING_ASKED)))
REPOSITORIES_ADDED, REPOSITORIES_REMOVED = (
    _kind(f"repositories {action}", "installation_repositories", _build_repositories(action),
          # The other action would read the other list: it is not among the damage.
          _installation_fields(_actions([action], ["created", "deleted"]))
          + [(16, [f"repositories_{action}"], REPOSITORY_LISTS)],
          _repositories_change, swaps=(("installation", NOTHING_ASKED),
                                       ("integration_installation_repositories", NOTHING_ASKED)))
    for action in ("added", "removed"))

BUTTON_PRESS, RERUN = (
    _kind(name, "check_run", _build_press(action), _button_fields(action), _button_press,
          swaps=(("check_suite", NOTHING_ASKED), ("Check_Run", NOTHING_ASKED), ("check_runs", NOTHING_ASKED)))
    for name, action in (("button", "requested_action"), ("re-run", "rerequested")))

KINDS = [ISSUE_COMMENT, REVIEW_COMMENT, ISSUE_LABEL, PULL_REQUEST_LABEL, INSTALLATION, REPOSITORIES_ADDED,
         REPOSITORIES_REMOVED, BUTTON_PRESS, RERUN]


def shown(value: Any) -> str:
    if value is MISSING:
        return "<removed>"
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}...<{len(text)} chars>"
