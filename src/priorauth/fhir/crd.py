"""CRD: coverage information for a CDS Hooks ``order-sign`` (or ``order-select``) request.

For each draft MedicationRequest for the policy's product, the response carries a system action of type
``update`` whose resource is that order with the Da Vinci CRD ``coverage-information`` extension: the
Coverage it applies to, ``covered`` conditional, ``pa-needed`` auth-needed, ``doc-needed`` clinical, the DTR
questionnaire's canonical, the assertion date and a ``coverage-assertion-id`` derived from the request (the
same request gives the same id), with a ``detail`` and a ``reason`` saying the policy's review body decides.
Coverage information is never a card (CRD), so ``cards`` is empty. Orders for other drugs get no action.
"""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import date
from typing import Any

from priorauth.config import PayerConfig
from priorauth.fhir import codes
from priorauth.fhir.codes import CRD_COVERAGE_INFORMATION, CRD_TEMP, CS_LINE_OF_BUSINESS, HCPCS, RXNORM
from priorauth.fhir.dtr import questionnaire_canonical
from priorauth.fhir.validate import require_valid, validate_resource
from priorauth.policies import Policy
from priorauth.terminology import Drug, Terminology, load_terminology

__all__ = ["coverage_information", "SUPPORTED_HOOKS", "CS_COVERAGE_REASON"]

SUPPORTED_HOOKS = ("order-sign", "order-select")
#: priorauth's reason codes for a coverage assertion (CRD's value set is extensible). TODO(lead): codes.py
CS_COVERAGE_REASON = codes.CS_COVERAGE_REASON


def _fail(message: str) -> ValueError:
    return ValueError(f"CDS Hooks request: {message}")


# ---- reading the hook -------------------------------------------------------------------------------------------
def _draft_orders(hook: Any) -> dict:
    if not isinstance(hook, dict):
        raise _fail("not a JSON object")
    name = hook.get("hook")
    if name is not None and name not in SUPPORTED_HOOKS:
        raise _fail(f"hook {name!r} is not supported; coverage information answers {' or '.join(SUPPORTED_HOOKS)}")
    context = hook.get("context")
    if not isinstance(context, dict):
        raise _fail("no `context` object")
    orders = context.get("draftOrders")
    if orders is None:
        raise _fail("`context.draftOrders` is missing; order-sign sends the draft orders as a FHIR Bundle")
    if not isinstance(orders, dict) or orders.get("resourceType") != "Bundle":
        raise _fail("`context.draftOrders` is not a FHIR Bundle")
    entries = orders.get("entry", [])
    if not isinstance(entries, list):
        raise _fail("`context.draftOrders.entry` is not a list")
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or not isinstance(e.get("resource"), dict):
            raise _fail(f"`context.draftOrders.entry[{i}]` holds no resource")
    return orders


def _resources(value: Any):
    """Resources in a prefetch or context value: a resource, or a Bundle's entries."""
    if isinstance(value, dict):
        if value.get("resourceType") == "Bundle":
            for e in value.get("entry") or ():
                if isinstance(e, dict) and isinstance(e.get("resource"), dict):
                    yield e.get("fullUrl"), e["resource"]
        elif "resourceType" in value:
            yield None, value


def _reference(full_url: str | None, res: dict) -> str | None:
    if res.get("id"):
        return f"{res['resourceType']}/{res['id']}"
    return full_url


def _find(orders: dict, ref: str) -> dict | None:
    for e in orders.get("entry", []):
        res = e["resource"]
        if e.get("fullUrl") == ref or _reference(None, res) == ref:
            return res
        if ref.endswith("/" + f"{res.get('resourceType')}/{res.get('id')}"):
            return res
    return None


def _coverage(hook: dict, orders: dict, order: dict) -> tuple[dict, dict | None]:
    """The Coverage reference for the assertion, and the Coverage resource when the request holds it."""
    found: list[tuple[str | None, dict]] = []
    for value in (hook.get("prefetch") or {}).values():
        found += [(u, r) for u, r in _resources(value) if r.get("resourceType") == "Coverage"]
    found += [(e.get("fullUrl"), e["resource"]) for e in orders.get("entry", [])
              if e["resource"].get("resourceType") == "Coverage"]
    found.sort(key=lambda x: x[1].get("status") != "active")  # active coverage first (stable)
    for url, res in found:
        ref = _reference(url, res)
        if ref:
            return {"reference": ref}, res
    for ins in order.get("insurance") or ():
        ref = ins.get("reference") if isinstance(ins, dict) else None
        if not isinstance(ref, str):
            continue
        res = _find(orders, ref)
        if (res or {}).get("resourceType") == "Coverage" or ref.split("/")[-2:-1] == ["Coverage"]:
            return {"reference": ref}, res
    return {"type": "Coverage", "display": "the member's coverage (not supplied in the hook request)"}, None


def _medication_names(order: dict, orders: dict) -> list[str]:
    concept = order.get("medicationCodeableConcept")
    ref = (order.get("medicationReference") or {}).get("reference")
    if concept is None and ref:
        if ref.startswith("#"):
            med = next((c for c in order.get("contained") or () if c.get("id") == ref[1:]), None)
        else:
            med = _find(orders, ref)
        concept = (med or {}).get("code")
    if not isinstance(concept, dict):
        return []
    names: list[str] = []
    for c in concept.get("coding") or ():
        if not isinstance(c, dict):
            continue
        if c.get("code") and c.get("system") in (RXNORM, HCPCS):
            names.append(str(c["code"]))
        if c.get("display"):
            names.append(str(c["display"]))
    if concept.get("text"):
        names.append(str(concept["text"]))
    return names


