"""Make text written by the agent fit to post on GitHub.

The agent reads issue text anyone can write, so what it writes back is untrusted:
it must not notify people, close issues, load images or link away from GitHub, and it
must fit GitHub's size limits.
"""

import html
import re
from typing import NamedTuple
from urllib.parse import urlsplit

# code_span is the runner's too: its modules quote text with it from here.
from app.markdown import BACKTICK_RUN, code_span  # noqa: F401

GITHUB_BODY_LIMIT = 65_536
ZERO_WIDTH_SPACE = "\u200b"
DEFAULT_GITHUB_HOST = "github.com"

# Characters GitHub shows as nothing: any of them may sit inside a mention or a keyword
# without a reader, or GitHub, seeing a break there. The zero-width space is left out:
# it is what `neutralise` inserts, and a word it splits is no longer the same word.
_INVISIBLE = (
    "\u00ad\u034f\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u115f\u1160\u17b4"
    "\u17b5\u180b-\u180f\u200c-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\u3164"
    "\ufe00-\ufe0f\ufeff\uffa0\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U00013438"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f"
    "\U000e0100-\U000e01ef"
)

# Raw HTML: a tag name followed by an attribute, "/>" or ">"; a closing tag; a comment,
# declaration, CDATA section or processing instruction. At the start of a line (after
# quote and list marks) a tag name and a space are enough to open an HTML block.
_RAW_HTML = re.compile(
    r"<(?=[A-Za-z][A-Za-z0-9-]*(?:\s*/?>|\s+[A-Za-z_:])|/[A-Za-z]|[!?])"
    r"|(?:^|(?<=\n))[ \t>*+\-0-9.)]*<(?=[A-Za-z][A-Za-z0-9-]*(?:\s|\Z))"
)
_IMAGE = re.compile(r"!(?=\[)")

# What may come between two characters GitHub reads as adjacent once the Markdown is
# rendered: emphasis, code, link and autolink punctuation, escapes, a link's destination
# and title or its reference label, invisible characters. Possessive and bounded
# repetition keeps every search linear.
# Brackets stay out of the run of characters: they start longer pieces, tried first.
_NOISE_CHARACTERS = rf"*_~`\\!|<>{_INVISIBLE}"
_NOISE = (
    r"(?:\]\((?:[^()\s]|\([^()\s]{0,256}\)){0,2048}+"
    r"(?:\s+(?:\"[^\"]{0,1024}\"|'[^']{0,1024}'|\([^()]{0,1024}\)))?\s*\)"
    r"|\]\[[^\[\]]{0,999}\]"
    rf"|[{_NOISE_CHARACTERS}]++|[\[\]])"
)
_N = _NOISE + "{0,64}+"

# An @ followed by a login character is a mention unless a letter or digit comes right
# before it (a@b.com, left-pad@1.3.0). ASCII classes on purpose, so a non-ASCII letter
# before the @ cannot shield a mention. Fullwidth forms count too.
_MENTION = re.compile(rf"[@\uff20\ufe6b](?={_N}[A-Za-z0-9\uff10-\uff19\uff21-\uff3a\uff41-\uff5a])")
# But GitHub links "a@b.com" and "https://x.com" as a whole, and an @ right after such a
# link starts a text of its own: "a@b.c@octocat" may ping.
_LINKED_WORD = re.compile(r"[@\uff20\ufe6b]|://|(?i:www)\.")


def _spaced(word: str) -> str:
    return _N.join(re.escape(letter) for letter in word)


_CLOSING_KEYWORD = "|".join(
    f"{_spaced(stem)}(?:{_N}(?:{'|'.join(_spaced(ending) for ending in endings)}))?"
    for stem, endings in (("close", ("s", "d")), ("fix", ("es", "ed")), ("resolve", ("s", "d")))
)
# Between a keyword and its reference: spaces, a colon, and what Markdown turns into a line
# break, a new block or nothing at all: list and heading marks, quote marks, table rows,
# rules, a fenced code block's opening line, a link reference definition.
_DEFINITION = r"\[[^\[\]]{1,999}\]:[^\n]*+(?:\n[ \t]*(?:\"[^\"]*\"|'[^']*'|\([^()]*\)))?"
_FENCE_OPENING = r"\s*\n[ \t>*+\-0-9.)]*(?:`{3,}|~{3,})[^\n]*+"
# Longer pieces come first: a run of single characters must not swallow their start.
_GAP = (rf"{_DEFINITION}|{_FENCE_OPENING}|\s++|[:=+.)\-]++|\d{{1,9}}[.)]|\#{{1,6}}(?=\s)"
        rf"|{_NOISE}")
