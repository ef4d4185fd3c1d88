"""Determination (+ reviewer decision) -> PAS response Bundle (FHIR R4, Da Vinci PAS 2.x).

``response_bundle`` writes the Bundle of docs/fhir-mapping.md, section "Determination -> PAS response Bundle":
a ``collection`` whose first entry is the ClaimResponse, followed by copies of the Patient, the insurer and the
requestor it references (and whatever those reference in the request, so that every reference resolves in the
response). The request is the PAS request Bundle (``request=``) or, for a case file, the Case (``case=``),
which is written as the request bundle ``priorauth convert`` would give (:func:`bundle_from_case`), so that a
response to a case file names the same Claim, items and resources as the converted request.

Review actions (X12 306) per Claim item:
- no reviewer decision: every item ``A4`` (pended), ``outcome`` ``complete``; the engine's recommendation is in
  ``processNote`` and is never final;
- ``approve``: the product ``A1``; tocilizumab ``A1``, or ``A6`` when the authorization caps it (the authorized
  doses in ``extension[authorizedItemDetail].quantity``, the per-dose cap in a note);
- ``modify``: the product and tocilizumab ``A6`` with the authorized quantities;
- ``deny``: ``A3``, only from a clinical reviewer whose reason cites the policy's criteria;
- ``pend``: ``A4`` with the documentation still needed;
- an item that is neither the product nor tocilizumab (a product requested alongside) is not authorized
  under this policy and stays ``A4`` for separate review.
``preAuthRef``, ``preAuthPeriod`` and the item's ``extension[preAuthPeriod]`` only when an item is certified.

Choices where the IG leaves room (and where this module follows PAS 2.x over the base resource):
- ``reviewAction`` sits on ``item.adjudication`` (category ``submitted``), where PAS 2.x defines it; R4 requires
  one adjudication per item anyway.
- ``ClaimResponse.request`` names the Claim by ``Claim/<id>`` (as the PAS examples do; the Claim is not copied)
  and by its identifier.
- Times without an offset are taken as UTC (as the request writer does).
- The reviewer goes in ``urn:priorauth:extension:claim-response-reviewer`` (sub-extensions ``npi``,
  ``specialty``, ``decidedAt``).

The output is deterministic: ids are name-based UUIDs of the case id and the decision, and nothing reads the
clock (``created`` is an input).
"""

from __future__ import annotations

import copy
import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Iterator

from priorauth.fhir.codes import (
    CLAIM_TYPE, EXT_ITEM_AUTHORIZED_DETAIL, EXT_ITEM_PREAUTH_PERIOD, EXT_REQUESTED_SERVICE, EXT_REVIEW_ACTION,
    EXT_REVIEW_ACTION_CODE, EXT_REVIEWER, EXT_CLAIM_RESPONSE_REVIEWER, ADJUDICATION, NPI, NUCC, PAS_CLAIM_RESPONSE, PAS_RESPONSE_BUNDLE, X12_REVIEW_ACTION,
)
from priorauth.terminology import load_terminology

if TYPE_CHECKING:  # pragma: no cover
    from priorauth.case import Case
    from priorauth.determination import Determination

__all__ = ["ReviewerDecision", "response_bundle", "ACTIONS", "REVIEW_ACTION_DISPLAY", "cited_criteria",
           "default_auth_number", "is_valid_npi", "is_clinical_specialty"]

#: HL7 adjudication codes (PAS fixes ClaimResponse.item.adjudication.category to `submitted`); codes.py does not
#: list it, since nothing priorauth reads uses it
_ADJUDICATION = ADJUDICATION

ACTIONS = ("approve", "deny", "modify", "pend")
#: X12 306 (Action Code) displays of the codes priorauth writes
REVIEW_ACTION_DISPLAY = {"A1": "Certified in total", "A3": "Not Certified", "A4": "Pended", "A6": "Modified"}
_CERTIFIED = frozenset({"A1", "A6"})

