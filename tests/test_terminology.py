"""Terminology lookups: drugs (names, suffixes, brands, codes, aliases), drug classes, regimen acronyms,
ICD-10-CM CNS prefixes and exclusions, provider taxonomies and specialty words (CNS findings in free text:
test_cns_text.py)."""

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


def test_suffix_names_the_formulation_it_belongs_to():
    t = load_terminology()
    assert t.drug("daratumumab-fihj") is t.drug("daratumumab")
    assert t.resolve("daratumumab-fihj").formulation == "daratumumab and hyaluronidase-fihj"
    assert t.resolve("daratumumab").formulation is None


# ---- products, open-world: spellings, formulations, codes, parentheses, ambiguity, hints -----------------------
def names(r):
    return [d.generic for d in r.drugs]


D_VRD = ["daratumumab", "bortezomib", "lenalidomide", "dexamethasone"]


@pytest.mark.parametrize("text, drugs", [
    ("VRd", ["bortezomib", "lenalidomide", "dexamethasone"]),
    ("RVd", ["bortezomib", "lenalidomide", "dexamethasone"]),
    ("VRD", ["bortezomib", "lenalidomide", "dexamethasone"]),
    ("D-VRd", D_VRD), ("DVRd", D_VRD), ("Dara-VRd", D_VRD), ("D-RVd", D_VRD), ("D VRd", D_VRD),
    ("dara/VRd", D_VRD), ("Dara VRd", D_VRD), ("dara-vrd", D_VRD), ("D–VRd", D_VRD),
    ("DRd", ["daratumumab", "lenalidomide", "dexamethasone"]),
    ("Dara-Rd", ["daratumumab", "lenalidomide", "dexamethasone"]),
    ("Dara-Vd", ["daratumumab", "bortezomib", "dexamethasone"]),
    ("DVd", ["daratumumab", "bortezomib", "dexamethasone"]),
    ("DPd", ["daratumumab", "pomalidomide", "dexamethasone"]),
    ("Dara-Pd", ["daratumumab", "pomalidomide", "dexamethasone"]),
    ("DKd", ["daratumumab", "carfilzomib", "dexamethasone"]),
    ("Dara-Kd", ["daratumumab", "carfilzomib", "dexamethasone"]),
    ("KRd", ["carfilzomib", "lenalidomide", "dexamethasone"]),
    ("Kd", ["carfilzomib", "dexamethasone"]),
    ("KPd", ["carfilzomib", "pomalidomide", "dexamethasone"]),
    ("KCd", ["carfilzomib", "cyclophosphamide", "dexamethasone"]),
    ("Isa-Kd", ["isatuximab", "carfilzomib", "dexamethasone"]),
    ("IsaKd", ["isatuximab", "carfilzomib", "dexamethasone"]),
    ("Isa-Pd", ["isatuximab", "pomalidomide", "dexamethasone"]),
    ("IsaPd", ["isatuximab", "pomalidomide", "dexamethasone"]),
    ("Elo-Pd", ["elotuzumab", "pomalidomide", "dexamethasone"]),
    ("EPd", ["elotuzumab", "pomalidomide", "dexamethasone"]),
    ("EloPd", ["elotuzumab", "pomalidomide", "dexamethasone"]),
    ("Elo-Rd", ["elotuzumab", "lenalidomide", "dexamethasone"]),
    ("ERd", ["elotuzumab", "lenalidomide", "dexamethasone"]),
    ("EloRd", ["elotuzumab", "lenalidomide", "dexamethasone"]),
    ("VCd", ["bortezomib", "cyclophosphamide", "dexamethasone"]),
    ("CyBorD", ["bortezomib", "cyclophosphamide", "dexamethasone"]),
    ("VTd", ["bortezomib", "thalidomide", "dexamethasone"]),
    ("VTD-PACE", ["bortezomib", "thalidomide", "dexamethasone", "cisplatin", "doxorubicin", "cyclophosphamide", "etoposide"]),
    ("D-PACE", ["dexamethasone", "cisplatin", "doxorubicin", "cyclophosphamide", "etoposide"]),
    ("DCEP", ["dexamethasone", "cyclophosphamide", "etoposide", "cisplatin"]),
    ("IRd", ["ixazomib", "lenalidomide", "dexamethasone"]),
    ("Pd", ["pomalidomide", "dexamethasone"]),
    ("PVd", ["pomalidomide", "bortezomib", "dexamethasone"]),
    ("PCd", ["pomalidomide", "cyclophosphamide", "dexamethasone"]),
    ("Rd", ["lenalidomide", "dexamethasone"]),
    ("Vd", ["bortezomib", "dexamethasone"]),
    ("SVd", ["selinexor", "bortezomib", "dexamethasone"]),
    ("SPd", ["selinexor", "pomalidomide", "dexamethasone"]),
    ("SDd", ["selinexor", "daratumumab", "dexamethasone"]),
    ("MPV", ["bortezomib", "melphalan", "prednisone"]),
    ("VMP", ["bortezomib", "melphalan", "prednisone"]),
    ("MPT", ["melphalan", "prednisone", "thalidomide"]),
    ("D-VMP", ["daratumumab", "bortezomib", "melphalan", "prednisone"]),
    ("Tec-Dara", ["teclistamab", "daratumumab"]),
    ("Teclistamab-Dara", ["teclistamab", "daratumumab"]),
    ("Bela-Pd", ["belantamab mafodotin", "pomalidomide", "dexamethasone"]),
])
def test_regimen_spellings(t, text, drugs):
    r = t.resolve(text)
    assert r.kind == "regimen", r.reason
    assert names(r) == drugs
    assert "regimen acronym" in r.rule
    assert t.regimen(text) == tuple(drugs)


