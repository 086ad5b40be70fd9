"""The first run end to end: the real `async-code serve` process with no GitHub App, the loopback
GitHub playing both GitHub's "new GitHub App" page (with its button pressed) and the API, and a
browser made of urllib. No Docker unless a test asks for it."""

from __future__ import annotations

import json
import os
import random
import re
import secrets
import stat
import string
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from html.parser import HTMLParser
from http.cookiejar import CookieJar
from pathlib import Path

import pytest
from dotenv import dotenv_values
from githubkit import GitHub

from tests.conftest import APP_ID, APP_PERMISSIONS, REPO, WRITER, WRITER_ID, Service
from tests.payloads import issue_comment

APP_YML_EVENTS = ["issue_comment", "issues", "pull_request", "pull_request_review_comment",
                  "check_run"]
KEY_FILE = f"github-app-{APP_ID}.private-key.pem"


class _Forms(HTMLParser):
    """The forms of a page: action, method and the named inputs' values."""

    def __init__(self):
        super().__init__()
        self.forms: list[dict] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "form":
            self.forms.append({"action": attributes.get("action"),
                               "method": attributes.get("method", "get"), "inputs": {}})
        elif tag == "input" and self.forms and attributes.get("name"):
            self.forms[-1]["inputs"][attributes["name"]] = attributes.get("value", "")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def logged_setup_url(service: Service) -> str:
    """Where the service's log tells its operator to open the setup page."""
    found = re.findall(r"open (\S+) in a browser", service.logs())
    assert found, service.logs()
    return found[-1]


def setup_token(service: Service) -> str:
    return urllib.parse.parse_qs(urllib.parse.urlsplit(logged_setup_url(service)).query)[
        "token"][0]


class Browser:
    """Keeps its cookies and follows nothing by itself, so each step of the flow can be looked
    at."""

    def __init__(self):
        self.cookies = CookieJar()
        self._opener = urllib.request.build_opener(
            _NoRedirect, urllib.request.HTTPCookieProcessor(self.cookies))

    def request(self, url: str, data: dict | None = None, *,
                headers: dict[str, str] | None = None) -> tuple[int, dict, str]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        try:
            with self._opener.open(urllib.request.Request(url, data=body, headers=headers or {}),
                                   timeout=30) as response:
                return response.status, dict(response.headers), response.read().decode()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, dict(error.headers), error.read().decode()

    def sign_in(self, service: Service) -> tuple[int, dict, str]:
        """Open the address in the service's log, as its operator does: the page, and the
        session cookie that lets this browser use it."""
        return self.request(logged_setup_url(service))

    def github_form(self, page: str) -> dict:
        parser = _Forms()
        parser.feed(page)
        [form] = [f for f in parser.forms if f["method"] == "post"]
        return form

    def register(self, service: Service, *, query: str = "") -> tuple[int, dict, str]:
        """Open the setup page (signed in), press its button, let GitHub send the browser
        back; returns the service's answer to the callback."""
        status, _, page = self.request(service.url + "/" + query)
        assert status == 200, page
        form = self.github_form(page)
        status, headers, text = self.request(form["action"], form["inputs"])
        assert status == 302, text
        return self.request(headers["Location"])


def signed_in(service: Service) -> Browser:
    """The operator's browser, having opened the address in the log."""
    browser = Browser()
    status, _, page = browser.sign_in(service)
    assert status == 200, page
    return browser


@pytest.fixture
def workdir(tmp_path) -> Path:
    path = tmp_path / "checkout"
    path.mkdir()
    return path


@pytest.fixture
def first_run(tmp_path, github, workdir):
    """A `serve` that has never been set up: no App credentials, no model key, an empty data
    directory, run from a directory without .env."""
    started: list[Service] = []

    def make(workers: int = 0, **settings: str) -> Service:
        data_dir = tmp_path / "data"
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "DOCKER_HOST")}
        env.update({"PYTHONPATH": str(Path(__file__).resolve().parent.parent),
                    "HOME": str(tmp_path), "GITHUB_API_URL": github.base_url,
                    "ASYNC_CODE_DATA_DIR": str(data_dir),
                    "DATABASE_URL": f"sqlite:///{data_dir}/async-code.db", **settings})
        service = Service(env=env, data_dir=data_dir, log_path=tmp_path / "service.log",
                          github=github, workdir=workdir)
        started.append(service)
        service.start(workers=workers)
        return service

    yield make
    for service in started:
        service.stop()


