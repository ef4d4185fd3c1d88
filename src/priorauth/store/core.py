"""The durable store of the authorization service: cases, the verbatim submissions, determinations, reviewer
decisions, state-change events and the hash-chained audit log.

``Store.submit`` is idempotent on the PAS Bundle identifier (system + value): the same bundle again gives the
same case and determination; the same identifier with different content raises :class:`IdempotencyConflict`.
The content hash is the SHA-256 of the bundle's canonical JSON (sorted keys, no insignificant whitespace), so a
re-sent bundle that differs only in formatting is the same submission; the text is stored verbatim.

Audit appends are serialized: on PostgreSQL by ``SELECT ... FOR UPDATE`` on the one-row ``audit_head`` table,
on SQLite by writing in ``BEGIN IMMEDIATE`` transactions (one writer at a time).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
import hmac
import json
import os
import secrets
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NamedTuple

try:
    import fcntl
except ImportError:                       # not on Windows: SQLite's own busy handler then
    fcntl = None

import orjson
from sqlalchemy import and_, bindparam, create_engine, event, func, or_, select, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from priorauth.reporting import OPEN_STATUSES
from priorauth import __version__
from priorauth.store.console import ConsoleQueries, ConsoleStore
from priorauth.store.models import (GENESIS_HASH, LetterRow, AuditHead, AuditRow, CaseRow, ClientRow, DecisionRow,
                                    DeterminationRow, EventRow, SubmissionRow, UTCDateTime, as_utc)

__all__ = ["Store", "Actor", "SubmitResult", "CaseHistory", "StoreError", "IdempotencyConflict", "CaseNotFound",
           "BundleIdentifierMissing", "PatientDataInAudit", "default_url", "content_hash", "canonical_json",
           "audit_hash", "STATUS_PENDED", "STATUS_APPEALED", "DECISION_STATUS", "ROLES", "hash_secret", "CaseStateConflict",
           "check_secret"]

STATUS_PENDED = "pended"                 # A4: pended for committee review
STATUS_APPEALED = "appealed"             # an appeal of a decision, back in the queue
ROLES = ("provider", "reviewer", "admin")
_PBKDF2_ITERATIONS = 120_000
DECISION_STATUS = {"approve": "approved", "modify": "modified", "deny": "denied", "pend": "pending_information"}
#: the statuses a decision is taken from (the review queue), and those an appeal is taken from
DECIDABLE = tuple(OPEN_STATUSES)
#: the audit actions of the changes that write a case's records and its events
_CHANGES = ("case.submit", "case.resubmit", "case.decide", "case.extend", "case.appeal")
APPEALABLE = ("approved", "modified", "denied")

# keys that would carry patient data; refused anywhere in an audit detail
_PATIENT_KEYS = frozenset({"patient", "name", "given", "family", "birthdate", "birth_date", "dob", "member",
                           "member_id", "memberid", "address", "phone", "telecom", "ssn", "mrn", "gender",
                           "bundle", "text", "labs", "diagnoses", "diagnosis"})


class StoreError(Exception):
    pass


class IdempotencyConflict(StoreError):
    """The Bundle identifier was already used for a request with different content."""


class CaseNotFound(StoreError, KeyError):
    def __str__(self) -> str:
        return f"no case {self.args[0]!r}"


class BundleIdentifierMissing(StoreError, ValueError):
    pass


class CaseStateConflict(StoreError):
    """The case is not in a state the change needs, as read under the case's lock: another reviewer's decision
    (or an appeal, an update) landed first. Nothing was written."""

    def __init__(self, case_id: str, status: str, allowed: tuple[str, ...]):
        super().__init__(case_id, status, allowed)
        self.case_id, self.status, self.allowed = case_id, status, allowed

    def __str__(self) -> str:
        return f"the case is {self.status}"


class PatientDataInAudit(StoreError, ValueError):
    pass


class Actor(NamedTuple):
    name: str
    role: str


@dataclass(frozen=True)
class SubmitResult:
    case: CaseRow
    submission: SubmissionRow
    determination: DeterminationRow
    created: bool          # a new case, submission or determination was stored (False: an idempotent replay)


@dataclass(frozen=True)
class CaseHistory:
    case: CaseRow
    submissions: list[SubmissionRow]
    determinations: list[DeterminationRow]
    decisions: list[DecisionRow]
    events: list[EventRow]


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(bundle: dict) -> str:
    """SHA-256 of the bundle's canonical JSON: keys sorted, no insignificant whitespace, UTF-8 (orjson)."""
    return hashlib.sha256(orjson.dumps(bundle, option=orjson.OPT_SORT_KEYS)).hexdigest()


def record_hash(text_: str) -> str:
    """SHA-256 of a stored record's text (a determination's result JSON), as its audit entry carries it."""
    return hashlib.sha256(text_.encode("utf-8")).hexdigest()


def decision_hash(row: "DecisionRow") -> str:
    """SHA-256 of a decision's content (canonical JSON, times to the microsecond in UTC)."""
    return record_hash(canonical_json({
        "action": row.action, "reason": row.reason, "reviewer_npi": row.reviewer_npi, "specialty": row.specialty,
        "auth_number": row.auth_number, "decided_at": _instant(row.decided_at),
        "recorded_at": _instant(row.recorded_at)}))



def event_hash(kind: str, at: datetime, detail: str) -> str:
    """SHA-256 of a case event's content (its kind, time to the microsecond in UTC, and detail text), as the
    audit entry of the change that wrote it carries it."""
    return record_hash(canonical_json({"kind": kind, "at": _instant(at), "detail": detail}))


def _event_binding(place: int, ev: "EventRow") -> dict:
    return {"n": place, "hash": event_hash(ev.kind, ev.at, ev.detail)}


def _instant(dt: datetime) -> str:
    return as_utc(dt).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def audit_hash(seq: int, at: datetime, actor: str, role: str, action: str, case_id: str | None,
               detail: dict, prev_hash: str) -> str:
    """SHA-256 over the canonical JSON of an audit row and the hash of the row before it."""
    row = {"seq": seq, "at": _instant(at), "actor": actor, "role": role, "action": action, "case_id": case_id,
           "detail": detail, "prev_hash": prev_hash}
    return hashlib.sha256(canonical_json(row).encode("utf-8")).hexdigest()


def _audit_text_parts(at: datetime, actor: str, role: str, action: str, case_id: str | None,
                      detail: dict) -> tuple[str, str]:
    """The canonical JSON of an audit row (as :func:`audit_hash` hashes it) around its prev_hash and seq:
    ``prefix + prev_hash + middle + str(seq) + "}"``. The keys sort as action, actor, at, case_id, detail,
    prev_hash, role, seq."""
    head = canonical_json({"action": action, "actor": actor, "at": _instant(at), "case_id": case_id,
                           "detail": detail})
    return head[:-1] + ',"prev_hash":"', '","role":' + canonical_json(role) + ',"seq":'


