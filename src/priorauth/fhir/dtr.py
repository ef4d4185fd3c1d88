"""DTR: the policy's questionnaire, a pre-filled draft response, and the ``$questionnaire-package`` output.

The Questionnaire is generated from the policy tree: one item per criterion of the section a reviewer asks
providers about (``sections.initial``), ``linkId`` = the criterion id, ``prefix`` = the policy's numbering,
``text`` = the criterion's label, nested as the criteria are. A criterion's questions come from a registry
keyed by check name (:data:`QUESTIONS`) whose builders read the node's validated params: thresholds, windows,
units, attestation names and classes all come from the policy and the terminology, none is written here.
Each question is named ``<criterion id>.<fact>`` (docs/fhir-mapping.md, "DTR answers (linkIds)"), which is
what intake reads back. A criterion whose check asks nothing gets a display item saying how it is shown.

A criterion of the section that is an ``any`` of sub-criteria (I.A.4: measurable disease, or progression)
gets a ``<id>.basis`` choice whose options are its branches; ``enableWhen`` shows each branch's group when
it is selected (several may be).

The draft QuestionnaireResponse answers what the Case already holds, each answer marked with DTR's
``information-origin`` (``auto``); its items are exactly the questionnaire's, nested the same way.
"""

from __future__ import annotations

import html
import re
import uuid
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Callable

from priorauth.case import DRUG_CLASS_KEYS, Case, Lab
from priorauth.clinical.units import UnitError, display_unit, factor, format_quantity
from priorauth.fhir import codes
from priorauth.fhir.codes import (CS_CRITERION, CS_DRUG_CLASS, DTR_QUESTIONNAIRE, DTR_QUESTIONNAIRE_RESPONSE, NUCC,
                                  UCUM)
from priorauth.policies import Node, Policy
from priorauth.terminology import Terminology, load_terminology

__all__ = ["questionnaire", "prefilled_response", "questionnaire_package", "questionnaire_url",
           "questionnaire_canonical", "question_link_ids", "Question", "QUESTIONS", "questions_for",
           "PACKAGE_PARAMETER"]

#: the name of the $questionnaire-package output parameter holding the Bundle (docs/fhir-mapping.md)
PACKAGE_PARAMETER = codes.DTR_PACKAGE_PARAMETER

# Extension URLs not (yet) in codes.py, built from its bases. TODO(lead): move to codes.py.
_DTR_SD = DTR_QUESTIONNAIRE.rsplit("/", 1)[0]
EXT_INFORMATION_ORIGIN = codes.DTR_INFORMATION_ORIGIN
EXT_UNIT_OPTION = codes.QUESTIONNAIRE_UNIT_OPTION

_QUESTIONNAIRE_BASE = codes.QUESTIONNAIRE_BASE


# ---- canonical --------------------------------------------------------------------------------------------------
def questionnaire_url(policy: Policy) -> str:
    """The Questionnaire's canonical URL, from the policy id (``urn:priorauth:questionnaire:CP.PHAR.769``)."""
    return _QUESTIONNAIRE_BASE + policy.id


def questionnaire_canonical(policy: Policy) -> str:
    """The version-specific canonical (``url|version``) that responses and CRD refer to."""
    return f"{questionnaire_url(policy)}|{policy.version}"


def _fhir_id(text: str) -> str:
    out = re.sub(r"[^A-Za-z0-9\-.]", "-", text).strip("-.") or "x"
    return out[:64]


def _name(text: str) -> str:
    out = re.sub(r"[^A-Za-z0-9_]", "_", text)
    return out if out[:1].isupper() else "Q" + out


# ---- questions --------------------------------------------------------------------------------------------------
@dataclass
class _Fill:
    """What a question's answers are read from."""

    case: Case
    as_of: date
    term: Terminology
    _facts: Any = None

    @property
    def facts(self):
        if self._facts is None:
            from priorauth.engine.facts import Facts

            self._facts = Facts(self.case, self.as_of, self.term, {})
        return self._facts


Answer = dict[str, Any]


@dataclass(frozen=True)
class Question:
    """One Questionnaire item and how to answer it from a case (``fill`` None: a display item)."""

    item: dict[str, Any]
    fill: Callable[[_Fill], list[Answer]] | None = None

    @property
    def link_id(self) -> str:
        return self.item["linkId"]


Builder = Callable[[Node, Terminology], list[Question]]

