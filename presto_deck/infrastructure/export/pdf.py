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
#: Body lines are this many times their font size apart; paragraphs this much more (scaled).
_LEADING = 1.35
_GAP = 6.0
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
    width = _WIDTH - 2 * _MARGIN
    y = _HEIGHT - _MARGIN
    size = 34.0 if is_title else 28.0
    for line in _at_most(_TITLE_LINES, _wrapped(content.title, fonts["bold"], size, width)):
        y -= size * 1.2
        _text(canvas, _MARGIN, y, line, fonts["bold"], size, ink)
    canvas.setFillColor(HexColor(f"#{palette.accent}"))
    canvas.rect(_MARGIN, y - 14, 64, 4, stroke=0, fill=1)
    body = body_lines(content)
    room = y - 30 - _MARGIN
    # The largest size at which the whole body fits the page, down to a floor; past that, what
    # does not fit is cut with an ellipsis (the PPTX and HTML keep everything).
    scale = next(
        (s for s in _BODY_SCALES if _body_height(body, s, width) <= room), _BODY_SCALES[-1]
    )
    y -= 30
    for text, is_bullet, muted in body:
        colour = palette.muted if muted else ink
        after = _paragraph(canvas, y, text, is_bullet, scale, colour, palette.accent)
        if after is None:
            break
        y = after - _GAP * scale
    _text(
        canvas, _WIDTH - _MARGIN, 24, str(number), _LATIN["regular"], 11, palette.muted, right=True
    )


def _paragraph(
    canvas: Canvas,
    y: float,
    text: str,
    is_bullet: bool,
    scale: float,
    colour: str,
    accent: str,
) -> float | None:
    """Draw one paragraph below ``y``; where the next one starts, or None if the page is full
    (the last line drawn then ends with an ellipsis)."""
    size, indent = _metrics(is_bullet, scale)
    font = _LATIN["regular"]
    for index, line in enumerate(_wrapped(text, font, size, _WIDTH - 2 * _MARGIN - indent)):
        if y - size * _LEADING < _MARGIN:
            if index:  # mark the cut at the end of the line above
                _text(canvas, _WIDTH - _MARGIN, y, "…", font, size, colour, right=True)
            return None
        y -= size * _LEADING
        if is_bullet and index == 0:
            _text(canvas, _MARGIN, y, "•", font, size, accent)
        _text(canvas, _MARGIN + indent, y, line, font, size, colour)
    return y


_TITLE_LINES = 3
_BODY_SCALES = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.45, 0.4)


def _body_height(body: list[tuple[str, bool, bool]], scale: float, width: float) -> float:
    height = 0.0
    for text, is_bullet, _ in body:
        size, indent = _metrics(is_bullet, scale)
        lines = sum(1 for _ in _wrapped(text, _LATIN["regular"], size, width - indent))
        height += lines * size * _LEADING + _GAP * scale
    return height


def _metrics(is_bullet: bool, scale: float) -> tuple[float, float]:
    """The font size and the indent of a paragraph at ``scale``."""
    return (18.0 if is_bullet else 16.0) * scale, (18.0 * scale if is_bullet else 0.0)


def _at_most(count: int, lines: Iterator[str]) -> Iterator[str]:
    """The first ``count`` lines, the last of them marked with an ellipsis if more followed."""
    kept = [line for _, line in zip(range(count + 1), lines, strict=False)]
    if len(kept) > count:
        kept = kept[:count]
        kept[-1] = kept[-1].rstrip() + " …"
    yield from kept


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
    """``text`` in lines no wider than ``width``: broken at spaces, or anywhere in a long word.
    Each word is measured once, so a long text costs what its length does."""
    space = _width(" ", font, size)
    line, used = "", 0.0
    for word in text.split():
        word_width = _width(word, font, size)
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
            char_width = _width(char, font, size)
            if line and used + char_width > width:
                yield line
                line, used = "", 0.0
            line, used = line + char, used + char_width
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
        contents = [slide.texts for slide in slides]
        return deck_to_pdf(deck.title, contents, palette_of(deck.brief.theme))
