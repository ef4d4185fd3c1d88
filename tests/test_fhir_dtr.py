"""DTR: the questionnaire generated from the policy tree, the pre-filled draft response, the package."""

from __future__ import annotations

import copy
import json
from datetime import date
from pathlib import Path

import pytest
import yaml

from priorauth.fhir.codes import (CS_CRITERION, CS_DRUG_CLASS, DTR_QUESTIONNAIRE, DTR_QUESTIONNAIRE_RESPONSE, NUCC,
                                  UCUM)
from priorauth.fhir.dtr import (EXT_INFORMATION_ORIGIN, EXT_UNIT_OPTION, PACKAGE_PARAMETER, prefilled_response,
                                question_link_ids, questionnaire, questionnaire_canonical, questionnaire_package)
from priorauth.fhir.validate import validate_resource
from priorauth.intake.casefile import load_case_file
from priorauth.policies import compile_policy

from conftest import SCENARIOS
from helpers import make_case

POLICY_FILE = Path(__file__).resolve().parents[1] / "src" / "priorauth" / "policies" / "data" / "cp_phar_769.yaml"


# ---- helpers ----------------------------------------------------------------------------------------------------
def items_by_link(resource: dict) -> dict[str, dict]:
    out: dict[str, dict] = {}

    def walk(items):
        for it in items or ():
            out[it["linkId"]] = it
            walk(it.get("item"))

    walk(resource.get("item"))
    return out


def parents(resource: dict) -> dict[str, str | None]:
    out: dict[str, str | None] = {}

    def walk(items, parent):
        for it in items or ():
            out[it["linkId"]] = parent
            walk(it.get("item"), it["linkId"])

    walk(resource.get("item"), None)
    return out


def answers(qr: dict) -> dict[str, list[dict]]:
    """linkId -> answers, without the information-origin extension."""
    return {k: [{f: v for f, v in a.items() if f != "extension"} for a in it["answer"]]
            for k, it in items_by_link(qr).items() if "answer" in it}


def raw_policy() -> dict:
    return yaml.safe_load(POLICY_FILE.read_text(encoding="utf-8"))


def criterion(raw: dict, node_id: str) -> dict:
    stack = list(raw["criteria"])
    while stack:
        c = stack.pop()
        if c["id"] == node_id:
            return c
        stack += c.get("all") or c.get("any") or []
    raise KeyError(node_id)


@pytest.fixture(scope="module")
def q(policy):
    return questionnaire(policy)


@pytest.fixture(scope="module")
def qitems(q):
    return items_by_link(q)


# ---- the questionnaire ------------------------------------------------------------------------------------------
def test_questionnaire_is_valid_r4_with_dtr_profile(q, policy):
    assert validate_resource(q) == []
    assert q["resourceType"] == "Questionnaire" and q["status"] == "active"
    assert q["meta"]["profile"] == [DTR_QUESTIONNAIRE]
    assert q["url"] == "urn:priorauth:questionnaire:CP.PHAR.769" and q["version"] == policy.version == "2026.02"
    assert questionnaire_canonical(policy) == "urn:priorauth:questionnaire:CP.PHAR.769|2026.02"
    assert q["subjectType"] == ["Patient"]


def test_validation_is_not_vacuous(q):
    broken = copy.deepcopy(q)
    broken["item"][0]["item"][0]["type"] = "multiple-choice"
    broken["status"] = "published"
    paths = [p for p, _ in validate_resource(broken)]
    assert "Questionnaire.status" in paths and "Questionnaire.item[0].item[0].type" in paths


