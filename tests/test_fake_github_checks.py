"""The fake GitHub's Checks API for the App's own check runs behaves as GitHub's."""

from pathlib import Path
from typing import Any

import pytest
from githubkit import AppAuthStrategy, GitHub, TokenAuthStrategy
from githubkit.cache import MemCacheStrategy
from githubkit.exception import RequestFailed
from githubkit.webhooks import parse_obj

from tests.fakes.github import FakeGitHub
from tests.fakes.keys import generate_app_key
from tests.test_fake_github import APP_ID, INSTALLATION_ID, bare_git, client, mint_token, status_of

REPO = "acme/widgets"
ARCHIVED = "acme/attic"
CHECKS = {"contents": "write", "pull_requests": "write", "checks": "write"}
BUTTONS = [
    {"label": "Cancel", "description": "Stop this task", "identifier": "cancel"},
    {"label": "Retry", "description": "Run this task again", "identifier": "retry"},
]


@pytest.fixture(scope="module")
def app_key() -> tuple[str, str]:
    return generate_app_key()


@pytest.fixture
def fake(tmp_path: Path, app_key: tuple[str, str]):
    with FakeGitHub(tmp_path / "github", app_id=APP_ID, public_key_pem=app_key[1]) as github:
        github.add_repo(REPO, {"README.md": "# widgets\n", "src/widget.py": "SIZE = 1\n"})
        github.add_repo(ARCHIVED, {"README.md": "old\n"}, archived=True)
        github.add_installation(INSTALLATION_ID, [REPO, ARCHIVED], permissions=CHECKS)
        yield github


@pytest.fixture
def app_client(fake: FakeGitHub, app_key: tuple[str, str]) -> GitHub:
    return client(fake, AppAuthStrategy(str(APP_ID), app_key[0]))


@pytest.fixture
def github(fake: FakeGitHub, app_client: GitHub) -> GitHub:
    return client(fake, TokenAuthStrategy(mint_token(app_client)))


@pytest.fixture
def unchecked(fake: FakeGitHub, app_client: GitHub) -> GitHub:
    """A client that sends bodies as given, so GitHub's own validation is what answers."""
    return GitHub(TokenAuthStrategy(mint_token(app_client)), base_url=fake.base_url,
                  cache_strategy=MemCacheStrategy(), rest_api_validate_body=False)


def main_sha(fake: FakeGitHub) -> str:
    return bare_git(fake, REPO, "rev-parse", "main")


def create(github: GitHub, **fields: Any):
    return github.rest.checks.create("acme", "widgets", data=fields)


def test_a_task_reports_from_queued_to_completed(fake: FakeGitHub, github: GitHub):
    number = fake.add_pull(REPO, head="bigger", files={"src/widget.py": "SIZE = 2\n"})
    head = bare_git(fake, REPO, "rev-parse", "bigger")

    created = github.rest.checks.create(
        "acme", "widgets", name="async-code", head_sha=head, external_id="task-17",
        details_url="https://tasks.example/17", status="queued",
        output={"title": "Queued", "summary": "Waiting for a sandbox."})
    run_id = created.parsed_data.id
    github.rest.checks.update(
        "acme", "widgets", run_id, status="in_progress", started_at="2030-01-02T03:04:05Z",
        output={"title": "Working", "summary": "Step 1 of 3", "text": "Cloned the repository."},
        actions=BUTTONS[:1])
    finished = github.rest.checks.update(
        "acme", "widgets", run_id, conclusion="success",
        output={"title": "Done", "summary": "Opened #101."}, actions=BUTTONS[1:]).parsed_data
    read = github.rest.checks.get("acme", "widgets", run_id).parsed_data
    listed = github.rest.checks.list_for_ref("acme", "widgets", "bigger",
                                             app_id=APP_ID).parsed_data
    record = fake.check_run(run_id)

    assert created.status_code == 201
    assert (created.parsed_data.status, created.parsed_data.conclusion,
            created.parsed_data.completed_at) == ("queued", None, None)
    assert (read.name, read.head_sha, read.external_id, read.details_url) == (
        "async-code", head, "task-17", "https://tasks.example/17")
    assert (read.status, read.conclusion) == ("completed", "success")
    assert read.completed_at is not None and finished.completed_at == read.completed_at
    assert read.started_at.isoformat() == "2030-01-02T03:04:05+00:00"
    assert (read.output.title, read.output.summary, read.output.text) == (
        "Done", "Opened #101.", None)
    assert (read.app.id, read.app.slug) == (APP_ID, "async-code")
    assert read.check_suite.id == created.parsed_data.check_suite.id
    assert [pull.number for pull in read.pull_requests] == [number]
    assert [run.id for run in listed.check_runs] == [run_id]
    assert [state["status"] for state in record["history"]] == [
        "queued", "in_progress", "completed"]
    assert [state["summary"] for state in record["history"]] == [
        "Waiting for a sandbox.", "Step 1 of 3", "Opened #101."]
    assert [[button["identifier"] for button in state["actions"]]
            for state in record["history"]] == [[], ["cancel"], ["retry"]]
    assert fake.check_runs_of(REPO, head_sha=head, app_slug="async-code") == [record]
    assert fake.check_runs_of(REPO, app_slug="ci") == []


