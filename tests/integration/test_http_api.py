"""The HTTP API (v1) as a client sees it: real API, worker, PostgreSQL and Redis (SPEC §4, §5).

Sweeps run their cases on one API and compare all outcomes at once, so a failure lists every
case that went wrong rather than the first.
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import msgspec
import pytest
import websockets

from presto_deck.infrastructure.messaging import keys
from presto_deck.settings import Settings
from tests.conftest import token_for
from tests.support.client import DeckClient, assert_contiguous, is_terminal, receive_events
from tests.support.deck_http import events_via_http
from tests.support.running import RunningApi, running_api, running_worker
from tests.support.tokens import (
    BAD_TOKENS,
    huge_crit_header,
    lone_surrogate_in_sub,
    nul_in_sub,
)

DECK_KEYS = {
    "id",
    "title",
    "status",
    "version",
    "deck_plan",
    "created_at",
    "updated_at",
    "slides",
    "failure",
    "theme",
}
SLIDE_KEYS = {
    "id",
    "order",
    "html_content",
    "presenter_notes",
    "content",
    "created_at",
    "updated_at",
}
SUMMARY_KEYS = DECK_KEYS - {"deck_plan", "slides", "failure", "theme"}
EVENT_KEYS = {"event_type", "deck_id", "version", "timestamp", "payload"}
CANCEL_ACCEPTED = {"message": "Cancellation request received."}


@pytest.fixture
async def anonymous(api: RunningApi) -> AsyncIterator[httpx.AsyncClient]:
    """A client that sends no Authorization header unless told to."""
    async with httpx.AsyncClient(base_url=api.url, timeout=10) as client:
        yield client


def is_json_error(response: httpx.Response) -> bool:
    """A JSON body with the status and a non-empty ``detail`` message."""
    if not response.headers.get("content-type", "").startswith("application/json"):
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    return (
        isinstance(body, dict)
        and body.get("status_code") == response.status_code
        and isinstance(body.get("detail"), str)
        and bool(body["detail"].strip())
    )


def utc(timestamp: str) -> datetime:
    moment = datetime.fromisoformat(timestamp)
    assert moment.utcoffset() == timedelta(0), timestamp
    return moment


async def queued_jobs(api: RunningApi) -> int:
    return int(await api.container.redis.zcard(keys.QUEUE))


# -- creating and reading decks --------------------------------------------------------------------


async def test_create_answers_202_with_the_deck_id_and_pending_status(alice: DeckClient) -> None:
    response = await alice.http.post(
        "/api/v1/decks", json={"prompt": "Birds of the Baltic", "slide_count": 3}
    )

    assert response.status_code == 202
    body = response.json()
    assert set(body) == {"deck_id", "status"}
    assert body["status"] == "PENDING"
    assert str(uuid.UUID(body["deck_id"])) == body["deck_id"]


async def test_a_new_deck_is_pending_at_version_1_with_no_plan_slides_or_events(
    alice: DeckClient,
) -> None:
    deck_id = await alice.create("Just asked", title="My own title", theme="dark")

    deck = await alice.deck(deck_id)

    assert set(deck) == DECK_KEYS
    assert deck["id"] == deck_id
    assert (deck["status"], deck["version"], deck["deck_plan"], deck["slides"]) == (
        "PENDING",
        1,
        None,
        [],
    )
    assert deck["title"] == "My own title"
    assert utc(deck["created_at"]) <= utc(deck["updated_at"])
    assert await events_via_http(alice, deck_id) == []


async def test_a_finished_deck_has_the_documented_shape_with_its_slides_in_order(
    alice: DeckClient, worker: None
) -> None:
    deck_id = await alice.create("Lighthouses", slide_count=3)

    deck = await alice.wait_for_status(deck_id, "COMPLETED")

    assert set(deck) == DECK_KEYS
    assert deck["version"] == 7
    assert deck["theme"] == "default"
    assert isinstance(deck["title"], str)
    assert deck["title"]
    assert isinstance(deck["deck_plan"], dict)
    assert len(deck["deck_plan"]["slides"]) == 3
    assert utc(deck["created_at"]) <= utc(deck["updated_at"])
    slides = deck["slides"]
    assert [slide["order"] for slide in slides] == [1, 2, 3]
    for slide in slides:
        assert set(slide) == SLIDE_KEYS
        uuid.UUID(slide["id"])
        assert isinstance(slide["html_content"], str)
        assert slide["html_content"]
        assert slide["presenter_notes"] is None or isinstance(slide["presenter_notes"], str)
        assert utc(slide["created_at"]) <= utc(slide["updated_at"])
        assert slide["content"]["title"]
        assert slide["content"]["title"] in slide["html_content"]
        assert slide["content"]["notes"] == (slide["presenter_notes"] or "")
    added = [
        e["payload"]
        for e in await events_via_http(alice, deck_id)
        if e["event_type"] == "SlideAdded"
    ]
    assert [p["slide_id"] for p in added] == [slide["id"] for slide in slides]
    assert [p["html_content"] for p in added] == [slide["html_content"] for slide in slides]


async def test_events_after_a_version_are_the_persisted_events_in_order(
    alice: DeckClient, worker: None
) -> None:
    deck_id = await alice.create("Tides", slide_count=2)
    final = (await alice.wait_for_status(deck_id, "COMPLETED"))["version"]

    after = {n: await events_via_http(alice, deck_id, after=n) for n in range(final + 2)}

    everything = after[0]
    assert [e["event_type"] for e in everything] == [
        "DeckStarted",
        "PlanUpdated",
        "SlideAdded",
        "SlideAdded",
        "DeckCompleted",
    ]
    assert_contiguous(everything, first=2)
    for event in everything:
        assert set(event) == EVENT_KEYS
        assert event["deck_id"] == deck_id
        utc(event["timestamp"])
    assert everything[0]["payload"] == {"status": "PLANNING"}
    assert everything[-1]["payload"] == {"slide_count": 2}
    for n, events in after.items():
        assert events == everything[max(n - 1, 0) :], n
    without_query = await alice.http.get(f"/api/v1/decks/{deck_id}/events")
    assert without_query.json() == everything


async def test_the_list_holds_only_the_callers_decks_newest_first_paginated_without_slides(
    alice: DeckClient, bob: DeckClient
) -> None:
    created = [await alice.create(f"Deck number {n}") for n in range(5)]
    bobs = await bob.create("Bob's only deck")

    async def page(client: DeckClient, **params: int) -> dict[str, Any]:
        response = await client.http.get("/api/v1/decks", params=params)
        assert response.status_code == 200, response.text
        return dict(response.json())

    first, second, third = [await page(alice, limit=2, offset=n) for n in (0, 2, 4)]
    everything = await page(alice)
    beyond = await page(alice, limit=2, offset=10)
    bobs_list = await page(bob)

    newest_first = list(reversed(created))
    assert [d["id"] for d in everything["items"]] == newest_first
    assert (everything["total"], everything["limit"], everything["offset"]) == (5, 20, 0)
    assert [d["id"] for p in (first, second, third) for d in p["items"]] == newest_first
    assert [len(p["items"]) for p in (first, second, third)] == [2, 2, 1]
    assert {p["total"] for p in (first, second, third)} == {5}
    assert (second["limit"], second["offset"]) == (2, 2)
    assert beyond["items"] == []
    assert beyond["total"] == 5
    for summary in everything["items"]:
        assert set(summary) == SUMMARY_KEYS
        assert summary["status"] == "PENDING"
    assert set(everything) == {"items", "total", "limit", "offset"}
    assert [d["id"] for d in bobs_list["items"]] == [bobs]
    assert bobs_list["total"] == 1


# -- Idempotency-Key -------------------------------------------------------------------------------


async def test_the_same_idempotency_key_from_the_same_user_gives_one_deck_and_one_job(
    api: RunningApi, alice: DeckClient
) -> None:
    async def create(key: str) -> str:
        response = await alice.http.post(
            "/api/v1/decks", json={"prompt": "Once only"}, headers={"Idempotency-Key": key}
        )
        assert response.status_code == 202, response.text
        assert response.json()["status"] == "PENDING"
        return str(response.json()["deck_id"])

    sequential = [await create("key-1") for _ in range(3)]
    concurrent = await asyncio.gather(*(create("key-2") for _ in range(8)))

    assert len(set(sequential)) == 1
    assert len(set(concurrent)) == 1
    assert sequential[0] != concurrent[0]
    listed = (await alice.http.get("/api/v1/decks")).json()
    assert listed["total"] == 2
    assert await queued_jobs(api) == 2


async def test_the_same_idempotency_key_from_different_users_gives_different_decks(
    api: RunningApi, alice: DeckClient, bob: DeckClient
) -> None:
    headers = {"Idempotency-Key": "shared-key"}

    mine = await alice.http.post("/api/v1/decks", json={"prompt": "Mine"}, headers=headers)
    theirs = await bob.http.post("/api/v1/decks", json={"prompt": "Theirs"}, headers=headers)

    assert mine.status_code == theirs.status_code == 202
    assert mine.json()["deck_id"] != theirs.json()["deck_id"]
    assert (await alice.deck(mine.json()["deck_id"]))["title"] == "Mine"
    assert (await bob.deck(theirs.json()["deck_id"]))["title"] == "Theirs"
    assert await queued_jobs(api) == 2


async def test_an_idempotency_key_reused_for_another_request_is_a_422_naming_the_conflict(
    api: RunningApi, alice: DeckClient
) -> None:
    headers = {"Idempotency-Key": "once"}
    first = await alice.http.post("/api/v1/decks", json={"prompt": "Tides"}, headers=headers)
    other = await alice.http.post("/api/v1/decks", json={"prompt": "Winds"}, headers=headers)
    again = await alice.http.post("/api/v1/decks", json={"prompt": "Tides"}, headers=headers)

    assert first.status_code == again.status_code == 202
    assert again.json()["deck_id"] == first.json()["deck_id"]
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_conflict"
    assert other.json()["detail"] == (
        f"The Idempotency-Key 'once' was used for another request (deck "
        f"{first.json()['deck_id']}); use a new key for a new deck."
    )
    assert (await alice.http.get("/api/v1/decks")).json()["total"] == 1
    assert await queued_jobs(api) == 1


# -- authentication and ownership ------------------------------------------------------------------


async def test_every_api_route_answers_401_with_a_json_body_for_each_kind_of_bad_token(
    api: RunningApi, anonymous: httpx.AsyncClient, alice: DeckClient, settings: Settings
) -> None:
    deck_id = await alice.create("Guarded")
    routes = [
        ("POST", "/api/v1/decks", {"prompt": "Sneaky"}),
        ("GET", "/api/v1/decks", None),
        ("GET", f"/api/v1/decks/{deck_id}", None),
        ("GET", f"/api/v1/decks/{deck_id}/events", None),
        ("POST", f"/api/v1/decks/{deck_id}/cancel", None),
    ]
    authorizations: dict[str, str | None] = {
        "no header": None,
        "Basic": "Basic YWxpY2U6c2VjcmV0",
        "Bearer alone": "Bearer",
        "token without scheme": alice.token,
        "two tokens": f"Bearer {alice.token} {alice.token}",
    }
    authorizations.update(
        {f"Bearer <{kind}>": f"Bearer {make(settings)}" for kind, make in BAD_TOKENS.items()}
    )

    problems = []
    for name, authorization in authorizations.items():
        headers = {} if authorization is None else {"Authorization": authorization}
        for method, path, body in routes:
            response = await anonymous.request(method, path, json=body, headers=headers)
            if response.status_code != 401 or not is_json_error(response):
                problems.append((name, method, path, response.status_code, response.text))
            elif response.headers.get("www-authenticate") != "Bearer":
                problems.append((name, method, path, "no WWW-Authenticate: Bearer"))

    assert problems == []
    listed = (await alice.http.get("/api/v1/decks")).json()
    assert [d["id"] for d in listed["items"]] == [deck_id]
    assert (await alice.deck(deck_id))["status"] == "PENDING"


async def test_a_signed_token_whose_user_id_holds_a_nul_character_is_401_not_a_server_error(
    anonymous: httpx.AsyncClient, settings: Settings
) -> None:
    headers = {"Authorization": f"Bearer {nul_in_sub(settings)}"}

    answers = {
        path: await anonymous.get(path, headers=headers)
        for path in ["/api/v1/decks", f"/api/v1/decks/{uuid.uuid4()}"]
    }

    assert {path: r.status_code for path, r in answers.items()} == dict.fromkeys(answers, 401)
    assert all(is_json_error(r) for r in answers.values())


async def test_a_signed_token_whose_user_id_is_a_lone_surrogate_is_401_not_a_server_error(
    anonymous: httpx.AsyncClient, settings: Settings
) -> None:
    headers = {"Authorization": f"Bearer {lone_surrogate_in_sub(settings)}"}

    answers = {
        path: await anonymous.get(path, headers=headers)
        for path in ["/api/v1/decks", f"/api/v1/decks/{uuid.uuid4()}"]
    }

    assert {path: r.status_code for path, r in answers.items()} == dict.fromkeys(answers, 401)
    assert all(is_json_error(r) for r in answers.values())


async def test_a_401_detail_stays_short_whatever_the_token_quotes(
    anonymous: httpx.AsyncClient, settings: Settings
) -> None:
    headers = {"Authorization": f"Bearer {huge_crit_header(settings)}"}

    response = await anonymous.get("/api/v1/decks", headers=headers)

    assert response.status_code == 401
    assert is_json_error(response)
    assert len(response.json()["detail"]) <= 200


async def test_another_users_deck_answers_byte_for_byte_like_a_missing_one(
    alice: DeckClient, bob: DeckClient
) -> None:
    bobs = await bob.create("Bob's secret plans")
    missing = str(uuid.uuid4())

    answers = {}
    for method, path in [
        ("GET", "/api/v1/decks/{}"),
        ("GET", "/api/v1/decks/{}/events"),
        ("GET", "/api/v1/decks/{}/events?after_version=1"),
        ("POST", "/api/v1/decks/{}/cancel"),
    ]:
        foreign = await alice.http.request(method, path.format(bobs))
        absent = await alice.http.request(method, path.format(missing))
        answers[(method, path)] = (foreign.status_code, absent.status_code)
        assert foreign.content == absent.content, (method, path)
        assert foreign.headers.get("content-type") == absent.headers.get("content-type")
        assert is_json_error(foreign), foreign.text

    assert set(answers.values()) == {(404, 404)}
    assert (await bob.deck(bobs))["status"] == "PENDING"  # Alice's cancel did nothing


# -- cancellation ----------------------------------------------------------------------------------


async def test_cancel_during_generation_is_accepted_ends_with_deck_cancelled_and_then_409(
    alice: DeckClient, settings: Settings
) -> None:
    slow = msgspec.structs.replace(settings, offline_slide_delay_ms=100)
    async with running_worker(slow):
        deck_id = await alice.create("Too long to wait for", slide_count=20)
        async with alice.socket(deck_id, last_version=1) as ws:
            events = await receive_events(ws, lambda e: e["event_type"] == "SlideAdded")
            response = await alice.http.post(f"/api/v1/decks/{deck_id}/cancel")
            events += await receive_events(ws, is_terminal)

    assert response.status_code == 202
    assert response.json() == CANCEL_ACCEPTED
    assert_contiguous(events, first=2)
    assert events[-1]["event_type"] == "DeckCancelled"
    assert events[-1]["payload"] == {}
    deck = await alice.deck(deck_id)
    assert deck["status"] == "CANCELLED"
    assert deck["version"] == events[-1]["version"]
    added = [e for e in events if e["event_type"] == "SlideAdded"]
    assert 1 <= len(deck["slides"]) == len(added) < 20
    assert await events_via_http(alice, deck_id, after=deck["version"]) == []  # nothing after it
    again = await alice.http.post(f"/api/v1/decks/{deck_id}/cancel")
    assert again.status_code == 409
    assert is_json_error(again), again.text


async def test_cancel_of_a_pending_deck_cancels_it_at_once_and_a_second_cancel_is_409(
    alice: DeckClient,
) -> None:
    deck_id = await alice.create("Never started")

    first = await alice.http.post(f"/api/v1/decks/{deck_id}/cancel")
    second = await alice.http.post(f"/api/v1/decks/{deck_id}/cancel")

    assert first.status_code == 202
    assert first.json() == CANCEL_ACCEPTED
    assert second.status_code == 409
    assert is_json_error(second), second.text
    deck = await alice.deck(deck_id)
    assert (deck["status"], deck["version"]) == ("CANCELLED", 2)
    assert [e["event_type"] for e in await events_via_http(alice, deck_id)] == ["DeckCancelled"]


async def test_cancel_of_a_completed_deck_is_409_and_changes_nothing(
    alice: DeckClient, worker: None
) -> None:
    deck_id = await alice.create("Already done", slide_count=1)
    done = await alice.wait_for_status(deck_id, "COMPLETED")

    response = await alice.http.post(f"/api/v1/decks/{deck_id}/cancel")

    assert response.status_code == 409
    assert is_json_error(response), response.text
    assert await alice.deck(deck_id) == done


# -- malformed input: never a 500, always a JSON error ---------------------------------------------


async def post_raw(client: DeckClient, body: bytes, content_type: str) -> httpx.Response:
    return await client.http.post(
        "/api/v1/decks", content=body, headers={"Content-Type": content_type}
    )


def body(**fields: Any) -> bytes:
    return json.dumps({"prompt": "A fine prompt", **fields}).encode()


#: Invalid creation bodies and the field that the 400's detail must name.
INVALID_BODIES: dict[str, tuple[bytes, str]] = {
    "missing prompt": (b"{}", "prompt"),
    "only other fields": (json.dumps({"slide_count": 3}).encode(), "prompt"),
    "empty prompt": (json.dumps({"prompt": ""}).encode(), "prompt"),
    "whitespace prompt": (json.dumps({"prompt": " \t\n "}).encode(), "prompt"),
    "4001-char prompt": (json.dumps({"prompt": "x" * 4001}).encode(), "prompt"),
    "prompt not a string": (json.dumps({"prompt": 42}).encode(), "prompt"),
    "prompt null": (json.dumps({"prompt": None}).encode(), "prompt"),
    "slide_count 0": (body(slide_count=0), "slide_count"),
    "slide_count 31": (body(slide_count=31), "slide_count"),
    "slide_count -1": (body(slide_count=-1), "slide_count"),
    "slide_count 8.5": (body(slide_count=8.5), "slide_count"),
    "slide_count null": (body(slide_count=None), "slide_count"),
    "slide_count true": (body(slide_count=True), "slide_count"),
    "slide_count huge": (body(slide_count=10**30), "slide_count"),
    "unknown field": (body(colour="red"), "colour"),
    "title empty": (body(title=""), "title"),
    "title not a string": (body(title=["a"]), "title"),
    "theme too long": (body(theme="t" * 101), "theme"),
    "unknown theme": (body(theme="neon"), "theme"),
    "language too long": (body(language="l" * 36), "language"),
}


async def test_an_unknown_theme_is_refused_with_the_list_of_themes(alice: DeckClient) -> None:
    response = await alice.http.post("/api/v1/decks", json={"prompt": "p", "theme": "neon"})

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_request"
    assert "default, corporate, dark, playful" in response.json()["detail"]
    assert "extra" not in response.json()  # no field-by-field list to give: the detail says it


async def test_invalid_create_bodies_are_400_with_a_detail_naming_the_field(
    alice: DeckClient,
) -> None:
    outcomes = {}
    for name, (raw, field) in INVALID_BODIES.items():
        response = await post_raw(alice, raw, "application/json")
        detail = response.json().get("detail", "") if is_json_error(response) else ""
        outcomes[name] = (response.status_code, field in detail, is_json_error(response))

    assert outcomes == dict.fromkeys(INVALID_BODIES, (400, True, True))
    assert (await alice.http.get("/api/v1/decks")).json()["total"] == 0


async def test_a_slide_count_sent_as_a_numeric_string_is_read_as_that_number(
    alice: DeckClient,
) -> None:
    # Litestar converts request bodies leniently: a string that is exactly an integer counts as
    # one; anything else is still a 400 naming the field.
    accepted = await post_raw(alice, body(slide_count="8"), "application/json")
    assert accepted.status_code == 202, accepted.text
    assert len((await alice.deck(accepted.json()["deck_id"]))["deck_plan"] or {}) >= 0
    for value in ["8.5", "eight", "31"]:
        response = await post_raw(alice, body(slide_count=value), "application/json")
        assert response.status_code == 400, (value, response.text)
        assert "slide_count" in response.json()["detail"]


async def test_unparseable_create_bodies_are_400_with_a_json_error(alice: DeckClient) -> None:
    cases = {
        "invalid JSON": b'{"prompt": ',
        "trailing garbage": b'{"prompt": "a"} x',
        "JSON array": b'[{"prompt": "a"}]',
        "JSON string": b'"a prompt"',
        "JSON number": b"8",
        "JSON null": b"null",
        "empty body": b"",
        "lone surrogate": b'{"prompt": "a\\ud800b"}',
    }
    outcomes = {}
    for name, raw in cases.items():
        response = await post_raw(alice, raw, "application/json")
        outcomes[name] = (response.status_code, is_json_error(response))

    assert outcomes == dict.fromkeys(cases, (400, True))


async def test_deeply_nested_json_is_400_not_500(alice: DeckClient) -> None:
    depth = 5000
    cases = {
        "nested arrays": b"[" * depth + b"]" * depth,
        "nested in a field": b'{"prompt": "a", "title": ' + b"[" * depth + b"]" * depth + b"}",
        "nested objects": b'{"prompt": "a", "x": ' + b'{"a":' * depth + b"1" + b"}" * depth + b"}",
    }
    outcomes = {}
    for name, raw in cases.items():
        response = await post_raw(alice, raw, "application/json")
        outcomes[name] = (response.status_code, is_json_error(response))

    assert outcomes == dict.fromkeys(cases, (400, True))


async def test_a_body_that_is_not_utf8_is_400_not_500(alice: DeckClient) -> None:
    cases = {
        "latin-1 prompt": '{"prompt": "caf\xe9"}'.encode("latin-1"),
        "invalid bytes": b'{"prompt": "\xff\xfe"}',
        "UTF-16": '{"prompt": "a"}'.encode("utf-16"),
    }
    outcomes = {}
    for name, raw in cases.items():
        response = await post_raw(alice, raw, "application/json")
        outcomes[name] = (response.status_code, is_json_error(response))

    assert outcomes == dict.fromkeys(cases, (400, True))


async def test_a_nul_character_in_a_text_field_is_400_not_a_server_error(
    alice: DeckClient,
) -> None:
    cases = {
        "prompt": body(prompt="before\u0000after"),
        "title": body(title="a\u0000b"),
        "theme": body(theme="\u0000"),
    }
    outcomes = {}
    for name, raw in cases.items():
        response = await post_raw(alice, raw, "application/json")
        outcomes[name] = (response.status_code, is_json_error(response))

    assert outcomes == dict.fromkeys(cases, (400, True))


async def test_a_body_of_the_wrong_content_type_never_gets_a_server_error(
    alice: DeckClient,
) -> None:
    cases = {
        "form fields": (b"prompt=Tea", "application/x-www-form-urlencoded"),
        "multipart": (b"--x\r\n\r\nTea\r\n--x--\r\n", "multipart/form-data; boundary=x"),
        "plain text": (b"Tea, please", "text/plain"),
        "JSON as text/plain": (body(), "text/plain"),
        "XML": (b"<deck><prompt>Tea</prompt></deck>", "application/xml"),
    }
    outcomes = {}
    for name, (raw, content_type) in cases.items():
        response = await post_raw(alice, raw, content_type)
        ok = response.status_code == 202 or is_json_error(response)
        outcomes[name] = (response.status_code < 500, ok)

    assert outcomes == dict.fromkeys(cases, (True, True))
    for name in ("form fields", "plain text", "XML"):
        response = await post_raw(alice, *cases[name])
        assert 400 <= response.status_code < 500, (name, response.status_code)


async def test_bad_headers_paths_and_query_values_are_4xx_with_a_json_error(
    alice: DeckClient,
) -> None:
    deck_id = await alice.create("Target")
    requests: dict[str, tuple[str, str, dict[str, str]]] = {
        "huge Idempotency-Key": ("POST", "/api/v1/decks", {"Idempotency-Key": "k" * 4000}),
        "empty Idempotency-Key": ("POST", "/api/v1/decks", {"Idempotency-Key": ""}),
        "non-UUID deck": ("GET", "/api/v1/decks/not-a-uuid", {}),
        "non-UUID events": ("GET", "/api/v1/decks/not-a-uuid/events", {}),
        "non-UUID cancel": ("POST", "/api/v1/decks/not-a-uuid/cancel", {}),
        "after_version=-1": ("GET", f"/api/v1/decks/{deck_id}/events?after_version=-1", {}),
        "after_version=abc": ("GET", f"/api/v1/decks/{deck_id}/events?after_version=abc", {}),
        "after_version=1.5": ("GET", f"/api/v1/decks/{deck_id}/events?after_version=1.5", {}),
        "after_version huge": (
            "GET",
            f"/api/v1/decks/{deck_id}/events?after_version={10**30}",
            {},
        ),
        "limit=0": ("GET", "/api/v1/decks?limit=0", {}),
        "limit=1000000": ("GET", "/api/v1/decks?limit=1000000", {}),
        "limit=abc": ("GET", "/api/v1/decks?limit=abc", {}),
        "offset=-1": ("GET", "/api/v1/decks?offset=-1", {}),
        "offset huge": ("GET", f"/api/v1/decks?offset={10**30}", {}),
        "unknown route": ("GET", "/api/v1/nothing-here", {}),
        "wrong method": ("DELETE", f"/api/v1/decks/{deck_id}", {}),
    }

    outcomes = {}
    for name, (method, path, headers) in requests.items():
        response = await alice.http.request(
            method, path, headers=headers, json={"prompt": "x"} if method == "POST" else None
        )
        outcomes[name] = (400 <= response.status_code < 500, is_json_error(response))

    assert outcomes == dict.fromkeys(requests, (True, True))
    huge_key = await alice.http.post(
        "/api/v1/decks", json={"prompt": "x"}, headers={"Idempotency-Key": "k" * 4000}
    )
    assert huge_key.status_code == 400
    assert "idempotency" in huge_key.json()["detail"].lower()
    limit = await alice.http.get("/api/v1/decks?limit=0")
    assert limit.status_code == 400
    assert "limit" in limit.json()["detail"]
    assert (await alice.http.get("/api/v1/decks")).json()["total"] == 1


# -- operational endpoints -------------------------------------------------------------------------


async def test_health_and_metrics_answer_200_without_a_token(anonymous: httpx.AsyncClient) -> None:
    live = await anonymous.get("/health/live")
    ready = await anonymous.get("/health/ready")
    metrics = await anonymous.get("/metrics")

    assert (live.status_code, ready.status_code, metrics.status_code) == (200, 200, 200)
    assert live.json() == {"status": "ok"}
    assert ready.json() == {"status": "ok", "database": "ok", "redis": "ok"}
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "# HELP" in metrics.text
    assert "# TYPE" in metrics.text


async def test_the_openapi_schema_lists_the_deck_and_editing_routes(
    anonymous: httpx.AsyncClient,
) -> None:
    response = await anonymous.get("/schema/openapi.json")

    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {"/api/v1/decks", "/api/v1/decks/{deck_id}"} <= set(paths)
    assert {"/api/v1/decks/{deck_id}/events", "/api/v1/decks/{deck_id}/cancel"} <= set(paths)
    assert {"get", "post"} <= set(paths["/api/v1/decks"])
    assert "post" in paths["/api/v1/decks/{deck_id}/cancel"]
    assert {"patch", "delete"} <= set(paths["/api/v1/decks/{deck_id}/slides/{slide_id}"])
    assert "post" in paths["/api/v1/decks/{deck_id}/slides"]
    assert "put" in paths["/api/v1/decks/{deck_id}/slides/order"]
    assert "get" in paths["/api/v1/themes"]
    bearer = response.json()["components"]["securitySchemes"]["bearer"]
    assert bearer == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A JWT whose sub is the user (presto-deck token USER).",
    }
    assert response.json()["security"] == [{"bearer": []}]


async def test_the_interactive_docs_page_is_off_unless_a_setting_turns_it_on(
    anonymous: httpx.AsyncClient, settings: Settings
) -> None:
    off = await anonymous.get("/schema")
    yaml = await anonymous.get("/schema/openapi.yaml")
    async with (
        running_api(msgspec.structs.replace(settings, api_docs_page=True)) as api,
        httpx.AsyncClient(base_url=api.url) as http,
    ):
        on = await http.get("/schema")

    assert off.status_code == 200  # the schema itself: JSON, no page, no script
    assert off.headers["content-type"].startswith("application/vnd.oai.openapi+json")
    assert yaml.status_code == 200
    assert on.status_code == 200
    assert "swagger-ui" in on.text


async def test_an_unreachable_database_answers_503_and_closes_sockets_with_1011(
    settings: Settings,
) -> None:
    with socket.socket() as probe:  # a port that nothing listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    nowhere = msgspec.structs.replace(
        settings, database_url=f"postgresql://postgres@127.0.0.1:{port}/nothing"
    )
    async with running_api(nowhere) as api:
        client = DeckClient(api.url, api.ws_url, token_for(settings, "alice"))
        try:
            created = await client.http.post("/api/v1/decks", json={"prompt": "Tea"})
            listed = await client.http.get("/api/v1/decks")
            async with client.socket(str(uuid.uuid4()), last_version=1) as ws:
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await ws.recv()
        finally:
            await client.aclose()

    for response in (created, listed):
        assert response.status_code == 503, response.text
        assert response.json()["detail"] == "Service temporarily unavailable; try again."
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1011
