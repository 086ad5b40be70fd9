import re

import pytest

from runner.text import GITHUB_BODY_LIMIT, fit_body, github_web_host, neutralise, short_title
from tests.github_rendering import findings, render

Z = "\u200b"  # zero-width space

NEUTRALISE_CASES = [
    pytest.param("@octocat please look", f"@{Z}octocat please look", id="mention-at-start"),
    pytest.param("thanks @octocat", f"thanks @{Z}octocat", id="mention-mid-line"),
    pytest.param("line one\n@octocat", f"line one\n@{Z}octocat", id="mention-at-line-start"),
    pytest.param("(@octocat)", f"(@{Z}octocat)", id="mention-in-parentheses"),
    pytest.param("ok,@octocat.", f"ok,@{Z}octocat.", id="mention-after-punctuation"),
    pytest.param("cc @a @b", f"cc @{Z}a @{Z}b", id="several-mentions"),
    pytest.param("@org/team-name", f"@{Z}org/team-name", id="team-mention"),
    pytest.param("**@octocat**", f"**@{Z}octocat**", id="mention-in-emphasis"),
    pytest.param("`@octocat`", f"`@{Z}octocat`", id="mention-in-inline-code-too"),
    pytest.param("é@octocat", f"é@{Z}octocat", id="non-ascii-letter-does-not-shield"),
    pytest.param("write to a@b.com", "write to a@b.com", id="email-untouched"),
    pytest.param("first.last+tag@example.org", "first.last+tag@example.org", id="email-with-dots"),
    pytest.param("npm i left-pad@1.3.0", "npm i left-pad@1.3.0", id="package-version-untouched"),
    pytest.param("icon@2x.png", "icon@2x.png", id="at-inside-word-untouched"),
    pytest.param("a lone @ sign", "a lone @ sign", id="bare-at-untouched"),
    pytest.param("@-dash", "@-dash", id="at-before-non-login-character"),
    pytest.param("@_x", f"@{Z}_x", id="underscore-may-be-emphasis-around-the-login"),
    pytest.param("see #12", "see #12", id="plain-reference-untouched"),
    pytest.param("Fixes #", "Fixes #", id="keyword-without-number-untouched"),
    pytest.param("Fixes #abc", "Fixes #abc", id="keyword-with-non-number-untouched"),
    pytest.param("this fixes the bug", "this fixes the bug", id="keyword-without-reference"),
    pytest.param("prefixes #12", "prefixes #12", id="keyword-inside-word-untouched"),
    pytest.param("Close #1", f"C{Z}lose #1", id="close"),
    pytest.param("closes #1", f"c{Z}loses #1", id="closes"),
    pytest.param("closed #1", f"c{Z}losed #1", id="closed"),
    pytest.param("fix #1", f"f{Z}ix #1", id="fix"),
    pytest.param("Fixes #12", f"F{Z}ixes #12", id="fixes"),
    pytest.param("fixed #1", f"f{Z}ixed #1", id="fixed"),
    pytest.param("resolve #1", f"r{Z}esolve #1", id="resolve"),
    pytest.param("Resolves #1", f"R{Z}esolves #1", id="resolves"),
    pytest.param("RESOLVED #1", f"R{Z}ESOLVED #1", id="resolved-upper-case"),
    pytest.param("Fixes: #12", f"F{Z}ixes: #12", id="keyword-with-colon"),
    pytest.param("fixes\t #12", f"f{Z}ixes\t #12", id="keyword-then-mixed-whitespace"),
    pytest.param("fixes octo/repo#12", f"f{Z}ixes octo/repo#12", id="cross-repo-reference"),
    pytest.param("fixes GH-12", f"f{Z}ixes GH-12", id="gh-reference"),
    pytest.param(
        "Closes https://github.com/octo/repo/issues/12",
        f"C{Z}loses https://github.com/octo/repo/issues/12",
        id="issue-url-reference",
    ),
    pytest.param(
        "Fixes #1, fixes #2.", f"F{Z}ixes #1, f{Z}ixes #2.", id="several-closing-references"
    ),
    pytest.param(
        "@octocat: this fixes #3",
        f"@{Z}octocat: this f{Z}ixes #3",
        id="mention-and-closing-reference",
    ),
    pytest.param("", "", id="empty"),
]


@pytest.mark.parametrize(("text", "expected"), NEUTRALISE_CASES)
def test_neutralise(text, expected):
    assert neutralise(text) == expected


