"""The page at ``/`` in headless Chromium: create, watch, reload, cancel, present, edit,
restyle and download a deck."""

from __future__ import annotations

import asyncio
import html
import json
import re
import uuid
from pathlib import Path

import httpx
import pytest
from playwright.async_api import (
    Browser,
    Locator,
    Page,
    Request,
    Route,
    WebSocketRoute,
    expect,
)
from pptx import Presentation
from pypdf import PdfReader

from presto_deck.api.pages import CONTENT_SECURITY_POLICY
from presto_deck.settings import Settings
from tests.browser.conftest import screenshot_path
from tests.conftest import token_for
from tests.support.database import execute
from tests.support.running import RunningApi

SLIDES = ".slides > .slide-card"


async def _create_deck(page: Page, prompt: str, slide_count: int, theme: str = "default") -> None:
    await page.fill("#prompt", prompt)
    await page.fill("#slide-count", str(slide_count))
    await page.select_option("#theme", theme)
    await page.click("#create-button")


async def _slide_titles(page: Page) -> list[str]:
    return await page.locator(f"{SLIDES} .slide__title").all_text_contents()


async def _shown_slide_ids(page: Page) -> list[str]:
    ids: list[str] = await page.locator(SLIDES).evaluate_all(
        "items => items.map(item => item.dataset.slideId)"
    )
    return ids


async def _stored_slide_ids(page: Page) -> list[str]:
    """The open deck's slides in their stored order, read over HTTP with the page's token."""
    ids: list[str] = await page.evaluate(
        """async () => {
            const deckId = new URLSearchParams(location.hash.slice(1)).get("deck");
            const token = localStorage.getItem("presto-deck.token");
            const response = await fetch(`/api/v1/decks/${deckId}`, {
                headers: { Authorization: `Bearer ${token}` },
            });
            return (await response.json()).slides.map((slide) => slide.id);
        }"""
    )
    return ids


async def test_the_page_is_served_with_a_strict_content_security_policy(app: RunningApi) -> None:
    async with httpx.AsyncClient(base_url=app.url) as client:
        page = await client.get("/")
        script = await client.get("/static/app.js")
        missing = await client.get("/static/../pages.py")
        unknown = await client.get("/static/secret.txt")
        revalidated = await client.get("/", headers={"If-None-Match": page.headers["etag"]})
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert missing.status_code == 404
    assert unknown.status_code == 404
    assert revalidated.status_code == 304


async def test_a_deck_created_from_the_form_streams_in_live(page: Page, alice_url: str) -> None:
    await page.goto(alice_url)
    # The token moved from the address bar to local storage.
    await expect(page).not_to_have_url(re.compile("token="))
    await _create_deck(page, "The history of tea", 5, theme="corporate")

    await expect(page.locator("#plan-outline > li")).to_have_count(5)
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await expect(page.locator(SLIDES)).to_have_count(5)
    await expect(page.locator("#deck-status")).to_have_text("completed")
    await expect(page.locator(".deck-list__item")).to_have_count(1)
    await expect(page.locator(".deck-list__item .status")).to_have_text("completed")
    assert await page.locator(f"{SLIDES} .slide.theme--corporate").count() == 5
    await page.screenshot(path=screenshot_path("deck-view"), full_page=True)


async def test_a_reload_mid_stream_resumes_without_duplicates(page: Page, alice_url: str) -> None:
    await page.goto(alice_url)
    await _create_deck(page, "Rivers of Europe", 12, theme="dark")
    await expect(page.locator(SLIDES).nth(1)).to_be_attached()
    await expect(page).to_have_url(re.compile("#deck="))
    assert await page.locator(SLIDES).count() < 12, "the deck ended before the reload"
    await page.screenshot(path=screenshot_path("deck-view-streaming"), full_page=True)

    await page.reload()
    await expect(page.locator("#deck-status")).to_have_text("completed", timeout=30_000)
    await expect(page.locator(SLIDES)).to_have_count(12)
    ids = await _shown_slide_ids(page)
    assert len(set(ids)) == 12
    assert ids == await _stored_slide_ids(page)
    await page.screenshot(path=screenshot_path("deck-view-dark-after-reload"), full_page=True)


