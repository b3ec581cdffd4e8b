"""Editing a written deck on the real servers, over the socket and over HTTP: every operation,
every rule, acks tied to request ids, each change one event on every socket, replay from any
version, two API instances, and a request sent twice at once."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import msgspec
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from presto_deck.settings import Settings
from tests.conftest import token_for
from tests.support.client import DeckClient, Frame, assert_contiguous
from tests.support.database import execute
from tests.support.deck_http import client_of, events_via_http
from tests.support.running import RunningApi, running_api, running_worker
from tests.support.sockets import (
    events_until_heartbeat,
    is_heartbeat,
    next_frame,
    replayed_after,
)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, ws_heartbeat_seconds=0.5)


async def _written(client: DeckClient, slides: int = 3) -> Frame:
    deck_id = await client.create("Tidal energy", slide_count=slides)
    return await client.wait_for_status(deck_id, "COMPLETED")


def _slide_ids(deck: Frame) -> list[str]:
    return [slide["id"] for slide in deck["slides"]]


async def _answer(
    ws: ClientConnection, request_id: str, timeout: float = 15
) -> tuple[list[Frame], Frame]:
    """The deck events up to the ack (or error) of ``request_id``, and that answer."""
    events: list[Frame] = []
    async with asyncio.timeout(timeout):
        while True:
            frame = await next_frame(ws, timeout)
            if is_heartbeat(frame):
                continue
            if frame.get("type") in ("ack", "error"):
                assert frame.get("request_id") == request_id, frame
                return events, frame
            events.append(frame)


async def _send(ws: ClientConnection, kind: str, request_id: str, **data: Any) -> None:
    await ws.send(json.dumps({"type": kind, "request_id": request_id, "data": data}))


def _orders_are_contiguous(deck: Frame) -> None:
    assert [slide["order"] for slide in deck["slides"]] == list(range(1, len(deck["slides"]) + 1))


# -- over the socket -------------------------------------------------------------------------------


async def test_every_edit_over_the_socket_is_one_event_then_its_ack(
    alice: DeckClient, worker: None
) -> None:
    deck = await _written(alice, 3)
    a, b, c = _slide_ids(deck)
    version = deck["version"]

    async with alice.socket(deck["id"], last_version=version) as ws:
        await _send(ws, "UpdateSlide", "text", slide_id=b, title="Tides, in short", notes="Say it")
        texts, ack = await _answer(ws, "text")
        await _send(ws, "UpdateSlide", "prompt", slide_id=a, prompt="title: Why tides matter")
        rewritten, ack2 = await _answer(ws, "prompt")
        await _send(ws, "AddSlide", "add", after_slide_id=b, prompt="A chart of tidal ranges")
        added, ack3 = await _answer(ws, "add")
        await _send(ws, "DeleteSlide", "delete", slide_id=c)
        deleted, ack4 = await _answer(ws, "delete")
        new_id = added[0]["payload"]["slide_id"]
        await _send(ws, "ReorderSlides", "order", slide_ids=[new_id, a, b])
        reordered, ack5 = await _answer(ws, "order")

    events = [*texts, *rewritten, *added, *deleted, *reordered]
    assert [e["event_type"] for e in events] == [
        "SlideUpdated",
        "SlideUpdated",
        "SlideAdded",
        "SlideDeleted",
        "SlidesReordered",
    ]
    assert_contiguous(events, first=version + 1)
    for event, answer, request in zip(
        events,
        (ack, ack2, ack3, ack4, ack5),
        ("text", "prompt", "add", "delete", "order"),
        strict=True,
    ):
        assert answer == {"type": "ack", "request_id": request, "version": event["version"]}
        assert event["payload"]["request_id"] == request
    assert "Tides, in short" in texts[0]["payload"]["html_content"]
    assert texts[0]["payload"]["presenter_notes"] == "Say it"
    assert "Why tides matter" in rewritten[0]["payload"]["html_content"]
    assert added[0]["payload"]["order"] == 3
    assert added[0]["payload"]["slide_ids"] == [a, b, new_id, c]
    assert deleted[0]["payload"] == {
        "slide_id": c,
        "slide_ids": [a, b, new_id],
        "request_id": "delete",
    }

    after = await alice.deck(deck["id"])
    assert after["version"] == events[-1]["version"]
    assert _slide_ids(after) == [new_id, a, b]
    _orders_are_contiguous(after)
    by_id = {slide["id"]: slide for slide in after["slides"]}
    assert by_id[b]["html_content"] == texts[0]["payload"]["html_content"]
    assert by_id[a]["html_content"] == rewritten[0]["payload"]["html_content"]
    assert await events_via_http(alice, deck["id"], version) == events


async def test_refused_edits_get_their_code_and_request_id_and_change_nothing(
    alice: DeckClient, worker: None
) -> None:
    deck = await _written(alice, 3)
    a, b, _c = _slide_ids(deck)
    unknown = str(uuid.uuid4())

    async with alice.socket(deck["id"], last_version=deck["version"]) as ws:
        answers = {}
        for request_id, kind, data in [
            ("gone", "DeleteSlide", {"slide_id": unknown}),
            ("gone-after", "AddSlide", {"after_slide_id": unknown, "prompt": "x"}),
            ("gone-rewrite", "UpdateSlide", {"slide_id": unknown, "prompt": "x"}),
            ("short", "ReorderSlides", {"slide_ids": [a, b]}),
            ("twice", "ReorderSlides", {"slide_ids": [a, b, b]}),
            ("both", "UpdateSlide", {"slide_id": a, "prompt": "x", "title": "y"}),
        ]:
            await _send(ws, kind, request_id, **data)
            events, answers[request_id] = await _answer(ws, request_id)
            assert events == []
        _, heartbeat = await events_until_heartbeat(ws)

    codes = {request_id: answer["code"] for request_id, answer in answers.items()}
    assert codes == {
        "gone": "slide_not_found",
        "gone-after": "slide_not_found",
        "gone-rewrite": "slide_not_found",
        "short": "bad_order",
        "twice": "bad_order",
        "both": "invalid_frame",
    }
    assert all(answer["message"] for answer in answers.values())
    assert heartbeat["version"] == deck["version"]
    assert (await alice.deck(deck["id"]))["slides"] == deck["slides"]


async def test_an_edit_while_the_deck_is_generated_is_deck_busy(
    alice: DeckClient, settings: Settings
) -> None:
    deck_id = await alice.create("Still cooking", slide_count=2)  # no worker: PENDING

    response = await alice.http.post(f"/api/v1/decks/{deck_id}/slides", json={"prompt": "more"})

    assert response.status_code == 409, response.text
    assert response.json()["code"] == "deck_busy"


async def test_the_same_frame_sent_on_two_sockets_at_once_changes_the_deck_once(
    alice: DeckClient, worker: None
) -> None:
    deck = await _written(alice, 4)
    victim = _slide_ids(deck)[1]

    async with (
        alice.socket(deck["id"], last_version=deck["version"]) as first,
        alice.socket(deck["id"], last_version=deck["version"]) as second,
    ):
        frame = {"type": "DeleteSlide", "request_id": "once", "data": {"slide_id": victim}}
        await asyncio.gather(first.send(json.dumps(frame)), second.send(json.dumps(frame)))
        (events_1, ack_1), (events_2, ack_2) = await asyncio.gather(
            _answer(first, "once"), _answer(second, "once")
        )

    assert ack_1 == ack_2 == {"type": "ack", "request_id": "once", "version": deck["version"] + 1}
    assert events_1 == events_2
    assert [e["event_type"] for e in events_1] == ["SlideDeleted"]
    after = await alice.deck(deck["id"])
    assert after["version"] == deck["version"] + 1
    assert len(after["slides"]) == 3


async def test_a_rewrite_repeated_after_a_dropped_socket_is_answered_without_a_second_change(
    alice: DeckClient, worker: None
) -> None:
    deck = await _written(alice, 2)
    slide_id = _slide_ids(deck)[0]
    frame = {
        "type": "UpdateSlide",
        "request_id": "retry",
        "data": {"slide_id": slide_id, "prompt": "p"},
    }

    async with alice.socket(deck["id"], last_version=deck["version"]) as ws:
        await ws.send(json.dumps(frame))
        _, ack = await _answer(ws, "retry")
    async with alice.socket(deck["id"]) as ws:  # a new socket, after the change was made
        await ws.send(json.dumps(frame))
        again_events, again = await _answer(ws, "retry")

    assert again == ack
    assert again_events == []
    assert (await alice.deck(deck["id"]))["version"] == deck["version"] + 1


async def test_edit_events_replay_exactly_from_any_version(alice: DeckClient, worker: None) -> None:
    deck = await _written(alice, 3)
    a, b, c = _slide_ids(deck)
    for request in (
        alice.http.patch(f"/api/v1/decks/{deck['id']}/slides/{a}", json={"title": "One"}),
        alice.http.put(f"/api/v1/decks/{deck['id']}/slides/order", json={"slide_ids": [c, a, b]}),
        alice.http.delete(f"/api/v1/decks/{deck['id']}/slides/{b}"),
    ):
        assert (await request).status_code == 202
    history = await events_via_http(alice, deck["id"])
    final = history[-1]["version"]

    for last_version in range(0, final + 1):
        replayed = await replayed_after(alice, deck["id"], last_version)
        assert replayed == [e for e in history if e["version"] > last_version]


# -- over HTTP -------------------------------------------------------------------------------------


async def test_every_edit_over_http_answers_202_with_a_request_id_and_lands_as_events(
    alice: DeckClient, worker: None
) -> None:
    deck = await _written(alice, 3)
    a, b, c = _slide_ids(deck)
    base = f"/api/v1/decks/{deck['id']}/slides"

    text = await alice.http.patch(f"{base}/{a}", json={"bullets": ["Cheap", "Predictable"]})
    prompt = await alice.http.patch(
        f"{base}/{b}", json={"prompt": "Make it about costs"}, headers={"Idempotency-Key": "mine-1"}
    )
    added = await alice.http.post(base, json={"prompt": "Questions?", "after_slide_id": c})
    deleted = await alice.http.delete(f"{base}/{a}")

    for response in (text, prompt, added, deleted):
        assert response.status_code == 202, response.text
    assert text.json()["status"] == "APPLIED"
    assert text.json()["version"] == deck["version"] + 1
    assert prompt.json() == {"request_id": "mine-1", "status": "QUEUED", "version": None}
    assert added.json()["status"] == "QUEUED"
    assert len(added.json()["request_id"]) == 32  # made for the client

    async def both_applied() -> bool:
        events = await events_via_http(alice, deck["id"], deck["version"])
        return sum(e["event_type"] in ("SlideUpdated", "SlideAdded") for e in events) == 3

    async with asyncio.timeout(15):
        while not await both_applied():
            await asyncio.sleep(0.05)
    events = await events_via_http(alice, deck["id"], deck["version"])
    assert {e["payload"]["request_id"] for e in events} == {
        text.json()["request_id"],
        "mine-1",
        added.json()["request_id"],
        deleted.json()["request_id"],
    }
    assert_contiguous(events, first=deck["version"] + 1)
    after = await alice.deck(deck["id"])
    assert len(after["slides"]) == 3
    assert a not in _slide_ids(after)
    assert _slide_ids(after)[:2] == [b, c]
    _orders_are_contiguous(after)
    order = [c, *[i for i in _slide_ids(after) if i != c]]
    reordered = await alice.http.put(f"{base}/order", json={"slide_ids": order})
    assert reordered.status_code == 202
    assert _slide_ids(await alice.deck(deck["id"])) == order


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("patch", "/slides/{unknown}", {"title": "x"}, 404, "slide_not_found"),
        ("delete", "/slides/{unknown}", None, 404, "slide_not_found"),
        ("post", "/slides", {"prompt": "x", "after_slide_id": "{unknown}"}, 404, "slide_not_found"),
        ("put", "/slides/order", {"slide_ids": ["{unknown}"]}, 400, "bad_order"),
        ("patch", "/slides/{first}", {}, 400, "invalid_request"),
        ("patch", "/slides/{first}", {"prompt": "x", "notes": "y"}, 400, "invalid_request"),
        ("patch", "/slides/{first}", {"title": "a\u0000b"}, 400, "invalid_request"),
        ("patch", "/slides/{first}", {"title": "x", "extra": 1}, 400, "invalid_request"),
        ("post", "/slides", {"prompt": ""}, 400, "invalid_request"),
        ("put", "/slides/order", {"slide_ids": "nope"}, 400, "invalid_request"),
        ("put", "/slides/order", {"slide_ids": []}, 400, "bad_order"),
        ("patch", "/slides/not-a-uuid", {"title": "x"}, 404, None),
    ],
)
async def test_bad_edits_over_http_get_a_clear_4xx(
    alice: DeckClient,
    worker: None,
    method: str,
    path: str,
    body: Any,
    status: int,
    code: str | None,
) -> None:
    deck = await _written(alice, 2)
    values = {"unknown": str(uuid.uuid4()), "first": _slide_ids(deck)[0]}
    url = f"/api/v1/decks/{deck['id']}" + path.format(**values)
    if body is not None:
        body = json.loads(json.dumps(body).replace("{unknown}", values["unknown"]))
        response = await alice.http.request(method, url, json=body)
    else:
        response = await alice.http.request(method, url)

    assert response.status_code == status, response.text
    assert response.json()["detail"]
    if code is not None:
        assert response.json()["code"] == code
    assert (await alice.deck(deck["id"]))["version"] == deck["version"]


async def test_another_users_deck_cannot_be_edited(
    alice: DeckClient, bob: DeckClient, worker: None
) -> None:
    deck = await _written(alice, 2)

    response = await bob.http.delete(f"/api/v1/decks/{deck['id']}/slides/{_slide_ids(deck)[0]}")

    assert response.status_code == 404
    assert (await alice.deck(deck["id"]))["version"] == deck["version"]


async def test_edits_waiting_for_the_model_are_capped_per_deck(settings: Settings) -> None:
    capped = msgspec.structs.replace(settings, limit_queued_edits_per_deck=2)
    async with running_api(capped) as api, client_of(api, capped, "alice") as alice:
        async with running_worker(capped):
            deck = await _written(alice, 2)
        base = f"/api/v1/decks/{deck['id']}/slides"  # no worker now: edits stay queued
        first = _slide_ids(deck)[0]
        for n in range(2):
            queued = await alice.http.patch(f"{base}/{first}", json={"prompt": f"v{n}"})
            assert queued.json()["status"] == "QUEUED"

        refused = await alice.http.post(base, json={"prompt": "one too many"})
        direct = await alice.http.patch(f"{base}/{first}", json={"notes": "still fine"})

        assert refused.status_code == 429
        assert refused.json()["code"] == "too_many_edits"
        assert direct.status_code == 202
        async with running_worker(capped):
            await alice.wait_for_status(deck["id"], "COMPLETED")

            async def drained() -> bool:
                events = await events_via_http(alice, deck["id"], deck["version"])
                return len(events) == 3

            async with asyncio.timeout(15):
                while not await drained():
                    await asyncio.sleep(0.05)


async def test_sockets_on_two_api_instances_see_the_same_edits_in_the_same_order(
    settings: Settings,
) -> None:
    async with (
        running_api(settings) as first,
        running_api(settings) as second,
        client_of(first, settings, "alice") as on_first,
        client_of(second, settings, "alice") as on_second,
        running_worker(settings),
    ):
        deck = await _written(on_first, 3)
        ids = _slide_ids(deck)
        async with (
            on_first.socket(deck["id"], last_version=deck["version"]) as ws_1,
            on_second.socket(deck["id"], last_version=deck["version"]) as ws_2,
        ):
            await _send(ws_1, "UpdateSlide", "e1", slide_id=ids[0], prompt="Sharper")
            await _send(ws_2, "ReorderSlides", "e2", slide_ids=list(reversed(ids)))
            await _send(ws_1, "AddSlide", "e3", prompt="An appendix", after_slide_id=ids[0])
            await _send(ws_2, "DeleteSlide", "e4", slide_id=ids[1])
            seen = await asyncio.gather(_events(ws_1, 4), _events(ws_2, 4))

    assert seen[0] == seen[1]
    assert_contiguous(seen[0], first=deck["version"] + 1)
    assert {e["payload"]["request_id"] for e in seen[0]} == {"e1", "e2", "e3", "e4"}


async def _events(ws: ClientConnection, count: int) -> list[Frame]:
    events: list[Frame] = []
    async with asyncio.timeout(20):
        while len(events) < count:
            frame = await next_frame(ws, 20)
            if "event_type" in frame and not is_heartbeat(frame):
                events.append(frame)
    return events


async def test_an_edit_whose_job_redis_lost_is_queued_again_by_the_sweep(
    settings: Settings,
) -> None:
    async with running_api(settings) as api, client_of(api, settings, "alice") as alice:
        async with running_worker(settings):
            deck = await _written(alice, 2)
        slide_id = _slide_ids(deck)[0]
        queued = await alice.http.patch(
            f"/api/v1/decks/{deck['id']}/slides/{slide_id}", json={"prompt": "title: Saved"}
        )
        assert queued.json()["status"] == "QUEUED"
        await api.container.redis.flushdb()  # the job is gone; PostgreSQL still has the edit

        async with running_worker(settings):

            async def applied() -> bool:
                return (await alice.deck(deck["id"]))["version"] == deck["version"] + 1

            async with asyncio.timeout(15):  # a lease (2 s) and a sweep (1 s) or two
                while not await applied():
                    await asyncio.sleep(0.05)
            after = await alice.deck(deck["id"])

    assert "Saved" in after["slides"][0]["html_content"]


async def test_a_slide_stored_before_slides_kept_their_content_keeps_its_texts_when_edited(
    alice: DeckClient, worker: None, api: RunningApi
) -> None:
    deck = await _written(alice, 2)
    slide = deck["slides"][1]
    forget = "UPDATE slides SET content = NULL WHERE id = :id"
    await execute(api.container, forget, id=uuid.UUID(slide["id"]))

    response = await alice.http.patch(
        f"/api/v1/decks/{deck['id']}/slides/{slide['id']}", json={"notes": "Only the notes"}
    )

    assert response.status_code == 202
    after = (await alice.deck(deck["id"]))["slides"][1]
    assert after["presenter_notes"] == "Only the notes"
    assert after["html_content"] == slide["html_content"]  # the title and bullets are kept


async def test_a_frame_nested_too_deep_is_an_invalid_frame_and_the_socket_stays_open(
    alice: DeckClient, worker: None
) -> None:
    deck = await _written(alice, 2)
    deep = '{"type":"UpdateSlide","request_id":"deep","data":' + "[" * 1000 + "]" * 1000 + "}"
    deeper = '{"x":' + "[" * 1200 + "]" * 1200 + ',"type":"UpdateSlide"}'

    async with alice.socket(deck["id"], last_version=deck["version"]) as ws:
        answers = []
        for frame in (deep, deeper):
            await ws.send(frame)
            answers.append(await _next_answer(ws))
        _, heartbeat = await events_until_heartbeat(ws)

    assert [answer["code"] for answer in answers] == ["invalid_frame", "invalid_frame"]
    assert heartbeat["version"] == deck["version"]


async def _next_answer(ws: ClientConnection) -> Frame:
    frame = await next_frame(ws)
    while is_heartbeat(frame):
        frame = await next_frame(ws)
    return frame


async def test_a_queued_edit_sent_thrice_on_one_socket_is_answered_thrice(
    alice: DeckClient, worker: None
) -> None:
    deck = await _written(alice, 2)
    frame = json.dumps(
        {
            "type": "AddSlide",
            "request_id": "thrice",
            "data": {"prompt": "An appendix", "after_slide_id": None},
        }
    )

    async with alice.socket(deck["id"], last_version=deck["version"]) as ws:
        for _ in range(3):
            await ws.send(frame)
        events, first = await _answer(ws, "thrice")
        _, second = await _answer(ws, "thrice")
        _, third = await _answer(ws, "thrice")

    assert [e["event_type"] for e in events] == ["SlideAdded"]
    assert (
        first
        == second
        == third
        == {
            "type": "ack",
            "request_id": "thrice",
            "version": events[0]["version"],
        }
    )
    assert len((await alice.deck(deck["id"]))["slides"]) == 3


async def test_a_socket_whose_token_expired_may_no_longer_edit(
    alice: DeckClient, worker: None, settings: Settings
) -> None:
    deck = await _written(alice, 2)
    token = token_for(settings, "alice", ttl=2)

    async with alice.socket(deck["id"], last_version=deck["version"], token=token) as ws:
        await asyncio.sleep(2.5)
        await _send(ws, "DeleteSlide", "late", slide_id=_slide_ids(deck)[0])
        with pytest.raises(ConnectionClosed) as closed:
            await _read_until_closed(ws)

    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4401, "token has expired")
    assert (await alice.deck(deck["id"]))["version"] == deck["version"]


async def _read_until_closed(ws: ClientConnection) -> None:
    while True:
        await next_frame(ws)


async def test_a_request_id_reused_for_another_edit_is_refused_over_http_and_the_socket(
    alice: DeckClient, worker: None
) -> None:
    deck = await _written(alice, 2)
    a, b = _slide_ids(deck)
    base = f"/api/v1/decks/{deck['id']}/slides"
    key = {"Idempotency-Key": "edit-1"}

    first = await alice.http.patch(f"{base}/{a}", json={"notes": "One"}, headers=key)
    same = await alice.http.patch(f"{base}/{a}", json={"notes": "One"}, headers=key)
    other = await alice.http.patch(f"{base}/{b}", json={"notes": "Two"}, headers=key)
    async with alice.socket(deck["id"], last_version=first.json()["version"]) as ws:
        frame = {
            "type": "UpdateSlide",
            "request_id": "edit-1",
            "data": {"slide_id": b, "notes": "x"},
        }
        await ws.send(json.dumps(frame))
        answer = await next_frame(ws)
        while answer.get("type") != "error":  # past a heartbeat or replayed events
            answer = await next_frame(ws)

    assert first.status_code == same.status_code == 202
    assert same.json() == first.json()
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_conflict"
    assert "'edit-1' was used for another edit" in other.json()["detail"]
    assert answer["code"] == "idempotency_conflict"
    assert answer["request_id"] == "edit-1"
    assert (await alice.deck(deck["id"]))["version"] == first.json()["version"]
