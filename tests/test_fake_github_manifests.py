"""The fake GitHub's App manifest flow: the "new GitHub App" page a browser posts a manifest
to, and the code conversion, answered in the shape GitHub documents and githubkit reads."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

import pytest
from githubkit import GitHub, TokenAuthStrategy
from githubkit.exception import RequestFailed

from tests.conftest import APP_ID

MANIFEST = {
    "name": "async-code",
    "url": "https://async-code.example.com",
    "hook_attributes": {"url": "https://async-code.example.com/webhooks"},
    "redirect_url": "https://async-code.example.com/setup/callback",
    "public": False,
    "default_permissions": {"issues": "write", "contents": "write"},
    "default_events": ["issue_comment", "issues"],
}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def post_manifest(github, manifest, *, state="s1", org=None):
    """What the browser does with the setup page's form; returns (status, Location or text)."""
    path = f"/organizations/{org}/settings/apps/new" if org else "/settings/apps/new"
    body = urllib.parse.urlencode({"manifest": json.dumps(manifest)}).encode()
    request = urllib.request.Request(f"{github.base_url}{path}?state={state}", data=body,
                                     method="POST")
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers.get("Location") or error.read().decode()


def convert(github, code, **kwargs):
    with GitHub(base_url=github.base_url + "/", **kwargs) as client:
        return client.rest.apps.create_from_manifest(code)


def test_a_converted_code_answers_in_githubs_documented_shape(github, app_key):
    code = github.plan_manifest_code(app_key[0])
    status, location = post_manifest(github, MANIFEST, state="abc")
    assert status == 302
    assert location == f"{MANIFEST['redirect_url']}?code={code}&state=abc"

    response = convert(github, code)
    assert response.status_code == 201
    app = response.parsed_data  # githubkit's own model of the answer validates it
    assert (app.id, app.slug, app.pem, app.name) == (APP_ID, "async-code", app_key[0], "async-code")
    answer = response.json()
    for field in ("id", "slug", "node_id", "owner", "name", "description", "external_url",
                  "html_url", "created_at", "updated_at", "permissions", "events", "client_id",
                  "client_secret", "webhook_secret", "pem"):
        assert field in answer, field
    assert answer["webhook_secret"] == github.planned_webhook_secret(code)
    assert len(answer["webhook_secret"]) == 40 and len(answer["client_secret"]) == 40
    assert answer["html_url"] == f"{github.base_url}/apps/async-code"
    assert answer["permissions"] == {"metadata": "read", "issues": "write", "contents": "write"}
    assert answer["events"] == ["issue_comment", "issues"]
    assert answer["external_url"] == MANIFEST["url"]
    assert github.manifests_posted == [{"manifest": MANIFEST, "org": None, "state": "abc"}]
    # The code is the credential: no Authorization header was needed.
    assert github.requests[-1]["auth"] is None


@pytest.mark.parametrize("case", ["used twice", "never planned"])
def test_a_code_works_once(github, app_key, case):
    code = github.plan_manifest_code(app_key[0])
    if case == "used twice":
        convert(github, code)
    else:
        code = "0" * 20
    with pytest.raises(RequestFailed) as failure:
        convert(github, code)
    assert failure.value.response.status_code == 422
    assert failure.value.response.json()["message"] == "Validation Failed"
    assert [each["refused"] for each in github.conversions][-1] is True


def test_an_organisations_app_is_owned_by_it(github, app_key):
    code = github.plan_manifest_code(app_key[0])
    status, _ = post_manifest(github, MANIFEST, org="acme")
    assert status == 302
    owner = convert(github, code).json()["owner"]
    assert (owner["login"], owner["type"]) == ("acme", "Organization")


def test_the_planned_slug_and_a_missing_webhook_secret(github, app_key):
    code = github.plan_manifest_code(app_key[0], slug="async-code-alice", webhook_secret=None)
    answer = convert(github, code)
    assert answer.parsed_data.webhook_secret is None
    assert answer.json()["slug"] == "async-code-alice"


def test_bad_credentials_are_still_refused(github, app_key):
    code = github.plan_manifest_code(app_key[0])
    with pytest.raises(RequestFailed) as failure:
        convert(github, code, auth=TokenAuthStrategy("ghs_unknown"))
    assert failure.value.response.status_code == 401


@pytest.mark.parametrize(("manifest", "expected"), [
    ("not json", "not JSON"),
    ([], "JSON object"),
    ({**MANIFEST, "name": ""}, "name is required"),
    ({k: v for k, v in MANIFEST.items() if k != "url"}, "url is required"),
    ({**MANIFEST, "hook_attributes": {}}, "hook_attributes.url is required"),
    ({**MANIFEST, "default_events": "issues"}, "default_events must be an array"),
    ({**MANIFEST, "default_permissions": ["issues"]}, "default_permissions must be an object"),
])
def test_github_refuses_a_bad_manifest(github, app_key, manifest, expected):
    github.plan_manifest_code(app_key[0])
    path = "/settings/apps/new"
    raw = manifest if isinstance(manifest, str) else json.dumps(manifest)
    request = urllib.request.Request(github.base_url + path, method="POST",
                                     data=urllib.parse.urlencode({"manifest": raw}).encode())
    with pytest.raises(urllib.error.HTTPError) as failure:
        urllib.request.urlopen(request, timeout=10)
    with failure.value as error:
        assert error.code == 422 and expected in error.read().decode()
    assert github.manifests_posted == []
