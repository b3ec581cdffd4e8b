"""A PDF of a deck (reportlab): one 16:9 page per slide, laid out as the page's slides are
(``layout.py``) in the theme's colours, fonts and type scale; its text real text (selectable,
searchable); slide numbers. Text that does not fit a page even at the smallest size is cut with
an ellipsis (the PPTX and HTML keep everything)."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

from reportlab.lib.colors import HexColor
from reportlab.pdfgen.canvas import Canvas

from presto_deck.domain.content import SlideContent
from presto_deck.domain.deck import Deck, Slide
from presto_deck.domain.themes import Bullet, Colours, Theme, ThemeBook
from presto_deck.infrastructure.export.fonts import runs, standard_font, text_width
from presto_deck.infrastructure.export.layout import HEIGHT, WIDTH, Block, Page, arrange, cqw

#: Where a line's baseline sits below its top: half the leading's extra, then the ascent.
_ASCENT = 0.78
_NUMBER_SIZE = 11.0


def deck_to_pdf(title: str, slides: Sequence[SlideContent], theme: Theme) -> bytes:
    out = io.BytesIO()
    canvas = Canvas(out, pagesize=(WIDTH, HEIGHT), pageCompression=1)
    canvas.setTitle(title)
    canvas.setSubject(title)
    canvas.setAuthor("")  # not "anonymous": who wrote the deck is not ours to say
    canvas.setCreator("Presto-Deck")
    for number, content in enumerate(slides, start=1):
        _draw(canvas, arrange(content, theme), theme, number)
        canvas.showPage()
    canvas.save()
    return out.getvalue()


def _draw(canvas: Canvas, page: Page, theme: Theme, number: int) -> None:
    _background(canvas, page.colours)
    for rect in page.shapes:
        canvas.setFillColor(HexColor(rect.colour))
        canvas.rect(rect.left, HEIGHT - rect.top - rect.height, rect.width, rect.height, 0, 1)
    for block in page.blocks:
        _block(canvas, page, block, theme.bullet)
    number_font = standard_font(theme.fonts.body_generic)
    _text(
        canvas,
        WIDTH - cqw(3),
        24,
        str(number),
        number_font,
        _NUMBER_SIZE,
        page.colours.muted,
        right=True,
    )


def _background(canvas: Canvas, colours: Colours) -> None:
    canvas.setFillColor(HexColor(colours.background))
    canvas.rect(0, 0, WIDTH, HEIGHT, stroke=0, fill=1)
    if len(colours.gradient) > 1:
        # As CSS draws 135deg: from the top left corner to the bottom right one.
        half = (WIDTH + HEIGHT) * math.sqrt(0.5) / 2 * math.sqrt(0.5)
        centre_x, centre_y = WIDTH / 2, HEIGHT / 2
        canvas.saveState()
        path = canvas.beginPath()
        path.rect(0, 0, WIDTH, HEIGHT)
        canvas.clipPath(path, stroke=0, fill=0)
        canvas.linearGradient(
            centre_x - half,
            centre_y + half,
            centre_x + half,
            centre_y - half,
            [HexColor(colour) for colour in colours.gradient],
        )
        canvas.restoreState()


def _block(canvas: Canvas, page: Page, block: Block, bullet: Bullet) -> None:
    offset, width = page.columns[block.column]
    left = page.left + offset
    for index, line in enumerate(block.lines):
        top = block.top + index * block.leading
        baseline = HEIGHT - (top + (block.leading - block.size) / 2 + _ASCENT * block.size)
        x = left + block.indent
        if page.centred:
            x = left + (width - text_width(line, block.font, block.size)) / 2
        _text(canvas, x, baseline, line, block.font, block.size, block.colour)
        if block.role == "bullet" and index == 0 and block.indent:
            middle = baseline + 0.33 * block.size
            _mark(
                canvas, bullet, left + block.indent * 0.4, middle, block.size, page.colours.accent
            )


def _mark(canvas: Canvas, bullet: Bullet, x: float, y: float, size: float, colour: str) -> None:
    """A bullet drawn as a shape, so it looks the same whatever fonts a reader has."""
    canvas.setFillColor(HexColor(colour))
    match bullet:
        case "disc":
            canvas.circle(x, y, 0.16 * size, stroke=0, fill=1)
        case "square":
            side = 0.3 * size
            canvas.rect(x - side / 2, y - side / 2, side, side, stroke=0, fill=1)
        case "dash":
            canvas.rect(x - 0.25 * size, y - 0.04 * size, 0.5 * size, 0.08 * size, 0, 1)
        case "arrow":
            _polygon(
                canvas,
                [
                    (x - 0.15 * size, y + 0.22 * size),
                    (x + 0.22 * size, y),
                    (x - 0.15 * size, y - 0.22 * size),
                ],
            )
        case "star":
            outer, inner = 0.32 * size, 0.13 * size
            _polygon(
                canvas,
                [
                    (x + radius * math.sin(i * math.pi / 5), y + radius * math.cos(i * math.pi / 5))
                    for i, radius in enumerate([outer, inner] * 5)
                ],
            )


def _polygon(canvas: Canvas, points: list[tuple[float, float]]) -> None:
    path = canvas.beginPath()
    path.moveTo(*points[0])
    for point in points[1:]:
        path.lineTo(*point)
    path.close()
    canvas.drawPath(path, stroke=0, fill=1)


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
    pieces = list(runs(text, font))
    if right:
        x -= text_width(text, font, size)
    canvas.setFillColor(HexColor(colour))
    for run, face in pieces:
        canvas.setFont(face, size)
        canvas.drawString(x, y, run)
        x += text_width(run, face, size)


class PdfExporter:
    media_type = "application/pdf"
    extension = "pdf"

    def __init__(self, themes: ThemeBook) -> None:
        self._themes = themes

    def export(self, deck: Deck, slides: Sequence[Slide]) -> bytes:
        contents = [slide.texts for slide in slides]
        return deck_to_pdf(deck.title, contents, self._themes.of(deck.brief.theme))
