"""Determination: route the request, evaluate the policy, and recommend an outcome with its reasons.

Routing, in order: the product, the line of business, the policy's effective date (each failing gives
``not_applicable``), then the diagnosis (multiple myeloma to I.A / II.A, anything else to the referral
sections I.B / II.B). The outcome takes the first that applies of not_applicable, refer_to_policy,
does_not_meet_criteria, needs_information, meets_criteria. Every outcome is a recommendation: the policy
sends each request to the named committee and no denial is final without a clinician.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from priorauth.case import Case
from priorauth.clinical.dates import add_months
from priorauth.clinical.units import UnitError, factor
from priorauth.config import PayerConfig
from priorauth.engine.evaluate import evaluate_node
from priorauth.engine.facts import Facts
from priorauth.engine.results import MET, NOT_MET, UNKNOWN, Evidence, NodeResult
from priorauth.policies import Policy
from priorauth.terminology import Terminology, load_terminology

__all__ = ["Determination", "determine", "review_due", "OUTCOMES"]

OUTCOMES = ("meets_criteria", "does_not_meet_criteria", "needs_information", "refer_to_policy", "not_applicable")
_DEFAULT_CONFIG = PayerConfig()


@dataclass
class Determination:
    case_id: str
    title: str | None
    policy: Policy
    as_of: date
    outcome: str
    summary: str
    reasons: list[str]
    scope: list[NodeResult]
    criteria: list[NodeResult]
    refer_to: str | None
    missing: list[dict[str, str]]
    authorization: dict[str, Any] | None
    review: dict[str, Any]
    due: datetime | None
    data_problems: list[str] = field(default_factory=list)
    received: date | None = None          # the date the request was received (the evaluation date by default)
    # set by the service: the instant the plan received the request (it decides the evaluation date), and the
    # date the sender wrote on it (Bundle.timestamp or Claim.created), reported beside it and never used
    receipt: datetime | None = None
    sent: date | None = None

    def node(self, node_id: str) -> NodeResult | None:
        for root in self.scope + self.criteria:
            found = root.find(node_id)
            if found is not None:
                return found
        return None


def _resolve_context(case: Case, config: PayerConfig, policy: Policy) -> dict[str, Any]:
    ctx = case.context
    given = ctx.model_fields_set
    src = str(ctx.source.file or "") + "#context." if ctx.source else "context."
    effective = ctx.policy_effective if "policy_effective" in given else (config.policy_effective or policy.doc.effective_date)
    formulary = dict(config.formulary)
    if "formulary" in given and ctx.formulary is not None:
        formulary.update({k.lower(): v for k, v in ctx.formulary.items()})
    flag = ctx.label_change_within_6_months if "label_change_within_6_months" in given and ctx.label_change_within_6_months is not None else config.label_change_within_6_months
    return {
        "policy_effective": effective,
        "formulary": formulary,
        "label_change_within_6_months": flag,
        "provider_directory": config.provider_directory,
        "_sources": {
            "policy_effective": f"{src}policy_effective" if "policy_effective" in given else "payer configuration",
            "formulary": f"{src}formulary" if "formulary" in given else "payer configuration",
            "label_change_within_6_months": f"{src}label_change_within_6_months" if "label_change_within_6_months" in given else "payer configuration",
        },
    }


def _scope_node(node_id: str, label: str, status: str, reason: str, evidence=()) -> NodeResult:
    return NodeResult(node_id, label, "scope", status, reason, tuple(evidence))


def review_due(received: datetime, urgency: str, lob: str | None, policy: Policy, config: PayerConfig) -> datetime:
    """When the decision is due: the payer's clock for the line of business and urgency, else the policy's
    (its default clock when the line of business is not given)."""
    hours = (config.clocks.get(lob, {}).get(urgency)
             or policy.clock_hours.get(lob, {}).get(urgency)
             or policy.clock_hours["*"][urgency])
    return received + timedelta(hours=hours)


def _due(case: Case, policy: Policy, config: PayerConfig, lob: str | None) -> datetime:
    return review_due(case.request.received_datetime(), case.request.urgency, lob, policy, config)


def _review(policy: Policy, outcome: str) -> dict[str, Any]:
    r = policy.doc.review
    if outcome == "not_applicable":
        statement = (f"The request is outside {policy.id}; a reviewer routes it under the plan's applicable policy. "
                     "priorauth recommends, and no denial is final without a clinician's decision.")
        return {"required": True, "body": None, "name": None, "process": None, "statement": statement}
    statement = (f"Recommendation only. {policy.id} requires {r.name} ({r.body}) review of every request"
                 f"{' (' + r.process + ')' if r.process else ''}; no denial is final without a clinician's decision.")
    return {"required": True, "body": r.body, "name": r.name, "process": r.process, "statement": statement}


def _number(x: float) -> float | int:
    return int(x) if float(x).is_integer() else round(x, 3)


def _tocilizumab_mg(case: Case) -> tuple[float | None, str | None]:
    """The requested tocilizumab dose in mg (a per-kg dose times the member's weight)."""
    dose = case.request.tocilizumab.dose
    try:
        return dose.value * factor(dose.unit, "mg"), None
    except UnitError:
        pass
    ceiling = case.request.tocilizumab.max_per_dose
    weight = case.member.weight
    if ceiling is not None:      # a per-kg order with its own ceiling asks for up to that ceiling per dose
        mg = ceiling.value * factor(ceiling.unit, "mg")
        at = ""
        if weight is not None:
            kg = weight.value * factor(weight.unit, "kg")
            at = f" ({_number(dose.value * factor(dose.unit, 'mg/kg') * kg):g} mg at {kg:g} kg)"
        return mg, f"{dose.value:g} {dose.unit}{at}, up to {_number(mg):g} mg per dose as ordered"
    if weight is None:
        return None, f"dose {dose.value:g} {dose.unit} with no weight on record: authorized up to the cap per dose"
    kg = weight.value * factor(weight.unit, "kg")
    mg = dose.value * factor(dose.unit, "mg/kg") * kg
    return mg, f"{dose.value:g} {dose.unit} x {kg:g} kg = {_number(mg):g} mg"


def _authorization(case: Case, policy: Policy, as_of: date) -> dict[str, Any]:
    a = policy.doc.authorization
    auth: dict[str, Any] = {
        "product": a.product,
        "doses": a.doses,
        "max_cells": policy.max_cells,
        "valid_from": as_of.isoformat(),
        "valid_to": add_months(as_of, a.duration_months).isoformat(),
        "tocilizumab": None,
    }
    toci = case.request.tocilizumab
    if toci is not None and a.tocilizumab is not None:
        cap_mg = a.tocilizumab.max_dose.to("mg")
        asked_mg, note = _tocilizumab_mg(case)
        doses = min(toci.doses, a.tocilizumab.max_doses)
        mg = cap_mg if asked_mg is None else min(asked_mg, cap_mg)
        modified = toci.doses > a.tocilizumab.max_doses or (asked_mg is not None and asked_mg > cap_mg + 1e-9)
        auth["tocilizumab"] = {
            "doses": doses,
            "max_mg_per_dose": _number(mg),
            "modified": modified,
            "requested": {"doses": toci.doses, "dose": f"{toci.dose.value:g} {toci.dose.unit}",
                          "mg_per_dose": None if asked_mg is None else _number(asked_mg)},
        }
        cap = f"{_number(cap_mg):g} mg"
        basis = note or f"{toci.dose.value:g} {toci.dose.unit} per dose"
        if asked_mg is not None:
            basis += f", capped at {cap}" if asked_mg > cap_mg + 1e-9 else f", within the cap of {cap}"
        if toci.doses > a.tocilizumab.max_doses:
            basis += f"; {toci.doses} doses requested, at most {a.tocilizumab.max_doses}"
        auth["tocilizumab"]["basis"] = basis
        if note and asked_mg is None:
            auth["tocilizumab"]["note"] = note
    return auth


def determine(case: Case, policy: Policy, config: PayerConfig | None = None, as_of: date | None = None,
              terminology: Terminology | None = None) -> Determination:
    """Evaluate a case against a policy on ``as_of`` (default: the date received). Pure and deterministic.

    Routing runs in the specification's order: a request for another product is not applicable whatever else
    it lacks; a request for the policy's product whose member has no line of business raises the intake's
    error for it (:meth:`Case.unrouted`)."""
    config = config or _DEFAULT_CONFIG
    term = terminology or load_terminology()
    as_of = as_of or case.request.received
    ctx = _resolve_context(case, config, policy)
    lob = ctx["line_of_business"] = term.line_of_business(case.member.line_of_business)
    facts = Facts(case, as_of, term, ctx)
    req, member = case.request, case.member
    scope: list[NodeResult] = []
    reasons: list[str] = []

    def finish(outcome: str, summary: str, criteria: list[NodeResult], refer_to: str | None = None,
               missing: list[dict[str, str]] | None = None, authorization: dict | None = None) -> Determination:
        problems = list(case.notes)
        for p in facts.problems:
            if p not in problems:
                problems.append(p)
        return Determination(case.id, case.title, policy, as_of, outcome, summary, reasons, scope, criteria, refer_to,
                             missing or [], authorization, _review(policy, outcome), _due(case, policy, config, lob), problems,
                             req.received)

    # 1. product
    drug = term.drug(req.drug)
    product = term.drug(policy.doc.product.name)
    drug_ev = [Evidence("requested product", req.drug, source=str(req.source.at("drug")))]
    if drug is None or drug != product:
        what = f"{req.drug!r} ({drug.generic})" if drug else f"{req.drug!r} (not a product priorauth recognizes)"
        scope.append(_scope_node("scope.product", f"The request is for {product.generic}", NOT_MET,
                                 f"Requested product is {what}", drug_ev))
        reasons.append(f"{policy.id} covers {product.generic} only; the request is for {req.drug}")
        return finish("not_applicable", f"Not applicable: the request is not for {product.generic}", [])
    scope.append(_scope_node("scope.product", f"The request is for {product.generic}", MET,
                             f"Requested product {req.drug!r} is {product.generic}", drug_ev))
    # 2. line of business: a request for the product without one cannot be routed (refused, naming what was read)
    if lob is None:
        raise case.unrouted()
    lob_ev = [Evidence("line of business", lob, source=str(member.source.at("line_of_business")))]
    lobs = policy.doc.lines_of_business
    if lob not in lobs:
        scope.append(_scope_node("scope.line_of_business", "The member's line of business is covered by the policy",
                                 NOT_MET, f"Line of business {lob!r} is not one of {', '.join(lobs)}", lob_ev))
        reasons.append(f"{policy.id} applies to {', '.join(lobs)}; the member's line of business is {lob}")
        return finish("not_applicable", f"Not applicable: line of business {lob} is outside the policy", [])
    scope.append(_scope_node("scope.line_of_business", "The member's line of business is covered by the policy", MET,
                             f"Line of business {lob!r} is covered", lob_ev))
    # 3. effective date
    eff = ctx["policy_effective"]
    eff_ev = [Evidence("policy effective date", eff.isoformat() if eff else None, source=ctx["_sources"]["policy_effective"])]
    if eff is None or as_of < eff:
        if eff is None:
            why = ("the policy has no effective date yet: it takes effect on the FDA approval date, which the plan "
                   "sets as policy_effective in its payer configuration (or a case sets in context.policy_effective)")
        elif as_of == req.received:
            why = f"the request was received on {as_of}, before the policy's effective date {eff}"
        else:
            why = f"the evaluation date {as_of} is before the policy's effective date {eff}"
        scope.append(_scope_node("scope.effective_date", "The policy is in effect on the evaluation date", NOT_MET,
                                 why[0].upper() + why[1:], eff_ev))
        reasons.append(f"{policy.id} is not in effect: {why}")
        return finish("not_applicable", "Not applicable: the policy is not in effect", [])
    scope.append(_scope_node("scope.effective_date", "The policy is in effect on the evaluation date", MET,
                             f"In effect since {eff}", eff_ev))
    # 4. diagnosis
    sections = policy.doc.sections
    continuation = req.kind == "continuation"
    in_group = [c for c in req.diagnoses if term.in_group(c, policy.doc.diagnosis_group)]
    dx_label = term.group_labels[policy.doc.diagnosis_group]
    dx_ev = [Evidence("diagnosis", c, source=str(req.source.at(f"diagnoses[{i}]"))) for i, c in enumerate(req.diagnoses)]
    if not in_group:
        scope.append(_scope_node("scope.diagnosis", f"The diagnosis is {dx_label}", NOT_MET,
                                 f"{', '.join(req.diagnoses) or 'No diagnosis'}: not {dx_label}", dx_ev))
        section = sections.continuation_other if continuation else sections.initial_other
        result = evaluate_node(policy.roots[section], facts)
        refer = _referral(result, lob)
        reasons.append(f"{section}: the diagnosis is not {dx_label}; refer to {refer}")
        return finish("refer_to_policy", f"Refer to {refer}", [result], refer_to=refer)
    scope.append(_scope_node("scope.diagnosis", f"The diagnosis is {dx_label}", MET,
                             f"{', '.join(in_group)} is {dx_label}", dx_ev))

    # 5. continuation / 6. initial
    section = sections.continuation if continuation else sections.initial
    result = evaluate_node(policy.roots[section], facts)
    criteria = [result]
    if not continuation and sections.exclusions:
        criteria.append(evaluate_node(policy.roots[sections.exclusions], facts))
    failed = [c for c in result.children if c.status == NOT_MET]
    undecided = [c for c in result.children if c.status == UNKNOWN]
    refer = None
    if result.status == NOT_MET and ctx["label_change_within_6_months"]:
        other = evaluate_node(policy.roots[sections.continuation_other if continuation else sections.initial_other], facts)
        criteria.append(other)
        refer = _referral(other, lob)
    if result.status == NOT_MET:
        reasons.extend(f"{c.id} not met: {c.reason}" for c in failed)
        if refer:
            reasons.append(f"A label change within 6 months is flagged: a use the new label added may be reviewed "
                           f"under {refer}")
        return finish("does_not_meet_criteria", f"Does not meet {', '.join(c.id for c in failed)}", criteria,
                      refer_to=refer)
    if result.status == UNKNOWN:
        missing = [{"criterion": c.id, "documentation": d} for c in undecided for d in c.documentation_needed()]
        reasons.extend(f"{c.id} undecided: {c.reason}" for c in undecided)
        return finish("needs_information", f"Needs information for {', '.join(c.id for c in undecided)}", criteria,
                      missing=missing)
    reasons.append(f"All criteria of {section} are met")
    return finish("meets_criteria", f"Meets {section}", criteria, authorization=_authorization(case, policy, as_of))


def _referral(result: NodeResult, lob: str) -> str | None:
    """The policy named by the first met criterion (in policy order) that refers, for the line of business."""
    for n in result.walk():
        if n.refer_to and n.status == MET and _path_met(result, n):
            return n.refer_to.get(lob)
    return None


def _path_met(root: NodeResult, target: NodeResult) -> bool:
    def walk(n: NodeResult, ancestors_met: bool) -> bool | None:
        if n is target:
            return ancestors_met and n.status == MET
        for c in n.children:
            found = walk(c, ancestors_met and n.status == MET)
            if found is not None:
                return found
        return None

    return bool(walk(root, True))