@pytest.mark.parametrize(("text", "expected"), NEUTRALISE_CASES)
def test_neutralise_is_idempotent(text, expected):
    assert neutralise(neutralise(text)) == neutralise(text)


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        pytest.param("", 10, "", id="empty"),
        pytest.param("abcdefghij", 10, "abcdefghij", id="exactly-limit-unchanged"),
        pytest.param("abcdefghijk", 10, "abcdef[..]", id="limit-plus-one-cut-with-marker"),
        pytest.param("abcdefghijk", 4, "[..]", id="room-for-marker-only"),
        pytest.param("abcdefghijk", 3, "abc", id="marker-does-not-fit-hard-cut"),
        pytest.param("abcdefghijk", 0, "", id="zero-limit"),
        pytest.param("abcde\r\nfghij", 10, "abcde[..]", id="cut-never-splits-crlf"),
        pytest.param("abcdef\r\nghij", 10, "abcdef[..]", id="cut-right-before-crlf"),
    ],
)
def test_fit_body(text, limit, expected):
    assert fit_body(text, limit, marker="[..]") == expected


def test_fit_body_default_limit_and_marker():
    body = fit_body("x" * (GITHUB_BODY_LIMIT + 1))
    assert len(body) == GITHUB_BODY_LIMIT
    assert body.endswith("\n\n…(truncated)")


def test_fit_body_refuses_negative_limit():
    with pytest.raises(ValueError, match="limit"):
        fit_body("text", -1)


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        pytest.param("Add retries", 72, "Add retries", id="plain-line"),
        pytest.param("", 72, "", id="empty"),
        pytest.param(" \n\t\n", 72, "", id="only-whitespace"),
        pytest.param("\n\n  Add retries\nDetails", 72, "Add retries", id="first-non-empty-line"),
        pytest.param("## Add retries", 72, "Add retries", id="heading"),
        pytest.param("# Add retries ##", 72, "Add retries", id="heading-with-closing-marks"),
        pytest.param("#\n## \nAdd retries", 72, "Add retries", id="empty-headings-skipped"),
        pytest.param("#12 is flaky", 72, "#12 is flaky", id="issue-reference-is-not-a-heading"),
        pytest.param("- Add retries", 72, "Add retries", id="dash-bullet"),
        pytest.param("* Add retries", 72, "Add retries", id="star-bullet"),
        pytest.param("1. Add retries", 72, "Add retries", id="numbered-item"),
        pytest.param("Add   retries\tnow", 72, "Add retries now", id="whitespace-collapsed"),
        pytest.param("Add retries\r\nmore", 72, "Add retries", id="windows-line-endings"),
        pytest.param("Add retries to it", 17, "Add retries to it", id="exactly-limit"),
        pytest.param("Add retries to it", 16, "Add retries to…", id="cut-at-word-boundary"),
        pytest.param("Add retries now", 12, "Add retries…", id="cut-falls-on-boundary"),
        pytest.param("Supercalifragilistic", 10, "Supercali…", id="single-long-word-hard-cut"),
        pytest.param("Add retries", 1, "…", id="limit-one"),
    ],
)
def test_short_title(text, limit, expected):
    title = short_title(text, limit)
    assert title == expected
    assert len(title) <= limit


def test_short_title_default_limit():
    title = short_title("word " * 40)
    assert len(title) <= 72
    assert title.endswith("word…")


