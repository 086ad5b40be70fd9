"""What a request is told when the service lacks a setting tasks need: the real service, with
Docker and the fakes, but no model key."""

from __future__ import annotations

import pytest

from runner.unconfigured import reason
from tests.conftest import REPO, WRITER, WRITER_ID


@pytest.mark.parametrize(("missing", "expected"), [
    (["ANTHROPIC_API_KEY"], "`ANTHROPIC_API_KEY` is not set. Whoever runs the service sets it"),
    (["A", "B"], "`A` and `B` are not set. Whoever runs the service sets them"),
])
def test_the_reason_names_the_missing_settings(missing, expected):
    assert expected in reason(missing) and "restarts it" in reason(missing)


def test_a_comment_is_answered_with_the_missing_key_and_nothing_runs(service_factory, github,
                                                                     model, docker_client):
    service = service_factory(ANTHROPIC_API_KEY="").start()
    task = service.wait_for_task(service.comment("@async-code add a --version flag",
                                                 login=WRITER, user_id=WRITER_ID))
    assert task.status == "failed" and "`ANTHROPIC_API_KEY` is not set" in task.error
    [comment] = [c for c in github.comments.values() if c["user"] == "async-code[bot]"]
    assert "queued" in comment["history"][0]
    assert comment["history"][-1].startswith("❌ **async-code** failed: this async-code service "
                                             "cannot run tasks yet: `ANTHROPIC_API_KEY`")
    assert [r["content"] for r in github.reactions] == ["eyes"]
    assert model.requests == [] and github.pulls == []
    assert docker_client.containers.list(
        all=True, filters={"label": f"async-code.task={task.id}"}) == []
    assert "ANTHROPIC_API_KEY is not set" in service.logs()


def test_a_label_on_a_pull_request_ends_its_check_run_and_comes_off(service_factory, github,
                                                                   model):
    service = service_factory(ANTHROPIC_API_KEY="").start()
    number = github.add_pull(REPO, head="feature", files={"cli.py": "print('hi')\n"}, user=WRITER)
    github.label_issue(REPO, number, "async-code")
    task = service.wait_for_task(service.label(subject="pull_request", number=number))
    assert task.status == "failed"
    [run] = github.check_runs_of(REPO, app_slug="async-code")
    assert (run["status"], run["conclusion"], run["title"]) == ("completed", "failure", "Not set up")
    assert "ANTHROPIC_API_KEY" in run["summary"]
    assert github.issue_labels(REPO, number) == [] and model.requests == []
