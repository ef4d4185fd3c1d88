"""Case -> PAS request Bundle (FHIR R4, Da Vinci PAS): the writing direction of docs/fhir-mapping.md.

``bundle_from_case`` writes every fact of a :class:`priorauth.case.Case` where the section "Request Bundle ->
Case" of the mapping reads it, so that reading the bundle back gives the same facts. ``context`` is not
written: the policy's effective date, the formulary and the label-change flag are payer configuration, which
a provider's request does not carry.

The output is deterministic: resource ids follow the position of each fact in the case, fullUrls are
``urn:uuid:`` name-based UUIDs (RFC 4122 version 5) of the case id and the resource, and nothing depends on
the clock, so the same case always gives the same bytes.

Choices where the mapping leaves room:
- ``Bundle.timestamp`` is an instant: a receipt date alone is written as midnight UTC, a time without an offset
  as UTC; ``Claim.created`` keeps the date alone.
- Drug names are kept as written in ``CodeableConcept.text``. A medication concept adds the drug's RxNorm
  ingredient code (display: the generic name) when the value sets know one; the HCPCS billing code goes on
  ``Claim.item.productOrService`` (tocilizumab is always J3262). Regimen acronyms are text only.
- Units are coded in UCUM only when the unit as written is UCUM (:func:`is_ucum`); ``mg/24h`` or
  ``x10^6 cells`` travel in ``Quantity.unit`` alone.
- A lab carries its LOINC code unless the lab value set marks that code unverified, and always priorauth's
  lab-test coding.
- Attestations become one completed DTR QuestionnaireResponse whose linkIds are ``<criterion id>.<fact>`` of the
  policy's initial-request criteria; it and the DocumentReferences are attached to the Claim as
  ``supportingInfo`` (additionalInformation).
- Not carried (the mapping has no element for them): ``title``, ``context``, the difference between an
  absent and an empty ``labs``, ``assessments`` or ``attestations.prior_classes`` (the engine reads both alike).
"""

from __future__ import annotations

import re
import uuid
from datetime import timezone
from functools import lru_cache
from typing import Any


from priorauth.case import Case, Lab, Procedure, Quantity, Regimen
from priorauth.fhir.codes import (
    CLAIM_TYPE, CONDITION_CLINICAL, CPT, CPT_TRANSPLANT, CS_DRUG_CLASS, CS_IMAGING_FINDING, CS_IMWG_RESPONSE,
    CS_LAB_TEST, CS_LINE_OF_BUSINESS, CS_STOP_REASON, CS_THERAPY_INTENT, DTR_QUESTIONNAIRE_RESPONSE,
    EXT_CERTIFICATION_TYPE, EXT_CLINICAL_TRIAL, EXT_LINE_OF_THERAPY, EXT_REQUESTED_SERVICE, HCPCS, ICD10CM, INTERPRETATION, KIND_CERTIFICATION, LOINC,
    LOINC_BODY_WEIGHT, LOINC_DISEASE_STATUS, LOINC_MEDICATION_HISTORY, LOINC_PAST_ILLNESS, NPI, NUCC, PAS_CLAIM,
    PAS_REQUEST_BUNDLE, PAS_SUPPORTING_INFO_TYPE, PROCESS_PRIORITY, RXNORM, SNOMED, SNOMED_CONSULTATION, SOPT, UCUM,
    X12_CERTIFICATION_TYPE,
)
from priorauth.fhir.dtr import questionnaire_canonical
from priorauth.policies import default_policy
from priorauth.terminology import load_terminology

__all__ = ["bundle_from_case", "is_ucum"]

# ---- HL7 terminology the mapping does not read (so codes.py does not list it) ---------------------------------
_OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
_CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
_LIST_EMPTY_REASON = "http://terminology.hl7.org/CodeSystem/list-empty-reason"
_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
_ORGANIZATION_TYPE = "http://terminology.hl7.org/CodeSystem/organization-type"

_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:priorauth:pas-request-bundle")