# A table drops the cells a row has beyond its header's, so the rest of a line after "|"
# may vanish. A gap of its own: the other must stay free to read "| #1" as a reference.
_GAP_ACROSS_CELLS = rf"\|[^\n]{{0,4096}}+\n|{_GAP}"
_MAYBE_TABLE = re.compile(r"^(?=[^\n]*\|)[^\n]*-", re.MULTILINE)  # a delimiter row has both
_ISSUE_REFERENCE = (
    rf"(?:(?:[\w.\-]|{_NOISE}){{1,160}}+/(?:[\w.\-]|{_NOISE}){{1,160}}+{_N})?[#\uff03\ufe5f]{_N}\d"
    rf"|(?i:g{_N}h){_N}-{_N}\d"
    rf"|(?i:{_spaced('http')}(?:{_N}s)?){_N}:{_N}/{_N}/"
    rf"(?:[\w.\-:/@%~+!$&'()*,;=]|{_NOISE}){{0,512}}?/{_N}(?i:{_spaced('issues')}){_N}/{_N}\d"
)
# A keyword ends where a word does, or where GitHub starts linking a URL ("fixeshttp://").
_KEYWORD_END = r"(?:(?![A-Za-z0-9])|(?=(?i:https?://|www\.)))"
# Zero-width, so that every start is found even where matches overlap ("fix-closes #1").
_CLOSING_KEYWORD_BEFORE_REFERENCE, _CLOSING_KEYWORD_BEFORE_REFERENCE_ACROSS_CELLS = (
    re.compile(rf"(?=(?i:{_CLOSING_KEYWORD}){_KEYWORD_END}(?:{gap}){{0,256}}+(?:{_ISSUE_REFERENCE}))")
    for gap in (_GAP, _GAP_ACROSS_CELLS)
)

_SCHEME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-")
_WWW = re.compile(r"(?i:www)(?=\.)")
# Where Markdown reads a link destination: after "](" or "]:", or in an autolink.
_DESTINATION_BEFORE = re.compile(r"(?:\]\(\s*<?|\]:\s*<?|<)\Z")
_NETWORK_PATH = re.compile(r"(?:\]\(\s*<?|\]:\s*<?)[/\\](?=[/\\])")
_SCHEMES_THAT_LOAD_NOTHING = {"mailto"}
_WEB_SCHEMES = {"http", "https"}
_SCHEMES_LINKED_BARE = {"xmpp"}  # linked by GitHub without "//" and outside a link
# A URL's authority, after any slashes. A backslash is no separator: Markdown percent-encodes
# it in a link. A bare URL ends at "<" or a space but takes in a ">"; an autolink ends at
# ">". No host name is longer than 253 characters: a longer run is not ours.
_AUTHORITY = re.compile(r"/*([^/?#< \t\n\r\f\v]{0,256})")  # ASCII spaces only
_AUTHORITY_IN_AUTOLINK = re.compile(r"/*([^/?#>\n]{0,256})")

_CHARACTER_REFERENCE_OR_ESCAPE = re.compile(
    r"(?P<reference>&(?:\#[0-9]+;?|\#[xX][0-9a-fA-F]+;?|[A-Za-z][A-Za-z0-9]*;?))"
    r"|(?P<escape>\\[!-/:-@\[-`{-~])"
)

_HEADING_MARK = re.compile(r"^#{1,6}(?=\s|$)")
_HEADING_CLOSING_MARK = re.compile(r"\s+#+$")
_LIST_MARK = re.compile(r"^(?:[-*+]|\d{1,9}[.)])(?=\s|$)")


class _Reading(NamedTuple):
    """The text as one reading of the Markdown shows it, each character tied to its source."""

    chars: str
    starts: list[int]  # where the character's source starts
    ends: list[int]  # and ends


