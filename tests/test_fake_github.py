"""The fake GitHub honours the contract the app relies on, checked with githubkit and real git."""

import base64
import json
import os
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import jwt
import pytest
from githubkit import AppAuthStrategy, GitHub, TokenAuthStrategy
from githubkit.cache import MemCacheStrategy
from githubkit.exception import RequestFailed

from tests.fakes.github import DEFAULT_INSTALLATION_PERMISSIONS, FakeGitHub
from tests.fakes.keys import generate_app_key

APP_ID = 424242
INSTALLATION_ID = 31
SUSPENDED_INSTALLATION_ID = 32
REPO = "octo/hello"
OTHER_REPO = "octo/other"


@pytest.fixture(scope="module")
def app_key() -> tuple[str, str]:
    return generate_app_key()


@pytest.fixture
def fake(tmp_path: Path, app_key: tuple[str, str]):
    with FakeGitHub(tmp_path / "github", app_id=APP_ID, public_key_pem=app_key[1]) as github:
        github.add_user("octocat", 1001)
        github.add_user("maintainer", 1002)
        github.add_user("triager", 1003)
        github.add_repo(REPO, {"README.md": "# hello\n", "src/app.py": "print('hi')\n"})
        github.add_repo(OTHER_REPO, {"README.md": "other\n"})
        github.add_repo("octo/empty", None)
        github.add_issue(REPO, 7)
        github.add_comment(REPO, 7, 12, "octocat", "@async-code add a test")
        github.add_installation(INSTALLATION_ID, [REPO, OTHER_REPO, "octo/empty"])
        github.add_repo("sleepy/repo", {"README.md": "zzz\n"})
        github.add_installation(SUSPENDED_INSTALLATION_ID, ["sleepy/repo"], suspended=True)
        yield github


def client(fake: FakeGitHub, auth) -> GitHub:
    # githubkit caches JWTs and tokens per app id in a process-wide store by default;
    # a store per client keeps one test's credentials out of the next.
    return GitHub(auth, base_url=fake.base_url, cache_strategy=MemCacheStrategy())


@pytest.fixture
def app_client(fake: FakeGitHub, app_key: tuple[str, str]) -> GitHub:
    return client(fake, AppAuthStrategy(str(APP_ID), app_key[0]))


def mint_token(app_client: GitHub, **narrowing) -> str:
    response = app_client.rest.apps.create_installation_access_token(INSTALLATION_ID, **narrowing)
    return response.parsed_data.token


def status_of(failure: pytest.ExceptionInfo[RequestFailed]) -> tuple[int, str]:
    return failure.value.response.status_code, failure.value.response.json()["message"]


def run_git(
    *args: str, cwd: Path | None = None, token: str | None = None, env: dict[str, str] | None = None
):
    environment = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    environment.pop("SSH_ASKPASS", None)
    environment.update(
        GIT_TERMINAL_PROMPT="0",
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_AUTHOR_NAME="Agent",
        GIT_AUTHOR_EMAIL="agent@example.invalid",
        GIT_COMMITTER_NAME="Agent",
        GIT_COMMITTER_EMAIL="agent@example.invalid",
    )
    if token is not None:
        # A header from the environment keeps the token out of the URL, the remote config and files.
        credentials = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        environment.update(
            GIT_CONFIG_COUNT="1",
            GIT_CONFIG_KEY_0="http.extraHeader",
            GIT_CONFIG_VALUE_0=f"Authorization: Basic {credentials}",
        )
    environment.update(env or {})
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def bare_git(fake: FakeGitHub, full_name: str, *args: str) -> str:
    completed = run_git("--git-dir", str(fake.repo_path(full_name)), *args)
    assert completed.returncode == 0, completed.stderr
    return completed.stdout.strip()