#: X12 1322 displays
_CERTIFICATION_DISPLAY = {"I": "Initial", "R": "Renewal"}
#: Source of Payment Typology: 1 Medicare, 2 Medicaid, 5 private health insurance (SOPT has no marketplace code)
_SOPT = {"medicare": ("1", "MEDICARE"), "medicaid": ("2", "MEDICAID"), "commercial": ("5", "PRIVATE HEALTH INSURANCE"),
         "marketplace": ("5", "PRIVATE HEALTH INSURANCE")}
_INTERPRETATION = {"high": ("H", "High"), "low": ("L", "Low"), "abnormal": ("A", "Abnormal"), "normal": ("N", "Normal")}
_RESPONSE_DISPLAY = {r: r.replace("_", " ") for r in ("progressive_disease", "relapse", "stable_disease",
                                                       "minimal_response", "partial_response",
                                                       "very_good_partial_response", "complete_response",
                                                       "stringent_complete_response")}
#: CPT codes of the transplants (CPT_TRANSPLANT read backwards) and how code.text names them
_PROCEDURE_CPT = {v: k for k, v in CPT_TRANSPLANT.items()}
_PROCEDURE_TEXT = {"autologous_sct": "autologous stem cell transplant",
                   "allogeneic_sct": "allogeneic stem cell transplant"}
_ATTESTATION_TEXT = {
    "no_cns_pathology": "The member has no CNS involvement and no clinically relevant CNS pathology",
    "no_prior_bcma": "The member has had no prior BCMA-directed therapy",
    "no_prior_car_t": "The member has had no prior CAR T-cell therapy",
    "prior_lines": "Number of prior lines of therapy",
    "prior_classes": "Drug classes the member received in prior lines",
}

# ---- UCUM ------------------------------------------------------------------------------------------------------
# A unit is written with system UCUM and `code` only when it is UCUM as written; any other spelling
# (mg/24h, x10^6 cells, lb) goes in `unit` alone, which the reader falls back to.
_UCUM_METRIC = frozenset({"g", "L", "l", "m", "s", "mol", "eq", "U", "[iU]", "[IU]", "Pa", "kat", "cal"})
_UCUM_OTHER = frozenset({"min", "h", "d", "wk", "mo", "a", "%", "[lb_av]", "[oz_av]", "[in_i]", "[ft_i]",
                         "10*", "10^", "[pi]"})
_UCUM_PREFIXES = ("da", "Y", "Z", "E", "P", "T", "G", "M", "k", "h", "d", "c", "m", "u", "n", "p", "f", "a", "z", "y")
_UCUM_TOKEN = re.compile(r"\{[^{}]*\}|\(|\)|[./]|[^./(){}]+")
_UCUM_ANNOTATABLE = re.compile(r"^(?P<atom>\[[^\]]+\]|10\*|10\^|[A-Za-z%]+?)(?P<exp>[+-]?\d+)?$")


def _ucum_atom(s: str) -> bool:
    if s in _UCUM_OTHER or s in _UCUM_METRIC:
        return True
    return any(s.startswith(p) and s[len(p):] in _UCUM_METRIC for p in _UCUM_PREFIXES)


def _ucum_component(text: str) -> bool:
    if text.isdigit():
        return True  # a factor
    m = _UCUM_ANNOTATABLE.match(text)
    return bool(m) and _ucum_atom(m.group("atom"))


@lru_cache(maxsize=1024)
def is_ucum(unit: str) -> bool:
    """Whether ``unit`` is a UCUM expression (case-sensitive syntax, atoms from the units priorauth uses)."""
    if not unit or unit != unit.strip() or " " in unit:
        return False
    tokens = _UCUM_TOKEN.findall(unit)
    if "".join(tokens) != unit:
        return False
    depth, expect_term = 0, True
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok in "./" and len(tok) == 1:
            if expect_term and not (tok == "/" and i == 0):
                return False
            expect_term = True
        elif tok == "(":
            if not expect_term:
                return False
            depth += 1
        elif tok == ")":
            if expect_term or depth == 0:
                return False
            depth -= 1
        elif tok.startswith("{"):
            if "{" in tok[1:] or any(ord(ch) > 126 for ch in tok):
                return False
            expect_term = False  # an annotation alone, or after the unit it annotates
        else:
            if not expect_term or not _ucum_component(tok):
                return False
            expect_term = False
        i += 1
    return depth == 0 and not expect_term


