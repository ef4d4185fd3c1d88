"""The tables of the authorization store (SQLAlchemy 2 typed ORM).

Everything is append-only except ``cases.status``, ``cases.outcome`` and ``cases.due_at`` (every change of
those also appends an :class:`Event`) and the one-row ``audit_head`` pointer that serializes audit appends
(and the service's clients, subscriptions and notification outbox). Submissions, determinations, decisions,
events and the audit log refuse UPDATE and DELETE in the database as well (triggers, migration 0004).
All times are stored in UTC and read back as timezone-aware datetimes.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

__all__ = ["Base", "UTCDateTime", "as_utc", "CaseRow", "SubmissionRow", "DeterminationRow", "DecisionRow", "EventRow",
           "AuditRow", "AuditHead", "ClientRow", "SubscriptionRow", "NotificationRow", "UserRow", "WebSessionRow",
           "LetterRow", "GENESIS_HASH"]

GENESIS_HASH = "0" * 64


def as_utc(dt: datetime) -> datetime:
    """``dt`` in UTC, timezone-aware; a naive value is taken as UTC."""
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


class UTCDateTime(TypeDecorator):
    """A datetime stored in UTC; a naive value is taken as UTC; values read back are timezone-aware (UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        value = as_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        return None if value is None else as_utc(value)


class Base(DeclarativeBase):
    pass


class CaseRow(Base):
    __tablename__ = "cases"
    __table_args__ = (
        UniqueConstraint("identifier_system", "identifier_value", name="uq_cases_identifier"),
        Index("ix_cases_due_at", "due_at"),
        Index("ix_cases_status", "status"),
        Index("ix_cases_organization", "organization"),
        Index("ix_cases_claim_identifier", "claim_identifier_value"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    identifier_system: Mapped[str] = mapped_column(String(512))
    identifier_value: Mapped[str] = mapped_column(String(256))
    request_id: Mapped[str] = mapped_column(String(256))          # the Case id read from the request (Claim)
    # the Claim's own identifier (PAS: the patient event trace number), by which updates and inquiries may name
    # the request; None when the Claim has none (and for cases stored before migration 0005)
    claim_identifier_system: Mapped[str | None] = mapped_column(String(512))
    claim_identifier_value: Mapped[str | None] = mapped_column(String(256))
    organization: Mapped[str] = mapped_column(String(256))
    member_id: Mapped[str | None] = mapped_column(String(256))
    line_of_business: Mapped[str] = mapped_column(String(64))    # '' when the request gave none (not applicable)
    urgency: Mapped[str] = mapped_column(String(16))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(32))
    outcome: Mapped[str | None] = mapped_column(String(32))
    # the console user working the case ("assigned to me"; migration 0007): not part of the record the audit
    # binds, each claim and release is an audit entry
    assignee: Mapped[str | None] = mapped_column(String(128))


class SubmissionRow(Base):
    __tablename__ = "submissions"
    __table_args__ = (
        UniqueConstraint("case_id", "sequence", name="uq_submissions_case_sequence"),
        Index("ix_submissions_identifier", "identifier_system", "identifier_value"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"))
    sequence: Mapped[int] = mapped_column(Integer)
    identifier_system: Mapped[str] = mapped_column(String(512))
    identifier_value: Mapped[str] = mapped_column(String(256))
    text: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DeterminationRow(Base):
    __tablename__ = "determinations"
    __table_args__ = (Index("ix_determinations_case", "case_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"))
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id"))
    policy_id: Mapped[str] = mapped_column(String(128))
    policy_version: Mapped[str] = mapped_column(String(64))
    policy_content_hash: Mapped[str] = mapped_column(String(128))
    engine_version: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(32))
    result_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DecisionRow(Base):
    __tablename__ = "decisions"
    __table_args__ = (Index("ix_decisions_case", "case_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"))
    action: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    reviewer_npi: Mapped[str] = mapped_column(String(10))
    specialty: Mapped[str] = mapped_column(String(256))
    auth_number: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime())
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())


class EventRow(Base):
    __tablename__ = "events"
    __table_args__ = (Index("ix_events_case", "case_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    kind: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text)           # JSON: the fields changed, {"status": [from, to], ...}


class AuditRow(Base):
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_case", "case_id"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    case_id: Mapped[str | None] = mapped_column(String(36))
    detail: Mapped[str] = mapped_column(Text)           # canonical JSON, no patient data
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """One row (id 1): the last sequence number and hash of the audit chain; locked to append."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


class ClientRow(Base):
    """An OAuth2 client (client-credentials grant): its role, its organization (providers), its secret's hash."""

    __tablename__ = "clients"

    client_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))
    organization: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # a reviewer's own NPI and specialty (NUCC code or words): a decision is recorded under these, never under
    # what a request says (migration 0006; None for other roles)
    npi: Mapped[str | None] = mapped_column(String(10))
    specialty: Mapped[str | None] = mapped_column(String(256))


class SubscriptionRow(Base):
    """A FHIR Subscription (R5 backport, rest-hook) of a provider client to its organization's case updates."""

    __tablename__ = "subscriptions"
    __table_args__ = (Index("ix_subscriptions_organization", "organization"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(128))
    organization: Mapped[str] = mapped_column(String(256))
    topic: Mapped[str] = mapped_column(String(512))
    endpoint: Mapped[str] = mapped_column(String(2048))
    headers: Mapped[str] = mapped_column(Text)            # JSON list of "Name: value" the notification carries
    content: Mapped[str] = mapped_column(String(32))      # empty | id-only | full-resource
    status: Mapped[str] = mapped_column(String(16))       # requested | active | error | off
    resource_json: Mapped[str] = mapped_column(Text)      # the Subscription as accepted
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    events_since_start: Mapped[int] = mapped_column(Integer, default=0)


class NotificationRow(Base):
    """The outbox: one notification per subscription and case event, written in the event's transaction and
    delivered after it commits (so none is lost if the process dies)."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_pending", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id"))
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"))
    event_number: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16))       # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)


class UserRow(Base):
    """A person who works the review console: a reviewer (pharmacist, nurse) or a medical director, with the NPI
    and specialty their decisions are recorded under, and the argon2 hash of their password."""

    __tablename__ = "users"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(32))               # reviewer | medical-director
    npi: Mapped[str] = mapped_column(String(10))
    specialty: Mapped[str] = mapped_column(String(256))
    credentials: Mapped[str] = mapped_column(String(64))        # as letters print them: PharmD, MD, RN
    password_hash: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())


class WebSessionRow(Base):
    """A console session: the SHA-256 of the cookie's random value (the value itself is never stored), its CSRF
    token, and when it was last used (the idle timeout) and must end (the absolute limit)."""

    __tablename__ = "web_sessions"
    __table_args__ = (Index("ix_web_sessions_user", "user_name"),)

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_name: Mapped[str] = mapped_column(ForeignKey("users.name"))
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LetterRow(Base):
    """A notice letter of a decision, for the provider or the member, as HTML and PDF; stored with the decision
    in its transaction, its hashes in the decision's audit entry (append-only)."""

    __tablename__ = "letters"
    __table_args__ = (Index("ix_letters_case", "case_id"), Index("ix_letters_decision", "decision_id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"))
    decision_id: Mapped[int] = mapped_column(ForeignKey("decisions.id"))
    kind: Mapped[str] = mapped_column(String(32))               # approval | request-for-information | denial | ...
    audience: Mapped[str] = mapped_column(String(16))           # provider | member
    html: Mapped[str] = mapped_column(Text)
    pdf: Mapped[bytes] = mapped_column(LargeBinary)
    html_hash: Mapped[str] = mapped_column(String(64))
    pdf_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
