"""An acknowledger held up past its lease while another acknowledged the same task: the task is
queued once, and what the late one posted says so instead of looking like a second request
waiting (or, on a pull request, leaving a check run queued for ever)."""

from __future__ import annotations

from app.store import NewTask, Store
from runner.acknowledge import acknowledge
from runner.github import GitHubApp
from tests.conftest import APP_ID, INSTALLATION_ID, REPO, WRITER, WRITER_ID


def late_acknowledgement(tmp_path, github, app_key, trigger: str, number: int):
    store = Store(tmp_path / "tasks.db")
    store.initialise()
    task = store.record_delivery("g1", "issue_comment", "created", NewTask(
        trigger=trigger, repo=REPO, installation_id=INSTALLATION_ID, number=number,
        comment_id=None, instruction="add a --version flag", requested_by=WRITER,
        requested_by_id=WRITER_ID))
    # Another acknowledger queued it while this one was held up.
    assert store.mark_queued(task.id, status_comment_id=1, check_run_id=None)
    app = GitHubApp(app_id=str(APP_ID), private_key=app_key[0], api_url=github.base_url,
                    slug="async-code")
    acknowledge(task, github=app, store=store, slug="async-code", max_queue=10)
    return store.get(task.id)


def test_a_late_acknowledgement_on_an_issue_says_the_other_one_counts(tmp_path, github, app_key):
    github.add_issue(REPO, 7)
    task = late_acknowledgement(tmp_path, github, app_key, "comment", 7)
    assert task.status_comment_id == 1  # the first acknowledgement's, untouched
    [late] = [c for c in github.comments.values() if c["issue_number"] == 7]
    assert late["history"][0].startswith("⏳ **async-code** queued")
    assert late["body"].startswith("↩️ **async-code** acknowledged this request twice")


def test_a_late_acknowledgement_on_a_pull_request_concludes_its_check_run(tmp_path, github, app_key):
    number = github.add_pull(REPO, head="feature", files={"NEW.md": "new\n"})
    task = late_acknowledgement(tmp_path, github, app_key, "pr_comment", number)
    assert task.check_run_id is None
    [run] = github.check_runs_of(REPO)
    assert run["history"][0]["status"] == "queued"
    assert (run["status"], run["conclusion"], run["title"]) == ("completed", "neutral",
                                                                "Acknowledged twice")