# ---- helpers ---------------------------------------------------------------------------------------------------
def _num(x: float | int) -> float | int:
    """A number as JSON writes it best: 115 rather than 115.0."""
    f = float(x)
    return int(f) if f.is_integer() and abs(f) < 2**53 else f


def _quantity(value: float, unit: str | None) -> dict[str, Any]:
    q: dict[str, Any] = {"value": _num(value)}
    if unit:
        q["unit"] = unit
        if is_ucum(unit):
            q["system"] = UCUM
            q["code"] = unit
    return q


def _q(q: Quantity) -> dict[str, Any]:
    return _quantity(q.value, q.unit)


def _instant(case: Case) -> str:
    """Bundle.timestamp (an instant): the time received, or the start of the day received (UTC)."""
    at = case.request.received_at
    if at is None:
        return f"{case.request.received.isoformat()}T00:00:00Z"
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    return at.isoformat().replace("+00:00", "Z")


def _created(case: Case) -> str:
    """Claim.created (a dateTime): the date received, with its time when one was given."""
    return _instant(case) if case.request.received_at is not None else case.request.received.isoformat()


_HCPCS_FORM = re.compile(r"^[A-Z]\d{4}$")
_RXCUI_FORM = re.compile(r"^\d{3,8}$")


def _drug_concept(name: str) -> dict[str, Any]:
    """A medication CodeableConcept: the name as given in `text`, with its RxNorm code (whose display is the
    generic name, or the formulation's name when the name given names one) when the value sets know one. A billing
    code (HCPCS) goes on the Claim item, not here, unless the case itself names the drug by one."""
    raw = name.strip()
    term = load_terminology()
    drug = term.drug(raw)
    concept: dict[str, Any] = {}
    if drug is not None:
        if _HCPCS_FORM.match(raw.upper()):
            concept["coding"] = [{"system": HCPCS, "code": raw.upper()}]
        elif _RXCUI_FORM.match(raw):
            concept["coding"] = [{"system": RXNORM, "code": raw, "display": drug.generic}]
        else:
            codes = term.drug_codes(raw)
            if codes is not None and codes.rxnorm:
                concept["coding"] = [{"system": RXNORM, "code": codes.rxnorm[0], "display": codes.display}]
    concept["text"] = raw
    return concept


def _product_concept(name: str) -> dict[str, Any]:
    """Claim.item.productOrService: the product's HCPCS code when there is one, its name always."""
    raw = name.strip()
    term = load_terminology()
    drug = term.drug(raw)
    out: dict[str, Any] = {}
    if drug is not None:
        if _HCPCS_FORM.match(raw.upper()):
            hcpcs: tuple[str, ...] = (raw.upper(),)
        else:
            codes = term.drug_codes(raw)
            hcpcs = codes.hcpcs if codes is not None else ()
        if hcpcs:
            out["coding"] = [{"system": HCPCS, "code": hcpcs[0]}]
    out["text"] = raw
    return out


def _ref(full_url: str) -> dict[str, str]:
    return {"reference": full_url}


class _Writer:
    """Collects the entries of one bundle, each with a deterministic id and fullUrl."""

    def __init__(self, case: Case):
        self.case = case
        self.entries: list[dict[str, Any]] = []
        self.urls: dict[str, str] = {}

    def url(self, rtype: str, rid: str) -> str:
        key = f"{rtype}/{rid}"
        if key not in self.urls:
            self.urls[key] = f"urn:uuid:{uuid.uuid5(_NAMESPACE, f'{self.case.id}|{key}')}"
        return self.urls[key]

    def add(self, resource: dict[str, Any]) -> str:
        full_url = self.url(resource["resourceType"], resource["id"])
        self.entries.append({"fullUrl": full_url, "resource": resource})
        return full_url


