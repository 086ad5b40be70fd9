"""Setup mode's decisions, case by case: the callback's query, the one-time states, and GitHub's
answer to the code conversion."""

from __future__ import annotations

import gzip
import random
import re
import string
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from app.setup import (AnswerRefused, CallbackRefused, CappedTransport, ConversionFailed,
                       ConversionProblem, JustRegistered, OperatorAccess, Registration, States,
                       answer_problem, callback_arguments, convert_manifest_code, host_allowed,
                       host_name, one_line, opened_over_https, registration_from, service_url,
                       settings_written, setup_hosts)
from tests.fakes.keys import generate_app_key


@pytest.fixture(scope="module")
def pem() -> str:
    return generate_app_key()[0]


GOOD_CODE, GOOD_STATE = "a180b1a3d263c81bc6441d7b990bae27d4c10679", "Zm9v_YmFy-" + "x" * 30


@pytest.mark.parametrize(("pairs", "raw", "expected"), [
    ([], "", "has no code"),
    ([("code", GOOD_CODE)], "", "has no state"),
    ([("state", GOOD_STATE)], "", "has no code"),
    ([("code", GOOD_CODE), ("code", GOOD_CODE), ("state", GOOD_STATE)], "", "more than one code"),
    ([("code", GOOD_CODE), ("state", GOOD_STATE), ("state", "x")], "", "more than one state"),
    ([("code", ""), ("state", GOOD_STATE)], "", "code in the address is not"),
    ([("code", "../app"), ("state", GOOD_STATE)], "", "code in the address is not"),
    ([("code", "a/b"), ("state", GOOD_STATE)], "", "code in the address is not"),
    ([("code", "a" * 201), ("state", GOOD_STATE)], "", "code in the address is not"),
    ([("code", "abc\x00"), ("state", GOOD_STATE)], "", "code in the address is not"),
    ([("code", "ab\u00e9"), ("state", GOOD_STATE)], "", "code in the address is not"),
    ([("code", GOOD_CODE), ("state", "s" * 101)], "", "state in the address is not"),
    ([("code", GOOD_CODE), ("state", "a b")], "", "state in the address is not"),
    ([("code", GOOD_CODE), ("state", "\ufffd")], "", "state in the address is not"),
    ([("code", GOOD_CODE), ("state", GOOD_STATE)], "x" * 2001, "longer than 2000"),
])
def test_every_malformed_callback_is_refused(pairs, raw, expected):
    with pytest.raises(CallbackRefused, match=expected):
        callback_arguments(pairs, raw)


def test_a_good_callback_and_its_extra_parameters():
    pairs = [("installation_id", "5"), ("code", GOOD_CODE), ("state", GOOD_STATE)]
    assert callback_arguments(pairs, "") == (GOOD_CODE, GOOD_STATE)


