"""First run: register the GitHub App from `app.yml` with GitHub's manifest flow, then serve.

`serve` with no App credentials at all runs this blueprint instead of the webhook one. `GET /`
shows a form that POSTs the manifest to GitHub with a one-time `state`; GitHub creates the App
and sends the browser to `/setup/callback` with a code, which is exchanged for the App's id,
slug, private key and webhook secret (`POST /app-manifests/{code}/conversions`: the code is the
only credential). The key goes to a 0600 file in the data directory, the rest into `.env`, and
`serve` hands over to the webhook service without a restart.

Nothing is written unless the state is one this page handed out, unused and under an hour
old, and GitHub's answer holds everything the service needs. Until then deliveries get a 503.
The private key, the webhook secret and the client secret are never logged or shown.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, current_app, jsonify, redirect, render_template_string, request
from markupsafe import Markup

from app.manifest import (CALLBACK_PATH, ManifestError, app_html_url, install_url, is_loopback,
                          manifest_for, new_app_url, organisation_problem, read_app_yml)
from app.private_files import DotenvError, dotenv_with, read_text_if_any, write_private
from app.settings import DEFAULT_API_URL, Settings
from runner.text import github_web_host, github_web_url

log = logging.getLogger(__name__)

STATE_LIFETIME = 3600.0  # seconds; GitHub's codes last an hour too
MAX_PENDING_STATES = 50  # page views waiting for their callback; older ones are dropped
MAX_QUERY_CHARS = 2000
_CODE = re.compile(r"[A-Za-z0-9_-]{1,200}")  # it becomes part of an API path
_STATE = re.compile(r"[A-Za-z0-9_-]{1,100}")
_SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,99}")
MAX_PEM_CHARS = 32 * 1024
MIN_KEY_BITS = 2048  # GitHub signs App keys with RS256; it hands out 2048-bit RSA keys
MAX_SECRET_CHARS = 1024
MAX_NAME_CHARS = 100
NOTHING_WRITTEN = "Nothing was written."
START_AGAIN = "Start again from the setup page."
DELETE_STEPS = "on GitHub: Settings → Developer settings → GitHub Apps → the App → Advanced → Delete"
DELETE_THE_APP = (f"If GitHub created the App anyway, delete it ({DELETE_STEPS}) before "
                  "registering again.")

setup_blueprint = Blueprint("setup", __name__)
status_blueprint = Blueprint("status", __name__)


class CallbackRefused(ValueError):
    """The callback's query is not what GitHub sends; the message says what is wrong."""


class ConversionProblem(ValueError):
    """GitHub's answer to the code conversion lacks something the service needs."""


@dataclass(frozen=True)
class Registration:
    """The App GitHub created, as the conversion described it."""

    app_id: int
    slug: str
    name: str
    html_url: str
    pem: str = field(repr=False)
    webhook_secret: str = field(repr=False)


@dataclass(frozen=True)
class JustRegistered:
    """What the page shows right after registering: the App, where it was saved, and any
    problem that kept the service from starting in full."""

    registration: Registration
    key_path: Path
    dotenv_path: Path
    problems: tuple[str, ...] = ()


