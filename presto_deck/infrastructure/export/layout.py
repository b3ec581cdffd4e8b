"""Where each piece of a slide goes on a 16:9 page, as the page's stylesheet places it: the same
padding, type scale, gaps and vertical centring, in points (1 hundredth of the width = 9.6 pt).
The PDF draws these blocks line by line; the PPTX places its title and text boxes at them, so
the three formats look alike. Lines are measured with the PDF's fonts (``fonts.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Literal

from presto_deck.domain.content import SlideContent
from presto_deck.domain.themes import Colours, Theme
from presto_deck.infrastructure.export.fonts import standard_font, text_width, wrapped
from presto_deck.infrastructure.export.text import paragraphs, plain, xml_safe
from presto_deck.infrastructure.writers.stylesheet import BAND_WIDTH

__all__ = ["HEIGHT", "WIDTH", "Block", "Page", "arrange", "cqw"]

WIDTH, HEIGHT = 960.0, 540.0  # points: 16:9, 13.333 by 7.5 inches

Role = Literal["title", "subtitle", "bullet", "paragraph", "quote"]


def cqw(hundredths: float) -> float:
    """A length the stylesheet gives in hundredths of the slide's width, in points."""
    return hundredths * WIDTH / 100


_TOP, _SIDE, _BOTTOM = cqw(5), cqw(7), cqw(6)
_HEADER_GAP, _SECTION_GAP, _ITEM_GAP = cqw(0.8), cqw(2.4), cqw(1)
_TITLE_LEADING, _BODY_LEADING, _QUOTE_LEADING = 1.15, 1.4, 1.3
_BULLET_INDENT = cqw(3)
_COLUMN_GAP = cqw(4)
_QUOTE_SCALE = 1.3
#: The rule under a title: a bar (a gap, then short and thick) or a line (padding, then thin).
_BAR = (cqw(1), cqw(8), cqw(0.5))
_LINE = (cqw(1.2), cqw(0.2))
#: Body sizes tried, largest first, until the slide fits; past the last, the rest is cut.
_SCALES = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.45, 0.4, 0.35, 0.3)
#: A title longer than this many lines is cut (with "…") in the PDF.
_TITLE_LINES = 5


@dataclass(frozen=True)
class Block:
    """One paragraph, wrapped: its first line's top is ``top`` points below the page's top."""

    role: Role
    text: str
    lines: tuple[str, ...]
    font: str
    size: float
    leading: float  # points from one line's top to the next
    colour: str
    top: float = 0.0
    indent: float = 0.0
    gap_after: float = 0.0
    #: Which of the page's columns it is in (two for a two-column slide, else one).
    column: int = 0

    @property
    def height(self) -> float:
        return len(self.lines) * self.leading


@dataclass(frozen=True)
class Rect:
    left: float
    top: float
    width: float
    height: float
    colour: str


@dataclass(frozen=True)
class Page:
    colours: Colours
    left: float  # where the text starts (after a band)
    width: float  # the text's width
    #: Each column's offset from ``left`` and width: one, or two side by side.
    columns: tuple[tuple[float, float], ...]
    centred: bool
    blocks: tuple[Block, ...]
    #: The band down the left edge and the rule under the title, where the theme draws them.
    shapes: tuple[Rect, ...]
    #: Whether text had to be cut to fit the page (never for ``cut=False``).
    cut: bool


