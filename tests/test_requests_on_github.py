"""Intake of every kind of request: labels, comments and review comments on pull requests,
installation events. Pure handlers, table tests."""

from __future__ import annotations

import copy

import pytest

from app.comments import ISSUE_ONLY_OPTIONS
from app.events import Intake, outcome_of_delivery
from app.payload import MalformedPayload
from app.store import InstallationChange, NewTask, installation_refusal
from tests.payloads import issue_comment

INTAKE = Intake(slug="async-code", trigger_label="async-code")
WRITER = {"login": "alice", "id": 9, "type": "User"}


def labeled(label="async-code", *, subject="issue", sender=WRITER, pull_request_key=False):
    item = {"number": 7, "title": "Add a flag", "body": "Please add --version.",
            "user": {"login": "reporter", "id": 1, "type": "User"}}
    if pull_request_key:
        item["pull_request"] = {"url": "https://api.github.invalid/repos/acme/widgets/pulls/7"}
    return {"action": "labeled", subject: item, "label": {"name": label, "id": 3},
            "repository": {"full_name": "acme/widgets"}, "installation": {"id": 77},
            "sender": sender}


def review_comment(body="@async-code rename this", **comment_fields):
    comment = {"id": 901, "body": body, "user": WRITER, "path": "cli.py", "line": 12,
               "start_line": 10, "side": "RIGHT", "diff_hunk": "@@ -1,3 +1,4 @@\n+x",
               **comment_fields}
    return {"action": "created", "comment": comment,
            "pull_request": {"number": 12, "title": "Widgets", "body": "desc",
                             "user": {"login": "carol", "id": 5, "type": "User"}},
            "repository": {"full_name": "acme/widgets"}, "installation": {"id": 77},
            "sender": WRITER}


@pytest.mark.parametrize(("event", "payload", "expected"), [
    ("issues", labeled(), {"trigger": "label", "label": "async-code", "number": 7,
                           "instruction": "Resolve issue #7 as its title and description ask.",
                           "issue_title": "Add a flag", "issue_author": "reporter",
                           "requested_by": "alice", "comment_id": None}),
    ("issues", labeled("Async-Code"), {"trigger": "label", "label": "Async-Code"}),
    ("pull_request", labeled(subject="pull_request"), {"trigger": "pr_label", "number": 7}),
    ("issue_comment", issue_comment("@async-code also add tests", pull_request=True),
     {"trigger": "pr_comment", "instruction": "also add tests", "comment_id": 42}),
    ("issue_comment", issue_comment("@async-code --draft --base dev add a flag"),
     {"trigger": "comment", "instruction": "add a flag", "draft": True, "base_branch": "dev"}),
    ("issue_comment", issue_comment("@async-code cancel"), {"command": "cancel", "instruction": ""}),
    ("issue_comment", issue_comment("@async-code help me fix the login"),
     {"command": None, "instruction": "help me fix the login"}),
    ("issue_comment", issue_comment("@async-code --fast do it"),
     {"problem": "unknown option `--fast`"}),
    ("issue_comment", issue_comment("@async-code --draft do it", pull_request=True),
     {"trigger": "pr_comment", "problem": ISSUE_ONLY_OPTIONS}),
    ("issue_comment", issue_comment("@async-code --model claude-haiku-4-5 add a flag"),
     {"trigger": "comment", "instruction": "add a flag", "model": "claude-haiku-4-5"}),
    ("issue_comment", issue_comment("@async-code --model claude-haiku-4-5 add tests",
                                    pull_request=True),
     {"trigger": "pr_comment", "instruction": "add tests", "model": "claude-haiku-4-5",
      "problem": None}),
    ("pull_request_review_comment", review_comment("@async-code --model=claude-haiku-4-5 rename"),
     {"trigger": "review_comment", "instruction": "rename", "model": "claude-haiku-4-5",
      "problem": None}),
    ("pull_request_review_comment", review_comment(),
     {"trigger": "review_comment", "number": 12, "comment_id": 901, "issue_author": "carol",
      "review_context": {"path": "cli.py", "line": 12, "start_line": 10, "side": "RIGHT",
                         "diff_hunk": "@@ -1,3 +1,4 @@\n+x", "thread_id": 901}}),
    ("pull_request_review_comment", review_comment(in_reply_to_id=900, line=None, original_line=4,
                                                   start_line=None),
     {"review_context": {"path": "cli.py", "line": 4, "start_line": None, "side": "RIGHT",
                         "diff_hunk": "@@ -1,3 +1,4 @@\n+x", "thread_id": 900}}),
], ids=["issue-label", "label-case", "pr-label", "pr-comment", "options", "command",
        "help-me-is-work", "unknown-option", "draft-on-pr", "model-on-issue", "model-on-pr",
        "model-in-review-comment", "review-comment", "review-reply"])
