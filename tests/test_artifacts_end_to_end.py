"""Artifacts through the real service: a task's status comment and check run link its full
transcript, and the link fetches it, from the service's data directory or from Supabase
Storage (its loopback stand-in, driven by the real `supabase` client)."""

from __future__ import annotations

import json
import re
import urllib.request

import pytest

from tests.conftest import REPO, WRITER, WRITER_ID
from tests.fakes.anthropic import Final, ToolCall, Turn
from tests.fakes.supabase_storage import FakeSupabaseStorage
from tests.test_end_to_end import INSTRUCTION as GOLDEN_INSTRUCTION, golden_script
from tests.test_requests_end_to_end import people_pull

INSTRUCTION = "show the long listing"
# 11,000 characters: more than the 4,000 of each tool result the stored transcript keeps.
LONG_OUTPUT = "yes 0123456789 | head -n 1000"
LINK = re.compile(r"\[Full transcript\]\((http[^)\s]+)\) \(link valid for 7 days\)")


def script():
    return [Turn([ToolCall("bash", {"command": LONG_OUTPUT}, expect="exit code 0")]),
            Final("The listing is long; nothing to change.")]


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def ask_on_a_pull_request(service, github, model) -> str:
    """A task on a pull request: its check run exists from the start, on the head."""
    model.add_script(INSTRUCTION, script())
    return service.comment(f"@async-code {INSTRUCTION}", number=people_pull(github),
                           pull_request=True, login=WRITER, user_id=WRITER_ID)


def linked_transcript(service, github, task_id):
    task = service.wait_for_task(task_id)
    assert task.status == "completed", (task.error, service.logs())
    [comment] = [c for c in github.comments.values() if c["user"] == "async-code[bot]"]
    final = comment["history"][-1]
    assert "no changes" in final
    [url] = LINK.findall(final)
    [run] = github.check_runs_of(REPO, app_slug=github.app_slug)
    assert run["conclusion"] == "neutral" and LINK.search(run["summary"]).group(1) == url
    return task, url


def assert_full(transcript: list, task) -> None:
    ran = transcript[2]["content"][0]["content"]
    assert ran.count("0123456789") == 1000
    # The task store's copy is clipped; the artifact is not.
    assert "characters cut" in json.dumps(task.chat_history)
    assert json.dumps(task.chat_history).count("0123456789") < 1000


def test_the_status_comment_links_the_full_transcript_served_by_the_service(service_factory,
                                                                             github, model):
    service = service_factory()
    service.env["ASYNC_CODE_PUBLIC_URL"] = service.url
    service.start()
    task_id = ask_on_a_pull_request(service, github, model)
    task, url = linked_transcript(service, github, task_id)
    assert url.startswith(f"{service.url}/artifacts/{task_id}/transcript.json?expires=")
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"] == "application/json"
        transcript = json.loads(response.read())
    assert_full(transcript, task)
    assert model.api_key not in json.dumps(transcript)
    assert (service.data_dir / "artifacts" / task_id / "sandbox.log").read_text().startswith(
        f"$ {LONG_OUTPUT}\nexit code 0\n")


@pytest.fixture
def storage():
    fake = FakeSupabaseStorage().start()
    yield fake
    fake.stop()


def test_with_supabase_the_link_is_a_signed_storage_url(service_factory, github, model, storage):
    service = service_factory(SUPABASE_URL=storage.url, SUPABASE_KEY=storage.service_key,
                              ASYNC_CODE_ARTIFACT_BUCKET="e2e-artifacts").start()
    task_id = ask_on_a_pull_request(service, github, model)
    task, url = linked_transcript(service, github, task_id)
    assert url.startswith(f"{storage.url}/storage/v1/object/sign/e2e-artifacts/{task_id}/"
                          "transcript.json?token=")
    assert storage.buckets["e2e-artifacts"].public is False
    assert set(storage.buckets["e2e-artifacts"].objects) == {f"{task_id}/transcript.json",
                                                             f"{task_id}/sandbox.log"}
    assert_full(json.loads(fetch(url)), task)
    # The service itself serves nothing then, and the key never reached its log.
    assert storage.service_key not in service.logs()


def test_the_check_run_on_a_pushed_commit_links_the_full_transcript(service_factory, github,
                                                                    model):
    service = service_factory()
    service.env["ASYNC_CODE_PUBLIC_URL"] = service.url
    service.start()
    model.add_script(GOLDEN_INSTRUCTION, golden_script())
    task = service.wait_for_task(service.comment(f"@async-code {GOLDEN_INSTRUCTION}"))
    assert task.status == "completed" and task.pushed_check_run_id, (task.error, service.logs())
    [run] = github.check_runs_of(REPO, app_slug=github.app_slug)
    assert run["id"] == task.pushed_check_run_id and run["conclusion"] == "success"
    [url] = LINK.findall(run["summary"])
    assert url.startswith(f"{service.url}/artifacts/{task.id}/transcript.json?expires=")
    assert json.loads(fetch(url))[0]["role"] == "user"


def test_the_task_store_keeps_the_transcript_without_what_looks_like_a_token(service, github,
                                                                            model):
    # The agent never holds a token, but what it prints may look like one (a fixture, a paste):
    # the copy kept with the task is redacted like the artifacts.
    token = "ghs_" + "T0kenLooking" * 3
    model.add_script(INSTRUCTION, [
        Turn([ToolCall("bash", {"command": f"echo {token}"}, expect=lambda out: token in out)]),
        Final(f"Nothing to change; it printed {token}.")])
    task = service.wait_for_task(service.comment(f"@async-code {INSTRUCTION}",
                                                 number=people_pull(github), pull_request=True,
                                                 login=WRITER, user_id=WRITER_ID))
    assert task.status == "completed", (task.error, service.logs())
    kept = json.dumps(task.chat_history) + task.output
    assert token not in kept and "[redacted]" in kept