def test_a_group_per_criterion_of_the_initial_section(q, qitems, policy):
    root = policy.roots[policy.doc.sections.initial]
    assert [it["linkId"] for it in q["item"]] == [root.id] == ["I.A"]
    assert [it["linkId"] for it in q["item"][0]["item"]] == [f"I.A.{i}" for i in range(1, 11)]
    up = parents(q)
    for node in root.walk():
        item = qitems[node.id]
        assert item["type"] == "group", node.id
        assert item["text"] == node.label and item["prefix"] == node.reference
        assert item["code"] == [{"system": CS_CRITERION, "code": node.id, "display": node.label}]
        for child in node.children:
            assert up[child.id] == node.id
    assert qitems["I.A.6"]["prefix"] == "I.A.6, III.B"
    # only the section providers are asked about
    assert not [k for k in qitems if k.startswith(("I.B", "II", "III"))]


def test_link_ids_are_unique_and_named_criterion_dot_fact(q):
    ids = question_link_ids(q)
    assert len(ids) == len(set(ids))
    up = parents(q)
    for link, parent in up.items():
        if parent is not None and items_by_link(q)[link]["type"] != "group":
            assert link.startswith(parent + "."), link


def test_questions_built_from_check_params(qitems, term):
    expected_types = {
        "I.A.2.taxonomy": "open-choice",
        "I.A.3.birth_date": "date",
        "I.A.4.basis": "choice",
        "I.A.4.a.i.serum_m_protein.value": "quantity", "I.A.4.a.i.serum_m_protein.date": "date",
        "I.A.4.a.ii.urine_m_protein.value": "quantity", "I.A.4.a.ii.urine_m_protein.date": "date",
        "I.A.4.a.iii.kappa_flc.value": "quantity", "I.A.4.a.iii.kappa_flc.date": "date",
        "I.A.4.a.iii.lambda_flc.value": "quantity", "I.A.4.a.iii.lambda_flc.date": "date",
        "I.A.4.b.progression_date": "date",
        "I.A.5.prior_lines": "integer", "I.A.5.prior_classes": "choice",
        "I.A.6.no_cns_pathology": "boolean",
        "I.A.7.no_prior_bcma": "boolean", "I.A.8.no_prior_car_t": "boolean",
        "I.A.10.dose": "quantity", "I.A.10.weight": "quantity",
    }
    for link, type_ in expected_types.items():
        assert qitems[link]["type"] == type_, link
    asked = {k for k, it in qitems.items() if it["type"] not in ("group", "display")}
    assert asked == set(expected_types)
    # checks that ask nothing say how they are shown
    for node_id in ("I.A.1", "I.A.5.a", "I.A.5.b", "I.A.5.c", "I.A.9"):
        notes = [it for it in qitems[node_id]["item"] if it["type"] == "display"]
        assert len(notes) == 1 and notes[0]["text"], node_id
    assert "anti-CD38" in qitems["I.A.5.c.note"]["text"]
    assert "CAR T-cell therapy" in qitems["I.A.9.note"]["text"]


def test_units_and_answer_options_come_from_terminology(qitems, term):
    def units(link):
        return [e["valueCoding"]["code"] for e in qitems[link]["extension"] if e["url"] == EXT_UNIT_OPTION]

    assert units("I.A.4.a.i.serum_m_protein.value") == ["g/dL"] == [term.lab_tests["serum_m_protein"]["unit"]]
    assert units("I.A.4.a.ii.urine_m_protein.value") == ["mg/(24.h)"]
    assert units("I.A.4.a.iii.kappa_flc.value") == units("I.A.4.a.iii.lambda_flc.value") == ["mg/dL"]
    assert units("I.A.10.dose") == ["10*6{cells}", "10*6{cells}/kg"]
    assert units("I.A.10.weight") == ["kg"]
    assert all(e["valueCoding"]["system"] == UCUM for e in qitems["I.A.10.dose"]["extension"])

    taxonomy = [o["valueCoding"] for o in qitems["I.A.2.taxonomy"]["answerOption"]]
    assert {c["system"] for c in taxonomy} == {NUCC}
    assert {c["code"] for c in taxonomy} == {k for k, v in term.taxonomies.items() if v["hematology_oncology"]}
    assert "207RH0003X" in {c["code"] for c in taxonomy} and "207R00000X" not in {c["code"] for c in taxonomy}

    classes = qitems["I.A.5.prior_classes"]
    assert classes["repeats"] is True
    codes = [o["valueCoding"] for o in classes["answerOption"]]
    assert {c["system"] for c in codes} == {CS_DRUG_CLASS}
    assert [c["code"] for c in codes] == ["imid", "proteasome_inhibitor", "anti_cd38", "anti_bcma", "car_t",
                                          "other_anti_myeloma"]