def healthz(service: Service) -> dict:
    with urllib.request.urlopen(service.url + "/healthz", timeout=5) as response:
        return json.loads(response.read())


def written(service: Service, workdir: Path) -> list[str]:
    """Whatever setup could have written: .env in the working directory, keys in the data dir."""
    found = [p.name for p in workdir.iterdir()]
    if service.data_dir.exists():
        found += [p.name for p in service.data_dir.iterdir() if not p.name.startswith("async-code.db")]
    return sorted(found)


def test_first_run_registers_the_app_and_serves_without_a_restart(first_run, github, app_key,
                                                                   workdir):
    service = first_run()
    assert healthz(service) == {"status": "setup"}
    assert re.search(rf"open http://127\.0\.0\.1:{service.port}/\?token=[A-Za-z0-9_-]{{43}} "
                     "in a browser", service.logs()), service.logs()
    status, answer = service.deliver(issue_comment("@async-code do it"), secret="anything")
    assert status == 503 and "not set up yet" in answer["message"], answer

    browser = Browser()
    status, headers, page = browser.sign_in(service)
    assert status == 200 and "Register async-code on GitHub" in page
    assert headers["Refresh"] == "0; url=/"  # the token leaves the address bar
    status, headers, page = browser.request(service.url + "/")
    assert status == 200 and "Register async-code on GitHub" in page
    assert headers["Cache-Control"] == "no-store" and headers["Referrer-Policy"] == "no-referrer"
    assert "ANTHROPIC_API_KEY" in page  # listed as still missing
    form = browser.github_form(page)
    action = urllib.parse.urlsplit(form["action"])
    assert f"{action.scheme}://{action.netloc}{action.path}" == github.base_url + "/settings/apps/new"
    [state] = urllib.parse.parse_qs(action.query)["state"]
    assert len(state) >= 40
    manifest = json.loads(form["inputs"]["manifest"])
    assert manifest == {
        "name": "async-code", "url": service.url, "description": manifest["description"],
        "hook_attributes": {"url": service.url + "/webhooks", "active": True},
        "redirect_url": service.url + "/setup/callback", "public": False,
        "default_permissions": APP_PERMISSIONS, "default_events": APP_YML_EVENTS}

    code = github.plan_manifest_code(app_key[0])
    status, headers, _ = browser.request(form["action"], form["inputs"])
    assert status == 302
    callback = headers["Location"]
    assert callback.startswith(service.url + "/setup/callback?")
    status, headers, text = browser.request(callback)
    assert (status, headers.get("Location")) == (303, "/"), text
    assert [c["code"] for c in github.conversions] == [code]

    # The key in the data directory, the rest in .env, both 0600.
    secret = github.planned_webhook_secret(code)
    key_path = service.data_dir / KEY_FILE
    dotenv = workdir / ".env"
    assert key_path.read_text() == app_key[0]
    for path in (key_path, dotenv):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert {k: v for k, v in dotenv_values(dotenv).items()} == {
        "GITHUB_APP_ID": str(APP_ID), "GITHUB_APP_SLUG": "async-code",
        "GITHUB_PRIVATE_KEY_PATH": str(key_path), "GITHUB_WEBHOOK_SECRET": secret}
    assert written(service, workdir) == [".env", KEY_FILE]

    # The same process now serves webhooks, signed with the new secret.
    assert healthz(service)["status"] == "ok"
    status, answer = service.deliver(issue_comment("@async-code add a --version flag"), secret=secret)
    assert (status, answer["message"]) == (202, "task recorded"), answer
    status, _ = service.deliver(issue_comment("@async-code again", comment_id=43), secret="wrong")
    assert status == 401

    # The page says it is registered and links to the installation; no new registration.
    # Where the settings went is for the browser that registered the App only.
    status, _, page = browser.request(service.url + "/")
    assert status == 200 and "is registered on GitHub" in page
    assert f'href="{github.base_url}/apps/async-code/installations/new"' in page
    assert "settings/apps/new" not in page and str(key_path) in page
    status, _, page = Browser().request(service.url + "/")
    assert status == 200 and "is registered on GitHub" in page
    assert f'href="{github.base_url}/apps/async-code/installations/new"' in page
    for path in (key_path, dotenv, service.data_dir, workdir):
        assert str(path) not in page

    # The link GitHub sent is spent.
    before = (dotenv.read_bytes(), key_path.read_bytes())
    status, _, page = browser.request(callback)
    assert status == 400 and "Nothing was written" in page
    assert (dotenv.read_bytes(), key_path.read_bytes()) == before
    assert len(github.conversions) == 1

    # No secret in the log, and the setup token only where it says to open the page.
    logs = service.logs()
    key_body = "".join(app_key[0].strip().splitlines()[1:-1])[:64]
    for value in (secret, key_body, state, code):
        assert value not in logs
    assert logs.count(setup_token(service)) == 1
    assert "registered the GitHub App async-code" in logs