def test_formulations_of_one_ingredient_are_one_drug(t):
    dara = t.drug("daratumumab")
    for name in ("Darzalex", "Darzalex Faspro", "daratumumab and hyaluronidase-fihj", "daratumumab-hyaluronidase",
                 "dara SC", "daratumumab IV", "J9144", "J9145", "2372199", "1721947"):
        assert t.drug(name) is dara, name
    assert t.resolve("Darzalex Faspro").formulation == "daratumumab and hyaluronidase-fihj"
    assert t.resolve("dara SC").formulation == "daratumumab and hyaluronidase-fihj"
    assert t.resolve("J9144").formulation == "daratumumab and hyaluronidase-fihj"
    assert t.resolve("Darzalex").formulation == "daratumumab (intravenous)"
    bort = t.drug("bortezomib")
    assert t.drug("bortezomib SQ") is t.drug("bortezomib IV") is t.drug("Velcade") is bort
    assert t.resolve("bortezomib SQ").formulation == "bortezomib (subcutaneous)"
    assert t.resolve("bortezomib SQ").route == "subcutaneous"
    doxo = t.drug("doxorubicin")
    assert t.drug("liposomal doxorubicin") is t.drug("Doxil") is t.drug("pegylated liposomal doxorubicin") is doxo
    assert t.resolve("Doxil").formulation == "doxorubicin hydrochloride liposome"
    assert t.drug("Darzalex Faspro").brands == ("Darzalex", "Darzalex Faspro")


def test_a_formulation_in_a_regimen_with_its_ingredient_is_one_drug(t):
    r = t.resolve("Darzalex Faspro + daratumumab + pom + dex")
    assert names(r) == ["daratumumab", "pomalidomide", "dexamethasone"]