def test_thresholds_from_the_policy_appear_in_question_texts(qitems):
    assert "at least 1 g/dL" in qitems["I.A.4.a.i.serum_m_protein.value"]["text"]
    assert "at least 200 mg/24 h" in qitems["I.A.4.a.ii.urine_m_protein.value"]["text"]
    for chain in ("kappa", "lambda"):
        text = qitems[f"I.A.4.a.iii.{chain}_flc.value"]["text"]
        assert "at least 10 mg/dL" in text and "0.26-1.65" in text
        assert "within 30 days" in qitems[f"I.A.4.a.iii.{chain}_flc.date"]["text"]
    assert "within 30 days" in qitems["I.A.4.a.i.serum_m_protein.date"]["text"]
    assert "60 days" in qitems["I.A.4.b.progression_date"]["text"]
    assert "at least 18 years" in qitems["I.A.3.birth_date"]["text"]
    assert "at least 3 qualifies" in qitems["I.A.5.prior_lines"]["text"]
    assert "at most 115 x 10^6" in qitems["I.A.10.dose"]["text"]
    assert "BCMA-directed therapy" in qitems["I.A.7.no_prior_bcma"]["text"]


def test_measurable_or_progression_branches_are_enabled_by_the_basis(qitems):
    basis = qitems["I.A.4.basis"]
    assert basis["type"] == "choice" and basis["repeats"] is True
    options = [o["valueCoding"] for o in basis["answerOption"]]
    assert [(o["system"], o["code"]) for o in options] == [(CS_CRITERION, "I.A.4.a"), (CS_CRITERION, "I.A.4.b")]
    assert options[0]["display"] == "Measurable disease within 30 days"
    for branch in ("I.A.4.a", "I.A.4.b"):
        assert qitems[branch]["enableWhen"] == [{
            "question": "I.A.4.basis", "operator": "=",
            "answerCoding": next(o for o in options if o["code"] == branch)}]
    # the basis comes before the groups it enables, and nested any-nodes get no basis of their own
    assert [it["linkId"] for it in qitems["I.A.4"]["item"]] == ["I.A.4.basis", "I.A.4.a", "I.A.4.b"]
    assert "I.A.4.a.basis" not in qitems
    assert not [k for k, it in qitems.items() if "enableWhen" in it and k not in ("I.A.4.a", "I.A.4.b")]


