"""`priorauth terminology lookup` and the integrity of the drug vocabulary's data: every entry has a source and a
status, no key names two ingredients, regimens name known generics, a myeloma-directed CAR-T is anti-myeloma."""

from __future__ import annotations

import copy
import json

import pytest
from typer.testing import CliRunner

from priorauth.cli import app
from priorauth.terminology import _read, load_terminology
from priorauth.terminology.drugs import STATUSES, DrugVocabulary, read_drug_data

runner = CliRunner()


def lookup(*args: str):
    return runner.invoke(app, ["terminology", "lookup", *args])


# ---- the command -----------------------------------------------------------------------------------------------
def test_lookup_of_names_that_resolve_exits_0():
    res = lookup("dara SC", "PF-06863135", "Dara-VRd")
    assert res.exit_code == 0, res.output
    out = res.output
    assert "'dara SC': a drug" in out
    assert "matched by: clinic abbreviation, route/strength words removed (normalized key 'dara')" in out
    assert "formulation: daratumumab and hyaluronidase-fihj; route: subcutaneous" in out
    assert "daratumumab: anti-CD38 monoclonal antibody; target CD38; anti-myeloma (makes a line)" in out
    assert "'PF-06863135': a drug" in out and "elranatamab: BCMA-directed therapy; target BCMA; bispecific" in out
    assert "regimen acronym: D-VRd" in out
    assert "status: verified" in out


def test_lookup_of_an_unrecognized_name_exits_1_with_the_key_and_the_hint():
    res = lookup("lenalidomide", "anti-BCMA XYZ-4417")
    assert res.exit_code == 1
    assert "'anti-BCMA XYZ-4417': not recognized" in res.output
    assert "normalized key tried: 'anti-bcma xyz-4417'" in res.output
    assert "no generic name, brand, development code, RxNorm or HCPCS code, clinic abbreviation or regimen acronym" in res.output
    assert "hint: the name suggests a BCMA-directed therapy" in res.output
    assert "CAR-T" not in res.output


def test_lookup_of_an_ambiguous_acronym_shows_every_meaning_and_exits_1():
    res = lookup("BVd")
    assert res.exit_code == 1
    assert "'BVd': an ambiguous regimen acronym" in res.output
    assert "meaning 1: belantamab mafodotin, bortezomib, dexamethasone" in res.output
    assert "meaning 2: bendamustine, bortezomib, dexamethasone" in res.output


def test_lookup_json():
    res = lookup("--json", "Darzalex Faspro", "xyz-cel", "BVd")
    assert res.exit_code == 1
    data = json.loads(res.output)
    assert [d["kind"] for d in data] == ["drug", "unrecognized", "ambiguous"]
    dara = data[0]
    assert dara["recognized"] is True
    assert dara["rule"] == "brand name"
    assert dara["normalized"] == "darzalex faspro"
    assert dara["formulation"] == "daratumumab and hyaluronidase-fihj"
    (ingredient,) = dara["drugs"]
    assert ingredient["generic"] == "daratumumab"
    assert ingredient["classes"] == ["anti_cd38"]
    assert ingredient["class_labels"] == ["anti-CD38 monoclonal antibody"]
    assert ingredient["target"] == "CD38" and ingredient["anti_myeloma"] is True
    assert ingredient["status"] == "verified" and "BLA 761145" in ingredient["source"]
    assert data[1]["hints"] == ["car_t"] and data[1]["hint_text"] == ["the name suggests a CAR-T"]
    assert [[d["generic"] for d in m] for m in data[2]["meanings"]] == [
        ["belantamab mafodotin", "bortezomib", "dexamethasone"], ["bendamustine", "bortezomib", "dexamethasone"]]


def test_lookup_needs_a_name():
    assert lookup().exit_code != 0


# ---- the data --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data():
    return read_drug_data(_read)


def test_every_entry_has_a_source_and_a_status(data):
    for entry in data["drugs"]:
        assert entry.get("source"), entry["generic"]
        assert all(s in data["sources"] for s in ([entry["source"]] if isinstance(entry["source"], str) else entry["source"]))
        assert entry.get("status") in STATUSES, entry["generic"]
    for acronym, spec in data["regimens"].items():
        assert spec.get("source") and spec.get("status") in STATUSES, acronym
    for drug in load_terminology().vocabulary.drugs:
        assert drug.source and drug.status in STATUSES, drug.generic


def test_every_source_is_described_in_the_docs(data):
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "terminology-sources.md").read_text(encoding="utf-8")
    for key in data["sources"]:
        assert f"`{key}`" in doc, key


def test_the_bundled_data_loads_and_names_no_key_twice(data):
    vocab = DrugVocabulary(data)   # raises on any key that names two ingredients
    assert len(vocab.drugs) > 500


_FAKE = {"generic": "fakeomab", "classes": ["general"], "source": ["pub"], "status": "unverified"}


@pytest.mark.parametrize("entry, message", [
    ({**_FAKE, "brands": ["Velcade"]}, "'velcade' names both bortezomib and fakeomab"),
    ({**_FAKE, "aliases": ["Dara VRd"]}, "'daravrd' names both fakeomab and regimen D-VRd"),   # punctuation ignored
    ({**_FAKE, "dev_codes": ["PF 06863135"]}, "'pf06863135' names both elranatamab and fakeomab"),
    ({k: v for k, v in _FAKE.items() if k != "source"}, "drug 'fakeomab': no source"),
    ({k: v for k, v in _FAKE.items() if k != "status"}, "drug 'fakeomab': status None"),
    ({**_FAKE, "generic": "fakecabtagene autoleucel", "classes": ["car_t"], "target": "GPRC5D"}, "treats myeloma"),
    ({**_FAKE, "generic": "lenalidomide"}, "'lenalidomide' is listed twice"),
])
def test_a_bad_drug_entry_is_refused(data, entry, message):
    bad = copy.deepcopy(data)
    bad["drugs"].append(entry)
    with pytest.raises(ValueError, match=message):
        DrugVocabulary(bad)


def test_regimens_name_generics_of_the_vocabulary(data):
    bad = copy.deepcopy(data)
    bad["regimens"]["XYd"] = {"drugs": ["len", "dexamethasone"], "source": ["pub"], "status": "unverified"}
    with pytest.raises(ValueError, match="'len' is not the generic name"):
        DrugVocabulary(bad)


def test_unverified_codes_are_never_matched(data):
    changed = copy.deepcopy(data)
    entry = next(e for e in changed["drugs"] if e["generic"] == "lenalidomide")
    entry["code_status"] = "unverified"
    vocab = DrugVocabulary(changed)
    assert vocab.resolve("342369").kind == "unrecognized"
    assert vocab.resolve("lenalidomide").kind == "drug"


def test_the_public_class_keys_are_kept():
    from priorauth.case import DRUG_CLASS_KEYS

    term = load_terminology()
    assert set(DRUG_CLASS_KEYS) <= set(term.drug_classes)
    assert {"imid", "proteasome_inhibitor", "anti_cd38", "anti_bcma", "other_anti_myeloma"} <= term.anti_myeloma_classes
    assert "car_t" not in term.anti_myeloma_classes