def _pg_audit_link(after: str = "", joined: str = "", returning: str = "row.seq, row.prev_hash, row.hash") -> str:
    """The audit chain link as the tail of one PostgreSQL statement: lock the head, hash the new row with the
    head's hash and number (``sha256`` of the canonical row Python prepared around those two values), insert the
    row and move the head. ``after`` names a CTE the link waits for (no link when it returned no row) and
    ``joined`` more CTEs the final RETURNING reads."""
    return f"""head AS (SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE),
link AS (SELECT head.seq + 1 AS seq, head.hash AS prev_hash,
                encode(sha256(convert_to(:prefix || head.hash || :middle || (head.seq + 1)::text || '}}', 'UTF8')),
                       'hex') AS hash
         FROM head{', ' + after if after else ''}),
row AS (INSERT INTO audit_log (seq, at, actor, role, action, case_id, detail, prev_hash, hash)
        SELECT link.seq, :audit_at, :actor, :role, :action, :audit_case_id, :detail, link.prev_hash, link.hash
        FROM link
        RETURNING seq, prev_hash, hash)
UPDATE audit_head SET seq = row.seq, hash = row.hash FROM row{', ' + joined if joined else ''}
WHERE audit_head.id = 1
RETURNING {returning}"""


# one round trip: the chain link alone
_PG_APPEND_AUDIT = text("WITH " + _pg_audit_link()).bindparams(bindparam("audit_at", type_=UTCDateTime()))

# one round trip, one statement (so autocommit, no BEGIN or COMMIT): a new case with its first submission,
# determination, event and audit link, or nothing at all when the identifier is already used (by a case, or by
# a submission that updated one); the head's row lock is held for this statement only
_PG_SUBMIT = text("""WITH new_case AS (
  INSERT INTO cases (id, identifier_system, identifier_value, request_id, claim_identifier_system,
                     claim_identifier_value, organization, member_id, line_of_business, urgency, received_at, due_at,
                     status, outcome)
  SELECT CAST(:case_id AS varchar), CAST(:system AS varchar), CAST(:value AS varchar), :request_id,
         CAST(:claim_system AS varchar), CAST(:claim_value AS varchar), :organization, :member_id,
         :line_of_business, :urgency, :received_at, :due_at, :status, CAST(:outcome AS varchar)
  WHERE NOT EXISTS (SELECT 1 FROM submissions
                    WHERE identifier_system = CAST(:system AS varchar) AND identifier_value = CAST(:value AS varchar))
  ON CONFLICT (identifier_system, identifier_value) DO NOTHING
  RETURNING id),
sub AS (
  INSERT INTO submissions (case_id, sequence, identifier_system, identifier_value, text, content_hash, received_at)
  SELECT id, 1, CAST(:system AS varchar), CAST(:value AS varchar), :text, :content_hash, :received_at FROM new_case
  RETURNING id),
det AS (
  INSERT INTO determinations (case_id, submission_id, policy_id, policy_version, policy_content_hash,
                              engine_version, outcome, result_json, created_at)
  SELECT CAST(:case_id AS varchar), sub.id, :policy_id, :policy_version, :policy_content_hash, :engine_version,
         CAST(:outcome AS varchar), :result_json, :at
  FROM sub
  RETURNING id),
ev AS (
  INSERT INTO events (case_id, at, kind, detail) SELECT id, :at, 'submitted', :event_detail FROM new_case
  RETURNING id),
""" + _pg_audit_link(after="new_case", joined="sub, det, ev",
                     returning="sub.id, det.id, ev.id, row.seq, row.prev_hash, row.hash")).bindparams(
    *(bindparam(name, type_=UTCDateTime()) for name in ("received_at", "due_at", "at", "audit_at")))


