"""Terminology lookups: drugs (names, suffixes, brands, codes, aliases), drug classes, regimen acronyms,
ICD-10-CM CNS prefixes and exclusions, CNS findings in free text (with negation), provider taxonomies and
specialty words."""

from __future__ import annotations

import pytest

from priorauth.terminology import load_terminology, normalize_code, normalize_name


@pytest.fixture(scope="module")
def t():
    return load_terminology()


def generic(t, text):
    d = t.drug(text)
    return None if d is None else d.generic


# ---- drugs ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    # generic names, with and without the FDA four-letter suffix, any case
    ("lenalidomide", "lenalidomide"),
    ("isatuximab", "isatuximab"),
    ("isatuximab-irfc", "isatuximab"),
    ("Isatuximab-IRFC", "isatuximab"),
    ("teclistamab", "teclistamab"),
    ("teclistamab-cqyv", "teclistamab"),
    ("belantamab mafodotin-blmf", "belantamab mafodotin"),
    ("daratumumab and hyaluronidase-fihj", "daratumumab"),   # a formulation of daratumumab: one drug
    ("  Daratumumab  ", "daratumumab"),
    # brand names, case-insensitive, with trademark marks
    ("Tecvayli", "teclistamab"),
    ("TECVAYLI", "teclistamab"),
    ("tecvayli", "teclistamab"),
    ("Sarclisa", "isatuximab"),
    ("Velcade®", "bortezomib"),
    ("Darzalex Faspro", "daratumumab"),
    ("Darzalex", "daratumumab"),
    # RxNorm and HCPCS codes
    ("342369", "lenalidomide"),
    ("rxcui:342369", "lenalidomide"),
    ("J9041", "bortezomib"),
    ("j9041", "bortezomib"),
    ("J9145", "daratumumab"),
    ("Q2056", "ciltacabtagene autoleucel"),
    # aliases of the requested product
    ("anito-cel", "anitocabtagene autoleucel"),
    ("KITE-772", "anitocabtagene autoleucel"),
    ("kite-772", "anitocabtagene autoleucel"),
    ("anitocabtagene autoleucel", "anitocabtagene autoleucel"),
    ("cilta-cel", "ciltacabtagene autoleucel"),
    ("ide-cel", "idecabtagene vicleucel"),
    # product descriptions with strength and form
    ("Revlimid 25 mg capsules", "lenalidomide"),
    ("bortezomib (Velcade) injection", "bortezomib"),
    ("pomalidomide 4 mg oral capsule", "pomalidomide"),
])
def test_drug_lookup(t, text, expected):
    assert generic(t, text) == expected


@pytest.mark.parametrize("text", ["foozumab", "", "   ", "J9999", "999999", "25 mg capsules", "KITE-999", "VRd", "BVd"])
def test_unknown_drug_is_none(t, text):
    assert t.drug(text) is None


def test_a_name_and_its_codes_give_the_same_drug(t):
    assert t.drug("342369") is t.drug("Revlimid") is t.drug("lenalidomide")
    assert t.drug("J9041") is t.drug("Velcade") is t.drug("bortezomib")


# ---- classes -------------------------------------------------------------------------------------------------
def test_talquetamab_is_anti_myeloma_but_not_anti_bcma(t):
    d = t.drug("talquetamab-tgvs")
    assert d is not None and d.generic == "talquetamab"
    assert not d.has("anti_bcma")
    assert not d.has("car_t")
    assert t.is_anti_myeloma(d)


def test_cd19_car_t_is_car_t_but_not_anti_myeloma(t):
    for name in ("Yescarta", "axi-cel", "Kymriah", "Breyanzi", "Q2041"):
        d = t.drug(name)
        assert d is not None, name
        assert d.has("car_t"), name
        assert not d.has("anti_bcma"), name
        assert not t.is_anti_myeloma(d), name
        assert d.target == "CD19", name


def test_bcma_car_t_is_both_anti_bcma_and_car_t(t):
    for name in ("Carvykti", "Abecma", "anito-cel"):
        d = t.drug(name)
        assert d.has("anti_bcma") and d.has("car_t"), name
        assert t.is_anti_myeloma(d), name


