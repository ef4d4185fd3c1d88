"""The service's operations on the store, independent of HTTP: submit and resubmit PAS requests, build the
current ClaimResponse of a case, record reviewers' decisions, extensions and appeals, the queue.

A case's response is rebuilt from what is stored: the latest submission (verbatim), its determination
(re-evaluated with the same policy and engine; the stored result is the record, the recomputation must match its
policy content hash) and the reviewer's decision on it, if any.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from priorauth.determination import Determination, determine, review_due
from priorauth.fhir.claim_response import ReviewerDecision, default_auth_number, response_bundle
from priorauth.fhir.pas_intake import BundleError, case_from_bundle, inquiry_profile
from priorauth.policies import Policy
from priorauth.reporting import OPEN_STATUSES
from priorauth.letters import LetterWriter, Reviewer
from priorauth.service.auth import Principal
from priorauth.service.errors import ApiError
from priorauth.service.settings import ServiceSettings
from priorauth.store import (BundleIdentifierMissing, CaseNotFound, CaseStateConflict, IdempotencyConflict, Store,
                             SubmitResult)
from priorauth.store.core import APPEALABLE
from priorauth.store.models import CaseRow, DecisionRow, DeterminationRow, SubmissionRow, as_utc
from priorauth.terminology import load_terminology

__all__ = ["AuthorizationService", "OPEN_STATUSES", "DECIDED_STATUSES"]

DECIDED_STATUSES = APPEALABLE          # a decision was made: the case may be appealed
SEED_ORGANIZATION = "examples"
SEED_IDENTIFIER_SYSTEM = "urn:priorauth:example-seed"



def _instant(dt: datetime | None) -> str | None:
    return None if dt is None else as_utc(dt).isoformat().replace("+00:00", "Z")


_DECIDE = "a decided case is decided again only after an appeal (POST .../appeal)"
_EXTEND = "only an open case's clock is extended"
_APPEAL = "only a decided case is appealed"


def _wrong_state(status: str, rule: str) -> ApiError:
    """409 for a change the case's status does not allow (read before, or under the case's lock)."""
    return ApiError(409, f"the case is {status}; {rule}", "status", code="business-rule")


def _bundle_claim(entries: list, reference: str) -> dict | None:
    """The Claim a reference names among the Bundle's entries (by fullUrl or Type/id), if it is there."""
    for e in entries[1:]:
        res = e.get("resource") if isinstance(e, dict) else None
        if not isinstance(res, dict) or res.get("resourceType") != "Claim":
            continue
        full = e.get("fullUrl")
        key = f"Claim/{res.get('id')}"
        if reference in (full, key) or (isinstance(full, str) and full.endswith("/" + reference)):
            return res
    return None


@dataclass(frozen=True)
class Submitted:
    result: SubmitResult
    response: dict
    resubmission: bool