# Each case makes GitHub act when rendered as it is: a mention, a closing reference, an
# image, or a link away from github.com. Neutralised, it must render inert.
HOSTILE = [
    pytest.param("_@octocat_", id="mention-in-underscore-emphasis"),
    pytest.param("*@octocat*", id="mention-in-star-emphasis"),
    pytest.param("~~@octocat~~", id="mention-in-strikethrough"),
    pytest.param("&#64;octocat", id="decimal-reference-for-at"),
    pytest.param("&#x40;octocat", id="hex-reference-for-at"),
    pytest.param("&#X40;octocat", id="upper-case-hex-reference-for-at"),
    pytest.param("&#000064;octocat", id="reference-with-leading-zeros"),
    pytest.param("&commat;octocat", id="named-reference-for-at"),
    pytest.param("@&#111;ctocat", id="reference-for-login-letter"),
    pytest.param("\\@octocat", id="escaped-at"),
    pytest.param("@**octocat**", id="at-split-from-login-by-emphasis"),
    pytest.param("@<b></b>octocat", id="at-split-from-login-by-html"),
    pytest.param("@<!-- -->octocat", id="at-split-from-login-by-comment"),
    pytest.param("@\u200doctocat", id="zero-width-joiner-after-at"),
    pytest.param("@\u2060octocat", id="word-joiner-after-at"),
    pytest.param("@\u00adoctocat", id="soft-hyphen-after-at"),
    pytest.param("\uff20octocat", id="fullwidth-at"),
    pytest.param("a<b></b>@octocat", id="tag-before-at-separates-it-from-the-word"),
    pytest.param("<div>\n&#64octocat\n</div>", id="reference-without-semicolon-in-html-block"),
    pytest.param("| a | b |\n|---|---|\n| x |@octocat|", id="mention-in-table-cell"),
    pytest.param("[@octocat](https://github.com/octocat)", id="mention-as-link-text"),
    pytest.param("**Fixes** #1", id="keyword-in-strong-emphasis"),
    pytest.param("fixes <b></b>#1", id="empty-tag-between-keyword-and-reference"),
    pytest.param("fix<b></b>es #1", id="tag-inside-keyword"),
    pytest.param("fix<!-- -->es #1", id="comment-inside-keyword"),
    pytest.param("F*ix*es #1", id="emphasis-inside-keyword"),
    pytest.param("&#102;ixes #1", id="decimal-reference-for-keyword-letter"),
    pytest.param("fi&#x78;es #1", id="hex-reference-for-keyword-letter"),
    pytest.param("fixes&#32;#1", id="reference-for-the-space"),
    pytest.param("fixes&nbsp;#1", id="no-break-space-reference"),
    pytest.param("fixes\u00a0#1", id="no-break-space"),
    pytest.param("fixes &#35;1", id="reference-for-the-hash"),
    pytest.param("fixes \\#1", id="escaped-hash"),
    pytest.param("fixes #**1**", id="emphasis-inside-reference"),
    pytest.param("<ins>fixes</ins> #1", id="keyword-in-ins"),
    pytest.param("<del>closes</del> #1", id="keyword-in-del"),
    pytest.param("fixes `#1`", id="reference-in-code-span"),
    pytest.param("`fixes #1`", id="keyword-in-code-span"),
    pytest.param("```\nfixes #1\n```", id="keyword-in-code-block"),
    pytest.param("fixes \n\n```info\n#1\n```", id="info-string-between"),
    pytest.param("fixes\n#1", id="soft-line-break"),
    pytest.param("fixes\\\n#1", id="hard-line-break"),
    pytest.param("fixes  \n#1", id="hard-line-break-by-spaces"),
    pytest.param("fixes\n\n#1", id="paragraph-break"),
    pytest.param("fixes\n- #1", id="reference-in-list-item"),
    pytest.param("fixes\n1. #1", id="reference-in-ordered-list-item"),
    pytest.param("> fixes\n> #1", id="quoted-over-two-lines"),
    pytest.param("| fixes |\n|---|\n| #1 |", id="table-rows"),
    pytest.param("fi\u200dxes #1", id="zero-width-joiner-inside-keyword"),
    pytest.param("fixes\u2060#1", id="word-joiner-before-reference"),
    pytest.param("clo\u017fes #1", id="long-s-in-keyword"),
    pytest.param("RESOLVED:#1", id="colon-no-space"),
    pytest.param("fixes [#1](https://github.com/o/r/issues/1)", id="reference-as-link-text"),
    pytest.param("fixes <https://github.com/o/r/issues/1>", id="issue-url-autolink"),
    pytest.param("fixes https://github.com/o/r/issues/1", id="issue-url"),
    pytest.param("fixes https://github.com/o/(r)/issues/1", id="issue-url-with-parentheses"),
    pytest.param("fixes o/**r**#1", id="emphasis-inside-cross-repo-reference"),
    pytest.param("fixes GH-1", id="gh-reference"),
    pytest.param("![x](https://evil.example/a.png)", id="image"),
    pytest.param("![x](/relative.png)", id="on-host-image-still-loads"),
    pytest.param('![x](https://evil.example/a.png "title")', id="image-with-title"),
    pytest.param("![x][ref]\n\n[ref]: https://evil.example/a.png", id="reference-image"),
    pytest.param("![ref]\n\n[ref]: https://evil.example/a.png", id="shortcut-reference-image"),
    pytest.param("[![x](https://evil.example/a.png)](https://evil.example)", id="image-in-link"),
    pytest.param("[x](https://evil.example/?q=secret)", id="link"),
    pytest.param('[x](https://evil.example "a title")', id="link-with-title"),
    pytest.param("[x](<https://evil.example/a b>)", id="link-in-angle-brackets"),
    pytest.param("[a [nested] b](https://evil.example)", id="nested-brackets"),
    pytest.param("[x](\nhttps://evil.example)", id="destination-on-next-line"),
    pytest.param("[x][r]\n\n[r]: https://evil.example", id="reference-link"),
    pytest.param("[r]\n\n[R]:\n  <https://evil.example>", id="reference-definition-on-two-lines"),
    pytest.param("[x](//evil.example/a)", id="network-path-reference"),
    pytest.param("[x](\\/\\/evil.example/a)", id="escaped-network-path"),
    pytest.param("[x](/&#47;evil.example/a)", id="network-path-by-reference"),
    pytest.param("[x](https\\://evil.example)", id="escaped-colon"),
    pytest.param("[x](https&colon;//evil.example)", id="colon-by-reference"),
    pytest.param("[x](&#104;ttps://evil.example)", id="scheme-letter-by-reference"),
    pytest.param("[x](HTTPS://EVIL.example)", id="upper-case-scheme"),
    pytest.param("[x](https:evil.example)", id="no-slashes"),
    pytest.param("[x](https://github.com@evil.example)", id="github-as-user-name"),
    pytest.param("[x](https://github.com.evil.example)", id="github-as-subdomain"),
    pytest.param("[x](https://github.com\\@evil.example)", id="escaped-at-in-authority"),
    pytest.param("[x](javascript:alert(1))", id="javascript-link"),
    pytest.param("[x](data:text/html,hi)", id="data-link"),
    pytest.param("<https://evil.example>", id="autolink"),
    pytest.param("<ftp://evil.example>", id="ftp-autolink"),
    pytest.param("<foo:bar>", id="autolink-any-scheme"),
    pytest.param("https://evil.example/x.png", id="bare-url"),
    pytest.param("(https://evil.example)", id="bare-url-in-parentheses"),
    pytest.param("*https://evil.example*", id="bare-url-in-emphasis"),
    pytest.param("HTTPS://evil.example", id="bare-upper-case-url"),
    pytest.param("www.evil.example", id="bare-www"),
    pytest.param("_www.evil.example_", id="bare-www-in-emphasis"),
    pytest.param("ftp://evil.example", id="bare-ftp"),
    pytest.param("xmpp:me@evil.example", id="bare-xmpp"),
    pytest.param("https://github.com.evil.example", id="bare-url-github-as-subdomain"),
    pytest.param('<img src="https://evil.example/a.png">', id="img-tag"),
    pytest.param("<IMG SRC=x>", id="upper-case-img-tag"),
    pytest.param("<img\nsrc=x>", id="img-tag-over-two-lines"),
    pytest.param("text <img src=x> text", id="inline-img-tag"),
    pytest.param("<div>\n<img/src=https://evil.example/a.png>\n</div>", id="img-with-slash-in-html-block"),
    pytest.param('<a href="https://evil.example">x</a>', id="a-tag"),
    pytest.param('<a href="&#104;ttps://evil.example">x</a>', id="a-tag-with-reference"),
    pytest.param('<picture><source srcset="https://evil.example/a.png"></picture>', id="picture"),
    pytest.param('<video src="https://evil.example/a.mp4"></video>', id="video"),
    pytest.param('<video poster="https://evil.example/a.png"></video>', id="video-poster"),
    pytest.param('<svg><image href="https://evil.example/a.png"/></svg>', id="svg-image"),
    pytest.param('<div background="https://evil.example/a.png">x</div>', id="background-attribute"),
    pytest.param('<details><summary>x</summary>\n\n![a](https://evil.example/a.png)\n</details>',
                 id="image-in-details"),
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_renders_inert(text):
    assert findings(render(text)), "the case must be hostile as written"
    neutralised = neutralise(text)
    assert findings(render(neutralised)) == []
    assert neutralise(neutralised) == neutralised


# Text GitHub does not act on stays exactly as written.
HARMLESS = [
    pytest.param("write to a@b.com or first.last+tag@example.org", id="emails"),
    pytest.param("npm i left-pad@1.3.0, see icon@2x.png", id="at-inside-words"),
    pytest.param("See https://github.com/o/r/pull/3.", id="link-to-github"),
    pytest.param("[docs](https://github.com/o/r/blob/main/README.md)", id="markdown-link-to-github"),
    pytest.param("<https://github.com/o/r>", id="autolink-to-github"),
    pytest.param("[docs](docs/usage.md) and [top](#top)", id="relative-links"),
    pytest.param("[mail](mailto:team@example.org)", id="mailto-link"),
    pytest.param("Note: the cache is cleared (default: on).", id="colons-in-prose"),
    pytest.param("if (i<n && x > 0) return;", id="comparison"),
    pytest.param("a < b, c<d, e <= f", id="less-than"),
    pytest.param("fixes the bug; see #12", id="keyword-away-from-reference"),
    pytest.param("the prefix #12", id="keyword-inside-word"),
    pytest.param("5 &lt; 6 &amp; 7 &gt; 6", id="character-references"),
    pytest.param("! [not an image]", id="bang-then-space"),
]


@pytest.mark.parametrize("text", HARMLESS)
def test_harmless_text_is_unchanged(text):
    assert findings(render(text)) == []
    assert neutralise(text) == text


@pytest.mark.parametrize(
    ("text", "host", "kept"),
    [
        pytest.param("[x](https://ghe.example.com/o/r)", "ghe.example.com", True, id="own-ghes-host"),
        pytest.param("[x](https://GHE.example.com/o/r)", "ghe.example.com", True, id="host-any-case"),
        pytest.param("[x](https://github.com/o/r)", "ghe.example.com", False, id="github-com-from-ghes"),
        pytest.param("[x](https://ghe.example.com/o/r)", "github.com", False, id="ghes-from-github-com"),
        pytest.param("https://ghe.example.com:8443/x", "ghe.example.com:8443", True, id="host-with-port"),
    ],
)
def test_links_are_kept_only_to_the_repositorys_own_host(text, host, kept):
    neutralised = neutralise(text, github_host=host)
    assert (neutralised == text) is kept
    assert findings(render(neutralised), github_host=host) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("```\n@pytest.fixture\n```", f"```\n@{Z}pytest.fixture\n```", id="code-block"),
        pytest.param("`&#64;x`", f"`&#64;{Z}x`", id="reference-in-code-only-gets-a-space"),
        pytest.param("`<img src=x>`", f"`<{Z}img src=x>`", id="tag-in-code"),
        pytest.param("`curl https://evil.example`", f"`curl https{Z}://evil.example`",
                     id="url-in-code"),
    ],
)
def test_code_only_gets_zero_width_spaces(text, expected):
    # Inside code GitHub acts on nothing, but a disagreement about where code ends would;
    # so code is treated like prose, and nothing but the zero-width space is added there.
    assert neutralise(text) == expected