async def test_cancelling_mid_stream_stops_the_deck(page: Page, alice_url: str) -> None:
    await page.goto(alice_url)
    await _create_deck(page, "A very long deck", 30)
    await expect(page.locator(SLIDES).first).to_be_attached()

    await page.click("#cancel-button")
    await expect(page.locator("#deck-status")).to_have_text("cancelled")
    await expect(page.locator("#cancel-button")).to_be_hidden()
    shown = await page.locator(SLIDES).count()
    assert shown < 30
    # The socket stays open after the end; nothing more arrives on it.
    await page.reload()
    await expect(page.locator("#deck-status")).to_have_text("cancelled")
    await expect(page.locator(SLIDES)).to_have_count(shown)


async def test_presenting_moves_with_the_keys_and_shows_notes(page: Page, alice_url: str) -> None:
    await page.goto(alice_url)
    await _create_deck(page, "Learning to sail", 4, theme="playful")
    await expect(page.locator("#deck-status")).to_have_text("completed")

    await page.click("#present-button")
    presenter = page.locator("#presenter")
    counter = page.locator("#presenter-counter")
    await expect(presenter).to_be_visible()
    await expect(counter).to_have_text("1 / 4")
    await page.keyboard.press("ArrowRight")
    await page.keyboard.press("PageDown")
    await expect(counter).to_have_text("3 / 4")
    await page.keyboard.press("ArrowLeft")
    await expect(counter).to_have_text("2 / 4")
    second = await page.locator("#slides .slide-card").nth(1).get_attribute("data-slide-id")
    await expect(page.locator("#presenter-slide")).to_have_attribute("data-slide-id", second or "")

    notes = page.locator("#presenter-notes")
    await expect(notes).to_be_hidden()
    await page.keyboard.press("n")
    await expect(notes).to_be_visible()
    await expect(notes).not_to_be_empty()
    await page.screenshot(path=screenshot_path("presenting"))

    await page.keyboard.press("Escape")
    await expect(presenter).to_be_hidden()


async def test_a_dropped_connection_resumes_from_the_last_applied_version(
    page: Page, alice_url: str
) -> None:
    urls: list[str] = []

    async def drop_the_first_socket_after_two_slides(socket: WebSocketRoute) -> None:
        urls.append(socket.url)
        server = socket.connect_to_server()
        if len(urls) > 1:
            return  # later connections pass through untouched
        slides = 0

        async def to_page(message: str | bytes) -> None:
            nonlocal slides
            if slides >= 2:
                return
            socket.send(message)
            if isinstance(message, str) and '"SlideAdded"' in message:
                slides += 1
                if slides == 2:
                    await socket.close(code=1011, reason="simulated drop")
                    await server.close()

        server.on_message(to_page)

    await page.route_web_socket(re.compile(r"/ws/decks/"), drop_the_first_socket_after_two_slides)
    await page.goto(alice_url)
    await _create_deck(page, "Mountains of Asia", 8)

    await expect(page.locator("#deck-status")).to_have_text("completed")
    await expect(page.locator(SLIDES)).to_have_count(8)
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    assert len(urls) >= 2
    resumed_from = int(re.findall(r"last_version=(\d+)", urls[1])[0])
    assert resumed_from > 1  # it resumed after what it had applied, not from scratch
    ids = await _shown_slide_ids(page)
    assert len(set(ids)) == 8
    assert ids == await _stored_slide_ids(page)