def test_after_a_restart_the_saved_settings_are_used(first_run, github, app_key, workdir):
    service = first_run()
    github.plan_manifest_code(app_key[0])
    assert signed_in(service).register(service)[0] == 303
    service.stop()
    service.start(workers=0)
    assert healthz(service)["status"] == "ok"
    assert "setup mode" not in service.logs().split("stopped")[-1]
    status, _, page = Browser().request(service.url + "/")
    # GitHub Enterprise Server's address for the App, since the fake is not github.com.
    assert status == 200 and f"{github.base_url}/github-apps/async-code/installations/new" in page
    secret = dotenv_values(workdir / ".env")["GITHUB_WEBHOOK_SECRET"]
    assert service.deliver(issue_comment("@async-code go"), secret=secret)[0] == 202


def test_the_page_opens_only_from_the_address_in_the_log_and_only_once(first_run, github,
                                                                         app_key, workdir):
    """The token in the logged address works once, in one browser; nobody else sees the page,
    the paths on it, or a state."""
    service = first_run()
    token = setup_token(service)
    stranger = Browser()
    for query in ("", "?org=acme", "?token=", "?token=" + "A" * 43, f"?token={token}x",
                  f"?token={token[:-1]}"):
        status, _, page = stranger.request(service.url + "/" + query)
        assert status == 403, (query, page)
        assert "settings/apps/new" not in page and "state=" not in page
        for path in (str(workdir), str(service.data_dir), "app.yml"):
            assert path not in page
    assert list(stranger.cookies) == []

    operator = Browser()
    status, headers, page = operator.sign_in(service)
    assert status == 200 and "Register async-code on GitHub" in page
    attributes = {part.strip() for part in headers["Set-Cookie"].split(";")}
    assert {"HttpOnly", "SameSite=Lax", "Path=/"} <= attributes and "Secure" not in attributes
    assert token not in headers["Set-Cookie"] and token not in page
    assert operator.request(service.url + "/")[0] == 200

    # A copy of the address, used after the operator: refused, and says why.
    status, _, page = stranger.sign_in(service)
    assert status == 403 and "used already" in page and "settings/apps/new" not in page

    # A registration link finishes only in the browser the page was shown in.
    form = operator.github_form(page=operator.request(service.url + "/")[2])
    code = github.plan_manifest_code(app_key[0])
    status, headers, _ = operator.request(form["action"], form["inputs"])
    callback = headers["Location"]
    status, _, page = stranger.request(callback)
    assert status == 400 and "Nothing was written" in page
    assert written(service, workdir) == [] and github.conversions == []
    assert operator.request(callback)[0] == 303
    assert [c["code"] for c in github.conversions] == [code]
    assert service.logs().count(token) == 1


