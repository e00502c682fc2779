"""Markdown written by Tailor (model cards) as HTML for the console, safely.

The card quotes what users wrote (labels, texts, a description), so nothing in it may become markup: raw HTML
is escaped (markdown-it's ``html`` off), images are not rendered (no request leaves for an address a text
names), and links keep markdown-it's own check that refuses ``javascript:``, ``vbscript:``, ``file:`` and
``data:`` targets. markdown-it-py is the CommonMark parser rich already depends on.
"""

from __future__ import annotations

from markdown_it import MarkdownIt
from markupsafe import Markup

_RENDERER = MarkdownIt("commonmark", {"html": False}).enable("table").disable("image")
FENCE = "---\n"


def split_front_matter(text: str) -> tuple[str, str]:
    """``(front matter, body)`` of a card: the YAML between its opening and closing ``---`` lines (``""`` when
    it has none) and the markdown after them."""
    if text.startswith(FENCE):
        end = text.find("\n" + FENCE, len(FENCE) - 1)
        if end != -1:
            return text[len(FENCE):end + 1], text[end + 1 + len(FENCE):]
    return "", text


def markdown_html(text: str) -> Markup:
    """``text`` (CommonMark with tables) as HTML in which every character the text holds is escaped."""
    return Markup(_RENDERER.render(text))