def test_a_run_created_without_a_details_url_links_to_the_app(fake: FakeGitHub,
                                                               github: GitHub):
    run = github.rest.checks.create("acme", "widgets", name="async-code",
                                    head_sha=main_sha(fake)).parsed_data

    assert run.details_url == run.app.external_url
    assert (run.external_id, run.output.title, run.output.annotations_count) == ("", None, 0)


def test_a_conclusion_completes_the_run_whatever_the_status(fake: FakeGitHub, github: GitHub):
    run = github.rest.checks.create("acme", "widgets", name="async-code",
                                    head_sha=main_sha(fake), status="in_progress",
                                    conclusion="cancelled",
                                    completed_at="2030-05-06T07:08:09+02:00").parsed_data

    assert (run.status, run.conclusion) == ("completed", "cancelled")
    assert run.completed_at.isoformat() == "2030-05-06T05:08:09+00:00"


def test_a_completed_run_can_be_taken_back_to_in_progress(fake: FakeGitHub, github: GitHub):
    run_id = github.rest.checks.create("acme", "widgets", name="async-code",
                                       head_sha=main_sha(fake),
                                       conclusion="failure").parsed_data.id

    reopened = github.rest.checks.update("acme", "widgets", run_id,
                                         status="in_progress").parsed_data

    assert (reopened.status, reopened.conclusion, reopened.completed_at) == (
        "in_progress", None, None)
    assert [state["conclusion"] for state in fake.check_run(run_id)["history"]] == [
        "failure", None]


def test_annotations_add_up_and_buttons_are_replaced(fake: FakeGitHub, github: GitHub):
    note = {"path": "src/widget.py", "start_line": 1, "end_line": 1,
            "annotation_level": "notice", "message": "Changed here."}
    run_id = github.rest.checks.create(
        "acme", "widgets", name="async-code", head_sha=main_sha(fake), actions=BUTTONS,
        output={"title": "t", "summary": "s", "annotations": [note, note]}).parsed_data.id

    updated = github.rest.checks.update(
        "acme", "widgets", run_id, actions=BUTTONS[1:],
        output={"title": "t", "summary": "s", "annotations": [note]}).parsed_data
    renamed = github.rest.checks.update("acme", "widgets", run_id, name="async-code #2")

    assert updated.output.annotations_count == 3
    assert fake.check_run(run_id)["actions"] == BUTTONS[1:]
    assert renamed.parsed_data.name == "async-code #2"
    assert fake.check_run(run_id)["actions"] == BUTTONS[1:]  # untouched when not sent


