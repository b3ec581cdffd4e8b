"""PostgreSQL adapters of the repository ports. Rows are mapped to domain objects here and
never leave this module."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from presto_deck.application.ports import LeaseState
from presto_deck.domain.content import DeckBrief, DeckPlan, SlideContent
from presto_deck.domain.deck import Deck, DeckStatus, Failure, Lease, Slide
from presto_deck.domain.edits import EditRecord, EditStatus, SlideEdit
from presto_deck.domain.events import Event
from presto_deck.infrastructure.db.tables import deck_edits, deck_events, decks, slides
from presto_deck.infrastructure.writers.rendering import recovered_content

_ACTIVE = [DeckStatus.PENDING.value, DeckStatus.PLANNING.value, DeckStatus.GENERATING.value]
#: First key of the advisory locks that serialize one user's deck creations.
_CREATION_LOCK_SPACE = 0x5D_EC


def _records(name: str, *columns: sa.Column[Any]) -> Any:
    """The rows of a JSON array parameter ``name`` as a table with ``columns``' names and types:
    any number of rows in one bound value, so that the statement is built (and cached) once."""
    return (
        sa.func.jsonb_to_recordset(sa.bindparam(name, type_=JSONB))
        .table_valued(*(sa.column(column.name, column.type) for column in columns))
        .render_derived(name=name, with_types=True)
    )


# The columns come from the parameters each execution passes (SQLAlchemy caches by their names).
_INSERT_DECK = (
    pg_insert(decks)
    .on_conflict_do_nothing(constraint="uq_decks_user_idempotency_key")
    .returning(decks.c.id)
)
# A transaction-scoped advisory lock on the user (hashed; a collision only serializes two users'
# creations). The two-key form keeps clear of the migrations' one-key lock.
_LOCK_USER = sa.select(
    sa.func.pg_advisory_xact_lock(
        _CREATION_LOCK_SPACE, sa.func.hashtext(sa.bindparam("user_id", type_=sa.Text))
    )
)
_COUNT_ACTIVE = (
    sa.select(sa.func.count())
    .select_from(decks)
    .where(decks.c.user_id == sa.bindparam("user_id"), decks.c.status.in_(_ACTIVE))
)
_DECK_VERSIONS = sa.select(decks.c.id, decks.c.version).where(
    decks.c.id == sa.func.any(sa.bindparam("deck_ids", type_=ARRAY(decks.c.id.type)))
)
_LOCK_DECK = sa.select(decks).where(decks.c.id == sa.bindparam("deck_id")).with_for_update()

_new_events = _records(
    "new_events",
    deck_events.c.version,
    deck_events.c.event_type,
    deck_events.c.payload,
    deck_events.c.created_at,
)
_SAVE_DECK = (
    sa.update(decks)
    .where(decks.c.id == sa.bindparam("deck_id"))
    .values(
        {
            column: sa.bindparam(f"new_{column.name}", type_=column.type)
            for column in (
                decks.c.title,
                decks.c.status,
                decks.c.version,
                decks.c.theme,
                decks.c.cancel_requested,
                decks.c.lease_owner,
                decks.c.lease_expires_at,
                decks.c.updated_at,
            )
        }
        | {
            decks.c.deck_plan: sa.bindparam("new_plan", type_=JSONB),
            decks.c.failure: sa.bindparam("new_failure", type_=JSONB),
        }
    )
    .add_cte(
        sa.insert(deck_events)
        .from_select(
            ["deck_id", "version", "event_type", "payload", "created_at"],
            sa.select(
                sa.bindparam("deck_id", type_=decks.c.id.type),
                _new_events.c.version,
                _new_events.c.event_type,
                _new_events.c.payload,
                _new_events.c.created_at,
            ),
        )
        .cte("inserted_events")
    )
)

_SLIDE_COLUMNS = (
    slides.c.id,
    slides.c.deck_id,
    slides.c.slide_order,
    slides.c.html_content,
    slides.c.presenter_notes,
    slides.c.content,
    slides.c.created_at,
    slides.c.updated_at,
)
_new_slides = _records("new_slides", *_SLIDE_COLUMNS)
_ADD_SLIDES_UNLESS_TAKEN = (
    pg_insert(slides)
    .from_select(
        [column.name for column in _SLIDE_COLUMNS],
        sa.select(*(_new_slides.c[column.name] for column in _SLIDE_COLUMNS)),
    )
    .on_conflict_do_nothing(constraint="uq_slides_deck_order")
    .returning(slides.c.id)
)


# The step of a run that holds the deck, from the deck as it last stored it: the row updated only
# if nothing else changed it meanwhile, and its slides and events inserted only if it was (they
# join the updated row, so they are not written without it). Run by ``steps.py``, with the
# parameters of ``step_parameters``; it says how many decks it updated (1 or 0).
_ENDS = sa.bindparam("ends", type_=sa.Boolean)
_saved_unchanged = (
    sa.update(decks)
    .where(
        decks.c.id == sa.bindparam("deck_id"),
        decks.c.version == sa.bindparam("since"),
        decks.c.lease_owner == sa.bindparam("owner"),
        decks.c.cancel_requested.is_(False),
        ~sa.exists().where(
            slides.c.deck_id == decks.c.id,
            slides.c.slide_order == sa.func.any(sa.bindparam("orders", type_=ARRAY(sa.Integer))),
        ),
    )
    .values(
        title=sa.bindparam("new_title"),
        status=sa.bindparam("new_status"),
        version=sa.bindparam("new_version"),
        deck_plan=sa.bindparam("new_plan", type_=JSONB),
        failure=sa.bindparam("new_failure", type_=JSONB),
        updated_at=sa.bindparam("new_updated_at"),
        lease_owner=sa.case((_ENDS, sa.null()), else_=decks.c.lease_owner),
        lease_expires_at=sa.case((_ENDS, sa.null()), else_=decks.c.lease_expires_at),
    )
    .returning(decks.c.id)
    .cte("saved")
)
SAVE_IF_UNCHANGED = (
    sa.select(sa.func.count())
    .select_from(_saved_unchanged)
    .add_cte(
        sa.insert(slides)
        .from_select(
            [column.name for column in _SLIDE_COLUMNS],
            sa.select(*(_new_slides.c[column.name] for column in _SLIDE_COLUMNS))
            .select_from(_saved_unchanged)
            .join(_new_slides, sa.true()),
        )
        .cte("added_slides"),
        sa.insert(deck_events)
        .from_select(
            ["deck_id", "version", "event_type", "payload", "created_at"],
            sa.select(
                _saved_unchanged.c.id,
                _new_events.c.version,
                _new_events.c.event_type,
                _new_events.c.payload,
                _new_events.c.created_at,
            )
            .select_from(_saved_unchanged)
            .join(_new_events, sa.true()),
        )
        .cte("added_events"),
    )
)


class SqlDeckRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._conn = connection

    async def add(self, deck: Deck, idempotency_key: str | None = None) -> Deck:
        values = {
            "id": deck.id,
            "user_id": deck.user_id,
            "title": deck.title,
            "status": deck.status.value,
            "version": deck.version,
            "prompt": deck.brief.prompt,
            "slide_count": deck.brief.slide_count,
            "template": deck.brief.template,
            "theme": deck.brief.theme,
            "language": deck.brief.language,
            "requested_title": deck.brief.title,
            "idempotency_key": idempotency_key,
            "created_at": deck.created_at,
            "updated_at": deck.updated_at,
        }
        if (await self._conn.execute(_INSERT_DECK, values)).first() is not None:
            return deck
        # The same user sent the same key before: that earlier deck is the answer.
        row = (
            await self._conn.execute(
                sa.select(decks).where(
                    decks.c.user_id == deck.user_id, decks.c.idempotency_key == idempotency_key
                )
            )
        ).one()
        return _deck(row._mapping)

    async def get(self, deck_id: UUID, user_id: str | None = None) -> Deck | None:
        query = sa.select(decks).where(decks.c.id == deck_id)
        if user_id is not None:
            query = query.where(decks.c.user_id == user_id)
        row = (await self._conn.execute(query)).first()
        return None if row is None else _deck(row._mapping)

    async def lock(self, deck_id: UUID) -> Deck | None:
        row = (await self._conn.execute(_LOCK_DECK, {"deck_id": deck_id})).first()
        return None if row is None else _deck(row._mapping)

    async def save(self, deck: Deck) -> None:
        # The row and its new events in one round trip (a data-modifying WITH runs once, read
        # or not), by a statement built once whatever the number of events.
        await self._conn.execute(
            _SAVE_DECK,
            _saved_state(deck)
            | {
                "new_theme": deck.brief.theme,
                "new_cancel_requested": deck.cancel_requested,
                "new_lease_owner": None if deck.lease is None else deck.lease.owner,
                "new_lease_expires_at": None if deck.lease is None else deck.lease.expires_at,
            },
        )

    async def list_for_user(self, user_id: str, limit: int, offset: int) -> tuple[list[Deck], int]:
        rows = await self._conn.execute(
            sa.select(decks)
            .where(decks.c.user_id == user_id)
            .order_by(decks.c.created_at.desc(), decks.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        total = await self._conn.scalar(
            sa.select(sa.func.count()).select_from(decks).where(decks.c.user_id == user_id)
        )
        return [_deck(row._mapping) for row in rows], int(total or 0)

    async def renew_lease(self, deck_id: UUID, owner: str, until: datetime) -> LeaseState:
        renewed = await self._conn.execute(
            sa.update(decks)
            .where(decks.c.id == deck_id, decks.c.lease_owner == owner)
            .values(lease_expires_at=until)
            .returning(decks.c.cancel_requested, decks.c.model_calls)
        )
        return _lease_state(renewed.first())

    async def spend_model_call(self, deck_id: UUID, owner: str, until: datetime) -> LeaseState:
        # A cancellation asked for counts no call: none will be made.
        counted = sa.case((decks.c.cancel_requested, 0), else_=1)
        spent = await self._conn.execute(
            sa.update(decks)
            .where(decks.c.id == deck_id, decks.c.lease_owner == owner)
            .values(model_calls=decks.c.model_calls + counted, lease_expires_at=until)
            .returning(decks.c.cancel_requested, decks.c.model_calls)
        )
        return _lease_state(spent.first())

    async def release_lease(self, deck_id: UUID, owner: str) -> None:
        await self._conn.execute(
            sa.update(decks)
            .where(decks.c.id == deck_id, decks.c.lease_owner == owner)
            .values(lease_owner=None, lease_expires_at=None)
        )

    async def stalled(self, now: datetime, grace_seconds: float, limit: int) -> list[UUID]:
        grace = timedelta(seconds=grace_seconds)
        deadline = sa.func.coalesce(decks.c.lease_expires_at, decks.c.updated_at + grace)
        rows = await self._conn.execute(
            sa.select(decks.c.id)
            .where(decks.c.status.in_(_ACTIVE), deadline < now)
            .order_by(decks.c.updated_at)
            .limit(limit)
        )
        return list(rows.scalars())

    async def active(self) -> tuple[int, datetime | None]:
        row = (
            await self._conn.execute(
                sa.select(sa.func.count(), sa.func.min(decks.c.created_at)).where(
                    decks.c.status.in_(_ACTIVE)
                )
            )
        ).one()
        return int(row[0]), row[1]

    async def lock_user(self, user_id: str) -> None:
        await self._conn.execute(_LOCK_USER, {"user_id": user_id})

    async def count_active(self, user_id: str) -> int:
        total = await self._conn.scalar(_COUNT_ACTIVE, {"user_id": user_id})
        return int(total or 0)

    async def versions(self, deck_ids: Collection[UUID]) -> dict[UUID, int]:
        rows = await self._conn.execute(_DECK_VERSIONS, {"deck_ids": list(deck_ids)})
        return {row.id: row.version for row in rows}

    async def find_by_idempotency_key(self, user_id: str, idempotency_key: str) -> Deck | None:
        row = (
            await self._conn.execute(
                sa.select(decks).where(
                    decks.c.user_id == user_id, decks.c.idempotency_key == idempotency_key
                )
            )
        ).first()
        return None if row is None else _deck(row._mapping)


class SqlSlideRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._conn = connection

    async def add(self, slide: Slide) -> None:
        await self._conn.execute(sa.insert(slides).values(**_slide_row(slide)))

    async def add_unless_taken(self, new: Sequence[Slide]) -> list[Slide]:
        if not new:
            return []
        rows = [_slide_row(slide) for slide in new]
        added = await self._conn.execute(_ADD_SLIDES_UNLESS_TAKEN, {"new_slides": rows})
        ids = set(added.scalars())
        return [slide for slide in new if slide.id in ids]

    async def update(self, slide: Slide) -> None:
        await self._conn.execute(
            sa.update(slides)
            .where(slides.c.id == slide.id, slides.c.deck_id == slide.deck_id)
            .values(
                html_content=slide.html_content,
                presenter_notes=slide.presenter_notes,
                content=None if slide.content is None else msgspec.to_builtins(slide.content),
                updated_at=slide.updated_at,
            )
        )

    async def delete(self, deck_id: UUID, slide_id: UUID) -> None:
        await self._conn.execute(
            sa.delete(slides).where(slides.c.id == slide_id, slides.c.deck_id == deck_id)
        )

    async def arrange(self, deck_id: UUID, slide_ids: Sequence[UUID]) -> None:
        # PostgreSQL checks UNIQUE (deck_id, slide_order) row by row, so a swap done in one
        # statement would collide with itself: first move every slide out of the way (negative
        # orders), then give each its place.
        of_deck = slides.c.deck_id == deck_id
        await self._conn.execute(
            sa.update(slides).where(of_deck).values(slide_order=-slides.c.slide_order)
        )
        if not slide_ids:
            return
        place = sa.case(
            {slide_id: position for position, slide_id in enumerate(slide_ids, start=1)},
            value=slides.c.id,
        )
        await self._conn.execute(
            sa.update(slides)
            .where(of_deck, slides.c.id.in_(list(slide_ids)))
            .values(slide_order=place)
        )

    async def list(self, deck_id: UUID) -> list[Slide]:
        rows = await self._conn.execute(
            sa.select(slides).where(slides.c.deck_id == deck_id).order_by(slides.c.slide_order)
        )
        return [_slide(row._mapping) for row in rows]

    async def count(self, deck_id: UUID) -> int:
        total = await self._conn.scalar(
            sa.select(sa.func.count()).select_from(slides).where(slides.c.deck_id == deck_id)
        )
        return int(total or 0)


class SqlEventLog:
    def __init__(self, connection: AsyncConnection) -> None:
        self._conn = connection

    async def after(self, deck_id: UUID, version: int, limit: int | None = None) -> list[Event]:
        query = (
            sa.select(deck_events)
            .where(deck_events.c.deck_id == deck_id, deck_events.c.version > version)
            .order_by(deck_events.c.version)
            .limit(limit)
        )
        return [_event(row._mapping) for row in await self._conn.execute(query)]

    async def mark_published(self, events: Sequence[Event]) -> None:
        keys = sorted({(UUID(event.deck_id), event.version) for event in events})
        if not keys:
            return
        await self._conn.execute(  # one statement, whatever the decks
            sa.update(deck_events)
            .where(
                sa.tuple_(deck_events.c.deck_id, deck_events.c.version).in_(keys),
                deck_events.c.published_at.is_(None),
            )
            .values(published_at=sa.func.now())
        )

    async def unpublished(self, older_than: datetime, limit: int) -> list[Event]:
        query = (
            sa.select(deck_events)
            .where(deck_events.c.published_at.is_(None), deck_events.c.created_at < older_than)
            .order_by(deck_events.c.deck_id, deck_events.c.version)
            .limit(limit)
        )
        return [_event(row._mapping) for row in await self._conn.execute(query)]


class SqlEditRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._conn = connection

    async def add(self, edit: EditRecord) -> None:
        await self._conn.execute(
            sa.insert(deck_edits).values(
                id=edit.id,
                deck_id=edit.deck_id,
                request_id=edit.request_id,
                kind=type(edit.edit).__struct_config__.tag,
                request=msgspec.to_builtins(edit.edit),
                status=edit.status.value,
                version=edit.version,
                failure=None if edit.failure is None else msgspec.to_builtins(edit.failure),
                created_at=edit.created_at,
                updated_at=edit.created_at,
            )
        )

    async def get(self, deck_id: UUID, request_id: str) -> EditRecord | None:
        row = (
            await self._conn.execute(
                sa.select(deck_edits).where(
                    deck_edits.c.deck_id == deck_id, deck_edits.c.request_id == request_id
                )
            )
        ).first()
        return None if row is None else _edit(row._mapping)

    async def count_queued(self, deck_id: UUID) -> int:
        total = await self._conn.scalar(
            sa.select(sa.func.count())
            .select_from(deck_edits)
            .where(deck_edits.c.deck_id == deck_id, deck_edits.c.status == EditStatus.QUEUED.value)
        )
        return int(total or 0)

    async def next_queued(self, deck_id: UUID) -> EditRecord | None:
        row = (
            await self._conn.execute(
                sa.select(deck_edits)
                .where(
                    deck_edits.c.deck_id == deck_id,
                    deck_edits.c.status == EditStatus.QUEUED.value,
                )
                .order_by(deck_edits.c.created_at, deck_edits.c.id)
                .limit(1)
            )
        ).first()
        return None if row is None else _edit(row._mapping)

    async def finish(
        self, edit_id: UUID, status: EditStatus, version: int, failure: Failure | None = None
    ) -> None:
        await self._conn.execute(
            sa.update(deck_edits)
            .where(deck_edits.c.id == edit_id)
            .values(
                status=status.value,
                version=version,
                failure=None if failure is None else msgspec.to_builtins(failure),
                updated_at=sa.func.now(),
            )
        )

    async def spend_model_call(
        self, edit_id: UUID, deck_id: UUID, owner: str, until: datetime
    ) -> LeaseState:
        lease = (
            sa.update(decks)
            .where(decks.c.id == deck_id, decks.c.lease_owner == owner)
            .values(lease_expires_at=until, model_calls=decks.c.model_calls + 1)
            .returning(decks.c.id)
            .cte("lease")
        )
        spent = await self._conn.execute(
            sa.update(deck_edits)
            .where(deck_edits.c.id == edit_id, deck_edits.c.deck_id.in_(sa.select(lease.c.id)))
            .values(model_calls=deck_edits.c.model_calls + 1)
            .returning(deck_edits.c.model_calls)
        )
        calls = spent.scalar()
        return LeaseState(held=False) if calls is None else LeaseState(held=True, calls=calls)

    async def stalled(
        self, now: datetime, grace_seconds: float, limit: int
    ) -> list[tuple[UUID, UUID]]:
        held = sa.and_(decks.c.lease_owner.is_not(None), decks.c.lease_expires_at > now)
        rows = await self._conn.execute(
            sa.select(deck_edits.c.deck_id, deck_edits.c.id)
            .join(decks, decks.c.id == deck_edits.c.deck_id)
            .where(
                deck_edits.c.status == EditStatus.QUEUED.value,
                deck_edits.c.created_at < now - timedelta(seconds=grace_seconds),
                sa.not_(held),
            )
            .order_by(deck_edits.c.created_at)
            .limit(limit)
        )
        return [(row.deck_id, row.id) for row in rows]


def _edit(row: Any) -> EditRecord:
    failure = row["failure"]
    return EditRecord(
        id=row["id"],
        deck_id=row["deck_id"],
        request_id=row["request_id"],
        edit=msgspec.convert({**row["request"], "kind": row["kind"]}, SlideEdit),
        status=EditStatus(row["status"]),
        version=row["version"],
        failure=None if failure is None else msgspec.convert(failure, Failure),
        model_calls=row["model_calls"],
        created_at=row["created_at"],
    )


def _lease_state(row: Any) -> LeaseState:
    if row is None:
        return LeaseState(held=False)
    return LeaseState(held=True, cancel_requested=row.cancel_requested, calls=row.model_calls)


def _deck(row: Any) -> Deck:
    plan = row["deck_plan"]
    return Deck(
        id=row["id"],
        user_id=row["user_id"],
        title=row["title"],
        status=DeckStatus(row["status"]),
        version=row["version"],
        brief=DeckBrief(
            prompt=row["prompt"],
            slide_count=row["slide_count"],
            title=row["requested_title"],
            template=row["template"],
            theme=row["theme"],
            language=row["language"],
        ),
        plan=None if plan is None else msgspec.convert(plan, DeckPlan),
        cancel_requested=row["cancel_requested"],
        lease=None
        if row["lease_owner"] is None or row["lease_expires_at"] is None
        else Lease(owner=row["lease_owner"], expires_at=row["lease_expires_at"]),
        model_calls=row["model_calls"],
        failure=None if row["failure"] is None else msgspec.convert(row["failure"], Failure),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _slide(row: Any) -> Slide:
    content = row["content"]
    return Slide(
        id=row["id"],
        deck_id=row["deck_id"],
        order=row["slide_order"],
        html_content=row["html_content"],
        presenter_notes=row["presenter_notes"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        content=(
            recovered_content(row["html_content"], row["presenter_notes"])
            if content is None
            else msgspec.convert(content, SlideContent)
        ),
    )


def _event(row: Any) -> Event:
    return Event(
        event_type=row["event_type"],
        deck_id=str(row["deck_id"]),
        version=row["version"],
        timestamp=row["created_at"],
        payload=row["payload"] or {},
    )


def step_parameters(
    deck: Deck, *, since: int, owner: str, slides: Sequence[Slide]
) -> dict[str, Any]:
    """The parameters of ``SAVE_IF_UNCHANGED``: ``deck`` stored with ``slides`` if it is still at
    version ``since`` and leased to ``owner``."""
    return _saved_state(deck) | {
        "since": since,
        "owner": owner,
        "ends": deck.lease is None,
        "orders": [slide.order for slide in slides],
        "new_slides": [_slide_row(slide) for slide in slides],
    }


def _saved_state(deck: Deck) -> dict[str, Any]:
    """The parameters of what both saves of a deck write: its state and its new events."""
    return {
        "deck_id": deck.id,
        "new_title": deck.title,
        "new_status": deck.status.value,
        "new_version": deck.version,
        "new_plan": None if deck.plan is None else msgspec.to_builtins(deck.plan),
        "new_failure": None if deck.failure is None else msgspec.to_builtins(deck.failure),
        "new_updated_at": deck.updated_at,
        "new_events": [
            {
                "version": event.version,
                "event_type": event.event_type,
                "payload": event.payload,
                "created_at": event.timestamp,
            }
            for event in deck.pending_events
        ],
    }


def _slide_row(slide: Slide) -> dict[str, Any]:
    return {
        "id": slide.id,
        "deck_id": slide.deck_id,
        "slide_order": slide.order,
        "html_content": slide.html_content,
        "presenter_notes": slide.presenter_notes,
        "content": None if slide.content is None else msgspec.to_builtins(slide.content),
        "created_at": slide.created_at,
        "updated_at": slide.updated_at,
    }
