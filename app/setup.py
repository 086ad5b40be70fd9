"""First run: register the GitHub App from `app.yml` with GitHub's manifest flow, then serve.

`serve` with no App credentials at all runs this blueprint instead of the webhook one. `GET /`
shows a form that POSTs the manifest to GitHub with a one-time `state`; GitHub creates the App
and sends the browser to `/setup/callback` with a code, which is exchanged for the App's id,
slug, private key and webhook secret (`POST /app-manifests/{code}/conversions`: the code is the
only credential). The key goes to a 0600 file in the data directory, the rest into `.env`, and
`serve` hands over to the webhook service without a restart.

Whoever registers the App owns the service, so only the operator may: the page opens only
from the address in the service's log, whose token works once and becomes a session cookie
in that browser, and a state is good only in the session it was handed to. Setup mode answers
only to this machine's loopback names and the public URL's host, so a page that rebinds its
own DNS name to this machine can neither read the page nor put its name in the manifest.

Nothing is written unless the state is one this page handed out to this browser, unused and
under an hour old, and GitHub's answer holds everything the service needs. Until then
deliveries get a 503. The private key, the webhook secret, the client secret and the setup
token are never logged (the token only in the one line that says where to open the page) or
shown.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from flask import (Blueprint, current_app, jsonify, make_response, redirect,
                   render_template_string, request)
from markupsafe import Markup

from app.manifest import (CALLBACK_PATH, ManifestError, app_html_url, install_url, is_loopback,
                          manifest_for, new_app_url, organisation_problem, read_app_yml)
from app.private_files import DotenvError, dotenv_with, read_text_if_any, write_private
from app.settings import DEFAULT_API_URL, Settings
from runner.text import github_web_host, github_web_url

log = logging.getLogger(__name__)

STATE_LIFETIME = 3600.0  # seconds; GitHub's codes last an hour too
# Page views waiting for their callback; older ones are dropped. Only the operator's session
# gets states, so no one else can push the operator's out.
MAX_STATES_PER_SESSION = 20
MAX_PENDING_STATES = 50
SESSION_COOKIE = "async_code_setup"
LOOPBACK_NAMES = frozenset({"127.0.0.1", "::1", "localhost"})
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,100}")
# A Host header: a name or IPv4 address, or an IPv6 address in brackets, and any port.
_HOST_HEADER = re.compile(r"(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9._-]+))(?::[0-9]{1,5})?")
MAX_QUERY_CHARS = 2000
_CODE = re.compile(r"[A-Za-z0-9_-]{1,200}")  # it becomes part of an API path
_STATE = re.compile(r"[A-Za-z0-9_-]{1,100}")
_SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,99}")
MAX_PEM_CHARS = 32 * 1024
MIN_KEY_BITS = 2048  # GitHub signs App keys with RS256; it hands out 2048-bit RSA keys
MAX_SECRET_CHARS = 1024
MAX_NAME_CHARS = 100
MAX_ANSWER_BYTES = 256 * 1024  # GitHub's answer is a few KiB: the App, its owner and its key
CONVERSION_TIMEOUT = 30.0  # seconds; githubkit waits forever by default
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
    operator_session: str | None = field(default=None, repr=False)  # the session's key

    def shown_to(self, cookie: str | None) -> bool:
        """Whether the browser with this session cookie registered the App, and so may see
        where its settings were saved and what went wrong."""
        return (self.operator_session is not None and bool(cookie)
                and hmac.compare_digest(_digest(cookie), self.operator_session))


def new_setup_token() -> str:
    return secrets.token_urlsafe(32)


class OperatorAccess:
    """Who may use setup mode: the browser that opened the address in the service's log.

    The token in that address is good once: it becomes a session, kept in that browser's
    cookie. Only digests are kept, compared in constant time. A second use of the token fails,
    so a copy of the address (the browser's history, a proxy's access log) is worth nothing,
    and an operator who finds it spent knows someone else used it."""

    def __init__(self, token: str):
        self._token = _digest(token)
        self._spent = False
        self._session: str | None = None
        self._lock = threading.Lock()

    def exchange(self, token: str) -> str | None:
        """A new session cookie for the token, the first time it is shown; None otherwise."""
        if not _TOKEN.fullmatch(token):
            return None
        with self._lock:
            if self._spent or not hmac.compare_digest(_digest(token), self._token):
                return None
            self._spent = True
            cookie = secrets.token_urlsafe(32)
            self._session = _digest(cookie)
        return cookie

    def session_of(self, cookie: str | None) -> str | None:
        """The key of the session `cookie` stands for, or None when it stands for none."""
        with self._lock:
            session = self._session
        if not cookie or session is None or len(cookie) > 100:
            return None
        key = _digest(cookie)
        return key if hmac.compare_digest(key, session) else None


class States:
    """One-time `state` values for the form: each is good for one callback within the hour,
    in the session it was handed to.

    Only digests are kept, so the values themselves are nowhere but in the pages handed out.
    A session keeps its newest `per_session`; all sessions together the newest `limit`."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic,
                 lifetime: float = STATE_LIFETIME, per_session: int = MAX_STATES_PER_SESSION,
                 limit: int = MAX_PENDING_STATES):
        self._clock, self._lifetime = clock, lifetime
        self._per_session, self._limit = per_session, limit
        # state's digest → (session, expiry), oldest first
        self._pending: dict[str, tuple[str, float]] = {}
        self._closed = False
        self._lock = threading.Lock()

    def issue(self, session: str) -> str:
        state = secrets.token_urlsafe(32)
        with self._lock:
            self._forget_expired()
            own = [key for key, (owner, _) in self._pending.items() if owner == session]
            for key in own[:max(0, len(own) - self._per_session + 1)]:
                del self._pending[key]
            while len(self._pending) >= self._limit:
                self._pending.pop(next(iter(self._pending)))
            if not self._closed:
                self._pending[_digest(state)] = (session, self._clock() + self._lifetime)
        return state

    def valid(self, state: str, session: str) -> bool:
        with self._lock:
            return self._holds(state, session)

    def take(self, state: str, session: str) -> bool:
        """Use `state` up: True once for each value `issue` handed out to `session`, if still
        in time."""
        with self._lock:
            if not self._holds(state, session):
                return False
            del self._pending[_digest(state)]
            return True

    def _holds(self, state: str, session: str) -> bool:
        self._forget_expired()
        found = self._pending.get(_digest(state))
        return found is not None and found[0] == session

    def close(self) -> None:
        """The App is registered: no state is good any more."""
        with self._lock:
            self._closed = True
            self._pending.clear()

    def _forget_expired(self) -> None:
        now = self._clock()
        for key in [key for key, (_, expiry) in self._pending.items() if expiry <= now]:
            del self._pending[key]


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def host_name(header: str) -> str | None:
    """The host a Host header names, lower case and without its port (an IPv6 address
    without brackets, in its short form); None when it is no host name."""
    match = _HOST_HEADER.fullmatch(header)
    if not match:
        return None
    if match[1] is not None:
        try:
            return str(ipaddress.IPv6Address(match[1]))
        except ValueError:
            return None
    return match[2].lower()