def test_requests_become_tasks(event, payload, expected):
    task = outcome_of_delivery(event, payload, INTAKE)
    assert isinstance(task, NewTask)
    for name, value in expected.items():
        assert getattr(task, name) == value, name


@pytest.mark.parametrize(("event", "payload"), [
    ("issues", labeled("bug")),
    ("issues", labeled("async-code-later")),
    ("issues", labeled("async\u212a-code")),  # Kelvin sign: not the label in ASCII case
    ("issues", labeled(sender={"login": "renovate[bot]", "id": 3, "type": "Bot"})),
    # GitHub sends a pull request's labels as pull_request events; the issues twin is ignored.
    ("issues", labeled(pull_request_key=True)),
    ("pull_request", labeled("bug", subject="pull_request")),
    ("pull_request_review_comment", review_comment("looks good")),
    ("pull_request_review_comment", review_comment("> @async-code rename this")),
    ("pull_request_review_comment", {**review_comment(), "sender": {"login": "x[bot]", "id": 4}}),
    ("issues", {**labeled(), "action": "unlabeled"}),
    ("installation", {"action": "new_permissions_accepted", "installation": {"id": 77}}),
    ("installation_repositories", {"action": "added", "installation": {"id": 77},
                                   "repositories_added": []}),
], ids=["other-label", "longer-label", "lookalike-label", "bot-label", "issues-twin-of-pr",
        "pr-other-label", "review-without-mention", "review-quoted", "review-by-bot", "unlabeled",
        "permissions-accepted", "no-repositories-added"])
def test_deliveries_that_ask_for_nothing(event, payload):
    assert outcome_of_delivery(event, payload, INTAKE) is None


def _without(payload, path):
    damaged = copy.deepcopy(payload)
    *parents, key = path.split(".")
    holder = damaged
    for parent in parents:
        holder = holder[parent]
    del holder[key]
    return damaged


@pytest.mark.parametrize(("event", "payload", "reason"), [
    ("issues", _without(labeled(), "label.name"), "label.name is not a string"),
    ("issues", {**labeled(), "label": {"name": "x" * 101}}, "label.name is longer"),
    ("issues", _without(labeled(), "issue.number"), "issue.number"),
    ("pull_request", _without(labeled(subject="pull_request"), "pull_request"), "pull_request is not"),
    ("pull_request_review_comment", _without(review_comment(), "comment.path"), "comment.path"),
    ("pull_request_review_comment", review_comment(path=""), "comment.path"),
    ("pull_request_review_comment", review_comment(line="12"), "comment.line"),
    ("pull_request_review_comment", review_comment(side="MIDDLE"), "comment.side"),
    ("pull_request_review_comment", review_comment(in_reply_to_id=0), "comment.in_reply_to_id"),
    ("installation", {"action": "deleted", "installation": {"id": "77"}}, "installation.id"),
    ("installation_repositories", {"action": "removed", "installation": {"id": 77},
                                   "repositories_removed": [{"full_name": "../x"}]},
     "repository.full_name"),
    ("installation_repositories", {"action": "removed", "installation": {"id": 77},
                                   "repositories_removed": "acme/widgets"}, "repositories_removed"),
], ids=["no-label-name", "long-label", "no-number", "no-pull-request", "no-path", "empty-path",
        "text-line", "bad-side", "zero-thread", "text-installation-id", "bad-repository-name",
        "repositories-not-a-list"])
