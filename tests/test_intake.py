"""Every answer of the webhook endpoint, through the real Flask app and a real SQLite store."""

from __future__ import annotations

import json

import pytest

from app import create_app
from app.settings import Settings
from app.store import Store
from tests import payloads

SECRET = "intake-test-secret"


def sign(body: bytes, secret: str = SECRET) -> str:
    return payloads.sign(body, secret)


def comment_payload(body="@async-code add a --version flag", *, sender_type="User", login="alice",
                    pull_request=False, action="created"):
    return payloads.issue_comment(body, login=login, user_type=sender_type, action=action,
                                  pull_request=pull_request)


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "tasks.db")
    store.initialise()
    return store


@pytest.fixture
def client(store):
    app = create_app(Settings(github_webhook_secret=SECRET), store)
    app.testing = True
    return app.test_client()


def deliver(client, payload, *, event="issue_comment", guid="guid-1", signature=None,
            headers=None, raw: bytes | None = None):
    body = raw if raw is not None else json.dumps(payload).encode()
    sent = {"X-GitHub-Event": event, "X-GitHub-Delivery": guid,
            "X-Hub-Signature-256": signature if signature is not None else sign(body),
            "Content-Type": "application/json"}
    sent.update(headers or {})
    return client.post("/webhooks", data=body, headers={k: v for k, v in sent.items() if v != ""})


def test_a_command_on_an_issue_records_one_pending_task(client, store):
    response = deliver(client, comment_payload())
    assert response.status_code == 202
    [task] = store.list()
    assert response.json["task_id"] == task.id
    assert (task.status, task.repo, task.number, task.trigger) == ("pending", "acme/widgets", 7, "comment")
    assert (task.instruction, task.requested_by, task.requested_by_id) == ("add a --version flag", "alice", 9)
    assert (task.installation_id, task.comment_id, task.acknowledged_at) == (77, 42, None)


SIGNATURE_REFUSED = "missing or invalid X-Hub-Signature-256"
EVENT_MISSING = "missing X-GitHub-Event header"


def by_case(rows):
    """Table rows as pytest parameters, each named by its first column."""
    return [pytest.param(*row, id=row[0]) for row in rows]


@pytest.mark.parametrize("case, kwargs, status, message", by_case([
    ("missing signature", dict(signature=""), 401, SIGNATURE_REFUSED),
    ("signature with another secret", dict(signature=sign(b"{}", "other")), 401, SIGNATURE_REFUSED),
    ("signature over other bytes", dict(signature=sign(b'{"action": "created"}')), 401,
     SIGNATURE_REFUSED),
    ("sha1-style signature", dict(signature="sha1=" + "0" * 40), 401, SIGNATURE_REFUSED),
    ("non-ASCII signature", dict(signature="sha256=\u00e9" + "0" * 63), 401, SIGNATURE_REFUSED),
    ("missing event header", dict(event=""), 400, EVENT_MISSING),
    ("missing delivery header", dict(guid=""), 400, "missing X-GitHub-Delivery header"),
    ("event name over 100 characters", dict(event="issue_comment" + "x" * 88), 400,
     "X-GitHub-Event is longer than 100 characters"),
    ("event header sent twice", dict(event="issue_comment, issue_comment"), 400,
     "X-GitHub-Event has characters other than visible ASCII"),
    ("delivery id over 200 characters", dict(guid="d" * 201), 400,
     "X-GitHub-Delivery is longer than 200 characters"),
    ("delivery id of 100,000 characters", dict(guid="d" * 100_000), 400,
     "X-GitHub-Delivery is longer than 200 characters"),
    ("delivery id with a space", dict(guid="72d3162e 1111"), 400,
     "X-GitHub-Delivery has characters other than visible ASCII"),
    ("delivery id with non-ASCII", dict(guid="72d3162e-\u00e9"), 400,
     "X-GitHub-Delivery has characters other than visible ASCII"),
    ("body is not JSON", dict(raw=b"not json"), 400, "body is not JSON"),
    ("body is a JSON array", dict(raw=b"[1, 2]"), 400, "body is not a JSON object"),
    ("body is a JSON string", dict(raw=b'"@async-code hi"'), 400, "body is not a JSON object"),
]))
def test_bad_deliveries_are_refused_and_record_nothing(client, store, case, kwargs, status, message):
    response = deliver(client, comment_payload(), **kwargs)
    assert (response.status_code, response.json["message"]) == (status, message)
    assert store.list() == []
    assert store.delivery_count() == 0


