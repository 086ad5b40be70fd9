"""Hostile webhook deliveries, each with the answer intake must give, and the real service to
send them to. Used by tests/test_intake_fuzz.py and bench/intake_fuzz.py.

Deliveries start from the shapes GitHub sends (an `issue_comment` with the fields of a real
payload, and other events the App receives) and are then damaged: fields of the wrong type,
missing or null, huge strings and numbers, deep nesting, odd Unicode including escaped lone
surrogates, wrong actions and events, comments on pull requests, broken bodies and headers,
redeliveries and replays. The generator decides each damage knowing what it does to the
delivery, so every delivery carries its expected answer and whether it must create a task.
A seeded random.Random makes a run reproducible from its seed.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.payloads import sign

REPO_ROOT = Path(__file__).resolve().parent.parent
SIGNATURE_REFUSED = "missing or invalid X-Hub-Signature-256"


@dataclass(frozen=True)
class Expected:
    status: int
    message: str | None  # None: refused by the HTTP server itself, whose answer is not JSON
    reason: bool = False  # an "ignored" answer that names the malformed field


TASK = Expected(202, "task recorded")
IGNORED = Expected(200, "ignored")
MALFORMED = Expected(200, "ignored", reason=True)
PONG = Expected(200, "pong")
DUPLICATE = Expected(200, "duplicate delivery")


def refused(message: str | None) -> Expected:
    return Expected(400, message)


@dataclass(frozen=True)
class Delivery:
    index: int
    description: str
    headers: dict[str, str | bytes]  # X-GitHub-Event and X-GitHub-Delivery, as sent
    body: bytes
    expected: Expected
    signature: str | None = None  # None: sign the body with the service's secret
    task: tuple[str, int] | None = None  # (repository, comment id) of the task it creates

    @property
    def guid(self) -> str | bytes | None:
        return self.headers.get("X-GitHub-Delivery")


# Removes a field instead of setting it.
MISSING = object()

# Comment bodies the mention grammar reads as a command, and ones it does not.
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

# The fields task_from_comment reads, and their ancestors; damage anywhere else must not matter.
READ_PATHS = {
    "action", "issue", "issue.number", "issue.title", "issue.body", "issue.pull_request",
    "comment", "comment.id", "comment.body", "comment.user", "comment.user.login",
    "comment.user.type", "sender", "sender.login", "sender.id", "sender.type", "repository",
    "repository.full_name", "installation", "installation.id",
}
OBJECTS_READ = ["issue", "comment", "comment.user", "sender", "repository", "installation"]

VALID, NOT_A_COMMAND, BROKEN = "valid", "not a command", "malformed"

NOT_IDS = [0, -1, -(2**63), 2**63, 2**64, 10**39, True, False, 1.5, 7.0, 1e300, "7", "", None,
           [], {}, [7], {"id": 7}, MISSING]
NOT_OBJECTS = [5, "x", [], [{"id": 1}], None, True, MISSING]
NOT_TEXT = [5, 0, True, [], ["x"], {}, {"text": "x"}]
UNIQUE_ID = object()  # stands for a valid comment id no other delivery uses

# For the fields task_from_comment reads: how often to change one, and values with what each
# does to a command.
READ_FIELD_VALUES: list[tuple[int, list[str], list[tuple[Any, str]]]] = [
    (12, ["action"], [
        ("created", VALID), ("edited", NOT_A_COMMAND), ("deleted", NOT_A_COMMAND),
        ("pinned", NOT_A_COMMAND), (None, NOT_A_COMMAND), (MISSING, NOT_A_COMMAND),
        ("Created", BROKEN), ("created ", BROKEN), ("", BROKEN), ("c" * 65, BROKEN), (1, BROKEN),
        (True, BROKEN), ([], BROKEN), ({}, BROKEN), (["created"], BROKEN), ({"created": True}, BROKEN),
        ("created\ud800", BROKEN), ("cr\u0435ated", BROKEN)]),
    (4, ["comment.id"], [(UNIQUE_ID, VALID)] + [(value, BROKEN) for value in NOT_IDS]),
    (8, ["installation.id", "issue.number", "sender.id"],
     [(value, VALID) for value in (1, 2**31, 2**53 + 1, 2**63 - 1)] + [(value, BROKEN) for value in NOT_IDS]),
    (8, OBJECTS_READ, [(value, BROKEN) for value in NOT_OBJECTS]),
    (16, ["comment.body"],
     [(body, VALID) for body in COMMANDS] + [(body, NOT_A_COMMAND) for body in NOT_COMMANDS]
     + [(None, NOT_A_COMMAND), (MISSING, NOT_A_COMMAND)] + [(value, BROKEN) for value in NOT_TEXT]
     + [("@async-code fix " + s, BROKEN) for s in LONE_SURROGATES]
     + [("@async-code " + "x" * 65_536, BROKEN)]),
    (12, ["issue.title", "issue.body"],
     [(None, VALID), (MISSING, VALID), ("", VALID), ("x" * 65_536, VALID)]
     + [("title " + s, VALID) for s in ODD_TEXT] + [(value, BROKEN) for value in NOT_TEXT]
     + [("text " + s, BROKEN) for s in LONE_SURROGATES] + [("x" * 65_537, BROKEN)]),
    (10, ["sender.login", "comment.user.login"], [
        ("alice", VALID), ("alice_acme", VALID), ("Bob-2", VALID), ("dependabot[bot]", NOT_A_COMMAND),
        ("async-code[bot]", NOT_A_COMMAND), ("", BROKEN), ("../admin", BROKEN), ("a/b", BROKEN),
        ("al ice", BROKEN), ("alice\n", BROKEN), ("al\ud800", BROKEN), ("x" * 70_000, BROKEN),
        (None, BROKEN), (MISSING, BROKEN), (5, BROKEN), (["alice"], BROKEN)]),
    (8, ["sender.type", "comment.user.type"], [
        ("User", VALID), ("Organization", VALID), ("Mannequin", VALID), (None, VALID), (MISSING, VALID),
        ("Bot", NOT_A_COMMAND), (5, BROKEN), ([], BROKEN), (True, BROKEN), ("Us\ud800er", BROKEN)]),
    (10, ["repository.full_name"], [
        ("acme/widgets", VALID), ("acme/.github", VALID), ("Acme-Corp/widgets_2.0", VALID), ("o/r", VALID),
        ("acme", BROKEN), ("acme/widgets/issues", BROKEN), ("acme/..", BROKEN), ("../widgets", BROKEN),
        ("./widgets", BROKEN), ("", BROKEN), ("acme/wid gets", BROKEN), ("acme/widgets\x00", BROKEN),
        ("acme/\ud800", BROKEN), (5, BROKEN), (None, BROKEN), (MISSING, BROKEN), (["acme/widgets"], BROKEN)]),
    # Any value but null marks a comment on a pull request, which asks for work on its branch.
    (12, ["issue.pull_request"], [
        (None, VALID), (MISSING, VALID), ({"url": "https://api.github.com/repos/acme/widgets/pulls/7"},
                                          VALID),
        ({}, VALID), ("", VALID), (0, VALID), (False, VALID), ([], VALID)]),
]


def _user(login: str, user_id: int, kind: str = "User") -> dict[str, Any]:
    return {"login": login, "id": user_id, "node_id": f"MDQ6VXNlcj{user_id}",
            "avatar_url": f"https://avatars.githubusercontent.com/u/{user_id}?v=4", "gravatar_id": "",
            "url": f"https://api.github.com/users/{login}", "html_url": f"https://github.com/{login}",
            "type": kind, "site_admin": False}


def _repository(full_name: str = "acme/widgets") -> dict[str, Any]:
    owner, name = full_name.split("/")
    api = f"https://api.github.com/repos/{full_name}"
    return {"id": 186853002, "node_id": "MDEwOlJlcG9zaXRvcnkxODY4NTMwMDI=", "name": name,
            "full_name": full_name, "private": False, "owner": _user(owner, 38302899, "Organization"),
            "html_url": f"https://github.com/{full_name}", "description": None, "fork": False,
            "url": api, "issues_url": api + "/issues{/number}", "pulls_url": api + "/pulls{/number}",
            "created_at": "2026-05-15T15:19:25Z", "pushed_at": "2026-11-20T10:20:13Z",
            "clone_url": f"https://github.com/{full_name}.git", "homepage": None, "size": 0,
            "stargazers_count": 0, "language": "Python", "has_issues": True, "forks_count": 0,
            "archived": False, "disabled": False, "open_issues_count": 1, "license": None,
            "default_branch": "main", "topics": [], "visibility": "public"}


def _reactions(url: str) -> dict[str, Any]:
    return {"url": url + "/reactions", "total_count": 0, "+1": 0, "-1": 0, "laugh": 0, "hooray": 0,
            "confused": 0, "heart": 0, "rocket": 0, "eyes": 0}


def _issue(number: int, *, pull_request: bool = False) -> dict[str, Any]:
    url = f"https://api.github.com/repos/acme/widgets/issues/{number}"
    issue = {"url": url, "html_url": f"https://github.com/acme/widgets/issues/{number}",
             "id": 444500041, "node_id": "MDU6SXNzdWU0NDQ1MDAwNDE=", "number": number,
             "title": "The CLI cannot tell its version", "user": _user("reporter", 1),
             "labels": [{"id": 1362934389, "name": "bug", "color": "d73a4a", "default": True,
                         "description": "Something isn't working"}],
             "state": "open", "locked": False, "assignee": None, "assignees": [], "milestone": None,
             "comments": 1, "created_at": "2026-11-20T15:20:18Z", "updated_at": "2026-11-20T15:20:21Z",
             "closed_at": None, "author_association": "OWNER", "active_lock_reason": None,
             "body": "Running `widgets --version` prints nothing.", "reactions": _reactions(url)}
    if pull_request:
        issue["pull_request"] = {"url": url.replace("/issues/", "/pulls/"), "diff_url": None,
                                 "merged_at": None}
    return issue


def issue_comment(action: str, comment_id: int, body: str, *, pull_request: bool = False) -> dict[str, Any]:
    """An `issue_comment` delivery with the fields GitHub sends (a trimmed real payload)."""
    issue = _issue(7, pull_request=pull_request)
    url = f"https://api.github.com/repos/acme/widgets/issues/comments/{comment_id}"
    author = _user("alice", 9)
    return {
        "action": action,
        "issue": issue,
        "comment": {"url": url, "html_url": issue["html_url"] + f"#issuecomment-{comment_id}",
                    "issue_url": issue["url"], "id": comment_id, "node_id": "MDEyOklzc3VlQ29tbWVudA==",
                    "user": author, "created_at": "2026-11-20T15:20:21Z",
                    "updated_at": "2026-11-20T15:20:21Z", "author_association": "MEMBER",
                    "performed_via_github_app": None, "body": body, "reactions": _reactions(url)},
        "repository": _repository(),
        "organization": {"login": "acme", "id": 38302899, "url": "https://api.github.com/orgs/acme",
                         "description": ""},
        "installation": {"id": 77, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uNzc="},
        "sender": json.loads(json.dumps(author)),
    }


def other_event(rng: random.Random, comment_id: int) -> tuple[str, dict[str, Any]]:
    """An event intake receives but does not act on."""
    kind = rng.choice(["issues", "pull_request", "installation", "push", "ping", "edited", "deleted"])
    if kind == "issues":
        return "issues", {"action": "opened", "issue": _issue(8), "repository": _repository(),
                          "installation": {"id": 77}, "sender": _user("alice", 9)}
    if kind == "pull_request":
        return "pull_request", {"action": "opened", "number": 9,
                                "pull_request": {**_issue(9, pull_request=True), "draft": False,
                                                 "head": {"ref": "feature", "sha": "a" * 40},
                                                 "base": {"ref": "main", "sha": "b" * 40}},
                                "repository": _repository(), "installation": {"id": 77},
                                "sender": _user("alice", 9)}
    if kind == "installation":
        return "installation", {"action": "new_permissions_accepted", "installation": {"id": 78, "account": _user("acme", 3)},
                                "repositories": [{"id": 1, "name": "widgets", "full_name": "acme/widgets",
                                                  "private": False}], "sender": _user("alice", 9)}
    if kind == "push":
        return "push", {"ref": "refs/heads/main", "before": "0" * 40, "after": "1" * 40,
                        "commits": [{"id": "1" * 40, "message": "@async-code do it", "added": []}],
                        "repository": _repository(), "installation": {"id": 77},
                        "pusher": {"name": "alice", "email": "alice@example.invalid"}}
    if kind == "ping":
        return "ping", {"zen": "Keep it logically awesome.", "hook_id": 123,
                        "hook": {"type": "App", "id": 123, "events": ["issue_comment"], "active": True}}
    return "issue_comment", issue_comment(kind, comment_id, rng.choice(COMMANDS))


def junk(rng: random.Random, depth: int = 0) -> Any:
    """Any JSON value GitHub would never send, within what strict JSON allows."""
    roll = rng.random()
    if roll < 0.12:
        return None
    if roll < 0.2:
        return rng.choice([True, False])
    if roll < 0.35:
        digits = rng.randint(1, 40)
        return rng.choice([1, -1]) * rng.randrange(10 ** (digits - 1), 10**digits)
    if roll < 0.42:
        return rng.choice([0.0, -0.0, 1.5, 1e308, -1e308, 5e-324, 7.0])
    if roll < 0.7:
        return text_junk(rng)
    if roll < 0.8 and depth < 3:
        return [junk(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if roll < 0.9 and depth < 3:
        return {text_junk(rng)[:40]: junk(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    return nested(rng.randint(1, 100), rng)


def text_junk(rng: random.Random) -> str:
    if rng.random() < 0.03:
        return "y" * rng.randint(65_000, 70_000)
    pool = ODD_TEXT + LONE_SURROGATES + ["a", "b", " ", "@async-code do it"]
    return "".join(rng.choice(pool) for _ in range(rng.randint(0, 12)))


def nested(depth: int, rng: random.Random) -> Any:
    value: Any = rng.choice([1, "leaf", None])
    for _ in range(depth):
        value = [value] if rng.random() < 0.5 else {"a": value}
    return value


def _paths(value: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(value, dict):
        for key, child in value.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            yield path
            yield from _paths(child, path)


def _parent(payload: dict[str, Any], path: str) -> tuple[dict[str, Any] | None, str]:
    *parents, key = path.split(".")
    value: Any = payload
    for name in parents:
        value = value.get(name) if isinstance(value, dict) else None
    return (value if isinstance(value, dict) else None), key


def _get(payload: dict[str, Any], path: str) -> Any:
    parent, key = _parent(payload, path)
    return None if parent is None else parent.get(key)


def _set(payload: dict[str, Any], path: str, value: Any) -> bool:
    parent, key = _parent(payload, path)
    if parent is None:
        return False
    if value is MISSING:
        parent.pop(key, None)
    else:
        parent[key] = value
    return True


def _short(value: Any) -> str:
    if value is MISSING:
        return "<removed>"
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}...<{len(text)} chars>"


@dataclass
class DamagedPayload:
    """A payload with the changes made to it and what each did, so its answer can be told."""

    payload: dict[str, Any]
    changes: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    action_label: str = VALID  # VALID ("created"), NOT_A_COMMAND (another or none), BROKEN

    def change(self, path: str, value: Any, label: str) -> None:
        if not _set(self.payload, path, value):
            return  # an earlier change removed or replaced what holds this field
        self.changes.append(f"{path} = {_short(value)} ({label})")
        if path == "action":
            self.action_label = label
        else:
            self.labels[path] = label

    def expected(self, event: str) -> Expected:
        if event == "ping":
            return PONG
        if self.action_label == BROKEN:
            return MALFORMED
        if event == "pull_request_review_comment" and self.action_label == VALID:
            return MALFORMED  # its handler reads a pull_request object this payload lacks
        if event != "issue_comment" or self.action_label == NOT_A_COMMAND:
            return IGNORED
        if BROKEN in self.labels.values():
            return MALFORMED
        if NOT_A_COMMAND in self.labels.values():
            return IGNORED
        return TASK


class DeliveryGenerator:
    """Deliveries for one seed; each knows its answer given the ones before it."""

    def __init__(self, seed: int):
        self.seed = seed
        self.rng = random.Random(seed)
        self.index = 0
        self.recorded_guids: list[str] = []  # GUIDs of deliveries answered 2xx
        self.task_bodies: list[bytes] = []  # bodies of deliveries that created a task

    def __iter__(self) -> Iterator[Delivery]:
        return self

    def __next__(self) -> Delivery:
        self.index += 1
        kinds: list[tuple[float, Callable[[], Delivery]]] = [
            (55, self.comment), (14, self.other_event), (11, self.broken_body), (8, self.broken_headers),
            (3, self.not_an_object), (3, self.redelivery), (3, self.replay), (2, self.bad_signature),
            (1, self.oversized_guid_at_bound),
        ]
        make = self.rng.choices([k for _, k in kinds], weights=[w for w, _ in kinds])[0]
        delivery = make()
        if delivery.expected.status in (200, 202) and isinstance(delivery.guid, str):
            self.recorded_guids.append(delivery.guid)
        if delivery.expected is TASK:
            self.task_bodies.append(delivery.body)
        return delivery

    def new_guid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128)))

    def comment_id(self) -> int:
        return 1000 + self.index  # unique, so no two commands share a comment

    def delivery(self, description: str, event: str | bytes | None, guid: str | bytes | None, body: bytes,
                 expected: Expected, **extra: Any) -> Delivery:
        """A delivery; a header given as None is not sent."""
        headers = {name: value for name, value in (("X-GitHub-Event", event), ("X-GitHub-Delivery", guid))
                   if value is not None}
        return Delivery(self.index, f"#{self.index} {description}", headers, body, expected, **extra)

    def serialise(self, payload: Any) -> bytes:
        if self.rng.random() < 0.5:
            try:
                return json.dumps(payload, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError:
                pass  # a lone surrogate can only travel escaped
        return json.dumps(payload).encode()

    def damaged_comment(self) -> tuple[str, DamagedPayload]:
        """A command, then changes to fields the handler reads and noise in fields it does not."""
        rng = self.rng
        damaged = DamagedPayload(issue_comment("created", self.comment_id(), rng.choice(COMMANDS)))
        for _ in range(rng.choice([0, 0, 1, 1, 1, 2, 3])):
            self.change_read_field(damaged)
        for _ in range(rng.choice([0, 1, 1, 2, 3, 6])):
            self.add_noise(damaged)
        event = "issue_comment"
        if rng.random() < 0.04:
            event = rng.choice(["issues", "ping", "pull_request_review_comment", "Issue_Comment"])
            damaged.changes.append(f"X-GitHub-Event = {event!r}")
        return event, damaged

    def change_read_field(self, damaged: DamagedPayload) -> None:
        weights = [weight for weight, _, _ in READ_FIELD_VALUES]
        _, paths, values = self.rng.choices(READ_FIELD_VALUES, weights=weights)[0]
        path = self.rng.choice(paths)
        value, label = self.rng.choice(values)
        if value is UNIQUE_ID:
            value = 2**63 - 1 - self.index  # as large as SQLite allows, and no two comments share it
        damaged.change(path, value, label)

    def add_noise(self, damaged: DamagedPayload) -> None:
        """Damage a field the handler does not read, or add one."""
        rng = self.rng
        unread = [p for p in _paths(damaged.payload) if p not in READ_PATHS]
        if rng.random() < 0.3 or not unread:
            objects = [""] + [p for p in _paths(damaged.payload)
                              if isinstance(_get(damaged.payload, p), dict) and p not in READ_PATHS]
            holder = rng.choice(objects)
            key = rng.choice(["extra", "x-\u00e9", "", " ", "\ud800", "__proto__", "constructor", "0"])
            path = f"{holder}.{key}" if holder else key
        else:
            path = rng.choice(unread)
        if path in READ_PATHS:
            return
        roll = rng.random()
        if roll < 0.02:
            value: Any = rng.choice(["x", "\u4e2d"]) * rng.randint(100_000, 300_000)
        elif roll < 0.15:
            value = MISSING
        else:
            value = junk(rng)
        if _set(damaged.payload, path, value):
            damaged.changes.append(f"{path} = {_short(value)} (noise)")

    def comment(self) -> Delivery:
        event, damaged = self.damaged_comment()
        expected = damaged.expected(event)
        task = ((damaged.payload["repository"]["full_name"], damaged.payload["comment"]["id"])
                if expected is TASK else None)
        guid: str = self.new_guid()
        if self.rng.random() < 0.05:
            guid = (guid + "-" * 200)[:200]  # the longest delivery id intake accepts
            damaged.changes.append("a 200-character delivery id")
        description = "comment: " + ("; ".join(damaged.changes) or "a plain command")
        return self.delivery(description, event, guid, self.serialise(damaged.payload), expected, task=task)

    def other_event(self) -> Delivery:
        event, payload = other_event(self.rng, self.comment_id())
        damaged = DamagedPayload(payload)
        for _ in range(self.rng.choice([0, 1, 2, 4])):
            self.add_noise(damaged)
        description = f"{event}/{payload.get('action')}: "
        expected = PONG if event == "ping" else IGNORED
        if self.rng.random() < 0.2 and event != "ping":
            damaged.change("action", self.rng.choice([[], {}, 5, "Opened", "x" * 100, "op\ud800"]), BROKEN)
            expected = MALFORMED
        description += "; ".join(damaged.changes) or "as sent"
        return self.delivery(description, event, self.new_guid(), self.serialise(damaged.payload), expected)

    def broken_body(self) -> Delivery:
        """A body that is not strict JSON, built around a command that would create a task."""
        rng = self.rng
        payload = issue_comment("created", self.comment_id(), rng.choice(COMMANDS))
        text = json.dumps(payload).encode()

        def member(raw: bytes) -> bytes:
            return text[:-1] + b', "extra": ' + raw + b"}"

        kind = rng.choice(["nan", "duplicate", "integer", "deep", "utf8", "truncated", "bom", "utf16",
                           "junk", "empty", "duplicate nested"])
        if kind == "nan":
            name = rng.choice(["NaN", "Infinity", "-Infinity"])
            body = member(rng.choice([b"%s", b"[1, %s]", b'{"a": %s}']) % name.encode())
            message = f"body has {name}, which is not JSON"
        elif kind == "duplicate":
            key = rng.choice([b"action", b"comment", b"installation"])
            body = text[:-1] + b', "%s": "created"}' % key
            message = "body has an object with a duplicate key"
        elif kind == "duplicate nested":
            body, message = member(b'[{"id": 1, "id": 1}]'), "body has an object with a duplicate key"
        elif kind == "integer":
            digits = rng.choice([41, 42, 100, 4300, 5000, 100_000])
            body = member(rng.choice([b"", b"-"]) + b"9" * digits)
            message = "body has an integer longer than 40 digits"
        elif kind == "deep":
            depth = rng.choice([5_000, 20_000, 100_000, 1_000_000])
            opener, closer = rng.choice([(b"[", b"]"), (b'{"a":', b"}")])
            body = member(opener * depth + b"1" + closer * depth)
            message = "body is nested too deeply"
        elif kind == "utf8":
            bad = rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80", b"\x80"])
            body, message = member(b'"' + bad + b'"'), "body is not UTF-8"
        elif kind == "truncated":
            body, message = text[:rng.randrange(1, len(text))], "body is not JSON"
        elif kind == "bom":
            body, message = b"\xef\xbb\xbf" + text, "body is not JSON"
        elif kind == "utf16":
            # With a byte order mark the first byte is not UTF-8; without one NULs follow each byte.
            body, message = rng.choice([(text.decode().encode("utf-16"), "body is not UTF-8"),
                                        (text.decode().encode("utf-16-le"), "body is not JSON")])
        elif kind == "junk":
            body = b"{" + bytes(rng.choice(b" !#$%&'()*+,-./0123456789:;<=>?@ABCZabcz[]\\^_`|~\"")
                                for _ in range(rng.randint(0, 200)))
            message = "body is not JSON"
        else:
            body, message = b"", "body is not JSON"
        return self.delivery(f"broken body ({kind})", "issue_comment", self.new_guid(), body,
                             refused(message))

    def broken_headers(self) -> Delivery:
        rng = self.rng
        body = json.dumps(issue_comment("created", self.comment_id(), rng.choice(COMMANDS))).encode()
        event: str | bytes | None = "issue_comment"
        guid: str | bytes | None = self.new_guid()
        kind = rng.choice(["no event", "empty event", "no guid", "long event", "long guid",
                           "odd event", "odd guid", "control character"])
        if kind in ("no event", "empty event"):
            event, message = (None if kind == "no event" else ""), "missing X-GitHub-Event header"
        elif kind == "no guid":
            guid, message = rng.choice([None, ""]), "missing X-GitHub-Delivery header"
        elif kind == "long event":
            event = "issue_comment" + "x" * rng.randint(88, 5_000)
            message = "X-GitHub-Event is longer than 100 characters"
        elif kind == "long guid":
            guid = str(guid) + "-" * rng.randint(165, 100_000)
            message = "X-GitHub-Delivery is longer than 200 characters"
        elif kind == "odd event":
            event = rng.choice(["issue_comment, issue_comment", "issue comment",
                                "issue_comment\tx", "\u00e9v\u00e9nement".encode(), "\U0001F680".encode()])
            message = "X-GitHub-Event has characters other than visible ASCII"
        elif kind == "odd guid":
            guid = rng.choice([f"{guid} {guid}", f"{guid},{guid}".replace(",", ", "),
                               (str(guid) + "\u00e9").encode("latin-1"), (str(guid) + "\u2603").encode()])
            message = "X-GitHub-Delivery has characters other than visible ASCII"
        else:
            # The HTTP server refuses these itself, before intake sees them.
            guid = str(guid).encode() + rng.choice([b"\x00", b"\x01", b"\x7f", b"\x1b"]) + b"x"
            message = None
        return self.delivery(f"broken headers ({kind})", event, guid, body, refused(message))

    def not_an_object(self) -> Delivery:
        command = issue_comment("created", self.comment_id(), COMMANDS[0])
        value = self.rng.choice([[], [command], "@async-code do it", 5, None, True, 1.5])
        return self.delivery(f"not an object: {_short(value)}", "issue_comment", self.new_guid(),
                             self.serialise(value), refused("body is not a JSON object"))

    def redelivery(self) -> Delivery:
        """A new command under the delivery id of an earlier delivery."""
        if not self.recorded_guids:
            return self.comment()
        guid = self.rng.choice(self.recorded_guids)
        body = json.dumps(issue_comment("created", self.comment_id(), COMMANDS[0])).encode()
        return self.delivery(f"a new command under the used delivery id {guid}", "issue_comment", guid, body,
                             DUPLICATE)

    def replay(self) -> Delivery:
        """The body of an earlier command that created a task, under a new delivery id."""
        if not self.task_bodies:
            return self.comment()
        body = self.rng.choice(self.task_bodies)
        return self.delivery("a command's body replayed under a new delivery id", "issue_comment",
                             self.new_guid(), body, DUPLICATE)

    def bad_signature(self) -> Delivery:
        body = json.dumps(issue_comment("created", self.comment_id(), COMMANDS[0])).encode()
        signature = self.rng.choice(["", "sha256=" + "0" * 64, "sha256=\u00e9" + "0" * 63,
                                     sign(b"other bytes", "secret"), "sha1=" + "0" * 40])
        expected = Expected(401, SIGNATURE_REFUSED)
        return self.delivery(f"signature {signature[:20]!r}", "issue_comment", self.new_guid(), body,
                             expected, signature=signature)

    def oversized_guid_at_bound(self) -> Delivery:
        """One character over the delivery id's bound, on a command."""
        body = json.dumps(issue_comment("created", self.comment_id(), COMMANDS[0])).encode()
        guid = (self.new_guid() + "-" * 201)[:201]
        return self.delivery("a 201-character delivery id", "issue_comment", guid, body,
                             refused("X-GitHub-Delivery is longer than 200 characters"))