def test_every_invisible_format_character_may_split_a_keyword():
    import sys
    import unicodedata

    invisible = [chr(c) for c in range(sys.maxunicode + 1)
                 if unicodedata.category(chr(c)) == "Cf" and c != 0x200B]
    missed = [f"U+{ord(c):04X}" for c in invisible if neutralise(f"fi{c}xes #1") == f"fi{c}xes #1"]
    assert missed == []


@pytest.mark.parametrize(
    ("api_url", "host"),
    [
        pytest.param("https://api.github.com", "github.com", id="github-com"),
        pytest.param("https://api.github.com/", "github.com", id="trailing-slash"),
        pytest.param("https://ghe.example.com/api/v3", "ghe.example.com", id="enterprise-server"),
        pytest.param("https://GHE.example.com/api/v3/", "ghe.example.com", id="upper-case-host"),
        pytest.param("https://api.acme.ghe.com", "acme.ghe.com", id="ghe-com"),
        pytest.param("http://127.0.0.1:8081", "127.0.0.1:8081", id="local-with-port"),
        pytest.param("https://api.example.com/github/api/v3", "api.example.com", id="api-host-with-path"),
    ],
)
def test_github_web_host(api_url, host):
    assert github_web_host(api_url) == host


def test_github_web_host_refuses_a_url_without_host():
    with pytest.raises(ValueError, match="host"):
        github_web_host("not a url")


