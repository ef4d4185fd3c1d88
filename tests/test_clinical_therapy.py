"""Treatment history (priorauth.clinical.therapy): exposures, regimens, lines of therapy; one test per rule.

docs/policy-interpretation.md, "Treatment history: exposures, regimens, the last regimen, lines of therapy". The
windows are the policy's (join 30 days, administrations 60, resume 60, hold 180, conditioning 14, post-transplant
180, tandem 180); every boundary is tested on both sides.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from priorauth.case import Procedure, Regimen
from priorauth.clinical.therapy import ProgressionMark, assemble_history, count_lines, line_variants
from priorauth.policies import default_policy
from priorauth.terminology import load_terminology

TERM = load_terminology()
RULES = default_policy().node("I.A.5").params.history_rules
AS_OF = date(2027, 1, 11)

VRD = ["bortezomib", "lenalidomide", "dexamethasone"]
RD = ["lenalidomide", "dexamethasone"]
PD = ["pomalidomide", "dexamethasone"]
DRD = ["daratumumab", "lenalidomide", "dexamethasone"]
DPD = ["daratumumab", "pomalidomide", "dexamethasone"]
KCD = ["carfilzomib", "cyclophosphamide", "dexamethasone"]

INDUCTION_START, INDUCTION_END = date(2021, 3, 1), date(2021, 7, 15)
TX_DATE = date(2021, 9, 2)
D0 = date(2024, 1, 1)


def reg(drugs, start, end=None, **kw) -> Regimen:
    return Regimen(drugs=list(drugs), start=start, end=end, **kw)


def one(drug, start, end=None, **kw) -> Regimen:
    return Regimen(drug=drug, start=start, end=end, **kw)


def doses(drug, days, **kw) -> Regimen:
    return Regimen(drug=drug, doses=list(days), **kw)


def tx(day: date, **kw) -> Procedure:
    return Procedure(procedure="autologous_sct", date=day, **kw)


def pd(day: date) -> ProgressionMark:
    return ProgressionMark(day, "disease assessment: progressive disease", "assessments[0]")


def history(entries, as_of: date = AS_OF, documented=()):
    return assemble_history(entries, TERM, as_of, RULES, documented)


def lines(entries, as_of: date = AS_OF, marks=()):
    hist = history(entries, as_of, marks)
    return count_lines(hist, RULES, list(marks) + hist.stop_progressions)


def induction_and_transplant():
    return [reg(VRD, INDUCTION_START, INDUCTION_END, intent="induction"), tx(TX_DATE)]


def steps_text(lc) -> str:
    return "\n".join(lc.steps)


def cores(hist):
    return [sorted(r.core) for r in hist.anti_myeloma]


# ---- resolving entries ------------------------------------------------------------------------------------------
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
    assert r.anti_myeloma is True and r.label() == "DPd (daratumumab, pomalidomide, dexamethasone)"
    assert hist.problems == []


def test_steroid_only_entry_is_not_an_anti_myeloma_regimen():
    hist = history([reg(["dexamethasone"], date(2024, 1, 1), date(2024, 1, 28))])
    assert hist.anti_myeloma == [] and hist.last_regimen is None
    assert "a steroid alone is not an anti-myeloma regimen" in "\n".join(hist.steps)
    assert count_lines(hist, RULES).count == 0


def test_cd19_car_t_makes_no_regimen_but_is_a_car_t_exposure():
    hist = history([one("axicabtagene ciloleucel", date(2024, 1, 10), date(2024, 1, 10))])
    assert hist.anti_myeloma == []
    assert [d.generic for _, d in hist.exposures("car_t")] == ["axicabtagene ciloleucel"]    # still counts for I.A.8
    assert count_lines(hist, RULES).count == 0


def test_unrecognized_single_drug_is_kept_not_dropped():
    hist = history([reg(VRD, date(2021, 3, 1), date(2021, 7, 15)), one("XYZ-4417", date(2022, 1, 1), date(2022, 6, 1))])
    (u,) = hist.unrecognized
    assert (u.name, u.start, u.end) == ("XYZ-4417", date(2022, 1, 1), date(2022, 6, 1))
    assert any("'XYZ-4417' is not a product priorauth recognizes" in p for p in hist.problems), hist.problems
    assert count_lines(hist, RULES).count == 1            # lines come from the recognized regimens only


def test_unrecognized_name_carries_its_hints():
    hist = history([one("anti-BCMA XYZ-4417", date(2022, 1, 1)), one("ABC-cel", date(2023, 1, 1), date(2023, 1, 1))])
    assert [sorted(u.hints) for u in hist.unrecognized] == [["anti_bcma"], ["car_t"]]


def test_partly_unrecognized_regimen_counts_its_known_drugs_and_keeps_the_rest():
    hist = history([reg(["lenalidomide", "foobarumab"], date(2022, 1, 1), date(2022, 6, 1))])
    (r,) = hist.regimens
    assert r.names == frozenset({"lenalidomide"}) and r.anti_myeloma is True
    assert [u.name for u in hist.unrecognized] == ["foobarumab"]
    assert count_lines(hist, RULES).count == 1


def test_entries_after_as_of_are_left_out_and_reported():
    hist = history([reg(VRD, date(2021, 3, 1), date(2021, 7, 15)), reg(DPD, AS_OF + timedelta(days=1)),
                    tx(AS_OF + timedelta(days=1))])
    assert [r.names for r in hist.regimens] == [frozenset(VRD)]
    assert hist.transplants == []
    assert any("therapies[1]" in p and "after the evaluation date; not used" in p for p in hist.problems)
    assert any("therapies[2]" in p and "after the evaluation date; not used" in p for p in hist.problems)


def test_doses_after_as_of_are_dropped_and_a_later_end_reads_as_ongoing():
    hist = history([doses("daratumumab", [AS_OF - timedelta(days=7), AS_OF + timedelta(days=7)]),
                    one("pomalidomide", AS_OF - timedelta(days=7), AS_OF + timedelta(days=20))])
    (r,) = hist.anti_myeloma
    assert r.ongoing
    assert any("1 dose(s) dated after the evaluation date" in p for p in hist.problems)
    assert any("read as ongoing" in p for p in hist.problems)


def test_last_regimen_is_the_latest_start_not_the_last_listed_or_latest_end():
    hist = history([
        reg(KCD, date(2025, 1, 1), date(2025, 6, 1)),                  # latest start
        reg(DPD, date(2023, 6, 5), date(2024, 12, 1)),                 # latest end
        reg(VRD, date(2021, 3, 1), date(2021, 7, 15)),                 # listed last
        reg(["dexamethasone"], date(2026, 1, 1), date(2026, 1, 5)),    # later, but a steroid alone
    ])
    assert hist.last_regimen.names == frozenset(KCD)


def test_a_stop_reason_without_an_end_means_the_end_is_unknown():
    hist = history([reg(DPD, date(2025, 1, 1), stop_reason="toxicity")])
    r = hist.last_regimen
    assert r.end is None and r.end_unknown and not r.ongoing
    assert "stopped on a date not given" in r.span()


# ---- exposures: administrations of one drug --------------------------------------------------------------------
@pytest.mark.parametrize("gap, exposures", [(59, 1), (60, 1), (61, 2)])
def test_administrations_at_most_60_days_apart_are_one_exposure(gap, exposures):
    days = [D0, D0 + timedelta(days=7), D0 + timedelta(days=7 + gap)]
    hist = history([doses("daratumumab", days)])
    assert len(hist.anti_myeloma) == exposures
    if exposures == 2:
        assert f"{gap} days after the previous dose, more than 60" in "\n".join(hist.steps)


def test_formulations_of_one_ingredient_merge_into_one_exposure():
    iv = doses("daratumumab", [D0 + timedelta(days=7 * k) for k in range(4)])
    sc = doses("daratumumab and hyaluronidase-fihj", [D0 + timedelta(days=35 + 14 * k) for k in range(3)])
    hist = history([iv, sc, one("pomalidomide", D0, D0 + timedelta(days=70))])
    (r,) = hist.anti_myeloma
    assert r.core == frozenset({"daratumumab", "pomalidomide"}) and r.end == D0 + timedelta(days=70)


def test_documented_progression_between_administrations_starts_a_new_exposure():
    days = [D0, D0 + timedelta(days=28), D0 + timedelta(days=56)]
    hist = history([doses("daratumumab", days)], documented=[pd(D0 + timedelta(days=40))])
    assert [r.start for r in hist.anti_myeloma] == [D0, D0 + timedelta(days=56)]
    assert "progression documented on" in "\n".join(hist.steps)


def test_two_period_entries_of_one_drug_stay_two_exposures():
    hist = history([one("lenalidomide", D0, D0 + timedelta(days=100)),
                    one("lenalidomide", D0 + timedelta(days=130), D0 + timedelta(days=300))])
    assert len(hist.anti_myeloma) == 2


# ---- regimens from exposures ---------------------------------------------------------------------------------
@pytest.mark.parametrize("offset, regimens", [(29, 1), (30, 1), (31, 2)])
def test_a_drug_starting_within_30_days_of_a_regimen_joins_it(offset, regimens):
    hist = history([one("lenalidomide", D0, D0 + timedelta(days=300)), one("dexamethasone", D0, D0 + timedelta(days=300)),
                    one("daratumumab", D0 + timedelta(days=offset), D0 + timedelta(days=300))])
    assert len(hist.anti_myeloma) == regimens
    if regimens == 2:        # added later to a regimen still going: DRd from that day
        first, second = hist.anti_myeloma
        assert second.core == frozenset({"daratumumab", "lenalidomide"}) and second.start == D0 + timedelta(days=offset)
        assert first.end == second.start
        assert "daratumumab added on" in second.how


def test_a_drug_stopping_while_others_go_on_leaves_the_regimen_without_ending_it():
    hist = history([one("bortezomib", D0, D0 + timedelta(days=150)), one("lenalidomide", D0, D0 + timedelta(days=500)),
                    one("dexamethasone", D0, D0 + timedelta(days=500))])
    (r,) = hist.anti_myeloma
    assert r.core == frozenset({"bortezomib", "lenalidomide"}) and r.end == D0 + timedelta(days=500)
    assert r.acronym == "VRd"


@pytest.mark.parametrize("tail, carried", [(29, False), (30, False), (31, True)])
def test_a_drug_of_the_previous_regimen_stopping_within_30_days_of_an_addition_is_its_tail(tail, carried):
    added = D0 + timedelta(days=200)
    hist = history([one("daratumumab", D0, added - timedelta(days=7)), one("pomalidomide", D0, added + timedelta(days=tail)),
                    one("carfilzomib", added, added + timedelta(days=300))])
    new = hist.last_regimen
    assert new.start == added
    assert ("pomalidomide" in new.core) is carried


def test_steroids_join_every_regimen_they_overlap_and_never_open_or_end_one():
    hist = history([one("dexamethasone", D0, D0 + timedelta(days=400)), one("pomalidomide", D0 + timedelta(days=10),
                                                                               D0 + timedelta(days=100)),
                    one("carfilzomib", D0 + timedelta(days=200), D0 + timedelta(days=300))])
    assert [r.start for r in hist.anti_myeloma] == [D0 + timedelta(days=10), D0 + timedelta(days=200)]
    assert all("dexamethasone" in r.names for r in hist.anti_myeloma)
    assert [r.end for r in hist.anti_myeloma] == [D0 + timedelta(days=100), D0 + timedelta(days=300)]


def test_per_drug_and_written_shapes_give_the_same_regimens():
    written = history([reg(VRD, D0, D0 + timedelta(days=120)), reg(DPD, D0 + timedelta(days=200), D0 + timedelta(days=400))])
    per_drug = history([one(d, D0, D0 + timedelta(days=120)) for d in VRD] +
                       [one(d, D0 + timedelta(days=200), D0 + timedelta(days=400)) for d in DPD])
    assert [(r.names, r.start, r.end) for r in written.anti_myeloma] == [(r.names, r.start, r.end)
                                                                        for r in per_drug.anti_myeloma]


def test_a_drug_added_to_a_written_regimen_still_going_splits_it():
    hist = history([reg(RD, D0, D0 + timedelta(days=500)), one("daratumumab", D0 + timedelta(days=100),
                                                               D0 + timedelta(days=500))])
    first, second = hist.anti_myeloma
    assert first.written == "lenalidomide, dexamethasone" and first.end == D0 + timedelta(days=100)
    assert second.core == frozenset({"daratumumab", "lenalidomide"})


def test_a_myeloma_car_t_given_once_is_a_regimen():
    hist = history([one("ciltacabtagene autoleucel", D0, D0)])
    (r,) = hist.anti_myeloma
    assert r.start == r.end == D0 and "car_t" in r.classes


# ---- lines: line numbers ---------------------------------------------------------------------------------------
def _numbered(numbers):
    starts = [date(2021, 3, 1), date(2022, 1, 1), date(2023, 6, 5), date(2024, 9, 15)]
    ends = [date(2021, 7, 15), date(2023, 5, 20), date(2024, 8, 30), date(2025, 6, 1)]
    drugs = [VRD, RD, DPD, KCD]
    return [reg(d, s, e, line=n) for d, s, e, n in zip(drugs, starts, ends, numbers)]


def test_line_numbers_on_every_entry_decide():
    lc = lines(_numbered([1, 1, 2, 2]))
    assert lc.method == "line numbers" and lc.count == 2
    assert "line 1 as recorded" in steps_text(lc)


def test_line_numbers_count_distinct_numbers_not_entries():
    lc = lines(_numbered([1, 2, 2, 5]))
    assert lc.method == "line numbers" and lc.count == 3


def test_partial_line_numbers_are_reported_not_used():
    entries = _numbered([1, 1, 2, 2])
    entries[3] = reg(KCD, date(2024, 9, 15), date(2025, 6, 1))
    lc = lines(entries)
    assert lc.method == "IMWG rules"
    assert "line numbers given on 3 of 4 regimens: reported, not used" in steps_text(lc)


# ---- lines: same drugs resumed after a stop, or a hold -------------------------------------------------------
@pytest.mark.parametrize("gap, expected", [(0, 1), (59, 1), (60, 1), (61, 2)])
def test_same_drugs_resumed_after_a_stop(gap, expected):
    end = date(2024, 6, 1)
    lc = lines([reg(DPD, date(2024, 1, 1), end), reg(DPD, end + timedelta(days=gap), date(2024, 12, 1))])
    assert lc.count == expected
    if expected == 2:
        assert f"retreatment after a stop of {gap} days (more than 60)" in steps_text(lc)


@pytest.mark.parametrize("reason", ["toxicity", "hold"])
@pytest.mark.parametrize("gap, expected", [(61, 1), (180, 1), (181, 2)])
def test_same_drugs_resumed_after_a_hold(reason, gap, expected):
    end = date(2024, 6, 1)
    lc = lines([reg(DPD, date(2024, 1, 1), end, stop_reason=reason),
                reg(DPD, end + timedelta(days=gap), date(2025, 6, 1))])
    assert lc.count == expected


def test_same_drugs_resumed_after_documented_progression_are_a_new_line():
    end = date(2024, 2, 12)
    lc = lines([reg(DPD, date(2023, 6, 5), end, stop_reason="toxicity"), reg(DPD, date(2024, 3, 28), date(2026, 11, 30))],
               marks=[pd(date(2024, 3, 15))])
    assert lc.count == 2
    assert "retreatment after progression on 2024-03-15" in steps_text(lc)


def test_progression_on_the_day_the_next_regimen_starts_counts_as_before_it():
    lc = lines([reg(VRD, date(2023, 1, 1), date(2023, 6, 1)), reg(VRD, date(2023, 6, 15), date(2024, 1, 1))],
               marks=[pd(date(2023, 6, 15))])
    assert lc.count == 2


def test_progression_on_the_start_day_of_the_earlier_regimen_does_not_separate_them():
    lc = lines([reg(VRD, date(2023, 1, 1), date(2023, 6, 1)), reg(RD, date(2023, 6, 15), date(2024, 1, 1))],
               marks=[pd(date(2023, 1, 1))])
    assert lc.count == 1


def test_an_entry_stopped_for_progression_marks_progression_at_its_last_dose():
    lc = lines([reg(VRD, date(2023, 1, 1), date(2023, 6, 1), stop_reason="progression"),
                reg(RD, date(2023, 6, 15), date(2024, 1, 1))])
    assert lc.count == 2 and "after progression on 2023-06-01" in steps_text(lc)


# ---- lines: added, swapped, dropped drugs ----------------------------------------------------------------------
def test_dose_or_formulation_change_of_the_same_drugs_is_not_a_new_line():
    lc = lines([reg(RD, date(2023, 1, 1), date(2023, 3, 31)), reg(RD, date(2023, 4, 1), date(2023, 9, 30))])
    assert lc.count == 1 and "a dose, schedule or formulation change" in steps_text(lc)


def test_adding_a_drug_is_a_new_line_without_progression():
    lc = lines([reg(RD, date(2023, 1, 1), date(2023, 6, 30)), reg(DRD, date(2023, 7, 1), date(2024, 2, 1))])
    assert lc.count == 2 and "adds daratumumab" in steps_text(lc)


def test_swapping_a_drug_is_a_new_line():
    lc = lines([reg(RD, date(2023, 1, 1), date(2023, 6, 30)), reg(PD, date(2023, 7, 1), date(2024, 2, 1))])
    assert lc.count == 2 and "adds pomalidomide, without lenalidomide" in steps_text(lc)


def test_dropping_a_drug_is_not_a_new_line():
    lc = lines([reg(VRD, date(2022, 1, 10), date(2022, 4, 18), stop_reason="toxicity"),
                reg(RD, date(2022, 4, 25), date(2024, 3, 11))])
    assert lc.count == 1 and "bortezomib stopped" in steps_text(lc)


def test_per_drug_addition_to_ongoing_rd_is_a_new_line():
    lc = lines([one("bortezomib", date(2022, 1, 10), date(2022, 8, 29)), one("lenalidomide", date(2022, 1, 10),
                                                                               date(2024, 3, 11)),
                one("dexamethasone", date(2022, 1, 10), date(2024, 3, 11)),
                one("daratumumab", date(2022, 10, 3), date(2024, 3, 11))])
    assert lc.count == 2 and "adds daratumumab" in steps_text(lc)


# ---- lines: planned sequences -------------------------------------------------------------------------------
@pytest.mark.parametrize("intent", ["consolidation", "maintenance"])
def test_consolidation_or_maintenance_continues_the_line(intent):
    lc = lines([reg(VRD, date(2021, 3, 1), date(2021, 7, 15), intent="induction"),
                reg(["daratumumab"], date(2022, 6, 1), date(2023, 6, 1), intent=intent)])
    assert lc.count == 1 and f"{intent} continuing the line" in steps_text(lc)


def test_maintenance_after_documented_progression_is_a_new_line():
    lc = lines([reg(["daratumumab", "carfilzomib", "dexamethasone"], date(2023, 1, 23), date(2024, 1, 8)),
                reg(["pomalidomide"], date(2024, 3, 11), date(2027, 1, 1), intent="maintenance")],
               marks=[pd(date(2024, 2, 26))])
    assert lc.count == 2


def test_transplant_joins_the_line_before_it():
    lc = lines(induction_and_transplant())
    assert lc.count == 1 and [t.date for t in lc.lines[0].transplants] == [TX_DATE]
    assert "joins the line of the regimen before it" in steps_text(lc)


def test_transplant_after_progression_with_no_reinduction_starts_a_line():
    lc = lines(induction_and_transplant()[:1] + [tx(date(2022, 6, 1))], marks=[pd(date(2022, 3, 1))])
    assert lc.count == 2 and "after progression on 2022-03-01 with no reinduction" in steps_text(lc)


def test_transplant_after_a_reinduction_joins_the_reinduction_line():
    lc = lines([reg(VRD, date(2020, 1, 1), date(2020, 5, 1)), reg(KCD, date(2022, 4, 1), date(2022, 8, 1)),
                tx(date(2022, 9, 15)), reg(["carfilzomib"], date(2022, 11, 1), date(2023, 11, 1), intent="maintenance")],
               marks=[pd(date(2022, 3, 1))])
    assert lc.count == 2
    assert [t.date for t in lc.lines[1].transplants] == [date(2022, 9, 15)] and len(lc.lines[1].regimens) == 2


@pytest.mark.parametrize("gap, expected", [(179, 1), (180, 1), (181, 2)])
def test_second_transplant_within_180_days_is_a_planned_tandem(gap, expected):
    lc = lines(induction_and_transplant() + [tx(TX_DATE + timedelta(days=gap))])
    assert lc.count == expected
    assert ("(a planned tandem," in steps_text(lc)) is (expected == 1)


@pytest.mark.parametrize("days_before, expected", [(0, 1), (14, 1), (15, 2)])
def test_melphalan_alone_before_transplant_is_conditioning(days_before, expected):
    start = TX_DATE - timedelta(days=days_before)
    lc = lines([reg(VRD, INDUCTION_START, INDUCTION_END), reg(["melphalan"], start, start), tx(TX_DATE)])
    assert lc.count == expected
    if expected == 1:
        assert f"conditioning for the transplant on {TX_DATE}" in steps_text(lc)


@pytest.mark.parametrize("days_after, expected", [(1, 1), (180, 1), (181, 2)])
def test_unmarked_regimen_after_transplant_with_drugs_of_the_line(days_after, expected):
    start = TX_DATE + timedelta(days=days_after)
    lc = lines(induction_and_transplant() + [reg(["bortezomib", "dexamethasone"], start, start + timedelta(days=90))])
    assert lc.count == expected


def test_unmarked_vrd_restarted_after_the_transplant_is_the_same_line():
    lc = lines(induction_and_transplant() + [reg(VRD, INDUCTION_END + timedelta(days=100), date(2022, 6, 1))])
    assert lc.count == 1


@pytest.mark.parametrize("drugs", [["ixazomib"], ["pomalidomide"], ["ixazomib", "dexamethasone"]])
def test_single_imid_or_pi_after_transplant_continues_the_line(drugs):
    start = TX_DATE + timedelta(days=100)
    lc = lines(induction_and_transplant() + [reg(drugs, start, start + timedelta(days=300))])
    assert lc.count == 1 and "a single agent (maintenance)" in steps_text(lc)


def test_single_agent_of_another_class_after_transplant_is_a_new_line():
    start = TX_DATE + timedelta(days=100)
    lc = lines(induction_and_transplant() + [reg(["daratumumab"], start, start + timedelta(days=300))])
    assert lc.count == 2


# ---- lines: described in date order with their reasons -------------------------------------------------------
def test_lines_are_described_in_date_order_with_why_each_began():
    lc = lines([
        reg(VRD, date(2021, 3, 1), date(2021, 7, 15), intent="induction"), tx(date(2021, 9, 2)),
        reg(["lenalidomide"], date(2021, 12, 1), date(2023, 5, 20), intent="maintenance"),
        Regimen(regimen="DPd", start=date(2023, 6, 5), end=date(2024, 8, 30)),
        Regimen(regimen="KPd", start=date(2024, 9, 15), end=date(2025, 6, 1)),
    ], marks=[pd(date(2023, 5, 15)), pd(date(2024, 8, 30))])
    assert lc.count == 3
    text = lc.describe()
    assert text.index("line 1:") < text.index("line 2:") < text.index("line 3:")
    assert "line 3: KPd (carfilzomib, pomalidomide, dexamethasone) from 2024-09-15 (new agents after progression on " \
           "2024-08-30)" in text


# ---- an acronym with two meanings ----------------------------------------------------------------------------
def test_line_variants_replace_an_ambiguous_regimen_by_each_meaning():
    res = TERM.resolve("BVd")
    assert res.kind == "ambiguous"
    hist = history([Regimen(regimen="BVd", start=D0, end=D0 + timedelta(days=100))])
    variants = line_variants(hist, TERM)
    assert len(variants) == len(res.meanings)
    assert {frozenset(v.anti_myeloma[0].core) for v in variants} == {
        frozenset(d.generic for d in m if TERM.is_anti_myeloma(d)) for m in res.meanings}