def neutralise(text: str, *, github_host: str = DEFAULT_GITHUB_HOST) -> str:
    """Stop GitHub acting on `text`, whether it renders it as Markdown or shows it as is.

    Afterwards GitHub finds in it no mention to notify, no closing keyword before an issue
    reference, no image to load, no raw HTML, and no link to a host other than
    `github_host`: relative links stay, and so do `mailto:` addresses, which load nothing.

    A zero-width space is inserted wherever GitHub would act: after a mention's "@", after
    a closing keyword's first letter, before the colon of an off-host URL's scheme, before
    the dot of "www.", between the "!" and "[" of an image, after the "<" of raw HTML
    (which then shows as text: it is where rendering hides the most, and agent text needs
    none). Nothing is removed or decoded, so the text reads the same.

    Rendering hides characters: "_@octocat_" renders as an emphasised mention, "&#64;" as
    "@", "**Fixes** #1" as a keyword before a reference. So mentions, keywords and URLs are
    looked for twice, in the text as written and with character references and backslash
    escapes resolved, letting Markdown punctuation, link destinations and invisible
    characters sit anywhere inside them, and new blocks, quote marks, table cells, fence
    lines and reference definitions between a keyword and its reference. Code is not
    exempt: a disagreement with GitHub's parser about where code ends would let a ping or
    an image through, and in code the inserted character is the only change. Idempotent.
    """
    # Raw HTML and images first: once broken, what they held is text the readings see.
    text = _with_zero_width_spaces(text, {
        *(tag.end() for tag in _RAW_HTML.finditer(text)),
        *(image.end() for image in _IMAGE.finditer(text))})
    host = github_host.lower()
    cuts: set[int] = set()
    for reading in (_as_written(text), _resolved(text)):
        cuts.update(_mention_cuts(reading, text))
        cuts.update(_closing_keyword_cuts(reading, text))
        cuts.update(_url_cuts(reading, host))
    return _with_zero_width_spaces(text, cuts)


def github_web_host(api_url: str) -> str:
    """The host people browse for a GitHub whose REST API is at `api_url`.

    https://api.github.com gives github.com; GitHub Enterprise Server's
    https://HOST/api/v3 gives HOST; GHE.com's https://api.NAME.ghe.com gives NAME.ghe.com.
    """
    parts = urlsplit(api_url.strip())
    host = (parts.hostname or "").lower()
    if not host:
        raise ValueError(f"not an http(s) URL with a host: {api_url!r}")
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    if host.startswith("api.") and parts.path.strip("/") == "":
        host = host[len("api."):]
    return host


def github_web_url(api_url: str) -> str:
    """The web address of a GitHub whose REST API is at `api_url`, e.g. https://github.com."""
    return f"{urlsplit(api_url.strip()).scheme or 'https'}://{github_web_host(api_url)}"


def _with_zero_width_spaces(text: str, cuts: set[int]) -> str:
    pieces, last = [], 0
    for cut in sorted(cuts - {0}):
        pieces += [text[last:cut], ZERO_WIDTH_SPACE]
        last = cut
    pieces.append(text[last:])
    return "".join(pieces)


def _as_written(text: str) -> _Reading:
    return _Reading(text, list(range(len(text))), list(range(1, len(text) + 1)))


def _resolved(text: str) -> _Reading:
    """`text` with character references decoded and backslash escapes resolved."""
    chars: list[str] = []
    starts: list[int] = []
    ends: list[int] = []

    def add(shown: str, start: int, end: int) -> None:
        chars.append(shown)
        starts.extend([start] * len(shown))
        ends.extend([end] * len(shown))

    position = 0
    for token in _CHARACTER_REFERENCE_OR_ESCAPE.finditer(text):
        start, end = token.span()
        chars.append(text[position:start])
        starts.extend(range(position, start))
        ends.extend(range(position + 1, start + 1))
        # html.unescape decodes what a browser would, a superset of what Markdown does.
        add(html.unescape(token[0]) if token.lastgroup == "reference" else token[0][1], start, end)
        position = end
    chars.append(text[position:])
    starts.extend(range(position, len(text)))
    ends.extend(range(position + 1, len(text) + 1))
    return _Reading("".join(chars), starts, ends)


def _mention_cuts(reading: _Reading, text: str):
    for mention in _MENTION.finditer(reading.chars):
        at = mention.start()
        if _starts_word(reading, at, text) or _follows_a_link(reading.chars, at):
            yield reading.ends[at]


def _follows_a_link(chars: str, at: int) -> bool:
    earliest = max(0, at - 256)
    word_start = max(chars.rfind(space, earliest, at) for space in " \t\n\r\f\v") + 1
    return _LINKED_WORD.search(chars, max(word_start, earliest), at) is not None


def _closing_keyword_cuts(reading: _Reading, text: str):
    patterns = [_CLOSING_KEYWORD_BEFORE_REFERENCE]
    if _MAYBE_TABLE.search(reading.chars):
        patterns.append(_CLOSING_KEYWORD_BEFORE_REFERENCE_ACROSS_CELLS)
    for pattern in patterns:
        for keyword in pattern.finditer(reading.chars):
            if _starts_word(reading, keyword.start(), text):
                yield reading.ends[keyword.start()]


