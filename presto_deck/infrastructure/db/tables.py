"""The schema as SQLAlchemy Core tables; Alembic migrations in ``migrations/`` create it."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

metadata = sa.MetaData()

deck_status = pg.ENUM(
    "PENDING",
    "PLANNING",
    "GENERATING",
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    name="deck_status",
    create_type=False,
)

decks = sa.Table(
    "decks",
    metadata,
    sa.Column(
        "id", pg.UUID(as_uuid=True), primary_key=True, server_default=sa.text("gen_random_uuid()")
    ),
    sa.Column("user_id", sa.String(255), nullable=False),
    sa.Column("title", sa.String(255), nullable=False),
    sa.Column("status", deck_status, nullable=False, server_default="PENDING"),
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
    sa.Column("model_calls", sa.Integer, nullable=False, server_default="0"),
    sa.Column("failure", pg.JSONB),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.UniqueConstraint("user_id", "idempotency_key", name="uq_decks_user_idempotency_key"),
    sa.Index("ix_decks_user_created", "user_id", sa.text("created_at DESC")),
    sa.Index(
        "ix_decks_active",
        "status",
        postgresql_where=sa.text("status IN ('PENDING', 'PLANNING', 'GENERATING')"),
    ),
)

slides = sa.Table(
    "slides",
    metadata,
    sa.Column(
        "id", pg.UUID(as_uuid=True), primary_key=True, server_default=sa.text("gen_random_uuid()")
    ),
    sa.Column(
        "deck_id",
        pg.UUID(as_uuid=True),
        sa.ForeignKey("decks.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("slide_order", sa.Integer, nullable=False),
    sa.Column("html_content", sa.Text, nullable=False),
    sa.Column("presenter_notes", sa.Text),
    #: What the slide was rendered from (SlideContent); null for slides written before editing.
    sa.Column("content", pg.JSONB),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.UniqueConstraint("deck_id", "slide_order", name="uq_slides_deck_order"),
)

deck_events = sa.Table(
    "deck_events",
    metadata,
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
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column("published_at", sa.DateTime(timezone=True)),
    sa.UniqueConstraint("deck_id", "version", name="uq_deck_events_deck_version"),
    sa.Index(
        "ix_deck_events_unpublished", "created_at", postgresql_where=sa.text("published_at IS NULL")
    ),
)

edit_status = pg.ENUM("QUEUED", "APPLIED", "FAILED", name="edit_status", create_type=False)

deck_edits = sa.Table(
    "deck_edits",
    metadata,
    sa.Column(
        "id", pg.UUID(as_uuid=True), primary_key=True, server_default=sa.text("gen_random_uuid()")
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
    sa.Column("status", edit_status, nullable=False),
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
    sa.Index(
        "ix_deck_edits_queued",
        "deck_id",
        "created_at",
        postgresql_where=sa.text("status = 'QUEUED'"),
    ),
)
