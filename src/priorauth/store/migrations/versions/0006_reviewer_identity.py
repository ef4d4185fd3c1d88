"""A reviewer client is registered with its own NPI and specialty, under which its decisions are recorded
(no longer what each decision request says). Nullable: other roles have none, and reviewers registered before
this revision must be registered again (their decisions are refused until then, saying so).

Revision ID: 0006_reviewer_identity
Revises: 0005_claim_identifier
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_reviewer_identity"
down_revision = "0005_claim_identifier"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("clients", sa.Column("npi", sa.String(10), nullable=True))
    op.add_column("clients", sa.Column("specialty", sa.String(256), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("specialty")
        batch.drop_column("npi")
