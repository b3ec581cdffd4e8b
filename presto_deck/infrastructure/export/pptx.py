"""An editable PowerPoint deck (python-pptx): real titles, text boxes of real bullet paragraphs,
speaker notes in the notes pane, 16:9, slide numbers; laid out as the page's slides are
(``layout.py``) in the theme's colours, fonts and type scale. Nothing is cut: text too long for
a slide stays, at the smallest size, for its author to edit."""

from __future__ import annotations

import io
from collections.abc import Sequence

from pptx import Presentation
from pptx.dml.color import RGBColor
from pptx.enum.shapes import MSO_SHAPE
from pptx.enum.text import MSO_ANCHOR, MSO_AUTO_SIZE, PP_ALIGN
from pptx.oxml.ns import qn
from pptx.oxml.xmlchemy import BaseOxmlElement, OxmlElement
from pptx.presentation import Presentation as PptxPresentation
from pptx.slide import Slide as PptxSlide
from pptx.text.text import TextFrame, _Paragraph
from pptx.util import Emu, Pt

from presto_deck.domain.content import SlideContent
from presto_deck.domain.deck import Deck, Slide
from presto_deck.domain.themes import Colours, Theme, ThemeBook
from presto_deck.infrastructure.export.layout import HEIGHT, WIDTH, Block, Page, arrange, cqw
from presto_deck.infrastructure.export.text import xml_safe
from presto_deck.infrastructure.writers.stylesheet import BULLET_MARKS

_TITLE_ONLY = 5  # in python-pptx's default template
_EMU_PER_POINT = 12_700
#: CSS's 135deg (top left to bottom right) as python-pptx counts: anticlockwise from 3 o'clock.
_GRADIENT_ANGLE = 315.0


def deck_to_pptx(title: str, slides: Sequence[SlideContent], theme: Theme) -> bytes:
    presentation = Presentation()
    presentation.slide_width, presentation.slide_height = _emu(WIDTH), _emu(HEIGHT)
    presentation.core_properties.title = xml_safe(title)
    for number, content in enumerate(slides, start=1):
        _add_slide(presentation, content, theme, number)
    out = io.BytesIO()
    presentation.save(out)
    return out.getvalue()


def _add_slide(presentation: PptxPresentation, content: SlideContent, theme: Theme, n: int) -> None:
    slide = presentation.slides.add_slide(presentation.slide_layouts[_TITLE_ONLY])
    page = arrange(content, theme, cut=False)
    _background(slide, page.colours)
    for rect in page.shapes:
        shape = slide.shapes.add_shape(
            MSO_SHAPE.RECTANGLE,
            _emu(rect.left),
            _emu(rect.top),
            _emu(rect.width),
            _emu(rect.height),
        )
        shape.fill.solid()
        shape.fill.fore_color.rgb = _rgb(rect.colour)
        shape.line.fill.background()
        # The default shape style adds a soft shadow (effectRef): a rule or band has none.
        style = shape._element.find(qn("p:style"))
        if style is not None:
            shape._element.remove(style)
    title, *rest = page.blocks
    # The title's box ends where its text does and has a line's room above: a reader whose fonts
    # run wider wraps the title upwards, into the margin, not over what follows it.
    heading = slide.shapes.title
    top = max(0.0, title.top - title.leading)
    heading.left, heading.top = _emu(page.left), _emu(top)
    heading.width, heading.height = _emu(page.width), _emu(title.top + title.height - top)
    _fill(heading.text_frame, [title], theme, page, anchor=MSO_ANCHOR.BOTTOM)
    # The subtitle stands with the title, above the rule; the rest is one box below it, down to
    # the page's margin (longer text runs on past it, for its author to see and edit).
    header = [block for block in rest if block.role == "subtitle"]
    if header:
        _text_box(slide, page, header, theme, bottom=header[-1].top + header[-1].height)
    for column in range(len(page.columns)):
        body = [b for b in rest if b.role != "subtitle" and b.column == column]
        if body:
            _text_box(slide, page, body, theme, bottom=max(HEIGHT - cqw(6), body[0].top + 1))
    _number(slide, n, theme, page.colours)
    if content.notes.strip():
        slide.notes_slide.notes_text_frame.text = xml_safe(content.notes)


def _text_box(
    slide: PptxSlide, page: Page, blocks: list[Block], theme: Theme, *, bottom: float
) -> None:
    """A box for ``blocks`` (all in one column), from the first one's top to ``bottom``; text
    that runs past it (fonts wider than the PDF's) is shrunk to fit by the reader."""
    offset, width = page.columns[blocks[0].column]
    top = blocks[0].top
    box = slide.shapes.add_textbox(
        _emu(page.left + offset), _emu(top), _emu(width), _emu(bottom - top)
    )
    _fill(box.text_frame, blocks, theme, page)
    box.text_frame.auto_size = MSO_AUTO_SIZE.TEXT_TO_FIT_SHAPE