@pytest.mark.parametrize("abbreviation, generic", [
    ("dex", "dexamethasone"), ("dexa", "dexamethasone"), ("len", "lenalidomide"), ("lena", "lenalidomide"),
    ("pom", "pomalidomide"), ("poma", "pomalidomide"), ("bort", "bortezomib"), ("bortez", "bortezomib"),
    ("carfilz", "carfilzomib"), ("dara", "daratumumab"), ("isa", "isatuximab"), ("elo", "elotuzumab"),
    ("cy", "cyclophosphamide"), ("Cytoxan", "cyclophosphamide"), ("mel", "melphalan"), ("thal", "thalidomide"),
    ("ixa", "ixazomib"), ("sel", "selinexor"), ("tec", "teclistamab"), ("elra", "elranatamab"),
    ("talq", "talquetamab"), ("pred", "prednisone"), ("benda", "bendamustine"), ("ven", "venetoclax"),
    ("pano", "panobinostat"), ("melflufen", "melphalan flufenamide"), ("toci", "tocilizumab"), ("DEX", "dexamethasone"),
])
def test_clinic_abbreviations(t, abbreviation, generic):
    r = t.resolve(abbreviation)
    assert r.kind == "drug" and names(r) == [generic]
    assert r.rule.startswith(("clinic abbreviation", "brand name", "other name"))


@pytest.mark.parametrize("text, generic", [
    ("bortezomib SQ", "bortezomib"), ("dara SC", "daratumumab"), ("dexamethasone PO", "dexamethasone"),
    ("bortezomib subcutaneous", "bortezomib"), ("carfilzomib IV", "carfilzomib"), ("ixazomib citrate", "ixazomib"),
    ("melphalan hydrochloride", "melphalan"), ("bendamustine HCl injection", "bendamustine"),
    ("panobinostat lactate", "panobinostat"), ("venetoclax tablets", "venetoclax"), ("selinexor 20 mg", "selinexor"),
    ("dexamethasone 40 mg PO weekly", "dexamethasone"), ("Pomalyst 4 mg capsules", "pomalidomide"),
    ("dexamethasone sodium phosphate 4 mg IV", "dexamethasone"), ("Kyprolis™", "carfilzomib"),
    ("VELCADE®", "bortezomib"), ("Darzalex Faspro® 1,800 mg/30,000 units", "daratumumab"),
    ("anito-cel 115 x 10^6 cells", "anitocabtagene autoleucel"), ("Tecvayli (teclistamab-cqyv)", "teclistamab"),
])
def test_route_salt_strength_and_marks_are_removed(t, text, generic):
    r = t.resolve(text)
    assert r.kind == "drug", r.reason
    assert names(r) == [generic]


@pytest.mark.parametrize("text, generic", [
    ("isatuximab-irfc", "isatuximab"), ("teclistamab-cqyv", "teclistamab"), ("elranatamab-bcmm", "elranatamab"),
    ("linvoseltamab-gcpt", "linvoseltamab"), ("talquetamab-tgvs", "talquetamab"),
    ("belantamab mafodotin-blmf", "belantamab mafodotin"), ("filgrastim-sndz", "filgrastim"),
    ("pegfilgrastim-jmdb", "pegfilgrastim"), ("tocilizumab-bavi", "tocilizumab"), ("denosumab-bbdz", "denosumab"),
])
def test_fda_suffix(t, text, generic):
    r = t.resolve(text)
    assert names(r) == [generic]
    assert "suffix" in r.rule


