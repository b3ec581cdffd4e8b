"""Each theme's colours and fonts, as the page's stylesheet draws them (``api/static/app.css``,
the ``.theme--*`` rules), for the exports that cannot read CSS."""

from __future__ import annotations

from dataclasses import dataclass

from presto_deck.infrastructure.writers.rendering import THEMES


@dataclass(frozen=True, kw_only=True)
class Palette:
    background: str
    ink: str
    muted: str
    accent: str
    heading_font: str = "Calibri"
    body_font: str = "Calibri"
    #: The title slide's own background and ink, where the theme gives it one.
    title_background: str | None = None
    title_ink: str | None = None


PALETTES: dict[str, Palette] = {
    "default": Palette(background="FFFFFF", ink="1E293B", muted="64748B", accent="2563EB"),
    "dark": Palette(
        background="0B1220", ink="F1F5F9", muted="94A3B8", accent="22D3EE", title_ink="22D3EE"
    ),
    "corporate": Palette(
        background="FFFFFF",
        ink="0F2A4A",
        muted="475569",
        accent="0F2A4A",
        heading_font="Georgia",
        title_background="0F2A4A",
        title_ink="FFFFFF",
    ),
    "playful": Palette(background="FFF7ED", ink="3B0764", muted="6B21A8", accent="F97316"),
}
assert set(PALETTES) == set(THEMES), "every theme needs its palette"


def palette_of(theme: str | None) -> Palette:
    return PALETTES.get((theme or "").strip().lower(), PALETTES["default"])