def test_random_queries_are_refused_or_read_exactly():
    rng = random.Random(7)
    alphabet = string.ascii_letters + string.digits + "-_./%&=\x00\u00e9 "
    for _ in range(3000):
        pairs = [(rng.choice(["code", "state", "x"]),
                  "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 120))))
                 for _ in range(rng.randint(0, 4))]
        try:
            code, state = callback_arguments(pairs, "")
        except CallbackRefused:
            continue
        assert [v for k, v in pairs if k == "code"] == [code]
        assert [v for k, v in pairs if k == "state"] == [state]
        assert all(c in string.ascii_letters + string.digits + "-_" for c in code + state)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


OPERATOR, OTHER = "session-of-the-operator", "session-of-someone-else"


def test_a_state_is_good_once():
    states = States()
    state = states.issue(OPERATOR)
    assert len(state) >= 40 and states.valid(state, OPERATOR)
    assert states.take(state, OPERATOR) is True
    assert states.take(state, OPERATOR) is False and not states.valid(state, OPERATOR)


def test_a_state_is_good_only_in_the_session_it_was_handed_to():
    states = States()
    state = states.issue(OPERATOR)
    assert not states.valid(state, OTHER) and states.take(state, OTHER) is False
    assert states.take(state, OPERATOR) is True  # the failed attempt did not spend it


def test_states_are_unguessable_and_distinct():
    states = States(per_session=1000, limit=1000)
    issued = {states.issue(OPERATOR) for _ in range(500)}
    assert len(issued) == 500
    assert not states.take("A" * 43, OPERATOR)


def test_a_state_expires_after_an_hour():
    clock = Clock()
    states = States(clock=clock)
    state = states.issue(OPERATOR)
    clock.now += 3599
    assert states.valid(state, OPERATOR)
    clock.now += 2
    assert not states.take(state, OPERATOR)


def test_a_session_keeps_only_its_newest_states():
    states = States(per_session=3, limit=10)
    first, *rest = [states.issue(OPERATOR) for _ in range(4)]
    assert not states.valid(first, OPERATOR)
    assert all(states.valid(state, OPERATOR) for state in rest)


def test_other_sessions_do_not_push_out_a_sessions_states():
    states = States(per_session=3, limit=10)
    mine = states.issue(OPERATOR)
    for _ in range(50):
        states.issue(OTHER)
    assert states.valid(mine, OPERATOR)


def test_all_sessions_together_keep_only_the_newest_states():
    states = States(per_session=3, limit=4)
    first = states.issue(OPERATOR)
    later = [states.issue(f"session-{n}") for n in range(4)]
    assert not states.valid(first, OPERATOR)
    assert all(states.valid(state, f"session-{n}") for n, state in enumerate(later))


def test_after_registering_no_state_is_good():
    states = States()
    state = states.issue(OPERATOR)
    states.close()
    assert not states.take(state, OPERATOR)
    assert not states.take(states.issue(OPERATOR), OPERATOR)


def test_the_setup_token_opens_one_session_once():
    access = OperatorAccess("the-token-in-the-log")
    assert access.session_of(None) is None and access.session_of("anything") is None
    cookie = access.exchange("the-token-in-the-log")
    assert cookie is not None and cookie != "the-token-in-the-log" and len(cookie) >= 40
    session = access.session_of(cookie)
    assert session is not None and cookie not in session  # only a digest is kept
    assert access.exchange("the-token-in-the-log") is None  # spent: a copy is worth nothing
    assert access.session_of(cookie) == session


@pytest.mark.parametrize("token", ["", "the-token-in-the-lo", "the-token-in-the-log ",
                                   "THE-TOKEN-IN-THE-LOG", "the-token-in-the-log\x00", "x" * 101,
                                   "the-token-in-the-log" * 6])
def test_only_the_setup_token_opens_a_session(token):
    access = OperatorAccess("the-token-in-the-log")
    assert access.exchange(token) is None
    assert access.exchange("the-token-in-the-log") is not None  # wrong ones do not spend it


@pytest.mark.parametrize("cookie", [None, "", "x", "x" * 1000, "\udcff"])
def test_a_session_cookie_that_stands_for_nothing(cookie):
    access = OperatorAccess("token")
    access.exchange("token")
    assert access.session_of(cookie) is None


def test_only_the_operators_browser_sees_where_the_settings_went():
    access = OperatorAccess("token")
    cookie = access.exchange("token")
    done = JustRegistered(Registration(1, "a", "a", "https://github.com/apps/a", "", ""),
                          Path("/k.pem"), Path("/.env"), operator_session=access.session_of(cookie))
    assert done.shown_to(cookie)
    assert not done.shown_to(None) and not done.shown_to("") and not done.shown_to("other")
    assert "operator_session" not in repr(done) or done.operator_session not in repr(done)
    nobody = JustRegistered(done.registration, done.key_path, done.dotenv_path)
    assert not nobody.shown_to(cookie) and not nobody.shown_to("")


PUBLIC = "https://async-code.example.com"


@pytest.mark.parametrize(("header", "name"), [
    ("127.0.0.1", "127.0.0.1"), ("127.0.0.1:8080", "127.0.0.1"), ("LocalHost:1", "localhost"),
    ("[::1]", "::1"), ("[::1]:8080", "::1"), ("[0:0:0:0:0:0:0:1]:80", "::1"),
    ("async-code.example.com", "async-code.example.com"), ("my_host:8080", "my_host"),
    ("", None), (":8080", None), ("::1", None), ("[::1", None), ("[nope]:80", None),
    ("127.0.0.1:", None), ("127.0.0.1:123456", None), ("127.0.0.1:x", None),
    ("user@127.0.0.1", None), ("127.0.0.1 ", None), ("127.0.0.1/x", None),
    ("127.0.0.1\r\nX: y", None), ("l\u043ecalhost", None),
])
def test_host_names(header, name):
    assert host_name(header) == name


@pytest.mark.parametrize(("public_url", "listen", "expected"), [
    ("", "127.0.0.1", {"127.0.0.1", "::1", "localhost"}),
    ("", "0.0.0.0", {"127.0.0.1", "::1", "localhost"}),
    ("", "::", {"127.0.0.1", "::1", "localhost"}),
    ("", "", {"127.0.0.1", "::1", "localhost"}),
    ("", "192.168.1.5", {"127.0.0.1", "::1", "localhost", "192.168.1.5"}),
    ("", "fe80:0::1", {"127.0.0.1", "::1", "localhost", "fe80::1"}),
    ("", "My-Host", {"127.0.0.1", "::1", "localhost", "my-host"}),
    (PUBLIC + "/", "0.0.0.0", {"127.0.0.1", "::1", "localhost", "async-code.example.com"}),
    ("https://AC.example.com:8443", "", {"127.0.0.1", "::1", "localhost", "ac.example.com"}),
    ("https://[2001:db8::0:1]", "", {"127.0.0.1", "::1", "localhost", "2001:db8::1"}),
])
def test_the_names_setup_mode_answers_to(public_url, listen, expected):
    assert setup_hosts(public_url, listen) == expected


@pytest.mark.parametrize(("header", "public_url", "allowed"), [
    ("127.0.0.1:8080", "", True), ("localhost:8080", "", True), ("[::1]:8080", "", True),
    ("localhost", PUBLIC, True), ("async-code.example.com", PUBLIC, True),
    ("async-code.example.com:443", PUBLIC, True),
    ("async-code.example.com", "", False),  # no public URL: not a name of this service
    ("rebind.attacker.example:8080", "", False), ("attacker.example", PUBLIC, False),
    ("async-code.example.com.attacker.example", PUBLIC, False),
    ("127.0.0.2:8080", "", False), ("0.0.0.0:8080", "", False), ("localhost.:8080", "", False),
    ("app.localhost:8080", "", False), ("2130706433:8080", "", False), ("", "", False),
])
def test_which_host_headers_setup_mode_answers(header, public_url, allowed):
    assert host_allowed(header, setup_hosts(public_url, "127.0.0.1")) == allowed


LOOPBACK = setup_hosts("", "127.0.0.1")


@pytest.mark.parametrize(("public_url", "scheme", "header", "expected"), [
    ("", "http", "127.0.0.1:8080", "http://127.0.0.1:8080"),
    ("", "http", "localhost:8080", "http://localhost:8080"),
    ("", "http", "[::1]:8080", "http://[::1]:8080"),
    ("", "http", "attacker.example", None),
    ("", "http", "attacker.example:8080", None),
    ("", "http", "127.0.0.1@attacker.example", None),
    ("", "http", "", None),
    ("", "javascript", "127.0.0.1", None),
    (PUBLIC + "/", "http", "127.0.0.1:8080", PUBLIC),
    (PUBLIC, "http", "attacker.example", PUBLIC),  # never the Host's name
])
def test_where_github_is_sent_never_comes_from_another_host(public_url, scheme, header, expected):
    assert service_url(public_url, scheme, header, setup_hosts(public_url, "127.0.0.1")) == expected


@pytest.mark.parametrize(("scheme", "header", "public_url", "secure"), [
    ("http", "127.0.0.1:8080", "", False),
    ("https", "127.0.0.1:8080", "", True),
    ("http", "async-code.example.com", PUBLIC, True),  # through the proxy
    ("http", "Async-Code.example.com:443", PUBLIC, True),
    ("http", "127.0.0.1:8080", PUBLIC, False),  # directly, around the proxy
    ("http", "async-code.example.com", "http://async-code.example.com", False),
    ("http", "other.example", PUBLIC, False),
])
def test_the_cookie_is_secure_when_the_page_was_opened_over_https(scheme, header, public_url,
                                                                   secure):
    assert opened_over_https(scheme, header, public_url) == secure


def good_answer(pem: str) -> dict:
    return {"id": 4242, "slug": "async-code", "node_id": "A_1", "name": "async-code",
            "owner": {"login": "alice"}, "html_url": "https://github.com/apps/async-code",
            "webhook_secret": "e340154128314309424b7c8e90325147d99fdafa", "pem": pem,
            "client_id": "Iv23.x", "client_secret": "1726be16"}


def test_a_complete_answer(pem):
    registration = registration_from(good_answer(pem))
    assert registration == Registration(app_id=4242, slug="async-code", name="async-code",
                                        html_url="https://github.com/apps/async-code", pem=pem,
                                        webhook_secret="e340154128314309424b7c8e90325147d99fdafa")
    assert pem not in repr(registration) and "e3401541" not in repr(registration)
    assert "1726be16" not in str(settings_written(registration, Path("/k.pem")))


PUBLIC_KEY = ("-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n"
              "-----END PUBLIC KEY-----\n")


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("id", None, "no App id"), ("id", "4242", "no App id"), ("id", True, "no App id"),
    ("id", 0, "no App id"), ("id", 2**53, "no App id"), ("id", 1.0, "no App id"),
    ("slug", None, "no valid App slug"), ("slug", "", "no valid App slug"),
    ("slug", "-x", "no valid App slug"), ("slug", "a b", "no valid App slug"),
    ("slug", "a/../b", "no valid App slug"), ("slug", "x" * 101, "no valid App slug"),
    ("name", "", "no valid App name"), ("name", " ", "no valid App name"),
    ("name", "a\nGITHUB_APP_ID=1", "no valid App name"), ("name", 5, "no valid App name"),
    ("html_url", None, "html_url"), ("html_url", "javascript:alert(1)", "html_url"),
    ("html_url", "https://", "html_url"), ("html_url", "https://a b", "html_url"),
    ("webhook_secret", None, "no webhook secret"), ("webhook_secret", "", "no webhook secret"),
    ("webhook_secret", " padded ", "no webhook secret"),
    ("webhook_secret", "a\nb", "no webhook secret"),
    ("webhook_secret", "x" * 1025, "no webhook secret"), ("webhook_secret", 12, "no webhook secret"),
    ("pem", None, "no usable private key"), ("pem", "", "no usable private key"),
    ("pem", "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
     "no usable private key"),
    ("pem", PUBLIC_KEY, "no usable private key"),
    ("pem", "x" * 40000, "no usable private key"),
])
def test_each_missing_or_wrong_field_is_named(pem, field, value, expected):
    with pytest.raises(ConversionProblem, match=expected):
        registration_from({**good_answer(pem), field: value})


