"""Hostile webhook deliveries, each with the answer intake must give and what the store must
then hold, and the real service to send them to. Used by tests/test_intake_fuzz.py and
bench/intake_fuzz.py.

Deliveries start from the shapes GitHub sends (tests/intake_fuzz_events.py: comments on issues
and pull requests with commands and options, review comments, labels on issues and pull
requests, installation and repository changes, buttons pressed on check runs, and events the App
does not act on) and are then
damaged: fields of the wrong type, missing or null, huge strings and numbers, deep nesting, odd
Unicode including escaped lone surrogates, wrong actions and events, broken bodies and headers,
redeliveries and replays. The generator decides each damage knowing what it does to the
delivery, and keeps a model of the store (which tasks wait, which installation changes finish
them, which tasks have check runs and which of their buttons were pressed), so every delivery
carries its expected answer and the store's expected contents are known after each one. A seeded
random.Random makes a run reproducible from its seed.

With `--workers 0` no task ever gets a check run, so a delivery may carry `runner_writes`: the
check run ids the runner would have stored for a task, written to the store just before it is
sent (`write_for_runner`). A press names its task by id, which only the service's answer tells:
whoever sends the deliveries reports each answer with `DeliveryGenerator.answered`.
"""

from __future__ import annotations

import copy
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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tests.intake_fuzz_events import (
    APP_ID, BROKEN, BUTTON_PRESS, COMMANDS, INSTALLATION, ISSUE_COMMENT, ISSUE_LABEL, KINDS, LONE_SURROGATES,
    MISSING, NOTHING_ASKED, ODD_TEXT, OTHER_APP_ID, PULL_REQUEST_LABEL, REPOSITORIES, REPOSITORIES_ADDED,
    REPOSITORIES_REMOVED, RERUN, REVIEW_COMMENT, UNIQUE_ID, VALID, ExpectedChange, ExpectedPress, ExpectedRequest,
    ExpectedTask, FieldTable, Kind, Make, aim, check_run_event, installation, installation_repositories,
    issue_comment, issue_payload, labeled, pull_request_payload, repository_payload, review_comment, shown,
    user_payload)
from tests.payloads import sign

REPO_ROOT = Path(__file__).resolve().parent.parent
SIGNATURE_REFUSED = "missing or invalid X-Hub-Signature-256"


@dataclass(frozen=True)
class Expected:
    status: int
    message: str | None  # None: refused by the HTTP server itself, whose answer is not JSON
    reason: bool = False  # an "ignored" answer that names the malformed field


TASK = Expected(202, "task recorded")
RECORDED = Expected(200, "recorded")  # an installation change
IGNORED = Expected(200, "ignored")
MALFORMED = Expected(200, "ignored", reason=True)
PONG = Expected(200, "pong")
DUPLICATE = Expected(200, "duplicate delivery")


def refused(message: str | None) -> Expected:
    return Expected(400, message)


@dataclass(frozen=True)
class RunnerWrite:
    """What the runner writes when a task gets its check runs, done to the store just before a
    delivery is sent: with `--workers 0` nothing else would ever give a task a check run."""

    task_id: str
    check_run_id: int
    pushed_check_run_id: int | None = None


def write_for_runner(store: Any, delivery: Delivery) -> None:
    """Make in `store` (a task store) the writes the runner would have made before `delivery`."""
    for write in delivery.runner_writes:
        store.update(write.task_id, check_run_id=write.check_run_id,
                     pushed_check_run_id=write.pushed_check_run_id)


@dataclass(frozen=True)
class Delivery:
    index: int
    description: str
    headers: dict[str, str | bytes]  # X-GitHub-Event and X-GitHub-Delivery, as sent
    body: bytes
    expected: Expected
    signature: str | None = None  # None: sign the body with the service's secret
    task: tuple[str, int | None] | None = None  # (repository, comment id) of the task it creates
    stored: ExpectedTask | ExpectedChange | None = None  # what it records, as first recorded
    kind: str = ""  # the Kind it was built from, if any
    runner_writes: tuple[RunnerWrite, ...] = ()  # to make in the store before sending it

    @property
    def guid(self) -> str | bytes | None:
        return self.headers.get("X-GitHub-Delivery")


