"""Taking a deck out: an editable PPTX and one self-contained HTML file, on the real servers."""

from __future__ import annotations

import asyncio
import io
import re
import shutil
import subprocess
import time
from pathlib import Path

import msgspec
import pypdfium2 as pdfium
import pytest
from pptx import Presentation
from pptx.enum.dml import MSO_FILL
from pptx.util import Emu
from pypdf import PdfReader

from presto_deck.infrastructure.writers.stylesheet import BULLET_MARKS
from presto_deck.settings import Settings
from tests.browser.conftest import ARTIFACTS
from tests.conftest import token_for
from tests.support.client import DeckClient, Frame
from tests.support.running import running_api
from tests.support.sockets import next_frame
from tests.support.themes import THEME_BOOK, THEMES

PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"


async def _written(client: DeckClient, slides: int = 4, **fields: str) -> Frame:
    deck_id = await client.create("Tidal energy for island towns", slide_count=slides, **fields)
    return await client.wait_for_status(deck_id, "COMPLETED")


async def _export(client: DeckClient, deck_id: str, fmt: str, **params: str) -> bytes:
    response = await client.http.get(
        f"/api/v1/decks/{deck_id}/export", params={"format": fmt, **params}
    )
    assert response.status_code == 200, response.text
    return response.content


async def test_the_pptx_holds_every_slides_title_bullets_and_notes_in_order(
    alice: DeckClient, worker: None
) -> None:
    deck = await _written(alice, 5)

    response = await alice.http.get(f"/api/v1/decks/{deck['id']}/export", params={"format": "pptx"})

    assert response.status_code == 200
    assert response.headers["content-type"] == PPTX
    disposition = response.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="')
    assert '.pptx"' in disposition
    presentation = Presentation(io.BytesIO(response.content))
    assert (presentation.slide_width, presentation.slide_height) == (
        Emu(12_192_000),
        Emu(6_858_000),
    )
    assert len(presentation.slides) == len(deck["slides"])
    for number, (slide, stored) in enumerate(
        zip(presentation.slides, deck["slides"], strict=True), 1
    ):
        content = stored["content"]
        assert slide.shapes.title.text == content["title"]
        texts = "\n".join(shape.text_frame.text for shape in slide.shapes if shape.has_text_frame)
        for bullet in content["bullets"]:
            assert re.sub("<[^>]+>", "", bullet).split()[0] in texts
        assert str(number) in texts  # the slide number
        assert slide.notes_slide.notes_text_frame.text == content["notes"]


@pytest.mark.parametrize("theme", THEMES)
async def test_each_theme_colours_the_pptx(alice: DeckClient, worker: None, theme: str) -> None:
    deck = await _written(alice, 3, theme=theme)

    presentation = Presentation(io.BytesIO(await _export(alice, deck["id"], "pptx")))

    inner = presentation.slides[1]  # not the title slide, which a theme may colour apart
    look = THEME_BOOK[theme]
    assert _background_colours(inner) == (look.colors.gradient or [look.colors.background])
    title_run = inner.shapes.title.text_frame.paragraphs[0].runs[0]
    assert title_run.font.name == look.fonts.heading[0]
    assert title_run.font.size.pt == pytest.approx(look.sizes.title * 9.6, abs=0.5)
    assert f"#{title_run.font.color.rgb}".lower() == look.colors.title_ink
    # Bullets are real bullets, in the theme's mark and accent colour, not typed characters.
    marks = inner.shapes._spTree.xpath(".//a:buChar/@char")
    assert marks
    assert set(marks) == {BULLET_MARKS[look.bullet]}


def _background_colours(slide: object) -> list[str]:
    """A slide's background: its one colour, or its gradient's, as #rrggbb."""
    fill = slide.background.fill  # type: ignore[attr-defined]
    if fill.type == MSO_FILL.GRADIENT:
        return [f"#{stop.color.rgb}".lower() for stop in fill.gradient_stops]
    return [f"#{fill.fore_color.rgb}".lower()]


async def test_the_html_file_is_self_contained_and_holds_every_slide_and_note(
    alice: DeckClient, worker: None
) -> None:
    deck = await _written(alice, 4, theme="dark")

    response = await alice.http.get(f"/api/v1/decks/{deck['id']}/export", params={"format": "html"})

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    page = response.text
    for slide in deck["slides"]:
        assert slide["html_content"] in page
    assert page.index(deck["slides"][0]["html_content"]) < page.index(
        deck["slides"][-1]["html_content"]
    )
    assert "theme--dark" in page
    assert ".theme--dark" in page
    assert not re.search(r"(?i)https?://|src=|@import|url\(", page), "the file reaches out"


