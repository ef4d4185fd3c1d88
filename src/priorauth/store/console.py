"""The store's part of the reviewer console: the people who review (accounts with argon2 password hashes,
failed-login lockout), their sessions (only the SHA-256 of the cookie's value is stored; idle and absolute
limits), the claim of a case by a reviewer, and the notice letters stored with each decision.

Every login, failed login, lockout, logout, claim and release is an audit entry (no patient data).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, select, update

from priorauth.store.models import CaseRow, LetterRow, UserRow, WebSessionRow, as_utc

__all__ = ["USER_ROLES", "ConsoleStore", "LoginRefused", "ConsoleSession", "MIN_PASSWORD_LENGTH"]

#: the console's roles: both review; a medical director is a physician by role
USER_ROLES = ("reviewer", "medical-director")
MIN_PASSWORD_LENGTH = 12
_HASHER = PasswordHasher()          # argon2id, the library's current parameters
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-")


class LoginRefused(Exception):
    """A login that did not succeed. ``locked`` tells the account is locked (the page says so without telling
    whether the name exists)."""

    def __init__(self, locked: bool = False):
        super().__init__("locked" if locked else "refused")
        self.locked = locked


@dataclass(frozen=True)
class ConsoleSession:
    user: UserRow
    csrf: str
    id_hash: str


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _HASHER.hash(secrets.token_urlsafe(16))


def _session_hash(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


class ConsoleStore:
    """Mixed into :class:`priorauth.store.Store` (uses its ``writing``, ``_read``, ``clock`` and audit)."""

    # ---- accounts --------------------------------------------------------------------------------------------
    def add_user(self, name: str, password: str, *, role: str, npi: str, specialty: str, credentials: str,
                 display_name: str | None = None, actor) -> UserRow:
        """Register a person who reviews. The NPI and specialty are those their decisions are recorded under;
        ``credentials`` (PharmD, MD, RN) are printed on letters with the name."""
        from priorauth.fhir.claim_response import is_valid_npi

        if not isinstance(name, str) or not 1 <= len(name) <= 128 or not set(name) <= _NAME_CHARS:
            raise ValueError("name: 1 to 128 characters, lower-case letters, digits, '.', '_' or '-'")
        if role not in USER_ROLES:
            raise ValueError(f"role: one of {', '.join(USER_ROLES)}")
        if not is_valid_npi(npi or ""):
            raise ValueError("npi: 10 ASCII digits with a valid check digit")
        for field, value in (("specialty", specialty), ("credentials", credentials)):
            if not isinstance(value, str) or not value.strip() or len(value) > (256 if field == "specialty" else 64):
                raise ValueError(f"{field}: required ({'a NUCC code or words' if field == 'specialty' else 'such as PharmD, MD'})")
        if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
            raise ValueError(f"password: at least {MIN_PASSWORD_LENGTH} characters")
        display = (display_name or name).strip()
        if not display or len(display) > 256:
            raise ValueError("display_name: 1 to 256 characters")
        row = UserRow(name=name, display_name=display, role=role, npi=npi, specialty=specialty.strip(),
                      credentials=credentials.strip(), password_hash=_HASHER.hash(password), created_at=self.clock(),
                      disabled=False, failed_logins=0, locked_until=None)
        with self.writing() as s:
            if s.get(UserRow, name) is not None:
                raise ValueError(f"name: user {name!r} is already registered")
            s.add(row)
            self._append_audit(s, actor.name, actor.role, "user.add", None,
                               {"user": name, "role": role, "npi": npi, "specialty": row.specialty})
        return row

    def user(self, name: str) -> UserRow | None:
        with self._read() as s:
            return s.get(UserRow, name)

    def login(self, name: str, password: str, *, max_failures: int, lockout: timedelta) -> UserRow:
        """The user, when the password is theirs and the account is neither disabled nor locked; else
        :class:`LoginRefused`. An unknown name costs the same hash check as a known one. ``max_failures``
        wrong passwords in a row lock the account for ``lockout``."""
        with self._read() as s:
            row = s.get(UserRow, name) if isinstance(name, str) and len(name) <= 128 else None
        stored = row.password_hash if row is not None else _dummy_hash()
        try:
            ok = _HASHER.verify(stored, password if isinstance(password, str) else "")
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            ok = False
        now = self.clock()
        if row is None:
            self.audit("console", "user", "user.login.failed", None, {"known": False})
            raise LoginRefused()
        if row.locked_until is not None and as_utc(row.locked_until) > now:
            self.audit(f"user:{name}", "user", "user.login.locked", None, {})
            raise LoginRefused(locked=True)
        if not ok or row.disabled:
            with self.writing() as s:
                failures = s.get(UserRow, name).failed_logins + 1
                locked = failures >= max_failures
                s.execute(update(UserRow).where(UserRow.name == name).values(
                    failed_logins=0 if locked else failures, locked_until=now + lockout if locked else None))
                self._append_audit(s, f"user:{name}", "user", "user.lockout" if locked else "user.login.failed",
                                   None, {"failures": failures})
            raise LoginRefused(locked=locked)
        with self.writing() as s:
            s.execute(update(UserRow).where(UserRow.name == name).values(failed_logins=0, locked_until=None))
            if _HASHER.check_needs_rehash(stored):
                s.execute(update(UserRow).where(UserRow.name == name).values(password_hash=_HASHER.hash(password)))
            self._append_audit(s, f"user:{name}", "user", "user.login", None, {})
        return self.user(name)

    # ---- sessions --------------------------------------------------------------------------------------------
    def open_session(self, user_name: str, *, lifetime: timedelta) -> tuple[str, str]:
        """A new session of the user: ``(the cookie's value, the CSRF token)``. Only the value's hash is kept."""
        value, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = self.clock()
        with self.writing() as s:
            s.add(WebSessionRow(id_hash=_session_hash(value), user_name=user_name, csrf=csrf, created_at=now,
                                last_seen=now, expires_at=now + lifetime))
        return value, csrf

    def session(self, value: str | None, *, idle: timedelta) -> ConsoleSession | None:
        """The live session of a cookie's value, its last use moved to now; None when there is none, it has been
        idle longer than ``idle``, passed its absolute limit, or its user is disabled (an ended session is
        deleted)."""
        if not value or len(value) > 128:
            return None
        digest = _session_hash(value)
        now = self.clock()
        with self._read() as s:
            row = s.get(WebSessionRow, digest)
            user = s.get(UserRow, row.user_name) if row is not None else None
        if row is None or user is None:
            return None
        if user.disabled or as_utc(row.expires_at) <= now or as_utc(row.last_seen) + idle <= now:
            self.close_session(value, reason="timeout")
            return None
        if now - as_utc(row.last_seen) > timedelta(seconds=30):     # one write a half minute, not one a request
            with self.writing() as s:
                s.execute(update(WebSessionRow).where(WebSessionRow.id_hash == digest).values(last_seen=now))
        return ConsoleSession(user, row.csrf, digest)

    def close_session(self, value: str, reason: str = "logout") -> None:
        digest = _session_hash(value)
        with self.writing() as s:
            row = s.get(WebSessionRow, digest)
            if row is None:
                return
            s.execute(delete(WebSessionRow).where(WebSessionRow.id_hash == digest))
            self._append_audit(s, f"user:{row.user_name}", "user", f"user.session.{reason}", None, {})

    @staticmethod
    def csrf_ok(session: ConsoleSession, given: str | None) -> bool:
        return isinstance(given, str) and hmac.compare_digest(session.csrf.encode(), given.encode())

    # ---- claims ----------------------------------------------------------------------------------------------
    def claim(self, case_id: str, user_name: str | None, actor, *, take_over: bool = False) -> CaseRow:
        """Assign the case to the user (None: release it). A case another reviewer holds is not taken unless
        ``take_over``: :class:`ValueError` names who holds it."""
        from priorauth.store.core import CaseNotFound

        with self.writing() as s:
            row = s.execute(select(CaseRow).where(CaseRow.id == case_id).with_for_update()).scalar_one_or_none()
            if row is None:
                raise CaseNotFound(case_id)
            held = row.assignee
            if user_name is not None and held not in (None, user_name) and not take_over:
                raise ValueError(f"assignee: the case is assigned to {held}")
            if user_name is None and held not in (None, actor.name.removeprefix("user:")) and not take_over:
                raise ValueError(f"assignee: the case is assigned to {held}")
            row.assignee = user_name
            self._append_audit(s, actor.name, actor.role, "case.claim" if user_name else "case.release", case_id,
                               {"assignee": user_name, "was": held})
            return row

    # ---- letters ---------------------------------------------------------------------------------------------
    def letters(self, case_id: str) -> list[LetterRow]:
        with self._read() as s:
            return list(s.scalars(select(LetterRow).where(LetterRow.case_id == case_id).order_by(LetterRow.id)))

    def letter(self, letter_id: int) -> LetterRow | None:
        with self._read() as s:
            return s.get(LetterRow, letter_id)


def _like(text_: str) -> str:
    return text_.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class ConsoleQueries:
    """The console's reads of the queue (mixed into the store with :class:`ConsoleStore`)."""

    def console_queue(self, statuses, *, search: str | None = None, line_of_business: str | None = None,
                      urgency: str | None = None, assignee: str | None = None, overdue_before: datetime | None = None,
                      limit: int = 100) -> tuple[list[CaseRow], int]:
        """Cases in ``statuses`` earliest due first (at most ``limit``) and how many match in all. ``search``
        finds a case by its id, the request's id, the member id or the provider organization (the start of
        any of them)."""
        from sqlalchemy import func, or_

        q = select(CaseRow).where(CaseRow.status.in_(list(statuses)))
        if search:
            pattern = _like(search.strip())
            q = q.where(or_(*(col.like(pattern, escape="\\") for col in (
                CaseRow.id, CaseRow.request_id, CaseRow.member_id, CaseRow.organization))))
        if line_of_business:
            q = q.where(CaseRow.line_of_business == line_of_business)
        if urgency:
            q = q.where(CaseRow.urgency == urgency)
        if assignee:
            q = q.where(CaseRow.assignee == assignee)
        if overdue_before is not None:
            q = q.where(CaseRow.due_at < overdue_before)
        with self._read() as s:
            total = s.scalar(select(func.count()).select_from(q.subquery()))
            rows = list(s.scalars(q.order_by(CaseRow.due_at.asc().nulls_last(), CaseRow.received_at, CaseRow.id)
                                  .limit(limit)))
        return rows, total

    def status_counts(self) -> dict[str, int]:
        from sqlalchemy import func

        with self._read() as s:
            return dict(s.execute(select(CaseRow.status, func.count()).group_by(CaseRow.status)).all())