def test_malformed_requests_are_refused_with_the_field_named(event, payload, reason):
    with pytest.raises(MalformedPayload, match=reason.replace(".", r"\.")):
        outcome_of_delivery(event, payload, INTAKE)


def test_installation_events_become_changes():
    assert outcome_of_delivery("installation", {"action": "suspend", "installation": {"id": 77}},
                               INTAKE) == InstallationChange(77, "suspend")
    removed = {"action": "removed", "installation": {"id": 77}, "repositories_removed": [
        {"full_name": "acme/widgets"}, {"full_name": "acme/gears"}, {"full_name": "acme/widgets"}]}
    assert outcome_of_delivery("installation_repositories", removed, INTAKE) == InstallationChange(
        77, "removed", ("acme/widgets", "acme/gears"))


@pytest.mark.parametrize(("events", "refused"), [
    ([], None),
    ([(None, "created")], None),
    ([(None, "suspend")], "suspended"),
    ([(None, "suspend"), (None, "unsuspend")], None),
    ([(None, "deleted")], "uninstalled"),
    ([(None, "deleted"), (None, "created")], None),
    ([("acme/widgets", "removed")], "removed from"),
    ([("acme/widgets", "removed"), ("acme/widgets", "added")], None),
    ([("acme/widgets", "added"), ("acme/widgets", "removed")], "removed from"),
    ([(None, "new_permissions_accepted")], None),
])
def test_which_installation_events_refuse_work(events, refused):
    reason = installation_refusal(events, "acme/widgets")
    assert (reason is None) if refused is None else (refused in reason)


APP = Intake(slug="async-code", trigger_label="async-code", app_id=4242)
TASK_ID = "a" * 32


def pressed(identifier="cancel", *, action="requested_action", app_id=4242, external_id=TASK_ID,
            sender=WRITER):
    payload = {"action": action, "check_run": {"id": 555, "external_id": external_id,
                                               "app": {"id": app_id}, "head_sha": "b" * 40},
               "repository": {"full_name": "acme/widgets"}, "installation": {"id": 77},
               "sender": sender}
    if action == "requested_action":
        payload["requested_action"] = {"identifier": identifier}
    return payload


@pytest.mark.parametrize(("payload", "action"), [
    (pressed("cancel"), "cancel"),
    (pressed("retry"), "retry"),
    (pressed("continue"), "continue"),
    (pressed(action="rerequested"), "retry"),  # the "Re-run" link
])
def test_buttons_on_the_apps_check_runs_are_presses(payload, action):
    from app.buttons import ButtonPress

    assert outcome_of_delivery("check_run", payload, APP) == ButtonPress(
        repo="acme/widgets", installation_id=77, check_run_id=555, task_id=TASK_ID, action=action,
        requested_by="alice", requested_by_id=9)


@pytest.mark.parametrize("payload", [
    pressed(app_id=1),  # another App's check run, whatever its external id says
    pressed("merge"),  # not a button this App shows
    pressed(external_id="../" + "a" * 29),
    pressed(external_id=None),
    pressed(sender={"login": "ci[bot]", "id": 5, "type": "Bot"}),
])
def test_presses_that_ask_for_nothing(payload):
    assert outcome_of_delivery("check_run", payload, APP) is None


def test_without_an_app_id_no_button_counts():
    assert outcome_of_delivery("check_run", pressed(), INTAKE) is None


@pytest.mark.parametrize(("payload", "reason"), [
    (pressed("x" * 21), "requested_action.identifier is longer"),
    ({**pressed(), "requested_action": None}, "requested_action is not"),
    ({**pressed(), "check_run": {"id": 555, "external_id": TASK_ID}}, "check_run.app is not"),
    ({**pressed(), "check_run": {"id": "555", "external_id": TASK_ID, "app": {"id": 4242}}},
     "check_run.id"),
])
def test_malformed_presses_are_refused(payload, reason):
    with pytest.raises(MalformedPayload, match=reason.replace(".", r"\.")):
        outcome_of_delivery("check_run", payload, APP)