def _fhir_id(text: str | None, fallback: str) -> str:
    if text and re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", text):
        return text
    return fallback


# ---- the bundle ------------------------------------------------------------------------------------------------
def bundle_from_case(case: Case, *, bundle_id: str | None = None) -> dict:
    """The PAS request Bundle (``type`` collection, the Claim first) that carries ``case``'s facts."""
    w = _Writer(case)
    req, member, term = case.request, case.member, load_terminology()
    received = req.received.isoformat()
    patient_url = w.url("Patient", "patient")
    subject = _ref(patient_url)

    # the Claim is entry[0]; the other resources follow in the order they are written
    claim: dict[str, Any] = {"resourceType": "Claim", "id": "claim", "meta": {"profile": [PAS_CLAIM]}}
    w.add(claim)

    # ---- Patient, insurer, Coverage
    patient: dict[str, Any] = {"resourceType": "Patient", "id": "patient"}
    if member.id:
        patient["identifier"] = [{"value": member.id}]
    if member.birth_date:
        patient["birthDate"] = member.birth_date.isoformat()
    if member.state:
        patient["address"] = [{"state": member.state}]
    w.add(patient)

    lob = term.line_of_business(member.line_of_business)
    insurer_url = w.add({
        "resourceType": "Organization", "id": "insurer", "active": True,
        "type": [{"coding": [{"system": _ORGANIZATION_TYPE, "code": "pay", "display": "Payer"}]}],
        "name": "Health plan",
    })
    coverage: dict[str, Any] = {"resourceType": "Coverage", "id": "coverage", "status": "active"}
    if lob is not None:           # a case without one writes a Coverage without a type, as such requests come
        coverage_type: dict[str, Any] = {"coding": [{"system": CS_LINE_OF_BUSINESS, "code": lob}]}
        if lob in _SOPT:
            code, display = _SOPT[lob]
            coverage_type["coding"].append({"system": SOPT, "code": code, "display": display})
        coverage_type["text"] = member.line_of_business
        coverage["type"] = coverage_type
    if member.id:
        coverage["subscriberId"] = member.id
    coverage["beneficiary"] = subject
    coverage["payor"] = [_ref(insurer_url)]
    coverage_url = w.add(coverage)

    # ---- prescriber (Practitioner + PractitionerRole) and the consultation
    provider_url: str
    presc = case.prescriber
    if presc is not None and (presc.npi or presc.taxonomy or presc.specialty):
        role: dict[str, Any] = {"resourceType": "PractitionerRole", "id": "prescriber-role", "active": True}
        if presc.npi:
            practitioner_url = w.add({"resourceType": "Practitioner", "id": "prescriber",
                                      "identifier": [{"system": NPI, "value": presc.npi}]})
            role["practitioner"] = _ref(practitioner_url)
        if presc.taxonomy:
            role["code"] = [{"coding": [{"system": NUCC, "code": presc.taxonomy}]}]
        if presc.specialty:
            role["specialty"] = [{"text": presc.specialty}]
        provider_url = w.add(role)
    else:
        # a PAS Claim needs a provider: the requesting organization, which says nothing of the prescriber
        provider_url = w.add({"resourceType": "Organization", "id": "requestor", "active": True,
                              "name": "Requesting provider"})
    consult = presc.consultation if presc is not None else None
    if consult is not None:
        crole: dict[str, Any] = {"resourceType": "PractitionerRole", "id": "consultant-role", "active": True}
        if consult.taxonomy:
            crole["code"] = [{"coding": [{"system": NUCC, "code": consult.taxonomy}]}]
        if consult.specialty:
            crole["specialty"] = [{"text": consult.specialty}]
        crole_url = w.add(crole)
        encounter: dict[str, Any] = {
            "resourceType": "Encounter", "id": "consultation", "status": "finished",
            "class": {"system": _ACT_CODE, "code": "AMB", "display": "ambulatory"},
            "type": [{"coding": [{"system": SNOMED, "code": SNOMED_CONSULTATION, "display": "Consultation"}]}],
            "subject": subject,
            "participant": [{"individual": _ref(crole_url)}],
        }
        if consult.date:
            encounter["period"] = {"start": consult.date.isoformat()}
        w.add(encounter)

    # ---- the requested items: the product, tocilizumab, and products requested alongside
    items: list[dict[str, Any]] = []
    cert = KIND_CERTIFICATION[req.kind]
    cert_ext = {"url": EXT_CERTIFICATION_TYPE, "valueCodeableConcept": {"coding": [
        {"system": X12_CERTIFICATION_TYPE, "code": cert, "display": _CERTIFICATION_DISPLAY[cert]}]}}
    requester = {"requester": _ref(provider_url)} if presc is not None else {}

    def medication_request(rid: str, name: str, dose: dict[str, Any] | None, text: str | None,
                           ceiling: dict[str, Any] | None = None) -> str:
        mr: dict[str, Any] = {"resourceType": "MedicationRequest", "id": rid, "status": "active", "intent": "order",
                              "medicationCodeableConcept": _drug_concept(name), "subject": subject,
                              "authoredOn": received, **requester}
        if dose is not None or text:
            dosage: dict[str, Any] = {"sequence": 1}
            if text:
                dosage["text"] = text
            if dose is not None:
                dosage["doseAndRate"] = [{"doseQuantity": dose}]
            if ceiling is not None:
                dosage["maxDosePerAdministration"] = ceiling
            mr["dosageInstruction"] = [dosage]
        return w.add(mr)

    def item(name: str, mr_url: str, quantity: int) -> dict[str, Any]:
        it: dict[str, Any] = {
            "extension": [cert_ext, {"url": EXT_REQUESTED_SERVICE, "valueReference": _ref(mr_url)}],
            "sequence": len(items) + 1,
        }
        if req.diagnoses:
            it["diagnosisSequence"] = list(range(1, len(req.diagnoses) + 1))
        it["productOrService"] = _product_concept(name)
        it["quantity"] = {"value": quantity}
        items.append(it)
        return it

    product_url = medication_request("request-product", req.drug, _q(req.dose) if req.dose else None, None)
    item(req.drug, product_url, 1)
    if req.tocilizumab is not None:
        t = req.tocilizumab
        toci_url = medication_request("request-tocilizumab", "tocilizumab", _q(t.dose),
                                      f"Up to {t.doses} doses for cytokine release syndrome",
                                      _q(t.max_per_dose) if t.max_per_dose is not None else None)
        toci = item("tocilizumab", toci_url, t.doses)
        # HCPCS J3262 names the item whatever the value sets say
        toci["productOrService"] = {"coding": [{"system": HCPCS, "code": "J3262"}], "text": "tocilizumab"}
    for i, name in enumerate(req.concurrent, 1):
        item(name, medication_request(f"request-concurrent-{i}", name, None, None), 1)

    # ---- labs and body weight
    for i, lab in enumerate(case.labs or (), 1):
        w.add(_lab_observation(lab, f"lab-{i}", subject))
    if member.weight is not None:
        w.add({
            "resourceType": "Observation", "id": "body-weight", "status": "final",
            "category": [{"coding": [{"system": _OBSERVATION_CATEGORY, "code": "vital-signs",
                                      "display": "Vital Signs"}]}],
            "code": {"coding": [{"system": LOINC, "code": LOINC_BODY_WEIGHT, "display": "Body weight"}],
                     "text": "Body weight"},
            "subject": subject, "effectiveDateTime": received, "valueQuantity": _q(member.weight),
        })

    # ---- treatment history
    if case.therapies is not None:
        if not case.therapies:
            w.add(_empty_list("medication-history", LOINC_MEDICATION_HISTORY, "History of Medication use Narrative",
                              subject, received))
        for i, therapy in enumerate(case.therapies, 1):
            if isinstance(therapy, Procedure):
                w.add(_procedure(therapy, f"therapy-{i}", subject))
            else:
                for resource in _medication_statements(therapy, f"therapy-{i}", subject):
                    w.add(resource)

    # ---- disease assessments
    for i, a in enumerate(case.assessments or (), 1):
        w.add(_assessment(a, i, subject))

    # ---- medical history
    if case.history is not None:
        if not case.history:
            w.add(_empty_list("past-illness", LOINC_PAST_ILLNESS, "History of Past illness Narrative", subject,
                              received))
        for i, h in enumerate(case.history, 1):
            cond: dict[str, Any] = {"resourceType": "Condition", "id": f"history-{i}"}
            if h.status:
                cond["clinicalStatus"] = {"coding": [{"system": CONDITION_CLINICAL, "code": h.status}]}
                cond["category"] = [{"coding": [{"system": _CONDITION_CATEGORY, "code": "problem-list-item",
                                                 "display": "Problem List Item"}]}]
            code: dict[str, Any] = {}
            if h.code:
                code["coding"] = [{"system": ICD10CM, "code": h.code}]
            if h.text:
                code["text"] = h.text
            cond["code"] = code
            cond["subject"] = subject
            if h.onset:
                cond["onsetDateTime"] = h.onset.isoformat()
            w.add(cond)

    # ---- attestations (a DTR QuestionnaireResponse) and documents, both attached to the Claim
    supporting: list[dict[str, Any]] = []
    qr = _questionnaire_response(case, subject, _ref(provider_url) if presc is not None else None)
    if qr is not None:
        supporting.append(_ref(w.add(qr)))
    doc_ids: set[str] = set()
    for i, doc in enumerate(case.documents, 1):
        dr = _document_reference(doc, i, subject)
        if dr["id"] in doc_ids:
            dr["id"] = f"document-{i}"
        doc_ids.add(dr["id"])
        supporting.append(_ref(w.add(dr)))

    # ---- the Claim itself
    claim.update({
        "identifier": [{"value": case.id}],
        "status": "active",
        "type": {"coding": [{"system": CLAIM_TYPE, "code": "institutional", "display": "Institutional"}]},
        "use": "preauthorization",
        "patient": subject,
        "created": _created(case),
        "insurer": _ref(insurer_url),
        "provider": _ref(provider_url),
        "priority": {"coding": [{"system": PROCESS_PRIORITY,
                                 "code": "stat" if req.urgency == "expedited" else "normal"}]},
    })
    if supporting:
        claim["supportingInfo"] = [
            {"sequence": i,
             "category": {"coding": [{"system": PAS_SUPPORTING_INFO_TYPE, "code": "additionalInformation"}]},
             "valueReference": ref}
            for i, ref in enumerate(supporting, 1)
        ]
    if req.diagnoses:
        claim["diagnosis"] = [
            {"sequence": i, "diagnosisCodeableConcept": {"coding": [{"system": ICD10CM, "code": code}]}}
            for i, code in enumerate(req.diagnoses, 1)
        ]
    claim["insurance"] = [{"sequence": 1, "focal": True, "coverage": _ref(coverage_url)}]
    claim["item"] = items

    return {
        "resourceType": "Bundle",
        "id": bundle_id or str(uuid.uuid5(_NAMESPACE, case.id)),
        "meta": {"profile": [PAS_REQUEST_BUNDLE]},
        "identifier": {"value": case.id},
        "type": "collection",
        "timestamp": _instant(case),
        "entry": w.entries,
    }


