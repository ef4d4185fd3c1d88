"""The initial store: cases, submissions, determinations, decisions, events, the audit chain.

Revision ID: 0001_initial
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from priorauth.store.models import GENESIS_HASH, UTCDateTime

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cases",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("identifier_system", sa.String(512), nullable=False),
        sa.Column("identifier_value", sa.String(256), nullable=False),
        sa.Column("request_id", sa.String(256), nullable=False),
        sa.Column("organization", sa.String(256), nullable=False),
        sa.Column("member_id", sa.String(256), nullable=True),
        sa.Column("line_of_business", sa.String(64), nullable=False),
        sa.Column("urgency", sa.String(16), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("due_at", UTCDateTime(), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=True),
        sa.UniqueConstraint("identifier_system", "identifier_value", name="uq_cases_identifier"),
    )
    op.create_index("ix_cases_due_at", "cases", ["due_at"])
    op.create_index("ix_cases_status", "cases", ["status"])
    op.create_index("ix_cases_organization", "cases", ["organization"])

    op.create_table(
        "submissions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.String(36), sa.ForeignKey("cases.id"), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("identifier_system", sa.String(512), nullable=False),
        sa.Column("identifier_value", sa.String(256), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("case_id", "sequence", name="uq_submissions_case_sequence"),
    )
    op.create_index("ix_submissions_identifier", "submissions", ["identifier_system", "identifier_value"])

    op.create_table(
        "determinations",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.String(36), sa.ForeignKey("cases.id"), nullable=False),
        sa.Column("submission_id", sa.Integer(), sa.ForeignKey("submissions.id"), nullable=False),
        sa.Column("policy_id", sa.String(128), nullable=False),
        sa.Column("policy_version", sa.String(64), nullable=False),
        sa.Column("policy_content_hash", sa.String(128), nullable=False),
        sa.Column("engine_version", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("result_json", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_determinations_case", "determinations", ["case_id"])

    op.create_table(
        "decisions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.String(36), sa.ForeignKey("cases.id"), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("reviewer_npi", sa.String(10), nullable=False),
        sa.Column("specialty", sa.String(256), nullable=False),
        sa.Column("auth_number", sa.String(64), nullable=True),
        sa.Column("decided_at", UTCDateTime(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_decisions_case", "decisions", ["case_id"])

    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.String(36), sa.ForeignKey("cases.id"), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
    )
    op.create_index("ix_events_case", "events", ["case_id"])

    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("role", sa.String(64), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("case_id", sa.String(36), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_audit_log_case", "audit_log", ["case_id"])

    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": GENESIS_HASH}])


def downgrade() -> None:
    for index, table in (("ix_audit_log_case", "audit_log"), ("ix_events_case", "events"),
                         ("ix_decisions_case", "decisions"), ("ix_determinations_case", "determinations"),
                         ("ix_submissions_identifier", "submissions"), ("ix_cases_organization", "cases"),
                         ("ix_cases_status", "cases"), ("ix_cases_due_at", "cases")):
        op.drop_index(index, table_name=table)
    for table in ("audit_head", "audit_log", "events", "decisions", "determinations", "submissions", "cases"):
        op.drop_table(table)