@pytest.mark.parametrize("code, generic", [
    ("PF-06863135", "elranatamab"), ("PF06863135", "elranatamab"), ("PF 06863135", "elranatamab"),
    ("pf-06863135", "elranatamab"), ("KITE-772", "anitocabtagene autoleucel"), ("KITE772", "anitocabtagene autoleucel"),
    ("KITE 772", "anitocabtagene autoleucel"), ("CART-ddBCMA", "anitocabtagene autoleucel"),
    ("JNJ-4528", "ciltacabtagene autoleucel"), ("JNJ4528", "ciltacabtagene autoleucel"),
    ("JNJ-68284528", "ciltacabtagene autoleucel"), ("LCAR-B38M", "ciltacabtagene autoleucel"),
    ("bb2121", "idecabtagene vicleucel"), ("REGN5458", "linvoseltamab"), ("REGN-5458", "linvoseltamab"),
    ("ABBV-383", "etentamig"), ("ABBV383", "etentamig"), ("TNB-383B", "etentamig"),
    ("JNJ-64007957", "teclistamab"), ("JNJ-64407564", "talquetamab"), ("GSK2857916", "belantamab mafodotin"),
    ("KPT-330", "selinexor"), ("KPT 330", "selinexor"), ("SAR650984", "isatuximab"), ("CT053", "zevorcabtagene autoleucel"),
    ("CT103A", "equecabtagene autoleucel"), ("CT-103A", "equecabtagene autoleucel"), ("IBI326", "equecabtagene autoleucel"),
    ("BMS-986393", "arlocabtagene autoleucel"), ("CC 95266", "arlocabtagene autoleucel"), ("BFCR4350A", "cevostamab"),
    ("RG6160", "cevostamab"), ("RG6234", "forimtamig"), ("CC-92480", "mezigdomide"), ("CC-220", "iberdomide"),
    ("CC-93269", "alnuctamab"),
])
def test_development_codes_with_and_without_hyphens(t, code, generic):
    r = t.resolve(code)
    assert r.kind == "drug" and names(r) == [generic], r.reason
    assert r.rule.startswith("development code")


@pytest.mark.parametrize("name, generic", [
    ("anito-cel", "anitocabtagene autoleucel"), ("zevor-cel", "zevorcabtagene autoleucel"),
    ("eque-cel", "equecabtagene autoleucel"), ("Fucaso", "equecabtagene autoleucel"),
    ("arlo-cel", "arlocabtagene autoleucel"), ("etentamig", "etentamig"), ("cevostamab", "cevostamab"),
    ("forimtamig", "forimtamig"), ("alnuctamab", "alnuctamab"), ("Lynozyfic", "linvoseltamab"),
    ("Blenrep", "belantamab mafodotin"), ("Elrexfio", "elranatamab"), ("Talvey", "talquetamab"),
    ("Empliciti", "elotuzumab"), ("Xpovio", "selinexor"), ("Farydak", "panobinostat"), ("Pepaxto", "melphalan flufenamide"),
    ("Evomela", "melphalan"), ("Treanda", "bendamustine"), ("carmustine", "carmustine"), ("BCNU", "carmustine"),
    ("vincristine", "vincristine"), ("etoposide", "etoposide"), ("cisplatin", "cisplatin"), ("Venclexta", "venetoclax"),
])
def test_anti_myeloma_agents_by_name(t, name, generic):
    d = t.drug(name)
    assert d is not None and d.generic == generic
    assert t.is_anti_myeloma(d), name


@pytest.mark.parametrize("name, target, anti_bcma, car_t", [
    ("etentamig", "BCMA", True, False), ("linvoseltamab", "BCMA", True, False), ("anito-cel", "BCMA", True, True),
    ("zevor-cel", "BCMA", True, True), ("eque-cel", "BCMA", True, True), ("Carvykti", "BCMA", True, True),
    ("talquetamab", "GPRC5D", False, False), ("forimtamig", "GPRC5D", False, False),
    ("arlocabtagene autoleucel", "GPRC5D", False, True), ("cevostamab", "FcRH5", False, False),
    ("elotuzumab", "SLAMF7", False, False), ("isatuximab", "CD38", False, False),
])
def test_targets_decide_bcma_and_car_t(t, name, target, anti_bcma, car_t):
    d = t.drug(name)
    assert d.target == target
    assert d.has("anti_bcma") is anti_bcma
    assert d.has("car_t") is car_t
    assert t.is_anti_myeloma(d)


def test_celmods_are_anti_myeloma_but_not_imids(t):
    for name in ("iberdomide", "mezigdomide", "CC-92480"):
        d = t.drug(name)
        assert not d.has("imid"), name
        assert d.has("other_anti_myeloma") and t.is_anti_myeloma(d), name