def _lab_observation(lab: Lab, rid: str, subject: dict) -> dict[str, Any]:
    term = load_terminology()
    codings: list[dict[str, Any]] = []
    spec = term.lab_tests.get(lab.test) if lab.test else None
    loinc = lab.loinc
    if loinc is None and spec is not None:
        usable = [c["code"] for c in spec.get("loinc", ()) if c.get("status") != "unverified"]
        loinc = usable[0] if usable else None
    if loinc:
        codings.append({"system": LOINC, "code": loinc})
    if lab.test:
        codings.append({"system": CS_LAB_TEST, "code": lab.test})
    code: dict[str, Any] = {"coding": codings}
    if spec is not None:
        code["text"] = spec["label"]
    obs: dict[str, Any] = {
        "resourceType": "Observation", "id": rid, "status": "final",
        "category": [{"coding": [{"system": _OBSERVATION_CATEGORY, "code": "laboratory", "display": "Laboratory"}]}],
        "code": code, "subject": subject, "effectiveDateTime": lab.date.isoformat(),
        "valueQuantity": _quantity(lab.value, lab.unit),
    }
    if lab.flag:
        c, d = _INTERPRETATION[lab.flag]
        obs["interpretation"] = [{"coding": [{"system": INTERPRETATION, "code": c, "display": d}]}]
    if lab.reference_range is not None:
        low, high = lab.reference_range
        obs["referenceRange"] = [{"low": _quantity(low, lab.unit), "high": _quantity(high, lab.unit)}]
    return obs