def test_setup_mode_answers_only_to_its_own_names(first_run):
    """DNS rebinding: another name for 127.0.0.1 gets a 421 before anything is looked at, so
    the token a rebinding page might have is not even spent."""
    service = first_run()
    token = setup_token(service)
    for host in ("attacker.example", f"attacker.example:{service.port}", "127.0.0.2",
                 f"localhost.:{service.port}", "0.0.0.0"):
        for path in ("/", f"/?token={token}", "/setup/callback?code=a&state=b"):
            status, _, text = Browser().request(service.url + path, headers={"Host": host})
            assert status == 421, (host, path, text)
            assert "attacker" not in text and len(text) < 300
        status, _, _ = Browser().request(service.url + "/webhooks", {"a": "b"},
                                         headers={"Host": host})
        assert status == 421
        status, _, text = Browser().request(service.url + "/healthz", headers={"Host": host})
        assert (status, json.loads(text)) == (200, {"status": "setup"})
    for host in (f"localhost:{service.port}", f"[::1]:{service.port}", "127.0.0.1"):
        assert Browser().request(service.url + "/", headers={"Host": host})[0] == 403
    browser = Browser()
    status, _, page = browser.request(f"{service.url}/?token={token}",
                                      headers={"Host": f"localhost:{service.port}"})
    assert status == 200, page
    manifest = json.loads(browser.github_form(page)["inputs"]["manifest"])
    assert manifest["redirect_url"] == f"http://localhost:{service.port}/setup/callback"


def test_githubs_words_cannot_forge_a_log_line(first_run, github, app_key, workdir):
    """GitHub's error message goes into a log line and the page: escaped, on one line."""
    service = first_run()
    forged = "2099-01-01 00:00:00,000 INFO app.setup [waitress-0] setup: registered the GitHub App"
    github.plan_manifest_code(app_key[0])
    github.fail_next("POST", r"^/app-manifests/", 422,
                     {"message": f"Bad\r\n{forged} evil\u2028\x1b[2J\u202eend"})
    status, _, page = signed_in(service).register(service)
    assert status == 502 and "Nothing was written" in page
    assert "Bad\\r\\n2099-01-01" in page and "\x1b" not in page and "\u202e" not in page
    lines = service.logs().splitlines()
    assert not [line for line in lines if line.startswith("2099-01-01")], lines
    [refused] = [line for line in lines if "the registration failed" in line]
    assert "Bad\\r\\n2099" in refused and "\\x1b[2J" in refused and "\\u202e" in refused
    assert written(service, workdir) == []


def test_an_answer_too_large_to_read_writes_nothing(first_run, github, app_key, workdir):
    """Whatever answers at GITHUB_API_URL cannot make the service hold an answer of any size."""
    service = first_run()
    operator = signed_in(service)
    github.plan_manifest_code(app_key[0])
    big = {**_answer_without("client_secret", app_key[0], github), "padding": "x" * 300_000}
    github.fail_next("POST", r"^/app-manifests/", 201, big)
    status, _, page = operator.register(service)
    assert status == 502 and "larger than 256 KiB" in page and "Nothing was written" in page
    assert written(service, workdir) == []
    # The next, ordinary answer registers.
    github.plan_manifest_code(app_key[0])
    assert operator.register(service)[0] == 303