async def test_hostile_slide_markup_cannot_run_script(
    page: Page, alice_url: str, expected_console_errors: list[str]
) -> None:
    expected_console_errors.append("Content Security Policy")
    await page.goto(alice_url)
    await _create_deck(page, "Harmless", 1)
    await expect(page.locator("#deck-status")).to_have_text("completed")

    async def plant_hostile_markup(route: Route) -> None:
        response = await route.fetch()
        deck = await response.json()
        deck["slides"][0]["html_content"] = (
            '<section class="slide"><h2 class="slide__title">Hostile</h2>'
            '<img src="data:," onerror="window.pwned = true"></section>'
        )
        await route.fulfill(response=response, json=deck)

    await page.add_init_script(
        "window.violations = [];"
        "document.addEventListener('securitypolicyviolation',"
        " event => window.violations.push(event.effectiveDirective));"
    )
    await page.route(re.compile(r"/api/v1/decks/[0-9a-f-]{36}$"), plant_hostile_markup)
    await page.reload()
    await expect(page.locator(f"{SLIDES} .slide__title")).to_have_text("Hostile")
    await page.wait_for_function("window.violations.length > 0")
    assert await page.evaluate("window.violations") == ["script-src-attr"]
    assert await page.evaluate("window.pwned") is None


async def test_a_failed_deck_opened_later_still_says_why(
    page: Page, app: RunningApi, alice_url: str
) -> None:
    # A deck that failed while nobody watched: only the deck itself can tell why now.
    reason = "The model did not answer within 60 s (4 attempt(s)) (ref 0123456789ab)"
    deck_id = uuid.uuid4()
    failure = {"error": reason, "code": "llm_timeout", "ref": "0123456789ab"}
    await execute(
        app.container,
        "INSERT INTO decks (id, user_id, title, status, version, prompt, slide_count, failure)"
        " VALUES (:id, 'alice', 'Tea', 'FAILED', 3, 'Tea', 3, CAST(:failure AS jsonb))",
        id=deck_id,
        failure=json.dumps(failure),
    )

    await page.goto(f"{alice_url}&deck={deck_id}")

    await expect(page.locator("#deck-status")).to_have_text("failed")
    await expect(page.locator("#deck-progress")).to_contain_text(reason)


# -- editing, with two tabs on the same deck --------------------------------------------------


async def _finished_deck_in_two_tabs(page: Page, other: Page, alice_url: str, slides: int) -> str:
    """A completed deck created in ``page`` and opened in ``other``, both live; its id."""
    await page.goto(alice_url)
    await _create_deck(page, "Harbours of the North Sea", slides)
    await expect(page.locator("#deck-status")).to_have_text("completed")
    deck_id = re.findall(r"deck=([0-9a-f-]{36})", page.url)[0]
    await other.goto(f"{alice_url}&deck={deck_id}")
    for tab in (page, other):
        await expect(tab.locator(SLIDES)).to_have_count(slides)
        await expect(tab.locator("#connection")).to_have_attribute("data-state", "live")
    return deck_id


def _card(page: Page, index: int) -> Locator:
    return page.locator(SLIDES).nth(index)


async def _press(card: Locator, name: str) -> None:
    await card.get_by_role("button", name=name, exact=True).click()


async def _ask(card: Locator, action: str, prompt: str) -> None:
    """Open the card's prompt form for ``action`` and send ``prompt``."""
    await _press(card, action)
    field = card.locator(".edit-form input[name=prompt]")
    await field.fill(prompt)
    await field.press("Enter")


async def _expect_order(tabs: tuple[Page, ...], ids: list[str | None]) -> None:
    for tab in tabs:
        await expect(tab.locator(SLIDES)).to_have_count(len(ids))
        for index, slide_id in enumerate(ids):
            await expect(_card(tab, index)).to_have_attribute("data-slide-id", slide_id or "")
    assert ids == await _stored_slide_ids(tabs[0])


async def test_a_slide_rewritten_by_prompt_shows_its_new_title_in_both_tabs(
    page: Page, other_page: Page, alice_url: str
) -> None:
    await _finished_deck_in_two_tabs(page, other_page, alice_url, 3)
    slide_id = await _card(page, 1).get_attribute("data-slide-id")

    await _ask(_card(page, 1), "Rewrite with a prompt", "title: Harbour lights")
    # The card says it is working until the answer to its request arrives.
    await expect(_card(page, 1).locator(".edit-state")).to_have_text("working…")

    for tab in (page, other_page):
        await expect(_card(tab, 1).locator(".slide__title")).to_have_text("Harbour lights")
        await expect(_card(tab, 1)).to_have_attribute("data-slide-id", slide_id or "")
    await expect(_card(page, 1).locator(".edit-state")).to_have_text("")
    await expect(_card(page, 1).locator(".edit-form")).to_be_hidden()
    await expect(page.locator("#notice")).to_be_hidden()
    await page.screenshot(path=screenshot_path("editing-rewritten"), full_page=True)