@pytest.mark.parametrize("name, cls", [
    ("lenalidomide", "imid"), ("Pomalyst", "imid"), ("thalidomide", "imid"),
    ("bortezomib", "proteasome_inhibitor"), ("Kyprolis", "proteasome_inhibitor"), ("ixazomib", "proteasome_inhibitor"),
    ("daratumumab", "anti_cd38"), ("Darzalex Faspro", "anti_cd38"), ("isatuximab-irfc", "anti_cd38"),
    ("teclistamab", "anti_bcma"), ("elranatamab-bcmm", "anti_bcma"), ("Blenrep", "anti_bcma"),
    ("linvoseltamab", "anti_bcma"),
])
def test_drug_classes(t, name, cls):
    assert t.drug(name).has(cls)


def test_steroids_and_supportive_drugs_are_not_anti_myeloma(t):
    for name in ("dexamethasone", "prednisone", "zoledronic acid", "denosumab", "tocilizumab", "Actemra"):
        d = t.drug(name)
        assert d is not None, name
        assert not t.is_anti_myeloma(d), name


# ---- regimens ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("acronym", ["VRd", "vrd", "VRD", " VRd "])
def test_regimen_acronym_is_case_insensitive(t, acronym):
    assert t.regimen(acronym) == ("bortezomib", "lenalidomide", "dexamethasone")


def test_regimen_vtd_pace(t):
    expected = {"bortezomib", "thalidomide", "dexamethasone", "cisplatin", "doxorubicin", "cyclophosphamide", "etoposide"}
    assert set(t.regimen("VTD-PACE")) == expected
    assert set(t.regimen("vtd-pace")) == expected


def test_regimens_name_known_drugs(t):
    assert set(t.regimen("DPd")) == {"daratumumab", "pomalidomide", "dexamethasone"}
    assert set(t.regimen("KRd")) == {"carfilzomib", "lenalidomide", "dexamethasone"}
    assert set(t.regimen("SVd")) == {"selinexor", "bortezomib", "dexamethasone"}
    for acronym in t.regimen_names:
        for name in t.regimen(acronym):
            assert t.drug(name) is not None, (acronym, name)


@pytest.mark.parametrize("acronym", ["XYZ", "", "VRdd", "bortezomib"])
def test_unknown_regimen_is_none(t, acronym):
    assert t.regimen(acronym) is None


# ---- ICD-10-CM -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("code, group", [
    ("G40.909", "epilepsy_seizure"),
    ("G40909", "epilepsy_seizure"),
    ("g40.909", "epilepsy_seizure"),
    ("R56.9", "epilepsy_seizure"),
    ("G45.9", "stroke"),
    ("I63.9", "stroke"),
    ("Z86.73", "stroke"),
    ("S06.5X0A", "severe_brain_injury"),
    ("C79.31", "cns_myeloma"),
    ("F03.90", "dementia"),
    ("G20", "parkinsons"),
    ("G35", "other_serious_cns_disease"),
])
def test_cns_code_matches_by_prefix(t, code, group):
    m = t.cns_code(code)
    assert m is not None, code
    assert m.group == group
    assert m.matched == code


@pytest.mark.parametrize("code", [
    "S06.0X0A",   # concussion
    "S06.0",
    "R56.0",      # febrile convulsions
    "R56.00",
    "G45.4",      # transient global amnesia
    "I10",
    "C90.02",
    "E11.9",
])
def test_cns_code_exclusions_and_non_matches(t, code):
    assert t.cns_code(code) is None


def test_myeloma_groups(t):
    assert t.in_group("C90.02", "multiple_myeloma")
    assert t.in_group("c9002", "multiple_myeloma_in_relapse")
    assert not t.in_group("C90.00", "multiple_myeloma_in_relapse")
    assert not t.in_group("C90.10", "multiple_myeloma")   # plasma cell leukemia is not multiple myeloma here
    assert not t.in_group("C90.20", "multiple_myeloma")   # nor is a plasmacytoma
    assert t.in_group("C90.10", "plasma_cell_leukemia")


def test_normalizers():
    assert normalize_code(" c90.02 ") == "C9002"
    assert normalize_name("Isatuximab-IRFC") == "isatuximab"
    assert normalize_name("Velcade®") == "velcade"


# ---- CNS findings in text ------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", [
    "no history of seizures",
    "denies stroke",
    "family history of stroke",
    "seizure disorder ruled out",
    "febrile seizure as a child",
    "concussion 2010",
    "transient global amnesia 2018",
    "mother had dementia",
    "essential hypertension",
    "type 2 diabetes mellitus",
    "",
])
def test_cns_text_no_match(t, text):
    assert [m.group for m in t.cns_text(text)] == []


