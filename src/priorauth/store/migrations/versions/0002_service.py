"""The service's tables: OAuth2 clients, Subscriptions and the notification outbox.

Revision ID: 0002_service
Revises: 0001_initial
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from priorauth.store.models import UTCDateTime

revision = "0002_service"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "clients",
        sa.Column("client_id", sa.String(128), primary_key=True),
        sa.Column("secret_hash", sa.String(256), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("organization", sa.String(256), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("client_id", sa.String(128), nullable=False),
        sa.Column("organization", sa.String(256), nullable=False),
        sa.Column("topic", sa.String(512), nullable=False),
        sa.Column("endpoint", sa.String(2048), nullable=False),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("content", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("resource_json", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("events_since_start", sa.Integer(), nullable=False, server_default="0"),
    )
    op.create_index("ix_subscriptions_organization", "subscriptions", ["organization"])
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("subscription_id", sa.String(64), sa.ForeignKey("subscriptions.id"), nullable=False),
        sa.Column("case_id", sa.String(36), sa.ForeignKey("cases.id"), nullable=False),
        sa.Column("event_number", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("delivered_at", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
    )
    op.create_index("ix_notifications_pending", "notifications", ["status", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_notifications_pending", "notifications")
    op.drop_table("notifications")
    op.drop_index("ix_subscriptions_organization", "subscriptions")
    op.drop_table("subscriptions")
    op.drop_table("clients")