async def test_a_slide_edited_inline_shows_its_new_texts_in_both_tabs(
    page: Page, other_page: Page, alice_url: str
) -> None:
    await _finished_deck_in_two_tabs(page, other_page, alice_url, 3)
    card = _card(page, 1)
    title = await card.locator(".slide__title").text_content()
    bullets = await card.locator(".slide__bullets li").all_text_contents()
    assert bullets, "the slide has no bullets to start from"

    await _press(card, "Edit text")
    form = card.locator(".edit-form")
    # The form starts from what the slide says now.
    await expect(form.locator("[name=title]")).to_have_value((title or "").strip())
    await expect(form.locator("[name=bullets]")).to_have_value("\n".join(bullets))
    await form.locator("[name=title]").fill("Tides and timetables")
    await form.locator("[name=bullets]").fill("High water at noon\n\nLow water at six")
    await form.locator("[name=notes]").fill("Mention the spring tides.")
    await page.screenshot(path=screenshot_path("editing-inline-form"), full_page=True)
    await form.get_by_role("button", name="Save").click()

    for tab in (page, other_page):
        edited = _card(tab, 1)
        await expect(edited.locator(".slide__title")).to_have_text("Tides and timetables")
        await expect(edited.locator(".slide__bullets li")).to_have_text(
            ["High water at noon", "Low water at six"]
        )
        await expect(edited.locator(".slide-card__notes")).to_have_text("Mention the spring tides.")
    await expect(form).to_be_hidden()


async def test_a_slide_added_after_another_appears_in_its_place_in_both_tabs(
    page: Page, other_page: Page, alice_url: str
) -> None:
    await _finished_deck_in_two_tabs(page, other_page, alice_url, 3)
    before = await _shown_slide_ids(page)

    await _ask(_card(other_page, 0), "Add a slide after this one", "title: Fish markets")

    for tab in (page, other_page):
        await expect(tab.locator(SLIDES)).to_have_count(4)
        await expect(_card(tab, 1).locator(".slide__title")).to_have_text("Fish markets")
        await expect(_card(tab, 1).locator(".slide-card__number")).to_have_text("2")
    added = await _card(page, 1).get_attribute("data-slide-id")
    assert added not in before
    await _expect_order((page, other_page), [before[0], added, *before[1:]])
    await expect(_card(other_page, 0).locator(".edit-state")).to_have_text("")


async def test_a_slide_deleted_after_a_second_click_goes_from_both_tabs(
    page: Page, other_page: Page, alice_url: str
) -> None:
    await _finished_deck_in_two_tabs(page, other_page, alice_url, 3)
    ids = await _shown_slide_ids(page)
    delete = _card(page, 1).locator('[data-action="delete"]')

    await delete.click()
    await expect(delete).to_have_text("Really delete?")
    await page.wait_for_timeout(500)  # one click is not enough: nothing is deleted
    await expect(other_page.locator(SLIDES)).to_have_count(3)
    await page.screenshot(path=screenshot_path("editing-confirm-delete"), full_page=True)
    await delete.click()

    await _expect_order((page, other_page), [ids[0], ids[2]])


async def test_slides_moved_up_and_down_move_in_both_tabs(
    page: Page, other_page: Page, alice_url: str
) -> None:
    await _finished_deck_in_two_tabs(page, other_page, alice_url, 3)
    a, b, c = await _shown_slide_ids(page)
    await expect(_card(page, 0).get_by_role("button", name="Move up")).to_be_disabled()
    await expect(_card(page, 2).get_by_role("button", name="Move down")).to_be_disabled()

    await _press(_card(page, 0), "Move down")
    await _expect_order((page, other_page), [b, a, c])

    await _press(_card(other_page, 2), "Move up")
    await _expect_order((page, other_page), [b, c, a])
    for tab in (page, other_page):
        await expect(_card(tab, 1).locator(".slide-card__number")).to_have_text("2")


