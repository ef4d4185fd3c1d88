"""PAS request Bundles: written from cases (fhir/pas_build.py), read back (fhir/pas_intake.py), evaluated.

(a) every acceptance scenario, written as a PAS bundle and read back, gets the same determination (outcome,
    referral, authorization, what is missing, and the status of every scope node and criterion) as the case
    file itself, and the same facts; the scenario's ``context`` is payer configuration for the bundle;
(b) every hand-written bundle in examples/fhir gets the result examples/fhir-expected.yaml gives;
(c) every bundle written, and every hand-written one, validates and resolves all its references;
(d) the writer's output is byte-identical across runs (and across interpreter hash seeds).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date

import pytest
import yaml

from priorauth.case import Case, Procedure
from priorauth.config import PayerConfig
from priorauth.determination import Determination, determine
from priorauth.fhir.codes import (CS_LINE_OF_BUSINESS, EXT_CERTIFICATION_TYPE, EXT_REQUESTED_SERVICE, HCPCS, LOINC,
                                  LOINC_MEDICATION_HISTORY, LOINC_PAST_ILLNESS, PAS_REQUEST_BUNDLE, SOPT, UCUM)
from priorauth.fhir.pas_build import bundle_from_case, is_ucum
from priorauth.fhir.validate import validate_resource
from priorauth.intake.casefile import load_case_file
from priorauth.output import to_json
from priorauth.terminology import load_terminology

from conftest import ROOT, SCENARIOS
from helpers import make_case
from helpers import assert_subset

SCENARIO_FILES = (sorted(SCENARIOS.glob("*.yaml")) + sorted(SCENARIOS.glob("*.json"))
                  + sorted((SCENARIOS / "records").glob("*.yaml")))
CASE_EXAMPLES = sorted(p for p in (ROOT / "examples" / "cases").iterdir() if p.suffix in (".yaml", ".json"))
FHIR_DIR = ROOT / "examples" / "fhir"
FHIR_EXAMPLES = sorted(FHIR_DIR.glob("*.json"))
EXPECTED = yaml.safe_load((FHIR_DIR.parent / "fhir-expected.yaml").read_text(encoding="utf-8"))
EXAMPLES_CONFIG = PayerConfig(policy_effective=date(2026, 12, 23))


@pytest.fixture(scope="module")
def case_from_bundle():
    from priorauth.fhir.pas_intake import case_from_bundle

    return case_from_bundle


def config_from_context(case: Case) -> PayerConfig:
    """The payer configuration that stands for a case file's ``context`` when the case travels as a PAS bundle
    (which carries no payer context): each key the case gives, the default for the others."""
    ctx = case.context
    given = ctx.model_fields_set
    settings: dict = {}
    if "policy_effective" in given:
        settings["policy_effective"] = ctx.policy_effective
    if "formulary" in given and ctx.formulary is not None:
        settings["formulary"] = {k.lower(): v for k, v in ctx.formulary.items()}
    if "label_change_within_6_months" in given and ctx.label_change_within_6_months is not None:
        settings["label_change_within_6_months"] = ctx.label_change_within_6_months
    return PayerConfig(**settings)


def statuses(d: Determination) -> dict[str, str]:
    out: dict[str, str] = {}
    for root in d.scope + d.criteria:
        for node in root.walk():
            assert node.id not in out, f"node {node.id} appears twice"
            out[node.id] = node.status
    return out


def roundtrip(case: Case, read, **kw) -> Case:
    """Write the case as a bundle, serialize it as JSON text, and read it back."""
    text = json.dumps(bundle_from_case(case))
    return read(json.loads(text), f"{case.id}.pas.json", **kw)


# ---- (a) every scenario survives the trip ------------------------------------------------------------------------
def test_scenarios_are_there():
    assert len(SCENARIO_FILES) >= 24, f"expected the shared acceptance scenarios in {SCENARIOS}"


@pytest.mark.parametrize("path", SCENARIO_FILES, ids=[p.stem for p in SCENARIO_FILES])
def test_scenario_roundtrip_same_determination(path, policy, case_from_bundle):
    case = load_case_file(path)
    direct = determine(case, policy)
    back = roundtrip(case, case_from_bundle)
    assert back.id == case.id
    via_fhir = determine(back, policy, config_from_context(case))
    assert via_fhir.outcome == direct.outcome, f"{via_fhir.outcome} != {direct.outcome}: {via_fhir.reasons}"
    assert via_fhir.outcome == (case.expect or {}).get("outcome", direct.outcome)
    assert via_fhir.refer_to == direct.refer_to
    a, b = statuses(direct), statuses(via_fhir)
    assert a.keys() == b.keys()
    differ = {k: (a[k], b[k]) for k in a if a[k] != b[k]}
    assert not differ, f"criteria differ (direct, via FHIR): {differ}"
    assert to_json(via_fhir)["authorization"] == to_json(direct)["authorization"]
    assert via_fhir.missing == direct.missing


def _drug(name: str) -> str:
    found = load_terminology().drug(name)
    return found.generic if found is not None else name.strip().lower()


def facts(case: Case) -> dict:
    """The facts the engine reads, with names folded to what they mean (a brand and its generic are one drug)."""
    term = load_terminology()
    req, m, p = case.request, case.member, case.prescriber
    out: dict = {
        "received": req.received, "kind": req.kind, "urgency": req.urgency, "drug": _drug(req.drug),
        "dose": (req.dose.value, req.dose.unit) if req.dose else None,
        "tocilizumab": (req.tocilizumab.doses, req.tocilizumab.dose.value, req.tocilizumab.dose.unit)
        if req.tocilizumab else None,
        "diagnoses": sorted(req.diagnoses), "concurrent": sorted(_drug(c) for c in req.concurrent),
        "member": (m.id, m.birth_date, term.line_of_business(m.line_of_business), m.state,
                   (m.weight.value, m.weight.unit) if m.weight else None),
        "prescriber": None if p is None else (
            p.npi, p.taxonomy,
            None if p.consultation is None else (p.consultation.taxonomy, p.consultation.date)),
        # labs and assessments: the mapping has no marker for "submitted, none" (as it has for therapies and
        # history, which the exclusion criteria read), and the engine reads absent and empty alike
        "labs": sorted((lab.test, lab.date, round(lab.canonical, 9) if lab.canonical is not None else lab.value,
                        lab.reference_range, lab.flag) for lab in case.labs or ()),
        "assessments": sorted((a.date, a.response or "", a.finding or "") for a in case.assessments or ()),
        "history": None if case.history is None else sorted(
            (h.code or "", (h.text or "").lower(), h.onset or date.min, h.status or "") for h in case.history),
        "attestations": None if case.attestations is None else case.attestations.model_dump(exclude_none=True),
    }
    # therapies: what the engine reads from them (the assembled regimens, transplants, unrecognized products), as
    # the writer sends one resource per drug and the reader gives one entry per resource
    therapies = None
    if case.therapies is not None:
        from priorauth.clinical.therapy import assemble_history
        from priorauth.policies import default_policy

        hist = assemble_history(case.therapies, term, case.request.received,
                                default_policy().node("I.A.5").params.history_rules)
        therapies = sorted([("regimen", tuple(sorted(r.names)), r.start, r.end or date.max, r.line, r.intent or "",
                             r.stop_reason or "", r.trial) for r in hist.regimens]
                           + [("procedure", t.entry.procedure, t.date, t.date, t.entry.line, "", "", False)
                              for t in hist.transplants]
                           + [("other", e.drug.generic, e.start, e.end or date.max, e.line, e.intent or "", "", e.trial)
                              for e in hist.others]
                           + [("unrecognized", u.name, u.start, u.end or date.max, None, "", "", False)
                              for u in hist.unrecognized], key=repr)
    out["therapies"] = therapies
    return out


@pytest.mark.parametrize("path", SCENARIO_FILES, ids=[p.stem for p in SCENARIO_FILES])
def test_scenario_roundtrip_same_facts(path, case_from_bundle):
    case = load_case_file(path)
    back = roundtrip(case, case_from_bundle, strict=True)
    a, b = facts(case), facts(back)
    differ = {k: (a[k], b[k]) for k in a if a[k] != b[k]}
    assert not differ, f"facts differ (case file, via FHIR): {differ}"
    assert back.notes == [], "the reader left out something the writer wrote"


def test_roundtrip_keeps_weight_consultation_attestations_and_documents(policy, case_from_bundle):
    """What the scenarios do not exercise: a body weight, a consultation, a received time, attestations,
    an empty history and treatment history, a product requested alongside, a document."""
    case = make_case(
        request__received="2027-01-11T09:30:00-05:00",
        request__urgency="expedited",
        request__tocilizumab={"doses": 4, "dose": {"value": 8, "unit": "mg/kg"}},
        request__concurrent=["Carvykti"],
        member__weight={"value": 70, "unit": "kg"},
        prescriber={"npi": "1234567893", "taxonomy": "207R00000X",
                    "consultation": {"taxonomy": "207RH0003X", "date": "2026-12-20"}},
        labs=[{"test": "kappa_flc", "value": 420, "unit": "mg/L", "date": "2027-01-03",
               "reference_range": [3.3, 19.4], "flag": "high"},
              {"test": "lambda_flc", "value": 9, "unit": "mg/L", "date": "2027-01-03"},
              {"test": "urine_m_protein", "value": 250, "unit": "mg/24h", "date": "2027-01-03"}],
        therapies=[],
        history=[],
        attestations={"no_cns_pathology": True, "no_prior_bcma": True, "no_prior_car_t": False, "prior_lines": 4,
                      "prior_classes": ["imid", "proteasome_inhibitor", "anti_cd38"]},
        documents=[{"id": "note-1", "title": "Progress note", "content_type": "application/pdf",
                    "url": "https://example.org/note-1.pdf", "size": 1024, "date": "2027-01-05"}],
    )
    back = roundtrip(case, case_from_bundle, strict=True)
    a, b = facts(case), facts(back)
    assert {k: (a[k], b[k]) for k in a if a[k] != b[k]} == {}
    assert back.notes == []
    assert back.request.received_at == case.request.received_at
    assert back.therapies == [] and back.history == []
    assert [(d.id, d.content_type, d.url, d.size, d.date) for d in back.documents] == \
        [(d.id, d.content_type, d.url, d.size, d.date) for d in case.documents]
    config = PayerConfig(policy_effective=date(2026, 12, 23))
    direct, via_fhir = determine(case, policy), determine(back, policy, config)
    assert via_fhir.outcome == direct.outcome
    assert statuses(via_fhir) == statuses(direct)
    assert to_json(via_fhir)["authorization"] == to_json(direct)["authorization"]


# ---- (b) the hand-written examples -------------------------------------------------------------------------------
def test_every_example_has_an_expectation():
    assert len(FHIR_EXAMPLES) >= 5
    assert sorted(p.name for p in FHIR_EXAMPLES) == sorted(EXPECTED)



@pytest.mark.parametrize("path", FHIR_EXAMPLES, ids=[p.stem for p in FHIR_EXAMPLES])
def test_example_bundle(path, policy, case_from_bundle):
    expect = EXPECTED[path.name]
    bundle = json.loads(path.read_text(encoding="utf-8"))
    case = case_from_bundle(bundle, str(path))
    assert case.id == bundle["identifier"]["value"]
    d = determine(case, policy, EXAMPLES_CONFIG)
    out = to_json(d)
    assert out["outcome"] == expect["outcome"], f"{out['outcome']}: {out['reasons']}"
    assert out["refer_to"] == expect["refer_to"]
    got = statuses(d)
    for section in ("scope", "criteria"):
        for node_id, status in (expect.get(section) or {}).items():
            assert node_id in got, f"{node_id} was not evaluated"
            assert got[node_id] == status, f"{node_id}: {got[node_id]} ({d.node(node_id).reason})"
    if "authorization" in expect:
        assert_subset(expect["authorization"], out["authorization"], "authorization")
    if expect["outcome"] != "meets_criteria":
        assert out["authorization"] is None


def test_example_bundles_strict(case_from_bundle):
    """The hand-written bundles also read with --strict (every resource validated with the FHIR models)."""
    for path in FHIR_EXAMPLES:
        case_from_bundle(json.loads(path.read_text(encoding="utf-8")), str(path), strict=True)


# ---- (c) validation and references -------------------------------------------------------------------------------
def _references(node, path="Bundle") -> list[tuple[str, str]]:
    found = []
    if isinstance(node, dict):
        ref = node.get("reference")
        if isinstance(ref, str):
            found.append((path, ref))
        for k, v in node.items():
            found += _references(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found += _references(v, f"{path}[{i}]")
    return found


def check_bundle(bundle: dict) -> list[str]:
    """Every validation problem, and every reference that resolves to no entry (by fullUrl or Type/id)."""
    problems = [f"{p}: {m}" for p, m in validate_resource(bundle)]
    entries = bundle.get("entry", [])
    full_urls = [e["fullUrl"] for e in entries]
    if len(full_urls) != len(set(full_urls)):
        problems.append("fullUrls are not unique")
    by_id = {f"{e['resource']['resourceType']}/{e['resource'].get('id')}" for e in entries}
    for path, ref in _references(bundle):
        if ref not in full_urls and ref not in by_id:
            problems.append(f"{path}: {ref} resolves to no entry")
    return problems


WRITTEN = SCENARIO_FILES + CASE_EXAMPLES


@pytest.mark.parametrize("path", WRITTEN, ids=[p.stem for p in WRITTEN])
def test_written_bundle_validates(path):
    bundle = bundle_from_case(load_case_file(path))
    assert check_bundle(bundle) == []
    assert bundle["meta"]["profile"] == [PAS_REQUEST_BUNDLE]
    assert bundle["type"] == "collection"
    assert bundle["entry"][0]["resource"]["resourceType"] == "Claim"


@pytest.mark.parametrize("path", FHIR_EXAMPLES, ids=[p.stem for p in FHIR_EXAMPLES])
def test_example_bundle_validates(path):
    assert check_bundle(json.loads(path.read_text(encoding="utf-8"))) == []


def test_check_bundle_finds_problems():
    bundle = bundle_from_case(load_case_file(SCENARIO_FILES[0]))
    bundle["entry"][0]["resource"]["use"] = "claimed"
    bundle["entry"][0]["resource"]["patient"] = {"reference": "Patient/nowhere"}
    problems = check_bundle(bundle)
    assert any(p.startswith("Bundle.entry[0].resource.use: 'claimed'") for p in problems), problems
    assert any("Patient/nowhere resolves to no entry" in p for p in problems), problems


# ---- (d) deterministic output ------------------------------------------------------------------------------------
def test_output_is_byte_identical_within_a_process():
    for path in SCENARIO_FILES + CASE_EXAMPLES:
        first = json.dumps(bundle_from_case(load_case_file(path)), indent=2)
        second = json.dumps(bundle_from_case(load_case_file(path)), indent=2)
        assert first == second, path.name


_DUMP = """
import hashlib, json, sys
from priorauth.fhir.pas_build import bundle_from_case
from priorauth.intake.casefile import load_case_file
for p in sys.argv[1:]:
    text = json.dumps(bundle_from_case(load_case_file(p)), indent=2, ensure_ascii=False)
    print(p, hashlib.sha256(text.encode()).hexdigest())