def _pem_of(key, encryption=None) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             encryption or serialization.NoEncryption()).decode("ascii")


@pytest.mark.parametrize(("make_key", "encryption"), [
    (lambda: rsa.generate_private_key(65537, 1024), None),
    (lambda: rsa.generate_private_key(65537, 2047), None),
    (lambda: ec.generate_private_key(ec.SECP256R1()), None),
    (lambda: ec.generate_private_key(ec.SECP384R1()), None),
    (ed25519.Ed25519PrivateKey.generate, None),
    (ed448.Ed448PrivateKey.generate, None),
    (lambda: dsa.generate_private_key(2048), None),
    (lambda: rsa.generate_private_key(65537, 2048),
     serialization.BestAvailableEncryption(b"passphrase")),
], ids=["rsa-1024", "rsa-2047", "p256", "p384", "ed25519", "ed448", "dsa", "rsa-encrypted"])
def test_only_an_rsa_key_of_2048_bits_or_more_is_taken(pem, make_key, encryption):
    """GitHub Apps sign with RS256: any other key loads, but no call to GitHub would work."""
    with pytest.raises(ConversionProblem, match="RSA of at least 2048 bits"):
        registration_from({**good_answer(pem), "pem": _pem_of(make_key(), encryption)})


@pytest.mark.parametrize("bits", [2048, 3072])
def test_rsa_keys_in_either_pem_form_are_taken(pem, bits):
    key = rsa.generate_private_key(65537, bits)
    for text in (_pem_of(key), key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption()).decode("ascii")):
        assert registration_from({**good_answer(pem), "pem": text}).pem == text