async def test_editing_waits_for_the_end_of_generation(page: Page, alice_url: str) -> None:
    await page.goto(alice_url)
    await _create_deck(page, "A very long deck", 30)
    await expect(page.locator(SLIDES).first).to_be_attached()
    await expect(page.locator("#deck-status")).to_have_text("generating")
    await expect(_card(page, 0).locator(".edit-tools")).to_be_hidden()
    await expect(page.locator("#add-first")).to_be_hidden()

    await page.click("#cancel-button")
    await expect(page.locator("#deck-status")).to_have_text("cancelled")
    # A cancelled deck can be edited: the slides it has are kept.
    await expect(_card(page, 0).locator(".edit-tools")).to_be_visible()
    ids = await _shown_slide_ids(page)
    await _press(_card(page, 0), "Delete")
    await _press(_card(page, 0), "Really delete?")
    await _expect_order((page,), ids[1:])


async def test_an_edit_of_a_slide_deleted_in_the_other_tab_says_why_it_failed(
    page: Page, other_page: Page, alice_url: str
) -> None:
    # The other tab does not hear of the deletion yet: its events are held back.
    holding = True
    held: list[str | bytes] = []
    sockets: list[WebSocketRoute] = []

    async def hold_events(socket: WebSocketRoute) -> None:
        sockets.append(socket)
        server = socket.connect_to_server()

        def to_page(message: str | bytes) -> None:
            if holding and isinstance(message, str) and '"event_type"' in message:
                held.append(message)
            else:
                socket.send(message)

        server.on_message(to_page)

    await other_page.route_web_socket(re.compile(r"/ws/decks/"), hold_events)
    holding = False
    await _finished_deck_in_two_tabs(page, other_page, alice_url, 3)
    doomed = await _card(page, 1).get_attribute("data-slide-id")
    holding = True

    await _press(_card(page, 1), "Delete")
    await _press(_card(page, 1), "Really delete?")
    await expect(page.locator(SLIDES)).to_have_count(2)

    stale = _card(other_page, 1)
    await expect(stale).to_have_attribute("data-slide-id", doomed or "")
    await _press(stale, "Edit text")
    await stale.locator(".edit-form [name=title]").fill("Too late")
    await stale.get_by_role("button", name="Save").click()

    notice = other_page.locator("#notice")
    await expect(notice).to_be_visible()
    await expect(notice).to_contain_text(f"The deck has no slide {doomed}")
    await expect(stale.locator(".edit-state")).to_contain_text("could not be made")
    await other_page.screenshot(path=screenshot_path("editing-error"), full_page=True)

    holding = False
    for message in held:
        sockets[-1].send(message)
    await expect(other_page.locator(SLIDES)).to_have_count(2)
    assert doomed not in await _shown_slide_ids(other_page)


async def test_without_a_socket_an_edit_goes_over_http_with_its_request_id(
    page: Page, other_page: Page, alice_url: str
) -> None:
    async def refuse(socket: WebSocketRoute) -> None:
        await socket.close(code=4404, reason="refused for the test")

    await other_page.route_web_socket(re.compile(r"/ws/decks/"), refuse)
    edits: list[tuple[str, str | None]] = []

    def record_edit(request: Request) -> None:
        if "/slides" in request.url:
            edits.append((request.method, request.headers.get("idempotency-key")))

    other_page.on("request", record_edit)
    await page.goto(alice_url)
    await _create_deck(page, "Harbours of the North Sea", 3)
    await expect(page.locator("#deck-status")).to_have_text("completed")
    deck_id = re.findall(r"deck=([0-9a-f-]{36})", page.url)[0]
    await other_page.goto(f"{alice_url}&deck={deck_id}")
    await expect(other_page.locator("#connection")).to_have_text("closed: deck not found")
    a, b, c = await _shown_slide_ids(page)

    await _press(_card(other_page, 0), "Move down")

    await _expect_order((page, other_page), [b, a, c])
    assert [method for method, _ in edits] == ["PUT"]
    assert (edits[0][1] or "").startswith("page-")