def test_cd19_car_t_makes_no_line_but_is_a_car_t(t):
    for name in ("Yescarta", "tisa-cel", "KTE-X19", "JCAR017", "obe-cel"):
        d = t.drug(name)
        assert d.has("car_t") and d.target == "CD19" and not t.is_anti_myeloma(d), name


@pytest.mark.parametrize("text, drugs, rule", [
    ("VRd (bortezomib, lenalidomide, dexamethasone)", ["bortezomib", "lenalidomide", "dexamethasone"],
     "acronym with its drugs in parentheses"),
    ("Dara-Vd (daratumumab, bortezomib, dexamethasone)", ["daratumumab", "bortezomib", "dexamethasone"],
     "acronym with its drugs in parentheses"),
    ("KRd (Kyprolis, Revlimid, dex)", ["carfilzomib", "lenalidomide", "dexamethasone"], "acronym with its drugs in parentheses"),
    ("DRd (Darzalex Faspro)", ["daratumumab", "lenalidomide", "dexamethasone"], "acronym with some of its drugs in parentheses"),
    ("Kd (weekly)", ["carfilzomib", "dexamethasone"], "regimen acronym, words in parentheses add nothing"),
])
def test_parentheses_that_agree(t, text, drugs, rule):
    r = t.resolve(text)
    assert r.kind == "regimen" and names(r) == drugs
    assert r.rule == rule
    assert r.reason == ""


def test_parentheses_that_disagree_are_used_and_said(t):
    r = t.resolve("VRd (bortezomib, carfilzomib, dexamethasone)")
    assert r.kind == "regimen"
    assert names(r) == ["bortezomib", "carfilzomib", "dexamethasone"]
    assert "disagree" in r.rule
    assert "does not agree with 'vrd' (bortezomib, lenalidomide, dexamethasone)" in r.reason
    r = t.resolve("bortezomib (Kyprolis)")
    assert names(r) == ["carfilzomib"] and "does not agree" in r.reason


def test_parentheses_with_an_unknown_drug_leave_the_entry_unrecognized(t):
    r = t.resolve("KRd (plus XYZ-4417)")
    assert r.kind == "unrecognized"
    assert "'xyz-4417' in parentheses is not recognized" in r.reason
    r = t.resolve("XYZ-4417 (bortezomib)")
    assert r.kind == "unrecognized"
    assert "the name before the parentheses ('xyz-4417') is not recognized" in r.reason


def test_ambiguous_acronym_alone(t):
    r = t.resolve("BVd")
    assert r.kind == "ambiguous" and not r.recognized
    assert names(r) == ["bortezomib", "dexamethasone"]
    assert [[d.generic for d in m] for m in r.meanings] == [
        ["belantamab mafodotin", "bortezomib", "dexamethasone"], ["bendamustine", "bortezomib", "dexamethasone"]]
    assert "more than one usual meaning" in r.reason and "bendamustine" in r.reason
    assert t.regimen("BVd") is None and t.drug("BVd") is None
    assert "BVd" in t.ambiguous_regimen_names and "BVd" not in t.regimen_names


@pytest.mark.parametrize("text, first", [
    ("BVd (bendamustine, bortezomib, dexamethasone)", "bendamustine"),
    ("BVd (belantamab mafodotin, bortezomib, dexamethasone)", "belantamab mafodotin"),
    ("BVd (Blenrep)", "belantamab mafodotin"),
    ("BVd + belantamab", "belantamab mafodotin"),
    ("BPd (belantamab, pomalidomide, dex)", "belantamab mafodotin"),
])
def test_ambiguous_acronym_decided_by_the_drugs_beside_it(t, text, first):
    r = t.resolve(text)
    assert r.kind == "regimen", r.reason
    assert names(r)[0] == first
    assert "decided" in r.rule


