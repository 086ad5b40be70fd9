"""The GitHub App manifest async-code registers itself with, built from `app.yml`.

`app.yml` says what the App may do (permissions, events) and what it is called; where it lives
(its URLs) is filled in from the service's public URL, so the file holds no address. These are
pure functions, apart from `read_app_yml`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

# The checkout's own copy; a working directory with its own app.yml wins, as in Probot.
PACKAGED_APP_YML = Path(__file__).resolve().parent.parent / "app.yml"
WEBHOOK_PATH = "/webhooks"
CALLBACK_PATH = "/setup/callback"
MAX_APP_YML_BYTES = 64 * 1024
MAX_NAME_CHARS = 34  # GitHub refuses longer App names
# A GitHub organisation's login: letters, digits and single hyphens inside, up to 39 characters.
_ORGANISATION = re.compile(r"[A-Za-z0-9](?:-?[A-Za-z0-9]){0,38}")
_PERMISSION_LEVELS = frozenset({"read", "write", "admin"})
_NAME_PART = re.compile(r"[a-z_]{1,100}")


class ManifestError(ValueError):
    """`app.yml` cannot be turned into a manifest; the message says what to fix in it."""


def app_yml_path(working_directory: Path) -> Path | None:
    """The `app.yml` to register from: the working directory's, else the checkout's."""
    for candidate in (working_directory / "app.yml", PACKAGED_APP_YML):
        if candidate.is_file():
            return candidate
    return None


def read_app_yml(path: Path) -> dict[str, Any]:
    """`app.yml` as data, or ManifestError saying why it cannot be read."""
    import yaml

    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ManifestError(f"{path} cannot be read: {error.strerror}") from None
    if len(raw) > MAX_APP_YML_BYTES:
        raise ManifestError(f"{path} is larger than {MAX_APP_YML_BYTES // 1024} KiB")
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as error:
        raise ManifestError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ManifestError(f"{path} must be a mapping of manifest fields (name, default_permissions, "
                            "default_events, ...)")
    return data


def manifest_for(app_yml: dict[str, Any], public_url: str,
                 webhook_url: str | None = None) -> dict[str, Any]:
    """The manifest GitHub registers: `app.yml`'s name, description, permissions and events,
    this service's URLs, and never public (anyone who installed a public App could start work
    here). `webhook_url` is where GitHub sends deliveries when that is not `public_url` itself,
    such as a forwarder's channel."""
    base = public_url.rstrip("/")
    name = app_yml.get("name")
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > MAX_NAME_CHARS:
        raise ManifestError(f"app.yml: name must be the App's name, 1 to {MAX_NAME_CHARS} characters")
    description = app_yml.get("description", "")
    if not isinstance(description, str):
        raise ManifestError("app.yml: description must be text")
    return {
        "name": name.strip(),
        "url": base,
        "description": description.strip(),
        "hook_attributes": {"url": webhook_url or base + WEBHOOK_PATH, "active": True},
        "redirect_url": base + CALLBACK_PATH,
        "public": False,
        "default_permissions": _permissions(app_yml.get("default_permissions")),
        "default_events": _events(app_yml.get("default_events")),
    }


def _permissions(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not value:
        raise ManifestError("app.yml: default_permissions must map each permission to read or write")
    for permission, level in value.items():
        if not isinstance(permission, str) or not _NAME_PART.fullmatch(permission):
            raise ManifestError(f"app.yml: {permission!r} is not a permission name")
        if level not in _PERMISSION_LEVELS:
            raise ManifestError(f"app.yml: permission {permission} must be read or write, "
                                f"not {level!r}")
    return dict(value)


def _events(value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        raise ManifestError("app.yml: default_events must list the events to subscribe to")
    for event in value:
        if not isinstance(event, str) or not _NAME_PART.fullmatch(event):
            raise ManifestError(f"app.yml: {event!r} is not an event name")
    return list(value)


def organisation_problem(org: str) -> str | None:
    """Why `org` cannot be a GitHub organisation's login, or None."""
    if not _ORGANISATION.fullmatch(org):
        return ("an organisation's login has letters, digits and single hyphens, "
                "up to 39 characters")
    return None


def new_app_url(web_url: str, state: str, org: str | None = None) -> str:
    """Where the manifest is POSTed: the account's, or the organisation's, "new GitHub App"."""
    owner = f"/organizations/{quote(org, safe='')}" if org else ""
    return f"{web_url.rstrip('/')}{owner}/settings/apps/new?{urlencode({'state': state})}"


def install_url(app_html_url: str) -> str:
    """Where the App's owner picks the repositories it may work on."""
    return app_html_url.rstrip("/") + "/installations/new"


def app_html_url(web_url: str, slug: str) -> str:
    """The App's page, for a service that was not registered from this one (GitHub Enterprise
    Server keeps Apps under /github-apps/)."""
    host = urlsplit(web_url).hostname or ""
    path = "apps" if host == "github.com" or host.endswith(".ghe.com") else "github-apps"
    return f"{web_url.rstrip('/')}/{path}/{quote(slug, safe='')}"


def is_loopback(url: str) -> bool:
    """Whether GitHub certainly cannot reach `url`: it names this machine."""
    host = (urlsplit(url).hostname or "").lower()
    return (host in ("localhost", "::1", "0.0.0.0") or host.startswith("127.")
            or host.endswith(".localhost"))
