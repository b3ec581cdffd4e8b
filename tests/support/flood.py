"""Many large events on one deck, committed and published as a worker does: more than any socket
buffer between the API and a client that does not read can hold."""

from __future__ import annotations

import uuid
from datetime import datetime
from uuid import UUID

from presto_deck.application.publishing import EventPublishing
from presto_deck.bootstrap import Container
from presto_deck.domain.content import DeckPlan
from presto_deck.domain.deck import Slide
from presto_deck.domain.events import utc_now
from presto_deck.infrastructure.db.unit_of_work import SqlUnitOfWork
from presto_deck.infrastructure.messaging.stream import RedisStreamPublisher


async def flood(
    container: Container,
    deck_id: str,
    *,
    slides: int,
    slide_bytes: int,
    batch: int = 50,
    after: int = 0,
) -> int:
    """Start a PENDING deck and add ``slides`` slides of about ``slide_bytes`` each, committing
    and publishing ``batch`` at a time; returns the deck's last version. With ``after``, the
    deck is one flooded with that many slides already, and more are added after them.

    The slides exist only as SlideAdded events: the socket delivers events, not slide rows.
    """
    publishing = EventPublishing(
        lambda: SqlUnitOfWork(container.engine),
        RedisStreamPublisher(container.redis, container.settings.stream_maxlen),
        utc_now,
    )
    last_version = 0
    added = after
    while added < after + slides:
        async with SqlUnitOfWork(container.engine) as uow:
            deck = await uow.decks.lock(UUID(deck_id))
            assert deck is not None, deck_id
            now = utc_now()
            if added == 0:
                deck.start(now)
                deck.set_plan(DeckPlan(title="Flood", slides=[]), now)
            for order in range(added + 1, min(added + batch, after + slides) + 1):
                deck.add_generated_slide(_slide(deck.id, order, slide_bytes, now), now)
                added += 1
            await uow.decks.save(deck)
            await uow.commit()
        events = deck.take_events()
        assert await publishing.publish(events), "the events could not be published"
        last_version = events[-1].version
    return last_version


def _slide(deck_id: UUID, order: int, size: int, now: datetime) -> Slide:
    return Slide(
        id=uuid.uuid4(),
        deck_id=deck_id,
        order=order,
        html_content="<p>" + "x" * size + "</p>",
        presenter_notes=None,
        created_at=now,
        updated_at=now,
    )