"""


def test_output_is_byte_identical_across_runs():
    paths = [str(p) for p in SCENARIO_FILES + CASE_EXAMPLES]
    runs = []
    for seed in ("1", "4242"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        done = subprocess.run([sys.executable, "-c", _DUMP, *paths], capture_output=True, text=True, env=env,
                              check=True)
        runs.append(done.stdout)
    assert runs[0] == runs[1]
    assert len(runs[0].splitlines()) == len(paths)


def test_bundle_id_is_used_and_ids_follow_the_case():
    case = load_case_file(SCENARIO_FILES[0])
    assert bundle_from_case(case, bundle_id="b-1")["id"] == "b-1"
    other = case.model_copy(update={"id": "OTHER"})
    urls_a = [e["fullUrl"] for e in bundle_from_case(case)["entry"]]
    urls_b = [e["fullUrl"] for e in bundle_from_case(other)["entry"]]
    assert not set(urls_a) & set(urls_b), "two cases must not share fullUrls"


# ---- the shape of what is written ---------------------------------------------------------------------------------
def _by_url(bundle: dict) -> dict[str, dict]:
    return {e["fullUrl"]: e["resource"] for e in bundle["entry"]}


def _of_type(bundle: dict, rtype: str) -> list[dict]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


def test_claim_items_and_coverage():
    bundle = bundle_from_case(load_case_file(SCENARIOS / "PUB-17.yaml"))
    assert bundle["identifier"]["value"] == "PUB-17"
    assert bundle["timestamp"] == "2027-01-11T00:00:00Z"
    claim = bundle["entry"][0]["resource"]
    assert (claim["use"], claim["status"], claim["created"]) == ("preauthorization", "active", "2027-01-11")
    assert claim["priority"]["coding"][0]["code"] == "normal"
    assert [d["diagnosisCodeableConcept"]["coding"][0]["code"] for d in claim["diagnosis"]] == ["C90.02"]
    urls = _by_url(bundle)
    product, toci, other = claim["item"]
    ext = {e["url"]: e for e in product["extension"]}
    assert ext[EXT_CERTIFICATION_TYPE]["valueCodeableConcept"]["coding"][0]["code"] == "I"
    mr = urls[ext[EXT_REQUESTED_SERVICE]["valueReference"]["reference"]]
    assert mr["medicationCodeableConcept"]["text"] == "anitocabtagene autoleucel"
    assert mr["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"] == \
        {"value": 115, "unit": "10*6{cells}", "system": UCUM, "code": "10*6{cells}"}
    assert toci["productOrService"]["coding"] == [{"system": HCPCS, "code": "J3262"}]
    assert toci["quantity"] == {"value": 4}
    toci_mr = urls[{e["url"]: e for e in toci["extension"]}[EXT_REQUESTED_SERVICE]["valueReference"]["reference"]]
    assert toci_mr["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] == 800
    assert other["productOrService"]["text"] == "axicabtagene ciloleucel"
    assert {"system": HCPCS, "code": "Q2041"} in other["productOrService"]["coding"]
    coverage = urls[claim["insurance"][0]["coverage"]["reference"]]
    assert coverage["subscriberId"] == "M-0001"
    assert {(c["system"], c["code"]) for c in coverage["type"]["coding"]} == {(CS_LINE_OF_BUSINESS, "medicaid"),
                                                                              (SOPT, "2")}


def test_regimens_procedures_and_acronyms():
    bundle = bundle_from_case(load_case_file(SCENARIOS / "PUB-24.yaml"))
    statements = _of_type(bundle, "MedicationStatement")
    texts = [s["medicationCodeableConcept"]["text"] for s in statements]
    assert texts == ["VRd", "Revlimid", "DPd", "KCd", "SVd"]
    vrd = statements[0]
    assert "coding" not in vrd["medicationCodeableConcept"]
    assert vrd["effectivePeriod"] == {"start": "2021-03-01", "end": "2021-07-15"}
    assert vrd["category"]["coding"][0]["code"] == "induction"
    assert statements[1]["medicationCodeableConcept"]["coding"][0]["code"] == "342369"  # lenalidomide, RxNorm
    (proc,) = _of_type(bundle, "Procedure")
    assert proc["code"]["coding"][0]["code"] == "38241" and proc["performedDateTime"] == "2021-09-02"
    # a regimen of several drugs: one statement each, sharing the period
    pub01 = _of_type(bundle_from_case(load_case_file(SCENARIOS / "PUB-01.yaml")), "MedicationStatement")
    first = [s for s in pub01 if s["effectivePeriod"]["start"] == "2021-03-01"]
    assert [s["medicationCodeableConcept"]["text"] for s in first] == ["bortezomib", "lenalidomide", "dexamethasone"]


def test_empty_and_absent_sections():
    empty = bundle_from_case(make_case(therapies=[], history=[]))
    lists = {lst["code"]["coding"][0]["code"]: lst for lst in _of_type(empty, "List")}
    assert set(lists) == {LOINC_MEDICATION_HISTORY, LOINC_PAST_ILLNESS}
    assert all(lst["emptyReason"]["coding"][0]["code"] == "nilknown" and "entry" not in lst for lst in lists.values())
    assert not _of_type(empty, "MedicationStatement") and not _of_type(empty, "Condition")
    absent = bundle_from_case(make_case(drop=("therapies", "history")))
    assert not _of_type(absent, "List") and not _of_type(absent, "MedicationStatement")
    assert not _of_type(absent, "Procedure") and not _of_type(absent, "Condition")


def test_labs_weight_and_attestations():
    case = load_case_file(ROOT / "examples" / "cases" / "needs-info-attested.yaml")
    bundle = bundle_from_case(case)
    (lab,) = [o for o in _of_type(bundle, "Observation") if o["id"].startswith("lab-")]
    # urine M-protein: the terminology's LOINC codes are unverified, so the lab is named by priorauth's coding;
    # g/24h is not UCUM as written, so it goes in `unit` only
    assert [c["system"] for c in lab["code"]["coding"]] == ["urn:priorauth:codesystem:lab-test"]
    assert lab["valueQuantity"] == {"value": 0.62, "unit": "g/24h"}
    (qr,) = _of_type(bundle, "QuestionnaireResponse")
    answers = {it["linkId"]: it["answer"] for it in qr["item"]}
    assert answers["I.A.7.no_prior_bcma"] == [{"valueBoolean": True}]
    assert answers["I.A.5.prior_lines"] == [{"valueInteger": 4}]
    assert [a["valueCoding"]["code"] for a in answers["I.A.5.prior_classes"]] == \
        ["imid", "proteasome_inhibitor", "anti_cd38"]
    weighted = bundle_from_case(load_case_file(ROOT / "examples" / "cases" / "eligible-lambda-renal.yaml"))
    (weight,) = [o for o in _of_type(weighted, "Observation") if o["code"]["coding"][0]["code"] == "29463-7"]
    assert weight["valueQuantity"] == {"value": 70, "unit": "kg", "system": UCUM, "code": "kg"}
    assert weight["effectiveDateTime"] == "2027-02-03"
    kappa = [o for o in _of_type(weighted, "Observation")
             if o["code"]["coding"][0] == {"system": LOINC, "code": "36916-5"}]
    assert len(kappa) == 1


def test_received_time_is_kept():
    bundle = bundle_from_case(make_case(request__received="2027-01-11T09:30:00-05:00"))
    assert bundle["timestamp"] == "2027-01-11T09:30:00-05:00"
    assert bundle["entry"][0]["resource"]["created"] == "2027-01-11T09:30:00-05:00"


@pytest.mark.parametrize("unit, ucum", [
    ("10*6{cells}", True), ("10*6{cells}/kg", True), ("mg/kg", True), ("g/dL", True), ("mg/(24.h)", True),
    ("{cells}/uL", True), ("mL/min/{1.73_m2}", True), ("%", True), ("1", True), ("[lb_av]", True),
    ("mg/24h", False), ("x10^6 cells", False), ("mL/min/1.73m2", False), ("lb", False), ("g/24 h", False),
    ("mg/dL)", False), ("", False), ("kg.", False),
])
def test_is_ucum(unit, ucum):
    assert is_ucum(unit) is ucum