def _check_no_patient_data(node: Any, path: str = "detail") -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            if not isinstance(k, str):
                raise PatientDataInAudit(f"{path}: keys must be strings")
            if k.lower() in _PATIENT_KEYS:
                raise PatientDataInAudit(f"{path}.{k}: audit details carry no patient data")
            _check_no_patient_data(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _check_no_patient_data(v, f"{path}[{i}]")
    elif not (node is None or isinstance(node, (str, int, float, bool))):
        raise PatientDataInAudit(f"{path}: {type(node).__name__} is not JSON")


def hash_secret(secret: str, *, salt: bytes | None = None, iterations: int = _PBKDF2_ITERATIONS) -> str:
    """``pbkdf2_sha256$<iterations>$<salt hex>$<hash hex>`` of a client secret."""
    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", secret.encode("utf-8"), salt, iterations)
    return f"pbkdf2_sha256${iterations}${salt.hex()}${digest.hex()}"


def _foreign_conflict(system: str, value: str) -> IdempotencyConflict:
    """The identifier is another organization's: a conflict that names none of its cases."""
    return IdempotencyConflict(f"Bundle.identifier {system}|{value} is already in use by another submitter; give "
                               "the request its own identifier")


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """A secret hash no client has: what an unknown client id's secret is checked against."""
    return hash_secret(os.urandom(16).hex())


def check_secret(secret: str, stored: str) -> bool:
    try:
        scheme, iterations, salt, _digest = stored.split("$")
        if scheme != "pbkdf2_sha256":
            return False
        expected = hash_secret(secret, salt=bytes.fromhex(salt), iterations=int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(expected, stored)


# the hot path's statements, built once: table-level (no ORM unit of work), parameters bound at execution
_T_CASES, _T_SUBS, _T_DETS = CaseRow.__table__, SubmissionRow.__table__, DeterminationRow.__table__
_T_EVENTS, _T_AUDIT, _T_HEAD = EventRow.__table__, AuditRow.__table__, AuditHead.__table__
_INSERT_CASE = _T_CASES.insert()
_INSERT_SUB = _T_SUBS.insert().returning(_T_SUBS.c.id)
_INSERT_DET = _T_DETS.insert().returning(_T_DETS.c.id)
_INSERT_EVENT = _T_EVENTS.insert().returning(_T_EVENTS.c.id)
_INSERT_AUDIT = _T_AUDIT.insert()
_LOCK_HEAD = select(_T_HEAD.c.seq, _T_HEAD.c.hash).where(_T_HEAD.c.id == 1).with_for_update()
_UPDATE_HEAD = _T_HEAD.update().where(_T_HEAD.c.id == 1).values(seq=bindparam("new_seq"), hash=bindparam("new_hash"))
_SUBMISSIONS_OF_IDENTIFIER = (
    select(_T_SUBS.c.id, _T_SUBS.c.case_id, _T_SUBS.c.content_hash, _T_CASES.c.organization)
    .join(_T_CASES, _T_CASES.c.id == _T_SUBS.c.case_id)
    .where(_T_SUBS.c.identifier_system == bindparam("system"), _T_SUBS.c.identifier_value == bindparam("value"))
    .order_by(_T_SUBS.c.id))
_IDENTIFIER_TAKEN = (select(_T_SUBS.c.id).where(_T_SUBS.c.identifier_system == bindparam("system"),
                                                 _T_SUBS.c.identifier_value == bindparam("value")).limit(1))


def _columns(row: Any) -> dict[str, Any]:
    """The column values set on a transient ORM object (for a Core INSERT without the unit of work)."""
    return {c.key: getattr(row, c.key) for c in row.__table__.columns if getattr(row, c.key) is not None}


def default_url(data_dir: str | Path | None = None) -> str:
    """``sqlite:///<data dir>/priorauth.sqlite``; the data dir is ``data_dir``, ``$PRIORAUTH_DATA_DIR`` or
    ``$XDG_DATA_HOME/priorauth`` (``~/.local/share/priorauth``)."""
    if data_dir is None:
        data_dir = os.environ.get("PRIORAUTH_DATA_DIR") or \
            Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "priorauth"
    return f"sqlite:///{Path(data_dir).expanduser().resolve() / 'priorauth.sqlite'}"


def _identifier(bundle: Any) -> tuple[str, str]:
    ident = bundle.get("identifier") if isinstance(bundle, dict) else None
    system = ident.get("system") if isinstance(ident, dict) else None
    value = ident.get("value") if isinstance(ident, dict) else None
    if not (isinstance(system, str) and system.strip() and isinstance(value, str) and value.strip()):
        raise BundleIdentifierMissing("Bundle.identifier: a PAS request Bundle needs an identifier with a system "
                                      "and a value (the submission is idempotent on it)")
    return system, value


def _claim_identifier(bundle: Any) -> tuple[str | None, str | None]:
    """The first Claim.identifier (system, value) of a request Bundle, when it fits the store's columns."""
    entries = bundle.get("entry") if isinstance(bundle, dict) else None
    claim = entries[0].get("resource") if isinstance(entries, list) and entries and isinstance(entries[0], dict) else None
    idents = claim.get("identifier") if isinstance(claim, dict) else None
    first = idents[0] if isinstance(idents, list) and idents and isinstance(idents[0], dict) else {}
    system, value = first.get("system"), first.get("value")
    if not (isinstance(value, str) and value.strip() and len(value) <= 256):
        return None, None
    return (system if isinstance(system, str) and len(system) <= 512 else None), value


class Store(ConsoleStore, ConsoleQueries):
    def __init__(self, url: str | None = None, *, echo: bool = False, pool_size: int = 10):
        self.url = url or default_url()
        #: the time of every row the store writes (the service sets its own clock here)
        self.clock: Callable[[], datetime] = _now
        u = make_url(self.url)
        self.dialect = u.get_backend_name()
        if self.dialect == "sqlite":
            if u.database and u.database != ":memory:":
                Path(u.database).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(self.url, echo=echo,
                                                connect_args={"check_same_thread": False, "timeout": 60})
            self._sqlite_events(self.engine)
        else:
            # no ping before each checkout (a round trip per transaction): a connection the server dropped fails
            # its statement, is discarded by the pool, and the service answers 503 for that one request
            self.engine = create_engine(self.url, echo=echo, pool_size=pool_size, max_overflow=pool_size,
                                        pool_recycle=1800)
        self._write = sessionmaker(self.engine, expire_on_commit=False)
        reader = self.engine.execution_options(sqlite_begin="DEFERRED") if self.dialect == "sqlite" else self.engine
        self._read = sessionmaker(reader, expire_on_commit=False)
        # one-statement lookups need no transaction around them (on PostgreSQL: no BEGIN and ROLLBACK round trips)
        self._autocommit = reader if self.dialect == "sqlite" else \
            self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._peek = sessionmaker(self._autocommit, expire_on_commit=False)
        # SQLite takes one writer at a time; writers queue for it here (see writing())
        self._write_lock = threading.RLock() if self.dialect == "sqlite" else None
        self._lock_file = None
        if self.dialect == "sqlite" and u.database and u.database != ":memory:" and fcntl is not None:
            self._lock_file = f"{u.database}.write-lock"
        self._lock_fds: dict[int, int] = {}
        self._write_depth = 0
        # see listen(): the service's outbox writes its notifications there
        self._listeners: list[tuple[Callable[[Session, CaseRow, str, EventRow], None], frozenset[str] | None]] = []

    @staticmethod
    def _sqlite_events(engine: Engine) -> None:
        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn, _record):
            dbapi_conn.isolation_level = None          # SQLAlchemy emits BEGIN itself (below)
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn):
            mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
            conn.exec_driver_sql(f"BEGIN {mode}")

    def close(self) -> None:
        self.engine.dispose()
        for fd in self._lock_fds.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self._lock_fds.clear()

    @contextmanager
    def writing(self) -> Iterator[Session]:
        """A write transaction: committed at the end, rolled back on an error.

        SQLite takes one writer at a time. A writer waiting in SQLite's busy handler sleeps in steps of up to
        100 ms and can be passed over again and again (seconds, under load), so writers queue instead: this
        process's threads on a lock, and the processes sharing the file (``serve --workers``) on an exclusive
        ``flock`` of ``<database>.write-lock``, which wakes the next writer as soon as the last one is done."""
        if self._write_lock is None:
            with self._write.begin() as s:
                yield s
            return
        with self._write_lock:
            self._write_depth += 1
            fd = self._file_lock() if self._write_depth == 1 else None
            try:
                with self._write.begin() as s:
                    yield s
            finally:
                self._write_depth -= 1
                if fd is not None:
                    fcntl.flock(fd, fcntl.LOCK_UN)

    def _file_lock(self) -> int | None:
        """Take the exclusive lock on the write-lock file (held by this process's writing thread)."""
        if self._lock_file is None:
            return None
        fd = self._lock_fds.get(os.getpid())    # per process: a forked child opens its own
        if fd is None:
            fd = self._lock_fds[os.getpid()] = os.open(self._lock_file, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd

    def alembic_config(self):
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        cfg.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        return cfg

    def migrate(self, revision: str = "head") -> None:
        """Bring the schema up to ``revision`` (alembic upgrade)."""
        from alembic import command

        cfg = self.alembic_config()
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)

    def ping(self) -> None:
        """One round trip to the database (raises when it does not answer)."""
        with self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    def schema_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    # ---- audit -----------------------------------------------------------------------------------------------
    def _append_audit(self, s: Session, actor: str, role: str, action: str, case_id: str | None,
                      detail: dict | None) -> AuditRow:
        if self.dialect == "postgresql":
            # the same chain link in one statement: PostgreSQL locks the head, hashes (``sha256``) the canonical
            # row that Python prepared around the two values only the head knows, inserts the row and moves the
            # head; its row lock is held for one round trip and the commit, not for several
            params = self._audit_params(actor, role, action, case_id, detail)
            seq, prev, h = s.execute(_PG_APPEND_AUDIT, params).one()
            return AuditRow(seq=seq, at=params["audit_at"], actor=actor, role=role, action=action, case_id=case_id,
                            detail=params["detail"], prev_hash=prev, hash=h)
        detail = dict(detail or {})
        _check_no_patient_data(detail)
        head_seq, head_hash = s.execute(_LOCK_HEAD).one()
        at = self.clock()
        seq = head_seq + 1
        h = audit_hash(seq, at, actor, role, action, case_id, detail, head_hash)
        values = dict(seq=seq, at=at, actor=actor, role=role, action=action, case_id=case_id,
                      detail=canonical_json(detail), prev_hash=head_hash, hash=h)
        s.execute(_INSERT_AUDIT, values)
        s.execute(_UPDATE_HEAD, {"new_seq": seq, "new_hash": h})
        return AuditRow(**values)

    def _audit_params(self, actor: str, role: str, action: str, case_id: str | None, detail: dict | None) -> dict:
        """The parameters of the PostgreSQL audit link (:func:`_pg_audit_link`): the entry, checked for patient
        data and stamped with the store's clock, and its canonical text around the head's hash and number."""
        detail = dict(detail or {})
        _check_no_patient_data(detail)
        at = self.clock()
        prefix, middle = _audit_text_parts(at, actor, role, action, case_id, detail)
        return {"prefix": prefix, "middle": middle, "audit_at": at, "actor": actor, "role": role, "action": action,
                "audit_case_id": case_id, "detail": canonical_json(detail)}

    def audit(self, actor: str, role: str, action: str, case_id: str | None = None,
              detail: dict | None = None) -> AuditRow:
        """Append one entry to the audit chain (its own transaction). ``detail`` must not carry patient data."""
        with self.writing() as s:
            return self._append_audit(s, actor, role, action, case_id, detail)

    def audit_entries(self, case_id: str | None = None) -> list[AuditRow]:
        with self._read() as s:
            q = select(AuditRow).order_by(AuditRow.seq)
            if case_id is not None:
                q = q.where(AuditRow.case_id == case_id)
            return list(s.scalars(q))

    def verify_audit(self) -> tuple[bool, int, int | None]:
        """Walk the chain: ``(ok, rows checked, the first bad seq or None)``. A row is bad when its seq is out of
        order, its prev_hash is not the hash before it, or its hash does not match its content; rows missing at
        the end are found by the chain head (the first missing seq is reported)."""
        checked, prev, expected = 0, GENESIS_HASH, 1
        with self._read() as s:
            head = s.get(AuditHead, 1)
            for row in s.execute(select(AuditRow).order_by(AuditRow.seq).execution_options(yield_per=1000)).scalars():
                try:
                    detail = json.loads(row.detail)
                except ValueError:
                    return False, checked, row.seq
                if row.seq != expected:
                    return False, checked, expected
                if row.prev_hash != prev or row.hash != audit_hash(row.seq, row.at, row.actor, row.role, row.action,
                                                                   row.case_id, detail, row.prev_hash):
                    return False, checked, row.seq
                checked += 1
                prev, expected = row.hash, expected + 1
            if head is None or head.seq != checked or head.hash != prev:
                return False, checked, checked + 1
        return True, checked, None

    def anchor(self) -> dict[str, Any]:
        """The audit chain's head as an anchor a plan keeps outside this database (printed, published, sent to
        another system): ``{"seq", "hash", "at"}`` of the last entry. :meth:`check_anchor` later proves the
        chain still holds that entry, so a tail cut off (and the head row rewritten to match) is found."""
        with self._read() as s:
            row = s.scalars(select(AuditRow).order_by(AuditRow.seq.desc()).limit(1)).first()
        if row is None:
            return {"seq": 0, "hash": GENESIS_HASH, "at": None}
        return {"seq": row.seq, "hash": row.hash, "at": _instant(row.at)}

    def check_anchor(self, anchor: dict) -> str | None:
        """None when the chain still holds the anchored entry (same seq, same hash); else what is wrong."""
        seq, digest = anchor.get("seq"), anchor.get("hash")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0 or not isinstance(digest, str):
            return "the anchor is not {\"seq\": N, \"hash\": \"...\"} as `priorauth audit anchor` prints it"
        if seq == 0:
            return None
        with self._read() as s:
            row = s.scalars(select(AuditRow).where(AuditRow.seq == seq)).first()
        if row is None:
            return f"audit entry {seq} of the anchor is gone: the chain was cut back to before it"
        if row.hash != digest:
            return f"audit entry {seq} is not the one anchored (its hash differs): the chain was rewritten"
        return None

    def verify_records(self, limit: int = 100) -> tuple[dict[str, int], list[str]]:
        """The stored record against what the audit log recorded when each part was written:
        ``({"cases": n, "submissions": n, "determinations": n, "decisions": n, "events": n}, problems)`` (at
        most ``limit`` problems, each naming the case and the row). Found: a submission, determination, decision
        or event whose content changed, that no audit entry records (added), that an entry records but is no
        longer stored (deleted), or that now sits in another case (moved: an event is bound to its case and its
        place among the case's events, so one moved, added or deleted shows in both cases); a recorded case that
        is gone; a case whose status or outcome is not the one its events last set; a determination whose outcome
        is not the one recorded. A determination, decision or event whose audit entry carries no hash (one stored
        before the entries did) is not compared by content, nor are the events of a case with such an entry."""
        by_id: dict[int, tuple[str, dict]] = {}
        by_sequence: dict[tuple[str, int], dict] = {}
        decisions: dict[int, tuple[str, str | None]] = {}     # decision id -> (case, hash)
        submitted: list[str] = []                             # cases the audit says were submitted
        problems: list[str] = []
        counts = {"cases": 0, "submissions": 0, "determinations": 0, "decisions": 0, "events": 0, "letters": 0}
        events: dict[tuple[str, int], str] = {}               # (case, place among its events) -> content hash
        letters: dict[tuple[int, str], tuple[str, dict]] = {}  # (decision, audience) -> (case, its hashes)
        unbound: set[str] = set()                             # cases with a change recorded before events were bound

        def problem(text_: str) -> None:
            if len(problems) < limit:
                problems.append(text_)

        with self._read() as s:
            rows = s.execute(select(AuditRow.case_id, AuditRow.action, AuditRow.detail)
                             .where(AuditRow.action.in_(_CHANGES)).execution_options(yield_per=1000))
            for case_id, action, detail in rows:
                d = json.loads(detail)
                bound = d.get("event")
                if isinstance(bound, dict) and isinstance(bound.get("n"), int):
                    events[(case_id, bound["n"])] = bound.get("hash")
                else:
                    unbound.add(case_id)
                if action in ("case.extend", "case.appeal"):
                    continue
                if action == "case.decide":
                    if isinstance(d.get("decision"), int):
                        decisions[d["decision"]] = (case_id, d.get("decision_hash"))
                        for bound_letter in d.get("letters") or ():
                            letters[(d["decision"], bound_letter.get("audience"))] = (case_id, bound_letter)
                elif isinstance(d.get("submission"), int):
                    by_id[d["submission"]] = (case_id, d)
                elif isinstance(d.get("sequence"), int):
                    by_sequence[(case_id, d["sequence"])] = d
                    if action == "case.submit":
                        submitted.append(case_id)
            cases = {c.id: c for c in s.scalars(select(CaseRow).execution_options(yield_per=1000))}
            for case_id in submitted:
                if case_id not in cases:
                    problem(f"case {case_id}: the audit records its submission, but the case is no longer stored")
            recorded: dict[int, tuple[str, int, dict]] = {}    # submission id -> (case, sequence, its audit detail)
            seen_ids: set[int] = set()
            seen_sequences: set[tuple[str, int]] = set()
            for sid, case_id, sequence, text_ in s.execute(
                    select(SubmissionRow.id, SubmissionRow.case_id, SubmissionRow.sequence, SubmissionRow.text)
                    .order_by(SubmissionRow.id).execution_options(yield_per=200)):
                counts["submissions"] += 1
                if sid in by_id:
                    seen_ids.add(sid)
                    was, entry = by_id[sid]
                    if was != case_id:
                        problem(f"case {case_id} submission {sequence}: the audit records it in case {was}")
                elif (case_id, sequence) in by_sequence:
                    seen_sequences.add((case_id, sequence))
                    entry = by_sequence[(case_id, sequence)]
                else:
                    problem(f"case {case_id} submission {sequence}: no audit entry records it")
                    continue
                recorded[sid] = (case_id, sequence, entry)
                try:
                    actual = content_hash(orjson.loads(text_))
                except orjson.JSONDecodeError:
                    actual = None
                if actual != entry.get("content_hash"):
                    problem(f"case {case_id} submission {sequence}: its content is not what was stored")
            for sid in by_id.keys() - seen_ids:
                problem(f"case {by_id[sid][0]} submission {by_id[sid][1].get('sequence')}: recorded by the audit, "
                        "no longer stored")
            for case_id, sequence in by_sequence.keys() - seen_sequences:
                problem(f"case {case_id} submission {sequence}: recorded by the audit, no longer stored")
            determined: set[int] = set()
            latest_outcome: dict[str, str] = {}
            for sid, case_id, outcome, result_json in s.execute(
                    select(DeterminationRow.submission_id, DeterminationRow.case_id, DeterminationRow.outcome,
                           DeterminationRow.result_json).order_by(DeterminationRow.id).execution_options(yield_per=200)):
                latest_outcome[case_id] = outcome
                sub_case, sequence, entry = recorded.get(sid, (None, None, {}))
                determined.add(sid)
                if sub_case is not None and sub_case != case_id:
                    problem(f"case {case_id} determination of submission {sequence} of case {sub_case}: moved")
                if entry.get("outcome") is not None and outcome != entry["outcome"]:
                    problem(f"case {case_id} determination of submission {sequence}: its outcome {outcome} is not "
                            f"the {entry['outcome']} recorded")
                if not entry.get("determination_hash"):
                    continue
                counts["determinations"] += 1
                if record_hash(result_json) != entry["determination_hash"]:
                    problem(f"case {case_id} determination of submission {sequence}: "
                            "its content is not what was stored")
            for sid, (case_id, sequence, entry) in recorded.items():
                if entry.get("determination_hash") and sid not in determined:
                    problem(f"case {case_id} determination of submission {sequence}: recorded by the audit, "
                            "no longer stored")
            seen_decisions: set[int] = set()
            for row in s.scalars(select(DecisionRow).order_by(DecisionRow.id).execution_options(yield_per=200)):
                if row.id not in decisions:
                    problem(f"case {row.case_id} decision {row.id}: no audit entry records it")
                    continue
                seen_decisions.add(row.id)
                was, digest = decisions[row.id]
                if was != row.case_id:
                    problem(f"case {row.case_id} decision {row.id}: the audit records it in case {was}")
                if not digest:
                    continue
                counts["decisions"] += 1
                if decision_hash(row) != digest:
                    problem(f"case {row.case_id} decision {row.id}: its content is not what was stored")
            for did in decisions.keys() - seen_decisions:
                problem(f"case {decisions[did][0]} decision {did}: recorded by the audit, no longer stored")
            for lid, case_id, did, audience, html, pdf in s.execute(
                    select(LetterRow.id, LetterRow.case_id, LetterRow.decision_id, LetterRow.audience, LetterRow.html,
                           LetterRow.pdf).order_by(LetterRow.id).execution_options(yield_per=100)):
                counts["letters"] += 1
                was, bound_letter = letters.pop((did, audience), (None, None))
                if bound_letter is None:
                    problem(f"case {case_id} letter {lid} ({audience}): no audit entry records it")
                    continue
                if was != case_id:
                    problem(f"case {case_id} letter {lid} ({audience}): the audit records it in case {was}")
                if record_hash(html) != bound_letter.get("html_hash") \
                        or hashlib.sha256(pdf).hexdigest() != bound_letter.get("pdf_hash"):
                    problem(f"case {case_id} letter {lid} ({audience}): its content is not what was stored")
            for (did, audience), (case_id, _bound) in sorted(letters.items()):
                problem(f"case {case_id} letter of decision {did} ({audience}): recorded by the audit, "
                        "no longer stored")
            # each case's events against the entries of the changes that wrote them (by their place in the case),
            # and each case's status and outcome: the ones its events (append-only) last set
            state: dict[str, dict[str, Any]] = {}
            places: dict[str, int] = {}
            for case_id, kind, at, detail in s.execute(
                    select(EventRow.case_id, EventRow.kind, EventRow.at, EventRow.detail).order_by(EventRow.id)
                    .execution_options(yield_per=1000)):
                place = places[case_id] = places.get(case_id, 0) + 1
                if case_id not in unbound:
                    counts["events"] += 1
                    recorded_hash = events.pop((case_id, place), None)
                    if recorded_hash is None:
                        problem(f"case {case_id} event {place} ({kind}): no audit entry records it")
                    elif recorded_hash != event_hash(kind, at, detail):
                        problem(f"case {case_id} event {place} ({kind}): its content is not what was stored")
                try:
                    d = json.loads(detail)
                except ValueError:
                    continue
                for key in ("status", "outcome"):
                    if isinstance(d.get(key), list) and len(d[key]) == 2:
                        state.setdefault(case_id, {})[key] = d[key][1]
            for case_id, place in sorted(k for k in events if k[0] not in unbound):
                problem(f"case {case_id} event {place}: recorded by the audit, no longer stored")
            for case in cases.values():
                counts["cases"] += 1
                last = state.get(case.id, {})
                if "status" in last and case.status != last["status"]:
                    problem(f"case {case.id}: its status {case.status} is not the {last['status']} its events set")
                outcome = last.get("outcome", latest_outcome.get(case.id))
                if outcome is not None and case.outcome != outcome:
                    problem(f"case {case.id}: its outcome {case.outcome} is not the {outcome} its events set")
        return counts, problems

    # ---- writes ----------------------------------------------------------------------------------------------
    def _change(self, s: Session, case: CaseRow, kind: str, at: datetime, **changes: Any) -> dict:
        """Set the case's fields and append the event that records the change; returns the event's binding for
        the audit entry of the change (``{"n": its place among the case's events, "hash": its content hash}``)."""
        diff = {}
        for k, v in changes.items():
            old = getattr(case, k)
            if old != v:
                diff[k] = [_instant(old) if isinstance(old, datetime) else old,
                           _instant(v) if isinstance(v, datetime) else v]
                setattr(case, k, v)
        place = s.scalar(select(func.count()).select_from(EventRow).where(EventRow.case_id == case.id)) + 1
        ev = EventRow(case_id=case.id, at=at, kind=kind, detail=canonical_json(diff))
        s.add(ev)
        self._notify(s, case, kind, ev)
        return _event_binding(place, ev)

    def _find_submission(self, s: Session, system: str, value: str, digest: str) -> SubmissionRow | None:
        return s.scalars(select(SubmissionRow).where(SubmissionRow.identifier_system == system,
                                                     SubmissionRow.identifier_value == value,
                                                     SubmissionRow.content_hash == digest)
                         .order_by(SubmissionRow.id).limit(1)).first()

    def _identifier_used(self, s: Session, system: str, value: str) -> str | None:
        """The case that already used this identifier (on the case or on any of its submissions)."""
        case_id = s.scalars(select(CaseRow.id).where(CaseRow.identifier_system == system,
                                                     CaseRow.identifier_value == value)).first()
        return case_id or s.scalars(select(SubmissionRow.case_id).where(SubmissionRow.identifier_system == system,
                                                                        SubmissionRow.identifier_value == value)
                                    .limit(1)).first()

    def _replay(self, s: Session, sub: SubmissionRow) -> tuple[CaseRow, DeterminationRow]:
        case = s.get(CaseRow, sub.case_id)
        det = s.scalars(select(DeterminationRow).where(DeterminationRow.submission_id == sub.id)
                        .order_by(DeterminationRow.id.desc()).limit(1)).one()
        return case, det

    def _determination_row(self, case_id: str, submission_id: int, determination, at: datetime) -> DeterminationRow:
        from priorauth.output import to_json

        return DeterminationRow(case_id=case_id, submission_id=submission_id, policy_id=determination.policy.id,
                                policy_version=determination.policy.version,
                                policy_content_hash=determination.policy.content_hash, engine_version=__version__,
                                outcome=determination.outcome,
                                result_json=orjson.dumps(to_json(determination)).decode("utf-8"), created_at=at)

    def _conflict(self, system: str, value: str, case_id: str) -> IdempotencyConflict:
        return IdempotencyConflict(f"Bundle.identifier {system}|{value} was already submitted (case {case_id}) "
                                   "with different content; send an updated request as a resubmission of that "
                                   "case, or give the new request its own identifier")

    def submit(self, bundle: dict, text: str, *, organization: str, received_at: datetime,
               evaluate: Callable[[dict], tuple[Any, Any]], actor: Actor, case_id: str | None = None,
               at: datetime | None = None) -> SubmitResult:
        """Store a PAS request Bundle and its determination, idempotent on the Bundle identifier.

        ``evaluate`` (pure computation, run outside any transaction) gives the case and determination of the
        bundle; a new case gets the id ``case_id`` (default: a new UUID), and its determination and event the
        time ``at`` (default: the store's clock). A bundle sent again gives the stored case; its identifier with
        other content raises :class:`IdempotencyConflict`."""
        system, value = _identifier(bundle)
        digest = content_hash(bundle)
        case, det = evaluate(bundle)
        at = at or self.clock()
        due = as_utc(det.due) if det.due else None
        claim_system, claim_value = _claim_identifier(bundle)
        row = CaseRow(id=case_id or str(uuid.uuid4()), identifier_system=system, identifier_value=value,
                      request_id=str(case.id), claim_identifier_system=claim_system,
                      claim_identifier_value=claim_value, organization=organization, member_id=case.member.id,
                      line_of_business=case.member.line_of_business or "", urgency=case.request.urgency,
                      received_at=received_at, due_at=due, status=STATUS_PENDED, outcome=det.outcome)
        sub = SubmissionRow(case_id=row.id, sequence=1, identifier_system=system, identifier_value=value, text=text,
                            content_hash=digest, received_at=received_at)
        drow = self._determination_row(row.id, None, det, at)
        ev = EventRow(case_id=row.id, at=at, kind="submitted", detail=canonical_json(
            {"status": [None, STATUS_PENDED], "outcome": [None, det.outcome],
             "due_at": [None, _instant(due) if due else None]}))
        # the submission is named by its case and sequence (ids the database gives are not known before)
        audit = {"sequence": 1, "content_hash": digest, "determination_hash": record_hash(drow.result_json),
                 "outcome": det.outcome, "organization": organization, "event": _event_binding(1, ev)}
        for _attempt in range(3):
            # a new identifier (the common case) is one write; a used one is then a replay or a conflict
            if self._insert_new_case(row, sub, drow, ev, actor, audit):
                return SubmitResult(row, sub, drow, True)
            replay = self._try_replay(system, value, digest, actor, organization)
            if replay is not None:
                return replay
        raise StoreError(f"Bundle.identifier {system}|{value}: could not be stored")  # pragma: no cover

    def _insert_new_case(self, row: CaseRow, sub: SubmissionRow, drow: DeterminationRow, ev: EventRow,
                         actor: Actor, audit: dict) -> bool:
        """Insert a new case with its first submission, determination, event and audit entry, all or nothing;
        False (nothing written) when the identifier is already used."""
        if self.dialect == "postgresql" and not self._listening("submitted"):
            return self._insert_new_case_pg(row, sub, drow, ev, actor, audit)
        try:
            with self.writing() as s:
                taken = s.execute(_IDENTIFIER_TAKEN, {"system": row.identifier_system,
                                                      "value": row.identifier_value}).first()
                if taken is not None:
                    return False
                s.execute(_INSERT_CASE, _columns(row))
                sub.id = drow.submission_id = s.execute(_INSERT_SUB, _columns(sub)).scalar_one()
                drow.id = s.execute(_INSERT_DET, _columns(drow)).scalar_one()
                ev.id = s.execute(_INSERT_EVENT, _columns(ev)).scalar_one()
                self._notify(s, row, "submitted", ev)
                self._append_audit(s, actor.name, actor.role, "case.submit", row.id, audit)
        except IntegrityError:             # another writer stored this identifier meanwhile
            return False
        return True

    def _insert_new_case_pg(self, row: CaseRow, sub: SubmissionRow, drow: DeterminationRow, ev: EventRow,
                            actor: Actor, audit: dict) -> bool:
        params = {"case_id": row.id, "system": row.identifier_system, "value": row.identifier_value,
                  "request_id": row.request_id, "claim_system": row.claim_identifier_system,
                  "claim_value": row.claim_identifier_value, "organization": row.organization,
                  "member_id": row.member_id,
                  "line_of_business": row.line_of_business, "urgency": row.urgency,
                  "received_at": row.received_at, "due_at": row.due_at, "status": row.status,
                  "outcome": row.outcome, "text": sub.text, "content_hash": sub.content_hash,
                  "policy_id": drow.policy_id, "policy_version": drow.policy_version,
                  "policy_content_hash": drow.policy_content_hash, "engine_version": drow.engine_version,
                  "result_json": drow.result_json, "at": drow.created_at, "event_detail": ev.detail,
                  **self._audit_params(actor.name, actor.role, "case.submit", row.id, audit)}
        with self._autocommit.connect() as conn:
            got = conn.execute(_PG_SUBMIT, params).first()
        if got is None:
            return False
        sub.id, drow.id, ev.id = got[0], got[1], got[2]
        drow.submission_id = sub.id
        return True

    # ---- listeners: called inside the transaction of every case change ------------------------------------------
    def listen(self, callback: Callable[[Session, CaseRow, str, EventRow], None],
               kinds: Iterable[str] | None = None) -> None:
        """Call ``callback(session, case, kind, event)`` inside the transaction of every case change of one of
        ``kinds`` (every kind when None): what it writes commits or rolls back with the change."""
        self._listeners.append((callback, None if kinds is None else frozenset(kinds)))

    def unlisten(self, callback: Callable[..., None]) -> None:
        self._listeners = [(cb, k) for cb, k in self._listeners if cb is not callback]

    def _listening(self, kind: str) -> bool:
        return any(kinds is None or kind in kinds for _cb, kinds in self._listeners)

    def _notify(self, s: Session, case: CaseRow, kind: str, ev: EventRow) -> None:
        if self._listening(kind):
            s.flush()
            for callback, kinds in self._listeners:
                if kinds is None or kind in kinds:
                    callback(s, case, kind, ev)

    def _try_replay(self, system: str, value: str, digest: str, actor: Actor,
                    organization: str) -> SubmitResult | None:
        """The stored answer to a bundle sent again, or None for a new identifier. An identifier already used by
        another organization is a conflict that names no case: a replay never crosses organizations."""
        with self._peek() as s:
            rows = s.execute(_SUBMISSIONS_OF_IDENTIFIER, {"system": system, "value": value}).all()
        if not rows:
            return None
        same = next((r for r in rows if r.content_hash == digest), None)
        used, owner = (same or rows[0]).case_id, (same or rows[0]).organization
        foreign = owner != organization
        with self.writing() as s:
            if same is None or foreign:
                self._append_audit(s, actor.name, actor.role, "case.submit.conflict", used,
                                   {"content_hash": digest, "other_organization": foreign})
            else:
                sub = s.get(SubmissionRow, same.id)
                case, det = self._replay(s, sub)
                self._append_audit(s, actor.name, actor.role, "case.submit.replay", case.id,
                                   {"submission": sub.id, "determination": det.id, "content_hash": digest})
        if foreign:
            raise _foreign_conflict(system, value)
        if same is None:
            raise self._conflict(system, value, used)
        return SubmitResult(case, sub, det, False)

    def resubmit(self, case_id: str, bundle: dict, text: str, *, received_at: datetime,
                 evaluate: Callable[[dict], tuple[Any, Any]], actor: Actor) -> SubmitResult:
        """An updated request for an existing case (new documentation): a new submission and determination; the
        case goes back to pended. The same content as an earlier submission of the case is a replay."""
        system, value = _identifier(bundle)
        digest = content_hash(bundle)
        with self._read() as s:
            if s.get(CaseRow, case_id) is None:
                raise CaseNotFound(case_id)
            sub = self._find_submission(s, system, value, digest)
        if sub is not None and sub.case_id == case_id:
            with self.writing() as s:
                case, det = self._replay(s, sub)
                self._append_audit(s, actor.name, actor.role, "case.resubmit.replay", case_id,
                                   {"submission": sub.id, "determination": det.id, "content_hash": digest})
            return SubmitResult(case, sub, det, False)
        _case, det = evaluate(bundle)
        with self.writing() as s:
            row = s.execute(select(CaseRow).where(CaseRow.id == case_id).with_for_update()).scalar_one()
            used = self._identifier_used(s, system, value)
            if used is not None and used != case_id:
                foreign = s.get(CaseRow, used).organization != row.organization
                self._append_audit(s, actor.name, actor.role, "case.resubmit.conflict", case_id,
                                   {"content_hash": digest, "other_organization": foreign})
                conflict = _foreign_conflict(system, value) if foreign else self._conflict(system, value, used)
            else:
                conflict = None
                at = self.clock()
                last = s.scalars(select(SubmissionRow.sequence).where(SubmissionRow.case_id == case_id)
                                 .order_by(SubmissionRow.sequence.desc()).limit(1)).one()
                sub = SubmissionRow(case_id=case_id, sequence=last + 1, identifier_system=system,
                                    identifier_value=value, text=text, content_hash=digest, received_at=received_at)
                s.add(sub)
                s.flush()
                drow = self._determination_row(case_id, sub.id, det, at)
                s.add(drow)
                event_ = self._change(s, row, "resubmitted", at, status=STATUS_PENDED, outcome=det.outcome,
                                      due_at=as_utc(det.due) if det.due else row.due_at)
                s.flush()
                self._append_audit(s, actor.name, actor.role, "case.resubmit", case_id,
                                   {"submission": sub.id, "sequence": sub.sequence, "determination": drow.id,
                                    "content_hash": digest, "determination_hash": record_hash(drow.result_json),
                                    "outcome": det.outcome, "event": event_})
        if conflict is not None:
            raise conflict
        return SubmitResult(row, sub, drow, True)

    def record_decision(self, case_id: str, decision, actor: Actor, letters: Iterable[dict] = ()) -> DecisionRow:
        """Append a reviewer's decision (a :class:`priorauth.fhir.claim_response.ReviewerDecision`, validated
        when made) and move the case to its status. The case's status is checked under its lock, in the same
        transaction as the write: of simultaneous decisions one is recorded (and notified), the others raise
        :class:`CaseStateConflict` and write nothing. ``letters`` (``{"kind", "audience", "html", "pdf"}``, made
        beforehand) are stored with the decision, their hashes in its audit entry: the loser stores none."""
        letters = list(letters)
        with self.writing() as s:
            row = self._locked_case(s, case_id, DECIDABLE)
            at = self.clock()
            d = DecisionRow(case_id=case_id, action=decision.action, reason=decision.reason,
                            reviewer_npi=decision.reviewer_npi, specialty=decision.reviewer_specialty,
                            auth_number=decision.auth_number, decided_at=decision.decided_at, recorded_at=at)
            s.add(d)
            event_ = self._change(s, row, f"decision.{decision.action}", at,
                                  status=DECISION_STATUS[decision.action])
            s.flush()
            bound = []
            for letter in letters:
                html_hash, pdf_hash = record_hash(letter["html"]), hashlib.sha256(letter["pdf"]).hexdigest()
                s.add(LetterRow(case_id=case_id, decision_id=d.id, kind=letter["kind"], audience=letter["audience"],
                                html=letter["html"], pdf=letter["pdf"], html_hash=html_hash, pdf_hash=pdf_hash,
                                created_at=at))
                bound.append({"kind": letter["kind"], "audience": letter["audience"], "html_hash": html_hash,
                              "pdf_hash": pdf_hash})
            self._append_audit(s, actor.name, actor.role, "case.decide", case_id,
                               {"decision": d.id, "action": decision.action, "reviewer_npi": decision.reviewer_npi,
                                "cited": list(decision.cited), "decision_hash": decision_hash(d), "event": event_,
                                **({"letters": bound} if bound else {})})
            return d

    def extend(self, case_id: str, due_at: datetime, reason: str, actor: Actor) -> CaseRow:
        """Extend the decision's due time (the plan takes an extension, with its reason)."""
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError("reason: an extension needs a reason")
        with self.writing() as s:
            row = self._locked_case(s, case_id, DECIDABLE)
            if row.due_at is not None and as_utc(due_at) <= row.due_at:
                raise ValueError(f"due_at: an extension moves the due time later than {_instant(row.due_at)}")
            at = self.clock()
            event_ = self._change(s, row, "extension", at, due_at=as_utc(due_at))
            self._append_audit(s, actor.name, actor.role, "case.extend", case_id,
                               {"due_at": _instant(due_at), "reason_length": len(reason), "event": event_})
            return row

    def appeal(self, case_id: str, reason: str, actor: Actor, *, due_at: datetime | None = None) -> CaseRow:
        """Record an appeal of the case's decision: the case goes back to the queue (status appealed)."""
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError("reason: an appeal needs a reason")
        with self.writing() as s:
            row = self._locked_case(s, case_id, APPEALABLE)
            decided = s.scalars(select(DecisionRow.id).where(DecisionRow.case_id == case_id).limit(1)).first()
            if decided is None:
                raise ValueError("the case has no decision to appeal")
            at = self.clock()
            event_ = self._change(s, row, "appeal", at, status=STATUS_APPEALED,
                                  due_at=as_utc(due_at) if due_at is not None else row.due_at)
            self._append_audit(s, actor.name, actor.role, "case.appeal", case_id,
                               {"reason_length": len(reason), "event": event_})
            return row

    def _locked_case(self, s: Session, case_id: str, allowed: tuple[str, ...]) -> CaseRow:
        """The case row, locked for this transaction (SELECT ... FOR UPDATE on PostgreSQL; SQLite's one writer),
        in one of the ``allowed`` statuses as read under that lock."""
        row = s.execute(select(CaseRow).where(CaseRow.id == case_id).with_for_update()).scalar_one_or_none()
        if row is None:
            raise CaseNotFound(case_id)
        if row.status not in allowed:
            raise CaseStateConflict(case_id, row.status, allowed)
        return row

    # ---- clients ---------------------------------------------------------------------------------------------
    def add_client(self, client_id: str, role: str, organization: str | None, actor: Actor,
                   secret: str | None = None, *, npi: str | None = None, specialty: str | None = None) -> str:
        """Register an OAuth2 client; returns its secret (generated unless given), stored only as a hash. A
        reviewer is registered with its NPI and specialty, under which its decisions are recorded."""
        from priorauth.fhir.claim_response import is_valid_npi

        if role not in ROLES:
            raise ValueError(f"role {role!r} is not one of {', '.join(ROLES)}")
        if not isinstance(client_id, str) or not client_id.strip() or len(client_id) > 128:
            raise ValueError("client_id: 1 to 128 characters")
        if role == "provider" and not (organization and organization.strip()):
            raise ValueError("organization: a provider client belongs to an organization")
        if role == "reviewer":
            if not is_valid_npi(npi or ""):
                raise ValueError("npi: a reviewer is registered with its NPI (10 digits, Luhn check digit)")
            if not (isinstance(specialty, str) and specialty.strip()) or len(specialty) > 256:
                raise ValueError("specialty: a reviewer is registered with its specialty (a NUCC code or words)")
        elif npi is not None or specialty is not None:
            raise ValueError("npi: only a reviewer is registered with an NPI and specialty")
        secret = secret or secrets.token_urlsafe(32)
        with self.writing() as s:
            if s.get(ClientRow, client_id) is not None:
                raise ValueError(f"client_id {client_id!r} is already registered")
            s.add(ClientRow(client_id=client_id, secret_hash=hash_secret(secret), role=role,
                            organization=organization, created_at=self.clock(), disabled=False, npi=npi,
                            specialty=specialty.strip() if specialty else None))
            self._append_audit(s, actor.name, actor.role, "client.add", None,
                               {"client_id": client_id, "role": role, "organization": organization, "npi": npi,
                                "specialty": specialty})
        return secret

    def authenticate(self, client_id: str, secret: str) -> ClientRow | None:
        """The client, when the secret is its own. An unknown or disabled client costs the same hash as a known
        one, so the time of the answer does not tell which client ids exist."""
        with self._read() as s:
            row = s.get(ClientRow, client_id)
        stored = row.secret_hash if row is not None and not row.disabled else _dummy_hash()
        ok = check_secret(secret, stored)
        if row is None or row.disabled or not ok:
            return None
        return row

    def client(self, client_id: str) -> ClientRow | None:
        with self._read() as s:
            return s.get(ClientRow, client_id)

    def clients(self) -> list[ClientRow]:
        with self._read() as s:
            return list(s.scalars(select(ClientRow).order_by(ClientRow.client_id)))

    # ---- reads -----------------------------------------------------------------------------------------------
    def _read_audit(self, actor: Actor | None, action: str, case_id: str | None, detail: dict | None = None) -> None:
        if actor is not None:
            self.audit(actor.name, actor.role, action, case_id, detail)

    def case(self, case_id: str, actor: Actor | None = None) -> CaseRow:
        with self._peek() as s:
            row = s.get(CaseRow, case_id)
        if row is None:
            raise CaseNotFound(case_id)
        self._read_audit(actor, "case.read", case_id)
        return row

    def case_by_identifier(self, system: str, value: str, actor: Actor | None = None) -> CaseRow | None:
        with self._read() as s:
            case_id = self._identifier_used(s, system, value)
            row = s.get(CaseRow, case_id) if case_id else None
        if row is not None:
            self._read_audit(actor, "case.read", row.id)
        return row

    def case_by_request(self, system: str | None, value: str, organization: str | None = None) -> CaseRow | None:
        """The case whose request id, Claim identifier (of that ``system`` when one is given) or Bundle identifier
        (when ``system`` is given) is ``value``, among the organization's cases when one is given; the latest
        received when several match."""
        cond = CaseRow.request_id == value
        if system is not None:
            cond = or_(cond, and_(CaseRow.identifier_system == system, CaseRow.identifier_value == value),
                       and_(CaseRow.claim_identifier_system == system, CaseRow.claim_identifier_value == value))
        else:
            cond = or_(cond, CaseRow.claim_identifier_value == value)
        q = select(CaseRow).where(cond)
        if organization is not None:
            q = q.where(CaseRow.organization == organization)
        with self._read() as s:
            return s.scalars(q.order_by(CaseRow.received_at.desc(), CaseRow.id).limit(1)).first()

    def latest_determination(self, case_id: str) -> DeterminationRow | None:
        with self._read() as s:
            return s.scalars(select(DeterminationRow).where(DeterminationRow.case_id == case_id)
                             .order_by(DeterminationRow.id.desc()).limit(1)).first()

    def history(self, case_id: str, actor: Actor | None = None) -> CaseHistory:
        with self._read() as s:
            row = s.get(CaseRow, case_id)
            if row is None:
                raise CaseNotFound(case_id)

            def rows(model, order):
                return list(s.scalars(select(model).where(model.case_id == case_id).order_by(order)))

            h = CaseHistory(row, rows(SubmissionRow, SubmissionRow.sequence), rows(DeterminationRow, DeterminationRow.id),
                            rows(DecisionRow, DecisionRow.id), rows(EventRow, EventRow.id))
        self._read_audit(actor, "case.history", case_id)
        return h

    def queue(self, status: str | Iterable[str] | None = None, outcome: str | Iterable[str] | None = None,
              due_before: datetime | None = None, line_of_business: str | None = None,
              organization: str | None = None, *, limit: int | None = None,
              actor: Actor | None = None) -> list[CaseRow]:
        """Cases sorted by due time (earliest first, cases without a due time last)."""
        q = select(CaseRow)
        for col, val in ((CaseRow.status, status), (CaseRow.outcome, outcome)):
            if isinstance(val, str):
                q = q.where(col == val)
            elif val is not None:
                q = q.where(col.in_(list(val)))
        if due_before is not None:
            q = q.where(CaseRow.due_at < as_utc(due_before))
        if line_of_business is not None:
            q = q.where(CaseRow.line_of_business == line_of_business)
        if organization is not None:
            q = q.where(CaseRow.organization == organization)
        q = q.order_by(CaseRow.due_at.asc().nulls_last(), CaseRow.received_at, CaseRow.id)
        if limit is not None:
            q = q.limit(limit)
        with self._read() as s:
            rows = list(s.scalars(q))
        self._read_audit(actor, "queue.read", None, {"count": len(rows)})
        return rows
