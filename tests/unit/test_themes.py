"""Themes as data: read from files, checked as they are read, one definition drawn alike by the
page's stylesheet, the PDF and the PPTX, each theme visibly its own."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import pypdfium2 as pdfium
import pytest
from pptx import Presentation

from presto_deck.domain.content import SlideContent
from presto_deck.infrastructure.export.layout import arrange
from presto_deck.infrastructure.export.pdf import deck_to_pdf
from presto_deck.infrastructure.export.pptx import deck_to_pptx
from presto_deck.infrastructure.themes import load_themes
from presto_deck.infrastructure.writers.stylesheet import theme_stylesheet
from presto_deck.settings import SettingsError
from tests.support.themes import ACME_THEME, THEME_BOOK, THEMES

_SLIDES = [
    SlideContent(layout="title", title="Tidal energy", subtitle="A pilot for island towns"),
    SlideContent(title="Why now", bullets=["Costs fell", "Grants open", "Towns asked"]),
    SlideContent(layout="text", title="Context", body="<p>One paragraph.</p><p>Another.</p>"),
]


def _folder(tmp_path: Path, **files: str) -> str:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return str(tmp_path)


def test_the_built_in_themes_are_read_with_the_default_first() -> None:
    assert THEMES == ("default", "corporate", "dark", "playful")
    assert [theme.label for theme in THEME_BOOK.values()] == [
        "Default",
        "Corporate",
        "Dark",
        "Playful",
    ]
    assert THEME_BOOK.of(None).name == THEME_BOOK.of("no-such").name == "default"
    assert THEME_BOOK.of(" Dark ").name == "dark"


def test_a_teams_folder_adds_themes_and_replaces_a_built_in_one(tmp_path: Path) -> None:
    renamed = ACME_THEME.replace('label = "Acme"', 'label = "Our dark"')
    folder = _folder(tmp_path, **{"acme.toml": ACME_THEME, "dark.toml": renamed, "notes.md": "# x"})

    themes = load_themes(folder)

    assert list(themes) == ["default", "acme", "corporate", "dark", "playful"]
    assert themes["acme"].colors.accent == "#b91c1c"
    assert themes["acme"].sizes.title == 4.2  # what a file leaves out has the default
    assert themes["dark"].label == "Our dark"


def test_a_theme_can_be_json(tmp_path: Path) -> None:
    json_theme = (
        '{"label": "Mono", "colors": {"background": "#000000", "ink": "#ffffff",'
        ' "muted": "#aaaaaa", "accent": "#ffffff"},'
        ' "fonts": {"heading": ["Menlo"], "body": ["Menlo"], "body_generic": "monospace"}}'
    )
    themes = load_themes(_folder(tmp_path, **{"mono.json": json_theme}))
    assert themes["mono"].fonts.body_generic == "monospace"


@pytest.mark.parametrize(
    ("file_name", "text", "message"),
    [
        (
            "acme.toml",
            ACME_THEME.replace('"#b91c1c"', '"red"'),
            "Expected a colour written #rrggbb - at `$.colors.accent`",
        ),
        (
            "acme.toml",
            ACME_THEME.replace('["Gill Sans"]', '["Gill\\"; } body { x"]'),
            "Expected a font name of letters, digits, spaces, hyphens - at `$.fonts.body[0]`",
        ),
        ("acme.toml", ACME_THEME + "\nshadow = true\n", "unknown field `shadow`"),
        ("acme.toml", ACME_THEME.replace('bullet = "dash"', 'bullet = "heart"'), "$.bullet"),
        ("acme.toml", ACME_THEME.replace("[fonts]", "[fonts"), "not valid TOML"),
        ("acme.toml", ACME_THEME.replace('label = "Acme"', ""), "missing required field `label`"),
        ("Acme Theme.toml", ACME_THEME, "lower-case letters, digits and hyphens"),
        ("big.toml", "#" * 70_000, "larger than 64 KiB"),
    ],
)
def test_a_bad_theme_file_is_refused_in_one_line_that_names_the_file_and_the_fault(
    tmp_path: Path, file_name: str, text: str, message: str
) -> None:
    folder = _folder(tmp_path, **{file_name: text})

    with pytest.raises(SettingsError) as refused:
        load_themes(folder)

    said = str(refused.value)
    assert said.startswith(f"PRESTO_THEMES_DIR: {folder}/{file_name}: ")
    assert message in said
    assert "\n" not in said


def test_a_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="is not a folder"):
        load_themes(str(tmp_path / "nowhere"))


def test_the_stylesheet_sets_each_themes_properties_and_its_cover() -> None:
    css = theme_stylesheet(THEME_BOOK.values())

    for theme in THEME_BOOK.values():
        assert f".theme--{theme.name} {{" in css
        assert f".theme--{theme.name}.slide--title, .theme--{theme.name}.slide--closing" in css
        assert f"--slide-ink: {theme.colors.ink};" in css
    assert '--slide-heading-font: "Georgia", "Times New Roman", serif;' in css
    assert "--slide-background: linear-gradient(135deg, #fde68a, #fbcfe8, #c4b5fd);" in css
    assert "--slide-title-case: uppercase;" in css
    assert css.count("{") == css.count("}")


def test_the_pdf_and_the_pptx_follow_one_layout() -> None:
    theme = THEME_BOOK["corporate"]
    page = arrange(_SLIDES[1], theme)
    presentation = Presentation(io.BytesIO(deck_to_pptx("Deck", _SLIDES, theme)))
    title = presentation.slides[1].shapes.title

    title_block = page.blocks[0]
    # The title's box ends where its text does (and has a line's room above, to wrap upwards).
    bottom = title_block.top + title_block.height
    assert title.top.pt + title.height.pt == pytest.approx(bottom, abs=0.1)
    assert title.left.pt == pytest.approx(page.left, abs=0.1)
    assert title.text_frame.paragraphs[0].runs[0].font.size.pt == pytest.approx(title_block.size)
    band, rule = page.shapes
    assert (band.left, band.width) == (0, pytest.approx(21.12))
    assert rule.colour == theme.colors.accent
    assert page.left == pytest.approx(band.width + 67.2)


def test_text_too_long_for_a_page_shrinks_then_is_cut_in_the_pdf_only() -> None:
    crowded = SlideContent(title="Crowded", bullets=[f"Point {n} " * 12 for n in range(40)])

    cut = arrange(crowded, THEME_BOOK["default"])
    kept = arrange(crowded, THEME_BOOK["default"], cut=False)

    assert cut.cut
    assert cut.blocks[-1].lines[-1].endswith("…")
    assert not kept.cut
    assert len(kept.blocks) == 41
    assert kept.blocks[1].size < THEME_BOOK["default"].sizes.body * 9.6


@pytest.mark.parametrize(("one", "other"), list(itertools.combinations(THEMES, 2)))
def test_every_two_themes_look_different_in_the_pdf_and_the_pptx(one: str, other: str) -> None:
    def pdf_page(theme: str) -> bytes:
        pdf = pdfium.PdfDocument(deck_to_pdf("Deck", _SLIDES, THEME_BOOK[theme]))
        return pdf[1].render(scale=0.25).to_pil().tobytes()

    def pptx_look(theme: str) -> tuple[object, ...]:
        deck = Presentation(io.BytesIO(deck_to_pptx("Deck", _SLIDES, THEME_BOOK[theme])))
        slide = deck.slides[1]
        run = slide.shapes.title.text_frame.paragraphs[0].runs[0]
        background = slide.background.fill._xPr.xml  # type: ignore[attr-defined]
        return (background, run.font.name, run.font.size, str(run.font.color.rgb))

    assert pdf_page(one) != pdf_page(other)
    assert pptx_look(one) != pptx_look(other)


def test_the_example_in_the_themes_guide_is_a_theme(tmp_path: Path) -> None:
    guide = (Path(__file__).parents[2] / "docs" / "themes.md").read_text()
    example = guide.split("```toml\n", 1)[1].split("```", 1)[0]

    themes = load_themes(_folder(tmp_path, **{"acme.toml": example}))

    acme = themes["acme"]
    assert acme.on(cover=True).background == "#7f1d1d"
    assert acme.on(cover=True).gradient == []
    assert acme.colors.gradient == ["#fefce8", "#fde68a"]
    assert "Expected a colour written #rrggbb - at `$.colors.accent`" in guide