_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:priorauth:pas-response-bundle")
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")

_OUTCOME_WORDS = {
    "meets_criteria": "meets the criteria",
    "does_not_meet_criteria": "does not meet the criteria",
    "needs_information": "needs information",
    "refer_to_policy": "refer to another policy",
    "not_applicable": "not applicable (outside the policy)",
}

# ---- reviewer ------------------------------------------------------------------------------------------------
#: a criterion number as the policy writes it: a roman section and at least one dotted part (I.A.7, II.A.1,
#: I.A.4.a.ii); a policy id such as CP.PMN.255 does not match
_CRITERION_ID = re.compile(r"(?<![\w.])[IVX]+(?:\.[A-Za-z0-9]+)+(?!\w)")
_NUCC_CODE = re.compile(r"\d{3}[0-9A-Z]{6}X")
#: NUCC taxonomy groups of clinicians who may make an adverse determination on a drug: allopathic and
#: osteopathic physicians (20..), pharmacists (1835..), nurse practitioners (363L..), physician assistants
#: (363A..), clinical nurse specialists (364S..)
_CLINICIAN_TAXONOMY_PREFIXES = ("20", "1835", "363L", "363A", "364S")
_CLINICIAN_WORDS = re.compile(
    r"\b(physician|physicians|doctor|md|m\.d|d\.o|pharmd|pharm\.d|pharmacist|rph|nurse practitioner|"
    r"physician assistant|clinical nurse specialist|surgeon|surgery|medicine|pediatrics?|psychiatry|psychiatrist|"
    r"oncology|oncologist|hematology|haematology|hematologist|haematologist|cardiology|cardiologist|neurology|"
    r"neurologist|nephrology|nephrologist|gastroenterology|rheumatology|immunology|immunologist|pathology|"
    r"pathologist|radiology|radiologist|dermatology|endocrinology|pulmonology|urology|gynecology|obstetrics|"
    r"ophthalmology|otolaryngology|anesthesiology|pharmacology|infectious diseases?|transplant)\b")
_NON_CLINICAL_WORDS = re.compile(
    r"\b(technician|tech|coordinator|clerk|representative|intake|administrator|administrative|billing|coder|"
    r"coding|customer service|not|non|no|none|former|retired|student|trainee)\b")


def cited_criteria(text: str) -> tuple[str, ...]:
    """The criterion numbers a text cites, in order, without repeats."""
    seen: list[str] = []
    for m in _CRITERION_ID.finditer(text or ""):
        if m.group(0) not in seen:
            seen.append(m.group(0))
    return tuple(seen)