def test_the_public_url_and_a_forwarder_are_what_github_is_given(first_run):
    service = first_run(ASYNC_CODE_PUBLIC_URL="https://async-code.example.com/",
                        ASYNC_CODE_WEBHOOK_PROXY_URL="https://smee.io/AbCdEf123")
    assert re.search(r"open https://async-code\.example\.com/\?token=\S+ in a browser",
                     service.logs()), service.logs()
    # Through the proxy at the public URL, as the operator opens it.
    status, headers, page = Browser().request(
        f"{service.url}/?token={setup_token(service)}", headers={"Host": "async-code.example.com"})
    assert status == 200, page
    cookie = headers["Set-Cookie"]
    assert {"HttpOnly", "Secure", "SameSite=Lax", "Path=/"} <= {
        part.strip() for part in cookie.split(";")}, cookie
    manifest = json.loads(Browser().github_form(page)["inputs"]["manifest"])
    assert manifest["url"] == "https://async-code.example.com"
    assert manifest["hook_attributes"]["url"] == "https://smee.io/AbCdEf123"
    assert manifest["redirect_url"] == "https://async-code.example.com/setup/callback"
    assert "cannot deliver" not in page


def test_the_page_warns_when_github_cannot_reach_the_service(first_run):
    service = first_run()
    page = Browser().sign_in(service)[2]
    assert "GitHub cannot deliver to" in page and "ASYNC_CODE_PUBLIC_URL" in page


@pytest.mark.parametrize(("org", "status", "expected"), [
    ("acme", 200, "/organizations/acme/settings/apps/new?state="),
    ("my-org-2", 200, "/organizations/my-org-2/settings/apps/new?state="),
    ("bad/org", 400, "cannot be an organisation"),
    ("-acme", 400, "cannot be an organisation"),
    ("a" * 40, 400, "cannot be an organisation"),
    ("<script>", 400, "&lt;script&gt;"),
])
def test_an_organisation_gets_its_own_form(first_run, org, status, expected):
    service = first_run()
    answer, _, page = signed_in(service).request(
        service.url + "/?" + urllib.parse.urlencode({"org": org}))
    assert answer == status and expected in page
    assert "<script>" not in page


def test_an_organisations_app(first_run, github, app_key, workdir):
    service = first_run()
    github.plan_manifest_code(app_key[0])
    assert signed_in(service).register(service, query="?org=acme")[0] == 303
    assert github.manifests_posted[0]["org"] == "acme"
    assert (workdir / ".env").exists()


def test_a_wrong_state_writes_nothing(first_run, github, app_key, workdir):
    service = first_run()
    browser = signed_in(service)  # a real state exists, but this is not it
    code = github.plan_manifest_code(app_key[0])
    status, _, page = browser.request(
        f"{service.url}/setup/callback?code={code}&state={secrets.token_urlsafe(32)}")
    assert status == 400 and "was not handed out by this service" in page
    assert "Nothing was written" in page
    assert written(service, workdir) == [] and github.conversions == []
    assert healthz(service) == {"status": "setup"}


def test_a_failed_conversion_writes_nothing_and_spends_the_state(first_run, github, workdir):
    service = first_run()
    browser = Browser()
    page = browser.sign_in(service)[2]
    state = urllib.parse.parse_qs(urllib.parse.urlsplit(browser.github_form(page)["action"]).query)[
        "state"][0]
    callback = f"{service.url}/setup/callback?code=unknowncode&state={state}"
    status, _, page = browser.request(callback)  # GitHub answers 422: it never made this code
    assert status == 502
    assert "GitHub refused the registration code (422: Validation Failed)" in page
    assert "Nothing was written" in page and "Delete" in page
    assert written(service, workdir) == []
    status, _, page = browser.request(callback)
    assert status == 400 and "used already" in page
    assert len(github.conversions) == 1 and healthz(service) == {"status": "setup"}


def test_a_code_used_before_is_refused_by_github(first_run, github, app_key, workdir):
    service = first_run()
    code = github.plan_manifest_code(app_key[0])
    with GitHub(base_url=github.base_url + "/") as client:  # someone else converted it first
        client.rest.apps.create_from_manifest(code)
    status, _, page = signed_in(service).register(service)
    assert status == 502 and "422" in page and "Nothing was written" in page
    assert written(service, workdir) == []


def _answer_without(field: str, app_key: str, github) -> dict:
    """GitHub's answer, on the fake's web host, without `field`."""
    answer = {"id": APP_ID, "slug": "async-code", "name": "async-code", "pem": app_key,
              "webhook_secret": "abc123", "html_url": f"{github.base_url}/apps/async-code",
              "client_id": "Iv23.x", "client_secret": "s"}
    answer.pop(field)
    return answer


