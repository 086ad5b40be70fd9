"""Reading YAML a person wrote: YAML 1.2's plain values, and every surprise refused by line."""

from __future__ import annotations

import pytest

from app.strict_yaml import MAX_NESTING, YamlRefused, load_yaml

BILLION_LAUGHS = """\
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""
NO_ALIASES = "anchors and aliases (`&name`, `*name`) are not accepted; write the value out"


@pytest.mark.parametrize("text, expected", [
    ("", None),
    ("# nothing but a comment\n\n   \n", None),
    ("draft: true\nother: False\nthird: TRUE", {"draft": True, "other": False, "third": True}),
    # YAML 1.1 booleans are text, so a strict bool refuses them and `model: no` stays a name.
    ("draft: yes\nb: on\nc: off\nmodel: no\nd: y", {"draft": "yes", "b": "on", "c": "off",
                                                  "model": "no", "d": "y"}),
    ("turns: 017", {"turns": 17}),  # decimal, not octal
    ("turns: +5\nneg: -3\nzero: 00", {"turns": 5, "neg": -3, "zero": 0}),
    ("timeout: 1:30", {"timeout": "1:30"}),  # not sexagesimal 90
    ("a: 0x1F\nb: 0o17\nc: 1_000", {"a": "0x1F", "b": "0o17", "c": "1_000"}),
    ("usd: 2.5\nb: 1e3\nc: .5", {"usd": 2.5, "b": 1000.0, "c": 0.5}),
    ("usd: .inf\nb: .nan\nc: -.Inf", {"usd": ".inf", "b": ".nan", "c": "-.Inf"}),
    ("day: 2024-01-01", {"day": "2024-01-01"}),  # not a date
    ("a: ~\nb:\nc: null", {"a": None, "b": None, "c": None}),
    ("a: '1'\nb: \"true\"", {"a": "1", "b": "true"}),  # quoting keeps text text
    ("<<: {a: 1}", {"<<": {"a": 1}}),  # no merge keys: "<<" is an ordinary (and unknown) key
    ("\ufeffa: 1", {"a": 1}),
    ("- a\n- b", ["a", "b"]),
    ("setup: |\n  pip install -e .\n  make\n", {"setup": "pip install -e .\nmake\n"}),
    ("a: " + "9" * 31, {"a": float("9" * 31)}),  # too long for an int: a float, a type error later
    ("a: '@octocat'", {"a": "@octocat"}),
])
def test_plain_values_follow_yaml_1_2(text, expected):
    assert load_yaml(text) == expected


@pytest.mark.parametrize("text, line, column, reason, detail", [
    ("timeout: 1\nmax_turns: 2\ntimeout: 3", 3, 1, "the key {} appears twice; keep one", "timeout"),
    ("budget:\n  usd: 1\n  usd: 2", 3, 3, "the key {} appears twice; keep one", "usd"),
    ("a: &anchor 1", 1, 4, NO_ALIASES, None),
    (BILLION_LAUGHS, 1, 4, NO_ALIASES, None),
    ("a: !!binary aGk=", 1, 4, "explicit tags such as {} are not accepted; write the plain value",
     "tag:yaml.org,2002:binary"),
    ("a: !!set {x}", 1, 4, "explicit tags such as {} are not accepted; write the plain value",
     "tag:yaml.org,2002:set"),
    ("a: !!python/object:os.system x", 1, 4,
     "explicit tags such as {} are not accepted; write the plain value",
     "tag:yaml.org,2002:python/object:os.system"),
    ("a: ! x", 1, 4, "explicit tags such as {} are not accepted; write the plain value", "!"),
    ("1: x", 1, 1, "keys are names such as `timeout`, not {}", "1"),
    ("~: x", 1, 1, "keys are names such as `timeout`, not {}", "~"),
    ("? [a]\n: x", 1, 3, "keys are names such as `timeout`, not {}", "a list or a mapping"),
    ("a: " + "[" * (MAX_NESTING + 1) + "]" * (MAX_NESTING + 1), 1, 3 + MAX_NESTING,
     f"values are nested more than {MAX_NESTING} levels deep", None),
    ("timeout: 30m: x", 1, 13, "this is not valid YAML: {}", "mapping values are not allowed here"),
    ("a: [1, 2", 1, 9, "this is not valid YAML: {}",
     "while parsing a flow sequence, expected ',' or ']', but got '<stream end>'"),
    ("a: 1\n---\nb: 2", 2, 1, "this is not valid YAML: {}",
     "expected a single document in the stream, but found another document"),
    ("a: \x01", 1, 4, "YAML does not allow the character {}", "U+0001"),
])
def test_surprises_are_refused_with_their_line(text, line, column, reason, detail):
    with pytest.raises(YamlRefused) as refused:
        load_yaml(text)
    assert (refused.value.line, refused.value.column) == (line, column)
    assert (refused.value.reason, refused.value.detail) == (reason, detail)


def test_deep_nesting_is_refused_before_python_runs_out_of_stack():
    with pytest.raises(YamlRefused, match="nested more than"):
        load_yaml("[" * 50_000 + "]" * 50_000)


def test_the_message_quotes_the_detail_and_names_the_place():
    with pytest.raises(YamlRefused) as refused:
        load_yaml("a: 1\na: 2")
    assert str(refused.value) == "line 2, column 1: the key 'a' appears twice; keep one"