def is_valid_npi(npi: str) -> bool:
    """Ten digits whose last is the Luhn check digit of the other nine with the card prefix 80840 (CMS)."""
    if not isinstance(npi, str) or not re.fullmatch(r"[0-9]{10}", npi):     # ASCII digits only
        return False
    total = 0
    for i, ch in enumerate(reversed("80840" + npi)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def is_clinical_specialty(specialty: str) -> bool:
    """Whether a reviewer's specialty (NUCC code or words) is that of a clinician who may deny a drug request."""
    s = (specialty or "").strip()
    if not s:
        return False
    if _NUCC_CODE.fullmatch(s.upper()):
        return s.upper().startswith(_CLINICIAN_TAXONOMY_PREFIXES)
    words = " ".join(re.sub(r"[^a-z0-9.]+", " ", s.lower()).split())
    if _NON_CLINICAL_WORDS.search(words):
        return False
    return bool(_CLINICIAN_WORDS.search(words)) or load_terminology().is_heme_onc_words(s)


@dataclass(frozen=True)
class ReviewerDecision:
    """A human reviewer's decision on a request.

    ``action``: ``approve``, ``deny``, ``modify`` or ``pend``. A denial must come from a clinician (a valid NPI and
    a clinical specialty, NUCC code or words) and its reason must cite at least one criterion number (``I.A.7``):
    no denial without a human clinician. ``auth_number`` is for a certification (approve or modify) only.
    """

    action: str
    reason: str
    reviewer_npi: str
    reviewer_specialty: str
    decided_at: datetime
    auth_number: str | None = None

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"action {self.action!r} is not one of {', '.join(ACTIONS)}")
        if not isinstance(self.decided_at, datetime):
            raise ValueError(f"decided_at must be a datetime, not {type(self.decided_at).__name__}")
        if not isinstance(self.reason, str):
            raise ValueError("reason must be a string")
        if not is_valid_npi(self.reviewer_npi):
            raise ValueError(f"reviewer_npi {self.reviewer_npi!r} is not a valid NPI (10 digits, Luhn check digit)")
        if not isinstance(self.reviewer_specialty, str) or not self.reviewer_specialty.strip():
            raise ValueError("reviewer_specialty is required (a NUCC taxonomy code or the specialty in words)")
        if self.action != "approve" and not self.reason.strip():
            raise ValueError(f"a decision to {self.action} needs a reason")
        if self.action == "deny":
            if not is_clinical_specialty(self.reviewer_specialty):
                raise ValueError(f"a denial must be made by a clinician; {self.reviewer_specialty!r} is not a clinical "
                                 "specialty (physician, pharmacist, nurse practitioner, physician assistant)")
            if not cited_criteria(self.reason):
                raise ValueError("a denial's reason must cite at least one criterion of the policy (such as I.A.7)")
        if self.auth_number is not None:
            if self.action not in ("approve", "modify"):
                raise ValueError(f"an authorization number is given only with a certification, not with {self.action}")
            if not isinstance(self.auth_number, str) or not self.auth_number.strip() \
                    or self.auth_number != self.auth_number.strip():
                raise ValueError(f"auth_number {self.auth_number!r} is not an authorization number")

    @property
    def cited(self) -> tuple[str, ...]:
        return cited_criteria(self.reason)


# ---- helpers -------------------------------------------------------------------------------------------------
def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt


def _instant(dt: datetime) -> str:
    """A FHIR dateTime with its offset (UTC written as Z)."""
    return _utc(dt).isoformat().replace("+00:00", "Z")


def _num(x: float | int) -> float | int:
    f = float(x)
    return int(f) if f.is_integer() else f


def default_auth_number(case_id: str) -> str:
    """The authorization number priorauth gives a case when the reviewer gives none: stable for the case id."""
    return "PA-" + hashlib.sha256(case_id.encode("utf-8")).hexdigest()[:12].upper()


def _references(node: Any) -> Iterator[str]:
    """Every Reference.reference string in a resource (contained resources included)."""
    if isinstance(node, dict):
        ref = node.get("reference")
        if isinstance(ref, str):
            yield ref
        for v in node.values():
            if isinstance(v, (dict, list)):
                yield from _references(v)
    elif isinstance(node, list):
        for v in node:
            yield from _references(v)