@pytest.mark.parametrize(("api_url", "html_url", "taken"), [
    ("https://api.github.com", "https://github.com/apps/async-code", True),
    ("https://api.github.com", "https://GitHub.com/apps/async-code", True),
    ("https://api.github.com/", "https://github.com/apps/async-code/", True),
    ("https://api.github.com", "https://github.com.evil.example/apps/async-code", False),
    ("https://api.github.com", "https://evil.example/github.com/apps/async-code", False),
    ("https://api.github.com", "https://api.github.com/apps/async-code", False),
    ("https://api.github.com", "https://gist.github.com/apps/async-code", False),
    ("https://api.github.com", "http://github.com/apps/async-code", False),
    ("https://api.github.com", "https://github.com:8443/apps/async-code", False),
    ("https://api.github.com", "https://github.com:x/apps/async-code", False),
    ("https://ghe.example.com/api/v3", "https://ghe.example.com/github-apps/ac", True),
    ("https://ghe.example.com/api/v3", "https://github.com/apps/ac", False),
    ("https://api.octo.ghe.com", "https://octo.ghe.com/apps/ac", True),
    ("https://api.octo.ghe.com", "https://other.ghe.com/apps/ac", False),
    ("http://127.0.0.1:8765", "http://127.0.0.1:8765/apps/ac", True),
    ("http://127.0.0.1:8765", "http://127.0.0.1:8766/apps/ac", False),
])
def test_the_apps_page_is_on_the_githubs_web_host(pem, api_url, html_url, taken):
    """The install link is made from html_url: it must not lead to a look-alike site."""
    answer = {**good_answer(pem), "html_url": html_url}
    if taken:
        assert registration_from(answer, api_url).html_url == html_url.rstrip("/")
    else:
        with pytest.raises(ConversionProblem, match="html_url"):
            registration_from(answer, api_url)