async def test_a_hostile_title_exports_as_text_never_as_markup(
    alice: DeckClient, worker: None
) -> None:
    deck = await _written(alice, 2)
    hostile = '<script>alert(1)</script><img src=x onerror="alert(2)">'
    slide_id = deck["slides"][1]["id"]
    edited = await alice.http.patch(
        f"/api/v1/decks/{deck['id']}/slides/{slide_id}",
        json={"title": hostile, "notes": "</script><!-- notes"},
    )
    assert edited.status_code == 202

    presentation = Presentation(io.BytesIO(await _export(alice, deck["id"], "pptx")))
    page = (await _export(alice, deck["id"], "html")).decode()

    assert presentation.slides[1].shapes.title.text == hostile
    assert "<script>alert(1)" not in page
    assert "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("</script>") == 1  # the file's own script only: the notes cannot end it


async def test_a_deck_being_generated_exports_only_when_asked_for_as_it_is(
    alice: DeckClient,
) -> None:
    deck_id = await alice.create("Not yet", slide_count=3)  # no worker: it stays PENDING

    refused = await alice.http.get(f"/api/v1/decks/{deck_id}/export", params={"format": "pptx"})
    partial = await alice.http.get(
        f"/api/v1/decks/{deck_id}/export", params={"format": "pptx", "partial": "true"}
    )

    assert refused.status_code == 409
    assert refused.json()["code"] == "deck_busy"
    # As it is: no slides yet, so nothing that would open (a PDF of no pages does not).
    assert partial.status_code == 409
    assert partial.json()["code"] == "deck_empty"


async def test_another_users_deck_and_an_unknown_format_are_refused(
    alice: DeckClient, bob: DeckClient, worker: None
) -> None:
    deck = await _written(alice, 2)

    theirs = await bob.http.get(f"/api/v1/decks/{deck['id']}/export", params={"format": "html"})
    unknown = await alice.http.get(f"/api/v1/decks/{deck['id']}/export", params={"format": "doc"})
    missing = await alice.http.get(f"/api/v1/decks/{deck['id']}/export")

    assert theirs.status_code == 404
    assert unknown.status_code == 400
    assert missing.status_code == 400
    assert unknown.json()["detail"] == (
        "format: 'doc' is not a format; the formats are html, pdf, pptx."
    )


async def test_the_file_name_comes_from_the_deck_title_in_any_script(
    alice: DeckClient, worker: None
) -> None:
    deck_id = await alice.create("Quarterly review", slide_count=1, title="분기 리뷰: Q3 / 2026")
    await alice.wait_for_status(deck_id, "COMPLETED")

    response = await alice.http.get(f"/api/v1/decks/{deck_id}/export", params={"format": "html"})

    disposition = response.headers["content-disposition"]
    assert "filename*=UTF-8''%EB%B6%84%EA%B8%B0-%EB%A6%AC%EB%B7%B0-Q3-2026.html" in disposition


async def test_a_thirty_slide_deck_exports_as_pptx(alice: DeckClient, worker: None) -> None:
    deck = await _written(alice, 30)

    started = time.perf_counter()
    content = await _export(alice, deck["id"], "pptx")
    seconds = time.perf_counter() - started

    assert len(Presentation(io.BytesIO(content)).slides) == 30
    print(f"30-slide PPTX export: {seconds:.3f} s, {len(content)} bytes")


async def test_a_theme_change_redraws_every_slide_in_one_event_that_every_socket_sees(
    alice: DeckClient, worker: None
) -> None:
    deck = await _written(alice, 3, theme="default")

    async with alice.socket(deck["id"], last_version=deck["version"]) as ws:
        response = await alice.http.put(
            f"/api/v1/decks/{deck['id']}/theme",
            json={"theme": "playful"},
            headers={"Idempotency-Key": "look-1"},
        )
        event = await next_frame(ws)
        while event.get("event_type") == "Heartbeat":
            event = await next_frame(ws)

    assert response.status_code == 202
    assert response.json()["status"] == "APPLIED"
    assert event["event_type"] == "DeckThemeChanged"
    assert event["version"] == deck["version"] + 1 == response.json()["version"]
    assert event["payload"]["theme"] == "playful"
    assert event["payload"]["request_id"] == "look-1"
    after = await alice.deck(deck["id"])
    assert after["theme"] == "playful"
    assert [s["slide_id"] for s in event["payload"]["slides"]] == [s["id"] for s in after["slides"]]
    for drawn, slide in zip(event["payload"]["slides"], after["slides"], strict=True):
        assert "theme--playful" in slide["html_content"]
        assert drawn["html_content"] == slide["html_content"]
    presentation = Presentation(io.BytesIO(await _export(alice, deck["id"], "pptx")))
    assert _background_colours(presentation.slides[1]) == THEME_BOOK["playful"].colors.gradient