def test_a_fork_pull_requests_head_takes_check_runs(fake: FakeGitHub, github: GitHub):
    fake.add_pull(REPO, head="patch", fork="carol/widgets", files={"src/widget.py": "SIZE = 5\n"})
    head = bare_git(fake, "carol/widgets", "rev-parse", "patch")

    run = github.rest.checks.create("acme", "widgets", name="async-code",
                                    head_sha=head).parsed_data
    listed = github.rest.checks.list_for_ref("acme", "widgets", head).parsed_data

    # GitHub leaves pull requests from forks out of a run's pull_requests.
    assert (run.head_sha, run.pull_requests) == (head, [])
    assert [each.id for each in listed.check_runs] == [run.id]


LIMITS = [
    ("four actions", {"actions": BUTTONS * 2},
     "No more than 3 items are allowed; 4 were supplied."),
    ("a 21-character label", {"actions": [{**BUTTONS[0], "label": "L" * 21}]},
     "Only 20 characters are allowed; 21 were supplied."),
    ("a 41-character description", {"actions": [{**BUTTONS[0], "description": "D" * 41}]},
     "Only 40 characters are allowed; 41 were supplied."),
    ("a 21-character identifier", {"actions": [{**BUTTONS[0], "identifier": "i" * 21}]},
     "Only 20 characters are allowed; 21 were supplied."),
    ("a button without an identifier",
     {"actions": [{"label": "Cancel", "description": "Stop this task"}]},
     '"identifier" wasn\'t supplied.'),
    ("a 65,536-character summary", {"output": {"title": "t", "summary": "s" * 65536}},
     "Only 65535 characters are allowed; 65536 were supplied."),
    ("a 65,536-character text", {"output": {"title": "t", "summary": "s", "text": "x" * 65536}},
     "Only 65535 characters are allowed; 65536 were supplied."),
    ("an output without a summary", {"output": {"title": "t"}}, '"summary" wasn\'t supplied.'),
    ("51 annotations", {"output": {"title": "t", "summary": "s", "annotations": [
        {"path": "README.md", "start_line": 1, "end_line": 1, "annotation_level": "notice",
         "message": "m"}] * 51}}, "No more than 50 items are allowed; 51 were supplied."),
    # Word for word what GitHub answered an app that tried the status GitHub Actions keeps.
    ("a status reserved for GitHub Actions", {"status": "waiting"},
     'No subschema in "anyOf" matched.\n'
     'waiting is not a member of ["queued", "in_progress", "completed"].\n'
     'waiting is not a member of ["completed"].\n'
     '"conclusion" wasn\'t supplied.\n'
     'waiting is not a member of ["queued", "in_progress"].'),
    ("an unknown status", {"status": "done", "conclusion": "success"},
     'No subschema in "anyOf" matched.\n'
     'done is not a member of ["queued", "in_progress", "completed"].\n'
     'done is not a member of ["completed"].\n'
     'done is not a member of ["queued", "in_progress"].'),
    ("completed without a conclusion", {"status": "completed"},
     'No subschema in "anyOf" matched.\n'
     '"conclusion" wasn\'t supplied.\n'
     'completed is not a member of ["queued", "in_progress"].'),
    ("completed_at without a conclusion", {"completed_at": "2030-01-01T00:00:00Z"},
     '"conclusion" wasn\'t supplied.'),
    # Word for word too: stale is GitHub's to set.
    ("the stale conclusion", {"conclusion": "stale"},
     'stale is not a member of ["success", "failure", "neutral", "cancelled", "timed_out", '
     '"action_required", "skipped"].'),
    ("a started_at that is no time", {"started_at": "yesterday"},
     "yesterday is not a valid date-time."),
    ("a completed_at on no day", {"conclusion": "success", "completed_at": "2030-02-30T00:00:00Z"},
     "2030-02-30T00:00:00Z is not a valid date-time."),
    ("a name that is no string", {"name": 7}, "For 'properties/name', 7 is not a string."),
]


@pytest.mark.parametrize(("change", "message"), [case[1:] for case in LIMITS],
                         ids=[case[0] for case in LIMITS])