# Pieces of hostile and ordinary Markdown; random sequences of them must render inert.
FRAGMENTS = [
    "@octocat", "&#64;", "&commat;", "\uff20", "@", "octocat", "fixes", "Fixes", "fix", "es",
    "closes", "resolved", "#1", "#", "1", "o/r#2", "GH-3", "https://github.com/o/r/issues/4",
    "&#102;", "&#35;", "&#32;", "&nbsp;", "&amp;", "\\", "\\#", "\\@", "*", "**", "_", "__",
    "~~", "`", "``", "<b>", "</b>", "<ins>", "</del>", "<!--", "-->", "<!-- -->", "<", ">",
    "[", "]", "(", ")", "](", "]:", "![", "!", "[x]", "[x]: ", "https://evil.example/a.png",
    "http://", "https:", "//", "evil.example", "www.", "www.evil.example", "github.com",
    "https://github.com/", "javascript:", "xmpp:", "mailto:", ":", "/", "\\/",
    "<img src=", "<img", " src=x>", "<a href=", "\"", "'", "=", "<https://", "<div>", "</div>",
    "\u200d", "\u2060", "\u00ad", "\u200b", " ", "  ", "\n", "\n\n", "\n> ", "\n- ", "\n1. ",
    "| ", " |", "\n|---|\n", "\n```\n", "\n    ", "-", ".", "a", "x",
    "</>", "<!x>", "<?", "?>", "&#64", "&#x40", "\u017f", "\u212a", "# ", "\n===\n", "\n***\n",
    "<https://github.com/o/r/issues/4>", "[r]: ", "[r]", "<a>", "</a>", "<img/", "src=",
    "https:evil.example", "\\\\", "|", "\n|-|\n", "<details>", "\n<div>\n", "<span title=\"",
    "\">", "&lt;", "<!---->", "\u00a0", "fixed", "close", "CLOSES", "Resolves", "\uff03", "\ufe6b",
    "#12", "issues/", "/issues/4", "gh-", "<b", "<x ", "\t", "\n```", "~~~\n", "`@x`", "\\`",
    "[a](", "<javascript:alert(1)>", "data:", "\\\\evil.example", "&#47;", "&#58;", "&colon;",
    "w&#119;w.", "xhttp://", "http", "://", "evil.example/x.png",
]


