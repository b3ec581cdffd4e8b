"""A slide's words as the exports write them: plain text, XML-safe, paragraphs kept apart."""

from __future__ import annotations

import re
import unicodedata
from html.parser import HTMLParser

from presto_deck.infrastructure.writers.sanitizer import sanitize_html

#: What XML 1.0 refuses (control characters, U+FFFE, U+FFFF); a carriage return would be kept
#: as a literal "_x000D_" in a PPTX, so line breaks are made plain newlines first.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
_BLOCK_END = re.compile(r"(?i)</(?:p|div|li|h\d|blockquote)>|<br\s*/?>")


def xml_safe(text: str) -> str:
    """``text`` as an XML document can hold it, composed (NFC: a letter and its accent typed
    apart become the one character a font has a glyph for)."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    return _NOT_XML.sub("", text)


def plain(markup: str) -> str:
    """The words of a fragment of inline markup, as the HTML shows them (sanitized first, so
    what the page drops, such as a script's text, is dropped here too)."""
    return " ".join(xml_safe(_words(sanitize_html(markup))).split())


def paragraphs(markup: str) -> list[str]:
    """The words of each block of a body's markup: paragraphs stay paragraphs."""
    blocks = _BLOCK_END.split(sanitize_html(markup))
    return [text for text in (plain(block) for block in blocks) if text]


def _words(markup: str) -> str:
    reader = _Words()
    reader.feed(markup)
    reader.close()
    return "".join(reader.parts)


class _Words(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)
