"""Model calls spent per deck, and why a deck failed.

The count lets a budget bound the calls; the failure is kept so that it can be shown after the
event stream has gone by.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("decks", sa.Column("model_calls", sa.Integer, nullable=False, server_default="0"))
    op.add_column("decks", sa.Column("failure", pg.JSONB))


def downgrade() -> None:
    op.drop_column("decks", "failure")
    op.drop_column("decks", "model_calls")
