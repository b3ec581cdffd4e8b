"""A PDF of a deck (reportlab): one 16:9 page per slide in the theme's colours, its text real text
(selectable, searchable), slide numbers. Latin text uses the standard PDF fonts; Korean,
Japanese and Chinese use the standard CID fonts that PDF readers provide, so nothing is embedded
and nothing is needed at run time but the wheel."""

from __future__ import annotations

import io
import unicodedata
from collections.abc import Iterator, Sequence
from functools import cache

from reportlab.lib.colors import HexColor
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen.canvas import Canvas

from presto_deck.domain.content import SlideContent
from presto_deck.domain.deck import Deck, Slide
from presto_deck.infrastructure.export.palette import Palette, palette_of
from presto_deck.infrastructure.export.pptx import body_lines

_WIDTH, _HEIGHT = 960.0, 540.0  # points: 16:9
_MARGIN = 56.0
_LATIN = {"regular": "Helvetica", "bold": "Helvetica-Bold"}
_SERIF = {"regular": "Times-Roman", "bold": "Times-Bold"}
#: The CID font for characters the standard fonts lack, by script.
_HANGUL, _KANA, _HAN = "HYSMyeongJo-Medium", "HeiseiKakuGo-W5", "STSong-Light"


def deck_to_pdf(title: str, slides: Sequence[SlideContent], palette: Palette) -> bytes:
    out = io.BytesIO()
    canvas = Canvas(out, pagesize=(_WIDTH, _HEIGHT), pageCompression=1)
    canvas.setTitle(title)
    canvas.setCreator("Presto-Deck")
    for number, content in enumerate(slides, start=1):
        _draw(canvas, content, palette, number)
        canvas.showPage()
    canvas.save()
    return out.getvalue()


def _draw(canvas: Canvas, content: SlideContent, palette: Palette, number: int) -> None:
    is_title = content.layout in ("title", "closing")
    background = (palette.title_background if is_title else None) or palette.background
    ink = (palette.title_ink if is_title else None) or palette.ink
    canvas.setFillColor(HexColor(f"#{background}"))
    canvas.rect(0, 0, _WIDTH, _HEIGHT, stroke=0, fill=1)
    fonts = _SERIF if palette.heading_font == "Georgia" else _LATIN
    y = _HEIGHT - _MARGIN
    size = 34.0 if is_title else 28.0
    for line in _wrapped(content.title, fonts["bold"], size, _WIDTH - 2 * _MARGIN):
        y -= size * 1.2
        _text(canvas, _MARGIN, y, line, fonts["bold"], size, ink)
    canvas.setFillColor(HexColor(f"#{palette.accent}"))
    canvas.rect(_MARGIN, y - 14, 64, 4, stroke=0, fill=1)
    y -= 30
    for text, is_bullet, muted in body_lines(content):
        size = 18.0 if is_bullet else 16.0
        indent = 18.0 if is_bullet else 0.0
        colour = palette.muted if muted else ink
        for index, line in enumerate(
            _wrapped(text, _LATIN["regular"], size, _WIDTH - 2 * _MARGIN - indent)
        ):
            y -= size * 1.35
            if y < _MARGIN:
                break
            if is_bullet and index == 0:
                _text(canvas, _MARGIN, y, "•", _LATIN["regular"], size, palette.accent)
            _text(canvas, _MARGIN + indent, y, line, _LATIN["regular"], size, colour)
        y -= 6
    _text(
        canvas, _WIDTH - _MARGIN, 24, str(number), _LATIN["regular"], 11, palette.muted, right=True
    )


def _text(
    canvas: Canvas,
    x: float,
    y: float,
    text: str,
    font: str,
    size: float,
    colour: str,
    *,
    right: bool = False,
) -> None:
    """Draw ``text`` from ``x`` (or ending at it), each run in a font that has its characters."""
    runs = list(_runs(text, font))
    if right:
        x -= sum(pdfmetrics.stringWidth(run, face, size) for run, face in runs)
    canvas.setFillColor(HexColor(f"#{colour}"))
    for run, face in runs:
        canvas.setFont(face, size)
        canvas.drawString(x, y, run)
        x += pdfmetrics.stringWidth(run, face, size)


def _wrapped(text: str, font: str, size: float, width: float) -> Iterator[str]:
    """``text`` in lines no wider than ``width``: broken at spaces, or anywhere in a long word."""
    line = ""
    for word in text.split():
        candidate = f"{line} {word}" if line else word
        if _width(candidate, font, size) <= width:
            line = candidate
            continue
        if line:
            yield line
        line = ""
        for char in word:  # a word wider than the line (or text without spaces)
            if _width(line + char, font, size) > width and line:
                yield line
                line = ""
            line += char
    if line:
        yield line


def _width(text: str, font: str, size: float) -> float:
    return sum(pdfmetrics.stringWidth(run, face, size) for run, face in _runs(text, font))


def _runs(text: str, font: str) -> Iterator[tuple[str, str]]:
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


class PdfExporter:
    media_type = "application/pdf"
    extension = "pdf"

    def export(self, deck: Deck, slides: Sequence[Slide]) -> bytes:
        contents = [slide.content or SlideContent(title="") for slide in slides]
        return deck_to_pdf(deck.title, contents, palette_of(deck.brief.theme))
