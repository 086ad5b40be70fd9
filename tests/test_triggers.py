import pytest

from app.triggers import find_instruction, is_bot

SLUG = "async-code"

ADDRESSED = [
    pytest.param("@async-code add retries", "add retries", id="mention-then-instruction"),
    pytest.param("@async-code", "", id="bare-mention"),
    pytest.param("@async-code   \n\n", "", id="bare-mention-trailing-blank-lines"),
    pytest.param("@async-code:", "", id="only-colon-after-mention"),
    pytest.param("@async-code ,", "", id="only-comma-after-mention"),
    pytest.param("@async-code: add retries", "add retries", id="colon-separator"),
    pytest.param("@async-code, add retries", "add retries", id="comma-separator"),
    pytest.param("@async-code:add retries", "add retries", id="colon-without-space"),
    pytest.param("@async-code\tadd retries", "add retries", id="tab-after-mention"),
    pytest.param("@Async-CODE add retries", "add retries", id="mention-case-insensitive"),
    pytest.param("   @async-code add retries", "add retries", id="three-space-indent"),
    pytest.param("@async-code add retries  \n", "add retries", id="trailing-whitespace-stripped"),
    pytest.param(
        "@async-code add retries\nto the fetch client\n\n- with backoff",
        "add retries\nto the fetch client\n\n- with backoff",
        id="multi-line-instruction",
    ),
    pytest.param(
        "@async-code\n    indented detail\nmore",
        "    indented detail\nmore",
        id="bare-mention-line-then-instruction-below-keeps-indent",
    ),
    pytest.param(
        "@async-code fix this:\n```python\ndef f():\n    pass\n```\nthanks",
        "fix this:\n```python\ndef f():\n    pass\n```\nthanks",
        id="code-block-after-trigger-is-part-of-instruction",
    ),
    pytest.param(
        "Some context first.\n\n@async-code add retries",
        "add retries",
        id="trigger-after-prose",
    ),
    pytest.param(
        "thanks\n@async-code add retries",
        "add retries",
        id="trigger-on-line-right-after-prose",
    ),
    pytest.param(
        "@async-code first\n@async-code second",
        "first\n@async-code second",
        id="first-trigger-wins",
    ),
    pytest.param(
        "@async-code add retries\r\nwith backoff\r\n",
        "add retries\nwith backoff",
        id="windows-line-endings",
    ),
    pytest.param(
        "@async-code add retries\rwith backoff",
        "add retries\nwith backoff",
        id="old-mac-line-endings",
    ),
    pytest.param(
        "<!-- template hint -->\n@async-code add retries",
        "add retries",
        id="trigger-after-one-line-html-comment",
    ),
    pytest.param(
        "> @async-code quoted\n\n@async-code add retries",
        "add retries",
        id="trigger-after-quote-block",
    ),
    pytest.param(
        "```python\n@async-code in code\n```\n@async-code add retries",
        "add retries",
        id="trigger-after-fence-with-language",
    ),
    pytest.param(
        "~~~\n@async-code in code\n~~~\n@async-code add retries",
        "add retries",
        id="trigger-after-tilde-fence",
    ),
    pytest.param(
        "````\n```\n@async-code in code\n```\n````\n@async-code add retries",
        "add retries",
        id="trigger-after-nested-fence",
    ),
    pytest.param(
        "<!--\n@async-code hidden\n-->\n@async-code add retries",
        "add retries",
        id="trigger-after-html-comment",
    ),
    pytest.param(
        "Type `<!--` to start a comment.\n@async-code add retries",
        "add retries",
        id="comment-marker-in-code-span-opens-nothing",
    ),
    pytest.param(
        "```@async-code inline```\n@async-code add retries",
        "add retries",
        id="backticks-in-info-string-are-inline-code-not-a-fence",
    ),
    pytest.param(
        "```html\n<!--\n```\n@async-code add retries",
        "add retries",
        id="comment-marker-inside-fence-is-code",
    ),
    pytest.param(
        "@async-code add retries <!-- note -->",
        "add retries <!-- note -->",
        id="comment-on-trigger-line-kept-verbatim",
    ),
]

