"""Attacks on the first run (setup mode): whoever can reach the service before its operator
finishes registering, a Host header of the attacker's choosing, a conversion answer that is
not what GitHub's would be, and a data directory with a planted symlink.

The operator's browser starts where the service's log line says to open; every other client
knows only the service's address. Each test says what must hold; the real `async-code serve`
runs in setup mode (no Docker) against the loopback GitHub.
"""

from __future__ import annotations

import html
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from app.setup import ConversionProblem, registration_from
from tests.conftest import APP_ID, Service
from tests.fakes.keys import generate_app_key
from tests.test_setup_end_to_end import _Forms, _NoRedirect, healthz, written

PUBLIC_HOST = "async-code.example.com"
KEY_FILE = f"github-app-{APP_ID}.private-key.pem"


@pytest.fixture
def workdir(tmp_path) -> Path:
    path = tmp_path / "checkout"
    path.mkdir()
    return path


@pytest.fixture
def first_run(tmp_path, github, workdir):
    """A `serve` that has never been set up (as in test_setup_end_to_end): no App credentials,
    no model key, run from a directory without .env."""
    started: list[Service] = []

    def make(**settings: str) -> Service:
        data_dir = tmp_path / "data"
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL")}
        env.update({"PYTHONPATH": str(Path(__file__).resolve().parent.parent),
                    "HOME": str(tmp_path), "GITHUB_API_URL": github.base_url,
                    "ASYNC_CODE_DATA_DIR": str(data_dir),
                    "DATABASE_URL": f"sqlite:///{data_dir}/async-code.db", **settings})
        service = Service(env=env, data_dir=data_dir, log_path=tmp_path / "service.log",
                          github=github, workdir=workdir)
        started.append(service)
        service.start(workers=0)
        return service

    yield make
    for service in started:
        service.stop()


class Browser:
    """A browser with its own cookies that follows no redirect by itself. `host` is the Host
    header it sends to the service, as a reverse proxy or a DNS name of the attacker's
    choosing would make it."""

    def __init__(self, host: str | None = None):
        self._opener = urllib.request.build_opener(
            _NoRedirect, urllib.request.HTTPCookieProcessor(CookieJar()))
        self.host = host

    def request(self, url: str, data: dict | None = None, *,
                to_service: bool = True) -> tuple[int, dict, str]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        headers = {"Host": self.host} if self.host and to_service else {}
        try:
            with self._opener.open(urllib.request.Request(url, data=body, headers=headers),
                                   timeout=30) as response:
                return response.status, dict(response.headers), response.read().decode()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, dict(error.headers), error.read().decode()


def github_form(page: str) -> dict | None:
    """The form that POSTs the manifest to GitHub, if the page has one."""
    parser = _Forms()
    parser.feed(page)
    forms = [form for form in parser.forms if form["method"] == "post"]
    return forms[0] if forms else None


def logged_setup_url(service: Service) -> str:
    """Where the service's log tells its operator to open the setup page."""
    found = re.findall(r"open (\S+) in a browser", service.logs())
    assert found, service.logs()
    return found[-1]


def post_to_github(browser: Browser, form: dict) -> tuple[str, str]:
    """Press the button: GitHub creates the App and sends the browser back with a code and the
    state; returns both without following the redirect."""
    status, headers, text = browser.request(form["action"], form["inputs"], to_service=False)
    assert status == 302, text
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(headers["Location"]).query)
    return query["code"][0], query["state"][0]


def attackers_app(browser: Browser, service: Service, github) -> tuple[str, str] | None:
    """An attacker opens the service's page (knowing only its address), creates an App of
    their own on GitHub from it and keeps the code and state GitHub sends back. None when the
    page hands them nothing to register with."""
    status, _, page = browser.request(service.url + "/")
    form = github_form(page) if status == 200 else None
    if form is None:
        return None
    github.plan_manifest_code(generate_app_key()[0], slug="attackers-app")
    return post_to_github(browser, form)


def operator_registers(browser: Browser, service: Service, github, app_key_pem: str,
                       *, page: str | None = None) -> tuple[int, dict, str]:
    """The operator opens the address from the log (or has the page open already), presses
    the button and comes back from GitHub."""
    if page is None:
        status, _, page = browser.request(logged_setup_url(service))
        assert status == 200, page
    form = github_form(page)
    assert form is not None, page
    github.plan_manifest_code(app_key_pem)
    code, state = post_to_github(browser, form)
    return browser.request(f"{service.url}/setup/callback?code={code}&state={state}")


def assert_not_registered(service: Service, checkout: Path) -> None:
    dotenv = checkout / ".env"
    saved = dotenv.read_text() if dotenv.exists() else ""
    assert written(service, checkout) == [], f"the service saved an App:\n{saved}"
    assert healthz(service) == {"status": "setup"}


# --- Who can register -------------------------------------------------------------------------


def test_anyone_who_reaches_the_public_address_cannot_register_their_own_app(first_run, github,
                                                                              workdir):
    """The README's public host: a proxy at ASYNC_CODE_PUBLIC_URL in front of the service. Until
    the operator finishes, anyone on the internet who finds the address (a new certificate's
    name is public within minutes) can open `/`, create an App on their own GitHub account
    from it and send the code back with the state the page gave them. The service then saves
    the attacker's App as its own: the operator installs an App someone else owns on their
    repositories, and the owner can sign deliveries that spend the operator's model key."""
    service = first_run(ASYNC_CODE_PUBLIC_URL=f"https://{PUBLIC_HOST}")
    attacker = Browser(host=PUBLIC_HOST)  # through the proxy, as any visitor
    stolen = attackers_app(attacker, service, github)
    if stolen is not None:
        code, state = stolen
        attacker.request(f"{service.url}/setup/callback?code={code}&state={state}")
    assert_not_registered(service, workdir)


