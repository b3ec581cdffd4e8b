"""Themes as data: read from files, checked as they are read, one definition drawn alike by the
page's stylesheet, the PDF and the PPTX, each theme visibly its own."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import msgspec
import pypdfium2 as pdfium
import pytest
from pptx import Presentation
from pptx.enum.text import MSO_AUTO_SIZE
from pptx.oxml.ns import qn

from presto_deck.domain.content import SlideContent
from presto_deck.domain.themes import Cover
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


def test_a_cover_in_its_own_ink_has_titles_in_it_too() -> None:
    theme = load_themes()["default"]
    own = msgspec.structs.replace(
        theme,
        colors=msgspec.structs.replace(theme.colors, title="#7f1d1d"),
        cover=Cover(background="#7f1d1d", ink="#ffffff"),
    )

    assert own.on(cover=True).title_ink == "#ffffff"
    assert own.on(cover=False).title_ink == "#7f1d1d"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (ACME_THEME.replace('bullet = "dash"', 'bullet = "heart"'), "(one of: disc, square"),
        (
            ACME_THEME.replace('heading_generic = "serif"', 'heading_generic = "fantasy"'),
            "(one of: serif, sans-serif, monospace)",
        ),
        (
            ACME_THEME.replace('accent = "#b91c1c"', 'accent = "#b91c1c"\ngradient = ["#000000"]'),
            "a gradient needs 2 or 3 colours (or none) - at `$.colors`",
        ),
    ],
    ids=["bullet", "generic family", "one-colour gradient"],
)
def test_a_wrong_word_or_gradient_is_explained(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load_themes(_folder(tmp_path, **{"acme.toml": text}))

    assert message in str(refused.value)


def test_hidden_and_other_files_are_passed_over_and_a_theme_in_two_files_is_refused(
    tmp_path: Path,
) -> None:
    folder = _folder(
        tmp_path,
        **{"._acme.toml": "\x00\x01", "notes.txt": "x", "acme.TOML": ACME_THEME},
    )
    assert "acme" in load_themes(folder)

    (tmp_path / "acme.json").write_text("{}")
    with pytest.raises(SettingsError, match=r"the theme acme is also in acme\.TOML; keep one"):
        load_themes(folder)


def test_a_slide_in_a_theme_no_longer_offered_is_drawn_in_the_default() -> None:
    css = theme_stylesheet(THEME_BOOK.values(), fallback=THEME_BOOK.of(None))

    first_rule = css.split("}", 1)[0]
    assert first_rule.startswith("/* default, for every slide */\n.slide {")
    assert f"--slide-accent: {THEME_BOOK['default'].colors.accent};" in first_rule


def test_a_two_column_slide_has_two_columns_in_the_pdf_and_the_pptx() -> None:
    slide = SlideContent(
        layout="two_column",
        title="Before and after",
        body="<p>The old way.</p>",
        bullets=["Faster", "Cheaper"],
    )
    page = arrange(slide, THEME_BOOK["default"])
    deck = Presentation(io.BytesIO(deck_to_pptx("Deck", [slide], THEME_BOOK["default"])))

    (left, left_width), (right, _) = page.columns
    assert left == 0
    assert right == pytest.approx(left_width + 38.4)
    assert {b.text: b.column for b in page.blocks[1:]} == {
        "The old way.": 0,
        "Faster": 1,
        "Cheaper": 1,
    }
    boxes = [s for s in deck.slides[0].shapes if s.has_text_frame and s.text_frame.text]
    body = sorted((box.left.pt, box.text_frame.text) for box in boxes[1:-1])  # not title, number
    assert [text for _, text in body] == ["The old way.", "Faster\nCheaper"]
    assert body[1][0] == pytest.approx(page.left + right, abs=0.1)


def test_a_centred_title_has_a_line_as_wide_as_it_not_the_page() -> None:
    theme = THEME_BOOK["corporate"]
    cover = arrange(SlideContent(layout="closing", title="Thank you"), theme)
    inner = arrange(SlideContent(title="Thank you"), theme)

    cover_line, inner_line = cover.shapes[-1], inner.shapes[-1]
    assert cover_line.width < inner_line.width / 3
    assert cover_line.left + cover_line.width / 2 == pytest.approx(cover.left + cover.width / 2)


def test_the_pptx_shapes_cast_no_shadow_and_text_shrinks_to_its_box() -> None:
    deck = Presentation(io.BytesIO(deck_to_pptx("Deck", _SLIDES, THEME_BOOK["corporate"])))
    slide = deck.slides[1]

    drawn = [shape for shape in slide.shapes if not shape.has_text_frame or not shape.text]
    assert drawn
    assert all(shape._element.find(qn("p:style")) is None for shape in drawn)
    body = next(shape for shape in slide.shapes if shape.has_text_frame and "Costs" in shape.text)
    assert body.text_frame.auto_size == MSO_AUTO_SIZE.TEXT_TO_FIT_SHAPE


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'label = "Acme \\xe9"\n', "not valid TOML (UTF-8)"),
        (b"x = " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested too deeply to be a theme"),
        (
            ACME_THEME.replace('"#b91c1c"', '"#b91c1c\\n"').encode(),
            "Expected a colour written #rrggbb - at `$.colors.accent`",
        ),
        (
            ACME_THEME.replace('["Gill Sans"]', '["Gill Sans\\n"]').encode(),
            "Expected a font name of letters, digits, spaces, hyphens - at `$.fonts.body[0]`",
        ),
        (
            ACME_THEME.replace('label = "Acme"', 'label = "  "').encode(),
            "Expected words without control characters - at `$.label`",
        ),
        (
            ACME_THEME.replace('label = "Acme"', 'label = "Ac\\u202eme"').encode(),
            "Expected words without control characters - at `$.label`",
        ),
    ],
    ids=["not UTF-8", "deep nesting", "newline colour", "newline font", "blank label", "RLO"],
)
def test_a_theme_file_made_to_break_the_reader_is_refused_in_one_line(
    tmp_path: Path, content: bytes, message: str
) -> None:
    (tmp_path / "acme.toml").write_bytes(content)

    with pytest.raises(SettingsError) as refused:
        load_themes(str(tmp_path))

    assert message in str(refused.value)
    assert "\n" not in str(refused.value)


def test_a_link_to_a_huge_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    huge = tmp_path / "huge.bin"
    with huge.open("wb") as file:
        file.truncate(1 << 30)  # sparse: a gigabyte that takes no room
    folder = tmp_path / "themes"
    folder.mkdir()
    (folder / "acme.toml").symlink_to(huge)

    with pytest.raises(SettingsError, match="larger than 64 KiB"):
        load_themes(str(folder))