def other_event(rng: random.Random, comment_id: int) -> tuple[str, dict[str, Any]]:
    """An event intake receives but does not act on."""
    kind = rng.choice(["issues", "pull_request", "installation", "push", "ping", "edited", "deleted",
                       "review edited", "unlabeled", "label"])
    if kind == "issues":
        return "issues", {"action": "opened", "issue": issue_payload(8), "repository": repository_payload(),
                          "installation": {"id": 77}, "sender": user_payload("alice", 9)}
    if kind == "pull_request":
        return "pull_request", {"action": "opened", "number": 9, "pull_request": pull_request_payload(9),
                                "repository": repository_payload(), "installation": {"id": 77},
                                "sender": user_payload("alice", 9)}
    if kind == "installation":
        payload = installation("created", 78)
        return "installation", {**payload, "action": "new_permissions_accepted"}
    if kind == "push":
        return "push", {"ref": "refs/heads/main", "before": "0" * 40, "after": "1" * 40,
                        "commits": [{"id": "1" * 40, "message": "@async-code do it", "added": []}],
                        "repository": repository_payload(), "installation": {"id": 77},
                        "pusher": {"name": "alice", "email": "alice@example.invalid"}}
    if kind == "ping":
        return "ping", {"zen": "Keep it logically awesome.", "hook_id": 123,
                        "hook": {"type": "App", "id": 123, "events": ["issue_comment"], "active": True}}
    if kind == "review edited":
        payload = review_comment(comment_id, rng.choice(COMMANDS))
        return "pull_request_review_comment", {**payload, "action": "edited",
                                               "changes": {"body": {"from": "typo"}}}
    if kind == "unlabeled":
        subject = rng.choice(["issue", "pull_request"])
        payload = labeled(subject, 7)
        return "issues" if subject == "issue" else "pull_request", {**payload, "action": "unlabeled"}
    if kind == "label":
        return "label", {"action": "created", "label": labeled("issue", 7)["label"],
                         "repository": repository_payload(), "installation": {"id": 77},
                         "sender": user_payload("alice", 9)}
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


@dataclass
class DamagedPayload:
    """A payload with the changes made to it and what each did, so its answer can be told."""

    payload: dict[str, Any]
    changes: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    action_label: str = VALID  # VALID (a handled action), NOTHING_ASKED (another or none), BROKEN

    def change(self, path: str, value: Any, label: str) -> None:
        if not _set(self.payload, path, value):
            return  # an earlier change removed or replaced what holds this field
        self.changes.append(f"{path} = {shown(value)} ({label})")
        if path == "action":
            self.action_label = label
        else:
            self.labels[path] = label

    def outcome(self, kind: Kind) -> str:
        """What the handler of `kind` makes of the payload: VALID, NOTHING_ASKED or BROKEN."""
        if self.action_label != VALID:
            return self.action_label  # no handler for it, or an action that cannot choose one
        unread = kind.unread(self.payload)
        read = [label for path, label in self.labels.items() if path not in unread]
        if BROKEN in read:
            return BROKEN  # every handler reads all it needs before it decides anything
        return NOTHING_ASKED if NOTHING_ASKED in read else VALID


@dataclass(frozen=True)
class ButtonTarget:
    """A task the runner gave check runs, whose buttons make command tasks."""

    repo: str
    installation_id: int
    number: int
    check_run_ids: tuple[int, ...]