# ---- the questionnaire follows the policy -----------------------------------------------------------------------
def test_changing_the_policy_changes_the_questionnaire(policy, q):
    raw = raw_policy()
    raw["parameters"]["measurable_disease"]["serum_m_protein"]["value"] = 0.5
    raw["parameters"]["measurable_disease"]["window_days"]["value"] = 45
    raw["parameters"]["lines_of_therapy"]["minimum"]["value"] = 4
    criterion(raw, "I.A.7")["params"]["attestation"] = "no_prior_anti_bcma"
    criterion(raw, "I.A")["all"].append({
        "id": "I.A.11", "label": "eGFR of at least {threshold}", "check": "lab_threshold_in_window",
        "params": {"test": "egfr", "threshold": {"value": 30, "unit": "mL/min/{1.73_m2}"}, "window_days": {"value": 14}},
    })
    criterion(raw, "I.A")["all"].append({
        "id": "I.A.12", "label": "No recent label change", "check": "label_change_flagged", "params": {"flagged": False},
    })
    changed = compile_policy(raw, "edited.yaml")
    q2 = questionnaire(changed)
    assert validate_resource(q2) == []
    before, after = items_by_link(q), items_by_link(q2)

    serum = after["I.A.4.a.i.serum_m_protein.value"]["text"]
    assert "at least 0.5 g/dL" in serum and "at least 1 g/dL" not in serum
    assert "within 45 days" in after["I.A.4.a.i.serum_m_protein.date"]["text"]
    assert "within 45 days" in after["I.A.4.a.iii.kappa_flc.date"]["text"]
    assert "at least 4 qualifies" in after["I.A.5.prior_lines"]["text"]
    # the attestation's name is the question's name
    assert "I.A.7.no_prior_anti_bcma" in after and "I.A.7.no_prior_bcma" not in after
    # an extra criterion brings its group and its questions
    assert after["I.A.11"]["type"] == "group" and after["I.A.11"]["text"] == "eGFR of at least 30 mL/min/1.73 m2"
    assert after["I.A.11.egfr.value"]["type"] == "quantity"
    assert "at least 30 mL/min/1.73 m2" in after["I.A.11.egfr.value"]["text"]
    assert [e["valueCoding"]["code"] for e in after["I.A.11.egfr.value"]["extension"]] == ["mL/min/{1.73_m2}"]
    assert "within 14 days" in after["I.A.11.egfr.date"]["text"]
    # a check without a question builder gets a display item from the check's own summary
    assert [it["type"] for it in after["I.A.12"]["item"]] == ["display"]
    assert "label change" in after["I.A.12"]["item"][0]["text"]
    assert set(after) - set(before) == {"I.A.11", "I.A.11.egfr.value", "I.A.11.egfr.date", "I.A.7.no_prior_anti_bcma",
                                        "I.A.12", "I.A.12.note"}


def test_changing_the_initial_section_changes_what_is_asked():
    raw = raw_policy()
    raw["sections"]["initial"] = "III"
    q3 = items_by_link(questionnaire(compile_policy(raw, "edited.yaml")))
    assert "III.B.no_cns_pathology" in q3 and not [k for k in q3 if k.startswith("I.A")]


# ---- the package ------------------------------------------------------------------------------------------------
def test_package_without_a_case_holds_the_questionnaire(policy, q):
    pkg = questionnaire_package(policy)
    assert validate_resource(pkg) == []
    assert pkg["resourceType"] == "Parameters"
    assert [p["name"] for p in pkg["parameter"]] == [PACKAGE_PARAMETER] == ["packagebundle"]
    bundle = pkg["parameter"][0]["resource"]
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
    assert [e["resource"]["resourceType"] for e in bundle["entry"]] == ["Questionnaire"]
    assert bundle["entry"][0]["resource"] == q
    assert bundle["entry"][0]["fullUrl"].startswith("urn:uuid:")


def test_package_with_a_case_adds_the_draft_response(policy):
    case = load_case_file(SCENARIOS / "PUB-01.yaml")
    pkg = questionnaire_package(policy, case)
    assert validate_resource(pkg) == []
    entries = pkg["parameter"][0]["resource"]["entry"]
    assert [e["resource"]["resourceType"] for e in entries] == ["Questionnaire", "QuestionnaireResponse"]
    qr = entries[1]["resource"]
    assert qr["questionnaire"] == f"{entries[0]['resource']['url']}|{entries[0]['resource']['version']}"
    assert qr == prefilled_response(policy, case)
    assert len({e["fullUrl"] for e in entries}) == 2
    # deterministic
    assert json.dumps(pkg, sort_keys=True) == json.dumps(questionnaire_package(policy, case), sort_keys=True)