async def test_an_unknown_theme_or_a_deck_being_generated_refuses_the_change(
    alice: DeckClient,
) -> None:
    deck_id = await alice.create("Not yet", slide_count=2)  # no worker: PENDING

    busy = await alice.http.put(f"/api/v1/decks/{deck_id}/theme", json={"theme": "dark"})
    unknown = await alice.http.put(f"/api/v1/decks/{deck_id}/theme", json={"theme": "neon"})

    assert busy.status_code == 409
    assert busy.json()["code"] == "deck_busy"
    assert unknown.status_code == 400
    assert "default, corporate, dark, playful" in unknown.json()["detail"]


@pytest.mark.parametrize("theme", THEMES)
async def test_the_pdf_has_a_16_9_page_per_slide_with_its_text(
    alice: DeckClient, worker: None, theme: str
) -> None:
    deck = await _written(alice, 4, theme=theme, title="분기 리뷰 — Tidal energy")

    response = await alice.http.get(f"/api/v1/decks/{deck['id']}/export", params={"format": "pdf"})

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pdf"
    pdf = PdfReader(io.BytesIO(response.content))
    assert len(pdf.pages) == len(deck["slides"])
    for number, (page, slide) in enumerate(zip(pdf.pages, deck["slides"], strict=True), 1):
        box = page.mediabox
        assert round(float(box.width) / float(box.height), 3) == round(16 / 9, 3)
        text = " ".join(page.extract_text().split())
        # A theme may show titles in capitals; the PDF's text is what it shows.
        assert " ".join(slide["content"]["title"].split())[:20].upper() in text.upper()
        assert text.endswith(str(number))
    # Drawn as an image, to look at with the other test artifacts.
    first = pdfium.PdfDocument(response.content)[0].render(scale=1).to_pil()
    ARTIFACTS.mkdir(exist_ok=True)
    first.save(ARTIFACTS / f"export-{theme}-page-1.png")
    cover = deck["slides"][0]["content"]["layout"] in ("title", "closing")
    colours = THEME_BOOK[theme].on(cover=cover)
    # The top right corner: past any band, and where a gradient (top left to bottom right) is
    # half-way, so its colour is the background's where there is no gradient.
    corner = first.getpixel((first.width - 3, 3))[:3]
    if not colours.gradient:
        assert corner == _rgb(colours.background)
    else:
        start = _rgb(colours.gradient[0])
        assert corner != start, "the gradient runs from the top left"
        assert first.getpixel((1, 1))[:3] == pytest.approx(start, abs=6)
    if colours.band:
        assert first.getpixel((3, first.height // 2))[:3] == _rgb(colours.band)


def _rgb(colour: str) -> tuple[int, ...]:
    return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))


@pytest.mark.skipif(
    shutil.which("soffice") is None and shutil.which("libreoffice") is None,
    reason="LibreOffice is not installed (the Debian package libreoffice-impress): the second "
    "check that the PPTX opens in another office suite is skipped",
)
async def test_libreoffice_opens_the_pptx_and_finds_every_slide(
    alice: DeckClient, worker: None, tmp_path: Path
) -> None:
    deck = await _written(alice, 3)
    source = tmp_path / "deck.pptx"
    source.write_bytes(await _export(alice, deck["id"], "pptx"))
    office = shutil.which("soffice") or shutil.which("libreoffice")
    assert office is not None

    converted = await asyncio.to_thread(
        subprocess.run,
        [office, "--headless", "--convert-to", "pdf", "--outdir", str(tmp_path), str(source)],
        capture_output=True,
        timeout=120,
        check=False,
    )

    assert converted.returncode == 0, converted.stderr
    assert len(PdfReader(tmp_path / "deck.pdf").pages) == 3


