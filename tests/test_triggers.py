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
    pytest.param(
        "- ```\n  @async-code in code\n  ```\n@async-code add retries",
        "add retries",
        id="trigger-after-list-item-fence",
    ),
    pytest.param(
        "1. ~~~\n   @async-code in code\n      ~~~\n@async-code add retries",
        "add retries",
        id="trigger-after-list-item-fence-closed-within-three-spaces-of-content",
    ),
    pytest.param(
        "- outer\n  - ```\n    @async-code in code\n    ```\n@async-code add retries",
        "add retries",
        id="trigger-after-nested-list-item-fence",
    ),
    pytest.param(
        "- ```\n  code\n\n@async-code add retries",
        "add retries",
        id="unindented-line-ends-list-item-and-its-fence",
    ),
    pytest.param(
        "2. ```\n  @async-code add retries",
        "add retries",
        id="line-left-of-ordered-item-content-ends-its-fence",
    ),
    pytest.param(
        "-\t```\n  @async-code add retries",
        "add retries",
        id="tab-after-list-marker-sets-content-column",
    ),
    pytest.param(
        "- ```\n  code\n```\n@async-code in code\n```\n@async-code add retries",
        "add retries",
        id="unindented-fence-after-list-item-fence-opens-a-new-one",
    ),
    pytest.param(
        "<pre>\n@async-code in pre\n</pre>\n@async-code add retries",
        "add retries",
        id="trigger-after-pre",
    ),
    pytest.param(
        "<pre>code</pre>\n@async-code add retries",
        "add retries",
        id="pre-closed-on-its-own-line",
    ),
    pytest.param(
        "<script>\n@async-code in script\n</script><!--\n@async-code hidden\n-->\n"
        "@async-code add retries",
        "add retries",
        id="comment-opened-after-raw-html-close",
    ),
    pytest.param(
        "<details><summary>Plan</summary>\n\n@async-code add retries\n\n</details>",
        "add retries\n\n</details>",
        id="details-content-is-markdown",
    ),
    pytest.param(
        "<codex>\n@async-code add retries",
        "add retries",
        id="other-tag-starting-with-code",
    ),
    pytest.param(
        "- > quoted\n\n@async-code add retries",
        "add retries",
        id="trigger-after-list-item-quote",
    ),
    pytest.param(
        "- first step\n  @async-code add retries",
        "add retries",
        id="trigger-on-list-item-continuation-line",
    ),
    pytest.param(
        "> earlier words\n```\n@async-code in code\n```\n@async-code add retries",
        "add retries",
        id="fence-after-quote-interrupts-it",
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
    pytest.param("- ```\n  @async-code rm stuff\n  ```", id="fence-in-list-item"),
    pytest.param("1. ```\n   @async-code rm stuff\n   ```", id="fence-in-ordered-list-item"),
    pytest.param("1) ```\n   @async-code rm stuff\n   ```", id="fence-in-paren-ordered-item"),
    pytest.param("* ~~~\n  @async-code rm stuff\n  ~~~", id="tilde-fence-in-list-item"),
    pytest.param("+  ```sh\n   @async-code rm stuff\n   ```", id="fence-in-item-wide-marker"),
    pytest.param(
        "- outer\n  - ```\n    @async-code rm stuff\n    ```", id="fence-in-nested-list-item"
    ),
    pytest.param("- 1. ```\n     @async-code rm stuff\n     ```", id="fence-in-two-markers-line"),
    pytest.param("- ```\n  code\n\n  @async-code rm stuff", id="blank-line-stays-in-item-fence"),
    pytest.param("- ```\n  @async-code rm stuff", id="unclosed-list-item-fence"),
    pytest.param(
        "- ```\n  ```` not a close\n  @async-code rm stuff", id="list-fence-close-with-text"
    ),
    pytest.param("- ```\n  ~~~\n  @async-code rm stuff\n  ```", id="list-fence-other-char"),
    pytest.param(
        "- ```\n  x\n      ```\n  @async-code rm stuff", id="list-fence-close-indented-too-far"
    ),
    pytest.param("<pre>\n@async-code rm stuff\n</pre>", id="pre-block"),
    pytest.param('<PRE class="x">\n@async-code rm stuff\n</Pre>', id="pre-case-insensitive"),
    pytest.param("<pre>@async-code rm stuff", id="mention-after-pre-tag"),
    pytest.param("<code>\n@async-code rm stuff\n</code>", id="code-block"),
    pytest.param("<code>\n\n@async-code rm stuff\n\n</code>", id="code-block-with-blank-lines"),
    pytest.param("<script>\n@async-code rm stuff\n</script>", id="script-block"),
    pytest.param("<style>\n@async-code rm stuff\n</style>", id="style-block"),
    pytest.param("<textarea>\n@async-code rm stuff\n</textarea>", id="textarea-block"),
    pytest.param("   <pre>\n@async-code rm stuff", id="unclosed-pre-runs-to-end"),
    pytest.param(
        "<pre>\n</code>\n@async-code rm stuff\n</pre>", id="other-close-tag-keeps-pre-open"
    ),
    pytest.param("- <pre>\n  @async-code rm stuff\n  </pre>", id="pre-in-list-item"),
    pytest.param("> earlier words\n<pre>\n\n@async-code rm stuff", id="pre-after-quote"),
    pytest.param("- > @async-code rm stuff", id="quote-in-list-item"),
    pytest.param("- > earlier words\n  @async-code rm stuff", id="list-item-quote-continued"),
    pytest.param(
        "- > earlier words\n@async-code rm stuff", id="list-item-quote-lazy-continuation"
    ),
    pytest.param("1. > earlier words\n   @async-code rm stuff", id="ordered-item-quote-continued"),
    pytest.param("- @async-code add retries", id="list-item-starting-with-mention"),
    pytest.param("1. @async-code add retries", id="ordered-item-starting-with-mention"),
    pytest.param(
        "> earlier words\n```\n\n@async-code rm stuff\n```", id="fence-after-quote-is-code"
    ),
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


@pytest.mark.parametrize(
    ("body", "slug", "instruction"),
    [
        pytest.param("@ASYNC-code add retries", "async-code", "add retries", id="ascii-upper-case"),
        pytest.param("@a\u017fync-code add retries", "async-code", None, id="long-s-is-not-s"),
        pytest.param("@\u212aube-bot add retries", "kube-bot", None, id="kelvin-sign-is-not-k"),
        pytest.param("@kube-bot add retries", "kube-bot", "add retries", id="plain-k"),
        pytest.param("@b\u0131t add retries", "bit", None, id="dotless-i-is-not-i"),
        pytest.param("@b\u0130t add retries", "bit", None, id="dotted-capital-i-is-not-i"),
        pytest.param("@\uff41sync-code add retries", "async-code", None, id="fullwidth-letter"),
        pytest.param("\uff20async-code add retries", "async-code", None, id="fullwidth-at-sign"),
        pytest.param(
            "<script>\n</\u017fcript>\n@async-code rm stuff\n</script>",
            "async-code",
            None,
            id="long-s-does-not-close-a-script-block",
        ),
        pytest.param(
            "<\u017fcript>\n@async-code add retries",
            "async-code",
            "add retries",
            id="long-s-does-not-open-a-script-block",
        ),
    ],
)
def test_slug_and_html_names_match_in_ascii_case_only(body, slug, instruction):
    # GitHub compares logins and HTML tag names ignoring ASCII case only; Unicode case
    # folding would see mentions and tags where GitHub shows none.
    assert find_instruction(body, slug) == instruction


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