@pytest.mark.parametrize("verb", ["create", "update"])
def test_a_check_run_past_githubs_limits_is_refused(fake: FakeGitHub, unchecked: GitHub,
                                                    verb: str, change: dict[str, Any],
                                                    message: str):
    sha = main_sha(fake)
    run_id = fake.add_check_run(REPO, sha, "async-code", status="queued", app_slug="async-code")

    with pytest.raises(RequestFailed) as refused:
        if verb == "create":
            create(unchecked, **{"name": "async-code", "head_sha": sha, **change})
        else:
            unchecked.rest.checks.update("acme", "widgets", run_id, data=change)

    assert status_of(refused) == (422, "Invalid request.\n\n" + message)
    assert [run["id"] for run in fake.check_runs_of(REPO)] == [run_id]
    assert len(fake.check_run(run_id)["history"]) == 1


@pytest.mark.parametrize("field", ["title", "summary", "text"])
def test_output_is_limited_in_bytes_as_well_as_characters(fake: FakeGitHub, unchecked: GitHub,
                                                          field: str):
    # 21,846 euro signs are within 65,535 characters but take 65,538 bytes.
    output = {"title": "t", "summary": "s", field: "€" * 21846}

    with pytest.raises(RequestFailed) as refused:
        create(unchecked, name="async-code", head_sha=main_sha(fake), output=output)

    assert status_of(refused) == (422, "Validation Failed")
    assert refused.value.response.json()["errors"] == [
        {"resource": "CheckRun", "code": "custom", "field": field,
         "message": f"{field} exceeds a maximum bytesize of 65535"}]
    assert fake.check_runs_of(REPO) == []


def test_a_title_past_65535_characters_is_refused(fake: FakeGitHub, unchecked: GitHub):
    with pytest.raises(RequestFailed) as refused:
        create(unchecked, name="async-code", head_sha=main_sha(fake),
               output={"title": "t" * 65536, "summary": "s"})

    assert status_of(refused) == (422, "Validation Failed")
    assert refused.value.response.json()["errors"][0]["field"] == "title"


def test_65535_characters_are_within_the_limits(fake: FakeGitHub, github: GitHub):
    run = github.rest.checks.create(
        "acme", "widgets", name="async-code", head_sha=main_sha(fake),
        actions=[{"label": "L" * 20, "description": "D" * 40, "identifier": "i" * 20}] * 3,
        output={"title": "t" * 65535, "summary": "s" * 65535, "text": "x" * 65535}).parsed_data

    assert len(run.output.summary) == 65535


def test_a_check_run_needs_both_name_and_head_sha(unchecked: GitHub):
    with pytest.raises(RequestFailed) as refused:
        create(unchecked, status="queued")

    assert status_of(refused) == (422, 'Invalid request.\n\n"head_sha", "name" weren\'t supplied.')


@pytest.mark.parametrize("head_sha", ["0" * 40, "main", "short"])
def test_a_check_run_goes_only_on_a_known_commit(fake: FakeGitHub, github: GitHub,
                                                 head_sha: str):
    with pytest.raises(RequestFailed) as refused:
        github.rest.checks.create("acme", "widgets", name="async-code", head_sha=head_sha)

    assert status_of(refused) == (422, f"No commit found for SHA: {head_sha}")


