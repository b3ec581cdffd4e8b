"""An editable PowerPoint deck (python-pptx): real titles, text boxes of real bullet paragraphs,
speaker notes in the notes pane, 16:9, the theme's colours and fonts, slide numbers."""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from html.parser import HTMLParser

from pptx import Presentation
from pptx.dml.color import RGBColor
from pptx.presentation import Presentation as PptxPresentation
from pptx.slide import Slide as PptxSlide
from pptx.util import Emu, Pt

from presto_deck.domain.content import SlideContent
from presto_deck.domain.deck import Deck, Slide
from presto_deck.infrastructure.export.palette import Palette, palette_of
from presto_deck.infrastructure.writers.sanitizer import sanitize_html

_WIDTH, _HEIGHT = Emu(12_192_000), Emu(6_858_000)  # 13.333 by 7.5 inches: 16:9
_MARGIN = Emu(640_000)
_TITLE_ONLY = 5  # in python-pptx's default template
#: What XML 1.0 refuses (control characters, U+FFFE, U+FFFF); a carriage return would be kept
#: as a literal "_x000D_", so line breaks are made plain newlines first.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def deck_to_pptx(title: str, slides: Sequence[SlideContent], palette: Palette) -> bytes:
    presentation = Presentation()
    presentation.slide_width, presentation.slide_height = _WIDTH, _HEIGHT
    presentation.core_properties.title = _text(title)
    for number, content in enumerate(slides, start=1):
        _add_slide(presentation, content, palette, number)
    out = io.BytesIO()
    presentation.save(out)
    return out.getvalue()


def _add_slide(
    presentation: PptxPresentation, content: SlideContent, palette: Palette, n: int
) -> None:
    slide = presentation.slides.add_slide(presentation.slide_layouts[_TITLE_ONLY])
    is_title = content.layout in ("title", "closing")
    background = (palette.title_background if is_title else None) or palette.background
    ink = (palette.title_ink if is_title else None) or palette.ink
    fill = slide.background.fill
    fill.solid()
    fill.fore_color.rgb = _rgb(background)

    heading = slide.shapes.title
    heading.left, heading.top = _MARGIN, _MARGIN // 2
    heading.width, heading.height = _WIDTH - 2 * _MARGIN, Emu(1_300_000)
    heading.text_frame.word_wrap = True
    heading.text_frame.text = _text(content.title)
    for paragraph in heading.text_frame.paragraphs:
        for run in paragraph.runs:
            run.font.size = Pt(40 if is_title else 32)
            run.font.bold = True
            run.font.name = palette.heading_font
            run.font.color.rgb = _rgb(ink)

    lines = body_lines(content)
    if lines:
        top = _MARGIN // 2 + Emu(1_450_000)
        box = slide.shapes.add_textbox(_MARGIN, top, _WIDTH - 2 * _MARGIN, _HEIGHT - top - _MARGIN)
        frame = box.text_frame
        frame.word_wrap = True
        for index, (text, is_bullet, muted) in enumerate(lines):
            paragraph = frame.paragraphs[0] if index == 0 else frame.add_paragraph()
            run = paragraph.add_run()
            run.text = ("• " if is_bullet else "") + text
            run.font.size = Pt(22 if is_bullet else 20)
            run.font.name = palette.body_font
            run.font.color.rgb = _rgb(palette.muted if muted else ink)
            paragraph.space_after = Pt(8)

    _number(slide, n, palette)
    if content.notes.strip():
        slide.notes_slide.notes_text_frame.text = _text(content.notes)


def body_lines(content: SlideContent) -> list[tuple[str, bool, bool]]:
    """(text, is a bullet, is muted) for each paragraph under the title."""
    lines: list[tuple[str, bool, bool]] = []
    if content.subtitle.strip():
        lines.append((_text(content.subtitle), False, True))
    lines += [(_plain(bullet), True, False) for bullet in content.bullets if _plain(bullet)]
    lines += [(paragraph, False, True) for paragraph in _paragraphs(content.body)]
    return lines


def _number(slide: PptxSlide, n: int, palette: Palette) -> None:
    box = slide.shapes.add_textbox(
        Emu(_WIDTH - _MARGIN - 900_000), Emu(_HEIGHT - 560_000), Emu(900_000), Emu(400_000)
    )
    run = box.text_frame.paragraphs[0].add_run()
    run.text = str(n)
    run.font.size = Pt(12)
    run.font.color.rgb = _rgb(palette.muted)


def _rgb(hex_colour: str) -> RGBColor:
    red, green, blue = (int(hex_colour[i : i + 2], 16) for i in (0, 2, 4))
    return RGBColor(red, green, blue)  # type: ignore[no-untyped-call]


def _text(text: str) -> str:
    """``text`` as an XML document can hold it."""
    return _NOT_XML.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def _plain(markup: str) -> str:
    """The words of a fragment of inline markup, as the HTML shows them (sanitized first, so
    what the page drops, such as a script's text, is dropped here too)."""
    return " ".join(_text(_words(sanitize_html(markup))).split())


def _paragraphs(markup: str) -> list[str]:
    """The words of each block of a body's markup: paragraphs stay paragraphs."""
    blocks = re.split(r"(?i)</(?:p|div|li|h\d|blockquote)>|<br\s*/?>", sanitize_html(markup))
    return [text for text in (_plain(block) for block in blocks) if text]


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


class PptxExporter:
    media_type = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
    extension = "pptx"

    def export(self, deck: Deck, slides: Sequence[Slide]) -> bytes:
        contents = [slide.texts for slide in slides]
        return deck_to_pptx(deck.title, contents, palette_of(deck.brief.theme))