class States:
    """One-time `state` values for the form: each is good for one callback within the hour.

    Only digests are kept, so the values themselves are nowhere but in the pages handed out."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic,
                 lifetime: float = STATE_LIFETIME, limit: int = MAX_PENDING_STATES):
        self._clock, self._lifetime, self._limit = clock, lifetime, limit
        self._expiry: dict[str, float] = {}
        self._closed = False
        self._lock = threading.Lock()

    def issue(self) -> str:
        state = secrets.token_urlsafe(32)
        with self._lock:
            self._forget_expired()
            while len(self._expiry) >= self._limit:
                self._expiry.pop(next(iter(self._expiry)))  # the oldest
            if not self._closed:
                self._expiry[_digest(state)] = self._clock() + self._lifetime
        return state

    def valid(self, state: str) -> bool:
        with self._lock:
            self._forget_expired()
            return _digest(state) in self._expiry

    def take(self, state: str) -> bool:
        """Use `state` up: True once for each value `issue` handed out, if still in time."""
        with self._lock:
            self._forget_expired()
            return self._expiry.pop(_digest(state), None) is not None

    def close(self) -> None:
        """The App is registered: no state is good any more."""
        with self._lock:
            self._closed = True
            self._expiry.clear()

    def _forget_expired(self) -> None:
        now = self._clock()
        for key in [key for key, expiry in self._expiry.items() if expiry <= now]:
            del self._expiry[key]


def _digest(state: str) -> str:
    return hashlib.sha256(state.encode("utf-8", "surrogatepass")).hexdigest()


def callback_arguments(pairs: Iterable[tuple[str, str]], raw_query: str = "") -> tuple[str, str]:
    """The `code` and `state` GitHub sends back, each exactly once and well formed."""
    if len(raw_query) > MAX_QUERY_CHARS:
        raise CallbackRefused(f"the address is longer than {MAX_QUERY_CHARS} characters")
    found: dict[str, list[str]] = {"code": [], "state": []}
    for name, value in pairs:
        if name in found:
            found[name].append(value)
    for name, pattern in (("code", _CODE), ("state", _STATE)):
        values = found[name]
        if not values:
            raise CallbackRefused(f"the address has no {name}")
        if len(values) > 1:
            raise CallbackRefused(f"the address has more than one {name}")
        if not pattern.fullmatch(values[0]):
            raise CallbackRefused(f"the {name} in the address is not one GitHub sends")
    return found["code"][0], found["state"][0]


def registration_from(answer: Any, api_url: str = DEFAULT_API_URL) -> Registration:
    """What the service keeps of GitHub's answer to the conversion, checked field by field.
    `api_url` is the GitHub it came from: the App's page must be on that GitHub's web host."""
    if not isinstance(answer, dict):
        raise ConversionProblem("GitHub's answer is not a JSON object")
    app_id = answer.get("id")
    if type(app_id) is not int or not 0 < app_id < 2**53:
        raise ConversionProblem("GitHub's answer has no App id")
    slug = answer.get("slug")
    if not isinstance(slug, str) or not _SLUG.fullmatch(slug):
        raise ConversionProblem("GitHub's answer has no valid App slug")
    name = answer.get("name")
    if (not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_CHARS
            or not name.isprintable()):
        raise ConversionProblem("GitHub's answer has no valid App name")
    html_url = answer.get("html_url")
    if not isinstance(html_url, str) or not _is_web_address(html_url):
        raise ConversionProblem("GitHub's answer has no address of the App's page (html_url)")
    if not _is_on_github(html_url, api_url):
        # The install link is made from it: it must not lead to a look-alike site.
        raise ConversionProblem(f"GitHub's answer gives the App's page (html_url) on another "
                                f"site than {github_web_url(api_url)}")
    secret = answer.get("webhook_secret")
    if (not isinstance(secret, str) or not 0 < len(secret) <= MAX_SECRET_CHARS
            or not secret.isprintable() or secret != secret.strip()):
        raise ConversionProblem("GitHub's answer has no webhook secret, so deliveries could not "
                                "be verified")
    pem = answer.get("pem")
    if not isinstance(pem, str) or len(pem) > MAX_PEM_CHARS or not _is_app_signing_key(pem):
        raise ConversionProblem(f"GitHub's answer has no usable private key (pem): an App's key "
                                f"is RSA of at least {MIN_KEY_BITS} bits")
    return Registration(app_id=app_id, slug=slug, name=name, html_url=html_url.rstrip("/"),
                        pem=pem, webhook_secret=secret)


def _is_web_address(text: str) -> bool:
    if len(text) > 2000 or not text.isprintable() or any(c.isspace() for c in text):
        return False
    try:
        parts = urlsplit(text)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and "@" not in parts.netloc


def _is_on_github(url: str, api_url: str) -> bool:
    """Whether `url` is on the web host of the GitHub whose API is at `api_url`, by the same
    scheme (no http for an https GitHub)."""
    parts, api = urlsplit(url), urlsplit(api_url.strip())
    try:
        host = parts.hostname + (f":{parts.port}" if parts.port is not None else "")
    except (TypeError, ValueError):  # no host, or a port that is no number
        return False
    return parts.scheme == (api.scheme or "https") and host == github_web_host(api_url)


def _is_app_signing_key(pem: str) -> bool:
    """An unencrypted RSA private key GitHub would accept for RS256: any other kind loads, but
    every call to GitHub would fail with it."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    if "PRIVATE KEY-----" not in pem or not pem.isascii():
        return False
    try:
        key = load_pem_private_key(pem.encode("ascii"), password=None)
    except (ValueError, TypeError):
        return False
    return isinstance(key, rsa.RSAPrivateKey) and key.key_size >= MIN_KEY_BITS


