"""Rendering written slide content to the HTML fragment that is stored and streamed.

The writer's content stays structured; this is the only place it becomes HTML, so themes can be
switched without asking the model again. Plain-text fields are escaped, fields that may carry
inline markup go through ``sanitize_html``, and everything else is our own fixed markup, so the
fragment is safe by construction. A theme is only a CSS class: the page's stylesheet colours it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape

from presto_deck.domain.content import LAYOUTS, Layout, SlideContent
from presto_deck.infrastructure.writers.sanitizer import sanitize_html

__all__ = ["THEMES", "ThemeRenderer"]

THEMES: tuple[str, ...] = ("default", "dark", "corporate", "playful")
_DEFAULT_THEME = THEMES[0]


class ThemeRenderer:
    """The ``SlideRenderer``: one ``<section>`` per slide, laid out by layout, themed by class."""

    def render(self, content: SlideContent, theme: str | None) -> str:
        """Render one slide. Where it stands in the deck is not part of its HTML (the slide's
        ``order`` says it), so adding, deleting or moving a slide leaves the others' HTML as is."""
        theme_name = _theme_name(theme)
        # A Struct built in code is not validated, so an unknown layout is possible here.
        layout: Layout = content.layout if content.layout in LAYOUTS else "bullets"
        return (
            f'<section class="slide slide--{layout} theme--{theme_name}" '
            f'data-theme="{theme_name}" data-layout="{layout}">'
            f"{_LAYOUT_BODIES[layout](content)}</section>"
        )


def _theme_name(theme: str | None) -> str:
    name = (theme or "").strip().lower()
    return name if name in THEMES else _DEFAULT_THEME


# -- layouts ------------------------------------------------------------------------------------


def _title_body(content: SlideContent) -> str:
    return (
        _header(content, heading="h1")
        + _block(sanitize_html(content.body), "slide__lead")
        + _bullet_list(content.bullets)
    )


def _bullets_body(content: SlideContent) -> str:
    return (
        _header(content)
        + _bullet_list(content.bullets)
        + _block(sanitize_html(content.body), "slide__lead")
    )


def _text_body(content: SlideContent) -> str:
    return (
        _header(content)
        + _block(sanitize_html(content.body), "slide__text")
        + _bullet_list(content.bullets)
    )


def _two_column_body(content: SlideContent) -> str:
    """The body beside the bullets when there is a body; otherwise the bullets split in two."""
    body = sanitize_html(content.body)
    if body.strip():
        left, right = _block(body, "slide__text"), _bullet_list(content.bullets)
    else:
        half = (len(content.bullets) + 1) // 2
        left, right = _bullet_list(content.bullets[:half]), _bullet_list(content.bullets[half:])
    return (
        _header(content)
        + '<div class="slide__columns">'
        + f'<div class="slide__column">{left}</div><div class="slide__column">{right}</div>'
        + "</div>"
    )


def _quote_body(content: SlideContent) -> str:
    """The body is the quote (or the first bullet, if the writer put it there); the subtitle
    says who said it."""
    quote, rest = sanitize_html(content.body), list(content.bullets)
    if not quote.strip() and rest:
        quote = sanitize_html(rest.pop(0))
    caption = (
        f'<figcaption class="slide__attribution">{escape(content.subtitle)}</figcaption>'
        if content.subtitle.strip()
        else ""
    )
    return (
        _header(content, with_subtitle=False)
        + f'<figure class="slide__quote"><blockquote>{quote}</blockquote>{caption}</figure>'
        + _bullet_list(rest)
    )


def _closing_body(content: SlideContent) -> str:
    return (
        _header(content)
        + _bullet_list(content.bullets)
        + _block(sanitize_html(content.body), "slide__lead")
    )


_LAYOUT_BODIES: dict[Layout, Callable[[SlideContent], str]] = {
    "title": _title_body,
    "bullets": _bullets_body,
    "text": _text_body,
    "two_column": _two_column_body,
    "quote": _quote_body,
    "closing": _closing_body,
}


# -- pieces -------------------------------------------------------------------------------------


def _header(content: SlideContent, heading: str = "h2", *, with_subtitle: bool = True) -> str:
    """Title and subtitle are plain text: escaped, never interpreted."""
    subtitle = (
        f'<p class="slide__subtitle">{escape(content.subtitle)}</p>'
        if with_subtitle and content.subtitle.strip()
        else ""
    )
    return (
        '<header class="slide__header">'
        f'<{heading} class="slide__title">{escape(content.title)}</{heading}>{subtitle}</header>'
    )


def _bullet_list(bullets: Sequence[str]) -> str:
    items = [item for item in map(sanitize_html, bullets) if item.strip()]
    if not items:
        return ""
    return '<ul class="slide__bullets">' + "".join(f"<li>{item}</li>" for item in items) + "</ul>"


def _block(markup: str, css_class: str) -> str:
    """Already sanitized markup in a div, or nothing when it is empty."""
    return f'<div class="{css_class}">{markup}</div>' if markup.strip() else ""