#: check name -> builder of the criterion's questions from the node's params
QUESTIONS: dict[str, Builder] = {}


def questions_for(check_name: str):
    def wrap(fn: Builder) -> Builder:
        QUESTIONS[check_name] = fn
        return fn
    return wrap


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _qty_text(value: float, unit: str | None) -> str:
    return format_quantity(f"{value:g}", unit)


def _unit_label(code: str) -> str:
    shown = display_unit(code)
    return shown if shown and not shown.startswith("x ") else code


def _unit_option(code: str) -> dict:
    return {"url": EXT_UNIT_OPTION, "valueCoding": {"system": UCUM, "code": code, "display": _unit_label(code)}}


def _number(x: float) -> float | int:
    x = float(f"{x:.12g}")
    return int(x) if x.is_integer() else x


def _quantity(value: float, code: str) -> Answer:
    return {"valueQuantity": {"value": _number(value), "unit": _unit_label(code), "system": UCUM, "code": code}}


def _question(link_id: str, type_: str, text: str, **extra: Any) -> dict:
    item = {"linkId": link_id, "text": text, "type": type_}
    item.update(extra)
    return item


def _display(node: Node, text: str) -> Question:
    return Question(_question(f"{node.id}.note", "display", text))


def _latest_lab(fill: _Fill, test: str) -> Lab | None:
    best = None
    for lab in fill.case.labs or ():
        if lab.test == test and lab.date <= fill.as_of and (best is None or lab.date >= best.date):
            best = lab
    return best


def _lab_questions(node: Node, term: Terminology, test: str, criterion: str, window: int) -> list[Question]:
    spec = term.lab_tests[test]
    unit, label = spec["unit"], spec["label"]

    def value(fill: _Fill) -> list[Answer]:
        lab = _latest_lab(fill, test)
        if lab is None:
            return []
        if lab.canonical is not None:
            return [_quantity(lab.canonical, unit)]
        return [_quantity(lab.value, lab.unit or unit)]

    def when(fill: _Fill) -> list[Answer]:
        lab = _latest_lab(fill, test)
        return [] if lab is None else [{"valueDate": lab.date.isoformat()}]

    base = f"{node.id}.{test}"
    return [
        Question(_question(f"{base}.value", "quantity", f"{_cap(label)}, the latest result ({criterion})",
                           extension=[_unit_option(unit)]), value),
        Question(_question(f"{base}.date", "date", f"Date of that {label} result (qualifies when dated within "
                                                   f"{window} days of the request)"), when),
    ]


@questions_for("lab_threshold_in_window")
def _lab_threshold(node: Node, term: Terminology) -> list[Question]:
    p = node.params
    threshold = _qty_text(p.threshold.value, p.threshold.unit)
    return _lab_questions(node, term, p.test, f"at least {threshold} qualifies", p.window_days.value)


@questions_for("involved_flc_in_window")
def _involved_flc(node: Node, term: Terminology) -> list[Question]:
    p = node.params
    lo, hi = p.flc_ratio.normal_range.value
    criterion = (f"the involved chain at least {_qty_text(p.threshold.value, p.threshold.unit)} with a kappa/lambda "
                 f"ratio outside {lo:g}-{hi:g} qualifies")
    out: list[Question] = []
    for test in ("kappa_flc", "lambda_flc"):
        out += _lab_questions(node, term, test, criterion, p.window_days.value)
    return out


@questions_for("progression_after_last_regimen")
def _progression(node: Node, term: Terminology) -> list[Question]:
    prog = node.params.progression
    responses, findings = set(prog.assessment_responses), set(prog.imaging_findings)

    def fill(f: _Fill) -> list[Answer]:
        dates = [a.date for a in f.case.assessments or ()
                 if a.date <= f.as_of and (a.response in responses or a.finding in findings)]
        return [{"valueDate": max(dates).isoformat()}] if dates else []

    text = (f"Date progressive disease (IMWG) was documented: after the last regimen began and no later than "
            f"{prog.days_after_last_dose.value} days after its last dose")
    return [Question(_question(f"{node.id}.progression_date", "date", text), fill)]


@questions_for("minimum_age")
def _minimum_age(node: Node, term: Terminology) -> list[Question]:
    def fill(f: _Fill) -> list[Answer]:
        bd = f.case.member.birth_date
        return [] if bd is None else [{"valueDate": bd.isoformat()}]

    text = f"Member's date of birth (the member must be at least {node.params.years.value} years old)"
    return [Question(_question(f"{node.id}.birth_date", "date", text), fill)]


