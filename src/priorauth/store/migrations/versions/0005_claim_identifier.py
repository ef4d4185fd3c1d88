"""Cases keep their Claim's own identifier (PAS: the patient event trace number), by which an update
(``Claim.related``) or an inquiry may name the request as well as by the Bundle identifier. Nullable: a Claim
may have none, and cases stored before this revision have none recorded.

Revision ID: 0005_claim_identifier
Revises: 0004_append_only
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_claim_identifier"
down_revision = "0004_append_only"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("cases", sa.Column("claim_identifier_system", sa.String(512), nullable=True))
    op.add_column("cases", sa.Column("claim_identifier_value", sa.String(256), nullable=True))
    op.create_index("ix_cases_claim_identifier", "cases", ["claim_identifier_value"])


def downgrade() -> None:
    op.drop_index("ix_cases_claim_identifier", table_name="cases")
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("claim_identifier_value")
        batch.drop_column("claim_identifier_system")