async def test_any_text_a_slide_can_hold_exports_in_every_format(
    alice: DeckClient, worker: None
) -> None:
    deck = await _written(alice, 2)
    slide_id = deck["slides"][1]["id"]
    odd = "Plan \ufffe\uffff \u0001 line one\r\nline two \u202e\u05e9\u05dc\u05d5\u05dd 👩‍💻"
    edited = await alice.http.patch(
        f"/api/v1/decks/{deck['id']}/slides/{slide_id}",
        json={"title": odd, "notes": "Para one\r\nPara two", "bullets": ["x<y and y>z"]},
    )
    assert edited.status_code == 202

    pptx = Presentation(io.BytesIO(await _export(alice, deck["id"], "pptx")))
    pdf = PdfReader(io.BytesIO(await _export(alice, deck["id"], "pdf")))
    page = (await _export(alice, deck["id"], "html")).decode()

    slide = pptx.slides[1]
    assert slide.shapes.title.text.startswith("Plan")
    assert "_x000D_" not in slide.shapes.title.text
    assert slide.notes_slide.notes_text_frame.text == "Para one\nPara two"
    texts = "\n".join(shape.text_frame.text for shape in slide.shapes if shape.has_text_frame)
    assert "x<y and y>z" in texts
    assert "x<y and y>z" in pdf.pages[1].extract_text()
    assert "x&lt;y and y&gt;z" in page


async def test_a_full_slide_keeps_all_its_text_in_the_pdf(alice: DeckClient, worker: None) -> None:
    deck = await _written(alice, 2)
    bullets = [f"Bullet number {n}" for n in range(20)]
    title = "Quarterly review of the support team: response times, staffing, tooling and costs"
    slide_id = deck["slides"][1]["id"]
    await alice.http.patch(
        f"/api/v1/decks/{deck['id']}/slides/{slide_id}",
        json={"title": f"{title}, {title.lower()}", "bullets": bullets},
    )

    text = PdfReader(io.BytesIO(await _export(alice, deck["id"], "pdf"))).pages[1].extract_text()

    assert f"{title}, {title.lower()}" in " ".join(text.split())
    for bullet in bullets:
        assert bullet in text


async def test_the_download_is_private_and_its_ascii_name_never_empty(
    alice: DeckClient, worker: None
) -> None:
    deck_id = await alice.create("東京", slide_count=1, title="東京")
    await alice.wait_for_status(deck_id, "COMPLETED")

    response = await alice.http.get(f"/api/v1/decks/{deck_id}/export", params={"format": "pdf"})

    assert response.headers["content-disposition"].startswith('attachment; filename="deck.pdf"; ')
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "private, no-store"


async def test_past_the_export_rate_a_user_is_refused_with_429_and_retry_after(
    settings: Settings, worker: None
) -> None:
    limited = msgspec.structs.replace(settings, limit_exports_per_minute=2)
    async with running_api(limited) as api:
        alice = DeckClient(api.url, api.ws_url, token_for(limited, "alice"))
        bob = DeckClient(api.url, api.ws_url, token_for(limited, "bob"))
        try:
            deck = await _written(alice, 2)
            bobs = await _written(bob, 2)
            path = f"/api/v1/decks/{deck['id']}/export"
            answers = [await alice.http.get(path, params={"format": "pdf"}) for _ in range(3)]
            others = await bob.http.get(f"/api/v1/decks/{bobs['id']}/export?format=html")
        finally:
            await alice.aclose()
            await bob.aclose()

    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert 1 <= int(answers[2].headers["Retry-After"]) <= 60
    assert "Too many exports" in answers[2].json()["detail"]
    assert others.status_code == 200  # one user's rate is not another's


async def test_a_theme_named_in_any_case_is_that_theme_and_the_same_one_changes_nothing(
    alice: DeckClient, worker: None
) -> None:
    deck_id = await alice.create("Tides", slide_count=2, theme=" Dark ")
    deck = await alice.wait_for_status(deck_id, "COMPLETED")

    again = await alice.http.put(f"/api/v1/decks/{deck_id}/theme", json={"theme": "DARK"})
    after = await alice.deck(deck_id)
    events = (await alice.http.get(f"/api/v1/decks/{deck_id}/events")).json()

    assert deck["theme"] == "dark"
    assert all("theme--dark" in slide["html_content"] for slide in deck["slides"])
    assert again.status_code == 202, again.text
    assert again.json()["status"] == "APPLIED"
    assert after["version"] == deck["version"]
    assert "DeckThemeChanged" not in [event["event_type"] for event in events]
