"""Task artifacts: the redaction every artifact passes, the two stores (Supabase Storage through
the real `supabase` client against a loopback stand-in, and the data directory), the signed
links the service serves, and how the status comment and check run link them."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from app import create_app
from app.settings import Settings
from app.store import Store
from runner import check_runs, status
from runner.artifacts import (DIFF, SANDBOX_LOG, TRANSCRIPT, ArtifactError, LocalArtifacts,
                              SupabaseArtifacts, publish, sandbox_log, task_artifacts)
from runner.redaction import REDACTED, Redactor, redactor_for
from tests.fakes.keys import generate_app_key
from tests.fakes.supabase_storage import FakeSupabaseStorage

TASK = "0123456789abcdef0123456789abcdef"
OTHER_TASK = "fedcba9876543210fedcba9876543210"
MODEL_KEY = "sk-ant-api03-" + "m" * 40
TOKEN = "ghs_" + "A1b2C3d4" * 5


def conversation(output: str = "hello") -> list[dict]:
    return [{"role": "user", "content": "print the greeting"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "bash",
                                               "input": {"command": "echo greeting"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                          "content": f"exit code 0\n{output}", "is_error": False}]},
            {"role": "assistant", "content": [{"type": "text", "text": "Done."}]}]


# Redaction


@pytest.fixture(scope="module")
def pem() -> str:
    return generate_app_key()[0]


@pytest.mark.parametrize("text, kept", [
    (f"key={MODEL_KEY}", "key="),
    (f"Authorization: token {TOKEN}", "Authorization: token "),
    ("gho_abcdefgh12345678 and ghu_abcdefgh12345678 and ghp_abcdefgh12345678", " and "),
    ("github_pat_" + "x" * 30, ""),
    ("secret: whsec-0123456789abcdef", "secret: "),
    ("ghs_short is no token, nor is sk-ant", "ghs_short is no token, nor is sk-ant"),
])
def test_redaction_removes_the_service_secrets_and_github_tokens(text, kept, pem):
    redactor = redactor_for(Settings(anthropic_api_key=MODEL_KEY, github_private_key=pem,
                                     github_webhook_secret="whsec-0123456789abcdef"))
    redacted = redactor.text(text)
    assert kept in redacted
    assert all(secret not in redacted for secret in (MODEL_KEY, TOKEN, "whsec-0123456789abcdef",
                                                     "abcdefgh12345678", "x" * 30))
    assert (REDACTED in redacted) == (text != kept)


@pytest.mark.parametrize("url, password", [
    ("postgresql://async_code:s3cret-Pass-123@127.0.0.1:5432/async_code", "s3cret-Pass-123"),
    ("postgres://u:p%40ss%2Fw0rd-longer@db.example:5432/db", "p@ss/w0rd-longer"),
])
def test_redaction_removes_the_database_password(url, password):
    redactor = redactor_for(Settings(database_url=url))
    assert password not in redactor.text(f"connection failed for {password}")


@pytest.mark.parametrize("url", ["", "sqlite:////var/lib/x.db", "postgresql://u@host/db",
                                 "postgresql://u:@host/db", "postgresql://[::1/db"])
def test_a_database_url_without_a_password_gives_none(url):
    assert Settings(database_url=url).database_password == ""


def test_redaction_removes_the_app_key_whole_and_line_by_line(pem):
    redactor = redactor_for(Settings(github_private_key=pem))
    one_line = pem.strip().splitlines()[3]
    assert redactor.text(f"cat key.pem\n{pem}") == f"cat key.pem\n{REDACTED}\n"
    assert one_line not in redactor.text(f"part of it: {one_line}")


def test_redaction_reaches_every_string_of_a_transcript():
    redactor = Redactor([MODEL_KEY])
    redacted = redactor.value(conversation(f"{MODEL_KEY}\n{TOKEN}"))
    assert MODEL_KEY not in json.dumps(redacted) and TOKEN not in json.dumps(redacted)
    assert redacted[0] == conversation()[0]


# What is kept of a task


def test_the_sandbox_log_is_each_command_with_its_output():
    assert sandbox_log(conversation("hello")) == "$ echo greeting\nexit code 0\nhello\n"


@pytest.mark.parametrize("tool", ["Bash", "command_execution"])  # Claude Code's, Codex's
def test_the_sandbox_log_holds_the_commands_of_every_agent(tool):
    messages = conversation("hello")
    messages[1]["content"][0]["name"] = tool
    assert sandbox_log(messages) == "$ echo greeting\nexit code 0\nhello\n"
    messages[1]["content"][0]["name"] = "Edit"  # not a shell
    assert sandbox_log(messages) == ""


def test_a_task_keeps_its_transcript_diff_and_sandbox_log_redacted():
    found = task_artifacts(conversation(TOKEN), f"+{MODEL_KEY}\n", Redactor([MODEL_KEY]))
    assert set(found) == {TRANSCRIPT, DIFF, SANDBOX_LOG}
    assert json.loads(found[TRANSCRIPT])[2]["content"][0]["content"] == f"exit code 0\n{REDACTED}"
    assert found[DIFF] == f"+{REDACTED}\n".encode()
    assert TOKEN.encode() not in found[SANDBOX_LOG] and b"$ echo greeting" in found[SANDBOX_LOG]
    assert set(task_artifacts(conversation(), "", Redactor([]))) == {TRANSCRIPT, SANDBOX_LOG}


# Supabase Storage, through the real client


@pytest.fixture
def storage():
    fake = FakeSupabaseStorage().start()
    yield fake
    fake.stop()


def fetch(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), error.read()


def test_supabase_makes_a_private_bucket_uploads_and_signs(storage):
    artifacts = SupabaseArtifacts(storage.url, storage.service_key, "task-artifacts")
    artifacts.put(TASK, TRANSCRIPT, b'{"first": 1}')
    artifacts.put(TASK, TRANSCRIPT, b'{"again": 2}')  # a re-attempt overwrites
    assert storage.buckets["task-artifacts"].public is False
    stored = storage.object("task-artifacts", f"{TASK}/{TRANSCRIPT}")
    assert (stored.data, stored.content_type) == (b'{"again": 2}', "application/json")
    assert artifacts.get(TASK, TRANSCRIPT) == b'{"again": 2}'

    url = artifacts.signed_url(TASK, TRANSCRIPT, 3600)
    assert url.startswith(f"{storage.url}/storage/v1/object/sign/task-artifacts/{TASK}/")
    code, headers, body = fetch(url)
    assert (code, body, headers["Content-Type"]) == (200, b'{"again": 2}', "application/json")
    # Tampered: the stand-in refuses it as Storage does.
    assert fetch(url.replace(TRANSCRIPT, DIFF))[0] == 400
    assert fetch(url[:-3] + "000")[0] == 400
    # Every call but the signed URL carried the service key both ways.
    keyed = [headers for method, path, headers in storage.requests if "/object/sign/" not in path
             or method == "POST"]
    assert keyed and all(h.get("Apikey") == storage.service_key
                         and h.get("Authorization") == f"Bearer {storage.service_key}" for h in keyed)


def test_supabase_uses_an_existing_private_bucket_and_refuses_a_public_one(storage):
    SupabaseArtifacts(storage.url, storage.service_key, "kept").put(TASK, DIFF, b"+a\n")
    SupabaseArtifacts(storage.url, storage.service_key, "kept").put(TASK, DIFF, b"+b\n")
    assert storage.object("kept", f"{TASK}/{DIFF}").data == b"+b\n"
    from tests.fakes.supabase_storage import Bucket

    storage.buckets["open"] = Bucket(public=True)
    with pytest.raises(ArtifactError, match="'open' is public"):
        SupabaseArtifacts(storage.url, storage.service_key, "open").put(TASK, DIFF, b"+a\n")
    assert storage.buckets["open"].objects == {}


def test_supabase_errors_say_what_storage_said_and_never_the_key(storage):
    wrong = "service-role-wrong-" + "k" * 30
    with pytest.raises(ArtifactError) as refused:
        SupabaseArtifacts(storage.url, wrong, "task-artifacts").put(TASK, TRANSCRIPT, b"{}")
    assert "403 Unauthorized: invalid signature" in str(refused.value)
    assert wrong not in str(refused.value)
    artifacts = SupabaseArtifacts(storage.url, storage.service_key, "task-artifacts")
    artifacts.ensure_bucket()
    with pytest.raises(ArtifactError, match="404 not_found: Object not found"):
        artifacts.signed_url(TASK, SANDBOX_LOG, 60)


def test_publish_to_supabase_uploads_without_the_secrets_and_links_the_transcript(storage):
    artifacts = SupabaseArtifacts(storage.url, storage.service_key, "task-artifacts")
    note = publish(artifacts, TASK, conversation=conversation(f"{MODEL_KEY} {TOKEN}"), diff="",
                   redactor=Redactor([MODEL_KEY]), link_seconds=7 * 86400)
    assert note.startswith(f"[Full transcript]({storage.url}/storage/v1/object/sign/")
    assert note.endswith("(link valid for 7 days)")
    uploaded = b"".join(o.data for o in storage.buckets["task-artifacts"].objects.values())
    assert b"exit code 0" in uploaded and MODEL_KEY.encode() not in uploaded
    assert TOKEN.encode() not in uploaded
    url = note[len("[Full transcript]("):note.index(")")]
    assert REDACTED in json.loads(fetch(url)[2])[2]["content"][0]["content"]


def test_a_store_that_fails_leaves_no_link_and_raises_nothing(storage, caplog):
    artifacts = SupabaseArtifacts(storage.url, "wrong-key-" + "w" * 30, "task-artifacts")
    assert publish(artifacts, TASK, conversation=conversation(), diff="", redactor=Redactor([]),
                   link_seconds=60) is None
    assert "403 Unauthorized" in caplog.text and "w" * 30 not in caplog.text


# The data directory, and the service's links to it


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def local(tmp_path):
    store = Store(tmp_path / "async-code.db")
    store.initialise()
    settings = Settings(data_dir=str(tmp_path))
    clock = Clock(0)
    artifacts = LocalArtifacts(settings.artifacts_path, key=store.artifact_key(),
                               base_url="http://async-code.test/", clock=clock)
    client = create_app(settings, store).test_client()
    return artifacts, client, clock, store


def path_of(url: str) -> str:
    return url.removeprefix("http://async-code.test")


def test_a_local_artifact_is_written_whole_and_served_by_its_signed_link(local, tmp_path):
    artifacts, client, clock, _ = local
    clock.now = 4_000_000_000  # links made now work from now on, whatever the real date
    artifacts.put(TASK, TRANSCRIPT, b'[{"role": "user"}]')
    artifacts.put(TASK, TRANSCRIPT, b'[{"role": "user", "content": "again"}]')
    assert [p.name for p in (tmp_path / "artifacts" / TASK).iterdir()] == [TRANSCRIPT]
    url = artifacts.signed_url(TASK, TRANSCRIPT, 3600)
    answer = client.get(path_of(url))
    assert answer.status_code == 200
    assert answer.data == b'[{"role": "user", "content": "again"}]'
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Content-Disposition"].startswith("attachment")

    artifacts.put(TASK, DIFF, b"<html><script>alert(1)</script>")
    shown = client.get(path_of(artifacts.signed_url(TASK, DIFF, 3600)))
    assert shown.status_code == 200 and shown.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert "html" not in shown.headers["Content-Type"]


def test_a_link_past_its_expiry_is_refused(local):
    artifacts, client, clock, _ = local
    artifacts.put(TASK, TRANSCRIPT, b"[]")
    clock.now = 1_000_000  # long past: the link expired then
    assert client.get(path_of(artifacts.signed_url(TASK, TRANSCRIPT, 3600))).status_code == 403


def test_wrong_tampered_and_borrowed_signatures_are_refused(local):
    artifacts, client, clock, _ = local
    clock.now = 4_000_000_000
    for task in (TASK, OTHER_TASK):
        artifacts.put(task, TRANSCRIPT, b"[]")
        artifacts.put(task, DIFF, b"+a\n")
    url = path_of(artifacts.signed_url(TASK, TRANSCRIPT, 3600))
    path, query = url.split("?")
    expires, sig = (part.split("=")[1] for part in query.split("&"))
    assert client.get(url).status_code == 200
    refused = [
        f"{path}?expires={expires}&sig={'0' * 64}",  # wrong
        f"{path}?expires={int(expires) + 1}&sig={sig}",  # expiry pushed back
        f"{path}?expires={expires}&sig={sig[:-1]}{'a' if sig[-1] != 'a' else 'b'}",  # tampered
        f"{path}?expires={expires}",  # none
        f"/artifacts/{OTHER_TASK}/{TRANSCRIPT}?expires={expires}&sig={sig}",  # another task's
        f"/artifacts/{TASK}/{DIFF}?expires={expires}&sig={sig}",  # another name's
        f"{path}?expires=-{expires}&sig={sig}",
    ]
    assert [client.get(u).status_code for u in refused] == [403] * len(refused)
    other = LocalArtifacts(artifacts.root, key="another store's key", base_url="http://x", clock=clock)
    assert client.get(path_of(other.signed_url(TASK, TRANSCRIPT, 3600)).removeprefix("http://x")
                      ).status_code == 403


def test_unknown_names_tasks_and_traversal_are_not_found(local, tmp_path):
    artifacts, client, clock, store = local
    clock.now = 4_000_000_000
    (tmp_path / "artifacts" / TASK).mkdir(parents=True)
    (tmp_path / "artifacts" / TASK / "notes.txt").write_text("not an artifact")
    attempts = [f"/artifacts/{TASK}/notes.txt", f"/artifacts/{TASK}/..%2f..%2fasync-code.db",
                f"/artifacts/..%2f{TASK}/{TRANSCRIPT}", f"/artifacts/{TASK.upper()}/{TRANSCRIPT}",
                f"/artifacts/{TASK}/%2e%2e", "/artifacts/../async-code.db"]
    for attempt in attempts:
        assert client.get(attempt + "?expires=4000003600&sig=" + "0" * 64).status_code == 404, attempt
    # A task with nothing stored: a valid link finds nothing.
    assert client.get(path_of(artifacts.signed_url(OTHER_TASK, TRANSCRIPT, 60))).status_code == 404
    with pytest.raises(ValueError):
        artifacts.put(TASK, "../../async-code.db", b"")
    with pytest.raises(ValueError):
        artifacts.put("../" + TASK[3:], TRANSCRIPT, b"")


def test_with_supabase_configured_the_service_serves_no_artifacts(local, tmp_path):
    artifacts, _, clock, store = local
    clock.now = 4_000_000_000
    artifacts.put(TASK, TRANSCRIPT, b"[]")
    client = create_app(Settings(data_dir=str(tmp_path), supabase_url="https://x.supabase.co",
                                 supabase_key="service-role"), store).test_client()
    assert client.get(path_of(artifacts.signed_url(TASK, TRANSCRIPT, 60))).status_code == 404


def test_every_process_on_a_store_signs_with_one_key(tmp_path):
    store = Store(tmp_path / "async-code.db")
    store.initialise()
    key = store.artifact_key()
    assert len(key) == 64 and Store(tmp_path / "async-code.db").artifact_key() == key


def test_publish_stores_locally_without_the_secrets_and_links_through_the_service(local, tmp_path):
    artifacts, client, clock, _ = local
    clock.now = 4_000_000_000
    note = publish(artifacts, TASK, conversation=conversation(f"{MODEL_KEY} {TOKEN}"),
                   diff=f"+{TOKEN}\n", redactor=Redactor([MODEL_KEY]), link_seconds=86400)
    stored = b"".join(p.read_bytes() for p in (tmp_path / "artifacts" / TASK).iterdir())
    assert b"echo greeting" in stored and MODEL_KEY.encode() not in stored
    assert TOKEN.encode() not in stored
    assert note.startswith("[Full transcript](http://async-code.test/artifacts/")
    assert note.endswith("(link valid for 1 day)")
    url = note[len("[Full transcript]("):note.index(")")]
    assert client.get(path_of(url)).status_code == 200


def test_without_a_public_url_local_artifacts_are_kept_but_not_linked(tmp_path, caplog):
    artifacts = LocalArtifacts(tmp_path, key="k" * 64, base_url="")
    assert publish(artifacts, TASK, conversation=conversation(), diff="", redactor=Redactor([]),
                   link_seconds=60) is None
    assert (tmp_path / TASK / TRANSCRIPT).exists() and "ASYNC_CODE_PUBLIC_URL" in caplog.text


# The link in the status comment and the check run


def test_the_final_status_comment_and_check_run_link_the_transcript():
    edits: list = []
    comment = status.StatusComment(lambda _id, body: edits.append(body), 1)
    comment.note = "[Full transcript](https://example.test/t) (link valid for 7 days)"
    comment.progress(status.running(TASK, 2, "bash"))
    comment.final(status.failed(TASK, "push rejected"))
    assert "Full transcript" not in edits[0]
    assert edits[1].startswith("❌ **async-code** failed: push rejected\n\n[Full transcript]("
                               ) and edits[1].endswith(f"<sub>async-code task `{TASK[:8]}`</sub>")

    fields = check_runs.finished("failure", title="Failed", summary="x" * 70_000)
    noted = check_runs.with_note(fields, comment.note)
    assert noted["output"]["summary"].endswith("\n\n" + comment.note)
    assert len(noted["output"]["summary"].encode()) <= check_runs.OUTPUT_LIMIT
    assert check_runs.with_note(check_runs.in_progress(1, None, 1.0), "") == check_runs.in_progress(1, None, 1.0)


@pytest.mark.parametrize("environment, problem", [
    ({"SUPABASE_URL": "https://x.supabase.co"}, "SUPABASE_URL is set but SUPABASE_KEY is not"),
    ({"SUPABASE_KEY": "service-role"}, "SUPABASE_KEY is set but SUPABASE_URL is not"),
    ({"SUPABASE_URL": "x.supabase.co", "SUPABASE_KEY": "k"}, "must be the project's http(s) URL"),
    ({"ASYNC_CODE_ARTIFACT_BUCKET": "Task Artifacts"}, "is not a bucket name"),
    ({"ASYNC_CODE_ARTIFACT_BUCKET": "ab"}, "is not a bucket name"),
    ({"ASYNC_CODE_ARTIFACT_LINK_DAYS": "0"}, "from 1 to 365"),
    ({"ASYNC_CODE_ARTIFACT_LINK_DAYS": "a week"}, "from 1 to 365"),
])
def test_artifact_settings_are_checked(environment, problem):
    settings = Settings.from_env({"GITHUB_WEBHOOK_SECRET": "s", **environment})
    found = settings.problems(webhooks=True)
    assert [p for p in found if problem in p], found


def test_artifact_settings_both_or_neither_are_fine():
    for environment in ({}, {"SUPABASE_URL": "https://x.supabase.co", "SUPABASE_KEY": "k" * 40,
                             "ASYNC_CODE_ARTIFACT_BUCKET": "my.bucket-1",
                             "ASYNC_CODE_ARTIFACT_LINK_DAYS": "30"}):
        settings = Settings.from_env({"GITHUB_WEBHOOK_SECRET": "s", **environment})
        assert settings.problems(webhooks=True) == []
    assert Settings().artifact_link_seconds == 7 * 86400
    assert "k" * 40 not in repr(Settings(supabase_key="k" * 40))


def test_the_store_is_chosen_by_the_settings(tmp_path):
    from runner.artifacts import artifact_store

    store = Store(tmp_path / "async-code.db")
    store.initialise()
    local = artifact_store(Settings(data_dir=str(tmp_path)), store)
    assert isinstance(local, LocalArtifacts) and local.root == Path(tmp_path) / "artifacts"
    remote = artifact_store(Settings(supabase_url="https://x.supabase.co", supabase_key="k" * 40),
                            store)
    assert isinstance(remote, SupabaseArtifacts) and "k" * 40 not in repr(remote)