@questions_for("prescriber_specialty")
def _prescriber_specialty(node: Node, term: Terminology) -> list[Question]:
    options = [{"valueCoding": {"system": NUCC, "code": code, "display": spec["label"]}}
               for code, spec in term.taxonomies.items() if spec["hematology_oncology"]]

    def fill(f: _Fill) -> list[Answer]:
        pres = f.case.prescriber
        if pres is None:
            return []
        if pres.taxonomy:
            code = pres.taxonomy.strip().upper()
            coding = {"system": NUCC, "code": code}
            known = f.term.taxonomies.get(code)
            if known:
                coding["display"] = known["label"]
            return [{"valueCoding": coding}]
        if pres.specialty:
            return [{"valueString": pres.specialty}]
        return []

    text = ("Prescriber's specialty (NUCC taxonomy), or that of the hematologist or oncologist consulted; "
            "another specialty may be written in")
    return [Question(_question(f"{node.id}.taxonomy", "open-choice", text, answerOption=options), fill)]


@questions_for("prior_lines")
def _prior_lines(node: Node, term: Terminology) -> list[Question]:
    p = node.params

    def lines(f: _Fill) -> list[Answer]:
        att = f.case.attestations
        if att is not None and att.prior_lines is not None:
            return [{"valueInteger": att.prior_lines}]
        if f.case.therapies is None:
            return []
        return [{"valueInteger": f.facts.treatment(p.history_rules, p.progression_rules).lines.count}]

    def classes(f: _Fill) -> list[Answer]:
        att = f.case.attestations
        if att is not None and att.prior_classes is not None:
            keys = list(dict.fromkeys(att.prior_classes))
        elif f.case.therapies is not None:
            seen = {c for r in f.facts.treatment(p.history_rules, p.progression_rules).history.regimens for c in r.classes}
            keys = [k for k in DRUG_CLASS_KEYS if k in seen]
        else:
            keys = []
        return [{"valueCoding": _class_coding(k, f.term)} for k in keys]

    return [
        Question(_question(f"{node.id}.prior_lines", "integer",
                           f"Number of prior lines of therapy, counted by the IMWG definition (at least "
                           f"{p.lines.minimum.value} qualifies)"), lines),
        Question(_question(f"{node.id}.prior_classes", "choice", "Drug classes received in the prior lines "
                                                                 "(select each that applies)",
                           repeats=True, answerOption=[{"valueCoding": _class_coding(k, term)}
                                                       for k in DRUG_CLASS_KEYS]), classes),
    ]


def _class_coding(key: str, term: Terminology) -> dict:
    return {"system": CS_DRUG_CLASS, "code": key, "display": term.drug_classes[key]["label"]}


def _attestation(node: Node, name: str, text: str) -> Question:
    def fill(f: _Fill) -> list[Answer]:
        att = f.case.attestations
        value = getattr(att, name, None) if att is not None else None
        return [{"valueBoolean": value}] if isinstance(value, bool) else []

    return Question(_question(f"{node.id}.{name}", "boolean", text), fill)


@questions_for("no_prior_class")
def _no_prior_class(node: Node, term: Terminology) -> list[Question]:
    p = node.params
    label = term.drug_classes[p.cls]["label"]
    return [_attestation(node, p.attestation, f"The prescriber attests that the member has never received "
                                              f"{label}")]


@questions_for("no_cns_pathology")
def _no_cns(node: Node, term: Terminology) -> list[Question]:
    return [_attestation(node, "no_cns_pathology", "The prescriber attests that the member has no CNS involvement "
                                                   "by the malignancy and no clinically relevant CNS pathology, "
                                                   "now or in the past")]


@questions_for("dose_at_most")
def _dose(node: Node, term: Terminology) -> list[Question]:
    maximum = node.params.maximum
    unit = maximum.unit or "{cells}"
    per_kg = f"{unit}/kg"

    def dose(f: _Fill) -> list[Answer]:
        d = f.case.request.dose
        if d is None:
            return []
        for target in (unit, per_kg):
            try:
                return [_quantity(d.value * factor(d.unit, target), target)]
            except UnitError:
                continue
        return []

    def weight(f: _Fill) -> list[Answer]:
        w = f.case.member.weight
        return [] if w is None else [_quantity(w.value * factor(w.unit, "kg"), "kg")]

    return [
        Question(_question(f"{node.id}.dose", "quantity",
                           f"Requested dose of CAR-positive viable T cells (at most {_qty_text(maximum.value, unit)} "
                           "qualifies; a dose per kilogram is multiplied by the member's weight)",
                           extension=[_unit_option(unit), _unit_option(per_kg)]), dose),
        Question(_question(f"{node.id}.weight", "quantity", "Member's body weight (needed when the dose is given "
                                                            "per kilogram)", extension=[_unit_option("kg")]), weight),
    ]


