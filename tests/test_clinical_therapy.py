"""Treatment history and lines of therapy (priorauth.clinical.therapy), one test per rule of the spec.

docs/policy-interpretation.md, "Treatment history: regimens, the last regimen, lines of therapy". The windows
are the policy's: same regimen within 30 days, conditioning 14 days, post-transplant 180 days.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from priorauth.case import Procedure, Regimen
from priorauth.clinical.therapy import LineRules, count_lines, resolve_history
from priorauth.terminology import load_terminology

TERM = load_terminology()
RULES = LineRules(same_regimen_gap_days=30, conditioning_days=14, post_transplant_days=180,
                  single_agent_classes=frozenset({"imid", "proteasome_inhibitor"}))
AS_OF = date(2027, 1, 11)

VRD = ["bortezomib", "lenalidomide", "dexamethasone"]
RD = ["lenalidomide", "dexamethasone"]
PD = ["pomalidomide", "dexamethasone"]
DRD = ["daratumumab", "lenalidomide", "dexamethasone"]
DPD = ["daratumumab", "pomalidomide", "dexamethasone"]
KCD = ["carfilzomib", "cyclophosphamide", "dexamethasone"]

INDUCTION_START, INDUCTION_END = date(2021, 3, 1), date(2021, 7, 15)
TX_DATE = date(2021, 9, 2)


def reg(drugs, start, end=None, **kw) -> Regimen:
    return Regimen(drugs=list(drugs), start=start, end=end, **kw)


def tx(day: date, **kw) -> Procedure:
    return Procedure(procedure="autologous_sct", date=day, **kw)


def history(entries, as_of: date = AS_OF):
    return resolve_history(entries, TERM, as_of)


def lines(entries, as_of: date = AS_OF):
    return count_lines(history(entries, as_of), RULES)


def induction_and_transplant():
    return [reg(VRD, INDUCTION_START, INDUCTION_END, intent="induction"), tx(TX_DATE)]


def steps_text(lc) -> str:
    return "\n".join(lc.steps)


# ---- resolve_history ---------------------------------------------------------------------------------------------
def test_history_not_submitted():
    hist = history(None)
    assert hist.submitted is False
    assert hist.regimens == [] and hist.last_regimen is None


def test_empty_history_is_submitted_and_has_no_lines():
    hist = history([])
    assert hist.submitted is True
    lc = count_lines(hist, RULES)
    assert lc.count == 0 and lc.lines == []


def test_regimen_acronym_resolves_to_drugs_and_classes():
    hist = history([Regimen(regimen="DPd", start=date(2023, 6, 5), end=date(2024, 8, 30))])
    (r,) = hist.regimens
    assert r.names == frozenset(DPD)
    assert r.core == frozenset({"daratumumab", "pomalidomide"})      # steroids aside
    assert {"imid", "anti_cd38", "steroid"} <= r.classes
    assert r.anti_myeloma is True
    assert hist.problems == []


def test_steroid_only_entry_is_not_an_anti_myeloma_regimen():
    hist = history([reg(["dexamethasone"], date(2024, 1, 1), date(2024, 1, 28))])
    (r,) = hist.regimens
    assert r.anti_myeloma is False
    assert hist.anti_myeloma == [] and hist.last_regimen is None
    assert count_lines(hist, RULES).count == 0


def test_cd19_car_t_is_not_an_anti_myeloma_regimen_but_is_car_t():
    hist = history([reg(["axicabtagene ciloleucel"], date(2024, 1, 10), date(2024, 1, 10))])
    (r,) = hist.regimens
    assert r.anti_myeloma is False
    assert "car_t" in r.classes                         # still counts for I.A.8
    assert [d.generic for _, d in hist.exposures("car_t")] == ["axicabtagene ciloleucel"]
    assert count_lines(hist, RULES).count == 0


def test_steroid_only_and_cd19_entries_do_not_add_lines():
    lc = lines([
        reg(VRD, date(2021, 3, 1), date(2021, 7, 15)),
        reg(["prednisone"], date(2022, 1, 1), date(2022, 2, 1)),
        reg(["tisagenlecleucel"], date(2022, 6, 1), date(2022, 6, 1)),
    ])
    assert lc.count == 1
    assert [r.entry.drugs for r in lc.lines[0].regimens] == [VRD]


def test_all_unrecognized_drugs_reported_and_not_counted():
    hist = history([
        reg(VRD, date(2021, 3, 1), date(2021, 7, 15)),
        reg(["foobarumab"], date(2022, 1, 1), date(2022, 6, 1)),
    ])
    assert any("'foobarumab' is not a drug priorauth recognizes" in p and "(entry not counted)" in p
               for p in hist.problems), hist.problems
    unknown = [r for r in hist.regimens if r.entry.drugs == ["foobarumab"]][0]
    assert unknown.anti_myeloma is False and unknown.unrecognized == ("foobarumab",)
    assert hist.has_unrecognized is True
    assert count_lines(hist, RULES).count == 1
    assert hist.last_regimen.entry.drugs == VRD


def test_partly_unrecognized_entry_is_reported_and_counted_by_its_known_drugs():
    hist = history([reg(["lenalidomide", "foobarumab"], date(2022, 1, 1), date(2022, 6, 1))])
    (r,) = hist.regimens
    assert r.names == frozenset({"lenalidomide"}) and r.unrecognized == ("foobarumab",)
    assert r.anti_myeloma is True
    assert len(hist.problems) == 1
    assert "'foobarumab' is not a drug" in hist.problems[0] and "not counted" not in hist.problems[0]
    assert count_lines(hist, RULES).count == 1


def test_unknown_regimen_acronym_is_reported_and_not_counted():
    hist = history([Regimen(regimen="ZZQd", start=date(2022, 1, 1), end=date(2022, 6, 1))])
    assert any("'ZZQd' is not a regimen acronym" in p and "not counted" in p for p in hist.problems), hist.problems
    assert hist.anti_myeloma == []
    assert count_lines(hist, RULES).count == 0


def test_entries_after_as_of_are_left_out_and_reported():
    hist = history([
        reg(VRD, date(2021, 3, 1), date(2021, 7, 15)),
        reg(DPD, AS_OF + timedelta(days=1)),
        tx(AS_OF + timedelta(days=1)),
    ])
    assert [r.entry.drugs for r in hist.regimens] == [VRD]
    assert hist.transplants == []
    assert any("therapies[1]" in p and "after the evaluation date; not used" in p for p in hist.problems)
    assert any("therapies[2]" in p and "after the evaluation date; not used" in p for p in hist.problems)
    assert hist.last_regimen.entry.drugs == VRD
    assert count_lines(hist, RULES).count == 1


def test_entry_started_on_as_of_is_kept():
    hist = history([reg(DPD, AS_OF)])
    assert hist.problems == []
    assert hist.last_regimen.entry.drugs == DPD


def test_last_regimen_is_the_latest_start_not_the_last_listed_or_latest_end():
    hist = history([
        reg(KCD, date(2025, 1, 1), date(2025, 6, 1)),                  # latest start
        reg(DPD, date(2023, 6, 5), date(2026, 12, 1)),                 # latest end, listed last but one
        reg(VRD, date(2021, 3, 1), date(2021, 7, 15)),                 # listed last
        reg(["dexamethasone"], date(2026, 1, 1), date(2026, 1, 5)),    # later, but steroid only
    ])
    assert hist.last_regimen.entry.drugs == KCD
    assert [r.start for r in hist.regimens] == sorted(r.start for r in hist.regimens)


# ---- explicit line numbers ---------------------------------------------------------------------------------------
def _numbered(numbers):
    starts = [date(2021, 3, 1), date(2022, 1, 1), date(2023, 6, 5), date(2024, 9, 15)]
    ends = [date(2021, 7, 15), date(2023, 5, 20), date(2024, 8, 30), date(2025, 6, 1)]
    drugs = [VRD, RD, DPD, KCD]   # four lines by the IMWG rules (different drugs, gaps over 30 days)
    return [reg(d, s, e, line=n) for d, s, e, n in zip(drugs, starts, ends, numbers)]


def test_line_numbers_on_every_entry_decide():
    lc = lines(_numbered([1, 1, 2, 2]))
    assert lc.method == "line numbers"
    assert lc.count == 2
    assert [ln.number for ln in lc.lines] == [1, 2]
    assert "line 1 as stated" in steps_text(lc)


def test_line_numbers_count_distinct_numbers_not_entries():
    lc = lines(_numbered([1, 2, 2, 5]))
    assert lc.method == "line numbers" and lc.count == 3


def test_unnumbered_steroid_entry_does_not_stop_line_numbers_deciding():
    entries = _numbered([1, 1, 2, 2]) + [reg(["dexamethasone"], date(2025, 7, 1), date(2025, 7, 4))]
    lc = lines(entries)
    assert lc.method == "line numbers" and lc.count == 2


def test_partial_line_numbers_are_reported_not_used():
    entries = _numbered([1, 1, 2, 2])
    entries[3] = reg(KCD, date(2024, 9, 15), date(2025, 6, 1))      # no line number
    lc = lines(entries)
    assert lc.method == "IMWG rules"
    assert lc.count == 4
    assert "line numbers given on 3 of 4 entries: reported, not used" in steps_text(lc)


# ---- same drugs: one regimen within 30 days, retreatment after -----------------------------------------------------
@pytest.mark.parametrize("gap, expected", [(0, 1), (1, 1), (30, 1), (31, 2), (90, 2)])
def test_same_drugs_gap(gap, expected):
    end = date(2024, 6, 1)
    lc = lines([reg(DPD, date(2024, 1, 1), end), reg(DPD, end + timedelta(days=gap), date(2024, 12, 1))])
    assert lc.count == expected
    if expected == 1:
        assert f"same drugs {gap} days after the previous entry" in steps_text(lc)
    else:
        assert "starts line 2" in steps_text(lc)


def test_same_drugs_by_acronym_and_by_names_are_one_regimen():
    lc = lines([Regimen(regimen="DPd", start=date(2024, 1, 1), end=date(2024, 6, 1)),
                reg(["Darzalex", "Pomalyst", "dexamethasone"], date(2024, 6, 15), date(2024, 12, 1))])
    assert lc.count == 1


def test_overlapping_entries_with_same_drugs_are_one_regimen():
    lc = lines([reg(RD, date(2024, 1, 1), date(2024, 6, 1)), reg(RD, date(2024, 5, 1), date(2024, 12, 1))])
    assert lc.count == 1


# ---- dose change, added, swapped and dropped drugs -----------------------------------------------------------------
def test_dose_change_is_not_a_new_line():
    # the same drugs in consecutive entries (a new dose is written as a new entry)
    lc = lines([reg(RD, date(2023, 1, 1), date(2023, 3, 31)),
                reg(RD, date(2023, 4, 1), date(2023, 9, 30)),
                reg(RD, date(2023, 10, 1), date(2024, 2, 1))])
    assert lc.count == 1
    assert "a dose or schedule change" in steps_text(lc)


def test_adding_a_drug_is_a_new_line():
    lc = lines([reg(RD, date(2023, 1, 1), date(2023, 6, 30)), reg(DRD, date(2023, 7, 1), date(2024, 2, 1))])
    assert lc.count == 2
    assert [len(ln.regimens) for ln in lc.lines] == [1, 1]


def test_swapping_a_drug_is_a_new_line():
    lc = lines([reg(RD, date(2023, 1, 1), date(2023, 6, 30)), reg(PD, date(2023, 7, 1), date(2024, 2, 1))])
    assert lc.count == 2


def test_dropping_a_drug_within_the_gap_is_not_a_new_line():
    lc = lines([reg(VRD, date(2021, 3, 1), date(2021, 7, 15)), reg(RD, date(2021, 8, 14), date(2022, 2, 1))])
    assert lc.count == 1
    assert "bortezomib stopped" in steps_text(lc)


# ---- planned sequences: consolidation and maintenance ---------------------------------------------------------------
@pytest.mark.parametrize("intent", ["consolidation", "maintenance"])
def test_consolidation_or_maintenance_continues_the_line(intent):
    # new drugs and a long gap: only the stated intent keeps it in the line
    lc = lines([reg(VRD, date(2021, 3, 1), date(2021, 7, 15), intent="induction"),
                reg(["daratumumab"], date(2022, 6, 1), date(2023, 6, 1), intent=intent)])
    assert lc.count == 1
    assert f"continues line 1 ({intent})" in steps_text(lc)


@pytest.mark.parametrize("intent", ["induction", None])
def test_other_intent_does_not_continue_the_line(intent):
    lc = lines([reg(VRD, date(2021, 3, 1), date(2021, 7, 15), intent="induction"),
                reg(["daratumumab"], date(2022, 6, 1), date(2023, 6, 1), intent=intent)])
    assert lc.count == 2


# ---- transplant and conditioning --------------------------------------------------------------------------------
def test_transplant_joins_the_line_before_it():
    lc = lines(induction_and_transplant())
    assert lc.count == 1
    assert [t.date for t in lc.lines[0].transplants] == [TX_DATE]
    assert f"autologous_sct on {TX_DATE}: part of line 1" in steps_text(lc)


def test_transplant_belongs_to_the_latest_line_before_it():
    lc = lines([reg(VRD, INDUCTION_START, INDUCTION_END), reg(DPD, date(2022, 1, 1), date(2022, 6, 1)),
                tx(date(2022, 8, 1))])
    assert lc.count == 2
    assert lc.lines[0].transplants == [] and [t.date for t in lc.lines[1].transplants] == [date(2022, 8, 1)]


@pytest.mark.parametrize("days_before, expected", [(0, 1), (14, 1), (15, 2)])
def test_melphalan_alone_before_transplant_is_conditioning(days_before, expected):
    start = TX_DATE - timedelta(days=days_before)
    lc = lines([reg(VRD, INDUCTION_START, INDUCTION_END), reg(["melphalan"], start, start), tx(TX_DATE)])
    assert lc.count == expected
    if expected == 1:
        assert f"conditioning for the transplant on {TX_DATE}" in steps_text(lc)
    else:
        assert "melphalan from" in steps_text(lc) and "starts line 2" in steps_text(lc)


def test_melphalan_with_another_drug_is_not_conditioning():
    start = TX_DATE - timedelta(days=3)
    lc = lines([reg(VRD, INDUCTION_START, INDUCTION_END), reg(["melphalan", "bortezomib"], start, start),
                tx(TX_DATE)])
    assert lc.count == 2


# ---- after a transplant -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("days_after, expected", [(1, 1), (100, 1), (180, 1), (181, 2)])
def test_unmarked_regimen_after_transplant_with_drugs_of_the_line(days_after, expected):
    # bortezomib + dexamethasone: a subset of VRd, two drugs (not a single agent), far beyond the 30-day gap
    start = TX_DATE + timedelta(days=days_after)
    lc = lines(induction_and_transplant() + [reg(["bortezomib", "dexamethasone"], start, start + timedelta(days=90))])
    assert lc.count == expected
    if expected == 1:
        assert f"{days_after} days after the transplant, with drugs of the same line" in steps_text(lc)


def test_unmarked_regimen_after_transplant_with_a_new_drug_is_a_new_line():
    start = TX_DATE + timedelta(days=100)
    lc = lines(induction_and_transplant() + [reg(DRD, start, start + timedelta(days=90))])
    assert lc.count == 2


@pytest.mark.parametrize("drugs", [["ixazomib"], ["pomalidomide"], ["ixazomib", "dexamethasone"]])
def test_single_imid_or_pi_after_transplant_continues_the_line(drugs):
    # not among the line's drugs: only the single-agent rule keeps it in the line
    start = TX_DATE + timedelta(days=100)
    lc = lines(induction_and_transplant() + [reg(drugs, start, start + timedelta(days=300))])
    assert lc.count == 1
    assert "100 days after the transplant, a single agent (maintenance)" in steps_text(lc)


def test_single_imid_181_days_after_transplant_is_a_new_line():
    start = TX_DATE + timedelta(days=181)
    lc = lines(induction_and_transplant() + [reg(["pomalidomide"], start, start + timedelta(days=300))])
    assert lc.count == 2


def test_single_agent_of_another_class_after_transplant_is_a_new_line():
    start = TX_DATE + timedelta(days=100)
    lc = lines(induction_and_transplant() + [reg(["daratumumab"], start, start + timedelta(days=300))])
    assert lc.count == 2


def test_two_new_agents_after_transplant_are_a_new_line():
    start = TX_DATE + timedelta(days=100)
    lc = lines(induction_and_transplant() + [reg(["ixazomib", "pomalidomide"], start, start + timedelta(days=300))])
    assert lc.count == 2


# ---- a full history --------------------------------------------------------------------------------------------
def test_pub01_history_is_four_lines_with_all_three_classes():
    lc = lines([
        reg(VRD, date(2021, 3, 1), date(2021, 7, 15), intent="induction"),
        tx(date(2021, 9, 2)),
        reg(["lenalidomide"], date(2021, 12, 1), date(2023, 5, 20), intent="maintenance"),
        reg(DPD, date(2023, 6, 5), date(2024, 8, 30)),
        reg(KCD, date(2024, 9, 15), date(2025, 6, 1)),
        reg(["selinexor", "bortezomib", "dexamethasone"], date(2025, 6, 20), date(2026, 12, 1)),
    ])
    assert lc.count == 4 and lc.method == "IMWG rules"
    assert {"imid", "proteasome_inhibitor", "anti_cd38"} <= lc.classes


def test_regimen_started_on_the_transplant_day_follows_the_transplant():
    lc = lines(induction_and_transplant() + [reg(["lenalidomide"], TX_DATE, TX_DATE + timedelta(days=300))])
    assert lc.count == 1
    assert "0 days after the transplant, with drugs of the same line" in steps_text(lc)


def test_regimen_label_reads_codes_as_generic_names():
    hist = history([reg(["J9227", "pomalidomide", "dexamethasone", "mystery-mab"], date(2024, 7, 15))])
    assert hist.regimens[0].label() == "isatuximab, pomalidomide, dexamethasone, mystery-mab"