# -- captions, downloads and the theme ---------------------------------------------------------


async def test_slide_captions_name_each_slide_and_keep_its_notes_apart(
    page: Page, alice_url: str
) -> None:
    await page.goto(alice_url)
    await _create_deck(page, "Harbours of the North Sea", 3)
    await expect(page.locator("#deck-status")).to_have_text("completed")

    titles = [title.strip() for title in await _slide_titles(page)]
    for index, title in enumerate(titles):
        card = _card(page, index)
        caption = card.locator(".slide-card__caption")
        await expect(caption.locator(".slide-card__number")).to_have_text(str(index + 1))
        await expect(caption.locator(".slide-card__title")).to_have_text(title)
        notes = (await card.locator(".slide-card__notes").text_content() or "").strip()
        assert notes, "the slide has no notes"
        assert notes not in (await caption.text_content() or "")
        # The notes are a click away, not in the caption.
        await expect(card.locator(".slide-card__notes")).to_be_hidden()
        await card.locator(".slide-card__notes-box summary").click()
        await expect(card.locator(".slide-card__notes")).to_be_visible()

    # A title edited in place shows in the caption too.
    card = _card(page, 1)
    await _press(card, "Edit text")
    await card.locator(".edit-form [name=title]").fill("Lighthouses")
    await card.get_by_role("button", name="Save").click()
    await expect(card.locator(".slide-card__title")).to_have_text("Lighthouses")
    await page.screenshot(path=screenshot_path("captions"), full_page=True)


async def test_an_ended_deck_downloads_as_powerpoint_pdf_and_html(
    page: Page, alice_url: str
) -> None:
    await page.goto(alice_url)
    await _create_deck(page, "Harbours of the North Sea", 4, theme="dark")
    await expect(page.locator("#deck-status")).to_have_text("completed")
    titles = [title.strip() for title in await _slide_titles(page)]
    assert len(titles) == 4

    async with page.expect_download() as pptx_download:
        await page.get_by_role("button", name="PowerPoint").click()
    pptx = await pptx_download.value
    assert pptx.suggested_filename == "Harbours-of-the-North-Sea.pptx"
    presentation = Presentation(str(await pptx.path()))
    assert len(presentation.slides) == 4

    async with page.expect_download() as pdf_download:
        await page.get_by_role("button", name="PDF", exact=True).click()
    pdf = await pdf_download.value
    assert pdf.suggested_filename == "Harbours-of-the-North-Sea.pdf"
    assert len(PdfReader(str(await pdf.path())).pages) == 4

    async with page.expect_download() as html_download:
        await page.get_by_role("button", name="HTML", exact=True).click()
    exported = await html_download.value
    assert exported.suggested_filename == "Harbours-of-the-North-Sea.html"
    text = (await exported.path()).read_text(encoding="utf-8")
    for title in titles:
        assert html.escape(title) in text or title in text, title
    await expect(page.locator("#notice")).to_be_hidden()


async def test_a_refused_download_is_explained(
    page: Page, alice_url: str, expected_console_errors: list[str]
) -> None:
    expected_console_errors.append("409")
    await page.goto(alice_url)
    await _create_deck(page, "Harbours of the North Sea", 2)
    await expect(page.locator("#deck-status")).to_have_text("completed")

    async def refuse(route: Route) -> None:
        await route.fulfill(
            status=409,
            json={"status_code": 409, "detail": "The deck is GENERATING.", "code": "deck_busy"},
        )

    await page.route(re.compile(r"/export\?"), refuse)
    await page.get_by_role("button", name="PowerPoint").click()
    notice = page.locator("#notice")
    await expect(notice).to_be_visible()
    await expect(notice).to_contain_text("could not be downloaded")
    await expect(page.get_by_role("button", name="PowerPoint")).to_be_enabled()