@pytest.mark.parametrize("answer", [None, [], "x", 1, {"message": "Not Found"}])
def test_an_answer_that_is_no_app(answer):
    with pytest.raises(ConversionProblem):
        registration_from(answer)


def _random_json(rng: random.Random, depth: int = 0):
    kinds = ["null", "bool", "int", "float", "str"] + (["list", "dict"] if depth < 3 else [])
    kind = rng.choice(kinds)
    if kind == "null":
        return None
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "int":
        return rng.choice([0, -1, 1, 4242, 2**63, rng.randint(-10**6, 10**6)])
    if kind == "float":
        return rng.choice([0.5, -1e300, float(rng.randint(0, 9))])
    if kind == "str":
        alphabet = string.printable + "\u00e9\u202e\x00"
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
    if kind == "list":
        return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(["id", "slug", "pem", "x"]): _random_json(rng, depth + 1)
            for _ in range(rng.randint(0, 3))}


def test_answers_of_any_shape_are_refused_with_a_reason_or_read_exactly(pem):
    rng = random.Random(2024)
    good = good_answer(pem)
    for _ in range(500):  # each accepted answer's key is loaded, which takes a while
        answer = dict(good)
        for field in rng.sample(list(good), rng.randint(1, 3)):
            if rng.random() < 0.3:
                del answer[field]
            else:
                answer[field] = _random_json(rng)
        if rng.random() < 0.05:
            answer = _random_json(rng)
        try:
            registration = registration_from(answer)
        except ConversionProblem:
            continue
        # Whatever was accepted is what was sent, and usable.
        assert registration.app_id == answer["id"] and registration.pem == answer["pem"]
        assert registration.webhook_secret == answer["webhook_secret"]


