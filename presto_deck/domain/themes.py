"""A theme: the look of a deck as data (colours, fonts, type scale, title treatment).

The page's slides, the PPTX and the PDF are all drawn from one ``Theme``, so a deck looks alike
in each. Themes come from files (the built-in ones ship with the package; a team adds its own in
the folder ``PRESTO_THEMES_DIR`` names), so every field is validated as it is read, and every
value is of a kind that cannot break out of the stylesheet it is written into.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Annotated, Literal

import msgspec

from presto_deck.domain.content import DEFAULT_THEME

__all__ = [
    "Bullet",
    "Colours",
    "Cover",
    "Fonts",
    "Generic",
    "Sizes",
    "Theme",
    "ThemeBook",
    "TitleCase",
    "TitleRule",
]

#: ``#rrggbb``: what CSS, PowerPoint and PDF all draw alike.
COLOUR_PATTERN = r"^#[0-9A-Fa-f]{6}\Z"
Colour = Annotated[str, msgspec.Meta(pattern=COLOUR_PATTERN)]
#: A font family's name: letters, digits, spaces and hyphens, nothing a stylesheet would read as
#: syntax.
FONT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 -]{0,47}\Z"
FontName = Annotated[str, msgspec.Meta(pattern=FONT_NAME_PATTERN)]
#: Words for people: no control characters or direction overrides, not blank.
WORDS_PATTERN = r"^(?=.*\S)[^\x00-\x1f\x7f\u202a-\u202e\u2066-\u2069]*\Z"
#: What a reader without the named fonts falls back to; the PDF draws in its standard font.
Generic = Literal["serif", "sans-serif", "monospace"]
#: A size in hundredths of the slide's width (the page's ``cqw``): on a 960 pt page, 1 is 9.6 pt.
Size = Annotated[float, msgspec.Meta(ge=0.8, le=12)]
Bullet = Literal["disc", "square", "dash", "arrow", "star"]
#: Under a slide's title: a short bar in the accent colour, a hairline across, or nothing.
TitleRule = Literal["bar", "line", "none"]
TitleCase = Literal["as-written", "upper"]


class Colours(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    background: Colour
    ink: Colour
    muted: Colour
    accent: Colour
    #: The titles' colour, if not the ink's.
    title: Colour | None = None
    #: A background that runs from the top left to the bottom right through these colours.
    gradient: Annotated[list[Colour], msgspec.Meta(max_length=3)] = msgspec.field(
        default_factory=list
    )
    #: A band down the slide's left edge.
    band: Colour | None = None

    def __post_init__(self) -> None:
        if len(self.gradient) == 1:
            raise ValueError("a gradient needs 2 or 3 colours (or none)")

    @property
    def title_ink(self) -> str:
        return self.title or self.ink


class Cover(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How the title and closing slides differ from the others (what is not given stays)."""

    background: Colour | None = None
    ink: Colour | None = None
    muted: Colour | None = None
    accent: Colour | None = None
    title: Colour | None = None
    band: Colour | None = None


class Fonts(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Font families in the order to try them; ``generic`` is what every reader has."""

    heading: Annotated[list[FontName], msgspec.Meta(min_length=1, max_length=6)]
    body: Annotated[list[FontName], msgspec.Meta(min_length=1, max_length=6)]
    heading_generic: Generic = "sans-serif"
    body_generic: Generic = "sans-serif"


class Sizes(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    title: Size = 4.2
    cover_title: Size = 6.0
    subtitle: Size = 2.4
    body: Size = 2.6


class Theme(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str = ""  # the file's name; set as it is read
    label: Annotated[str, msgspec.Meta(min_length=1, max_length=40, pattern=WORDS_PATTERN)]
    description: Annotated[str, msgspec.Meta(max_length=200, pattern=WORDS_PATTERN)] = ""
    colors: Colours
    cover: Cover = Cover()
    fonts: Fonts
    sizes: Sizes = Sizes()
    title_weight: Annotated[int, msgspec.Meta(ge=100, le=900, multiple_of=100)] = 700
    title_case: TitleCase = "as-written"
    title_rule: TitleRule = "bar"
    bullet: Bullet = "disc"

    def on(self, *, cover: bool) -> Colours:
        """The colours of a slide: a cover's (title or closing) where the theme gives them."""
        if not cover:
            return self.colors
        given = {
            name: value
            for name, value in msgspec.structs.asdict(self.cover).items()
            if value is not None
        }
        if "background" in given:
            given["gradient"] = []  # a cover's own background is plain
        if "ink" in given and "title" not in given:
            given["title"] = None  # a cover's titles are in its own ink
        return msgspec.structs.replace(self.colors, **given)


class ThemeBook(Mapping[str, Theme]):
    """The themes a deck may be drawn in, by name; an unknown name is drawn in the default."""

    def __init__(self, themes: Mapping[str, Theme]) -> None:
        if DEFAULT_THEME not in themes:
            raise ValueError(f"there must be a theme named {DEFAULT_THEME!r}")
        # The default first, then the others by name: the order a user is offered them in.
        ordered = sorted(themes, key=lambda name: (name != DEFAULT_THEME, name))
        self._themes = {name: themes[name] for name in ordered}

    def __getitem__(self, name: str) -> Theme:
        return self._themes[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._themes)

    def __len__(self) -> int:
        return len(self._themes)

    def named(self, name: str) -> str | None:
        """The name ``name`` is offered under (case and spaces aside), or None if none is."""
        key = name.strip().lower()
        return key if key in self._themes else None

    def of(self, name: str | None) -> Theme:
        """The theme named ``name``, or the default for None or a name no longer known."""
        return self._themes[self.named(name or "") or DEFAULT_THEME]