def test_app_jwt_opens_app_endpoints(fake: FakeGitHub, app_client: GitHub):
    app = app_client.rest.apps.get_authenticated().parsed_data
    installation = app_client.rest.apps.get_repo_installation("octo", "hello").parsed_data

    assert (app.id, app.slug) == (APP_ID, "async-code")
    assert installation.id == INSTALLATION_ID
    assert [entry["auth"] for entry in fake.requests] == ["jwt", "jwt"]


def test_jwt_signed_by_another_key_is_refused(fake: FakeGitHub):
    impostor_key, _ = generate_app_key()
    impostor = client(fake, AppAuthStrategy(str(APP_ID), impostor_key))

    with pytest.raises(RequestFailed) as failure:
        impostor.rest.apps.get_authenticated()

    assert status_of(failure) == (401, "Bad credentials")
    assert fake.auth_failures[0][:2] == ("GET", "/app")
    assert "Signature verification failed" in fake.auth_failures[0][2]


def signed_jwt(
    private_key: str, issuer: str | int, issued_ago: timedelta, lifetime: timedelta
) -> str:
    issued = int((datetime.now(timezone.utc) - issued_ago).timestamp())
    claims = {"iss": issuer, "iat": issued, "exp": issued + int(lifetime.total_seconds())}
    # Signed at the JWS layer because pyjwt.encode refuses a numeric iss, which GitHub accepts.
    return jwt.api_jws.encode(json.dumps(claims).encode(), private_key, algorithm="RS256")


@pytest.mark.parametrize(
    ("issuer", "issued_ago", "lifetime", "refusal"),
    [
        (str(APP_ID), timedelta(minutes=30), timedelta(minutes=10), "jwt expired"),
        (
            str(APP_ID),
            timedelta(minutes=1),
            timedelta(minutes=20),
            "jwt lifetime is over 10 minutes",
        ),
        ("1", timedelta(minutes=1), timedelta(minutes=10), "jwt issuer '1' is not app 424242"),
        (APP_ID, timedelta(minutes=1), timedelta(minutes=10), None),
    ],
)
def test_jwt_claims_are_checked(
    fake: FakeGitHub, app_key: tuple[str, str], issuer, issued_ago, lifetime, refusal
):
    token = signed_jwt(app_key[0], issuer, issued_ago, lifetime)

    with httpx.Client(base_url=fake.base_url) as http:
        response = http.get("/app", headers={"Authorization": f"Bearer {token}"})

    if refusal is None:
        assert (response.status_code, fake.auth_failures) == (200, [])
    else:
        assert (response.status_code, response.json()["message"]) == (401, "Bad credentials")
        assert fake.auth_failures == [("GET", "/app", refusal)]


def test_installation_tokens_work_as_bearer_and_basic_credentials(
    fake: FakeGitHub, app_client: GitHub
):
    token = mint_token(app_client)
    basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()

    with httpx.Client(base_url=fake.base_url) as http:
        statuses = [
            http.get("/repos/octo/hello", headers={"Authorization": header}).status_code
            for header in (f"Bearer {token}", f"Basic {basic}", f"Bearer {token}x")
        ]

    assert statuses == [200, 200, 401]
    assert [entry["auth"] for entry in fake.requests[1:]] == ["token", "basic", "token"]


def test_jwt_for_another_app_is_refused(fake: FakeGitHub, app_key: tuple[str, str]):
    other_app = client(fake, AppAuthStrategy(str(APP_ID + 1), app_key[0]))

    with pytest.raises(RequestFailed) as failure:
        other_app.rest.apps.get_authenticated()

    assert status_of(failure) == (401, "Bad credentials")


def test_minted_token_records_its_narrowing(fake: FakeGitHub, app_client: GitHub):
    response = app_client.rest.apps.create_installation_access_token(
        INSTALLATION_ID, repositories=["hello"], permissions={"issues": "write", "contents": "read"}
    )
    minted = response.parsed_data

    assert response.status_code == 201
    assert minted.token.startswith("ghs_")
    assert [repo.full_name for repo in minted.repositories] == [REPO]
    assert fake.token_requests[0]["repositories"] == ["hello"]
    assert fake.token_requests[0]["permissions"] == {"issues": "write", "contents": "read"}
    record = fake.minted_tokens[minted.token]
    assert record["repositories"] == [REPO]
    assert record["permissions"] == {"metadata": "read", "issues": "write", "contents": "read"}
    assert record["expires_at"].strftime("%Y-%m-%dT%H:%M:%SZ") == minted.expires_at
    assert all(minted.token not in str(entry) for entry in fake.requests)