def setup_hosts(public_url: str, listen_host: str = "") -> frozenset[str]:
    """The names setup mode answers to: this machine's loopback names, the host of
    ASYNC_CODE_PUBLIC_URL, and the address `serve` listens on when it names one. A browser
    sends another name when a page rebound that name to this machine (DNS rebinding), or a
    proxy passed on a name the operator did not choose."""
    names = set(LOOPBACK_NAMES)
    public = urlsplit(public_url).hostname if public_url else None
    for name in (public, listen_host.strip("[]")):
        if not name:
            continue
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            names.add(name.lower())
            continue
        if not address.is_unspecified:  # 0.0.0.0 and :: are no address to open
            names.add(str(address))
    return frozenset(names)


def host_allowed(header: str, hosts: frozenset[str]) -> bool:
    return host_name(header) in hosts


def service_url(public_url: str, scheme: str, host_header: str,
                hosts: frozenset[str]) -> str | None:
    """Where GitHub and browsers reach this service: ASYNC_CODE_PUBLIC_URL, else the address
    the page was opened on when its host is one of `hosts`; None for any other Host, so a name
    someone else chose never goes into the manifest."""
    if public_url:
        return public_url.rstrip("/")
    if scheme not in ("http", "https") or not host_allowed(host_header, hosts):
        return None
    return f"{scheme}://{host_header}"