def _line_extension(line: int | None) -> list[dict[str, Any]]:
    return [{"url": EXT_LINE_OF_THERAPY, "valueInteger": line}] if line is not None else []


def _medication_statements(r: Regimen, rid: str, subject: dict) -> list[dict[str, Any]]:
    """One MedicationStatement per drug (or one for a regimen acronym) over the entry's period, with its intent,
    line, stop reason and trial flag; a drug given by administration dates, one MedicationAdministration per dose.
    The reader gives each resource back as one entry, and the clinical layer assembles them into regimens."""
    names = r.names
    period = {"start": r.start.isoformat()}
    if r.end is not None:
        period["end"] = r.end.isoformat()
    ext = _line_extension(r.line) + ([{"url": EXT_CLINICAL_TRIAL, "valueBoolean": True}] if r.trial else [])
    out = []
    dates = r.doses if r.doses is not None else [None]
    for j, (name, day) in enumerate(((n, d) for n in names for d in dates), 1):
        many = len(names) * len(dates) > 1
        kind = "MedicationAdministration" if day is not None else "MedicationStatement"
        ms: dict[str, Any] = {"resourceType": kind, "id": f"{rid}-{j}" if many else rid}
        if ext:
            ms["extension"] = ext
        ms["status"] = "completed" if r.end is not None or r.stop_reason or day is not None else "active"
        if r.stop_reason and (day is None or day == dates[-1]):
            ms["statusReason"] = [{"coding": [{"system": CS_STOP_REASON, "code": r.stop_reason}]}]
        if r.intent:
            ms["category"] = {"coding": [{"system": CS_THERAPY_INTENT, "code": r.intent}]}
        ms["medicationCodeableConcept"] = ({"text": name.strip()} if r.regimen is not None else _drug_concept(name))
        ms["subject"] = subject
        if day is not None:
            ms["effectiveDateTime"] = day.isoformat()
        else:
            ms["effectivePeriod"] = period
        out.append(ms)
    return out


