"""Editing: each slide's structured content, and the edits asked of a deck.

A slide keeps what it was rendered from, so that its text can be changed without the model and
its neighbours can be shown to the model as context. An edit is remembered by the client's
request id, so that the same request applied twice changes the deck once.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("slides", sa.Column("content", pg.JSONB))
    edit_status = pg.ENUM("QUEUED", "APPLIED", "FAILED", name="edit_status")
    edit_status.create(op.get_bind())
    op.create_table(
        "deck_edits",
        sa.Column(
            "id",
            pg.UUID(as_uuid=True),
            primary_key=True,
            server_default=sa.text("gen_random_uuid()"),
        ),
        sa.Column(
            "deck_id",
            pg.UUID(as_uuid=True),
            sa.ForeignKey("decks.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("request", pg.JSONB, nullable=False),
        sa.Column("status", pg.ENUM(name="edit_status", create_type=False), nullable=False),
        sa.Column("version", sa.Integer),
        sa.Column("failure", pg.JSONB),
        sa.Column("model_calls", sa.Integer, nullable=False, server_default="0"),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.UniqueConstraint("deck_id", "request_id", name="uq_deck_edits_request"),
    )
    op.create_index(
        "ix_deck_edits_queued",
        "deck_edits",
        ["deck_id", "created_at"],
        postgresql_where=sa.text("status = 'QUEUED'"),
    )


def downgrade() -> None:
    op.drop_index("ix_deck_edits_queued", table_name="deck_edits")
    op.drop_table("deck_edits")
    pg.ENUM(name="edit_status").drop(op.get_bind())
    op.drop_column("slides", "content")
