"""The durable store of the authorization service (SQLAlchemy 2, Alembic migrations in ``migrations/``)."""

from priorauth.store.core import (DECISION_STATUS, ROLES, STATUS_APPEALED, STATUS_PENDED, Actor, BundleIdentifierMissing,
                                  CaseHistory, CaseNotFound, CaseStateConflict, IdempotencyConflict, PatientDataInAudit, Store, StoreError,
                                  SubmitResult, audit_hash, canonical_json, content_hash, default_url)

__all__ = ["Store", "Actor", "SubmitResult", "CaseHistory", "StoreError", "IdempotencyConflict", "CaseNotFound",
           "BundleIdentifierMissing", "CaseStateConflict", "PatientDataInAudit", "default_url", "content_hash", "canonical_json",
           "audit_hash", "STATUS_PENDED", "STATUS_APPEALED", "DECISION_STATUS", "ROLES"]