def test_token_request_for_repo_outside_installation_is_refused(
    fake: FakeGitHub, app_client: GitHub
):
    with pytest.raises(RequestFailed) as failure:
        mint_token(app_client, repositories=["not-installed"])

    assert failure.value.response.status_code == 422
    assert fake.minted_tokens == {}


def test_suspended_installation_cannot_mint_tokens(fake: FakeGitHub, app_client: GitHub):
    with pytest.raises(RequestFailed) as failure:
        app_client.rest.apps.create_installation_access_token(SUSPENDED_INSTALLATION_ID)

    assert status_of(failure) == (403, "This installation has been suspended")
    assert fake.minted_tokens == {}


def test_unknown_installation_is_not_found(fake: FakeGitHub, app_client: GitHub):
    with pytest.raises(RequestFailed) as failure:
        app_client.rest.apps.create_installation_access_token(999)

    assert failure.value.response.status_code == 404


def test_installation_strategy_mints_and_uses_a_token(fake: FakeGitHub, app_client: GitHub):
    installation = app_client.with_auth(
        app_client.auth.as_installation(INSTALLATION_ID, repositories=["hello"])
    )

    repo = installation.rest.repos.get("octo", "hello").parsed_data
    unnarrowed = client(fake, TokenAuthStrategy(mint_token(app_client)))
    empty = unnarrowed.rest.repos.get("octo", "empty").parsed_data

    assert repo.clone_url == f"{fake.base_url}/git/octo/hello.git"
    assert (repo.default_branch, repo.archived, repo.size > 0) == ("main", False, True)
    assert empty.size == 0
    assert [entry["auth"] for entry in fake.requests] == ["jwt", "token", "jwt", "token"]


def test_token_narrowed_by_repository_id(fake: FakeGitHub, app_client: GitHub):
    installation = app_client.with_auth(app_client.auth.as_installation(INSTALLATION_ID))
    other_repo_id = installation.rest.repos.get("octo", "other").parsed_data.id

    github = client(fake, TokenAuthStrategy(mint_token(app_client, repository_ids=[other_repo_id])))

    assert github.rest.repos.get("octo", "other").parsed_data.id == other_repo_id
    with pytest.raises(RequestFailed) as failure:
        github.rest.repos.get("octo", "hello")
    assert failure.value.response.status_code == 403


def test_token_for_one_repo_is_refused_on_another(fake: FakeGitHub, app_client: GitHub):
    github = client(fake, TokenAuthStrategy(mint_token(app_client, repositories=["hello"])))

    assert github.rest.repos.get("octo", "hello").parsed_data.full_name == REPO
    with pytest.raises(RequestFailed) as failure:
        github.rest.repos.get("octo", "other")

    assert status_of(failure) == (403, "Resource not accessible by integration")
    assert fake.auth_failures == [("GET", "/repos/octo/other", "token does not cover octo/other")]


def test_token_without_issues_permission_cannot_comment(fake: FakeGitHub, app_client: GitHub):
    github = client(
        fake, TokenAuthStrategy(mint_token(app_client, permissions={"contents": "write"}))
    )

    with pytest.raises(RequestFailed) as failure:
        github.rest.issues.create_comment("octo", "hello", 7, body="On it.")

    assert status_of(failure) == (403, "Resource not accessible by integration")
    assert fake.comments == {}
    assert fake.auth_failures[-1][2] == "token lacks issues:write"