@dataclass
class StoreModel:
    """What the store must hold after the deliveries so far, each answered as expected."""

    tasks: dict[str, ExpectedTask] = field(default_factory=dict)  # by delivery id
    installation_rows: list[tuple[str, int, str | None, str]] = field(default_factory=list)
    targets: dict[str, ButtonTarget] = field(default_factory=dict)  # by task id
    pressed: set[tuple[str, str]] = field(default_factory=set)  # (task id, button) pressed once

    def give_check_runs(self, task_id: str, task: ExpectedTask, write: RunnerWrite) -> None:
        runs = (write.check_run_id,) + ((write.pushed_check_run_id,) if write.pushed_check_run_id else ())
        self.targets[task_id] = ButtonTarget(task.repo, task.installation_id, task.number, runs)

    def press(self, guid: str, press: ExpectedPress) -> Expected:
        """A press becomes a command task on the check run's task, once per task and button; a
        press on any other check run asks for nothing."""
        target = self.targets.get(press.task_id)
        if (target is None or (target.repo, target.installation_id) != (press.repo, press.installation_id)
                or press.check_run_id not in target.check_run_ids):
            return IGNORED
        if (press.task_id, press.action) in self.pressed:
            return DUPLICATE
        self.pressed.add((press.task_id, press.action))
        self.tasks[guid] = ExpectedTask(
            trigger="check_run", repo=press.repo, installation_id=press.installation_id, number=target.number,
            comment_id=None, requested_by=press.requested_by, requested_by_id=press.requested_by_id,
            issue_title="", issue_body="", request=ExpectedRequest(command=press.action, instruction=""),
            target_task=press.task_id)
        return TASK

    def label_waiting(self, repo: str, number: int) -> bool:
        """Whether a label already asked for work on this issue or pull request that still waits."""
        return any(task.asked_by_label and task.status == "pending" and (task.repo, task.number) == (repo, number)
                   for task in self.tasks.values())

    def record(self, guid: str, result: ExpectedTask | ExpectedChange | ExpectedPress) -> Expected:
        """Record what a valid delivery asks for; the answer it gets."""
        if isinstance(result, ExpectedPress):
            return self.press(guid, result)
        if isinstance(result, ExpectedChange):
            self.installation_rows.extend(result.rows(guid))
            for task_guid, task in self.tasks.items():
                error = result.finishes(task)
                if error is not None:
                    self.tasks[task_guid] = replace(task, status="failed", error=error)
            return RECORDED
        if result.asked_by_label and self.label_waiting(result.repo, result.number):
            return DUPLICATE
        self.tasks[guid] = result
        return TASK


# Kinds of delivery and how often each comes, out of about 100.
RANDOM_KINDS = [(26, ISSUE_COMMENT), (12, REVIEW_COMMENT), (9, ISSUE_LABEL), (9, PULL_REQUEST_LABEL),
                (5, INSTALLATION), (3, REPOSITORIES_ADDED), (4, REPOSITORIES_REMOVED), (7, BUTTON_PRESS),
                (3, RERUN)]
BUTTON_KINDS = (BUTTON_PRESS, RERUN)
AIMED = 0.6  # how often a random press is on a check run the store gave a task


