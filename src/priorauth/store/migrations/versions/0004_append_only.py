"""The record is append-only in the database too: the verbatim submissions, the determinations, the reviewers'
decisions, the case events and the audit log refuse UPDATE and DELETE (and, on PostgreSQL, TRUNCATE) by
trigger, whoever connects. The store never changes these rows. A database owner can still drop or disable the
triggers: ``priorauth audit verify`` then finds a rewritten audit log (the hash chain) and a rewritten
submission, determination or decision (against the hash its audit entry recorded).

Revision ID: 0004_append_only
Revises: 0003_compression
"""

from __future__ import annotations

from alembic import op

revision = "0004_append_only"
down_revision = "0003_compression"
branch_labels = None
depends_on = None

TABLES = ("submissions", "determinations", "decisions", "events", "audit_log")

_PG_FUNCTION = """
CREATE FUNCTION priorauth_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'priorauth: % is append-only; % refused', TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'integrity_constraint_violation';
END
$$
"""


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(_PG_FUNCTION)
        for table in TABLES:
            op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                       "FOR EACH ROW EXECUTE FUNCTION priorauth_append_only()")
            op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                       "FOR EACH STATEMENT EXECUTE FUNCTION priorauth_append_only()")
    elif dialect == "sqlite":
        for table in TABLES:
            for verb in ("UPDATE", "DELETE"):
                op.execute(f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} BEGIN "
                           f"SELECT RAISE(ABORT, 'priorauth: {table} is append-only; {verb} refused'); END")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        for table in TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        op.execute("DROP FUNCTION IF EXISTS priorauth_append_only()")
    elif dialect == "sqlite":
        for table in TABLES:
            for verb in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{verb}")
