"""Measuring text as the PDF draws it: the standard PDF fonts for what cp1252 holds, and the CID
fonts PDF readers provide for Korean, Japanese and Chinese, so nothing is embedded and nothing
is needed at run time but the wheel. The PPTX is laid out with the same measures."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from functools import cache

from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont

from presto_deck.domain.themes import Generic

#: The standard fonts of each generic family: regular, bold, italic.
STANDARD_FONTS: dict[Generic, tuple[str, str, str]] = {
    "sans-serif": ("Helvetica", "Helvetica-Bold", "Helvetica-Oblique"),
    "serif": ("Times-Roman", "Times-Bold", "Times-Italic"),
    "monospace": ("Courier", "Courier-Bold", "Courier-Oblique"),
}
#: The CID font for characters the standard fonts lack, by script.
_HANGUL, _KANA, _HAN = "HYSMyeongJo-Medium", "HeiseiKakuGo-W5", "STSong-Light"


def standard_font(generic: Generic, *, bold: bool = False, italic: bool = False) -> str:
    regular, bold_face, italic_face = STANDARD_FONTS[generic]
    return bold_face if bold else italic_face if italic else regular


def wrapped(text: str, font: str, size: float, width: float) -> Iterator[str]:
    """``text`` in lines no wider than ``width``: broken at spaces, or anywhere in a long word.
    Each word is measured once, so a long text costs what its length does."""
    space = text_width(" ", font, size)
    line, used = "", 0.0
    for word in text.split():
        word_width = text_width(word, font, size)
        if line and used + space + word_width <= width:
            line, used = f"{line} {word}", used + space + word_width
            continue
        if line:
            yield line
        if word_width <= width:
            line, used = word, word_width
            continue
        line, used = "", 0.0
        for char in word:  # a word wider than the line (or text without spaces)
            char_width = text_width(char, font, size)
            if line and used + char_width > width:
                yield line
                line, used = "", 0.0
            line, used = line + char, used + char_width
    if line:
        yield line


def text_width(text: str, font: str, size: float) -> float:
    return sum(pdfmetrics.stringWidth(run, face, size) for run, face in runs(text, font))


def runs(text: str, font: str) -> Iterator[tuple[str, str]]:
    """``text`` cut into runs of one font each: ``font`` where it has the characters."""
    run, face = "", font
    for char in text:
        wanted = _face_for(char, font)
        if wanted != face and run:
            yield run, face
            run = ""
        run, face = run + char, wanted
    if run:
        yield run, face


def _face_for(char: str, font: str) -> str:
    try:
        char.encode("cp1252")  # what the standard fonts draw
        return font
    except UnicodeEncodeError:
        pass
    name = unicodedata.name(char, "")
    if name.startswith("HANGUL"):
        return _cid(_HANGUL)
    if name.startswith(("HIRAGANA", "KATAKANA")):
        return _cid(_KANA)
    return _cid(_HAN)


@cache
def _cid(name: str) -> str:
    pdfmetrics.registerFont(UnicodeCIDFont(name))
    return name