NOT_ADDRESSED = [
    pytest.param("", id="empty-comment"),
    pytest.param("Looks good to me", id="no-mention"),
    pytest.param("thanks @async-code", id="mention-mid-sentence"),
    pytest.param("cc @async-code please", id="cc-mention"),
    pytest.param("mail me@async-code.dev", id="email-address"),
    pytest.param("me@async-code.dev", id="email-address-at-line-start"),
    pytest.param("@async-codex add retries", id="longer-login"),
    pytest.param("@async-code-bot add retries", id="hyphenated-longer-login"),
    pytest.param("@async-code.io add retries", id="domain"),
    pytest.param("@async-code/team add retries", id="team"),
    pytest.param("@async-code_x add retries", id="underscore-continues-name"),
    pytest.param("@async-code! add retries", id="other-punctuation-after-mention"),
    pytest.param("    @async-code add retries", id="indented-code-four-spaces"),
    pytest.param("\t@async-code add retries", id="indented-code-tab"),
    pytest.param("`@async-code add retries`", id="inline-code"),
    pytest.param("> @async-code add retries", id="quoted"),
    pytest.param("  > @async-code add retries", id="quoted-indented"),
    pytest.param(">> @async-code add retries", id="nested-quote"),
    pytest.param("> earlier words\n@async-code add retries", id="lazy-quote-continuation"),
    pytest.param("```\n@async-code add retries\n```", id="backtick-fence"),
    pytest.param("```python\n@async-code add retries\n```", id="fence-with-language"),
    pytest.param("~~~\n@async-code add retries\n~~~", id="tilde-fence"),
    pytest.param("   ```\n@async-code add retries\n   ```", id="indented-fence"),
    pytest.param("```\n@async-code add retries", id="unclosed-fence-runs-to-end"),
    pytest.param(
        "````\n```\n@async-code add retries\n````", id="shorter-fence-does-not-close"
    ),
    pytest.param("```\n~~~\n@async-code add retries\n```", id="other-fence-char-does-not-close"),
    pytest.param(
        "```\n``` not a close\n@async-code add retries", id="close-with-text-is-not-close"
    ),
    pytest.param("<!-- @async-code add retries -->", id="html-comment-one-line"),
    pytest.param("<!--\n@async-code add retries\n-->", id="html-comment-spanning-lines"),
    pytest.param(
        "text <!-- starts here\n@async-code add retries\n-->", id="html-comment-opened-mid-line"
    ),
    pytest.param("<!-- never closed\n\n@async-code add retries", id="unclosed-html-comment"),
    pytest.param("<!-- a --> <!-- b\n@async-code add retries\n-->", id="second-comment-on-line"),
    pytest.param("@asynccode add retries", id="similar-login"),
]


@pytest.mark.parametrize(("body", "instruction"), ADDRESSED)
def test_comment_addressing_app_gives_instruction(body, instruction):
    assert find_instruction(body, SLUG) == instruction


@pytest.mark.parametrize("body", NOT_ADDRESSED)
def test_comment_not_addressing_app_gives_none(body):
    assert find_instruction(body, SLUG) is None


@pytest.mark.parametrize(
    ("body", "instruction"),
    [
        pytest.param("@my-bot add retries", "add retries", id="own-slug"),
        pytest.param("@MY-BOT: add retries", "add retries", id="own-slug-case-insensitive"),
        pytest.param("@async-code add retries", None, id="default-slug-is-someone-else"),
        pytest.param("@my-bots add retries", None, id="longer-login"),
        pytest.param("@my.bot add retries", None, id="slug-dot-is-literal"),
    ],
)
def test_slug_decides_who_is_addressed(body, instruction):
    assert find_instruction(body, "my-bot") == instruction


def test_empty_slug_is_refused():
    with pytest.raises(ValueError, match="slug"):
        find_instruction("@ add retries", "")


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        pytest.param({"login": "octocat", "type": "User"}, False, id="person"),
        pytest.param({"login": "dependabot[bot]", "type": "Bot"}, True, id="bot-type-and-suffix"),
        pytest.param({"login": "some-app", "type": "Bot"}, True, id="bot-type"),
        pytest.param({"login": "async-code[bot]"}, True, id="bot-suffix-without-type"),
        pytest.param({"login": "robot", "type": "User"}, False, id="bot-in-name-only"),
        pytest.param({"login": None, "type": "User"}, False, id="missing-login"),
        pytest.param({}, False, id="empty-payload"),
    ],
)
def test_is_bot(user, expected):
    assert is_bot(user) is expected