async def test_switching_the_theme_in_one_tab_redraws_the_slides_in_both(
    page: Page, other_page: Page, alice_url: str
) -> None:
    sent: list[tuple[str, str | None, str | None]] = []

    def record(request: Request) -> None:
        if request.url.endswith("/theme"):
            sent.append((request.method, request.headers.get("idempotency-key"), request.post_data))

    page.on("request", record)
    other_page.on("request", record)
    await _finished_deck_in_two_tabs(page, other_page, alice_url, 3)
    for tab in (page, other_page):
        await expect(tab.locator("#deck-theme")).to_have_value("default")
        # The pickers offer the server's themes, by their labels.
        for picker in ("#theme", "#deck-theme"):
            labels = tab.locator(f"{picker} option")
            await expect(labels).to_have_text(["Default", "Corporate", "Dark", "Playful"])

    await page.select_option("#deck-theme", "dark")

    for tab in (page, other_page):
        await expect(tab.locator(f"{SLIDES} .slide.theme--dark")).to_have_count(3)
        await expect(tab.locator(f"{SLIDES} .slide.theme--default")).to_have_count(0)
        await expect(tab.locator("#deck-theme")).to_have_value("dark")
        await expect(tab.locator("#deck-theme")).to_be_enabled()
        # Drawn by the stylesheet written from the theme's file.
        title = tab.locator(f"{SLIDES} .slide__title").nth(1)
        await expect(title).to_have_css("text-transform", "uppercase")
        await expect(title).to_have_css("color", "rgb(248, 250, 252)")
    assert len(sent) == 1
    method, key, body = sent[0]
    assert method == "PUT"
    assert (key or "").startswith("page-")
    assert json.loads(body or "{}") == {"theme": "dark"}

    await other_page.select_option("#deck-theme", "playful")
    for tab in (page, other_page):
        await expect(tab.locator(f"{SLIDES} .slide.theme--playful")).to_have_count(3)
        await expect(tab.locator("#deck-theme")).to_have_value("playful")
    assert len(sent) == 2
    assert sent[1][1] != key  # a fresh key for every switch

    # Opened afresh, the page reads the theme from the slides.
    await page.reload()
    await expect(page.locator(SLIDES)).to_have_count(3)
    await expect(page.locator("#deck-theme")).to_have_value("playful")
    await page.screenshot(path=screenshot_path("theme-switched"), full_page=True)


async def test_downloads_and_the_theme_wait_for_the_end_of_generation(
    page: Page, alice_url: str
) -> None:
    await page.goto(alice_url)
    await _create_deck(page, "A very long deck", 30)
    await expect(page.locator(SLIDES).first).to_be_attached()
    await expect(page.locator("#deck-status")).to_have_text("generating")
    for control in ("#download-pptx", "#download-pdf", "#download-html", "#deck-theme"):
        await expect(page.locator(control)).to_be_attached()
        await expect(page.locator(control)).to_be_hidden()

    await page.click("#cancel-button")
    await expect(page.locator("#deck-status")).to_have_text("cancelled")
    await expect(page.get_by_role("button", name="PowerPoint")).to_be_visible()
    await expect(page.get_by_role("button", name="HTML", exact=True)).to_be_visible()
    await expect(page.get_by_role("button", name="PDF", exact=True)).to_be_visible()
    await expect(page.locator("#deck-theme")).to_be_visible()


