"""Written content becomes one themed, safe ``<section>`` per slide."""

from __future__ import annotations

import re

import msgspec
import pytest

from presto_deck.application.ports import SlideRenderer
from presto_deck.domain.content import LAYOUTS, Layout, SlideContent
from presto_deck.infrastructure.writers.rendering import ThemeRenderer, recovered_content
from tests.support.themes import THEME_BOOK, THEMES
from tests.unit.test_sanitizer import HOSTILE_INPUTS, assert_inert

_CONTENT = SlideContent(
    title="Solar in Korea",
    subtitle="Where we stand",
    bullets=["Capacity <strong>doubled</strong>", "Storage lags", "Grid needs work"],
    body="<p>The short version.</p>",
)


def _render(content: SlideContent = _CONTENT, theme: str | None = "default") -> str:
    return ThemeRenderer(THEME_BOOK).render(content, theme)


def test_theme_renderer_is_a_slide_renderer() -> None:
    renderer: SlideRenderer = ThemeRenderer(THEME_BOOK)

    assert renderer.render(_CONTENT, None).startswith("<section")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_renders_its_title_and_content(layout: Layout) -> None:
    html = _render(msgspec.structs.replace(_CONTENT, layout=layout))

    assert html.startswith(f'<section class="slide slide--{layout} theme--default"')
    assert f'data-layout="{layout}"' in html
    assert "Solar in Korea" in html
    assert "Capacity <strong>doubled</strong>" in html
    assert "The short version." in html
    assert html.endswith("</section>")


def test_the_title_layout_uses_the_main_heading() -> None:
    html = _render(SlideContent(layout="title", title="Deck", subtitle="Sub"))

    assert '<h1 class="slide__title">Deck</h1>' in html
    assert '<p class="slide__subtitle">Sub</p>' in html


def test_two_columns_split_the_bullets_when_there_is_no_body() -> None:
    content = SlideContent(layout="two_column", title="T", bullets=["a", "b", "c", "d"])

    columns = re.findall(r'<div class="slide__column">(.*?)</div>', _render(content))

    assert columns == [
        '<ul class="slide__bullets"><li>a</li><li>b</li></ul>',
        '<ul class="slide__bullets"><li>c</li><li>d</li></ul>',
    ]


def test_a_quote_without_a_body_quotes_its_first_bullet_and_credits_the_subtitle() -> None:
    content = SlideContent(layout="quote", title="T", subtitle="Ada", bullets=["Be bold."])

    html = _render(content)

    assert "<blockquote>Be bold.</blockquote>" in html
    assert '<figcaption class="slide__attribution">Ada</figcaption>' in html


def test_a_slides_html_does_not_depend_on_where_it_stands_in_the_deck() -> None:
    # Moving, adding or deleting a slide must not make the other slides' HTML stale.
    html = ThemeRenderer(THEME_BOOK).render(_CONTENT, None)

    assert "data-position" not in html
    assert "slide__position" not in html


@pytest.mark.parametrize("theme", THEMES)
def test_each_theme_is_a_class_and_a_data_attribute(theme: str) -> None:
    html = _render(theme=theme)

    assert f"theme--{theme}" in html
    assert f'data-theme="{theme}"' in html
    assert "style=" not in html


@pytest.mark.parametrize("theme", [None, "", "neon", 'dark" onload="alert(1)', "../dark"])
def test_an_unknown_or_missing_theme_falls_back_to_default(theme: str | None) -> None:
    html = _render(theme=theme)

    assert 'class="slide slide--bullets theme--default" data-theme="default"' in html


def test_theme_names_are_matched_without_regard_to_case_or_spacing() -> None:
    assert 'data-theme="dark"' in _render(theme="  Dark ")


def test_an_unknown_layout_renders_as_bullets() -> None:
    content = SlideContent(layout="marquee", title="T", bullets=["a"])  # type: ignore[arg-type]

    assert _render(content).startswith('<section class="slide slide--bullets')


def test_a_title_with_markup_is_escaped_not_interpreted() -> None:
    content = SlideContent(title="<script>alert(1)</script>", subtitle='"><img src=x onerror=1>')

    html = _render(content)

    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&quot;&gt;&lt;img src=x onerror=1&gt;" in html
    assert_inert(html)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("markup", HOSTILE_INPUTS)
def test_hostile_bullets_and_body_are_sanitized_in_every_layout(
    layout: Layout, markup: str
) -> None:
    content = SlideContent(
        layout=layout, title=markup, subtitle=markup, bullets=[markup, "safe"], body=markup
    )

    assert_inert(_render(content))


def test_bullets_that_sanitize_to_nothing_are_left_out() -> None:
    content = SlideContent(title="T", bullets=["<script>alert(1)</script>", "kept"])

    assert '<ul class="slide__bullets"><li>kept</li></ul>' in _render(content)


def test_empty_parts_leave_no_empty_markup() -> None:
    html = _render(SlideContent(title="Only a title"))

    assert "<ul" not in html
    assert "slide__subtitle" not in html
    assert "slide__lead" not in html


@pytest.mark.parametrize("layout", ["bullets", "title", "two_column", "closing"])
def test_the_texts_of_a_rendered_slide_can_be_read_back(layout: str) -> None:
    # Slides stored before slides kept their content are edited from what their HTML shows.
    content = SlideContent(
        layout=layout,  # type: ignore[arg-type]
        title="Tides & <moons>",
        subtitle="Why",
        bullets=["Cheap <strong>power</strong>", "Predictable"],
        body="<p>Moon &amp; <em>sun</em></p><div>nested</div>",
    )

    back = recovered_content(ThemeRenderer(THEME_BOOK).render(content, "dark"), "notes")

    assert back.layout == layout
    assert back.title == "Tides & <moons>"
    assert back.subtitle == "Why"
    assert back.bullets == ["Cheap power", "Predictable"]
    assert back.notes == "notes"
    assert back.body == "<p>Moon &amp; <em>sun</em></p><div>nested</div>"
