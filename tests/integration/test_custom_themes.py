"""A team's own theme, from a file in the folder ``PRESTO_THEMES_DIR`` names, offered and drawn
like the built-in ones by the real API and worker."""

from __future__ import annotations

import io
from pathlib import Path

import msgspec
import pypdfium2 as pdfium
import pytest
from pptx import Presentation

from presto_deck.settings import Settings
from tests.support.client import DeckClient
from tests.support.themes import ACME_THEME


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    (tmp_path / "acme.toml").write_text(ACME_THEME)
    return msgspec.structs.replace(settings, themes_dir=str(tmp_path))


async def test_a_theme_from_the_folder_is_offered_and_drawn_in_every_format(
    alice: DeckClient, worker: None
) -> None:
    listed = await alice.http.get("/api/v1/themes")
    stylesheet = await alice.http.get("/static/themes.css")
    deck_id = await alice.create("Bricks and mortar", slide_count=3, theme="acme")
    deck = await alice.wait_for_status(deck_id, "COMPLETED")
    pptx = await alice.http.get(f"/api/v1/decks/{deck_id}/export", params={"format": "pptx"})
    pdf = await alice.http.get(f"/api/v1/decks/{deck_id}/export", params={"format": "pdf"})
    page = await alice.http.get(f"/api/v1/decks/{deck_id}/export", params={"format": "html"})

    assert listed.status_code == 200
    assert [theme["name"] for theme in listed.json()["items"]] == [
        "default",
        "acme",
        "corporate",
        "dark",
        "playful",
    ]
    assert listed.json()["items"][1] == {
        "name": "acme",
        "label": "Acme",
        "description": "Cream and brick red.",
    }
    assert stylesheet.headers["content-type"].startswith("text/css")
    assert ".theme--acme {" in stylesheet.text
    assert all("theme--acme" in slide["html_content"] for slide in deck["slides"])
    assert deck["theme"] == "acme"
    inner = Presentation(io.BytesIO(pptx.content)).slides[1]
    assert str(inner.background.fill.fore_color.rgb) == "FEFCE8"
    assert inner.shapes.title.text_frame.paragraphs[0].runs[0].font.name == "Rockwell"
    drawn = pdfium.PdfDocument(pdf.content)[1].render(scale=1).to_pil()
    assert drawn.getpixel((drawn.width - 3, 3))[:3] == (0xFE, 0xFC, 0xE8)
    assert "--slide-accent: #b91c1c;" in page.text


async def test_a_theme_no_file_names_is_refused_with_the_list_that_includes_the_teams(
    alice: DeckClient,
) -> None:
    response = await alice.http.post("/api/v1/decks", json={"prompt": "x", "theme": "neon"})

    assert response.status_code == 400
    assert "the themes are default, acme, corporate, dark, playful" in response.json()["detail"]


async def test_the_themes_are_listed_only_for_a_signed_in_caller(alice: DeckClient) -> None:
    response = await alice.http.get("/api/v1/themes", headers={"Authorization": ""})
    assert response.status_code == 401
