"""Rendering written slide content to the HTML fragment that is stored and streamed.

The writer's content stays structured; this is the only place it becomes HTML, so themes can be
switched without asking the model again. Plain-text fields are escaped, fields that may carry
inline markup go through ``sanitize_html``, and everything else is our own fixed markup, so the
fragment is safe by construction. A theme is only a CSS class here: the stylesheet written from
the theme's file (``stylesheet.py``) colours it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape
from html.parser import HTMLParser

from presto_deck.domain.content import LAYOUTS, Layout, SlideContent
from presto_deck.domain.themes import ThemeBook
from presto_deck.infrastructure.writers.sanitizer import sanitize_html

__all__ = ["ThemeRenderer", "recovered_content"]


class ThemeRenderer:
    """The ``SlideRenderer``: one ``<section>`` per slide, laid out by layout, themed by class."""

    def __init__(self, themes: ThemeBook) -> None:
        self._themes = themes

    def render(self, content: SlideContent, theme: str | None) -> str:
        """Render one slide. Where it stands in the deck is not part of its HTML (the slide's
        ``order`` says it), so adding, deleting or moving a slide leaves the others' HTML as is."""
        theme_name = self._themes.of(theme).name  # one no longer known: the default
        # A Struct built in code is not validated, so an unknown layout is possible here.
        layout: Layout = content.layout if content.layout in LAYOUTS else "bullets"
        return (
            f'<section class="slide slide--{layout} theme--{theme_name}" '
            f'data-theme="{theme_name}" data-layout="{layout}">'
            f"{_LAYOUT_BODIES[layout](content)}</section>"
        )


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


def recovered_content(html: str, notes: str | None) -> SlideContent:
    """The content of a slide stored before slides kept it, read back from its HTML: enough for
    an edit to start from what the slide shows rather than from nothing. Texts keep their words,
    the body its markup; a bullet's inline markup is lost."""
    reader = _SlideReader()
    reader.feed(html)
    reader.close()
    layout: Layout = next((known for known in LAYOUTS if known == reader.layout), "bullets")
    return SlideContent(
        layout=layout,
        title=_joined(reader.title),
        subtitle=_joined(reader.subtitle),
        bullets=[escape(item, quote=False) for item in map(_joined, reader.items) if item],
        body="".join(reader.body).strip(),
        notes=notes or "",
    )


def _joined(parts: list[str]) -> str:
    return " ".join("".join(parts).split())


#: Where a rendered slide keeps its body (sanitized markup, kept as it is).
_BODY_CLASSES = frozenset({"slide__lead", "slide__text"})


class _SlideReader(HTMLParser):
    """Collects the layout, title, subtitle, list items and body of one rendered slide."""

    def __init__(self) -> None:
        super().__init__()
        self.layout = ""
        self.title: list[str] = []
        self.subtitle: list[str] = []
        self.items: list[list[str]] = []
        self.body: list[str] = []
        self._into: list[str] | None = None
        self._until: str | None = None
        self._depth = 0  # of the element whose words go ``_into``
        self._markup = False  # the body keeps its tags

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        if tag == "section" and not self.layout:
            self.layout = attributes.get("data-layout") or ""
        if self._into is not None:
            if tag == self._until:
                self._depth += 1
            if self._markup:
                self._into.append(self.get_starttag_text() or "")
            return
        target: list[str] | None = None
        if "slide__title" in classes:
            target = self.title
        elif "slide__subtitle" in classes:
            target = self.subtitle
        elif tag == "li":
            self.items.append([])
            target = self.items[-1]
        elif tag == "blockquote" or _BODY_CLASSES.intersection(classes):
            target, self._markup = self.body, True
        if target is not None:
            self._into, self._until, self._depth = target, tag, 1

    def handle_endtag(self, tag: str) -> None:
        if self._into is None:
            return
        if tag == self._until:
            self._depth -= 1
            if self._depth == 0:
                self._into = self._until = None
                self._markup = False
                return
        if self._markup:
            self._into.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        if self._into is not None:
            self._into.append(escape(data, quote=False) if self._markup else data)