def test_unknown_and_expired_tokens_are_bad_credentials(fake: FakeGitHub, app_client: GitHub):
    token = mint_token(app_client)
    fake.expire_token(token)

    for credential in (token, "ghs_made_up"):
        github = client(fake, TokenAuthStrategy(credential))
        with pytest.raises(RequestFailed) as failure:
            github.rest.repos.get("octo", "hello")
        assert status_of(failure) == (401, "Bad credentials")


def test_comment_edits_are_kept_in_history(fake: FakeGitHub, app_client: GitHub):
    github = client(fake, TokenAuthStrategy(mint_token(app_client)))

    created = github.rest.issues.create_comment(
        "octo", "hello", 7, body="Working on it."
    ).parsed_data
    github.rest.issues.update_comment("octo", "hello", created.id, body="Step 2 of 3.")
    github.rest.issues.update_comment("octo", "hello", created.id, body="Done: #100")
    fetched = github.rest.issues.get_comment("octo", "hello", created.id).parsed_data

    assert created.id >= 5000
    assert created.user.login == "async-code[bot]" and created.user.type == "Bot"
    assert fetched.body == "Done: #100"
    assert fake.comments[created.id]["history"] == ["Working on it.", "Step 2 of 3.", "Done: #100"]
    assert (fake.comments[created.id]["repo"], fake.comments[created.id]["issue_number"]) == (
        REPO,
        7,
    )
    assert fake.requests[-2]["json"] == {"body": "Done: #100"}


def test_overlong_comment_and_unknown_comment_are_refused(fake: FakeGitHub, app_client: GitHub):
    github = client(fake, TokenAuthStrategy(mint_token(app_client)))

    with pytest.raises(RequestFailed) as too_long:
        github.rest.issues.create_comment("octo", "hello", 7, body="x" * 65537)
    with pytest.raises(RequestFailed) as missing:
        github.rest.issues.update_comment("octo", "hello", 4999, body="edit")
    with pytest.raises(RequestFailed) as no_issue:
        github.rest.issues.create_comment("octo", "hello", 8, body="on an issue that does not exist")
    with pytest.raises(RequestFailed) as no_comment:
        github.rest.reactions.create_for_issue_comment("octo", "hello", 13, content="eyes")

    assert too_long.value.response.status_code == 422
    assert missing.value.response.status_code == 404
    assert no_issue.value.response.status_code == 404
    assert no_comment.value.response.status_code == 404
    assert fake.comments == {} and fake.reactions == []


def test_reaction_on_triggering_comment_is_recorded(fake: FakeGitHub, app_client: GitHub):
    github = client(fake, TokenAuthStrategy(mint_token(app_client)))

    reaction = github.rest.reactions.create_for_issue_comment("octo", "hello", 12, content="eyes")

    assert reaction.status_code == 201
    assert reaction.parsed_data.content == "eyes"
    assert fake.reactions == [
        {
            "id": reaction.parsed_data.id,
            "repo": REPO,
            "comment_id": 12,
            "content": "eyes",
            "user": "async-code[bot]",
            "created_at": fake.reactions[0]["created_at"],
        }
    ]


def test_collaborator_permission_maps_roles_like_github(fake: FakeGitHub, app_client: GitHub):
    fake.set_permission(REPO, "maintainer", "maintain")
    fake.set_permission(REPO, "triager", "triage")
    github = client(fake, TokenAuthStrategy(mint_token(app_client)))

    def level(login: str) -> tuple[str, str]:
        found = github.rest.repos.get_collaborator_permission_level(
            "octo", "hello", login
        ).parsed_data
        return found.permission, found.role_name

    assert level("maintainer") == ("write", "maintain")
    assert level("triager") == ("read", "triage")
    assert level("octocat") == ("read", "read")
    with pytest.raises(RequestFailed) as failure:
        level("nobody")
    assert failure.value.response.status_code == 404


