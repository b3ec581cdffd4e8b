"""Exports within bounds: a rate per user, and a bounded number of files drawn at once."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from presto_deck.application.export import ExportService
from presto_deck.application.limits import ExportRateExceeded, ExportsBusy
from presto_deck.domain.deck import Deck, DeckBusy, DeckEmpty, Slide
from tests.unit.fakes import FakeRateLimiter, FakeWriter, Harness


class _Exporter:
    """Draws nothing, slowly, counting how many drawings overlap."""

    media_type = "text/plain"
    extension = "txt"

    def __init__(self, seconds: float = 0.0) -> None:
        self._seconds = seconds
        self._lock = threading.Lock()
        self.drawing = 0
        self.most_at_once = 0

    def export(self, deck: Deck, slides: Sequence[Slide]) -> bytes:
        with self._lock:
            self.drawing += 1
            self.most_at_once = max(self.most_at_once, self.drawing)
        threading.Event().wait(self._seconds)
        with self._lock:
            self.drawing -= 1
        return deck.title.encode()


def _service(
    h: Harness, exporter: _Exporter, *, rate: FakeRateLimiter | None = None, at_once: int = 2
) -> ExportService:
    return ExportService(
        uow=h.store.uow,
        exporters={"txt": exporter},
        rate=rate or FakeRateLimiter(h.clock),
        concurrency=at_once,
    )


async def _deck(h: Harness) -> Deck:
    """A written deck of alice's."""
    deck = await h.create(prompt="Tides", slide_count=2)
    await h.generator(FakeWriter(2)).generate(deck.id)
    return h.store.deck(deck.id)


async def test_a_user_past_the_export_rate_is_told_when_to_try_again() -> None:
    h = Harness()
    exports = _service(h, _Exporter(), rate=FakeRateLimiter(h.clock, limit=2))
    deck = await _deck(h)

    for _ in range(2):
        await exports.export("alice", deck.id, "txt")
    with pytest.raises(ExportRateExceeded) as refused:
        await exports.export("alice", deck.id, "txt")
    h.clock.advance(61)
    again = await exports.export("alice", deck.id, "txt")

    assert refused.value.retry_after == 60
    assert again.content == deck.title.encode()


async def test_exports_go_through_while_their_count_is_unavailable() -> None:
    h = Harness()
    rate = FakeRateLimiter(h.clock, limit=1)
    rate.fail = True  # Redis does not answer
    exports = _service(h, _Exporter(), rate=rate)
    deck = await _deck(h)

    for _ in range(3):
        await exports.export("alice", deck.id, "txt")


async def test_a_process_draws_a_bounded_number_of_files_at_once() -> None:
    h = Harness()
    exporter = _Exporter(seconds=0.05)
    exports = _service(h, exporter, at_once=2)
    deck = await _deck(h)

    async with asyncio.timeout(10):
        done = await asyncio.gather(*(exports.export("alice", deck.id, "txt") for _ in range(6)))

    assert len(done) == 6
    assert exporter.most_at_once == 2


async def test_a_deck_without_slides_has_nothing_to_export() -> None:
    h = Harness()
    exports = _service(h, _Exporter())
    deck = await h.create(slide_count=2)  # not written yet

    with pytest.raises(DeckEmpty):
        await exports.export("alice", deck.id, "txt", partial=True)


async def test_an_export_that_waits_too_long_for_its_turn_is_refused_with_a_retry_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("presto_deck.application.export._QUEUE_SECONDS", 0.1)
    h = Harness()
    exports = _service(h, _Exporter(seconds=0.5), at_once=1)
    deck = await _deck(h)

    first = asyncio.create_task(exports.export("alice", deck.id, "txt"))
    await asyncio.sleep(0.05)
    with pytest.raises(ExportsBusy) as refused:
        await exports.export("alice", deck.id, "txt")
    await first

    assert refused.value.retry_after == 1


async def test_asking_for_a_deck_still_being_written_does_not_count_against_the_rate() -> None:
    h = Harness()
    rate = FakeRateLimiter(h.clock, limit=1)
    exports = _service(h, _Exporter(), rate=rate)
    pending = await h.create(slide_count=2)
    written = await _deck(h)

    for _ in range(3):
        with pytest.raises(DeckBusy):
            await exports.export("alice", pending.id, "txt")
    await exports.export("alice", written.id, "txt")