@pytest.mark.parametrize(("text", "shown"), [
    ("GitHub refused the registration code (422: Validation Failed)",
     "GitHub refused the registration code (422: Validation Failed)"),
    ("a\nb", "a\\nb"), ("a\r\n2099-01-01 INFO forged", "a\\r\\n2099-01-01 INFO forged"),
    ("\x1b[31mred", "\\x1b[31mred"), ("\u2028", "\\u2028"), ("\u202eevil", "\\u202eevil"),
    ("tab\there", "tab\\there"), ("\x00", "\\x00"), ("ünïcode ✓", "ünïcode ✓"),
    ("back\\slash 'quoted'", "back\\slash 'quoted'"), ("x" * 600, "x" * 500 + "…"),
])
def test_text_from_github_is_shown_on_one_line(text, shown):
    assert one_line(text) == shown
    assert one_line(text).isprintable()


@pytest.mark.parametrize(("encoding", "length", "problem"), [
    (None, None, None), (None, "1000", None), ("identity", "262144", None), ("", "0", None),
    (None, " 12 ", None),
    (None, "262145", "larger than 256 KiB"), (None, "9" * 30, "no number"),
    (None, "-1", "no number"), (None, "12, 12", "no number"), (None, "\u00b2", "no number"),
    ("gzip", "10", "compressed (gzip)"), ("br", None, "compressed (br)"),
    ("GZIP", None, "compressed (gzip)"), ("x\ny", None, "compressed (x\\ny)"),
])
def test_which_answers_are_read(encoding, length, problem):
    found = answer_problem(encoding, length, 256 * 1024)
    assert found == problem or (problem and problem in found), found


def _transport(handler) -> CappedTransport:
    return CappedTransport(1024, inner=httpx.MockTransport(handler))


def test_an_answer_of_no_stated_length_is_read_up_to_the_limit():
    def endless(request):
        assert request.headers["Accept-Encoding"] == "identity"
        return httpx.Response(201, content=(b"x" * 100 for _ in range(100)))

    with httpx.Client(transport=_transport(endless)) as client:
        with pytest.raises(AnswerRefused, match="larger than 1 KiB"):
            client.post("https://api.github.com/app-manifests/c/conversions")

    def small(request):
        return httpx.Response(201, content=(b"{}" for _ in range(1)))

    with httpx.Client(transport=_transport(small)) as client:
        assert client.post("https://api.github.com/x").json() == {}


@pytest.mark.parametrize(("answer", "expected"), [
    (lambda: httpx.Response(201, content=b"x" * 2048), "larger than 1 KiB, so it was not read"),
    (lambda: httpx.Response(201, content=gzip.compress(b"{}"),
                            headers={"Content-Encoding": "gzip"}), "compressed (gzip)"),
    (lambda: httpx.Response(201, content=(b"x" * 512 for _ in range(3))), "larger than 1 KiB"),
    (lambda: httpx.Response(201, content=b"not json"), "not JSON"),
    (lambda: httpx.Response(422, json={"message": "Validation Failed"}),
     "GitHub refused the registration code (422: Validation Failed)"),
    (lambda: httpx.Response(404, content=b"x" * 4096), "larger than 1 KiB"),
], ids=["long", "compressed", "endless", "not-json", "refused", "long-refusal"])
def test_what_the_conversion_says_when_it_gets_no_app(answer, expected):
    with pytest.raises(ConversionFailed, match=re.escape(expected)):
        convert_manifest_code("https://api.github.com", "code",
                              transport=_transport(lambda request: answer()))


def test_the_conversion_asks_github_and_returns_its_answer():
    asked = []

    def github(request):
        asked.append((request.method, request.url.path, "Authorization" in request.headers))
        return httpx.Response(201, json={"id": 1})

    assert convert_manifest_code("https://ghe.example.com/api/v3", "abc",
                                 transport=_transport(github)) == {"id": 1}
    assert asked == [("POST", "/api/v3/app-manifests/abc/conversions", False)]