# ---- the pre-filled response ------------------------------------------------------------------------------------
def check_response(qr: dict, q: dict) -> None:
    """Valid, in progress, DTR profile, linkIds and nesting those of the questionnaire, answers of the right type."""
    assert validate_resource(qr) == []
    assert qr["status"] == "in-progress" and qr["meta"]["profile"] == [DTR_QUESTIONNAIRE_RESPONSE]
    qi, qp = items_by_link(q), parents(q)
    ids = question_link_ids(qr)
    assert len(ids) == len(set(ids))
    for link, parent in parents(qr).items():
        assert link in qi, link
        assert qp[link] == parent, link
    value_key = {"quantity": {"valueQuantity"}, "date": {"valueDate"}, "boolean": {"valueBoolean"},
                 "integer": {"valueInteger"}, "choice": {"valueCoding"}, "open-choice": {"valueCoding", "valueString"}}
    for link, item in items_by_link(qr).items():
        if qi[link]["type"] == "group":
            assert "answer" not in item and item["item"], link
            continue
        assert item["answer"], link
        if len(item["answer"]) > 1:
            assert qi[link].get("repeats") is True, link
        for a in item["answer"]:
            keys = {k for k in a if k.startswith("value")}
            assert len(keys) == 1 and keys <= value_key[qi[link]["type"]], (link, keys)
            assert a["extension"] == [{"url": EXT_INFORMATION_ORIGIN, "extension": [{"url": "source",
                                                                                      "valueCode": "auto"}]}]
            if "valueQuantity" in a:
                assert a["valueQuantity"]["system"] == UCUM and a["valueQuantity"]["code"]
            if "valueCoding" in a and "answerOption" in qi[link]:
                options = [o["valueCoding"]["code"] for o in qi[link]["answerOption"]]
                assert a["valueCoding"]["code"] in options or qi[link]["type"] == "open-choice", link


def qty(value, code, unit=None):
    return {"valueQuantity": {"value": value, "unit": unit or code, "system": UCUM, "code": code}}


def test_prefilled_pub01(policy, q):
    case = load_case_file(SCENARIOS / "PUB-01.yaml")
    qr = prefilled_response(policy, case)
    check_response(qr, q)
    assert qr["questionnaire"] == questionnaire_canonical(policy)
    assert qr["authored"] == "2027-01-11"
    assert qr["subject"]["identifier"]["value"] == "M-0001"
    got = answers(qr)
    assert got["I.A.2.taxonomy"] == [{"valueCoding": {"system": NUCC, "code": "207RH0003X",
                                                      "display": "hematology & oncology (internal medicine)"}}]
    assert got["I.A.3.birth_date"] == [{"valueDate": "1957-06-30"}]
    assert got["I.A.4.a.i.serum_m_protein.value"] == [qty(1.6, "g/dL")]
    assert got["I.A.4.a.i.serum_m_protein.date"] == [{"valueDate": "2027-01-03"}]
    assert got["I.A.4.b.progression_date"] == [{"valueDate": "2026-12-05"}]
    assert [a["valueCoding"]["code"] for a in got["I.A.4.basis"]] == ["I.A.4.a", "I.A.4.b"]
    assert got["I.A.5.prior_lines"] == [{"valueInteger": 4}]
    assert [a["valueCoding"]["code"] for a in got["I.A.5.prior_classes"]] == ["imid", "proteasome_inhibitor",
                                                                              "anti_cd38", "other_anti_myeloma"]
    assert got["I.A.10.dose"] == [qty(115, "10*6{cells}")]
    # nothing the case does not hold
    assert set(got) == {"I.A.2.taxonomy", "I.A.3.birth_date", "I.A.4.basis", "I.A.4.a.i.serum_m_protein.value",
                        "I.A.4.a.i.serum_m_protein.date", "I.A.4.b.progression_date", "I.A.5.prior_lines",
                        "I.A.5.prior_classes", "I.A.10.dose"}