def test_a_registration_link_works_only_in_the_browser_that_opened_the_page(first_run, github,
                                                                           app_key,
                                                                           workdir):
    """Login CSRF: the state is not bound to the browser it was handed to. An attacker makes
    an App, stops at GitHub's redirect and lures the operator (who is setting up right now)
    to that callback link: the operator's own browser makes the service adopt the
    attacker's App."""
    service = first_run()
    operator = Browser()
    status, _, operators_page = operator.request(logged_setup_url(service))
    assert status == 200
    stolen = attackers_app(Browser(), service, github)
    if stolen is not None:
        code, state = stolen
        operator.request(f"{service.url}/setup/callback?code={code}&state={state}")
    assert_not_registered(service, workdir)
    # The operator's own registration still goes through.
    assert operator_registers(operator, service, github, app_key[0],
                              page=operators_page)[0] == 303
    assert healthz(service)["status"] == "ok"


def test_a_dns_rebinding_page_cannot_register_an_app(first_run, github, workdir):
    """The service listens on 127.0.0.1 only, but answers any Host. A web page the operator
    visits while setting up resolves its own name to 127.0.0.1 (DNS rebinding), reads `/`
    from the operator's browser, and calls the callback with a code for the attacker's App
    and the state it read."""
    service = first_run()
    rebound = Browser(host=f"rebind.attacker.example:{service.port}")
    stolen = attackers_app(rebound, service, github)
    if stolen is not None:
        code, state = stolen
        rebound.request(f"{service.url}/setup/callback?code={code}&state={state}")
    assert_not_registered(service, workdir)


def test_the_manifest_never_sends_github_to_a_host_header(first_run):
    """Without ASYNC_CODE_PUBLIC_URL the manifest's URLs come from the Host header. A page
    opened under a name the attacker controls (DNS rebinding, or a proxy passing Host on)
    registers an App whose deliveries, and whose redirect with the one-time code (enough to
    fetch the App's private key before the service does), go to the attacker."""
    service = first_run()
    status, _, page = Browser(host="attacker.example").request(service.url + "/")
    form = github_form(page) if status == 200 else None
    if form is not None:
        manifest = json.loads(form["inputs"]["manifest"])
        for url in (manifest["url"], manifest["hook_attributes"]["url"], manifest["redirect_url"]):
            assert urllib.parse.urlsplit(url).hostname != "attacker.example", manifest
    assert "attacker.example" not in html.unescape(page)


def test_page_views_by_others_do_not_spend_the_operators_registration(first_run, github, app_key,
                                                                      workdir):
    """Only the 50 newest states are kept, for everyone together: anyone who can reach `/`
    loads it 50 times while the operator is on GitHub's page, and the operator's callback is
    refused after GitHub created the App (which the operator must then delete by hand)."""
    service = first_run()
    operator = Browser()
    status, _, page = operator.request(logged_setup_url(service))
    assert status == 200
    other = Browser()
    for _ in range(60):
        other.request(service.url + "/")
    status, _, text = operator_registers(operator, service, github, app_key[0], page=page)
    assert status == 303, text
    assert (workdir / ".env").exists() and healthz(service)["status"] == "ok"


# --- What GitHub's answer may say -------------------------------------------------------------


def test_the_install_link_stays_on_github(first_run, github, app_key, workdir):
    """A conversion answer whose html_url is any http(s) address is taken as it is: the page
    the operator is sent to next ("Install async-code on GitHub") then links off GitHub, to
    a look-alike installation page."""
    service = first_run()
    answer = {"id": APP_ID, "slug": "async-code", "name": "async-code", "pem": app_key[0],
              "webhook_secret": "e340154128314309424b7c8e90325147d99fdafa",
              "html_url": "https://github.com.evil.example/apps/async-code",
              "client_id": "Iv23.x", "client_secret": "s"}
    github.fail_next("POST", r"^/app-manifests/", 201, answer)
    operator = Browser()
    status, _, text = operator_registers(operator, service, github, app_key[0])
    page = text if status != 303 else operator.request(service.url + "/")[2]
    assert "evil.example" not in page, page


def _pkcs8(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode("ascii")


@pytest.mark.parametrize("make_key", [lambda: ec.generate_private_key(ec.SECP256R1()),
                                      ed25519.Ed25519PrivateKey.generate],
                         ids=["ec", "ed25519"])
def test_a_key_a_github_app_cannot_sign_with_is_refused(make_key):
    """GitHub Apps sign their JWTs with RS256. Any private key that loads is accepted, saved,
    and the service switches over and reports itself registered; every call to GitHub then
    fails, and the state is spent, so the operator can only repair it by hand."""
    answer = {"id": APP_ID, "slug": "async-code", "name": "async-code", "pem": _pkcs8(make_key()),
              "webhook_secret": "e340154128314309424b7c8e90325147d99fdafa",
              "html_url": "https://github.com/apps/async-code"}
    with pytest.raises(ConversionProblem):
        registration_from(answer)


# --- Where the key goes -----------------------------------------------------------------------


def test_the_key_file_is_not_written_through_a_symlink_out_of_the_data_directory(
        first_run, github, app_key, tmp_path, workdir):
    """`write_private` follows symlinks on purpose, for `.env`; the key file goes through it
    too, so a link planted at the (predictable) key file name sends the App's private key
    wherever it points, outside the data directory."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (data_dir / KEY_FILE).symlink_to(elsewhere / "collected.pem")
    service = first_run()
    operator_registers(Browser(), service, github, app_key[0])
    assert not (elsewhere / "collected.pem").exists()