@pytest.mark.parametrize("viewport", [(1280, 720), (1920, 1080), (800, 900)])
async def test_the_html_export_fits_each_slide_in_its_frame_and_shows_its_notes_on_screen(
    app: RunningApi,
    settings: Settings,
    browser: Browser,
    tmp_path: Path,
    viewport: tuple[int, int],
) -> None:
    token = token_for(settings, "alice")
    async with httpx.AsyncClient(
        base_url=app.url, headers={"Authorization": f"Bearer {token}"}
    ) as http:
        created = await http.post("/api/v1/decks", json={"prompt": "Harbours", "slide_count": 3})
        deck_id = created.json()["deck_id"]
        for _ in range(200):
            if (await http.get(f"/api/v1/decks/{deck_id}")).json()["status"] == "COMPLETED":
                break
            await asyncio.sleep(0.05)
        exported = await http.get(f"/api/v1/decks/{deck_id}/export", params={"format": "html"})
    path = tmp_path / "deck.html"
    path.write_bytes(exported.content)
    width, height = viewport
    shown = await browser.new_page(viewport={"width": width, "height": height})
    try:
        await shown.goto(path.as_uri())
        await shown.keyboard.press("ArrowRight")
        frame = await _box(shown, ".slide-frame:not([hidden])")
        slide = await _box(shown, ".slide-frame:not([hidden]) .slide")
        assert slide == pytest.approx(frame, abs=1), "the slide overflows its frame"
        assert frame["y"] + frame["height"] <= height

        await shown.keyboard.press("n")
        notes = await _box(shown, "#notes")
        frame = await _box(shown, ".slide-frame:not([hidden])")
        assert notes["height"] > 20
        assert notes["y"] + notes["height"] <= height + 1, "the notes are off screen"
        assert frame["y"] + frame["height"] <= notes["y"] + 1
        await shown.screenshot(path=screenshot_path(f"html-export-{width}x{height}-notes"))
    finally:
        await shown.close()


async def _box(page: Page, selector: str) -> dict[str, float]:
    box = await page.locator(selector).bounding_box()
    assert box is not None, selector
    return dict(box)


async def test_on_a_phone_nothing_overflows_sideways_and_the_presenter_fits(
    page: Page, alice_url: str
) -> None:
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.goto(alice_url)
    await _create_deck(page, "Harbours of the North Sea and their long history of trade", 3)
    await expect(page.locator("#deck-status")).to_have_text("completed")

    assert await page.evaluate("document.documentElement.scrollWidth") == 390
    await page.click("#present-button")
    stage = await page.locator("#presenter-slide").bounding_box()
    assert stage is not None
    assert stage["x"] >= 0
    assert stage["x"] + stage["width"] <= 390
    # No keys on a phone: buttons, and a tap on either half of the slide.
    counter = page.locator("#presenter-counter")
    await expect(counter).to_have_text("1 / 3")
    await page.click("#presenter-next")
    await expect(counter).to_have_text("2 / 3")
    await page.locator("#presenter-slide").click(position={"x": 10, "y": 10})
    await expect(counter).to_have_text("1 / 3")
    await page.locator("#presenter-slide").click(position={"x": stage["width"] - 10, "y": 10})
    await expect(counter).to_have_text("2 / 3")
    await page.click("#presenter-notes-toggle")
    await expect(page.locator("#presenter-notes")).to_be_visible()
    await page.screenshot(path=screenshot_path("phone-presenting"))
    await page.click("#presenter-exit")
    await expect(page.locator("#presenter")).to_be_hidden()


async def test_without_a_token_the_page_says_how_to_sign_in(
    page: Page, app: RunningApi, alice_url: str, expected_console_errors: list[str]
) -> None:
    expected_console_errors.append("401")  # the refused token's requests
    await page.goto(app.url)

    await expect(page.locator("#token-panel")).to_be_visible()
    await expect(page.locator("#token-help")).to_contain_text("You are not signed in.")
    await expect(page.locator("#token-help")).to_contain_text("presto-deck dev")
    await page.fill("#prompt", "Anything")
    await page.click("#create-button")
    await expect(page.locator("#notice")).to_have_text(
        "You are not signed in: open the sign-in link or paste a token (see above)."
    )

    # A sign-in link pasted into the open tab signs it in.
    good = alice_url.partition("#")[2]
    await page.evaluate(f"location.hash = {json.dumps(good)}")
    await expect(page.locator("#token-panel")).to_be_hidden()
    assert "token=" not in page.url
    await _create_deck(page, "Signed in by a link", 1)
    await expect(page.locator("#deck-status")).to_have_text("completed")

    await page.click("#token-toggle")
    await page.fill("#token-input", "not-a-token")
    await page.click("#token-form button[type=submit]")
    await expect(page.locator("#token-why")).to_contain_text("The server refused your token")
    await expect(page.locator("#notice")).not_to_contain_text("Not enough segments")