def test_bot_user_exists_and_unknown_users_do_not(fake: FakeGitHub):
    github = client(fake, TokenAuthStrategy("unused"))
    anonymous = GitHub(base_url=fake.base_url, cache_strategy=MemCacheStrategy())

    bot = anonymous.rest.users.get_by_username("async-code[bot]").parsed_data
    with pytest.raises(RequestFailed) as unknown:
        anonymous.rest.users.get_by_username("ghost")
    with pytest.raises(RequestFailed) as bad_token:
        github.rest.users.get_by_username("async-code[bot]")

    assert (bot.login, bot.id, bot.type) == ("async-code[bot]", 41898282 + 1000, "Bot")
    assert unknown.value.response.status_code == 404
    assert bad_token.value.response.status_code == 401


def test_unknown_route_is_not_found_and_recorded(fake: FakeGitHub):
    with httpx.Client(base_url=fake.base_url) as http:
        response = http.get("/repos/octo/hello/traffic/views")

    assert (response.status_code, response.json()["message"]) == (404, "Not Found")
    assert fake.requests[-1]["path"] == "/repos/octo/hello/traffic/views"


def test_planned_failure_happens_once(fake: FakeGitHub, app_client: GitHub):
    github = client(fake, TokenAuthStrategy(mint_token(app_client)))
    fake.fail_next("POST", r"/issues/\d+/comments$", 422, {"message": "Validation Failed"})

    with pytest.raises(RequestFailed) as failure:
        github.rest.issues.create_comment("octo", "hello", 7, body="first")
    github.rest.issues.create_comment("octo", "hello", 7, body="second")

    assert failure.value.response.status_code == 422
    assert [comment["body"] for comment in fake.comments.values()] == ["second"]


def test_clone_without_credentials_fails(fake: FakeGitHub, tmp_path: Path):
    cloned = run_git("clone", f"{fake.base_url}/git/octo/hello.git", str(tmp_path / "clone"))

    assert cloned.returncode != 0
    assert fake.auth_failures[0][:2] == ("GET", "/git/octo/hello.git/info/refs")
    assert fake.requests[0]["auth"] is None


def test_clone_commit_push_and_open_pull_request(
    fake: FakeGitHub, app_client: GitHub, tmp_path: Path
):
    token = mint_token(
        app_client,
        repositories=["hello"],
        permissions={"contents": "write", "pull_requests": "write"},
    )
    work = tmp_path / "work"

    assert (
        run_git("clone", f"{fake.base_url}/git/octo/hello.git", str(work), token=token).returncode
        == 0
    )
    (work / "src" / "app.py").write_text("print('hello, world')\n")
    assert run_git("checkout", "-b", "async-code/issue-7", cwd=work).returncode == 0
    assert run_git("commit", "-am", "Greet the world", cwd=work).returncode == 0
    pushed = run_git("push", "origin", "async-code/issue-7", cwd=work, token=token)
    assert pushed.returncode == 0, pushed.stderr

    github = client(fake, TokenAuthStrategy(token))
    pull = github.rest.pulls.create(
        "octo",
        "hello",
        title="Greet the world",
        head="async-code/issue-7",
        base="main",
        body="Closes #7",
    ).parsed_data

    assert (
        bare_git(fake, REPO, "log", "-1", "--format=%s", "async-code/issue-7") == "Greet the world"
    )
    assert pull.number == 100
    assert pull.head.sha == bare_git(fake, REPO, "rev-parse", "async-code/issue-7")
    assert pull.html_url == f"{fake.base_url}/octo/hello/pull/100"
    assert (pull.commits, pull.changed_files, pull.user.login) == (1, 1, "async-code[bot]")
    recorded = fake.pulls[0]
    assert (recorded["head"], recorded["base"], recorded["body"], recorded["repo"]) == (
        "async-code/issue-7",
        "main",
        "Closes #7",
        REPO,
    )
    assert {entry["auth"] for entry in fake.requests if entry["path"].startswith("/git/")} == {
        "basic"
    }


