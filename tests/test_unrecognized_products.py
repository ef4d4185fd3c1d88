"""Unrecognized is not absent: each rule of policy-interpretation.md, "Products", tested at the criteria.

A product of the treatment history that the terminology does not know makes every criterion it could change
`unknown` (with a reason that names it), unless the record settles the criterion without it.
"""

from __future__ import annotations

import pytest

from priorauth.determination import determine

from helpers import BASE, make_case

HISTORY = BASE["therapies"]          # four recognized lines with an IMiD, a PI and an anti-CD38 antibody
TWO_LINES = [
    {"drugs": ["bortezomib", "lenalidomide", "dexamethasone"], "start": "2021-03-01", "end": "2021-07-15"},
    {"drugs": ["daratumumab", "pomalidomide", "dexamethasone"], "start": "2022-01-01", "end": "2026-12-01"},
]
UNKNOWN_DRUG = {"drug": "XYZ-4417", "start": "2021-09-01", "end": "2021-12-01", "trial": True}


def node(d, cid):
    return d.node(cid)


# ---- I.A.7 and I.A.8 ---------------------------------------------------------------------------------------------
def test_unrecognized_product_makes_i_a_7_and_i_a_8_unknown_without_attestation(policy):
    d = determine(make_case(therapies=HISTORY + [UNKNOWN_DRUG]), policy)
    for cid, kind in (("I.A.7", "BCMA-directed"), ("I.A.8", "a CAR T-cell therapy")):
        n = node(d, cid)
        assert n.status == "unknown"
        assert f"'XYZ-4417' is not a product priorauth recognizes; the reviewer must confirm it is not {kind}" in n.reason
        assert any(e.value == "XYZ-4417" and e.fact == "not recognized" for e in n.evidence)
    assert d.outcome == "needs_information"
    assert any("'XYZ-4417' is not a product priorauth recognizes" in p for p in d.data_problems)


def test_the_attestation_settles_an_unrecognized_product(policy):
    d = determine(make_case(therapies=HISTORY + [UNKNOWN_DRUG],
                            attestations={"no_prior_bcma": True, "no_prior_car_t": True}), policy)
    for cid in ("I.A.7", "I.A.8"):
        assert node(d, cid).status == "met" and "which settles 'XYZ-4417'" in node(d, cid).reason
    assert d.outcome == "meets_criteria"


@pytest.mark.parametrize("name, bcma, car_t", [
    ("anti-BCMA XYZ-4417", True, False),
    ("XYZ BCMA CAR-T", True, True),
    ("ABC-123 CAR T", False, True),
    ("CART-22", False, True),
    ("fakocabtagene", False, True),
    ("foo-leucel", False, True),
    ("zz-cel", False, True),
    ("XYZ-4417", False, False),
    ("cartilage extract", False, False),       # CAR must be a word of its own or stand before T
])
def test_a_name_that_suggests_the_excluded_kind_stays_unknown_despite_the_attestation(policy, name, bcma, car_t):
    d = determine(make_case(therapies=HISTORY + [dict(UNKNOWN_DRUG, drug=name)],
                            attestations={"no_prior_bcma": True, "no_prior_car_t": True}), policy)
    for cid, hinted in (("I.A.7", bcma), ("I.A.8", car_t)):
        n = node(d, cid)
        assert n.status == ("unknown" if hinted else "met"), (cid, n.reason)
        if hinted:
            assert "its name suggests" in n.reason and "disagree" in n.reason


def test_a_recognized_exposure_is_not_met_whatever_else_is_unrecognized(policy):
    d = determine(make_case(therapies=HISTORY + [UNKNOWN_DRUG, {"drug": "teclistamab", "start": "2022-01-01",
                                                                "end": "2022-06-01"}]), policy)
    assert node(d, "I.A.7").status == "not_met" and "teclistamab" in node(d, "I.A.7").reason


# ---- I.A.5 -------------------------------------------------------------------------------------------------------
def test_lines_short_with_an_unrecognized_entry_are_unknown_not_not_met(policy):
    d = determine(make_case(therapies=TWO_LINES + [UNKNOWN_DRUG]), policy)
    n = node(d, "I.A.5")
    assert n.status == "unknown"
    assert "2 prior lines of therapy (IMWG rules) from the recognized regimens, fewer than 3; 'XYZ-4417', not " \
           "recognized, may be the missing line" in n.reason
    assert any("What 'XYZ-4417' is" in m for m in n.missing)


def test_lines_already_enough_with_an_unrecognized_entry_are_met(policy):
    d = determine(make_case(therapies=HISTORY + [UNKNOWN_DRUG]), policy)
    assert node(d, "I.A.5").status == "met"


def test_a_class_missing_while_an_unrecognized_entry_remains_is_unknown(policy):
    no_cd38 = [h for h in HISTORY if "daratumumab" not in h.get("drugs", ())]
    d = determine(make_case(therapies=no_cd38 + [UNKNOWN_DRUG]), policy)
    n = node(d, "I.A.5.c")
    assert n.status == "unknown"
    assert "'XYZ-4417', not recognized, may be one" in n.reason
    d = determine(make_case(therapies=no_cd38), policy)
    assert node(d, "I.A.5.c").status == "not_met"


# ---- I.A.4.b -----------------------------------------------------------------------------------------------------
def test_an_unrecognized_entry_after_the_last_regimen_began_may_be_the_last_regimen(policy):
    # the last recognized regimen (SVd) began 2025-06-20; the unknown product began later and ended 2026-09-01,
    # so progression on 2026-12-05 is 4 days after SVd's last dose but 95 days after the unknown product's
    later = {"drug": "XYZ-4417", "start": "2026-01-05", "end": "2026-09-01"}
    d = determine(make_case(therapies=HISTORY + [later]), policy)
    n = node(d, "I.A.4.b")
    assert n.status == "unknown"
    assert "'XYZ-4417', not recognized, began after" in n.reason and "may be the last regimen" in n.reason


def test_progression_inside_both_windows_settles_it(policy):
    later = {"drug": "XYZ-4417", "start": "2026-01-05", "end": "2026-11-20"}
    d = determine(make_case(therapies=HISTORY + [later]), policy)
    assert node(d, "I.A.4.b").status == "met"


def test_an_unrecognized_entry_before_the_last_regimen_does_not_touch_i_a_4_b(policy):
    d = determine(make_case(therapies=HISTORY + [UNKNOWN_DRUG]), policy)
    assert node(d, "I.A.4.b").status == "met"


# ---- I.A.9 -------------------------------------------------------------------------------------------------------
def test_an_unrecognized_product_ordered_alongside_makes_i_a_9_unknown(policy):
    d = determine(make_case(request__concurrent=["XYZ-9000"]), policy)
    n = node(d, "I.A.9")
    assert n.status == "unknown" and "'XYZ-9000', ordered alongside, is not a product priorauth recognizes" in n.reason


@pytest.mark.parametrize("adjunct", ["tocilizumab", "fludarabine", "cyclophosphamide", "dexamethasone", "anakinra",
                                     "levetiracetam", "acyclovir", "levofloxacin"])
def test_what_is_ordered_with_every_car_t_never_affects_i_a_9(policy, adjunct):
    d = determine(make_case(request__concurrent=[adjunct]), policy)
    assert node(d, "I.A.9").status == "met"


def test_another_car_t_ordered_alongside_is_not_met(policy):
    d = determine(make_case(request__concurrent=["Carvykti"]), policy)
    assert node(d, "I.A.9").status == "not_met"