# checks that ask nothing: a display item says how the criterion is shown
@questions_for("relapsed_or_refractory")
def _relapsed(node: Node, term: Terminology) -> list[Question]:
    group = term.group_labels.get(node.params.relapse_group, node.params.relapse_group)
    return [_display(node, f"Shown by the request's diagnosis code ({group}) or by documented progression or "
                           "relapse after prior therapy; attach the disease assessments.")]


@questions_for("prior_class_exposure")
def _prior_class(node: Node, term: Terminology) -> list[Question]:
    label = term.drug_classes[node.params.cls]["label"]
    return [_display(node, f"Shown by the treatment history (each regimen's drugs and dates): {label}.")]


@questions_for("no_concurrent_class")
def _no_concurrent(node: Node, term: Terminology) -> list[Question]:
    label = term.drug_classes[node.params.cls]["label"]
    return [_display(node, f"Shown by the products ordered with this request: no other {label}.")]


def _questions(node: Node, term: Terminology) -> list[Question]:
    if node.check is None:
        return []
    builder = QUESTIONS.get(node.check.name)
    if builder is None:
        return [_display(node, node.check.summary or node.label)]
    return builder(node, term)


# ---- the plan: the criteria tree with its questions ------------------------------------------------------------
@dataclass
class _Entry:
    node: Node
    questions: list[Question]
    children: list["_Entry"] = field(default_factory=list)
    basis: Question | None = None      # for a criterion that is an `any` of branches


def _basis_coding(node: Node) -> dict:
    return {"system": CS_CRITERION, "code": node.id, "display": node.label}


def _plan(node: Node, term: Terminology, depth: int = 0) -> _Entry:
    entry = _Entry(node, _questions(node, term), [_plan(c, term, depth + 1) for c in node.children])
    if depth == 1 and node.combine == "any" and node.children:
        entry.basis = Question(_question(
            f"{node.id}.basis", "choice", "Which of these does the documentation show? (select each that applies)",
            repeats=True, answerOption=[{"valueCoding": _basis_coding(c)} for c in node.children]))
    return entry


def _section_plan(policy: Policy, term: Terminology) -> _Entry:
    return _plan(policy.roots[policy.doc.sections.initial], term)


def _item(entry: _Entry) -> dict:
    node = entry.node
    children: list[dict] = []
    if entry.basis is not None:
        children.append(entry.basis.item)
    children += [q.item for q in entry.questions]
    for kid in entry.children:
        item = _item(kid)
        if entry.basis is not None:
            item["enableWhen"] = [{"question": entry.basis.link_id, "operator": "=",
                                   "answerCoding": _basis_coding(kid.node)}]
        children.append(item)
    return {"linkId": node.id, "code": [{"system": CS_CRITERION, "code": node.id, "display": node.label}],
            "prefix": node.reference, "text": node.label, "type": "group", "item": children}