@pytest.mark.parametrize(("status", "body", "expected"), [
    (500, {"message": "Server Error"}, "GitHub refused the registration code (500: Server Error)"),
    (404, {"message": "Not Found"}, "(404: Not Found)"),
    (201, ["not", "an", "object"], "not a JSON object"),
    (201, "webhook_secret", "no webhook secret"),
    (201, "pem", "no usable private key"),
    (201, "id", "no App id"),
    (201, "slug", "no valid App slug"),
    (201, "html_url", "html_url"),
])
def test_an_answer_without_what_the_service_needs_writes_nothing(first_run, github, app_key,
                                                                 workdir, status, body, expected):
    service = first_run()
    github.plan_manifest_code(app_key[0])
    if isinstance(body, str):
        body = _answer_without(body, app_key[0], github)
    # githubkit tries a server error three more times
    for _ in range(4 if status >= 500 else 1):
        github.fail_next("POST", r"^/app-manifests/", status, body)
    answer, _, page = signed_in(service).register(service)
    assert answer == 502 and expected in page and "Nothing was written" in page
    assert written(service, workdir) == []
    assert app_key[0].splitlines()[1] not in service.logs()


def test_an_existing_env_keeps_every_line(first_run, github, app_key, workdir):
    existing = ("# my settings\r\n"
                "ANTHROPIC_BASE_URL=https://gateway.example.com  # a gateway\r\n"
                "export ASYNC_CODE_MAX_QUEUE=5\r\n"
                "GITHUB_APP_SLUG=async-code\r\n"
                "GITHUB_APP_ID=\r\n"
                'QUOTED="a \\"b\\" ${HOME}"\r\n'
                "no equals sign here\r\n"
                "ASYNC_CODE_MODEL='claude-sonnet-4-6'")
    (workdir / ".env").write_bytes(existing.encode())
    (workdir / ".env").chmod(0o644)
    service = first_run()
    code = github.plan_manifest_code(app_key[0], slug="async-code-alice")
    assert signed_in(service).register(service)[0] == 303
    text = (workdir / ".env").read_bytes().decode()
    assert stat.S_IMODE((workdir / ".env").stat().st_mode) == 0o600
    kept = [line for line in existing.split("\r\n")
            if not line.startswith(("GITHUB_APP_SLUG=", "GITHUB_APP_ID="))]
    for line in kept:
        assert line in text, line
    assert "GITHUB_APP_SLUG='async-code-alice'\r\n" in text
    assert f"GITHUB_APP_ID='{APP_ID}'\r\n" in text and text.count("GITHUB_APP_ID") == 1
    values = dotenv_values(workdir / ".env")
    assert values["ASYNC_CODE_MAX_QUEUE"] == "5" and values["ANTHROPIC_BASE_URL"] == (
        "https://gateway.example.com")
    assert values["GITHUB_WEBHOOK_SECRET"] == github.planned_webhook_secret(code)
    # The service runs as the slug GitHub gave the App.
    page = Browser().request(service.url + "/")[2]
    assert "@async-code-alice" in page


def test_a_service_without_docker_registers_and_records(first_run, github, app_key, tmp_path):
    """Setup mode needs no Docker even with workers; after registering, the page says why
    tasks do not run yet, and deliveries are still recorded."""
    service = first_run(workers=2, DOCKER_HOST=f"unix://{tmp_path}/no-docker.sock")
    assert healthz(service) == {"status": "setup"}
    code = github.plan_manifest_code(app_key[0])
    operator = signed_in(service)
    assert operator.register(service)[0] == 303
    page = operator.request(service.url + "/")[2]
    assert "Tasks are recorded but not run" in page and "Docker" in page
    page = Browser().request(service.url + "/")[2]  # anyone else: the App, not the problems
    assert "is registered on GitHub" in page and "Tasks are recorded but not run" not in page
    secret = github.planned_webhook_secret(code)
    assert service.deliver(issue_comment("@async-code go"), secret=secret)[0] == 202