def test_ambiguous_acronym_with_drugs_that_decide_nothing_stays_ambiguous(t):
    assert t.resolve("BVd (bortezomib, dexamethasone)").kind == "ambiguous"
    assert t.resolve("BVd", beside=["dexamethasone"]).kind == "ambiguous"
    decided = t.resolve("BVd", beside=["bendamustine"])
    assert decided.kind == "regimen" and names(decided)[0] == "bendamustine"


@pytest.mark.parametrize("text, hints", [
    ("anti-BCMA XYZ-4417", {"anti_bcma"}),
    ("XYZ-4417", set()),
    ("BCMAxCD3 ABC-12", {"anti_bcma"}),
    ("XYZ CAR-T", {"car_t"}),
    ("XYZ CAR T", {"car_t"}),
    ("CART-XYZ19", {"car_t"}),
    ("anti-BCMA CAR", {"anti_bcma", "car_t"}),
    ("xyz-cel", {"car_t"}),
    ("novo-cel", {"car_t"}),
    ("fooleucel", {"car_t"}),
    ("zorcabtagene", {"car_t"}),
    ("Cartilage extract", set()),
    ("Carvedilolx", set()),
])
def test_name_hints_for_unrecognized_names(t, text, hints):
    r = t.resolve(text)
    assert r.kind == "unrecognized"
    assert set(r.hints) == hints
    assert set(t.name_hints(text)) == hints
    if "anti_bcma" in hints:
        assert "the name suggests a BCMA-directed therapy" in r.reason
    if "car_t" in hints:
        assert "a CAR-T" in r.reason


def test_recognized_names_carry_no_hints(t):
    assert t.resolve("CART-ddBCMA").hints == frozenset()
    assert t.resolve("cilta-cel").hints == frozenset()


@pytest.mark.parametrize("name, cls", [
    ("acyclovir", "supportive"), ("valacyclovir", "supportive"), ("famciclovir", "supportive"),
    ("entecavir", "supportive"), ("Bactrim DS", "supportive"), ("TMP-SMX", "supportive"), ("levofloxacin", "supportive"),
    ("fluconazole", "supportive"), ("posaconazole", "supportive"), ("zoledronic acid", "supportive"),
    ("Zometa", "supportive"), ("pamidronate", "supportive"), ("Xgeva", "supportive"), ("filgrastim", "supportive"),
    ("Neulasta", "supportive"), ("pegfilgrastim-cbqv", "supportive"), ("IVIG", "supportive"), ("Privigen", "supportive"),
    ("ondansetron 8 mg ODT", "supportive"), ("aspirin 81 mg", "supportive"), ("apixaban", "supportive"),
    ("rivaroxaban", "supportive"), ("enoxaparin", "supportive"), ("warfarin", "supportive"),
    ("levetiracetam", "supportive"), ("Keppra", "supportive"), ("tocilizumab", "il6_blocker"), ("anakinra", "supportive"),
    ("siltuximab", "supportive"), ("plerixafor", "supportive"), ("fludarabine", "lymphodepleting"),
    ("hydrocortisone", "steroid"), ("methylprednisolone", "steroid"), ("Solu-Medrol", "steroid"),
    ("lisinopril", "general"), ("metformin", "general"), ("atorvastatin 40 mg", "general"), ("amlodipine", "general"),
    ("levothyroxine", "general"), ("omeprazole", "general"), ("Synthroid", "general"), ("losartan potassium", "general"),
    ("metoprolol succinate ER", "general"), ("Eliquis", "supportive"), ("sertraline", "general"), ("HCTZ", "general"),
])
def test_supportive_and_common_drugs_are_recognized_and_not_anti_myeloma(t, name, cls):
    d = t.drug(name)
    assert d is not None, name
    assert d.has(cls), (name, d.classes)
    assert not t.is_anti_myeloma(d), name


def test_many_common_drugs_are_known(t):
    general = [d for d in t.vocabulary.drugs if d.has("general")]
    assert len(general) >= 300


