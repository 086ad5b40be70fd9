"""What a task's check run says at each stage: pure builders, within GitHub's limits, inert."""

from __future__ import annotations

import pytest

from app.store import Task
from runner import check_runs
from tests.github_rendering import findings, render


def task(**fields):
    values = dict(trigger="pr_comment", repo="acme/widgets", installation_id=1, number=12,
                  comment_id=3, instruction="x", requested_by="alice", requested_by_id=9,
                  id="c" * 32, delivery_guid="g", status="pending", created_at="2026-01-01")
    return Task(**{**values, **fields})


@pytest.mark.parametrize("action", [check_runs.CANCEL, check_runs.RETRY, check_runs.CONTINUE])
def test_buttons_fit_githubs_limits(action):
    assert len(action["label"]) <= 20 and len(action["description"]) <= 40
    assert len(action["identifier"]) <= 20


def test_a_queued_run_names_its_task_and_offers_cancel():
    fields = check_runs.queued(task(), head_sha="a" * 40, details_url="https://x/1#issuecomment-2")
    assert (fields["name"], fields["external_id"], fields["status"]) == ("async-code", "c" * 32, "queued")
    assert fields["details_url"] == "https://x/1#issuecomment-2"
    assert [a["identifier"] for a in fields["actions"]] == ["cancel"]


def test_progress_shows_the_turn_and_a_tool_name_as_code():
    fields = check_runs.in_progress(3, "bash", 75)
    assert fields["status"] == "in_progress" and fields["output"]["title"] == "Running: turn 3, last tool `bash`"
    assert "1m 15s" in fields["output"]["summary"]


def test_finished_output_is_inert_and_within_limits():
    hostile = ("Fixes #3, thanks @everyone: see https://evil.example/x\n" * 5000)
    fields = check_runs.finished("success", title=hostile, summary=hostile, text=hostile,
                                 github_host="github.com")
    output = fields["output"]
    assert all(len(output[key]) <= check_runs.OUTPUT_LIMIT for key in ("title", "summary", "text"))
    for key in ("title", "summary", "text"):
        assert findings(render(output[key]), github_host="github.com") == [], key
    assert [a["identifier"] for a in fields["actions"]] == ["retry"]


def test_the_change_summary_lists_files_and_figures():
    summary = check_runs.change_summary(files=[("cli.py", 3, 1), ("logo.png", None, None)],
                                        seconds=65, turns=4, tokens=1234, answer="Add a flag\n\nWhy.")
    assert "> Add a flag" in summary and "| `cli.py` | +3 | −1 |" in summary
    assert "| `logo.png` | binary |" in summary and "1m 05s · 4 turns · 1,234 tokens" in summary


def test_the_transcript_excerpt_lists_tool_calls_and_how_they_ended():
    transcript = [
        {"role": "user", "content": "do it"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Looking."},
            {"type": "tool_use", "id": "t1", "name": "bash", "input": {"command": "pytest -q\n  -x"}},
            {"type": "tool_use", "id": "t2", "name": "edit_file",
             "input": {"command": "view", "path": "cli.py"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": "exit code 1\nF", "is_error": True},
            {"type": "tool_result", "tool_use_id": "t2", "content": "1 def main", "is_error": False}]},
    ]
    excerpt = check_runs.transcript_excerpt(transcript)
    assert "- `bash` `pytest -q -x`: exit code 1" in excerpt
    assert "- `edit_file` `view` `cli.py`: ok" in excerpt
    assert check_runs.transcript_excerpt([]) == ""


def test_output_fits_githubs_byte_limit_too():
    # 60,000 characters of a four-byte emoji are 240,000 bytes: GitHub refuses that.
    fields = check_runs.finished("success", title="t", summary="\U0001F680" * 60_000,
                                 text="é" * 65_000)
    for key in ("summary", "text"):
        assert len(fields["output"][key].encode()) <= check_runs.OUTPUT_LIMIT, key
        assert fields["output"][key].endswith("…(truncated)")