def _hostile_document(rng):
    return "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(1, 25)))


@pytest.mark.parametrize("seed", range(40))
def test_random_hostile_documents_render_inert(seed):
    import random

    rng = random.Random(seed)
    for _ in range(100):
        text = _hostile_document(rng)
        neutralised = neutralise(text)
        assert findings(render(neutralised)) == [], text
        assert neutralise(neutralised) == neutralised, text


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("a <b>bold</b> word", id="inline-tags"),
        pytest.param("<!-- @octocat is never shown -->", id="comment"),
        pytest.param("<details><summary>s</summary>x</details>", id="details"),
        pytest.param("Vec<u8> and List<String>", id="generics-would-render-as-tags"),
        pytest.param("<div>\n*x*\n</div>", id="html-block"),
        pytest.param("<div\nclass=x>", id="html-block-tag-over-two-lines"),
        pytest.param("- <div>", id="html-block-in-list-item"),
        pytest.param("<?php echo 1; ?>", id="processing-instruction"),
        pytest.param("<![CDATA[x]]> <!DOCTYPE html>", id="cdata-and-declaration"),
    ],
)
def test_raw_html_shows_as_text(text):
    rendered = render(neutralise(text))
    assert "&lt;" in rendered
    # Only the elements Markdown itself makes are left.
    assert re.findall(r"</?([A-Za-z][A-Za-z0-9]*)", rendered) == re.findall(
        r"</?([A-Za-z][A-Za-z0-9]*)", render(text.replace("<", "&lt;")))


ADVERSARIAL_SIZES = [
    pytest.param("<x " * 20_000, id="unclosed-tags"),
    pytest.param("http:" * 13_000, id="schemes-without-hosts"),
    pytest.param("fixes |" * 9_000, id="table-cells-without-rows"),
    pytest.param("fixes\n```" * 7_000, id="fence-openings"),
    pytest.param("f*i*x*" * 10_000, id="keyword-letters-in-noise"),
    pytest.param("fix:" * 16_000, id="keyword-colons"),
    pytest.param("a@b.c" * 13_000, id="addresses-without-spaces"),
    pytest.param("@a " * 21_000, id="mentions"),
]


@pytest.mark.parametrize("text", ADVERSARIAL_SIZES)
def test_neutralise_stays_fast_on_a_full_body_of_adversarial_text(text):
    import time

    started = time.monotonic()
    neutralise(text[:GITHUB_BODY_LIMIT])
    # Linear work takes well under a second; a quadratic search took minutes.
    assert time.monotonic() - started < 5