def test_writing_check_runs_needs_checks_write(fake: FakeGitHub, app_client: GitHub):
    sha = main_sha(fake)
    run_id = fake.add_check_run(REPO, sha, "async-code", status="queued", app_slug="async-code")
    reader = client(fake, TokenAuthStrategy(mint_token(
        app_client, permissions={"checks": "read", "contents": "write"})))
    blind = client(fake, TokenAuthStrategy(mint_token(app_client,
                                                      permissions={"contents": "write"})))

    with pytest.raises(RequestFailed) as not_created:
        reader.rest.checks.create("acme", "widgets", name="async-code", head_sha=sha)
    with pytest.raises(RequestFailed) as not_updated:
        reader.rest.checks.update("acme", "widgets", run_id, status="in_progress")
    read = reader.rest.checks.get("acme", "widgets", run_id).parsed_data
    with pytest.raises(RequestFailed) as not_read:
        blind.rest.checks.get("acme", "widgets", run_id)

    assert status_of(not_created) == (403, "Resource not accessible by integration")
    assert status_of(not_updated) == (403, "Resource not accessible by integration")
    assert status_of(not_read) == (403, "Resource not accessible by integration")
    assert [failure[2] for failure in fake.auth_failures] == [
        "token lacks checks:write", "token lacks checks:write", "token lacks checks:read"]
    assert read.status == "queued"
    assert fake.check_runs_of(REPO)[0]["status"] == "queued"


def test_only_the_app_that_made_a_run_may_update_it(fake: FakeGitHub, github: GitHub):
    sha = main_sha(fake)
    theirs = fake.add_check_run(REPO, sha, "tests", status="in_progress", app_slug="ci")
    earlier = fake.add_check_run(REPO, sha, "async-code", status="in_progress",
                                 app_slug="async-code", external_id="task-3")

    with pytest.raises(RequestFailed) as refused:
        github.rest.checks.update("acme", "widgets", theirs, conclusion="cancelled")
    read = github.rest.checks.get("acme", "widgets", theirs).parsed_data
    mine = github.rest.checks.update("acme", "widgets", earlier, conclusion="cancelled")

    assert status_of(refused) == (403, "Resource not accessible by integration")
    assert fake.auth_failures[-1][2] == f"check run {theirs} belongs to app ci"
    assert (read.app.slug, read.status) == ("ci", "in_progress")
    assert (mine.parsed_data.conclusion, mine.parsed_data.external_id) == ("cancelled", "task-3")


def test_an_unknown_or_elsewhere_check_run_is_not_found(fake: FakeGitHub, github: GitHub):
    fake.add_repo("acme/gadgets", {"README.md": "gadgets\n"})
    fake.add_installation(INSTALLATION_ID, [REPO, "acme/gadgets"], permissions=CHECKS)
    elsewhere = fake.add_check_run("acme/gadgets", bare_git(fake, "acme/gadgets", "rev-parse",
                                                            "main"),
                                   "async-code", app_slug="async-code")

    failures = []
    for call in (lambda: github.rest.checks.get("acme", "widgets", 999),
                 lambda: github.rest.checks.update("acme", "widgets", 999, status="queued"),
                 lambda: github.rest.checks.get("acme", "widgets", elsewhere),
                 lambda: github.rest.checks.update("acme", "widgets", elsewhere,
                                                   status="queued")):
        with pytest.raises(RequestFailed) as missing:
            call()
        failures.append(status_of(missing))

    assert failures == [(404, "Not Found")] * 4


def test_an_archived_repository_takes_no_check_runs(fake: FakeGitHub, github: GitHub):
    sha = bare_git(fake, ARCHIVED, "rev-parse", "main")

    with pytest.raises(RequestFailed) as refused:
        github.rest.checks.create("acme", "attic", name="async-code", head_sha=sha)

    assert status_of(refused) == (403, "Repository was archived so is read-only.")


