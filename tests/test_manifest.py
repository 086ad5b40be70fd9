"""The manifest setup mode registers, made from app.yml, and the addresses around it."""

from __future__ import annotations

import pytest

from app.manifest import (PACKAGED_APP_YML, ManifestError, app_html_url, install_url, is_loopback,
                          manifest_for, new_app_url, organisation_problem, read_app_yml)
from tests.conftest import APP_PERMISSIONS

APP_YML = {"name": "async-code", "description": "Does work.\n",
           "default_permissions": {"issues": "write", "metadata": "read"},
           "default_events": ["issue_comment"]}


def test_the_manifest_takes_what_app_yml_says_and_this_services_urls():
    assert manifest_for(APP_YML, "https://ac.example.com/") == {
        "name": "async-code", "url": "https://ac.example.com", "description": "Does work.",
        "hook_attributes": {"url": "https://ac.example.com/webhooks", "active": True},
        "redirect_url": "https://ac.example.com/setup/callback", "public": False,
        "default_permissions": {"issues": "write", "metadata": "read"},
        "default_events": ["issue_comment"]}


def test_a_forwarder_gets_the_deliveries_and_the_browser_comes_back_here():
    manifest = manifest_for(APP_YML, "http://127.0.0.1:8080", "https://smee.io/abc")
    assert manifest["hook_attributes"]["url"] == "https://smee.io/abc"
    assert manifest["redirect_url"] == "http://127.0.0.1:8080/setup/callback"


def test_the_shipped_app_yml_asks_for_what_the_app_uses():
    manifest = manifest_for(read_app_yml(PACKAGED_APP_YML), "https://x.example")
    assert manifest["default_permissions"] == APP_PERMISSIONS
    assert manifest["default_events"] == ["issue_comment", "issues", "pull_request",
                                          "pull_request_review_comment", "check_run"]
    assert manifest["name"] == "async-code" and manifest["public"] is False


def test_an_app_is_never_public_whatever_app_yml_says():
    assert manifest_for({**APP_YML, "public": True}, "https://x.example")["public"] is False


@pytest.mark.parametrize(("change", "expected"), [
    ({"name": ""}, "name must be"),
    ({"name": None}, "name must be"),
    ({"name": "x" * 35}, "name must be"),
    ({"description": ["a"]}, "description must be text"),
    ({"default_permissions": None}, "default_permissions must map"),
    ({"default_permissions": {}}, "default_permissions must map"),
    ({"default_permissions": {"issues": "owner"}}, "must be read or write"),
    ({"default_permissions": {"Issues; drop": "read"}}, "is not a permission name"),
    ({"default_events": "issues"}, "default_events must list"),
    ({"default_events": []}, "default_events must list"),
    ({"default_events": ["issue comment"]}, "is not an event name"),
    ({"default_events": [3]}, "is not an event name"),
])
def test_what_app_yml_gets_wrong_is_named(change, expected):
    with pytest.raises(ManifestError, match=expected):
        manifest_for({**APP_YML, **change}, "https://x.example")


@pytest.mark.parametrize(("text", "expected"), [
    ("- a list\n", "must be a mapping"),
    ("name: [unclosed\n", "not valid YAML"),
    ("\xff\xfe", "not valid YAML"),
    ("a: 1\n" * 20000, "larger than"),
    ("!!python/object/apply:os.system ['true']\n", "not valid YAML"),  # safe_load only
])
def test_an_unreadable_app_yml_is_named(tmp_path, text, expected):
    path = tmp_path / "app.yml"
    path.write_bytes(text.encode("latin-1") if text == "\xff\xfe" else text.encode())
    with pytest.raises(ManifestError, match=expected):
        read_app_yml(path)


def test_a_missing_app_yml_is_named(tmp_path):
    with pytest.raises(ManifestError, match="cannot be read"):
        read_app_yml(tmp_path / "app.yml")


@pytest.mark.parametrize(("web", "org", "expected"), [
    ("https://github.com", None, "https://github.com/settings/apps/new?state=s-1"),
    ("https://github.com", "acme", "https://github.com/organizations/acme/settings/apps/new?state=s-1"),
    ("https://ghe.example.com/", None, "https://ghe.example.com/settings/apps/new?state=s-1"),
])
def test_where_the_manifest_is_posted(web, org, expected):
    assert new_app_url(web, "s-1", org) == expected


@pytest.mark.parametrize(("org", "ok"), [
    ("acme", True), ("a", True), ("my-org-2", True), ("A" * 39, True), ("A" * 40, False),
    ("-acme", False), ("acme-", False), ("ac--me", False), ("ac me", False), ("ac/me", False),
    ("", False), ("ácme", False), ("acme\n", False),
])
def test_organisation_logins(org, ok):
    assert (organisation_problem(org) is None) == ok


@pytest.mark.parametrize(("web", "slug", "expected"), [
    ("https://github.com", "async-code", "https://github.com/apps/async-code/installations/new"),
    ("https://octo.ghe.com", "ac", "https://octo.ghe.com/apps/ac/installations/new"),
    ("https://ghe.example.com", "ac", "https://ghe.example.com/github-apps/ac/installations/new"),
])
def test_install_links(web, slug, expected):
    assert install_url(app_html_url(web, slug)) == expected


@pytest.mark.parametrize(("url", "loopback"), [
    ("http://127.0.0.1:8080/webhooks", True), ("http://localhost/webhooks", True),
    ("http://[::1]:8080/webhooks", True), ("http://0.0.0.0:8080/", True),
    ("http://app.localhost/", True), ("https://smee.io/abc", False),
    ("https://async-code.example.com/webhooks", False), ("http://10.0.0.5/webhooks", False),
])
def test_addresses_github_cannot_reach(url, loopback):
    assert is_loopback(url) == loopback
