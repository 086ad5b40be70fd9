"""Judge Markdown the way GitHub sees it: rendered by cmark-gfm, then read as HTML.

`findings` lists what GitHub would act on in rendered HTML: a mention outside code, a closing
keyword before an issue reference, an image, a link or an image source on another host.
It reads the raw renderer output (unsafe HTML allowed), before GitHub's sanitiser, so it
is stricter than GitHub: an element the sanitiser would drop still counts.
"""

from __future__ import annotations

import re
import unicodedata
from html.parser import HTMLParser

import cmarkgfm
from cmarkgfm.cmark import Options

IMAGE_ELEMENTS = {"img", "image", "picture", "source", "video", "audio", "track", "iframe",
                  "embed", "object", "svg", "frame", "portal"}
URL_ATTRIBUTES = {"href", "src", "srcset", "poster", "background", "action", "formaction",
                  "data", "cite", "longdesc", "xlink:href", "ping", "lowsrc", "dynsrc"}

MENTION = re.compile(r"(?<![A-Za-z0-9_])[@\uff20\ufe6b][A-Za-z0-9]")
CLOSING_REFERENCE = re.compile(
    r"(?<![A-Za-z0-9_])(?i:close[sd]?|fix(?:e[sd])?|resolve[sd]?)(?![A-Za-z0-9_])[\s:]*"
    r"(?:#\d|(?i:gh)-\d|[\w.-]+/[\w.-]+#\d|(?i:https?)://[\w.~%:@!$&'()*+,;=/-]*/issues/\d)"
)


def render(markdown: str) -> str:
    """HTML as GitHub's cmark-gfm renders `markdown`, with its extensions, raw HTML kept."""
    return cmarkgfm.github_flavored_markdown_to_html(markdown, options=Options.CMARK_OPT_UNSAFE)


def findings(rendered: str, github_host: str = "github.com") -> list[str]:
    """What GitHub would act on in `rendered`; empty when it is inert."""
    reader = _Reader(github_host)
    reader.feed(rendered)
    reader.close()
    found = list(reader.found)
    for name, text in reader.texts().items():
        text = _visible(text)
        # GitHub makes no mentions in code, but code stays in place between a keyword and
        # a reference: it is never skipped to join them.
        if name.startswith("code"):
            found += [f"closing reference {m[0]!r} in {name} text"
                      for m in CLOSING_REFERENCE.finditer(text)]
        else:
            found += [f"mention {m[0]!r} in {name} text" for m in MENTION.finditer(text)]
    return found


def is_off_host(url: str, github_host: str = "github.com") -> bool:
    """Whether a browser on a GitHub page would leave `github_host` following `url`."""
    url = re.sub(r"[\t\n\r]", "", url.strip("".join(map(chr, range(0x21)))))
    if re.match(r"[/\\]{2}", url):
        return True
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*):", url)
    if not scheme:
        return False  # relative: stays on the page's host
    name = scheme[1].lower()
    if name == "mailto":
        return False  # opens a mail program, loads nothing
    if name not in ("http", "https"):
        return True
    authority = re.split(r"[/\\?#]", url[scheme.end():].lstrip("/\\"), maxsplit=1)[0]
    return authority.lower().rstrip(".") != github_host.lower()


def _visible(text: str) -> str:
    # Invisible characters do not separate what GitHub reads; the zero-width space is
    # the one neutralise relies on, so it stays.
    return "".join(c for c in text if c == "\u200b" or not _invisible(c))


def _invisible(char: str) -> bool:
    code = ord(char)
    return (unicodedata.category(char) == "Cf" or 0xFE00 <= code <= 0xFE0F
            or 0xE0100 <= code <= 0xE01EF or char in "\u034f\u115f\u1160\u3164\uffa0")


class _Reader(HTMLParser):
    """Collects text four ways (code or prose; tags as nothing or as a break) and problems."""

    def __init__(self, github_host: str):
        super().__init__(convert_charrefs=True)
        self.github_host = github_host
        self.found: list[str] = []
        self._code_depth = 0
        self._all_joined: list[str] = []
        self._all_separated: list[str] = []
        self._prose_joined: list[str] = []
        self._prose_separated: list[str] = []

    def texts(self) -> dict[str, str]:
        return {"code-and-prose joined": "".join(self._all_joined),
                "code-and-prose separated": "".join(self._all_separated),
                "prose joined": "".join(self._prose_joined),
                "prose separated": "".join(self._prose_separated)}

    def handle_starttag(self, tag, attrs):
        self._tag_boundary()
        if tag in IMAGE_ELEMENTS:
            self.found.append(f"<{tag}> element")
        for name, value in attrs:
            if name in URL_ATTRIBUTES and value is not None and (
                    name == "srcset" or is_off_host(value, self.github_host)):
                self.found.append(f"<{tag} {name}={value!r}> leaves {self.github_host}")
        if tag in ("code", "pre"):
            self._code_depth += 1

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag in ("code", "pre"):
            self._code_depth -= 1

    def handle_endtag(self, tag):
        self._tag_boundary()
        if tag in ("code", "pre") and self._code_depth:
            self._code_depth -= 1

    def handle_data(self, data):
        self._all_joined.append(data)
        self._all_separated.append(data)
        shown_as_prose = " " if self._code_depth else data
        self._prose_joined.append(shown_as_prose)
        self._prose_separated.append(shown_as_prose)

    def _tag_boundary(self):
        # GitHub may read across a tag ("fix<b></b>es") or stop at it (a text node starting
        # with "@"): both readings are kept.
        self._all_separated.append(" ")
        self._prose_separated.append(" ")