def _is_product(order: dict, orders: dict, product: Drug, term: Terminology) -> bool:
    return any(term.drug(name) == product for name in _medication_names(order, orders))


def _line_of_business(coverage: dict | None, config: PayerConfig | None, term: Terminology) -> str | None:
    if coverage is None:
        return None
    member = coverage.get("subscriberId")
    if config is not None and member and member in config.member_eligibility:
        return term.line_of_business(config.member_eligibility[member])
    for c in (coverage.get("type") or {}).get("coding") or ():
        if c.get("system") == CS_LINE_OF_BUSINESS and c.get("code"):
            return term.line_of_business(c["code"])
    return None


# ---- the extension ----------------------------------------------------------------------------------------------
def _assertion_id(policy: Policy, hook: dict, order_ref: str, coverage: dict) -> str:
    key = json.dumps([policy.id, policy.version, hook.get("hookInstance"), order_ref, coverage], sort_keys=True)
    return "priorauth-" + hashlib.sha256(key.encode()).hexdigest()[:24]


def _assertion_date(order: dict, as_of: date | None) -> str:
    if as_of is not None:
        return as_of.isoformat()
    authored = str(order.get("authoredOn") or "")
    if len(authored) >= 10:
        try:
            return date.fromisoformat(authored[:10]).isoformat()
        except ValueError:
            pass
    return date.today().isoformat()


def _extension(policy: Policy, coverage: dict, when: str, assertion_id: str) -> dict:
    doc = policy.doc
    review = f"{doc.review.name} ({doc.review.body})"
    instructions = (f"{doc.id} ({doc.product.name}): prior authorization is required and every request is decided "
                    f"by the {review}. Complete the questionnaire {questionnaire_canonical(policy)} (DTR) and submit it "
                    "with the prior authorization request and the documentation it asks for.")
    return {
        "url": CRD_COVERAGE_INFORMATION,
        "extension": [
            {"url": "coverage", "valueReference": coverage},
            {"url": "covered", "valueCode": "conditional"},
            {"url": "pa-needed", "valueCode": "auth-needed"},
            {"url": "doc-needed", "valueCode": "clinical"},
            {"url": "reason", "valueCodeableConcept": {
                "coding": [{"system": CS_COVERAGE_REASON, "code": "committee-review",
                            "display": f"The policy requires review by the {review}"}],
                "text": f"{doc.id} requires {doc.review.body} review"}},
            {"url": "detail", "extension": [
                {"url": "code", "valueCodeableConcept": {"coding": [{"system": CRD_TEMP, "code": "instructions-clinical",
                                                                     "display": "Clinical instructions"}]}},
                {"url": "value", "valueString": instructions}]},
            {"url": "questionnaire", "valueCanonical": questionnaire_canonical(policy)},
            {"url": "date", "valueDate": when},
            {"url": "coverage-assertion-id", "valueString": assertion_id},
        ],
    }


def _assertion_ids(order: dict) -> set[str]:
    out = set()
    for ext in order.get("extension") or ():
        if isinstance(ext, dict) and ext.get("url") == CRD_COVERAGE_INFORMATION:
            for sub in ext.get("extension") or ():
                if sub.get("url") == "coverage-assertion-id":
                    out.add(sub.get("valueString"))
    return out


def coverage_information(hook_request: dict, policy: Policy, *, config: PayerConfig | None = None,
                         terminology: Terminology | None = None, as_of: date | None = None) -> dict:
    """The CDS Hooks response to an order-sign request: ``cards`` empty, one ``update`` system action per draft
    MedicationRequest for the policy's product. ValueError names what is malformed in the request.

    The assertion date is ``as_of``, else the order's ``authoredOn``, else today. A member whose line of
    business (payer eligibility, else the Coverage's priorauth line-of-business coding) is not one the policy
    covers gets no action from this policy."""
    term = terminology or load_terminology()
    orders = _draft_orders(hook_request)
    product = term.drug(policy.doc.product.name)
    if product is None:
        raise ValueError(f"{policy.id}: the product {policy.doc.product.name!r} is not in the terminology")
    actions = []
    for i, entry in enumerate(orders.get("entry", [])):
        order = entry["resource"]
        if order.get("resourceType") != "MedicationRequest" or not _is_product(order, orders, product, term):
            continue
        problems = validate_resource(order, f"context.draftOrders.entry[{i}].resource")
        if problems:
            raise _fail("the draft MedicationRequest is not valid FHIR R4: "
                        + "; ".join(f"{path}: {msg}" for path, msg in problems))
        coverage, coverage_res = _coverage(hook_request, orders, order)
        lob = _line_of_business(coverage_res, config, term)
        if lob is not None and lob not in policy.doc.lines_of_business:
            continue
        order_ref = _reference(entry.get("fullUrl"), order) or f"entry[{i}]"
        assertion_id = _assertion_id(policy, hook_request, order_ref, coverage)
        if assertion_id in _assertion_ids(order):
            continue  # CRD: no update unless something is new
        updated = copy.deepcopy(order)
        updated.setdefault("extension", []).append(
            _extension(policy, coverage, _assertion_date(order, as_of), assertion_id))
        require_valid(updated)
        actions.append({
            "type": "update",
            "description": (f"Coverage information: {policy.doc.product.name} needs prior authorization under "
                            f"{policy.id} ({policy.doc.review.body} review); clinical documentation via DTR"),
            "resource": updated,
        })
    return {"cards": [], "systemActions": actions}