def test_push_without_contents_write_is_refused(
    fake: FakeGitHub, app_client: GitHub, tmp_path: Path
):
    token = mint_token(app_client, permissions={"contents": "read"})
    work = tmp_path / "work"
    assert (
        run_git("clone", f"{fake.base_url}/git/octo/hello.git", str(work), token=token).returncode
        == 0
    )
    assert run_git("commit", "--allow-empty", "-m", "nothing", cwd=work).returncode == 0

    pushed = run_git("push", "origin", "HEAD:refs/heads/sneaky", cwd=work, token=token)

    assert pushed.returncode != 0
    assert "403" in pushed.stderr
    assert fake.auth_failures[-1] == (
        "GET",
        "/git/octo/hello.git/info/refs",
        "token lacks contents:write",
    )
    assert bare_git(fake, REPO, "branch", "--list", "sneaky") == ""


def test_rejected_pushes_fail_like_a_server_hook(
    fake: FakeGitHub, app_client: GitHub, tmp_path: Path
):
    token = mint_token(app_client)
    work = tmp_path / "work"
    assert (
        run_git("clone", f"{fake.base_url}/git/octo/hello.git", str(work), token=token).returncode
        == 0
    )
    assert run_git("commit", "--allow-empty", "-m", "blocked", cwd=work).returncode == 0
    fake.reject_pushes(REPO, True)

    pushed = run_git("push", "origin", "HEAD:refs/heads/blocked", cwd=work, token=token)

    assert pushed.returncode != 0
    assert "pre-receive hook declined" in pushed.stderr
    assert bare_git(fake, REPO, "branch", "--list", "blocked") == ""


@pytest.mark.parametrize("workflows", [None, "write"])
def test_a_push_touching_workflows_needs_the_workflows_permission(
    fake: FakeGitHub, app_client: GitHub, tmp_path: Path, workflows: str | None
):
    fake.add_installation(INSTALLATION_ID, [REPO, OTHER_REPO],
                          permissions={**DEFAULT_INSTALLATION_PERMISSIONS, "workflows": "write"})
    permissions = {"contents": "write"} | ({"workflows": workflows} if workflows else {})
    token = mint_token(app_client, permissions=permissions)
    work = tmp_path / "work"
    assert run_git("clone", f"{fake.base_url}/git/octo/hello.git", str(work), token=token).returncode == 0
    (work / ".github" / "workflows").mkdir(parents=True)
    (work / ".github" / "workflows" / "ci.yml").write_text("on: push\n")
    assert run_git("add", ".github", cwd=work).returncode == 0
    assert run_git("commit", "-m", "Add CI", cwd=work).returncode == 0
    assert run_git("commit", "--allow-empty", "-m", "Later", cwd=work).returncode == 0

    pushed = run_git("push", "origin", "HEAD:refs/heads/ci", cwd=work, token=token)

    if workflows:
        assert pushed.returncode == 0, pushed.stderr
    else:
        assert pushed.returncode != 0
        assert ("refusing to allow a GitHub App to create or update workflow "
                "`.github/workflows/ci.yml` without `workflows` permission") in pushed.stderr
        assert bare_git(fake, REPO, "branch", "--list", "ci") == ""


def test_pull_request_text_over_github_s_limits_is_refused(fake: FakeGitHub, app_client: GitHub,
                                                          tmp_path: Path):
    token = mint_token(app_client)
    work = tmp_path / "work"
    assert run_git("clone", f"{fake.base_url}/git/octo/hello.git", str(work), token=token).returncode == 0
    assert run_git("commit", "--allow-empty", "-m", "Something", cwd=work).returncode == 0
    assert run_git("push", "origin", "HEAD:refs/heads/topic", cwd=work, token=token).returncode == 0
    github = client(fake, TokenAuthStrategy(token))

    with pytest.raises(RequestFailed) as long_body:
        github.rest.pulls.create("octo", "hello", title="t", head="topic", base="main", body="x" * 65537)
    with pytest.raises(RequestFailed) as long_title:
        github.rest.pulls.create("octo", "hello", title="t" * 257, head="topic", base="main")
    github.rest.pulls.create("octo", "hello", title="t" * 256, head="topic", base="main", body="x" * 65536)

    assert long_body.value.response.status_code == long_title.value.response.status_code == 422
    assert "body is too long" in long_body.value.response.text
    assert len(fake.pulls) == 1


