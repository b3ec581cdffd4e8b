"""Each theme as CSS: the custom properties the page's slide rules read (``api/static/app.css``,
which lays slides out) and the few rules a theme's choices add. Served as ``/static/themes.css``
and inlined in the HTML export. Every value was validated when the theme was read (colours are
``#rrggbb``, font names plain words, the rest numbers or one of a few words), so nothing a theme
file holds can end a rule or start another."""

from __future__ import annotations

from collections.abc import Iterable

from presto_deck.domain.themes import Colours, Theme

__all__ = ["BAND_WIDTH", "BULLET_MARKS", "theme_stylesheet"]

#: The character each bullet style is drawn with (the PDF draws the shape instead).
BULLET_MARKS = {"disc": "•", "square": "▪", "dash": "\u2013", "arrow": "▸", "star": "★"}
#: The band down a slide's left edge, in hundredths of the slide's width.
BAND_WIDTH = 2.2


def theme_stylesheet(themes: Iterable[Theme], *, fallback: Theme | None = None) -> str:
    """The rules of each theme; with ``fallback``, that theme's also for any slide, so a slide
    drawn in a theme no longer offered (its file removed) looks like the default, not bare."""
    rules = [_theme_rules(fallback, ".slide")] if fallback is not None else []
    return "\n".join(rules + [_theme_rules(theme) for theme in themes])


def _theme_rules(theme: Theme, scope: str | None = None) -> str:
    scope = scope or f".theme--{theme.name}"
    cover = f"{scope}.slide--title, {scope}.slide--closing"
    heading = _font_stack(theme.fonts.heading, theme.fonts.heading_generic)
    body = _font_stack(theme.fonts.body, theme.fonts.body_generic)
    mark = BULLET_MARKS[theme.bullet]
    rules = [
        f"/* {theme.name}{'' if scope.startswith('.theme--') else ', for every slide'} */",
        f"{scope} {{",
        f"  {_colour_properties(theme.colors)}",
        f"  --slide-heading-font: {heading}; --slide-body-font: {body};",
        f"  --slide-title-size: {theme.sizes.title}cqw;"
        f" --slide-cover-title-size: {theme.sizes.cover_title}cqw;",
        f"  --slide-subtitle-size: {theme.sizes.subtitle}cqw;"
        f" --slide-body-size: {theme.sizes.body}cqw;",
        f"  --slide-title-weight: {theme.title_weight};"
        f" --slide-title-case: {'uppercase' if theme.title_case == 'upper' else 'none'};",
        f'  --slide-bullet: "\\{ord(mark):x}  ";',
        "}",
        f"{cover} {{ {_colour_properties(theme.on(cover=True))} }}",
    ]
    if theme.title_rule == "bar":
        rules.append(
            f'{scope} .slide__header::after {{ content: ""; width: 8cqw; height: 0.5cqw;'
            " border-radius: 1cqw; background: var(--slide-accent); margin-top: 1cqw; }"
        )
        rules.append(
            f"{scope}.slide--title .slide__header::after,"
            f" {scope}.slide--closing .slide__header::after {{ align-self: center; }}"
        )
    elif theme.title_rule == "line":
        rules.append(
            f"{scope} .slide__header {{ border-bottom: 0.2cqw solid var(--slide-accent);"
            " padding-bottom: 1.2cqw; }"
        )
    return "\n".join(rules)


def _colour_properties(colours: Colours) -> str:
    background = (
        f"linear-gradient(135deg, {', '.join(colours.gradient)})"
        if len(colours.gradient) > 1
        else colours.background
    )
    band = f"{BAND_WIDTH}cqw solid {colours.band}" if colours.band else "0 none"
    return (
        f"--slide-bg: {colours.background}; --slide-ink: {colours.ink};"
        f" --slide-muted: {colours.muted}; --slide-accent: {colours.accent};"
        f" --slide-title: {colours.title_ink}; --slide-background: {background};"
        f" --slide-band: {band};"
    )


def _font_stack(names: Iterable[str], generic: str) -> str:
    return ", ".join([*(f'"{name}"' for name in names), generic])