def _fill(
    frame: TextFrame,
    blocks: list[Block],
    theme: Theme,
    page: Page,
    *,
    anchor: MSO_ANCHOR = MSO_ANCHOR.TOP,
) -> None:
    """One paragraph per block, sized, spaced and coloured as laid out."""
    frame.word_wrap = True
    frame.auto_size = MSO_AUTO_SIZE.NONE
    frame.vertical_anchor = anchor
    frame.margin_left = frame.margin_right = frame.margin_top = frame.margin_bottom = Emu(0)
    for index, block in enumerate(blocks):
        paragraph = frame.paragraphs[0] if index == 0 else frame.add_paragraph()  # type: ignore[no-untyped-call]
        paragraph.alignment = PP_ALIGN.CENTER if page.centred else PP_ALIGN.LEFT
        paragraph.line_spacing = Pt(block.leading)
        paragraph.space_before = Pt(0)
        paragraph.space_after = Pt(block.gap_after)
        run = paragraph.add_run()
        run.text = block.text
        font = run.font
        font.size = Pt(block.size)
        font.color.rgb = _rgb(block.colour)
        font.italic = block.role == "quote"
        if block.role == "title":
            font.name = theme.fonts.heading[0]
            font.bold = theme.title_weight >= 600
            if theme.title_case == "upper":
                font._rPr.set("cap", "all")  # shown in capitals, kept as written
        else:
            font.name = theme.fonts.body[0]
        if block.indent:
            _indent(
                paragraph,
                block,
                BULLET_MARKS[theme.bullet] if block.role == "bullet" else None,
                page.colours.accent,
            )


def _indent(paragraph: _Paragraph, block: Block, mark: str | None, colour: str) -> None:
    """Indent the paragraph; for a bullet, hang a real bullet (not a typed one) in the indent."""
    properties = paragraph._p.get_or_add_pPr()
    properties.set("marL", str(_emu(block.indent)))
    if mark is None:
        properties.set("indent", "0")
        return
    properties.set("indent", str(-_emu(block.indent)))
    bullet_colour = OxmlElement("a:buClr")
    bullet_colour.append(_srgb(colour))
    bullet = OxmlElement("a:buChar")
    bullet.set("char", mark)
    for child in (bullet_colour, bullet):
        properties.append(child)


def _background(slide: PptxSlide, colours: Colours) -> None:
    fill = slide.background.fill
    if len(colours.gradient) < 2:
        fill.solid()
        fill.fore_color.rgb = _rgb(colours.background)
        return
    fill.gradient()
    fill.gradient_angle = _GRADIENT_ANGLE
    stops = fill.gradient_stops._gsLst
    for stop in list(stops):
        stops.remove(stop)
    last = len(colours.gradient) - 1
    for index, colour in enumerate(colours.gradient):
        stop = OxmlElement("a:gs")
        stop.set("pos", str(round(100_000 * index / last)))
        stop.append(_srgb(colour))
        stops.append(stop)


def _number(slide: PptxSlide, n: int, theme: Theme, colours: Colours) -> None:
    box = slide.shapes.add_textbox(_emu(WIDTH - cqw(3) - 60), _emu(HEIGHT - 34), _emu(60), _emu(20))
    paragraph = box.text_frame.paragraphs[0]
    paragraph.alignment = PP_ALIGN.RIGHT
    run = paragraph.add_run()
    run.text = str(n)
    run.font.size = Pt(11)
    run.font.name = theme.fonts.body[0]
    run.font.color.rgb = _rgb(colours.muted)


def _srgb(colour: str) -> BaseOxmlElement:
    """``#rrggbb`` as DrawingML's colour element."""
    element = OxmlElement("a:srgbClr")
    element.set("val", colour.removeprefix("#").upper())
    return element


def _emu(points: float) -> Emu:
    return Emu(round(points * _EMU_PER_POINT))


def _rgb(colour: str) -> RGBColor:
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return RGBColor(red, green, blue)  # type: ignore[no-untyped-call]


class PptxExporter:
    media_type = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
    extension = "pptx"

    def __init__(self, themes: ThemeBook) -> None:
        self._themes = themes

    def export(self, deck: Deck, slides: Sequence[Slide]) -> bytes:
        contents = [slide.texts for slide in slides]
        return deck_to_pptx(deck.title, contents, self._themes.of(deck.brief.theme))