@dataclass(frozen=True)
class Answer:
    status: int
    json: dict[str, Any] | None


def send(connection: http.client.HTTPConnection, delivery: Delivery, secret: str) -> Answer:
    """Post one delivery, signed unless it carries its own signature, and read the answer."""
    signature = delivery.signature if delivery.signature is not None else sign(delivery.body, secret)
    connection.putrequest("POST", "/webhooks", skip_accept_encoding=True)
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(len(delivery.body)))
    for name, value in delivery.headers.items():
        connection.putheader(name, value)
    if signature:
        connection.putheader("X-Hub-Signature-256", signature.encode("utf-8"))
    connection.endheaders(delivery.body)
    response = connection.getresponse()
    raw = response.read()
    try:
        answer = json.loads(raw) if response.getheader("Content-Type") == "application/json" else None
    except ValueError:
        answer = None
    return Answer(response.status, answer)


def problem_with(answer: Answer, delivery: Delivery) -> str | None:
    """How an answer differs from what the delivery must get, or None."""
    expected = delivery.expected
    if answer.status >= 500:
        return f"answered {answer.status}"
    if answer.status != expected.status:
        return f"answered {answer.status} {answer.json}, expected {expected.status} {expected.message!r}"
    if expected.message is None:
        return None
    if answer.json is None or answer.json.get("message") != expected.message:
        return f"answered {answer.json}, expected the message {expected.message!r}"
    if ("reason" in answer.json) != expected.reason:
        return f"answered {answer.json}, expected {'a' if expected.reason else 'no'} reason"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


@dataclass
class RunningService:
    process: subprocess.Popen
    port: int
    secret: str
    database: Path
    log_path: Path

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)


@contextmanager
def running_service(secret: str, extra_env: dict[str, str] | None = None) -> Iterator[RunningService]:
    """`async-code serve --workers 0` from this checkout, in a temporary data directory."""
    with tempfile.TemporaryDirectory() as data:
        port = free_port()
        # PYTHONPATH: the checkout under test, whatever an installed copy of the package points at.
        env = {"PATH": os.environ.get("PATH", ""), "HOME": data, "GITHUB_WEBHOOK_SECRET": secret,
               "ASYNC_CODE_DATA_DIR": data, "PYTHONPATH": str(REPO_ROOT), **(extra_env or {})}
        log_path = Path(data) / "service.log"
        with open(log_path, "w") as log:
            process = subprocess.Popen([sys.executable, "-m", "app", "serve", "--workers", "0",
                                        "--port", str(port)], env=env, cwd=data, stdout=log,
                                       stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"the service exited early:\n{log_path.read_text()}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the service did not listen:\n{log_path.read_text()}") from None
                    time.sleep(0.05)
            yield RunningService(process, port, secret, Path(data) / "async-code.db", log_path)
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