def test_a_button_click_arrives_as_github_sends_it(fake: FakeGitHub, github: GitHub):
    number = fake.add_pull(REPO, head="bigger", files={"src/widget.py": "SIZE = 2\n"})
    head = bare_git(fake, REPO, "rev-parse", "bigger")
    run = github.rest.checks.create(
        "acme", "widgets", name="async-code", head_sha=head, external_id="task-17",
        details_url="https://tasks.example/17", conclusion="failure", actions=BUTTONS,
        output={"title": "Failed", "summary": "The tests failed."}).parsed_data

    payload = fake.check_run_event(run.id, "requested_action", sender_login="dora",
                                   identifier="retry")
    event = parse_obj("check_run", payload)

    assert (payload["action"], payload["requested_action"]) == (
        "requested_action", {"identifier": "retry"})
    check_run = payload["check_run"]
    assert (check_run["id"], check_run["name"], check_run["head_sha"],
            check_run["external_id"], check_run["details_url"]) == (
        run.id, "async-code", head, "task-17", "https://tasks.example/17")
    assert (check_run["status"], check_run["conclusion"]) == ("completed", "failure")
    assert (check_run["app"]["id"], check_run["app"]["slug"]) == (APP_ID, "async-code")
    suite = check_run["check_suite"]
    assert (suite["id"], suite["head_branch"], suite["head_sha"]) == (
        run.check_suite.id, "bigger", head)
    assert (suite["status"], suite["conclusion"]) == ("completed", "failure")
    pull = check_run["pull_requests"][0]
    assert (pull["number"], pull["head"]["ref"], pull["head"]["sha"],
            pull["head"]["repo"]["name"], pull["base"]["ref"]) == (
        number, "bigger", head, "widgets", "main")
    assert payload["repository"]["full_name"] == REPO
    assert payload["installation"]["id"] == INSTALLATION_ID
    assert payload["sender"]["login"] == "dora"
    assert event.requested_action.identifier == "retry"
    assert event.check_run.pull_requests[0].number == number


def test_a_re_run_request_queues_the_suite_and_leaves_the_run(fake: FakeGitHub,
                                                              github: GitHub):
    sha = main_sha(fake)
    run_id = github.rest.checks.create("acme", "widgets", name="async-code", head_sha=sha,
                                       conclusion="success").parsed_data.id

    payload = fake.check_run_event(run_id, "rerequested", sender_login="dora")
    event = parse_obj("check_run", payload)

    assert "requested_action" not in payload
    assert (payload["check_run"]["status"], payload["check_run"]["conclusion"]) == (
        "completed", "success")
    assert (payload["check_run"]["check_suite"]["status"],
            payload["check_run"]["check_suite"]["conclusion"],
            payload["check_run"]["check_suite"]["head_branch"]) == ("queued", None, "main")
    assert payload["check_run"]["pull_requests"] == []
    assert event.action == "rerequested"
    assert len(fake.check_run(run_id)["history"]) == 1


def test_events_only_github_could_send(fake: FakeGitHub, github: GitHub):
    sha = main_sha(fake)
    running = github.rest.checks.create("acme", "widgets", name="async-code", head_sha=sha,
                                        status="in_progress", actions=BUTTONS).parsed_data.id
    done = github.rest.checks.create("acme", "widgets", name="async-code", head_sha=sha,
                                     conclusion="success", actions=BUTTONS).parsed_data.id
    theirs = fake.add_check_run(REPO, sha, "tests", app_slug="ci")

    refusals = {}
    for name, build in {
        "in progress": lambda: fake.check_run_event(running, "requested_action",
                                                    sender_login="dora", identifier="cancel"),
        "no such button": lambda: fake.check_run_event(done, "requested_action",
                                                       sender_login="dora",
                                                       identifier="continue"),
        "another app's run": lambda: fake.check_run_event(theirs, "rerequested",
                                                          sender_login="dora"),
        "a button on a re-run": lambda: fake.check_run_event(done, "rerequested",
                                                             sender_login="dora",
                                                             identifier="retry"),
        "created": lambda: fake.check_run_event(done, "created", sender_login="dora"),
        "no such run": lambda: fake.check_run_event(999, "rerequested", sender_login="dora"),
    }.items():
        with pytest.raises(ValueError) as refused:
            build()
        refusals[name] = str(refused.value)

    assert "only after it completes" in refusals["in progress"]
    assert "has no button 'continue'" in refusals["no such button"]
    assert "belongs to ci" in refusals["another app's run"]
    assert refusals["a button on a re-run"] == "only a requested_action event names a button"
    assert refusals["created"].startswith("action must be")
    assert refusals["no such run"] == "no check run 999"
