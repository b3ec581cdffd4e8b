"""Decks, slides and the deck event log.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = ("PENDING", "PLANNING", "GENERATING", "COMPLETED", "FAILED", "CANCELLED")


def _uuid_pk() -> sa.Column[object]:
    return sa.Column(
        "id", pg.UUID(as_uuid=True), primary_key=True, server_default=sa.text("gen_random_uuid()")
    )


def _timestamp(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def upgrade() -> None:
    status = pg.ENUM(*STATUSES, name="deck_status", create_type=False)
    pg.ENUM(*STATUSES, name="deck_status").create(op.get_bind(), checkfirst=True)
    op.create_table(
        "decks",
        _uuid_pk(),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("title", sa.String(255), nullable=False),
        sa.Column("status", status, nullable=False, server_default="PENDING"),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        sa.Column("deck_plan", pg.JSONB),
        sa.Column("prompt", sa.Text, nullable=False),
        sa.Column("slide_count", sa.Integer, nullable=False),
        sa.Column("template", sa.String(100)),
        sa.Column("theme", sa.String(100)),
        sa.Column("language", sa.String(35)),
        sa.Column("requested_title", sa.String(255)),
        sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("idempotency_key", sa.String(255)),
        sa.Column("lease_owner", sa.String(255)),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True)),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.UniqueConstraint("user_id", "idempotency_key", name="uq_decks_user_idempotency_key"),
    )
    op.create_index("ix_decks_user_created", "decks", ["user_id", sa.text("created_at DESC")])
    op.create_index(
        "ix_decks_active",
        "decks",
        ["status"],
        postgresql_where=sa.text("status IN ('PENDING', 'PLANNING', 'GENERATING')"),
    )
    op.create_table(
        "slides",
        _uuid_pk(),
        sa.Column(
            "deck_id",
            pg.UUID(as_uuid=True),
            sa.ForeignKey("decks.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("slide_order", sa.Integer, nullable=False),
        sa.Column("html_content", sa.Text, nullable=False),
        sa.Column("presenter_notes", sa.Text),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.UniqueConstraint("deck_id", "slide_order", name="uq_slides_deck_order"),
    )
    op.create_table(
        "deck_events",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column(
            "deck_id",
            pg.UUID(as_uuid=True),
            sa.ForeignKey("decks.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("event_type", sa.String(50), nullable=False),
        sa.Column("payload", pg.JSONB),
        _timestamp("created_at"),
        sa.Column("published_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("deck_id", "version", name="uq_deck_events_deck_version"),
    )
    op.create_index(
        "ix_deck_events_unpublished",
        "deck_events",
        ["created_at"],
        postgresql_where=sa.text("published_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_table("deck_events")
    op.drop_table("slides")
    op.drop_table("decks")
    pg.ENUM(name="deck_status").drop(op.get_bind(), checkfirst=True)