def _starts_word(reading: _Reading, index: int, text: str) -> bool:
    # A letter or digit right before shields only when it is right before in the source too
    # ("a&#64;b" renders "a@b", one word). An escaped character is never shielded: GitHub
    # may end a bare link at the backslash ("http://x/a\@b"), leaving "@b" a text of its own.
    start = reading.starts[index]
    if text[start] == "\\" and reading.ends[index] - start == 2:
        return True
    before_shown = reading.chars[index - 1:index]
    before_written = text[start - 1:start] if start else ""
    return not (_is_ascii_alphanumeric(before_shown) and _is_ascii_alphanumeric(before_written))


def _is_ascii_alphanumeric(char: str) -> bool:
    return char.isascii() and char.isalnum()


def _url_cuts(reading: _Reading, host: str):
    chars = reading.chars
    for colon in (index for index, char in enumerate(chars) if char == ":"):
        start = colon
        while start > 0 and colon - start < 64 and chars[start - 1] in _SCHEME_CHARACTERS:
            start -= 1
        if _links_away(chars, start, colon, host):
            yield reading.starts[colon]
    for www in _WWW.finditer(chars):
        if not _is_ascii_alphanumeric(chars[www.start() - 1:www.start()]):
            yield reading.starts[www.end()]
    for path in _NETWORK_PATH.finditer(chars):
        yield reading.starts[path.end()]


def _links_away(chars: str, start: int, colon: int, host: str) -> bool:
    """Whether the scheme-like run from `start` to `colon` begins a link off `host`."""
    letters = [index for index in range(start, colon) if chars[index].isalpha()]
    if not letters:
        return False
    scheme = chars[letters[0]:colon].lower()
    if scheme in _SCHEMES_THAT_LOAD_NOTHING:
        return False
    # GitHub links a bare "http://" or "xmpp:" even right after other letters ("xhttp://").
    tails = {chars[index:colon].lower() for index in letters}
    if tails & _WEB_SCHEMES:
        return scheme not in _WEB_SCHEMES or _authority(
            chars, colon + 1, bracketed=chars[start - 1:start] == "<") != host
    if tails & _SCHEMES_LINKED_BARE or chars[colon + 1:colon + 2] in ("/", "\\"):
        return True
    # Any other scheme links only as a destination; "Note: ..." is prose.
    return bool(_DESTINATION_BEFORE.search(chars[max(0, start - 200):start]))


def _authority(chars: str, start: int, *, bracketed: bool) -> str:
    """The host (with any user and port) of the URL whose scheme ends before `start`."""
    pattern = _AUTHORITY_IN_AUTOLINK if bracketed else _AUTHORITY
    # A trailing dot names the same host ("github.com." is github.com).
    return pattern.match(chars, start)[1].lower().removesuffix(".")


def fit_body(
    text: str, limit: int = GITHUB_BODY_LIMIT, marker: str = "\n\n…(truncated)"
) -> str:
    """`text` cut so it is at most `limit` characters, ending with `marker` when cut."""
    if limit < 0:
        raise ValueError(f"limit must not be negative, got {limit}")
    if len(text) <= limit:
        return text
    room = limit - len(marker)
    if room < 0:
        # No room to say it was cut; staying under the limit is the promise that matters.
        return _cut(text, limit)
    return _cut(text, room) + marker


def short_title(text: str, limit: int = 72) -> str:
    """A one-line title from the first line of `text` with words in it, at most `limit` long."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    for line in text.splitlines():
        title = _without_markdown_marks(line.strip())
        if title:
            return _shortened(title, limit)
    return ""


def _cut(text: str, length: int) -> str:
    # Never leave half of a "\r\n" behind.
    if 0 < length < len(text) and text[length - 1] == "\r" and text[length] == "\n":
        length -= 1
    return text[:length]


def _without_markdown_marks(line: str) -> str:
    if _HEADING_MARK.match(line):
        line = _HEADING_CLOSING_MARK.sub("", _HEADING_MARK.sub("", line))
    line = _LIST_MARK.sub("", line.strip())
    return " ".join(line.split())


def _shortened(title: str, limit: int) -> str:
    if len(title) <= limit:
        return title
    room = limit - len("…")
    head = title[:room]
    # Back up to the last word boundary unless the cut already falls on one;
    # a single word longer than the limit is cut where it must be.
    if title[room] != " " and " " in head:
        head = head[: head.rindex(" ")]
    return head.rstrip() + "…"


def fenced(text: str, language: str = "") -> str:
    """`text` as a fenced code block no line inside can close: the fence is longer than any
    run of backticks in it."""
    longest = max(map(len, BACKTICK_RUN.findall(text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text}\n{fence}"
