"""The runner's GitHub client against the loopback fake: narrowed tokens, caching, errors."""

from __future__ import annotations

import pytest

from runner.execute import TaskFailed, _checked_repository
from runner.github import (ACKNOWLEDGE_PERMISSIONS, EXECUTE_PERMISSIONS, AppNotInstalled, GitHubApp,
                           GitHubError)
from tests.conftest import APP_ID, INSTALLATION_ID, READER, REPO, WRITER


@pytest.fixture
def app(github, app_key):
    return GitHubApp(app_id=str(APP_ID), private_key=app_key[0], api_url=github.base_url,
                     slug="async-code")


def test_tokens_are_narrowed_and_cached_per_permission_set(app, github):
    first = app.installation_token(INSTALLATION_ID, REPO, ACKNOWLEDGE_PERMISSIONS)
    assert app.installation_token(INSTALLATION_ID, REPO, ACKNOWLEDGE_PERMISSIONS) == first
    second = app.installation_token(INSTALLATION_ID, REPO, EXECUTE_PERMISSIONS)
    assert second != first
    assert [(r["repositories"], r["permissions"]) for r in github.token_requests] == [
        (["widgets"], ACKNOWLEDGE_PERMISSIONS), (["widgets"], EXECUTE_PERMISSIONS)]


def test_a_token_close_to_expiry_is_replaced(app, github, monkeypatch):
    import runner.github as module
    from datetime import timedelta

    first = app.installation_token(INSTALLATION_ID, REPO, ACKNOWLEDGE_PERMISSIONS)
    monkeypatch.setattr(module, "_REFRESH_MARGIN", timedelta(hours=2))  # everything is "about to expire"
    assert app.installation_token(INSTALLATION_ID, REPO, ACKNOWLEDGE_PERMISSIONS) != first
    assert len(github.token_requests) == 2


def test_an_unknown_installation_is_reported_as_not_installed(app):
    with pytest.raises(AppNotInstalled, match="not installed on acme/widgets"):
        app.installation_token(999, REPO, ACKNOWLEDGE_PERMISSIONS)


def test_a_repository_outside_the_installation_is_reported_as_not_installed(app, github):
    github.add_repo("acme/private", {"a": "b"})
    with pytest.raises(AppNotInstalled):
        app.installation_token(INSTALLATION_ID, "acme/private", ACKNOWLEDGE_PERMISSIONS)


def test_permissions_read_role_names(app, github):
    github.add_user("carol", 11)
    github.set_permission(REPO, "carol", "maintain")
    client = app.repo_client(INSTALLATION_ID, REPO, ACKNOWLEDGE_PERMISSIONS)
    assert client.permission(WRITER) == "write"
    assert client.permission(READER) == "read"
    assert client.permission("carol") == "write"  # maintain is a write role
    assert client.permission("nobody-at-all") == "none"


@pytest.mark.parametrize("base, allowed", [("write", True), ("maintain", True), ("triage", False)])
def test_custom_repository_roles_count_by_the_level_they_grant(app, github, base, allowed):
    from runner.acknowledge import WRITE_PERMISSIONS

    github.add_user("dana", 12)
    github.set_permission(REPO, "dana", base, custom_role="release-manager")
    client = app.repo_client(INSTALLATION_ID, REPO, ACKNOWLEDGE_PERMISSIONS)
    assert (client.permission("dana") in WRITE_PERMISSIONS) is allowed


def test_the_bot_identity_is_looked_up_once(app, github):
    client = app.repo_client(INSTALLATION_ID, REPO, EXECUTE_PERMISSIONS)
    expected = ("async-code[bot]", f"{github.bot_user_id}+async-code[bot]@users.noreply.github.com")
    assert app.bot_identity(client) == expected
    assert app.bot_identity(client) == expected
    assert len([r for r in github.requests if r["path"] == "/users/async-code[bot]"]) == 1


def test_the_token_never_shows_in_the_clients_repr(app):
    client = app.repo_client(INSTALLATION_ID, REPO, EXECUTE_PERMISSIONS)
    assert client.token not in repr(client)


@pytest.mark.parametrize(
    "repository, reason",
    [({"archived": True}, "is archived"), ({"disabled": True}, "is disabled")],
)
def test_repositories_that_cannot_take_a_push_are_refused(repository, reason):
    class Client:
        repo = REPO

        def repository(self):
            return {"default_branch": "main", "clone_url": "http://x", **repository}

    with pytest.raises(TaskFailed, match=reason):
        _checked_repository(Client())


def test_an_inaccessible_repository_is_explained(app, github):
    client = app.repo_client(INSTALLATION_ID, REPO, EXECUTE_PERMISSIONS)
    github.fail_next("GET", r"^/repos/acme/widgets$", 404, {"message": "Not Found"})
    with pytest.raises(GitHubError, match="not accessible"):
        client.repository()


def test_a_long_task_switches_to_a_fresh_token_before_the_old_one_expires(app, github, monkeypatch):
    import runner.github as module
    from datetime import timedelta

    github.add_issue(REPO, 7)
    client = app.repo_client(INSTALLATION_ID, REPO, EXECUTE_PERMISSIONS)
    first = client.token
    client.comment(7, "one")
    monkeypatch.setattr(module, "_REFRESH_MARGIN", timedelta(hours=2))
    github.expire_token(first)
    client.comment(7, "two")  # would be refused with the expired token
    assert client.token != first and len(github.token_requests) >= 2
    assert [c["body"] for c in github.comments.values()] == ["one", "two"]