def questionnaire(policy: Policy, *, terminology: Terminology | None = None) -> dict:
    """The policy's DTR Questionnaire (R4, DTR standard questionnaire profile), generated from its criteria."""
    term = terminology or load_terminology()
    plan = _section_plan(policy, term)
    doc = policy.doc
    title = f"{doc.title} ({doc.id} {plan.node.reference})"
    description = (f"Documentation the {doc.review.name} ({doc.review.body}) reviews for {doc.product.name} under "
                   f"{doc.id} version {doc.version}, criteria {plan.node.reference}. Each group is a criterion; "
                   "questions are named <criterion>.<fact>.")
    return {
        "resourceType": "Questionnaire",
        "id": _fhir_id(doc.id),
        "meta": {"profile": [DTR_QUESTIONNAIRE]},
        "text": {"status": "generated",
                 "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><p>{html.escape(title)}</p></div>'},
        "url": questionnaire_url(policy),
        "version": doc.version,
        "name": _name(doc.id),
        "title": title,
        "status": "active",
        "subjectType": ["Patient"],
        "description": description,
        "item": [_item(plan)],
    }


def question_link_ids(q: dict) -> list[str]:
    """Every linkId of a Questionnaire (or QuestionnaireResponse), in document order."""
    out: list[str] = []

    def walk(items):
        for it in items or ():
            out.append(it["linkId"])
            walk(it.get("item"))
            for ans in it.get("answer", ()):
                walk(ans.get("item"))

    walk(q.get("item"))
    return out


# ---- the pre-filled response ------------------------------------------------------------------------------------
def _origin(answer: Answer) -> Answer:
    return {"extension": [{"url": EXT_INFORMATION_ORIGIN, "extension": [{"url": "source", "valueCode": "auto"}]}],
            **answer}


def _answered(q: Question, fill: _Fill) -> dict | None:
    if q.fill is None:
        return None
    answers = q.fill(fill)
    if not answers:
        return None
    item = {"linkId": q.link_id, "text": q.item["text"], "answer": [_origin(a) for a in answers]}
    return item


def _response_item(entry: _Entry, fill: _Fill) -> dict | None:
    items = [it for it in (_answered(q, fill) for q in entry.questions) if it is not None]
    kids = []
    for kid in entry.children:
        it = _response_item(kid, fill)
        if it is not None:
            kids.append((kid, it))
    if entry.basis is not None and kids:
        # a branch holding answers is selected, so that its group is enabled
        items.insert(0, {"linkId": entry.basis.link_id, "text": entry.basis.item["text"],
                         "answer": [_origin({"valueCoding": _basis_coding(kid.node)}) for kid, _ in kids]})
    items += [it for _, it in kids]
    if not items:
        return None
    return {"linkId": entry.node.id, "text": entry.node.label, "item": items}


def _subject(case: Case) -> dict:
    src = case.member.source
    m = re.match(r"^(Patient/[A-Za-z0-9\-.]{1,64})$", src.path) if src is not None else None
    if m:
        return {"reference": m.group(1), "type": "Patient"}
    if case.member.id:
        return {"type": "Patient", "identifier": {"value": case.member.id}}
    return {"type": "Patient", "display": f"the member of request {case.id}"}


def prefilled_response(policy: Policy, case: Case, *, as_of: date | None = None,
                       terminology: Terminology | None = None) -> dict:
    """A draft QuestionnaireResponse (in-progress) answering what the case already holds, as of ``as_of``
    (default: the request's receipt date)."""
    term = terminology or load_terminology()
    when = as_of or case.request.received
    fill = _Fill(case, when, term)
    root = _response_item(_section_plan(policy, term), fill)
    qr = {
        "resourceType": "QuestionnaireResponse",
        "id": _fhir_id(f"{case.id}-{policy.id}"),
        "meta": {"profile": [DTR_QUESTIONNAIRE_RESPONSE]},
        "questionnaire": questionnaire_canonical(policy),
        "status": "in-progress",
        "subject": _subject(case),
        "authored": when.isoformat(),
        "author": {"type": "Device", "display": "priorauth (payer pre-population)"},
    }
    if root is not None:
        qr["item"] = [root]
    return qr


# ---- $questionnaire-package -------------------------------------------------------------------------------------
def _full_url(*parts: str) -> str:
    return "urn:uuid:" + str(uuid.uuid5(uuid.NAMESPACE_URL, "|".join(parts)))


def questionnaire_package(policy: Policy, case: Case | None = None, *, as_of: date | None = None,
                          terminology: Terminology | None = None) -> dict:
    """The ``$questionnaire-package`` output: a Parameters whose ``PackageBundle`` is a collection Bundle of the
    Questionnaire and, with a case, the pre-filled draft QuestionnaireResponse."""
    term = terminology or load_terminology()
    canonical = questionnaire_canonical(policy)
    entries = [{"fullUrl": _full_url(canonical), "resource": questionnaire(policy, terminology=term)}]
    bundle_id = _fhir_id(f"{policy.id}-package")
    if case is not None:
        qr = prefilled_response(policy, case, as_of=as_of, terminology=term)
        entries.append({"fullUrl": _full_url(canonical, "QuestionnaireResponse", case.id), "resource": qr})
        bundle_id = _fhir_id(f"{policy.id}-{case.id}-package")
    bundle = {"resourceType": "Bundle", "id": bundle_id, "type": "collection", "entry": entries}
    return {"resourceType": "Parameters", "parameter": [{"name": PACKAGE_PARAMETER, "resource": bundle}]}