def opened_over_https(scheme: str, host_header: str, public_url: str) -> bool:
    """Whether the browser is on https: directly, or through the proxy at an https
    ASYNC_CODE_PUBLIC_URL, which speaks plain http to this service."""
    if scheme == "https":
        return True
    public = urlsplit(public_url)
    return (public.scheme == "https" and host_name(public.netloc) is not None
            and host_name(host_header) == host_name(public.netloc))


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


class AnswerRefused(Exception):
    """The answer is not read: larger than the limit, or compressed although asked not to be."""


def answer_problem(encoding: str | None, length: str | None, limit: int) -> str | None:
    """Why an answer with these headers is not read, or None to read it (up to `limit`)."""
    encoding = (encoding or "identity").strip().lower()
    if encoding not in ("", "identity"):
        return f"compressed ({one_line(encoding, 40)})"
    if length is not None and not re.fullmatch(r"\s*[0-9]{1,20}\s*", length):
        return "of a length that is no number"
    if length is not None and int(length) > limit:
        return f"larger than {limit // 1024} KiB"
    return None


class CappedTransport(httpx.BaseTransport):
    """An httpx transport that stops reading an answer past `limit` bytes, so whatever answers
    at GITHUB_API_URL cannot make the service hold an answer of any size. The answer is asked
    for uncompressed: a small compressed one could still unpack to any size."""

    def __init__(self, limit: int, inner: httpx.BaseTransport | None = None):
        self._limit = limit
        self._inner = inner or httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.headers["Accept-Encoding"] = "identity"
        response = self._inner.handle_request(request)
        problem = answer_problem(response.headers.get("Content-Encoding"),
                                 response.headers.get("Content-Length"), self._limit)
        if problem:
            response.close()
            raise AnswerRefused(problem)
        response.stream = _CappedStream(response.stream, self._limit)
        return response

    def close(self) -> None:
        self._inner.close()


class _CappedStream(httpx.SyncByteStream):
    def __init__(self, stream: Any, limit: int):
        self._stream, self._limit = stream, limit

    def __iter__(self):
        read = 0
        for chunk in self._stream:
            read += len(chunk)
            if read > self._limit:
                raise AnswerRefused(f"larger than {self._limit // 1024} KiB")
            yield chunk

    def close(self) -> None:
        self._stream.close()


def convert_manifest_code(api_url: str, code: str, *,
                          transport: httpx.BaseTransport | None = None) -> Any:
    """Exchange the one-time code GitHub hands a new App's creator for the App's credentials
    (POST /app-manifests/{code}/conversions; the code is the call's only credential). Returns
    GitHub's answer as JSON, unchecked; ConversionFailed says why there is none."""
    from githubkit import GitHub
    from githubkit.exception import GitHubException, RequestError, RequestFailed

    try:
        with GitHub(base_url=api_url.rstrip("/") + "/", timeout=CONVERSION_TIMEOUT,
                    http_cache=False,
                    transport=transport or CappedTransport(MAX_ANSWER_BYTES)) as client:
            response = client.rest.apps.create_from_manifest(code)
    except GitHubException as error:
        if isinstance(error, RequestError) and isinstance(error.exc, AnswerRefused):
            raise ConversionFailed(f"GitHub's answer to the registration code is {error.exc}, "
                                   "so it was not read") from None
        if isinstance(error, RequestFailed):
            status = error.response.status_code
            try:
                said = str(error.response.json().get("message", ""))[:200]
            except (ValueError, AttributeError):
                said = ""
            raise ConversionFailed(f"GitHub refused the registration code ({status}"
                                   f"{': ' + said if said else ''})") from None
        raise ConversionFailed(f"GitHub could not be reached to finish the registration "
                               f"({type(error).__name__})") from None
    try:
        return response.json()
    except ValueError:
        raise ConversionFailed("GitHub's answer to the registration code is not JSON") from None


