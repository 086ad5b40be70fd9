"""What a reader of an issue sees on GitHub, as plain text for the model.

Anyone can write an issue, and Markdown can carry text no reviewer ever sees: an HTML
comment, a link reference definition ("[//]: # (...)"), a link's title and target, an
image's alt text, attributes, invisible characters. Instructions hidden there would reach
the model while the person who asked for the work, reading the same issue, sees nothing.
So the model gets only the text GitHub shows.
"""

from __future__ import annotations

import re
import unicodedata
from html.parser import HTMLParser

import cmarkgfm
from cmarkgfm.cmark import Options

# Elements whose content a reader never sees: GitHub's sanitiser drops scripts with their
# content, a template's content is never rendered, browsers with scripts on hide noscript,
# and rp is only for browsers without ruby support.
_HIDDEN_CONTENT = {"script", "style", "template", "noscript", "rp"}
_BLOCKS = {"address", "article", "aside", "blockquote", "dd", "details", "div", "dl", "dt",
           "figcaption", "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header",
           "hr", "li", "main", "nav", "ol", "p", "pre", "section", "summary", "table", "ul"}
_LAYOUT = {"ul", "ol", "table", "thead", "tbody", "tfoot", "tr"}
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
         "track", "wbr"}
_BACKTICKS = re.compile(r"`+")


def shown_text(markdown: str) -> str:
    """The text of `markdown` as GitHub shows it to a reader.

    The Markdown is rendered as GitHub renders it (cmark-gfm with GitHub's extensions),
    then read back keeping only what is shown:

    - HTML comments go, and so do the elements whose content is never shown: script,
      style, template, noscript and rp. (GitHub's tag filter turns <script>, <style>,
      <textarea>, <iframe> and a few others into visible text, so those stay, as text.)
    - Every other tag goes and its text stays: GitHub's sanitiser keeps the text of the
      elements it drops, and drops the attributes that would hide it (hidden, style).
    - Attributes are never shown, so link targets and titles, image sources and alt text
      go; an image becomes "[image]", a link its text. Link reference definitions, which
      render as nothing, go with them.
    - Invisible characters go: format characters (zero-width, bidirectional controls,
      tag characters) and variation selectors.
    - Code keeps its text exactly, in backticks or a fenced block; headings, list items,
      quotes and table rows keep a plain-text shape.
    """
    rendered = cmarkgfm.github_flavored_markdown_to_html(markdown, options=Options.CMARK_OPT_UNSAFE)
    reader = _Reader()
    reader.feed(rendered)
    reader.close()
    return reader.text()


def shown_line(text: str) -> str:
    """A title as GitHub shows it: verbatim on one line, invisible characters removed."""
    return " ".join(without_invisible(text).split())


def without_invisible(text: str) -> str:
    return "".join(char for char in text if not _invisible(char))


def _invisible(char: str) -> bool:
    code = ord(char)
    return (unicodedata.category(char) == "Cf" or 0xFE00 <= code <= 0xFE0F
            or 0xE0100 <= code <= 0xE01EF or char in "\u034f\u115f\u1160\u3164\uffa0")


class _Reader(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self._parts: list[str] = []
        self._hidden_depth = 0
        self._code: list[str] | None = None  # the text of the <pre> being read
        self._code_language = ""
        self._quote_starts: list[int] = []
        self._lists: list[list[int]] = []  # per open list: [next number], or [] if unordered
        self._open: list[str] = []  # elements open around the text being read

    def text(self) -> str:
        text = without_invisible("".join(self._parts))
        # A list item whose text is a paragraph starts on the marker's line.
        text = re.sub(r"^([ \t]*(?:-|\d+\.) )\s+", r"\1", text, flags=re.MULTILINE)
        text = re.sub(r"[ \t]+\n", "\n", text)
        return re.sub(r"\n{3,}", "\n\n", text).strip()

    def close(self):
        # A browser shows nothing of a tag or comment still open at the end: "<!-- ..."
        # hides the rest of the page. Drop it rather than read it as text.
        opened = re.search(r"<[A-Za-z!/?]", self.rawdata)
        if opened:
            self.rawdata = self.rawdata[:opened.start()]
        super().close()

    def handle_starttag(self, tag, attrs):
        if tag not in _VOID:
            self._open.append(tag)
        if tag in _HIDDEN_CONTENT:
            self._hidden_depth += 1
        if self._hidden_depth or self._code is not None:
            return
        attributes = dict(attrs)
        if tag == "pre":
            self._code, self._code_language = [], attributes.get("lang") or ""
            return
        if tag in ("ul", "ol") and "li" in self._open[:-1]:
            self._parts.append("\n")  # a nested list
        elif tag in _BLOCKS and tag != "li":
            self._parts.append("\n\n")
        if tag == "blockquote":
            self._quote_starts.append(len(self._parts))
        elif tag in ("ul", "ol"):
            self._lists.append([int(attributes.get("start") or 1)] if tag == "ol" else [])
        elif tag == "li":
            numbering = self._lists[-1] if self._lists else []
            marker = f"{numbering[0]}." if numbering else "-"
            if numbering:
                numbering[0] += 1
            self._parts.append(f"\n{'  ' * max(0, len(self._lists) - 1)}{marker} ")
        elif tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            self._parts.append("#" * int(tag[1]) + " ")
        elif tag == "hr":
            self._parts.append("---\n\n")
        elif tag == "br":
            self._parts.append("\n")
        elif tag == "tr":
            self._parts.append("\n|")
        elif tag in ("td", "th"):
            self._parts.append(" ")
        elif tag == "code":
            self._parts.append("`")
        elif tag == "img":
            self._parts.append("[image]")
        elif tag == "input" and attributes.get("type") == "checkbox":
            self._parts.append("[x]" if "checked" in attributes else "[ ]")

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self._open.pop()
        if tag in _HIDDEN_CONTENT:
            self._hidden_depth -= 1

    def handle_endtag(self, tag):
        if tag in self._open:
            del self._open[len(self._open) - 1 - self._open[::-1].index(tag):]
        if tag in _HIDDEN_CONTENT:
            self._hidden_depth = max(0, self._hidden_depth - 1)
            return
        if self._hidden_depth:
            return
        if tag == "pre" and self._code is not None:
            code = "".join(self._code).rstrip("\n")
            fence = "`" * max(3, 1 + max(map(len, _BACKTICKS.findall(code)), default=0))
            self._parts.append(f"\n\n{fence}{self._code_language}\n{code}\n{fence}\n\n")
            self._code = None
            return
        if self._code is not None:
            return
        if tag == "code":
            self._parts.append("`")
        elif tag == "blockquote" and self._quote_starts:
            start = self._quote_starts.pop()
            quoted = re.sub(r"\n{3,}", "\n\n", "".join(self._parts[start:])).strip("\n")
            self._parts[start:] = ["\n".join("> " + line if line else ">"
                                             for line in quoted.split("\n")), "\n\n"]
        elif tag in ("ul", "ol"):
            if self._lists:
                self._lists.pop()
            self._parts.append("\n\n")
        elif tag in ("td", "th"):
            self._parts.append(" |")
        elif tag in _BLOCKS and tag != "li":
            self._parts.append("\n\n")

    def handle_data(self, data):
        if self._hidden_depth:
            return
        if self._code is not None:
            self._code.append(data)
        elif data.strip() or not (self._open and self._open[-1] in _LAYOUT):
            # Line breaks between list items and table cells are layout, not text.
            self._parts.append(data)