def arrange(content: SlideContent, theme: Theme, *, cut: bool = True) -> Page:
    """The slide laid out at the largest body size at which it fits; with ``cut``, what still
    does not fit at the smallest is left out (its last line ending in an ellipsis)."""
    cover = content.layout in ("title", "closing")
    colours = theme.on(cover=cover)
    band = cqw(BAND_WIDTH) if colours.band else 0.0
    left, width = band + _SIDE, WIDTH - band - 2 * _SIDE
    columns = _columns(content, width)
    room = HEIGHT - _TOP - _BOTTOM
    rule_height = _rule_height(theme)
    words = _Words.of(content)  # sanitized and measured once, whatever the sizes tried

    def at(scale: float) -> tuple[list[Block], list[list[Block]], float]:
        # A title shrinks less than the text under it, and only once that text has shrunk.
        title_scale = max(scale, 0.6)
        header = _spaced(_header(content, words, theme, colours, width, title_scale, cover=cover))
        body = _body(content, words, theme, colours, columns, scale, cover=cover)
        body_height = max((_stacked_height(column) for column in body), default=0.0)
        height = _stacked_height(header) + rule_height + body_height
        return header, body, height + (_SECTION_GAP if body_height else 0.0)

    # The largest scale that fits (smaller text is never taller): a binary search.
    low, high = 0, len(_SCALES) - 1
    while low < high:
        middle = (low + high) // 2
        if at(_SCALES[middle])[2] <= room:
            high = middle
        else:
            low = middle + 1
    header, body, height = at(_SCALES[low])
    blocks, y = [], _TOP + max(0.0, (room - height) / 2)
    for block in header:
        blocks.append(replace(block, top=y))
        y += block.height + block.gap_after
    shapes = []
    if band:
        shapes.append(Rect(0, 0, band, HEIGHT, colours.band or colours.accent))
    if rule := _rule(theme, colours, left, width, y, header[0], cover=cover):
        shapes.append(rule)
    y += rule_height + _SECTION_GAP
    overflowed = False
    for column in body:
        placed, column_cut = _placed(column, y, cut=cut)
        blocks += placed
        overflowed |= column_cut
    return Page(
        colours=colours,
        left=left,
        width=width,
        columns=tuple(columns),
        centred=cover,
        blocks=tuple(blocks),
        shapes=tuple(shapes),
        cut=overflowed,
    )


def _columns(content: SlideContent, width: float) -> list[tuple[float, float]]:
    """One column, or two side by side for a two-column slide (as the stylesheet's grid)."""
    if content.layout != "two_column":
        return [(0.0, width)]
    half = (width - _COLUMN_GAP) / 2
    return [(0.0, half), (half + _COLUMN_GAP, half)]