def one_line(text: str, limit: int = 500) -> str:
    """`text` as one line of a log or a page: every character that is not printable (a line
    break, a terminal escape, a bidi override) written as its escape, so text GitHub sent
    cannot start a line that looks like the service's own."""
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return shown if len(shown) <= limit else shown[:limit] + "…"


@dataclass
class Setup:
    """Setup mode's state and its edges to the world: GitHub (`convert`), the files, and the
    hand-over to the service (`registered`, which returns problems to show, if any)."""

    settings: Settings
    dotenv_path: Path
    app_yml: Path | None
    convert: Callable[[str], Any]
    registered: Callable[[JustRegistered], list[str]]
    # Without the token `serve` logs, no browser gets in.
    access: OperatorAccess = field(default_factory=lambda: OperatorAccess(new_setup_token()))
    listen_host: str = ""  # serve's --host
    states: States = field(default_factory=States)
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: JustRegistered | None = None  # with the problems that kept it from handing over

    @property
    def hosts(self) -> frozenset[str]:
        return setup_hosts(self.settings.public_url, self.listen_host)

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
{% if done and details %}<p>Its private key is saved in <code>{{ done.key_path }}</code> and its
other settings in <code>{{ done.dotenv_path }}</code>. Keep both private.</p>
{% for problem in done.problems %}<p class="error">{{ problem }}</p>{% endfor %}{% endif %}
{{ missing }}
"""

_MISSING = """{% if missing %}<h2>Still missing</h2><ul>{% for name, why in missing %}
<li><code>{{ name }}</code>: {{ why }}</li>{% endfor %}</ul>{% endif %}"""

_MESSAGE_PAGE = """{% for paragraph in paragraphs -%}
<p{% if loop.first %} class="error"{% endif %}>{{ paragraph }}</p>
{% endfor %}
{% if back %}<p><a href="{{ back }}">{{ back_text }}</a></p>{% endif %}"""


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


def _message(status: int, title: str, *paragraphs: str, back: str | None = "/",
             back_text: str = "Back to the setup page"):
    return _render(status, title, _MESSAGE_PAGE, paragraphs=paragraphs, back=back,
                   back_text=back_text)


def _web_url(settings: Settings) -> str:
    return github_web_url(settings.github_api_url)


def _service_url(setup: Setup) -> str | None:
    return service_url(setup.settings.public_url, request.scheme,
                       request.environ.get("HTTP_HOST", ""), setup.hosts)


def _session_cookie() -> str | None:
    return request.cookies.get(SESSION_COOKIE)


@setup_blueprint.before_app_request
def _only_this_services_names():
    # DNS rebinding: a page whose name now resolves to this machine is another origin to the
    # browser, but without this it could read the setup page and send GitHub its own name.
    # /healthz says nothing and is asked by probes under any name.
    setup: Setup = current_app.config["SETUP"]
    if request.path != "/healthz" and not host_allowed(request.environ.get("HTTP_HOST", ""),
                                                       setup.hosts):
        return ("421 Misdirected Request: async-code's setup page does not answer to this host "
                "name. Open the address in the service's log.\n", 421,
                {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store"})
    return None


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
    session = setup.access.session_of(_session_cookie())
    new_cookie = None
    if session is None:
        token = request.args.get("token")
        if token is None:
            return _message(403, "Open the address in the service's log",
                            "This page registers the service's GitHub App, so it opens only "
                            "from the address async-code serve logged when it started (it ends "
                            "in ?token=…), in the browser that will finish the registration.",
                            back=None)
        new_cookie = setup.access.exchange(token)
        if new_cookie is None:
            return _message(403, "This setup link is not valid",
                            "The address in the service's log works once, in one browser, until "
                            "the service restarts; this one was used already or is from an "
                            "earlier start. Restart async-code serve and open the address it logs "
                            "now. If you did not open it before, someone else did: finish the "
                            "setup before you publish the service's address.", back=None)
        session = setup.access.session_of(new_cookie)
    response = make_response(_setup_page(setup, session))
    if new_cookie is not None:
        response.set_cookie(SESSION_COOKIE, new_cookie, path="/", httponly=True, samesite="Lax",
                            secure=opened_over_https(request.scheme,
                                                     request.environ.get("HTTP_HOST", ""),
                                                     setup.settings.public_url))
    if "token" in request.args:
        response.headers["Refresh"] = "0; url=/"  # the token leaves the address bar
    return response


def _setup_page(setup: Setup, session: str):
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
    base = _service_url(setup)
    if base is None:  # the Host check comes first; never a manifest for another name
        return _message(421, "Not this service's address", "Open the address in the service's "
                        "log.", back=None)
    try:
        manifest = manifest_for(read_app_yml(setup.app_yml), base,
                                settings.webhook_proxy_url or None)
    except ManifestError as error:
        return _message(500, "app.yml cannot be used", f"{error}. Fix it and reload this page.")
    state = setup.states.issue(session)
    return _render(
        200, "Register async-code on GitHub", _SETUP_PAGE, manifest=manifest,
        manifest_json=json.dumps(manifest), name=manifest["name"], org=org,
        action=new_app_url(_web_url(settings), state, org), app_yml=str(setup.app_yml),
        unreachable=is_loopback(manifest["hook_attributes"]["url"]),
        missing=_missing_block(settings, app=True))


@setup_blueprint.get(CALLBACK_PATH)
def setup_callback():
    setup: Setup = current_app.config["SETUP"]
    session = setup.access.session_of(_session_cookie())
    try:
        code, state = callback_arguments(request.args.items(multi=True),
                                         request.query_string.decode("latin-1"))
    except CallbackRefused as refusal:
        return _message(400, "Not a registration link", f"This is not the address GitHub sends "
                        f"back after registering an App: {refusal}. {NOTHING_WRITTEN}")
    with setup.lock:
        if setup.done is not None:
            return _already_registered(setup.done.registration.slug)
        if session is None or not setup.states.valid(state, session):
            log.warning("setup: refused a callback with a state not handed to this browser, "
                        "used or expired")
            return _message(400, "Registration link not accepted",
                            "This registration link was not handed out by this service to this "
                            "browser, was used already, or is more than an hour old. "
                            f"{NOTHING_WRITTEN} {START_AGAIN}")
        if (problem := setup.write_problem()) is not None:
            # The state stays good: fixing this and reloading the page finishes the registration.
            return _message(500, "The App's settings cannot be saved",
                            f"{problem[0].upper()}{problem[1:]}.", "Nothing was sent to GitHub "
                            "yet. Fix this and reload this page within the hour to finish.",
                            back=request.full_path, back_text="Reload")
        setup.states.take(state, session)
        try:
            registration = registration_from(setup.convert(code), setup.settings.github_api_url)
        except (ConversionFailed, ConversionProblem) as failure:
            said = one_line(str(failure))  # it may quote GitHub's own words
            log.warning("setup: the registration failed: %s", said)
            return _message(502, "GitHub did not complete the registration",
                            f"{said}. {NOTHING_WRITTEN}", f"{DELETE_THE_APP} {START_AGAIN}")
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
        done = JustRegistered(registration, key_path, setup.dotenv_path,
                              operator_session=session)
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
        setup.done = replace(done, problems=tuple(problems))
    return redirect("/", code=303)


@setup_blueprint.post("/webhooks")
def setup_refuses_deliveries():
    return jsonify({"message": "async-code is not set up yet: no GitHub App is registered. Open "
                               "the address in the service's log in a browser to register "
                               "one."}), 503


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
                   details=done is not None and done.shown_to(_session_cookie()),
                   missing=_missing_block(settings, app=False))
