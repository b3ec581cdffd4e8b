"""Measuring text as the PDF draws it: the standard PDF fonts for what cp1252 holds; Noto Sans
(from its wheel, embedded as a subset of the glyphs used) for the rest of the Latin, Greek and
Cyrillic alphabets; the CID fonts PDF readers provide for Korean, Japanese and Chinese. Nothing
is needed at run time but wheels. The PPTX is laid out with the same measures."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from functools import cache, lru_cache
from importlib.resources import as_file, files

from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfbase.ttfonts import TTFont

from presto_deck.domain.themes import Generic

#: The standard fonts of each generic family: regular, bold, italic.
STANDARD_FONTS: dict[Generic, tuple[str, str, str]] = {
    "sans-serif": ("Helvetica", "Helvetica-Bold", "Helvetica-Oblique"),
    "serif": ("Times-Roman", "Times-Bold", "Times-Italic"),
    "monospace": ("Courier", "Courier-Bold", "Courier-Oblique"),
}
#: The CID font for characters the standard fonts lack, by script.
_HANGUL, _KANA, _HAN = "HYSMyeongJo-Medium", "HeiseiKakuGo-W5", "STSong-Light"
_NOTO = "NotoSans"


def standard_font(generic: Generic, *, bold: bool = False, italic: bool = False) -> str:
    regular, bold_face, italic_face = STANDARD_FONTS[generic]
    return bold_face if bold else italic_face if italic else regular


def wrapped(text: str, font: str, size: float, width: float) -> Iterator[str]:
    """``text`` in lines no wider than ``width``: broken at spaces, or anywhere in a long word.
    Widths are measured once per word and font at unit size (and per character inside a word
    too long for a line), so wrapping the same text again at another size costs little."""
    room = width / size  # in units of the font size
    space = _unit_width(" ", font)
    line, used = "", 0.0
    for word in text.split():
        word_width = _unit_width(word, font)
        if line and used + space + word_width <= room:
            line, used = f"{line} {word}", used + space + word_width
            continue
        if line:
            yield line
        if word_width <= room:
            line, used = word, word_width
            continue
        line, used = "", 0.0
        for char in word:  # a word wider than the line (or text without spaces)
            char_width = _unit_width(char, font)
            if line and used + char_width > room:
                yield line
                line, used = "", 0.0
            line, used = line + char, used + char_width
    if line:
        yield line


def text_width(text: str, font: str, size: float) -> float:
    return _unit_width(text, font) * size


@lru_cache(maxsize=65536)
def _unit_width(text: str, font: str) -> float:
    return sum(pdfmetrics.stringWidth(run, face, 1.0) for run, face in runs(text, font))


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


@lru_cache(maxsize=8192)
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
    if name.startswith(("CJK", "IDEOGRAPHIC", "FULLWIDTH", "HALFWIDTH", "BOPOMOFO")):
        return _cid(_HAN)
    return _noto()  # Latin, Greek, Cyrillic and the like (what it lacks stays blank)


@cache
def _noto() -> str:
    font = files("fontpkg_noto_sans").joinpath("files", "NotoSans[wdth,wght].ttf")
    with as_file(font) as path:
        pdfmetrics.registerFont(TTFont(_NOTO, str(path)))
    return _NOTO


@cache
def _cid(name: str) -> str:
    pdfmetrics.registerFont(UnicodeCIDFont(name))
    return name