def test_the_callback_refuses_every_malformed_query(first_run, github, app_key, workdir):
    """Hostile query strings: each is a 400 that writes nothing and asks GitHub nothing."""
    service = first_run()
    browser = Browser()
    page = browser.sign_in(service)[2]
    state = urllib.parse.parse_qs(urllib.parse.urlsplit(browser.github_form(page)["action"]).query)[
        "state"][0]
    code = github.plan_manifest_code(app_key[0])
    cases = [
        "", "code=", f"code={code}", f"state={state}", f"code={code}&state=",
        f"code={code}&state={state}&state={state}", f"code={code}&code={code}&state={state}",
        f"code=../../app&state={state}", f"code={code}%2F..&state={state}",
        f"code={code}%00&state={state}", f"code={'a' * 201}&state={state}",
        f"code={code}&state={state}x", f"code={code}&state=%FF%FE", f"code=%E2%80%AE&state={state}",
        f"code={code}&state={state}&pad={'x' * 3000}", f"CODE={code}&STATE={state}",
        f"code[]={code}&state={state}", f"code={code};state={state}",
    ]
    rng = random.Random(1234)
    alphabet = string.printable + "\u00e9\u202e\u0000"
    for _ in range(200):
        pieces = []
        for _ in range(rng.randint(0, 4)):
            name = rng.choice(["code", "state", "org", rng.choice(string.ascii_letters)])
            value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
            pieces.append(urllib.parse.urlencode({name: value}))
        cases.append("&".join(pieces))
    for query in cases:
        status, _, answer = browser.request(f"{service.url}/setup/callback?{query}")
        assert status == 400, (query, status, answer)
        assert "Nothing was written" in answer and "<script" not in answer
    assert written(service, workdir) == [] and github.conversions == []
    # The state was never spent: the real callback still works.
    status, _, _ = browser.request(f"{service.url}/setup/callback?code={code}&state={state}")
    assert status == 303 and (workdir / ".env").exists()


def test_conversion_answers_of_any_shape_write_nothing(first_run, github, app_key, workdir):
    """GitHub's 201 answer, mutated: whatever is missing or of the wrong type, the service
    answers 502 and writes nothing; only a complete answer registers."""
    service = first_run()
    operator = signed_in(service)
    rng = random.Random(99)
    good = _answer_without("client_secret", app_key[0], github)
    junk = [None, 0, -1, 2**60, True, "", " ", "x" * 5000, [], {}, [1], {"a": 1}, 1.5,
            "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----", "\u0000"]
    for field_name in ("id", "slug", "name", "pem", "webhook_secret", "html_url"):
        for value in rng.sample(junk, 5):
            body = {**good, field_name: value}
            if field_name == "slug" and value == "x" * 5000:
                body["slug"] = "x" * 5000
            github.plan_manifest_code(app_key[0])
            github.fail_next("POST", r"^/app-manifests/", 201, body)
            status, _, page = operator.register(service)
            assert status == 502, (field_name, value, page)
            assert written(service, workdir) == []
    github.plan_manifest_code(app_key[0])
    github.fail_next("POST", r"^/app-manifests/", 201, good)
    assert operator.register(service)[0] == 303
    assert dotenv_values(workdir / ".env")["GITHUB_WEBHOOK_SECRET"] == "abc123"