def _procedure(p: Procedure, rid: str, subject: dict) -> dict[str, Any]:
    proc: dict[str, Any] = {"resourceType": "Procedure", "id": rid}
    ext = _line_extension(p.line)
    if ext:
        proc["extension"] = ext
    proc.update({
        "status": "completed",
        "code": {"coding": [{"system": CPT, "code": _PROCEDURE_CPT[p.procedure]}],
                 "text": _PROCEDURE_TEXT[p.procedure]},
        "subject": subject,
        "performedDateTime": p.date.isoformat(),
    })
    return proc


def _assessment(a, i: int, subject: dict) -> dict[str, Any]:
    obs: dict[str, Any] = {"resourceType": "Observation", "id": f"assessment-{i}", "status": "final"}
    if a.response is not None:
        obs["category"] = [{"coding": [{"system": _OBSERVATION_CATEGORY, "code": "exam", "display": "Exam"}]}]
        obs["code"] = {"coding": [{"system": LOINC, "code": LOINC_DISEASE_STATUS, "display": "Cancer disease status"}]}
        value = {"coding": [{"system": CS_IMWG_RESPONSE, "code": a.response, "display": _RESPONSE_DISPLAY[a.response]}]}
    else:
        obs["category"] = [{"coding": [{"system": _OBSERVATION_CATEGORY, "code": "imaging", "display": "Imaging"}]}]
        obs["code"] = {"coding": [{"system": CS_IMAGING_FINDING, "code": "imaging-finding"}], "text": "Imaging finding"}
        value = {"coding": [{"system": CS_IMAGING_FINDING, "code": a.finding}]}
    obs["subject"] = subject
    obs["effectiveDateTime"] = a.date.isoformat()
    obs["valueCodeableConcept"] = value
    if a.text:
        obs["note"] = [{"text": a.text}]
    return obs