class DeliveryGenerator:
    """Deliveries for one seed; each knows its answer given the ones before it.

    A fixed story comes first in every run (`scenario`), then random deliveries.
    """

    def __init__(self, seed: int):
        self.seed = seed
        self.rng = random.Random(seed)
        self.index = 0
        self.model = StoreModel()
        self.recorded_guids: list[str] = []  # GUIDs of deliveries answered 2xx
        self.task_ids: dict[str, str] = {}  # the id intake gave each task, by delivery id (`answered`)
        # Valid bodies that asked for something, with what: replayed under new delivery ids.
        self.replayable: list[tuple[str, bytes, ExpectedTask | ExpectedChange]] = []
        self.script = self.scenario()

    def __iter__(self) -> Iterator[Delivery]:
        return self

    def __next__(self) -> Delivery:
        self.index += 1
        delivery = next(self.script, None)
        if delivery is None:
            kinds: list[tuple[float, Callable[[], Delivery]]] = [
                *((weight, lambda kind=kind: self.handled(kind)) for weight, kind in RANDOM_KINDS),
                (8, self.other_event), (9, self.broken_body), (6, self.broken_headers), (2, self.not_an_object),
                (3, self.redelivery), (6, self.replay), (2, self.bad_signature), (1, self.oversized_guid_at_bound),
            ]
            make = self.rng.choices([k for _, k in kinds], weights=[w for w, _ in kinds])[0]
            delivery = make()
        if delivery.expected.status in (200, 202) and isinstance(delivery.guid, str):
            self.recorded_guids.append(delivery.guid)
        return delivery

    def answered(self, delivery: Delivery, answer: Answer) -> None:
        """Learn the id of the task a delivery made, which a check run's external_id names."""
        if delivery.expected is TASK and answer.json and isinstance(answer.json.get("task_id"), str):
            self.task_ids[delivery.guid] = answer.json["task_id"]

    def task_id_of(self, delivery: Delivery) -> str:
        if delivery.guid not in self.task_ids:
            raise RuntimeError(f"{delivery.description}: its task's id is not known: report each answer "
                               "with DeliveryGenerator.answered before taking the next delivery")
        return self.task_ids[delivery.guid]

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

    def valid_payload(self) -> tuple[str, dict[str, Any]]:
        """A payload as GitHub sends it for any event intake acts on."""
        kind = self.rng.choice(KINDS)
        return kind.event, kind.build(self.rng, self.comment_id())

    # Deliveries intake acts on

    def settle(self, kind: Kind, event: str, guid: str, body: bytes, payload: dict[str, Any], outcome: str,
               description: str, **extra: Any) -> Delivery:
        """The delivery of a payload whose handler makes `outcome` of it, and what it records."""
        result = kind.result(payload) if outcome == VALID else None
        if outcome == BROKEN:
            expected = MALFORMED
        elif outcome == NOTHING_ASKED:
            expected = IGNORED
        elif outcome == "ping":
            expected = PONG
        else:
            expected = self.model.record(guid, result)
            self.replayable.append((event, body, result))
        return self.delivery(f"{kind.name}: {description}", event, guid, body, expected,
                             **self.what_it_stores(guid, result, expected), kind=kind.name, **extra)

    def what_it_stores(self, guid: str, result: Any, expected: Expected) -> dict[str, Any]:
        """A delivery's `task` and `stored`, from its answer."""
        if expected is TASK:
            task = self.model.tasks[guid]
            return {"task": (task.repo, task.comment_id), "stored": task}
        return {"stored": result if expected is RECORDED else None}

    def handled(self, kind: Kind) -> Delivery:
        """A valid payload of `kind`, then changes to fields its handler reads and noise in
        fields it does not."""
        rng = self.rng
        damaged = DamagedPayload(kind.build(rng, self.comment_id()))
        runner_writes = ()
        if kind in BUTTON_KINDS and rng.random() < AIMED:
            runner_writes = self.give_check_runs()
            if self.model.targets:
                # In the order the tasks got check runs, so that a seed replays the same choices.
                task_id = rng.choice(list(self.model.targets))
                target = self.model.targets[task_id]
                aim(damaged.payload, task_id, target.repo, target.installation_id, rng.choice(target.check_run_ids))
                damaged.changes.append(f"on a check run of task {task_id}")
        for _ in range(rng.choice([0, 0, 1, 1, 1, 2, 3])):
            self.change_read_field(damaged, kind.fields)
        for _ in range(rng.choice([0, 1, 1, 2, 3, 6])):
            self.add_noise(damaged, kind.read_paths)
        outcome = damaged.outcome(kind)
        event = kind.event
        if damaged.action_label == VALID and rng.random() < 0.04:
            event, outcome = rng.choice(kind.swaps + (("ping", "ping"),))
            damaged.changes.append(f"X-GitHub-Event = {event!r}")
        guid = self.new_guid()
        if rng.random() < 0.05:
            guid = (guid + "-" * 200)[:200]  # the longest delivery id intake accepts
            damaged.changes.append("a 200-character delivery id")
        return self.settle(kind, event, guid, self.serialise(damaged.payload), damaged.payload, outcome,
                           "; ".join(damaged.changes) or "as sent", runner_writes=runner_writes)

    def give_check_runs(self) -> tuple[RunnerWrite, ...]:
        """Now and then, check runs for a work task that has none yet, as the runner gives them
        (never to a command, nor to a request it could not read: those never run)."""
        if self.rng.random() >= 0.25:
            return ()
        waiting = [guid for guid, task in self.model.tasks.items()
                   if task.request.command is None and task.request.problem is None
                   and guid in self.task_ids and self.task_ids[guid] not in self.model.targets]
        if not waiting:
            return ()
        guid = self.rng.choice(waiting)
        first = 9_300_000 + 2 * self.index
        write = RunnerWrite(self.task_ids[guid], first, first + 1 if self.rng.random() < 0.5 else None)
        self.model.give_check_runs(write.task_id, self.model.tasks[guid], write)
        return (write,)

    def change_read_field(self, damaged: DamagedPayload, table: FieldTable) -> None:
        _, paths, values = self.rng.choices(table, weights=[weight for weight, _, _ in table])[0]
        path = self.rng.choice(paths)
        value, label = self.rng.choice(values)
        if value is UNIQUE_ID:
            value = 2**63 - 1 - self.index  # as large as SQLite allows, and no two comments share it
        elif isinstance(value, Make):
            value = value.build(self.rng)
        elif value is not MISSING:
            value = copy.deepcopy(value)  # noise may change it in the payload; the table must stay as it is
        damaged.change(path, value, label)

    def add_noise(self, damaged: DamagedPayload, read_paths: frozenset[str]) -> None:
        """Damage a field the handler does not read, or add one."""
        rng = self.rng
        unread = [p for p in _paths(damaged.payload) if p not in read_paths]
        if rng.random() < 0.3 or not unread:
            objects = [""] + [p for p in _paths(damaged.payload)
                              if isinstance(_get(damaged.payload, p), dict) and p not in read_paths]
            holder = rng.choice(objects)
            key = rng.choice(["extra", "x-\u00e9", "", " ", "\ud800", "__proto__", "constructor", "0"])
            path = f"{holder}.{key}" if holder else key
        else:
            path = rng.choice(unread)
        if path in read_paths:
            return
        roll = rng.random()
        if roll < 0.02:
            value: Any = rng.choice(["x", "\u4e2d"]) * rng.randint(100_000, 300_000)
        elif roll < 0.15:
            value = MISSING
        else:
            value = junk(rng)
        if _set(damaged.payload, path, value):
            damaged.changes.append(f"{path} = {shown(value)} (noise)")

    def replay(self) -> Delivery:
        """The body of an earlier valid delivery under a new delivery id: a comment that has a
        task gets none, a label gets one only when the first no longer waits, and an
        installation change is recorded again."""
        if not self.replayable:
            return self.handled(ISSUE_COMMENT)
        event, body, result = self.rng.choice(self.replayable)
        guid = self.new_guid()
        if isinstance(result, ExpectedTask) and not result.asked_by_label:
            expected = DUPLICATE
        else:
            expected = self.model.record(guid, result)
        return self.delivery(f"{event} body replayed under a new delivery id", event, guid, body, expected,
                             **self.what_it_stores(guid, result, expected))

    # The story every run tells first

    def scenario(self) -> Iterator[Delivery]:
        """Labels, commands and options on issues and pull requests and in a review thread, then
        installation changes that finish some of their tasks and leave the others waiting, and
        a label replayed while its task waits and after it finished."""
        a, b = REPOSITORIES
        label = yield from self.scripted("the trigger label on an issue", ISSUE_LABEL,
                                         labeled("issue", 7, repo=a, installation_id=77))
        yield from self.scripted_replay("the label replayed while its task waits", label, DUPLICATE)
        pr_label = yield from self.scripted(
            "the trigger label in capitals on a pull request", PULL_REQUEST_LABEL,
            labeled("pull_request", 8, repo=a, installation_id=77, label="ASYNC-CODE"))
        other_repo = yield from self.scripted(
            "the label on the same number in another repository", PULL_REQUEST_LABEL,
            labeled("pull_request", 8, repo=b, installation_id=78))
        cancel = yield from self.scripted("`cancel` on a pull request", ISSUE_COMMENT, issue_comment(
            "created", 101, "@async-code cancel", pull_request=True, repo=b, installation_id=78, number=9))
        options_pr = yield from self.scripted("issue options on a pull request", ISSUE_COMMENT, issue_comment(
            "created", 102, "@async-code --base x --draft do it", pull_request=True, repo=b, installation_id=78,
            number=9))
        options_issue = yield from self.scripted("the same options on an issue", ISSUE_COMMENT, issue_comment(
            "created", 103, "@async-code --base x --draft do it", repo=a, installation_id=77, number=15))
        unknown = yield from self.scripted("an unknown option", ISSUE_COMMENT, issue_comment(
            "created", 104, "@async-code --force do it", pull_request=True, repo=a, installation_id=77, number=9))
        quote = yield from self.scripted("an unterminated quote", ISSUE_COMMENT, issue_comment(
            "created", 105, "@async-code --base 'x do it", repo=b, installation_id=78, number=15))
        review = yield from self.scripted("a command with an option in a review thread", REVIEW_COMMENT,
                                          review_comment(106, "@async-code --draft cancel", number=9, repo=b,
                                                         installation_id=78, reply_to=100))
        on_a = [label, pr_label, options_issue, unknown]
        on_b = [other_repo, cancel, options_pr, quote, review]
        yield from self.scripted(f"{a} removed from installation 77", REPOSITORIES_REMOVED,
                                 installation_repositories("removed", [a], 77), RECORDED)
        self.check_finished(on_a + on_b, on_a)
        relabel = yield from self.scripted_replay("the label replayed after its task finished", label, TASK)
        yield from self.scripted("installation 78 suspended", INSTALLATION, installation("suspend", 78), RECORDED)
        self.check_finished(on_b + [relabel], on_b)
        yield from self.scripted("installation 78 unsuspended", INSTALLATION, installation("unsuspend", 78),
                                 RECORDED)
        yield from self.scripted("installation 79 deleted", INSTALLATION, installation("deleted", 79), RECORDED)
        self.check_finished([relabel], [])
        yield from self.scripted("installation 77 deleted", INSTALLATION, installation("deleted", 77), RECORDED)
        self.check_finished([relabel], [relabel])
        yield from self.scripted("installation 77 created", INSTALLATION, installation("created", 77), RECORDED)
        yield from self.scripted("both repositories added to installation 77", REPOSITORIES_ADDED,
                                 installation_repositories("added", [a, b], 77), RECORDED)
        yield from self.scripted("no repositories removed", REPOSITORIES_REMOVED,
                                 installation_repositories("removed", [], 77), IGNORED, outcome=NOTHING_ASKED)
        yield from self.button_story()

    def button_story(self) -> Iterator[Delivery]:
        """Buttons pressed on a task's check runs, which the runner stands in for giving it, and on
        check runs that are not its; then a second task with one check run, for random presses."""
        a, b = REPOSITORIES
        work = yield from self.scripted("work asked on a pull request", ISSUE_COMMENT, issue_comment(
            "created", 107, "@async-code make the tests faster", pull_request=True, repo=a, installation_id=77,
            number=20))
        task_id = self.task_id_of(work)
        runs = RunnerWrite(task_id, 9_100_001, 9_100_002)
        assert isinstance(work.stored, ExpectedTask)
        self.model.give_check_runs(task_id, work.stored, runs)

        def press(description: str, expected: Expected, identifier: str | None = "cancel", *,
                  run: int = runs.check_run_id, outcome: str = VALID, runner_writes: tuple[RunnerWrite, ...] = (),
                  **payload: Any) -> Iterator[Delivery]:
            kind = BUTTON_PRESS if identifier is not None else RERUN
            event = check_run_event("requested_action" if identifier else "rerequested", run,
                                    payload.pop("external_id", task_id), identifier=identifier,
                                    **{"repo": a, "installation_id": 77, **payload})
            return self.scripted(description, kind, event, expected, outcome=outcome, runner_writes=runner_writes)

        yield from press("cancel pressed on the task's check run, once the runner gave it one", TASK,
                         runner_writes=(runs,))
        yield from press("cancel pressed again", DUPLICATE)
        yield from press("retry pressed on the check run of the commit the task pushed", TASK, "retry",
                         run=runs.pushed_check_run_id)
        yield from press("Re-run on the task's check run: retry, pressed already", DUPLICATE, None)
        yield from press("continue pressed on a check run that is not the task's", IGNORED, "continue", run=9_100_003)
        yield from press("continue pressed on the task's check run in another repository", IGNORED, "continue",
                         repo=b)
        yield from press("continue pressed through another installation", IGNORED, "continue", installation_id=78)
        yield from press("continue pressed by a bot", IGNORED, "continue", sender="renovate[bot]",
                         outcome=NOTHING_ASKED)
        yield from press("continue pressed on another App's check run", IGNORED, "continue", app_id=OTHER_APP_ID,
                         outcome=NOTHING_ASKED)
        yield from press("continue pressed on a check run naming a task nobody recorded", IGNORED, "continue",
                         external_id="0" * 32)
        yield from press("continue pressed", TASK, "continue")
        other = yield from self.scripted("work asked on an issue", ISSUE_COMMENT, issue_comment(
            "created", 108, "@async-code add a changelog", repo=b, installation_id=78, number=21))
        assert isinstance(other.stored, ExpectedTask)
        other_runs = RunnerWrite(self.task_id_of(other), 9_200_001)
        self.model.give_check_runs(other_runs.task_id, other.stored, other_runs)
        yield from press("retry pressed on the second task's check run, once the runner gave it one", TASK,
                         "retry", run=other_runs.check_run_id, external_id=other_runs.task_id, repo=b,
                         installation_id=78, runner_writes=(other_runs,))

    # The story's answers are written out; each must also be the model's, which checks the model.

    def scripted(self, description: str, kind: Kind, payload: dict[str, Any], expected: Expected = TASK,
                 outcome: str = VALID, runner_writes: tuple[RunnerWrite, ...] = ()) -> Iterator[Delivery]:
        """An undamaged delivery of `kind`, whose answer the story knows."""
        delivery = self.settle(kind, kind.event, self.new_guid(), json.dumps(payload).encode(), payload, outcome,
                               f"scenario: {description}", runner_writes=runner_writes)
        assert delivery.expected is expected, f"{delivery.description}: the model expects {delivery.expected}"
        yield delivery
        return delivery

    def scripted_replay(self, description: str, of: Delivery, expected: Expected) -> Iterator[Delivery]:
        """The body of a scripted label delivery under a new delivery id."""
        assert isinstance(of.stored, ExpectedTask) and of.stored.asked_by_label
        event = of.headers["X-GitHub-Event"]
        replayed = self.new_guid()
        answer = self.model.record(replayed, of.stored)
        assert answer is expected, f"scenario: {description}: the model expects {answer}"
        delivery = self.delivery(f"scenario: {description}", event, replayed, of.body, answer,
                                 task=(of.stored.repo, None) if answer is TASK else None,
                                 stored=of.stored if answer is TASK else None, kind=of.kind)
        yield delivery
        return delivery

    def check_finished(self, deliveries: list[Delivery], finished: list[Delivery]) -> None:
        """Which of the scripted tasks the model has finished."""
        found = {d.description for d in deliveries if self.model.tasks[d.guid].status != "pending"}
        assert found == {d.description for d in finished}, f"the model finished {found}, not {finished}"

    # Deliveries intake refuses or does not act on

    def other_event(self) -> Delivery:
        event, payload = other_event(self.rng, self.comment_id())
        damaged = DamagedPayload(payload)
        for _ in range(self.rng.choice([0, 1, 2, 4])):
            self.add_noise(damaged, frozenset({"action"}))
        description = f"{event}/{payload.get('action')}: "
        expected = PONG if event == "ping" else IGNORED
        if self.rng.random() < 0.2 and event != "ping":
            damaged.change("action", self.rng.choice([[], {}, 5, "Opened", "x" * 100, "op\ud800"]), BROKEN)
            expected = MALFORMED
        description += "; ".join(damaged.changes) or "as sent"
        return self.delivery(description, event, self.new_guid(), self.serialise(damaged.payload), expected)

    def broken_body(self) -> Delivery:
        """A body that is not strict JSON, built around a valid request."""
        rng = self.rng
        event, payload = self.valid_payload()
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
            key = rng.choice([b"action", b"installation", b"sender"])  # every acted-on payload has them
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
        return self.delivery(f"broken body ({kind}) of {event}", event, self.new_guid(), body, refused(message))

    def broken_headers(self) -> Delivery:
        rng = self.rng
        kind_event, payload = self.valid_payload()
        body = json.dumps(payload).encode()
        event: str | bytes | None = kind_event
        guid: str | bytes | None = self.new_guid()
        kind = rng.choice(["no event", "empty event", "no guid", "long event", "long guid",
                           "odd event", "odd guid", "control character"])
        if kind in ("no event", "empty event"):
            event, message = (None if kind == "no event" else ""), "missing X-GitHub-Event header"
        elif kind == "no guid":
            guid, message = rng.choice([None, ""]), "missing X-GitHub-Delivery header"
        elif kind == "long event":
            event = kind_event + "x" * (101 - len(kind_event) + rng.randint(0, 4_900))
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
        return self.delivery(f"broken headers ({kind}) of {kind_event}", event, guid, body, refused(message))

    def not_an_object(self) -> Delivery:
        event, payload = self.valid_payload()
        value = self.rng.choice([[], [payload], "@async-code do it", 5, None, True, 1.5])
        return self.delivery(f"not an object: {shown(value)}", event, self.new_guid(),
                             self.serialise(value), refused("body is not a JSON object"))

    def redelivery(self) -> Delivery:
        """A new request under the delivery id of an earlier delivery."""
        if not self.recorded_guids:
            return self.handled(ISSUE_COMMENT)
        guid = self.rng.choice(self.recorded_guids)
        event, payload = self.valid_payload()
        return self.delivery(f"a new {event} under the used delivery id {guid}", event, guid,
                             json.dumps(payload).encode(), DUPLICATE)

    def bad_signature(self) -> Delivery:
        event, payload = self.valid_payload()
        body = json.dumps(payload).encode()
        signature = self.rng.choice(["", "sha256=" + "0" * 64, "sha256=\u00e9" + "0" * 63,
                                     sign(b"other bytes", "secret"), "sha1=" + "0" * 40])
        expected = Expected(401, SIGNATURE_REFUSED)
        return self.delivery(f"signature {signature[:20]!r}", event, self.new_guid(), body, expected,
                             signature=signature)

    def oversized_guid_at_bound(self) -> Delivery:
        """One character over the delivery id's bound, on a valid request."""
        event, payload = self.valid_payload()
        guid = (self.new_guid() + "-" * 201)[:201]
        return self.delivery("a 201-character delivery id", event, guid, json.dumps(payload).encode(),
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
    """`async-code serve --workers 0` from this checkout, in a temporary data directory, as the
    App whose check runs carry APP_ID."""
    with tempfile.TemporaryDirectory() as data:
        port = free_port()
        # PYTHONPATH: the checkout under test, whatever an installed copy of the package points at.
        env = {"PATH": os.environ.get("PATH", ""), "HOME": data, "GITHUB_WEBHOOK_SECRET": secret,
               "ASYNC_CODE_DATA_DIR": data, "GITHUB_APP_ID": str(APP_ID), "PYTHONPATH": str(REPO_ROOT),
               **(extra_env or {})}
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