class _Request:
    """The PAS request Bundle: its Claim, and its entries by fullUrl and by Type/id."""

    def __init__(self, bundle: Any):
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            raise ValueError("request is not a FHIR Bundle")
        entries = bundle.get("entry")
        if not isinstance(entries, list) or not entries:
            raise ValueError("the request Bundle has no entries")
        self.bundle = bundle
        self.entries: list[dict] = []
        self.by_url: dict[str, int] = {}
        self.by_key: dict[str, list[int]] = {}
        for i, e in enumerate(entries):
            res = e.get("resource") if isinstance(e, dict) else None
            if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
                raise ValueError(f"Bundle.entry[{i}] of the request has no resource")
            self.entries.append(e)
            url = e.get("fullUrl")
            if isinstance(url, str) and url:
                self.by_url.setdefault(url, i)
            if isinstance(res.get("id"), str) and res["id"]:
                self.by_key.setdefault(f"{res['resourceType']}/{res['id']}", []).append(i)
        claim = self.resource(0)
        if claim["resourceType"] != "Claim" or claim.get("use") != "preauthorization":
            raise ValueError("the first entry of a PAS request Bundle is the Claim (use preauthorization)")
        self.claim = claim

    def resource(self, i: int) -> dict:
        return self.entries[i]["resource"]

    def find(self, ref: str) -> int | None:
        if ref in self.by_url:
            return self.by_url[ref]
        key = ref.split("/_history/", 1)[0]
        if "://" in key or key.startswith("urn:"):
            return self.by_url.get(key)
        hits = self.by_key.get(key, [])
        if len(hits) > 1:
            # several entries share Type/id: a relative reference resolves against the base of the referring
            # entry's RESTful fullUrl (the Claim's, where the response's references come from), as intake does
            url = self.entries[0].get("fullUrl")
            parts = url.rsplit("/", 2) if isinstance(url, str) and "://" in url else ()
            if len(parts) == 3:
                return self.by_url.get(f"{parts[0]}/{key}")
        return hits[0] if len(hits) == 1 else None

    def case_id(self) -> str | None:
        """The request's id as intake reads it: Bundle.identifier, else Claim.identifier[0], else Bundle.id."""
        ident = self.bundle.get("identifier")
        if isinstance(ident, dict) and isinstance(ident.get("value"), str) and ident["value"].strip():
            return ident["value"]
        idents = self.claim.get("identifier")
        if isinstance(idents, list) and idents and isinstance(idents[0], dict):
            v = idents[0].get("value")
            if isinstance(v, str) and v.strip():
                return v
        for x in (self.bundle.get("id"), self.claim.get("id")):
            if isinstance(x, str) and x.strip():
                return x
        return None


def _concept_drugs(cc: Any) -> list[str]:
    """Generic names of the drugs a CodeableConcept names (codes, displays, text)."""
    term = load_terminology()
    out = []
    if not isinstance(cc, dict):
        return out
    for c in cc.get("coding") or ():
        if isinstance(c, dict):
            for key in ("code", "display"):
                if isinstance(c.get(key), str):
                    d = term.drug(c[key])
                    if d is not None:
                        out.append(d.generic)
    if isinstance(cc.get("text"), str):
        d = term.drug(cc["text"])
        if d is not None:
            out.append(d.generic)
    return out


def _item_drugs(item: dict, req: _Request) -> list[str]:
    names = []
    for ext in item.get("extension") or ():
        if isinstance(ext, dict) and ext.get("url") == EXT_REQUESTED_SERVICE:
            ref = (ext.get("valueReference") or {}).get("reference")
            k = req.find(ref) if isinstance(ref, str) else None
            if k is not None:
                res = req.resource(k)
                names += _concept_drugs(res.get("medicationCodeableConcept") or res.get("code"))
    return names + _concept_drugs(item.get("productOrService"))


def _roles(req: _Request) -> list[tuple[int, str]]:
    """(itemSequence, role) per Claim item: ``tocilizumab``, ``product`` (the first other item) or ``other``."""
    items = req.claim.get("item")
    if not isinstance(items, list) or not items:
        raise ValueError("the request's Claim has no items")
    out: list[tuple[int, str]] = []
    product_seen = False
    for i, item in enumerate(items):
        seq = item.get("sequence") if isinstance(item, dict) else None
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            raise ValueError(f"Claim.item[{i}].sequence is required (a positive integer)")
        if "tocilizumab" in _item_drugs(item, req):
            out.append((seq, "tocilizumab"))
        elif not product_seen:
            product_seen = True
            out.append((seq, "product"))
        else:
            out.append((seq, "other"))
    if len({s for s, _ in out}) != len(out):
        raise ValueError("the request's Claim.item sequences repeat")
    return out