def _empty_list(rid: str, loinc: str, display: str, subject: dict, when: str) -> dict[str, Any]:
    return {
        "resourceType": "List", "id": rid, "status": "current", "mode": "snapshot",
        "code": {"coding": [{"system": LOINC, "code": loinc, "display": display}]},
        "subject": subject, "date": when,
        "emptyReason": {"coding": [{"system": _LIST_EMPTY_REASON, "code": "nilknown", "display": "Nil Known"}]},
    }


@lru_cache(maxsize=1)
def _attestation_links() -> tuple[tuple[str, str], ...]:
    """(attestation, linkId) in the policy's order: each question is ``<criterion id>.<fact>``, named after the
    criterion of the initial-request section that reads it, as the DTR questionnaire names it."""
    policy = default_policy()
    links: dict[str, str] = {}
    for node in policy.roots[policy.doc.sections.initial].walk():
        check = node.check.name if node.check is not None else None
        if check == "prior_lines":
            links.setdefault("prior_lines", f"{node.id}.prior_lines")
            links.setdefault("prior_classes", f"{node.id}.prior_classes")
        elif check == "no_cns_pathology":
            links.setdefault("no_cns_pathology", f"{node.id}.no_cns_pathology")
        elif check == "no_prior_class" and getattr(node.params, "attestation", None):
            links.setdefault(node.params.attestation, f"{node.id}.{node.params.attestation}")
    return tuple(links.items())


def _questionnaire_response(case: Case, subject: dict, author: dict | None) -> dict[str, Any] | None:
    att = case.attestations
    if att is None:
        return None
    links = dict(_attestation_links())
    missing = [name for name in _ATTESTATION_TEXT if name not in links and getattr(att, name) is not None]
    if missing:
        raise ValueError(f"the policy has no question for the attestations {', '.join(missing)}")
    items = []
    for name, link in _attestation_links():
        value = getattr(att, name, None)
        if value is None:
            continue
        if name == "prior_lines":
            answers = [{"valueInteger": value}]
        elif name == "prior_classes":
            answers = [{"valueCoding": {"system": CS_DRUG_CLASS, "code": c}} for c in value]
        else:
            answers = [{"valueBoolean": value}]
        if answers:  # an empty list of classes has no answer to give
            items.append({"linkId": link, "text": _ATTESTATION_TEXT.get(name, name), "answer": answers})
    if not items:
        return None
    qr: dict[str, Any] = {"resourceType": "QuestionnaireResponse", "id": "attestations",
                          "meta": {"profile": [DTR_QUESTIONNAIRE_RESPONSE]},
                          "questionnaire": questionnaire_canonical(default_policy()), "status": "completed",
                          "subject": subject, "authored": _created(case)}
    if author is not None:
        qr["author"] = author
    qr["item"] = items
    return qr


def _document_reference(doc, i: int, subject: dict) -> dict[str, Any]:
    dr: dict[str, Any] = {"resourceType": "DocumentReference", "id": _fhir_id(doc.id, f"document-{i}"),
                          "status": "current"}
    if doc.title:
        dr["type"] = {"text": doc.title}
    dr["subject"] = subject
    if doc.date:
        dr["date"] = f"{doc.date.isoformat()}T00:00:00Z"
    attachment: dict[str, Any] = {}
    if doc.content_type:
        attachment["contentType"] = doc.content_type
    if doc.url:
        attachment["url"] = doc.url
    if doc.size is not None:
        attachment["size"] = doc.size
    if doc.title:
        attachment["title"] = doc.title
    dr["content"] = [{"attachment": attachment}]
    return dr