def test_archived_repo_is_read_only(fake: FakeGitHub, app_client: GitHub, tmp_path: Path):
    fake.add_repo("octo/attic", {"README.md": "old\n"}, archived=True)
    fake.add_installation(INSTALLATION_ID, [REPO, OTHER_REPO, "octo/attic"])
    token = mint_token(app_client)
    github = client(fake, TokenAuthStrategy(token))
    work = tmp_path / "work"

    assert github.rest.repos.get("octo", "attic").parsed_data.archived is True
    with pytest.raises(RequestFailed) as failure:
        github.rest.issues.create_comment("octo", "attic", 1, body="hello?")
    assert (
        run_git("clone", f"{fake.base_url}/git/octo/attic.git", str(work), token=token).returncode
        == 0
    )
    assert run_git("commit", "--allow-empty", "-m", "revive", cwd=work).returncode == 0
    pushed = run_git("push", "origin", "HEAD:refs/heads/revive", cwd=work, token=token)

    assert failure.value.response.status_code == 403
    assert pushed.returncode != 0 and "403" in pushed.stderr


def test_pull_request_needs_an_existing_branch_with_commits(fake: FakeGitHub, app_client: GitHub):
    github = client(fake, TokenAuthStrategy(mint_token(app_client)))

    with pytest.raises(RequestFailed) as missing_branch:
        github.rest.pulls.create("octo", "hello", title="t", head="no-such-branch", base="main")
    with pytest.raises(RequestFailed) as same_branch:
        github.rest.pulls.create("octo", "hello", title="t", head="main", base="main")

    assert missing_branch.value.response.status_code == 422
    assert same_branch.value.response.status_code == 422
    assert fake.pulls == []


def test_large_push_and_many_ref_fetch_use_chunked_and_gzip_bodies(
    fake: FakeGitHub, app_client: GitHub, tmp_path: Path
):
    token = mint_token(app_client)
    work = tmp_path / "work"
    assert run_git("init", "--quiet", "-b", "main", str(work)).returncode == 0
    # Incompressible content beyond http.postBuffer makes git stream the push chunked.
    (work / "blob.bin").write_bytes(os.urandom(200_000))
    assert run_git("add", "blob.bin", cwd=work).returncode == 0
    assert run_git("commit", "-m", "big", cwd=work).returncode == 0
    # Enough distinct branch tips that the fetch request outgrows git's 1 KiB gzip threshold.
    for number in range(30):
        assert run_git("commit", "--allow-empty", "-m", f"tip {number}", cwd=work).returncode == 0
        assert run_git("branch", f"tip-{number}", cwd=work).returncode == 0
    trace = {"GIT_TRACE_CURL": "1", "GIT_TRACE_CURL_NO_DATA": "1"}

    pushed = run_git(
        "-c",
        "http.postBuffer=65536",
        "push",
        f"{fake.base_url}/git/octo/empty.git",
        "--all",
        cwd=work,
        token=token,
        env=trace,
    )
    cloned = run_git(
        "clone",
        f"{fake.base_url}/git/octo/empty.git",
        str(tmp_path / "clone"),
        token=token,
        env=trace,
    )

    assert pushed.returncode == 0, pushed.stderr
    assert "Transfer-Encoding: chunked" in pushed.stderr
    assert cloned.returncode == 0, cloned.stderr
    assert "Content-Encoding: gzip" in cloned.stderr
    assert (tmp_path / "clone" / "blob.bin").read_bytes() == (work / "blob.bin").read_bytes()
    assert len(bare_git(fake, "octo/empty", "branch", "--list", "tip-*").splitlines()) == 30