# ---- notes ---------------------------------------------------------------------------------------------------
class _Notes:
    def __init__(self) -> None:
        self.notes: list[dict[str, Any]] = []

    def add(self, text: str) -> int:
        number = len(self.notes) + 1
        self.notes.append({"number": number, "type": "display", "text": text})
        return number


def _cells(max_cells: float) -> str:
    return f"{max_cells / 1e6:g} x 10^6 CAR-positive viable T cells"


def _authorization_text(auth: dict[str, Any]) -> str:
    dose = "dose" if auth["doses"] == 1 else "doses"
    return (f"{auth['product']}: {auth['doses']} {dose} of at most {_cells(auth['max_cells'])}, "
            f"valid {auth['valid_from']} to {auth['valid_to']}")


def _tocilizumab_text(t: dict[str, Any]) -> str:
    text = f"tocilizumab: {t['doses']} doses of at most {t['max_mg_per_dose']:g} mg each"
    req = t.get("requested") or {}
    if t.get("modified"):
        asked = f"{req.get('doses')} doses of {req.get('dose')}" if req else "more"
        text += f" (requested {asked}; limited to the policy's maximum)"
    if t.get("note"):
        text += f"; {t['note']}"
    return text


def _reason_text(d: "Determination", reason: str) -> str:
    if cited_criteria(reason):
        return f"Reason: {reason}"
    failed = [n for n in d.scope if n.status == "not_met"]
    where = f" ({failed[-1].label.lower()})" if failed else ""
    return f"Reason{where}: {reason}"


def _recommendation_notes(d: "Determination", notes: _Notes) -> None:
    notes.add(f"priorauth recommendation, not a decision: the request {_OUTCOME_WORDS[d.outcome]} "
              f"({d.policy.id} v{d.policy.version}). {d.summary}.")
    for r in d.reasons:
        notes.add(_reason_text(d, r))
    if d.refer_to:
        notes.add(f"Recommended referral: review under {d.refer_to}.")
    for m in d.missing:
        notes.add(f"Documentation needed for {m['criterion']}: {m['documentation']}.")
    if d.authorization:
        notes.add(f"Recommended authorization: {_authorization_text(d.authorization)}.")
        if d.authorization.get("tocilizumab"):
            notes.add(f"Recommended {_tocilizumab_text(d.authorization['tocilizumab'])}.")
    notes.add(d.review["statement"])
    if d.due is not None:
        notes.add(f"Decision due by {d.due.isoformat(sep=' ', timespec='minutes')}.")


_DECIDED = {"approve": "Certified", "deny": "Not certified", "modify": "Certified with modifications",
            "pend": "Pended for additional information"}


def _specialty(s: str) -> dict[str, Any]:
    code = s.strip().upper()
    if _NUCC_CODE.fullmatch(code):
        return {"coding": [{"system": NUCC, "code": code}]}
    return {"text": s.strip()}


def _pas_reviewer_extension(dec: ReviewerDecision) -> dict[str, Any]:
    """PAS's own record that a human reviewed the request (PAS 2.1 and later)."""
    return {"url": EXT_CLAIM_RESPONSE_REVIEWER, "extension": [
        {"url": "wasHumanReviewedFlag", "valueBoolean": True},
        {"url": "reviewerNPI", "valueIdentifier": {"system": NPI, "value": dec.reviewer_npi}},
        {"url": "reviewerSpecialty", "valueCodeableConcept": _specialty(dec.reviewer_specialty)},
    ]}


def _reviewer_extension(dec: ReviewerDecision) -> dict[str, Any]:
    """priorauth's record of the decision time, which PAS's reviewer extension does not carry."""
    return {"url": EXT_REVIEWER, "extension": [
        {"url": "npi", "valueIdentifier": {"system": NPI, "value": dec.reviewer_npi}},
        {"url": "specialty", "valueCodeableConcept": _specialty(dec.reviewer_specialty)},
        {"url": "decidedAt", "valueDateTime": _instant(dec.decided_at)},
    ]}