def test_prefilled_pub09_free_light_chains(policy, q):
    case = load_case_file(SCENARIOS / "PUB-09.yaml")
    qr = prefilled_response(policy, case)
    check_response(qr, q)
    got = answers(qr)
    assert got["I.A.4.a.i.serum_m_protein.value"] == [qty(0.4, "g/dL")]
    assert got["I.A.4.a.ii.urine_m_protein.value"] == [qty(50, "mg/(24.h)", "mg/24 h")]
    assert got["I.A.4.a.iii.kappa_flc.value"] == [qty(45, "mg/dL")]
    assert got["I.A.4.a.iii.lambda_flc.value"] == [qty(1.2, "mg/dL")]
    for test in ("serum_m_protein", "urine_m_protein"):
        assert got[f"I.A.4.a.{'i' if test == 'serum_m_protein' else 'ii'}.{test}.date"] == [{"valueDate": "2027-01-03"}]
    for chain in ("kappa_flc", "lambda_flc"):
        assert got[f"I.A.4.a.iii.{chain}.date"] == [{"valueDate": "2027-01-03"}]
    # no assessment: no progression date, and only the measurable-disease branch is selected
    assert "I.A.4.b.progression_date" not in got and "I.A.4.b" not in items_by_link(qr)
    assert [a["valueCoding"]["code"] for a in got["I.A.4.basis"]] == ["I.A.4.a"]


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_scenario_prefills_a_valid_response(policy, q, path):
    case = load_case_file(path)
    check_response(prefilled_response(policy, case), q)


def test_prefill_reads_attestations_latest_labs_units_and_weight(policy, q):
    case = make_case(
        labs=[{"test": "serum_m_protein", "value": 9, "unit": "g/L", "date": "2026-12-20"},
              {"test": "serum_m_protein", "value": 16, "unit": "g/L", "date": "2027-01-05"},
              {"test": "serum_m_protein", "value": 3.0, "unit": "g/dL", "date": "2027-02-01"}],  # after receipt
        attestations={"no_prior_bcma": True, "no_prior_car_t": False, "no_cns_pathology": True, "prior_lines": 5,
                      "prior_classes": ["imid", "anti_cd38"]},
        member__weight={"value": 70000, "unit": "g"},
        request__dose={"value": 1.5, "unit": "10*6{cells}/kg"},
        prescriber={"npi": "1234567893", "specialty": "hematology"},
    )
    qr = prefilled_response(policy, case)
    check_response(qr, q)
    got = answers(qr)
    # the latest result on or before receipt, in the test's canonical unit
    assert got["I.A.4.a.i.serum_m_protein.value"] == [qty(1.6, "g/dL")]
    assert got["I.A.4.a.i.serum_m_protein.date"] == [{"valueDate": "2027-01-05"}]
    # attestations as given; stated lines and classes win over the history's count
    assert got["I.A.7.no_prior_bcma"] == [{"valueBoolean": True}]
    assert got["I.A.8.no_prior_car_t"] == [{"valueBoolean": False}]
    assert got["I.A.6.no_cns_pathology"] == [{"valueBoolean": True}]
    assert got["I.A.5.prior_lines"] == [{"valueInteger": 5}]
    assert [a["valueCoding"]["code"] for a in got["I.A.5.prior_classes"]] == ["imid", "anti_cd38"]
    assert got["I.A.10.dose"] == [qty(1.5, "10*6{cells}/kg")]
    assert got["I.A.10.weight"][0]["valueQuantity"]["code"] == "kg"
    assert got["I.A.10.weight"][0]["valueQuantity"]["value"] == 70
    assert got["I.A.2.taxonomy"] == [{"valueString": "hematology"}]
    # an earlier evaluation date sees only the earlier result
    early = answers(prefilled_response(policy, case, as_of=date(2027, 1, 1)))
    assert early["I.A.4.a.i.serum_m_protein.value"] == [qty(0.9, "g/dL")]


def test_prefill_of_a_case_that_holds_little(policy, q):
    case = make_case(drop=("prescriber", "labs", "therapies", "assessments", "history", "request__dose",
                           "member__birth_date"))
    qr = prefilled_response(policy, case)
    check_response(qr, q)
    assert "item" not in qr
    # a submitted but empty history is zero lines and no classes
    got = answers(prefilled_response(policy, make_case(therapies=[])))
    assert got["I.A.5.prior_lines"] == [{"valueInteger": 0}] and "I.A.5.prior_classes" not in got