class AuthorizationService:
    def __init__(self, settings: ServiceSettings, store: Store, policy: Policy):
        self.settings = settings
        self.store = store
        store.clock = settings.now
        self.policy = policy
        self.config = settings.config
        self.term = load_terminology()
        self.letters = LetterWriter(settings.letter_templates)

    # ---- evaluation ------------------------------------------------------------------------------------------
    def evaluate(self, bundle: Any, received_at: datetime) -> tuple[Any, Determination]:
        """The case and determination of a request Bundle received at ``received_at`` (stored with the
        submission): the plan's receipt decides the evaluation date, every window and the review clock. The
        date the sender wrote (Bundle.timestamp, else Claim.created) is reported beside it and moves nothing."""
        case = case_from_bundle(bundle, "Bundle", eligibility=self.config.member_eligibility)
        instant = as_utc(received_at)
        day = instant.date()          # the receipt's date in UTC
        sent = case.request.received
        det = determine(case, self.policy, self.config, as_of=day, terminology=self.term)
        problems = list(det.data_problems)
        if sent is not None and sent != day:
            problems.append(f"the request is dated {sent} by its sender (Bundle.timestamp or Claim.created); it is "
                            f"evaluated as of its receipt by the plan, {instant.isoformat()}")
        lob = self.term.line_of_business(case.member.line_of_business)
        return case, replace(det, due=review_due(instant, case.request.urgency, lob, self.policy, self.config),
                             received=day, receipt=instant, sent=sent, data_problems=problems)

    # ---- submit ----------------------------------------------------------------------------------------------
    def submit(self, bundle: dict, text: str, principal: Principal) -> Submitted:
        where = inquiry_profile(bundle)
        if where is not None:
            raise ApiError(400, "this is a PAS Inquiry Request Bundle (it asks about an earlier request); send it to "
                                "Claim/$inquire", where, code="not-supported")
        received = self.settings.now()
        organization = principal.organization or principal.role
        prior = self._prior_case(bundle, principal)
        # the case the response names: a new case's id is chosen before it is stored
        case_id = prior.id if prior is not None else str(uuid.uuid4())
        answered: list[dict] = []

        def evaluate(b: Any) -> tuple[Any, Determination]:
            case, det = self.evaluate(b, received)
            try:   # a request the response cannot be made for is refused before anything is stored
                answered.append(response_bundle(det, request=b, created=as_utc(received).replace(microsecond=0),
                                                response_id=case_id))
            except ValueError as exc:
                raise ApiError(422, f"the request cannot be answered: {exc}", code="business-rule") from None
            return case, det

        try:
            if prior is not None:
                result = self.store.resubmit(prior.id, bundle, text, received_at=received, evaluate=evaluate,
                                             actor=principal.actor)
            else:
                result = self.store.submit(bundle, text, organization=organization, received_at=received,
                                           evaluate=evaluate, actor=principal.actor, case_id=case_id, at=received)
        except BundleError as err:
            raise ApiError(400, "the PAS request Bundle cannot be read", outcome=err.operation_outcome(redact=True)) from None
        except BundleIdentifierMissing as err:
            raise ApiError(400, str(err).split(": ", 1)[1], "Bundle.identifier", code="required") from None
        except IdempotencyConflict as err:
            raise ApiError(409, str(err), "Bundle.identifier", code="duplicate") from None
        if result.created and prior is None:
            # a new case: pended, its response the one built from the determination just stored
            response = answered[-1]
        else:
            response = self.response(result.case.id)
        return Submitted(result, response, prior is not None)

    def _prior_case(self, bundle: dict, principal: Principal) -> CaseRow | None:
        """The case an update refers to: ``Claim.related.claim`` (identifier or reference) naming a request of
        the submitter's organization already received. An update that names none is a new request."""
        entries = bundle.get("entry")
        claim = entries[0].get("resource") if isinstance(entries, list) and entries and \
            isinstance(entries[0], dict) else None
        if not isinstance(claim, dict) or claim.get("resourceType") != "Claim":
            return None
        related = claim.get("related")
        if not isinstance(related, list):
            return None
        for i, rel in enumerate(related):
            ref = rel.get("claim") if isinstance(rel, dict) else None
            if not isinstance(ref, dict):
                continue
            # by identifier, or by reference to the prior Claim sent in the Bundle (by its identifiers)
            idents = [ref.get("identifier")]
            element = "identifier" if isinstance(ref.get("identifier"), dict) else "reference"
            if element == "reference" and isinstance(ref.get("reference"), str):
                prior = _bundle_claim(entries, ref["reference"])
                idents = list(prior.get("identifier") or ()) if prior is not None else []
            found = None
            for ident in idents:
                if isinstance(ident, dict) and isinstance(ident.get("value"), str):
                    system = ident.get("system")
                    found = self.store.case_by_request(system if isinstance(system, str) else None, ident["value"],
                                                       principal.organization if principal.role == "provider" else None)
                    if found is not None:
                        break
            if found is None:
                raise ApiError(404, "the related (prior) request is not one this plan received from your "
                                    "organization", f"Claim.related[{i}].claim.{element}", code="not-found")
            return found
        return None

    # ---- reading ---------------------------------------------------------------------------------------------
    def case_for(self, case_id: str, principal: Principal, action: str = "case.read") -> CaseRow:
        """The case, if the caller may see it; otherwise 404 (a provider cannot learn that another
        organization's case exists)."""
        try:
            row = self.store.case(case_id)
        except CaseNotFound:
            row = None
        if row is None or not principal.may_see(row.organization):
            self.store.audit(principal.actor.name, principal.role, "case.read.refused", None,
                             {"requested": case_id[:64]})
            raise ApiError(404, f"no case {case_id!r} that you may see", code="not-found")
        self.store.audit(principal.actor.name, principal.role, action, row.id)
        return row

    def _current(self, case_id: str) -> tuple[SubmissionRow, DeterminationRow, DecisionRow | None]:
        with self.store._read() as s:      # one consistent snapshot of the case's latest state
            from sqlalchemy import select

            det = s.scalars(select(DeterminationRow).where(DeterminationRow.case_id == case_id)
                            .order_by(DeterminationRow.id.desc()).limit(1)).one()
            sub = s.get(SubmissionRow, det.submission_id)
            dec = s.scalars(select(DecisionRow).where(DecisionRow.case_id == case_id,
                                                      DecisionRow.recorded_at >= det.created_at)
                            .order_by(DecisionRow.id.desc()).limit(1)).first()
        return sub, det, dec

    def response(self, case_id: str, *, decision: ReviewerDecision | None = None,
                 created: datetime | None = None) -> dict:
        """The case's current PAS response Bundle (or, with ``decision``, the one that decision would give)."""
        sub, det_row, dec_row = self._current(case_id)
        bundle = orjson.loads(sub.text)
        _case, det = self.evaluate(bundle, sub.received_at)
        if det.policy.content_hash != det_row.policy_content_hash:
            raise ApiError(409, f"the case was determined under {det_row.policy_id} {det_row.policy_version} "
                                f"({det_row.policy_content_hash[:12]}), which this service no longer runs; "
                                "resubmit the request to re-evaluate it", code="business-rule")
        if decision is None and dec_row is not None:
            decision = ReviewerDecision(action=dec_row.action, reason=dec_row.reason,
                                        reviewer_npi=dec_row.reviewer_npi, reviewer_specialty=dec_row.specialty,
                                        decided_at=dec_row.decided_at, auth_number=dec_row.auth_number)
            created = dec_row.recorded_at
        created = created or det_row.created_at
        return response_bundle(det, request=bundle, created=as_utc(created).replace(microsecond=0)
                                if decision is None else as_utc(created), decision=decision, response_id=case_id)

    @staticmethod
    def claim_response(bundle: dict) -> dict:
        for e in bundle.get("entry", ()):
            if e.get("resource", {}).get("resourceType") == "ClaimResponse":
                return e["resource"]
        raise ApiError(500, "the response Bundle holds no ClaimResponse")  # pragma: no cover - built by us

    def inquire(self, bundle: dict, principal: Principal) -> dict:
        """PAS ``$inquire``: the current response of the request the inquiry's Claim identifies (Bundle or
        Claim identifier), among the caller's organization's requests."""
        entries = bundle.get("entry")
        claim = entries[0].get("resource") if isinstance(entries, list) and entries and \
            isinstance(entries[0], dict) else None
        if not isinstance(claim, dict) or claim.get("resourceType") != "Claim":
            raise ApiError(400, "the first entry of an inquiry Bundle is the Claim being asked about",
                           "Bundle.entry[0].resource", code="structure")
        wanted: list[tuple[str | None, str]] = []
        ident = bundle.get("identifier")
        if isinstance(ident, dict) and isinstance(ident.get("value"), str):
            wanted.append((ident.get("system") if isinstance(ident.get("system"), str) else None, ident["value"]))
        for idf in claim.get("identifier") or ():
            if isinstance(idf, dict) and isinstance(idf.get("value"), str):
                wanted.append((idf.get("system") if isinstance(idf.get("system"), str) else None, idf["value"]))
        if not wanted:
            raise ApiError(400, "an inquiry names the request by Claim.identifier", "Claim.identifier",
                           code="required")
        org = principal.organization if principal.role == "provider" else None
        for system, value in wanted:
            row = self.store.case_by_request(system, value, org)
            if row is not None:
                self.store.audit(principal.actor.name, principal.role, "case.inquire", row.id)
                return self.response(row.id)
        self.store.audit(principal.actor.name, principal.role, "case.inquire.none", None, {})
        raise ApiError(404, "no request with that identifier from your organization", "Claim.identifier",
                       code="not-found")

    # ---- reviewer --------------------------------------------------------------------------------------------
    def is_overdue(self, row: CaseRow, now: datetime | None = None) -> bool:
        now = now or self.settings.now()
        return row.status in OPEN_STATUSES and row.due_at is not None and as_utc(row.due_at) < as_utc(now)

    def case_summary(self, row: CaseRow, now: datetime | None = None) -> dict[str, Any]:
        return {"id": row.id, "request_id": row.request_id, "organization": row.organization,
                "line_of_business": row.line_of_business or None, "urgency": row.urgency,
                "received_at": _instant(row.received_at), "due_at": _instant(row.due_at),
                "overdue": self.is_overdue(row, now), "status": row.status, "outcome": row.outcome}

    def case_detail(self, case_id: str, principal: Principal) -> dict[str, Any]:
        self.case_for(case_id, principal, "case.detail")
        h = self.store.history(case_id)
        dets = h.determinations
        latest = json.loads(dets[-1].result_json) if dets else None
        return {
            **self.case_summary(h.case),
            "determination": latest,
            "determinations": [{"id": d.id, "submission": d.submission_id, "outcome": d.outcome,
                                "policy": {"id": d.policy_id, "version": d.policy_version,
                                           "content_hash": d.policy_content_hash},
                                "engine_version": d.engine_version, "created_at": _instant(d.created_at)}
                               for d in dets],
            "submissions": [{"id": s.id, "sequence": s.sequence, "identifier": {"system": s.identifier_system,
                                                                                 "value": s.identifier_value},
                             "content_hash": s.content_hash, "received_at": _instant(s.received_at)}
                            for s in h.submissions],
            "decisions": [{"id": d.id, "action": d.action, "reason": d.reason, "reviewer_npi": d.reviewer_npi,
                           "reviewer_specialty": d.specialty, "auth_number": d.auth_number,
                           "decided_at": _instant(d.decided_at), "recorded_at": _instant(d.recorded_at)}
                          for d in h.decisions],
            "events": [{"at": _instant(e.at), "kind": e.kind, "changes": json.loads(e.detail)} for e in h.events],
        }

    def reviewer(self, principal: Principal, reviewer_npi: str | None = None,
                 reviewer_specialty: str | None = None) -> tuple[str, str]:
        """The NPI and specialty a decision of this reviewer is recorded under: its registration's. Values a
        request gives must be those (they are never taken from it)."""
        if principal.kind == "user":
            user = self.store.user(principal.client_id)
            if user is None or user.disabled:
                raise ApiError(403, "this console account is not registered or is disabled")
            return user.npi, user.specialty
        client = self.store.client(principal.client_id)
        if client is None or not client.npi or not client.specialty:
            raise ApiError(403, "this reviewer client is registered without its NPI and specialty; register it with "
                                "them (priorauth client add ID --role reviewer --npi NPI --specialty SPECIALTY)")
        for given, own, field, what in ((reviewer_npi, client.npi, "reviewer_npi", "NPI"),
                                        (reviewer_specialty, client.specialty, "reviewer_specialty", "specialty")):
            if given is not None and given.strip() != own:
                raise ApiError(422, f"{field}: a decision is recorded under the reviewer's registered {what}, not one "
                                    "given with it; leave it out", field, code="business-rule")
        return client.npi, client.specialty

    def decide(self, case_id: str, principal: Principal, action: str, reason: str, reviewer_npi: str | None = None,
               reviewer_specialty: str | None = None, auth_number: str | None = None) -> tuple[DecisionRow, dict]:
        reviewer_npi, reviewer_specialty = self.reviewer(principal, reviewer_npi, reviewer_specialty)
        row = self.case_for(case_id, principal, "case.read")
        if row.status not in OPEN_STATUSES:
            raise _wrong_state(row.status, _DECIDE)
        now = self.settings.now()
        if auth_number is None and action in ("approve", "modify"):
            auth_number = default_auth_number(case_id)
        try:
            decision = ReviewerDecision(action=action, reason=reason, reviewer_npi=reviewer_npi,
                                        reviewer_specialty=reviewer_specialty, decided_at=now,
                                        auth_number=auth_number)
        except ValueError as exc:
            raise ApiError(422, str(exc), _decision_field(str(exc)), code="business-rule") from None
        try:
            self.response(case_id, decision=decision, created=now)
        except ValueError as exc:
            raise ApiError(422, str(exc), code="business-rule") from None
        letters = self.decision_letters(row, decision, principal)
        try:      # the store checks the status again under the case's lock: one of simultaneous decisions lands
            dec = self.store.record_decision(case_id, decision, principal.actor, letters)
        except CaseStateConflict as err:
            raise _wrong_state(err.status, _DECIDE) from None
        return dec, self.response(case_id)

    def decision_letters(self, row: CaseRow, decision: ReviewerDecision, principal: Principal) -> list[dict]:
        """The notice letters of a decision (provider and member, HTML and PDF), made before it is recorded and
        stored with it."""
        sub, det_row, _dec = self._current(row.id)
        if principal.kind == "user":
            user = self.store.user(principal.client_id)
            reviewer = Reviewer(user.display_name, user.credentials, user.specialty)
        else:
            reviewer = Reviewer(f"the plan's clinical reviewer (NPI {decision.reviewer_npi})", "",
                                decision.reviewer_specialty)
        return self.letters.write(decision=decision, determination=json.loads(det_row.result_json),
                                  case_id=row.id, line_of_business=row.line_of_business or None,
                                  received_at=row.received_at, due_at=row.due_at, bundle=orjson.loads(sub.text),
                                  member_id=row.member_id, reviewer=reviewer)

    def extend(self, case_id: str, principal: Principal, hours: int, reason: str) -> CaseRow:
        row = self.case_for(case_id, principal, "case.read")
        if row.status not in OPEN_STATUSES:
            raise _wrong_state(row.status, _EXTEND)
        base = row.due_at or self.settings.now()
        try:
            return self.store.extend(case_id, as_utc(base) + timedelta(hours=hours), reason, principal.actor)
        except CaseStateConflict as err:
            raise _wrong_state(err.status, _EXTEND) from None
        except ValueError as exc:
            raise ApiError(422, str(exc), str(exc).split(":")[0], code="business-rule") from None

    def appeal(self, case_id: str, principal: Principal, reason: str, urgency: str) -> CaseRow:
        row = self.case_for(case_id, principal, "case.read")
        if row.status not in DECIDED_STATUSES:
            raise _wrong_state(row.status, _APPEAL)
        lob = self.term.line_of_business(row.line_of_business or None)
        due = review_due(as_utc(self.settings.now()), urgency, lob, self.policy, self.config)
        try:
            return self.store.appeal(case_id, reason, principal.actor, due_at=due)
        except CaseStateConflict as err:
            raise _wrong_state(err.status, _APPEAL) from None
        except ValueError as exc:
            raise ApiError(422, str(exc), str(exc).split(":")[0], code="business-rule") from None

    # ---- seeding ---------------------------------------------------------------------------------------------
    def seed(self, directory: Path) -> int:
        """Submit the example request Bundles in ``directory`` (as the ``examples`` organization) into an empty
        store; returns how many were stored. The seeded copies carry their own identifier system, so a provider
        can still submit the same examples as its own requests."""
        if self.store.queue(limit=1):
            return 0
        seeder = Principal("seed", "provider", SEED_ORGANIZATION)
        n = 0
        for path in sorted(directory.glob("*.json")):
            bundle = orjson.loads(path.read_text(encoding="utf-8"))
            bundle["identifier"] = {"system": SEED_IDENTIFIER_SYSTEM, "value": bundle["identifier"]["value"]}
            self.submit(bundle, orjson.dumps(bundle, option=orjson.OPT_INDENT_2).decode(), seeder)
            n += 1
        return n


def _decision_field(message: str) -> str | None:
    for name in ("action", "reason", "reviewer_npi", "reviewer_specialty", "auth_number"):
        if name in message:
            return name
    if "denial" in message and "clinician" in message:
        return "reviewer_specialty"
    if "cite" in message:
        return "reason"
    return None