@pytest.mark.parametrize("text, groups", [
    ("history of TIA 2019; no seizures", ["stroke"]),
    ("epilepsy", ["epilepsy_seizure"]),
    ("Seizures since 2015", ["epilepsy_seizure"]),
    ("history of stroke", ["stroke"]),
    ("hx of CVA 2015", ["stroke"]),
    ("no seizures, but history of stroke", ["stroke"]),
    ("family history of stroke; personal history of TIA", ["stroke"]),
    ("Parkinson's disease", ["parkinsons"]),
    ("multiple sclerosis", ["other_serious_cns_disease"]),
    ("leptomeningeal myeloma", ["cns_myeloma"]),
    ("TIA ruled out; epilepsy since 2001", ["epilepsy_seizure"]),
])
def test_cns_text_matches(t, text, groups):
    assert [m.group for m in t.cns_text(text)] == groups


def test_cns_text_reports_the_words_that_matched(t):
    (m,) = t.cns_text("history of TIA 2019; no seizures")
    assert m.matched == "tia"
    assert "stroke" in m.label


def test_cns_text_needs_whole_words(t):
    assert [m.group for m in t.cns_text("Patricia, tiara")] == []   # 'tia' inside other words is not a TIA
    assert [m.group for m in t.cns_text("Patricia; TIA")] == ["stroke"]


# ---- providers -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("code, expected", [
    ("207RH0003X", True),
    ("207rh0003x", True),
    ("207RH0000X", True),
    ("207RX0202X", True),
    ("2080P0207X", True),
    ("2085R0001X", True),
    ("207R00000X", False),
    ("207Q00000X", False),
    ("363L00000X", False),
    ("123456789X", None),
])
def test_taxonomy_heme_onc(t, code, expected):
    assert t.is_heme_onc_taxonomy(code) is expected


@pytest.mark.parametrize("words", [
    "hematology", "Hematology/Oncology", "heme-onc", "Hem/Onc", "medical oncologist", "Oncology",
    "bone marrow transplant", "Transplant and Cellular Therapy", "pediatric hematology-oncology", "radiation oncology",
])
def test_specialty_words_heme_onc(t, words):
    assert t.is_heme_onc_words(words) is True


@pytest.mark.parametrize("words", ["cardiology", "internal medicine", "family medicine", "nephrology", "neurology", ""])
def test_specialty_words_other(t, words):
    assert t.is_heme_onc_words(words) is False


def test_lab_loinc(t):
    assert t.lab_by_loinc("33358-3") == "serum_m_protein"
    assert t.lab_by_loinc("36916-5") == "kappa_flc"
    assert t.lab_by_loinc("33944-0") == "lambda_flc"
    assert t.lab_by_loinc("0000-0") is None


# ---- negation scope, pseudo-negation, plurals, answers ----------------------------------------------------------
@pytest.mark.parametrize("text,group", [
    ("stroke not ruled out", "stroke"),
    ("stroke cannot be excluded", "stroke"),
    ("no residual deficits after stroke in 2019", "stroke"),
    ("patient without deficits following CVA", "stroke"),
    ("denies headache and has epilepsy", "epilepsy_seizure"),
    ("two strokes in 2019", "stroke"),
    ("recurrent TIAs", "stroke"),
    ("prior CVAs", "stroke"),
    ("seizures: yes", "epilepsy_seizure"),
])
def test_cns_text_finds_what_negation_does_not_reach(text, group):
    assert [m.group for m in load_terminology().cns_text(text)] == [group]


@pytest.mark.parametrize("text", ["seizures: none", "denies any prior history of stroke", "no stroke, no seizure",
                                  "without evidence of leptomeningeal disease", "negative for CNS involvement"])
def test_cns_text_negated(text):
    assert load_terminology().cns_text(text) == ()


def test_suffix_names_the_formulation_it_belongs_to():
    t = load_terminology()
    assert t.drug("daratumumab-fihj") is t.drug("daratumumab")
    assert t.resolve("daratumumab-fihj").formulation == "daratumumab and hyaluronidase-fihj"
    assert t.resolve("daratumumab").formulation is None