def _placed(column: list[Block], top: float, *, cut: bool) -> tuple[list[Block], bool]:
    """A column's blocks stacked from ``top``; with ``cut``, only what fits the page."""
    placed: list[Block] = []
    y = top
    for block in column:
        block = replace(block, top=y)
        if cut and y + block.height > HEIGHT - _BOTTOM:
            count = int((HEIGHT - _BOTTOM - y) // block.leading)
            if count > 0:
                placed.append(_ending_in_ellipsis(replace(block, lines=block.lines[:count])))
            elif placed:  # not one line of it fits: the cut shows at the end of the one above
                placed[-1] = _ending_in_ellipsis(placed[-1])
            return placed, True
        placed.append(block)
        y += block.height + block.gap_after
    return placed, False


def _spaced(header: Iterator[Block]) -> list[Block]:
    """The header's blocks, the stylesheet's gap between each and the next."""
    blocks = [replace(block, gap_after=_HEADER_GAP) for block in header]
    blocks[-1] = replace(blocks[-1], gap_after=0.0)
    return blocks


@dataclass(frozen=True)
class _Words:
    """A slide's text as the exports write it: plain, XML-safe, paragraphs apart."""

    subtitle: str
    bullets: list[str]
    body: list[str]

    @classmethod
    def of(cls, content: SlideContent) -> _Words:
        bullets = [text for text in map(plain, content.bullets) if text]
        return cls(plain(content.subtitle), bullets, paragraphs(content.body))


def _header(
    content: SlideContent,
    words: _Words,
    theme: Theme,
    colours: Colours,
    width: float,
    scale: float,
    *,
    cover: bool,
) -> Iterator[Block]:
    title = xml_safe(" ".join(content.title.split()))
    if theme.title_case == "upper":
        title = title.upper()
    size = cqw(theme.sizes.cover_title if cover else theme.sizes.title) * scale
    font = standard_font(theme.fonts.heading_generic, bold=theme.title_weight >= 600)
    lines = _at_most(_TITLE_LINES, wrapped(title, font, size, width))
    yield Block("title", title, lines, font, size, size * _TITLE_LEADING, colours.title_ink)
    subtitle = words.subtitle
    if subtitle and content.layout != "quote":  # a quote's subtitle is its attribution
        size = cqw(theme.sizes.subtitle) * scale
        font = standard_font(theme.fonts.body_generic)
        lines = tuple(wrapped(subtitle, font, size, width))
        yield Block("subtitle", subtitle, lines, font, size, size * _BODY_LEADING, colours.muted)


def _body(
    content: SlideContent,
    words: _Words,
    theme: Theme,
    colours: Colours,
    columns: list[tuple[float, float]],
    scale: float,
    *,
    cover: bool,
) -> list[list[Block]]:
    """The slide's paragraphs under its header, column by column, in the order its layout
    shows them."""
    size = cqw(theme.sizes.body) * scale
    regular = standard_font(theme.fonts.body_generic)
    bullets, body = words.bullets, words.body

    def paragraph(
        role: Role, text: str, colour: str, *, indent: float = 0.0, column: int = 0
    ) -> Block:
        lines = tuple(wrapped(text, regular, size, columns[column][1] - indent))
        gap = _ITEM_GAP * scale
        leading = size * _BODY_LEADING
        return Block(role, text, lines, regular, size, leading, colour, 0, indent, gap, column)

    def bullet_blocks(items: list[str], column: int = 0) -> list[Block]:
        indent = 0.0 if cover else _BULLET_INDENT * scale
        return [
            paragraph("bullet", text, colours.ink, indent=indent, column=column) for text in items
        ]

    def body_blocks(column: int = 0) -> list[Block]:
        return [paragraph("paragraph", text, colours.muted, column=column) for text in body]

    match content.layout:
        case "two_column" if body:
            return [body_blocks(), bullet_blocks(bullets, 1)]
        case "two_column":
            half = (len(bullets) + 1) // 2
            return [bullet_blocks(bullets[:half]), bullet_blocks(bullets[half:], 1)]
        case "title" | "text":
            return [body_blocks() + bullet_blocks(bullets)]
        case "quote":
            return [
                _quote(words, theme, colours, columns[0][1], scale)
                + bullet_blocks(bullets if body else bullets[1:])
            ]
        case _:
            return [bullet_blocks(bullets) + body_blocks()]


def _quote(
    words: _Words, theme: Theme, colours: Colours, width: float, scale: float
) -> list[Block]:
    """The quote (the body, or the first bullet if the writer put it there), a size up and in
    italics, and who said it (the subtitle)."""
    size = cqw(theme.sizes.body) * scale
    quote_size = size * _QUOTE_SCALE
    italic = standard_font(theme.fonts.body_generic, italic=True)
    regular = standard_font(theme.fonts.body_generic)
    gap = _ITEM_GAP * scale
    blocks = [
        Block(
            "quote",
            text,
            tuple(wrapped(text, italic, quote_size, width - _BULLET_INDENT)),
            italic,
            quote_size,
            quote_size * _QUOTE_LEADING,
            colours.ink,
            0,
            _BULLET_INDENT,
            gap,
        )
        for text in (words.body or words.bullets[:1])
    ]
    if attribution := words.subtitle:
        lines = tuple(wrapped(attribution, regular, size, width - _BULLET_INDENT))
        blocks.append(
            Block(
                "paragraph",
                attribution,
                lines,
                regular,
                size,
                size * _BODY_LEADING,
                colours.muted,
                0,
                _BULLET_INDENT,
                gap,
            )
        )
    return blocks


def _rule_height(theme: Theme) -> float:
    match theme.title_rule:
        case "bar":
            return _HEADER_GAP + _BAR[0] + _BAR[2]
        case "line":
            return _LINE[0] + _LINE[1]
        case _:
            return 0.0


def _rule(
    theme: Theme,
    colours: Colours,
    left: float,
    width: float,
    y: float,
    title: Block,
    *,
    cover: bool,
) -> Rect | None:
    match theme.title_rule:
        case "bar":
            _, bar_width, bar_height = _BAR
            x = left + (width - bar_width) / 2 if cover else left
            return Rect(x, y + _HEADER_GAP + _BAR[0], bar_width, bar_height, colours.accent)
        case "line" if cover:  # a centred header is as wide as its widest line
            line = max(text_width(text, title.font, title.size) for text in title.lines)
            line = min(width, line)
            return Rect(left + (width - line) / 2, y + _LINE[0], line, _LINE[1], colours.accent)
        case "line":
            return Rect(left, y + _LINE[0], width, _LINE[1], colours.accent)
        case _:
            return None


def _stacked_height(blocks: list[Block]) -> float:
    if not blocks:
        return 0.0
    return sum(block.height + block.gap_after for block in blocks) - blocks[-1].gap_after


def _at_most(count: int, lines: Iterator[str]) -> tuple[str, ...]:
    """The first ``count`` lines, the last of them marked with an ellipsis if more followed."""
    kept = [line for _, line in zip(range(count + 1), lines, strict=False)]
    if len(kept) > count:
        kept = kept[:count]
        kept[-1] = kept[-1].rstrip() + " …"
    return tuple(kept)


def _ending_in_ellipsis(block: Block) -> Block:
    lines = list(block.lines)
    lines[-1] = lines[-1].rstrip() + " …"
    return replace(block, lines=tuple(lines))