def _review_action(code: str, number: str | None) -> dict[str, Any]:
    ext: list[dict[str, Any]] = [{"url": EXT_REVIEW_ACTION_CODE, "valueCodeableConcept": {"coding": [
        {"system": X12_REVIEW_ACTION, "code": code, "display": REVIEW_ACTION_DISPLAY[code]}]}}]
    if number is not None:
        ext.append({"url": "number", "valueString": number})
    return {"url": EXT_REVIEW_ACTION, "extension": ext}


# ---- the bundle ----------------------------------------------------------------------------------------------
def response_bundle(determination: "Determination", *, request: dict | None = None, case: "Case | None" = None,
                    created: datetime, decision: ReviewerDecision | None = None,
                    response_id: str | None = None) -> dict:
    """The PAS response Bundle for ``determination`` of ``request`` (a PAS request Bundle) or ``case``.

    Without ``decision`` every item is pended (A4) and the recommendation is in ``processNote``; with one, the
    items carry the reviewer's action. Raises ValueError for a request that is not the determination's, a
    denial citing criteria the policy does not have, or a certification of a determination with no
    authorization terms (re-evaluate with the new information, or review under the applicable policy).
    """
    d = determination
    if not isinstance(created, datetime):
        raise ValueError(f"created must be a datetime, not {type(created).__name__}")
    if request is None:
        if case is None:
            raise ValueError("a response needs the request: request= (the PAS request Bundle) or case= (the Case "
                             "the determination was made from), since the determination does not list the items")
        if case.id != d.case_id:
            raise ValueError(f"the case is {case.id!r}, the determination is for {d.case_id!r}")
        from priorauth.fhir.pas_build import bundle_from_case

        request = bundle_from_case(case)
    req = _Request(request)
    rid_of_request = req.case_id()
    if rid_of_request != d.case_id:
        raise ValueError(f"the request is {rid_of_request!r}, the determination is for {d.case_id!r}")
    if response_id is not None and not _FHIR_ID.fullmatch(response_id):
        raise ValueError(f"response_id {response_id!r} is not a FHIR id (letters, digits, '-', '.'; at most 64)")
    if decision is not None:
        if _utc(decision.decided_at) > _utc(created):
            raise ValueError(f"the decision ({_instant(decision.decided_at)}) is after the response's creation "
                             f"({_instant(created)})")
        unknown = [c for c in decision.cited if d.policy.node(c) is None]
        if unknown:
            raise ValueError(f"the reason cites {', '.join(unknown)}, which {'is' if len(unknown) == 1 else 'are'} "
                             f"not a criterion of {d.policy.id}")
        if decision.action in ("approve", "modify") and d.authorization is None:
            raise ValueError(f"cannot {decision.action}: the determination ({d.outcome}) holds no authorization terms; "
                             "re-evaluate the request with the new information, or review it under the applicable "
                             "policy")

    roles = _roles(req)
    auth = d.authorization
    action = decision.action if decision is not None else None
    toci_auth = auth.get("tocilizumab") if auth else None
    notes = _Notes()

    # ---- what each item gets
    codes: dict[int, str] = {}
    for seq, role in roles:
        if action is None or action == "pend":
            codes[seq] = "A4"
        elif role == "other" or (role == "tocilizumab" and action != "deny" and toci_auth is None):
            codes[seq] = "A4"   # not authorized under this policy: reviewed separately
        elif action == "deny":
            codes[seq] = "A3"
        elif action == "modify":
            codes[seq] = "A6"
        elif role == "tocilizumab":
            codes[seq] = "A6" if toci_auth.get("modified") else "A1"
        else:
            codes[seq] = "A1"
    certified = any(c in _CERTIFIED for c in codes.values())
    auth_number = None
    if certified:
        auth_number = decision.auth_number or default_auth_number(d.case_id)

    # ---- notes: the decision (or the recommendation) first
    item_notes: dict[int, list[int]] = {seq: [] for seq, _ in roles}
    if decision is None:
        _recommendation_notes(d, notes)
    else:
        who = f"{'clinical ' if action == 'deny' else ''}reviewer NPI {decision.reviewer_npi} " \
              f"({decision.reviewer_specialty.strip()})"
        text = f"{_DECIDED[action]} by {who} on {_instant(decision.decided_at)}"
        text += f": {decision.reason.strip()}" if decision.reason.strip() else "."
        decided = notes.add(text)
        for c in decision.cited:
            node, result = d.policy.node(c), d.node(c)
            line = f"{c} ({node.label}; {d.policy.id} {node.reference})" if node.reference else f"{c} ({node.label})"
            if result is not None:
                line += f": {result.status.replace('_', ' ')}: {result.reason}"
            notes.add(line)
        if action == "pend":
            for m in d.missing:
                notes.add(f"Documentation needed for {m['criterion']}: {m['documentation']}.")
        for seq, _role in roles:
            if codes[seq] in ("A3", "A6") or (action == "pend"):
                item_notes[seq].append(decided)
        if certified:
            period = f"valid {auth['valid_from']} to {auth['valid_to']}"
            for seq, role in roles:
                if codes[seq] not in _CERTIFIED:
                    continue
                if role == "product":
                    item_notes[seq].append(notes.add(f"Authorized {_authorization_text(auth)}."))
                elif role == "tocilizumab":
                    item_notes[seq].append(notes.add(f"Authorized {_tocilizumab_text(toci_auth)}, {period}."))
        outside = [seq for seq, role in roles if codes[seq] == "A4" and action != "pend"]
        if outside:
            product = auth["product"] if auth else "the requested product"
            n = notes.add(f"Not part of the {d.policy.id} authorization ({product} and tocilizumab): pended for "
                          "review under the applicable policy.")
            for seq in outside:
                item_notes[seq].append(n)

    # ---- items
    items = []
    for seq, role in roles:
        code = codes[seq]
        item: dict[str, Any] = {}
        ext: list[dict[str, Any]] = []
        if code in _CERTIFIED:
            ext.append({"url": EXT_ITEM_PREAUTH_PERIOD,
                        "valuePeriod": {"start": auth["valid_from"], "end": auth["valid_to"]}})
            if code == "A6":
                quantity = toci_auth["doses"] if role == "tocilizumab" else auth["doses"]
                ext.append({"url": EXT_ITEM_AUTHORIZED_DETAIL,
                            "extension": [{"url": "quantity", "valueQuantity": {"value": _num(quantity)}}]})
        if ext:
            item["extension"] = ext
        item["itemSequence"] = seq
        if item_notes[seq]:
            item["noteNumber"] = sorted(set(item_notes[seq]))
        item["adjudication"] = [{
            "extension": [_review_action(code, auth_number if code in _CERTIFIED else None)],
            "category": {"coding": [{"system": _ADJUDICATION, "code": "submitted"}]},
        }]
        items.append(item)

    # ---- the referenced resources, copied with their fullUrls (and what they reference in turn)
    copied: list[int] = []
    full_urls: dict[int, str] = {}

    def full_url(k: int) -> str:
        if k not in full_urls:
            url = req.entries[k].get("fullUrl")
            if not isinstance(url, str) or not url:
                res = req.resource(k)
                name = "{}|{}/{}".format(d.case_id, res["resourceType"], res.get("id", k))
                url = f"urn:uuid:{uuid.uuid5(_NAMESPACE, name)}"
            full_urls[k] = url
        return full_urls[k]

    def include(k: int) -> None:
        if k == 0 or k in copied:
            return
        copied.append(k)
        for ref in _references(req.resource(k)):
            j = req.find(ref)
            if j is not None:
                include(j)

    def reference(element: str, types: tuple[str, ...]) -> dict[str, Any]:
        ref = req.claim.get(element)
        if not isinstance(ref, dict):
            raise ValueError(f"the request's Claim.{element} is required")
        target = ref.get("reference")
        if target is None:
            return copy.deepcopy(ref)   # an identifier or display only
        k = req.find(target) if isinstance(target, str) else None
        if k is None:
            raise ValueError(f"the request's Claim.{element} ({target!r}) resolves to no entry of the Bundle")
        if req.resource(k)["resourceType"] not in types:
            raise ValueError(f"the request's Claim.{element} is a {req.resource(k)['resourceType']}, "
                             f"not {' or '.join(types)}")
        include(k)
        return {"reference": full_url(k)}

    patient = reference("patient", ("Patient",))
    insurer = reference("insurer", ("Organization",))
    requestor = reference("provider", ("Practitioner", "PractitionerRole", "Organization"))
    claim_ref: dict[str, Any] = {}
    if isinstance(req.claim.get("id"), str) and req.claim["id"]:
        claim_ref["reference"] = f"Claim/{req.claim['id']}"
    claim_ref["type"] = "Claim"
    claim_idents = req.claim.get("identifier")
    if isinstance(claim_idents, list) and claim_idents and isinstance(claim_idents[0], dict):
        claim_ref["identifier"] = copy.deepcopy(claim_idents[0])
    else:
        claim_ref["identifier"] = {"value": d.case_id}

    # ---- the ClaimResponse
    key = f"{d.case_id}|{action or 'pended'}|{_instant(created)}"
    rid = response_id or str(uuid.uuid5(_NAMESPACE, key))
    cr: dict[str, Any] = {"resourceType": "ClaimResponse", "id": rid, "meta": {"profile": [PAS_CLAIM_RESPONSE]}}
    if decision is not None:
        cr["extension"] = [_pas_reviewer_extension(decision), _reviewer_extension(decision)]
    cr["identifier"] = [copy.deepcopy(claim_ref["identifier"])]
    cr["status"] = "active"
    claim_type = req.claim.get("type")
    cr["type"] = copy.deepcopy(claim_type) if isinstance(claim_type, dict) else {
        "coding": [{"system": CLAIM_TYPE, "code": "institutional", "display": "Institutional"}]}
    cr["use"] = "preauthorization"
    cr["patient"] = patient
    cr["created"] = _instant(created)
    cr["insurer"] = insurer
    cr["requestor"] = requestor
    cr["request"] = claim_ref
    # every PAS 2.x version allows "complete" with pended (A4) items; 2.2 no longer allows "queued"
    cr["outcome"] = "complete"
    if decision is None:
        cr["disposition"] = (f"Pended for review; priorauth recommends: {_OUTCOME_WORDS[d.outcome]}. "
                             "The recommendation is not a decision.")
    else:
        cr["disposition"] = f"{_DECIDED[action]}."
    if certified:
        cr["preAuthRef"] = auth_number
        cr["preAuthPeriod"] = {"start": auth["valid_from"], "end": auth["valid_to"]}
    cr["item"] = items
    cr["processNote"] = notes.notes

    cr_url = f"urn:uuid:{uuid.uuid5(_NAMESPACE, key + '|ClaimResponse/' + rid)}"
    entries = [{"fullUrl": cr_url, "resource": cr}]
    entries += [{"fullUrl": full_url(k), "resource": copy.deepcopy(req.resource(k))} for k in copied]
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": response_id or str(uuid.uuid5(_NAMESPACE, f"{key}|Bundle")),
        "meta": {"profile": [PAS_RESPONSE_BUNDLE]},
    }
    ident = req.bundle.get("identifier")
    if isinstance(ident, dict):
        bundle["identifier"] = copy.deepcopy(ident)
    bundle["type"] = "collection"
    bundle["timestamp"] = _instant(created)
    bundle["entry"] = entries
    return bundle