def test_headers_at_their_bounds_are_accepted(client, store):
    response = deliver(client, comment_payload(), guid="d" * 200)
    assert response.status_code == 202
    assert store.list()[0].delivery_guid == "d" * 200
    response = deliver(client, comment_payload(), event="e" * 100, guid="another")
    assert (response.status_code, response.json["message"]) == (200, "ignored")


def trigger_with(member: bytes) -> bytes:
    """The body of a comment that records a task, with one more raw JSON member at the end."""
    return json.dumps(comment_payload()).encode()[:-1] + b", " + member + b"}"


@pytest.mark.parametrize("case, raw, message", by_case([
    ("invalid UTF-8", trigger_with(b'"extra": "\xff"'), "body is not UTF-8"),
    ("a surrogate encoded as UTF-8 bytes", trigger_with(b'"extra": "\xed\xa0\x80"'), "body is not UTF-8"),
    ("UTF-16", json.dumps(comment_payload()).encode("utf-16"), "body is not UTF-8"),
    ("a byte order mark", b"\xef\xbb\xbf" + json.dumps(comment_payload()).encode(), "body is not JSON"),
    ("truncated", json.dumps(comment_payload()).encode()[:-1], "body is not JSON"),
    ("NaN", trigger_with(b'"extra": NaN'), "body has NaN, which is not JSON"),
    ("Infinity", trigger_with(b'"extra": Infinity'), "body has Infinity, which is not JSON"),
    ("-Infinity", trigger_with(b'"extra": [-Infinity]'), "body has -Infinity, which is not JSON"),
    ("a duplicate key", trigger_with(b'"action": "created"'), "body has an object with a duplicate key"),
    ("a duplicate key in a nested object", trigger_with(b'"extra": {"a": 1, "a": 1}'),
     "body has an object with a duplicate key"),
    ("an integer of 41 digits", trigger_with(b'"extra": ' + b"9" * 41),
     "body has an integer longer than 40 digits"),
    ("a negative integer of 5,000 digits", trigger_with(b'"extra": -' + b"9" * 5000),
     "body has an integer longer than 40 digits"),
    ("arrays nested 100,000 deep", trigger_with(b'"extra": ' + b"[" * 100_000 + b"]" * 100_000),
     "body is nested too deeply"),
    ("objects nested 100,000 deep", trigger_with(b'"extra": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_000),
     "body is nested too deeply"),
]))
def test_a_body_that_is_not_strict_json_is_refused(client, store, case, raw, message):
    response = deliver(client, None, raw=raw)
    assert (response.status_code, response.json["message"]) == (400, message)
    assert store.list() == []
    assert store.delivery_count() == 0


@pytest.mark.parametrize("case, raw", by_case([
    ("an integer of 40 digits", trigger_with(b'"extra": ' + b"9" * 40)),
    ("a float beyond any integer", trigger_with(b'"extra": 1e999')),
    ("arrays nested 100 deep", trigger_with(b'"extra": ' + b"[" * 100 + b"]" * 100)),
    ("a lone surrogate, escaped", trigger_with(b'"extra": "\\ud800"')),
    ("a NUL character, escaped", trigger_with(b'"extra": "\\u0000"')),
]))
def test_unusual_json_in_fields_nobody_reads_still_records_the_task(client, store, case, raw):
    response = deliver(client, None, raw=raw)
    assert response.status_code == 202
    assert len(store.list()) == 1


MISSING = object()


def comment_with(path: str, value) -> dict:
    """A comment that records a task, with the field at a dotted path replaced or removed."""
    payload = json.loads(json.dumps(comment_payload()))  # the sender and the author are one dict
    *parents, key = path.split(".")
    parent = payload
    for name in parents:
        parent = parent[name]
    if value is MISSING:
        del parent[key]
    else:
        parent[key] = value
    return payload


NOT_AN_ID = "is not a positive 64-bit integer"
NOT_AN_ACTION = "action is not a short lower-case word"
NOT_A_REPO = "repository.full_name is not a name GitHub gives"


@pytest.mark.parametrize("case, path, value, reason", by_case([
    ("action is an object", "action", {"created": True}, NOT_AN_ACTION),
    ("action is a list", "action", ["created"], NOT_AN_ACTION),
    ("action is a number", "action", 1, NOT_AN_ACTION),
    ("action is true", "action", True, NOT_AN_ACTION),
    ("action has a lone surrogate", "action", "created\ud800", NOT_AN_ACTION),
    ("action of 10,000 characters", "action", "c" * 10_000, NOT_AN_ACTION),
    ("installation id beyond SQLite's integers", "installation.id", 2**63, "installation.id " + NOT_AN_ID),
    ("installation id of 40 digits", "installation.id", 10**39, "installation.id " + NOT_AN_ID),
    ("installation id 0", "installation.id", 0, "installation.id " + NOT_AN_ID),
    ("installation id negative", "installation.id", -77, "installation.id " + NOT_AN_ID),
    ("installation id a float", "installation.id", 77.0, "installation.id " + NOT_AN_ID),
    ("installation id a string", "installation.id", "77", "installation.id " + NOT_AN_ID),
    ("installation id null", "installation.id", None, "installation.id " + NOT_AN_ID),
    ("installation missing", "installation", MISSING, "installation is not an object"),
    ("installation a list", "installation", [{"id": 77}], "installation is not an object"),
    ("issue number true", "issue.number", True, "issue.number " + NOT_AN_ID),
    ("issue a list", "issue", [1], "issue is not an object"),
    ("issue title a list", "issue.title", ["Issue 7"], "issue.title is not a string"),
    ("issue body a number", "issue.body", 5, "issue.body is not a string"),
    ("issue body with a lone surrogate", "issue.body", "broken \udc00 text",
     "issue.body has a lone surrogate"),
    ("issue body over 65,536 characters", "issue.body", "x" * 65_537,
     "issue.body is longer than 65536 characters"),
    ("comment a number", "comment", 42, "comment is not an object"),
    ("comment null", "comment", None, "comment is not an object"),
    ("comment id a string", "comment.id", "42", "comment.id " + NOT_AN_ID),
    ("comment id missing", "comment.id", MISSING, "comment.id " + NOT_AN_ID),
    ("comment body a number", "comment.body", 7, "comment.body is not a string"),
    ("comment body an object", "comment.body", {"text": "@async-code hi"}, "comment.body is not a string"),
    ("comment body with a lone surrogate", "comment.body", "@async-code add \ud800",
     "comment.body has a lone surrogate"),
    ("comment body over 65,536 characters", "comment.body", "@async-code " + "x" * 65_536,
     "comment.body is longer than 65536 characters"),
    ("comment author missing", "comment.user", MISSING, "comment.user is not an object"),
    ("comment author's type a number", "comment.user.type", 1, "comment.user.type is not a string"),
    ("sender a string", "sender", "alice", "sender is not an object"),
    ("sender login a number", "sender.login", 5, "sender.login is not a string"),
    ("sender login a path", "sender.login", "../../admin", "sender.login is not a name GitHub gives"),
    ("sender login empty", "sender.login", "", "sender.login is not a name GitHub gives"),
    ("sender id beyond SQLite's integers", "sender.id", 2**64, "sender.id " + NOT_AN_ID),
    ("repository missing", "repository", MISSING, "repository is not an object"),
    ("repository name a number", "repository.full_name", 1, "repository.full_name is not a string"),
    ("repository name without owner", "repository.full_name", "widgets", NOT_A_REPO),
    ("repository name of three parts", "repository.full_name", "acme/widgets/issues", NOT_A_REPO),
    ("repository name ..", "repository.full_name", "acme/..", NOT_A_REPO),
    ("repository owner ..", "repository.full_name", "../widgets", NOT_A_REPO),
]))
def test_a_comment_with_a_malformed_field_is_ignored(client, store, case, path, value, reason):
    response = deliver(client, comment_with(path, value))
    assert (response.status_code, response.json) == (200, {"message": "ignored", "reason": reason})
    assert store.list() == []
    assert store.delivery_count() == 1


@pytest.mark.parametrize("case, path, value, recorded", by_case([
    ("installation id at SQLite's largest integer", "installation.id", 2**63 - 1,
     ("installation_id", 2**63 - 1)),
    ("comment id at SQLite's largest integer", "comment.id", 2**63 - 1, ("comment_id", 2**63 - 1)),
    ("issue body null", "issue.body", None, ("issue_body", "")),
    ("issue title missing", "issue.title", MISSING, ("issue_title", "")),
    ("issue body of 65,536 characters", "issue.body", "x" * 65_536, ("issue_body", "x" * 65_536)),
    ("an emoji, escaped as a surrogate pair", "comment.body", "@async-code add \U0001F680",
     ("instruction", "add \U0001F680")),
    ("pull_request null", "issue.pull_request", None, ("number", 7)),
    ("a repository name with dots", "repository.full_name", "acme/.github", ("repo", "acme/.github")),
    ("a managed user's login", "sender.login", "alice_acme", ("requested_by", "alice_acme")),
]))
def test_a_comment_at_the_edges_of_its_shape_records_a_task(client, store, case, path, value, recorded):
    response = deliver(client, comment_with(path, value))
    assert response.status_code == 202
    [task] = store.list()
    field, expected = recorded
    assert getattr(task, field) == expected


def test_the_signature_is_checked_before_the_headers(client, store):
    response = deliver(client, comment_payload(), event="", signature="")
    assert (response.status_code, response.json["message"]) == (401, SIGNATURE_REFUSED)


def test_the_headers_are_checked_before_the_body_is_parsed(client, store):
    response = deliver(client, None, event="", raw=b"not json")
    assert (response.status_code, response.json["message"]) == (400, EVENT_MISSING)
    assert store.delivery_count() == 0


def test_a_body_over_25_mb_is_refused_before_anything_else(client, store):
    raw = b"x" * (25 * 1024 * 1024 + 1)
    response = deliver(client, None, raw=raw, signature="")
    assert response.status_code == 413
    assert store.delivery_count() == 0


def test_a_body_of_exactly_25_mb_is_read(client, store):
    padding = 25 * 1024 * 1024 - len(json.dumps(comment_payload())) - len(', "pad": ""')
    payload = comment_payload()
    payload["pad"] = "x" * padding
    body = json.dumps(payload).encode()
    assert len(body) == 25 * 1024 * 1024
    assert deliver(client, None, raw=body).status_code == 202


def test_ping_is_answered_and_recorded(client, store):
    response = deliver(client, {"zen": "Keep it logically awesome."}, event="ping")
    assert (response.status_code, response.json["message"]) == (200, "pong")
    assert store.delivery_count() == 1


def test_a_redelivered_guid_creates_nothing_new(client, store):
    assert deliver(client, comment_payload(), guid="same").status_code == 202
    again = deliver(client, comment_payload(), guid="same")
    assert (again.status_code, again.json["message"]) == (200, "duplicate delivery")
    assert len(store.list()) == 1


@pytest.mark.parametrize(
    "case, payload, event",
    [
        ("an edited comment", comment_payload(action="edited"), "issue_comment"),
        ("a deleted comment", comment_payload(action="deleted"), "issue_comment"),
        ("a bot sender", comment_payload(sender_type="Bot", login="async-code[bot]"), "issue_comment"),
        ("a [bot] login", comment_payload(login="dependabot[bot]"), "issue_comment"),
        ("a comment without the mention", comment_payload("looks good"), "issue_comment"),
        ("a mention inside a sentence", comment_payload("thanks @async-code!"), "issue_comment"),
        ("an event not acted on", {"action": "opened"}, "issues"),
        ("an unknown event", {"action": "x"}, "marketplace_purchase"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_deliveries_not_acted_on_are_answered_and_ignored(client, store, case, payload, event):
    response = deliver(client, payload, event=event)
    assert (response.status_code, response.json["message"]) == (200, "ignored"), case
    assert store.list() == []
    assert store.delivery_count() == 1


def test_a_bare_mention_records_a_task_with_an_empty_instruction(client, store):
    assert deliver(client, comment_payload("@async-code")).status_code == 202
    assert store.list()[0].instruction == ""


def test_without_a_secret_nothing_is_accepted(store):
    app = create_app(Settings(github_webhook_secret=""), store)
    body = json.dumps(comment_payload()).encode()
    response = app.test_client().post("/webhooks", data=body, headers={
        "X-GitHub-Event": "issue_comment", "X-GitHub-Delivery": "g", "X-Hub-Signature-256": sign(body, "")})
    assert response.status_code == 401
    assert store.list() == []


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json["status"] == "ok"


def test_a_replayed_delivery_under_a_new_guid_creates_nothing_new(client, store):
    # The GUID header is not covered by the signature: whoever captured one signed delivery
    # could resend it with a fresh GUID. The comment id is signed, so it is the key.
    assert deliver(client, comment_payload(), guid="first").status_code == 202
    replay = deliver(client, comment_payload(), guid="second")
    assert (replay.status_code, replay.json["message"]) == (200, "duplicate delivery")
    assert len(store.list()) == 1


def test_the_runner_is_woken_once_per_recorded_task(store):
    woken = []
    app = create_app(Settings(github_webhook_secret=SECRET), store, on_task_recorded=lambda: woken.append(1))
    client = app.test_client()
    assert deliver(client, comment_payload(), guid="a").status_code == 202
    assert deliver(client, comment_payload(), guid="a").status_code == 200
    assert deliver(client, comment_payload("no mention"), guid="b").status_code == 200
    assert woken == [1]