def settings_written(registration: Registration, key_path: Path) -> dict[str, str]:
    """What `.env` gets. The client id and secret are left out: the service has no use for them."""
    return {"GITHUB_APP_ID": str(registration.app_id), "GITHUB_APP_SLUG": registration.slug,
            "GITHUB_PRIVATE_KEY_PATH": str(key_path),
            "GITHUB_WEBHOOK_SECRET": registration.webhook_secret}


def key_file_name(app_id: int) -> str:
    return f"github-app-{app_id}.private-key.pem"


class ConversionFailed(RuntimeError):
    """GitHub did not convert the code; the message says what it answered."""


@dataclass
class Setup:
    """Setup mode's state and its edges to the world: GitHub (`convert`), the files, and the
    hand-over to the service (`registered`, which returns problems to show, if any)."""

    settings: Settings
    dotenv_path: Path
    app_yml: Path | None
    convert: Callable[[str], Any]
    registered: Callable[[JustRegistered], list[str]]
    states: States = field(default_factory=States)
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: JustRegistered | None = None  # with the problems that kept it from handing over

    def write_problem(self) -> str | None:
        """Why the App's settings could not be saved, found before GitHub is asked anything."""
        data = self.settings.data_path
        try:
            data.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            return f"the data directory {data} cannot be created: {error.strerror}"
        if not os.access(data, os.W_OK | os.X_OK):
            return f"the data directory {data} is not writable by this service"
        dotenv = Path(os.path.realpath(self.dotenv_path))
        if not os.access(dotenv.parent, os.W_OK | os.X_OK):
            return f"{dotenv.parent} is not writable by this service, so {dotenv.name} cannot be saved"
        # The settings as they will be written, with stand-in values of the same kind.
        stand_in = Registration(app_id=1, slug="async-code", name="async-code", html_url="",
                                pem="", webhook_secret="0" * 40)
        try:
            existing = read_text_if_any(dotenv)
            dotenv_with(existing, settings_written(stand_in, data / key_file_name(1)))
        except (OSError, UnicodeDecodeError, DotenvError) as error:
            return f"{dotenv} cannot be read and updated: {getattr(error, 'strerror', None) or error}"
        return None

    def save(self, registration: Registration) -> Path:
        """The key file, then `.env`; if `.env` cannot be written the key file goes again."""
        key_path = self.settings.data_path / key_file_name(registration.app_id)
        if key_path.is_symlink():
            log.warning("setup: %s was a symlink; it is replaced by the key file, not followed",
                        key_path)
        write_private(key_path, registration.pem)
        try:
            existing = read_text_if_any(Path(os.path.realpath(self.dotenv_path)))
            heading = (f"The GitHub App {registration.name} (@{registration.slug}), registered "
                       f"by async-code serve on {datetime.now(timezone.utc):%Y-%m-%d}.")
            write_private(self.dotenv_path, dotenv_with(
                existing, settings_written(registration, key_path), heading=heading),
                follow_symlink=True)
        except BaseException:
            key_path.unlink(missing_ok=True)
            raise
        return key_path