@pytest.mark.parametrize("text", ["XYZ-4417", "foozumab", "ABC-123 trial drug", "Flu-XYZ", "VRdd", "Q9999"])
def test_unrecognized_names_say_why(t, text):
    r = t.resolve(text)
    assert r.kind == "unrecognized" and not r.recognized and r.drugs == ()
    assert "is not a product priorauth recognizes" in r.reason or "knows no product by that code" in r.reason
    assert r.normalized


def test_a_huge_name_fails_quickly_and_is_not_kept(t):
    vocab = t.vocabulary
    before = len(vocab._memo)
    name = "bortezomib " + "x" * 1_000_000
    r = t.resolve(name)
    assert r.kind == "unrecognized"
    assert len(r.reason) < 600            # the name is shortened in the sentence
    assert len(vocab._memo) == before     # a name this long is never memoized
    r = t.resolve("(" * 200_000 + "bortezomib")
    assert r.kind == "drug" and names(r) == ["bortezomib"]
    assert all(len(k) <= 256 for k in vocab._memo)


def test_the_memo_is_bounded(t):
    from priorauth.terminology import drugs as drugs_module

    assert drugs_module._MEMO_LIMIT <= 100_000
    assert drugs_module._MEMO_KEY_LIMIT <= 256


def test_drug_codes_follow_the_formulation(t):
    assert t.drug_codes("Darzalex Faspro").rxnorm == ("2372199",)
    assert t.drug_codes("Darzalex Faspro").hcpcs == ("J9144",)
    assert t.drug_codes("daratumumab").hcpcs == ("J9145",)
    assert t.drug_codes("dara SC").display == "daratumumab and hyaluronidase-fihj"
    assert t.drug_codes("lisinopril") is None


@pytest.mark.parametrize("text, generic, formulation", [
    ("Velcade (R)", "bortezomib", None),
    ("daratumumab (C1D1)", "daratumumab", None),
    ("dara (SC)", "daratumumab", "daratumumab and hyaluronidase-fihj"),
    ("bortezomib (trial)", "bortezomib", None),
])
def test_words_in_parentheses_that_say_nothing(t, text, generic, formulation):
    r = t.resolve(text)
    assert r.kind == "drug" and names(r) == [generic]
    assert r.formulation == formulation


@pytest.mark.parametrize("text, expected", [
    ("anitocabtagene autoleucel (BCMA CAR-T), 1 infusion", "anitocabtagene autoleucel"),
    ("Anitocabtagene autoleucel (KITE-772), BCMA CAR-T, one infusion", "anitocabtagene autoleucel"),
    ("anitocabtagene autoleucel CAR-T cell therapy", "anitocabtagene autoleucel"),
    ("anitocabtagene autoleucel (anito-cel) CAR-T", "anitocabtagene autoleucel"),
    ("cilta-cel (BCMA CAR-T)", "ciltacabtagene autoleucel"),
    ("talquetamab (GPRC5D)", "talquetamab"),
    ("zoledronic acid 4 mg IV every 12 weeks", "zoledronic acid"),
    ("denosumab 120 mg SC q4w", "denosumab"),
])
def test_descriptive_and_schedule_words_are_read_when_they_agree(t, text, expected):
    assert generic(t, text) == expected


@pytest.mark.parametrize("text, said", [
    ("daratumumab (BCMA CAR-T)", "BCMA, CAR-T"),     # an anti-CD38 antibody written as a BCMA CAR-T
    ("teclistamab CAR-T", "CAR-T"),                  # a BCMA bispecific is no CAR-T
    ("talquetamab (BCMA)", "BCMA"),
])
def test_a_description_that_contradicts_the_drug_leaves_it_unrecognized(t, text, said):
    r = t.vocabulary.resolve(text)
    assert r.kind == "unrecognized"
    assert f"is named beside {said}, which does not describe it" in r.reason


def test_descriptions_alone_name_no_product(t):
    r = t.vocabulary.resolve("BCMA CAR-T")
    assert r.kind == "unrecognized" and {"anti_bcma", "car_t"} <= r.hints
