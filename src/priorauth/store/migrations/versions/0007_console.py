"""The reviewer console: people who review (users, with their NPI, specialty, credentials and argon2 password
hash, failed logins and lockout), their console sessions (the hash of the cookie, the CSRF token, idle and
absolute limits), the notice letters of each decision (HTML and PDF, append-only like the decisions), and the
case's assignee (the reviewer who claimed it).

Revision ID: 0007_console
Revises: 0006_reviewer_identity
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from priorauth.store.models import UTCDateTime

revision = "0007_console"
down_revision = "0006_reviewer_identity"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("cases", sa.Column("assignee", sa.String(128), nullable=True))
    op.create_table(
        "users",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("display_name", sa.String(256), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("npi", sa.String(10), nullable=False),
        sa.Column("specialty", sa.String(256), nullable=False),
        sa.Column("credentials", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.String(256), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("locked_until", UTCDateTime(), nullable=True),
    )
    op.create_table(
        "web_sessions",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column("user_name", sa.String(128), sa.ForeignKey("users.name"), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_web_sessions_user", "web_sessions", ["user_name"])
    op.create_table(
        "letters",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.String(36), sa.ForeignKey("cases.id"), nullable=False),
        sa.Column("decision_id", sa.Integer(), sa.ForeignKey("decisions.id"), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("audience", sa.String(16), nullable=False),
        sa.Column("html", sa.Text(), nullable=False),
        sa.Column("pdf", sa.LargeBinary(), nullable=False),
        sa.Column("html_hash", sa.String(64), nullable=False),
        sa.Column("pdf_hash", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_letters_case", "letters", ["case_id"])
    op.create_index("ix_letters_decision", "letters", ["decision_id"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE TRIGGER letters_append_only BEFORE UPDATE OR DELETE ON letters "
                   "FOR EACH ROW EXECUTE FUNCTION priorauth_append_only()")
        op.execute("CREATE TRIGGER letters_no_truncate BEFORE TRUNCATE ON letters "
                   "FOR EACH STATEMENT EXECUTE FUNCTION priorauth_append_only()")
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER letters_no_{verb.lower()} BEFORE {verb} ON letters BEGIN "
                       f"SELECT RAISE(ABORT, 'priorauth: letters is append-only; {verb} refused'); END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS letters_append_only ON letters")
        op.execute("DROP TRIGGER IF EXISTS letters_no_truncate ON letters")
    op.drop_table("letters")
    op.drop_index("ix_web_sessions_user", "web_sessions")
    op.drop_table("web_sessions")
    op.drop_table("users")
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("assignee")