@pytest.mark.parametrize(("settings", "expected"), [
    ({"GITHUB_APP_ID": "my-app"}, ["GITHUB_APP_ID must be the numeric App ID", "(got 'my-app')",
                                   "GITHUB_WEBHOOK_SECRET is not set", "unset GITHUB_APP_ID"]),
    ({"GITHUB_WEBHOOK_SECRET": "s3cret-value"}, ["GITHUB_APP_ID", "GITHUB_PRIVATE_KEY_PATH"]),
    ({"GITHUB_APP_ID": "1", "GITHUB_PRIVATE_KEY": "not a key", "GITHUB_WEBHOOK_SECRET": "s3cret"},
     ["GITHUB_PRIVATE_KEY does not hold a PEM private key"]),
    ({"ASYNC_CODE_PUBLIC_URL": "async-code.example.com"}, ["ASYNC_CODE_PUBLIC_URL="]),
    ({"ASYNC_CODE_WEBHOOK_PROXY_URL": "https://smee.io/x?y=1"}, ["ASYNC_CODE_WEBHOOK_PROXY_URL="]),
    ({"ASYNC_CODE_SANDBOX_CPUS": "-1"}, ["ASYNC_CODE_SANDBOX_CPUS"]),
])
def test_wrong_settings_still_stop_the_start(tmp_path, github, workdir, settings, expected):
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG")}
    env.update(PYTHONPATH=str(Path(__file__).resolve().parent.parent), HOME=str(tmp_path),
               GITHUB_API_URL=github.base_url, ASYNC_CODE_DATA_DIR=str(tmp_path / "data"),
               **settings)
    result = subprocess.run([sys.executable, "-m", "app", "serve", "--port", "1"], env=env,
                            cwd=workdir, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "async-code cannot start" in result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr
    if "GITHUB_PRIVATE_KEY" in settings:
        assert "unset GITHUB_APP_ID" not in result.stderr  # all set, one wrong: not a first run


def test_without_the_model_key_each_request_is_answered_with_its_name(first_run, github, app_key,
                                                                      docker_client):
    """Registered from setup mode, with workers and Docker but no ANTHROPIC_API_KEY: a request
    is acknowledged, then its status comment names the missing setting, and nothing runs."""
    service = first_run(workers=2)
    code = github.plan_manifest_code(app_key[0])
    assert signed_in(service).register(service)[0] == 303
    page = Browser().request(service.url + "/")[2]
    assert "ANTHROPIC_API_KEY" in page
    body = "@async-code make the CLI print its version"
    github.add_comment(REPO, 7, 42, WRITER, body)
    status, answer = service.deliver(issue_comment(body, login=WRITER, user_id=WRITER_ID),
                                     secret=github.planned_webhook_secret(code),
                                     guid=str(uuid.uuid4()))
    assert status == 202, answer
    task = service.wait_for_task(answer["task_id"], timeout=60)
    assert task.status == "failed" and "ANTHROPIC_API_KEY" in task.error
    [comment] = [c for c in github.comments.values() if c["user"] == "async-code[bot]"]
    assert "queued" in comment["history"][0]
    assert "ANTHROPIC_API_KEY" in comment["history"][-1] and "failed" in comment["history"][-1]
    assert docker_client.containers.list(all=True, filters={
        "label": f"async-code.task={task.id}"}) == []
    assert "ANTHROPIC_API_KEY is not set" in service.logs()


def test_a_copy_of_env_example_is_filled_in_where_it_has_the_settings(first_run, github, app_key,
                                                                      workdir):
    example = (Path(__file__).resolve().parent.parent / ".env.example").read_text()
    (workdir / ".env").write_text(example)
    service = first_run()
    code = github.plan_manifest_code(app_key[0])
    assert signed_in(service).register(service)[0] == 303
    text = (workdir / ".env").read_text()
    for name in ("GITHUB_APP_ID", "GITHUB_PRIVATE_KEY_PATH", "GITHUB_WEBHOOK_SECRET",
                 "GITHUB_APP_SLUG"):
        assert text.count(f"\n{name}=") == 1, name
    assert text.splitlines()[:2] == example.splitlines()[:2]
    assert [line for line in text.splitlines() if line.startswith("#")] == [
        line for line in example.splitlines() if line.startswith("#")]  # no heading: none added
    values = dotenv_values(workdir / ".env")
    assert values["GITHUB_WEBHOOK_SECRET"] == github.planned_webhook_secret(code)
    assert values["ASYNC_CODE_MAX_QUEUE"] == "10" and healthz(service)["status"] == "ok"