_LAYOUT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
body { font: 16px/1.5 system-ui, sans-serif; max-width: 44rem; margin: 2rem auto;
       padding: 0 1rem; color: #1f2328; }
code { font: 14px ui-monospace, monospace; background: #f6f8fa; padding: .1rem .3rem;
       border-radius: 4px; }
.button { display: inline-block; background: #1f883d; color: #fff; border: 0; border-radius: 6px;
          padding: .6rem 1.1rem; font-size: 1rem; text-decoration: none; cursor: pointer; }
.warning { background: #fff8c5; border: 1px solid #d4a72c; border-radius: 6px; padding: .5rem .75rem; }
.error { background: #ffebe9; border: 1px solid #ff8182; border-radius: 6px; padding: .5rem .75rem; }
</style></head><body>
<h1>{{ title }}</h1>
{{ body }}
</body></html>"""

_SETUP_PAGE = """
<p>This service has no GitHub App yet. The button sends GitHub the App's manifest, made from
<code>{{ app_yml }}</code>. On GitHub, check the name (App names are unique on GitHub: if it is
taken, choose another, such as <code>{{ name }}-yourname</code>; people will mention the App
by that name) and click <strong>Create GitHub App</strong>. GitHub then sends you back here, this
service saves the App's ID, private key and webhook secret, and starts serving.</p>
<form action="{{ action }}" method="post">
<input type="hidden" name="manifest" value="{{ manifest_json }}">
<button class="button" type="submit">Register on GitHub{% if org %} for {{ org }}{% endif %}</button>
</form>
<form action="" method="get">
<p><label>To register it for an organisation instead of your account, name it:
<input name="org" value="{{ org or '' }}" size="20" pattern="[A-Za-z0-9-]+"></label>
<button type="submit">Use this organisation</button></p>
</form>
<h2>Where GitHub will find this service</h2>
<ul>
<li>Deliveries go to <code>{{ manifest.hook_attributes.url }}</code></li>
<li>After registering, your browser comes back to <code>{{ manifest.redirect_url }}</code></li>
</ul>
{% if unreachable %}<p class="warning">GitHub cannot deliver to
<code>{{ manifest.hook_attributes.url }}</code>: it names this machine. Set <code>ASYNC_CODE_PUBLIC_URL</code> to this service's public address,
or <code>ASYNC_CODE_WEBHOOK_PROXY_URL</code> to a smee.io channel that a forwarder relays here
(the README shows both), restart <code>async-code serve</code>, and open this page again.
Registering now still works; the App's webhook URL can be changed on GitHub later.</p>{% endif %}
<h2>What the App may do</h2>
<ul>{% for permission, level in manifest.default_permissions.items() %}
<li><code>{{ permission }}</code>: {{ level }}</li>{% endfor %}
</ul>
<p>Events: {% for event in manifest.default_events -%}
<code>{{ event }}</code>{% if not loop.last %}, {% endif %}{% endfor %}.
Only the account that owns the App can install it.</p>
{{ missing }}
"""

_REGISTERED_PAGE = """
<p>The GitHub App <strong>{{ name }}</strong> (<code>@{{ slug }}</code>, App ID {{ app_id }}) is
registered. Next, install it on the repositories it may work on:</p>
<p><a class="button" href="{{ install }}">Install {{ name }} on GitHub</a></p>
<p>On GitHub, pick the account, then <em>All repositories</em> or <em>Only select
repositories</em>, and click <strong>Install</strong>. Then, on an issue in one of them, comment
<code>@{{ slug }} make the CLI print its version with --version</code>.</p>
{% if done %}<p>Its private key is saved in <code>{{ done.key_path }}</code> and its other
settings in <code>{{ done.dotenv_path }}</code>. Keep both private.</p>
{% for problem in done.problems %}<p class="error">{{ problem }}</p>{% endfor %}{% endif %}
{{ missing }}
"""

_MISSING = """{% if missing %}<h2>Still missing</h2><ul>{% for name, why in missing %}
<li><code>{{ name }}</code>: {{ why }}</li>{% endfor %}</ul>{% endif %}"""

_MESSAGE_PAGE = """{% for paragraph in paragraphs -%}
<p{% if loop.first %} class="error"{% endif %}>{{ paragraph }}</p>
{% endfor %}
<p><a href="{{ back }}">{{ back_text }}</a></p>"""


def _render(status: int, title: str, body_template: str, **values: Any):
    body = render_template_string(body_template, **values)
    page = render_template_string(_LAYOUT, title=title, body=Markup(body))
    return page, status, {"Content-Type": "text/html; charset=utf-8"}


def _missing_block(settings: Settings, *, app: bool) -> Markup:
    missing = []
    if app:
        missing.append(("GITHUB_APP_ID, GITHUB_PRIVATE_KEY_PATH, GITHUB_WEBHOOK_SECRET",
                        "the GitHub App; the button above registers one and saves them"))
    for name in settings.missing_for_tasks():
        missing.append((name, "the agent's key for the Anthropic Messages API. Until it is set in "
                              ".env (or the environment) and the service restarted, each request "
                              "gets a comment saying it is missing, and nothing runs."))
    return Markup(render_template_string(_MISSING, missing=missing))


def _message(status: int, title: str, *paragraphs: str, back: str = "/",
             back_text: str = "Back to the setup page"):
    return _render(status, title, _MESSAGE_PAGE, paragraphs=paragraphs, back=back,
                   back_text=back_text)


def _web_url(settings: Settings) -> str:
    return github_web_url(settings.github_api_url)


def _public_url(settings: Settings) -> str:
    return (settings.public_url or request.host_url).rstrip("/")


@setup_blueprint.after_request
@status_blueprint.after_request
def _page_headers(response):
    # The pages hold one-time values and a form that creates an App: never cached, framed,
    # or given away in a Referer.
    response.headers.update({
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": (
            "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; "
            f"frame-ancestors 'none'; form-action 'self' {_web_url(current_app.config['SETTINGS'])}"),
    })
    return response


@setup_blueprint.get("/")
def setup_page():
    setup: Setup = current_app.config["SETUP"]
    settings = setup.settings
    if setup.done is not None:
        return _registered_page(settings, setup.done)
    org = request.args.get("org", "").strip() or None
    if org is not None and (problem := organisation_problem(org)):
        return _message(400, "Not an organisation", f"{org!r} cannot be an organisation: {problem}.")
    if setup.app_yml is None:
        return _message(500, "app.yml is missing", "No app.yml was found in the working directory "
                        "or beside the installed package, so there is no manifest to register. "
                        "Run async-code serve from the checkout, which has one.")
    try:
        manifest = manifest_for(read_app_yml(setup.app_yml), _public_url(settings),
                                settings.webhook_proxy_url or None)
    except ManifestError as error:
        return _message(500, "app.yml cannot be used", f"{error}. Fix it and reload this page.")
    state = setup.states.issue()
    return _render(
        200, "Register async-code on GitHub", _SETUP_PAGE, manifest=manifest,
        manifest_json=json.dumps(manifest), name=manifest["name"], org=org,
        action=new_app_url(_web_url(settings), state, org), app_yml=str(setup.app_yml),
        unreachable=is_loopback(manifest["hook_attributes"]["url"]),
        missing=_missing_block(settings, app=True))


@setup_blueprint.get(CALLBACK_PATH)
def setup_callback():
    setup: Setup = current_app.config["SETUP"]
    try:
        code, state = callback_arguments(request.args.items(multi=True),
                                         request.query_string.decode("latin-1"))
    except CallbackRefused as refusal:
        return _message(400, "Not a registration link", f"This is not the address GitHub sends "
                        f"back after registering an App: {refusal}. {NOTHING_WRITTEN}")
    with setup.lock:
        if setup.done is not None:
            return _already_registered(setup.done.registration.slug)
        if not setup.states.valid(state):
            log.warning("setup: refused a callback with an unknown, used or expired state")
            return _message(400, "Registration link not accepted",
                            "This registration link was not handed out by this service, was used "
                            f"already, or is more than an hour old. {NOTHING_WRITTEN} {START_AGAIN}")
        if (problem := setup.write_problem()) is not None:
            # The state stays good: fixing this and reloading the page finishes the registration.
            return _message(500, "The App's settings cannot be saved",
                            f"{problem[0].upper()}{problem[1:]}.", "Nothing was sent to GitHub "
                            "yet. Fix this and reload this page within the hour to finish.",
                            back=request.full_path, back_text="Reload")
        setup.states.take(state)
        try:
            registration = registration_from(setup.convert(code), setup.settings.github_api_url)
        except (ConversionFailed, ConversionProblem) as failure:
            log.warning("setup: the registration failed: %s", failure)
            return _message(502, "GitHub did not complete the registration",
                            f"{failure}. {NOTHING_WRITTEN}", f"{DELETE_THE_APP} {START_AGAIN}")
        except Exception:
            log.exception("setup: exchanging the registration code failed")
            return _message(502, "GitHub did not complete the registration",
                            f"Exchanging the code GitHub sent failed unexpectedly (the service's "
                            f"log says how). {NOTHING_WRITTEN}", f"{DELETE_THE_APP} {START_AGAIN}")
        try:
            key_path = setup.save(registration)
        except (OSError, DotenvError) as error:
            log.error("setup: the App's settings could not be saved: %s", error)
            return _message(500, "The App's settings cannot be saved",
                            f"GitHub registered the App, but saving it failed: {error}. "
                            f"{NOTHING_WRITTEN}", f"{DELETE_THE_APP} {START_AGAIN}")
        done = JustRegistered(registration, key_path, setup.dotenv_path)
        setup.done = done
        setup.states.close()
    log.info("setup: registered the GitHub App %s (id %d); its key is in %s and its settings in %s",
             registration.slug, registration.app_id, key_path, setup.dotenv_path)
    try:
        problems = setup.registered(done)
    except Exception:
        log.exception("setup: the service could not start after registering")
        problems = ["The App is registered and saved, but the service could not start with it "
                    "(its log says why). Restart async-code serve."]
    if problems:  # still in setup mode: the page says why
        setup.done = JustRegistered(registration, key_path, setup.dotenv_path, tuple(problems))
    return redirect("/", code=303)


@setup_blueprint.post("/webhooks")
def setup_refuses_deliveries():
    settings = current_app.config["SETTINGS"]
    return jsonify({"message": "async-code is not set up yet: no GitHub App is registered. Open "
                               f"{_public_url(settings)}/ in a browser to register one."}), 503


@status_blueprint.get("/")
def status_page():
    return _registered_page(current_app.config["SETTINGS"], current_app.config.get("JUST_REGISTERED"))


@status_blueprint.get(CALLBACK_PATH)
def callback_after_registration():
    return _already_registered(current_app.config["SETTINGS"].github_app_slug)


def _already_registered(slug: str):
    return _message(400, "Already registered",
                    f"async-code is registered as @{slug} already; this registration link is no "
                    f"longer accepted. {NOTHING_WRITTEN}",
                    "If GitHub created another App just now, this service does not use it: "
                    f"delete it ({DELETE_STEPS}).",
                    back_text="See the App")


def _registered_page(settings: Settings, done: JustRegistered | None):
    """The App this service serves as, and how to install it. Right after registering, the
    App as GitHub described it; otherwise as the settings name it."""
    if done is not None:
        registration = done.registration
        name, slug, app_id, page = (registration.name, registration.slug, registration.app_id,
                                    registration.html_url)
    else:
        name = slug = settings.github_app_slug
        app_id, page = settings.github_app_id, app_html_url(_web_url(settings), slug)
    return _render(200, "async-code is registered on GitHub", _REGISTERED_PAGE, name=name,
                   slug=slug, app_id=app_id, install=install_url(page), done=done,
                   missing=_missing_block(settings, app=False))
