"""Unit conversion (priorauth.clinical.units): every spelling the engine reads, and the errors.

Canonical units used by the engine: serum M-protein g/dL, urine M-protein mg/(24.h), free light chains mg/dL,
CAR-T dose {cells} or {cells}/kg, circulating plasma cells {cells}/uL, eGFR mL/min/{1.73_m2}, weight kg.
"""

from __future__ import annotations

import pytest

from priorauth.clinical.units import UnitError, convert, factor

SERUM = "g/dL"
URINE = "mg/(24.h)"
FLC = "mg/dL"
CELLS = "{cells}"
CELLS_PER_KG = "{cells}/kg"
BLOOD_CELLS = "{cells}/uL"
EGFR = "mL/min/{1.73_m2}"


# ---- serum M-protein: g/L and mg/dL to g/dL -------------------------------------------------------------------
@pytest.mark.parametrize("unit, expected", [
    ("g/dL", 1.0),
    ("g/L", 0.1),
    ("mg/dL", 0.001),
])
def test_serum_factor_to_g_per_dl(unit, expected):
    assert factor(unit, SERUM) == pytest.approx(expected, rel=1e-12)


def test_sixteen_g_per_l_is_1_6_g_per_dl():
    assert convert(16, "g/L", SERUM) == pytest.approx(1.6, rel=1e-12)


def test_1000_mg_per_dl_is_1_g_per_dl():
    assert convert(1000, "mg/dL", SERUM) == pytest.approx(1.0, rel=1e-12)


# ---- urine M-protein: g/24h, g/(24.h), mg/24 h, mg/d to mg/(24.h) ----------------------------------------------
@pytest.mark.parametrize("unit, expected", [
    ("mg/(24.h)", 1.0),
    ("mg/24h", 1.0),
    ("mg/24 h", 1.0),
    ("mg/d", 1.0),
    ("g/24h", 1000.0),
    ("g/(24.h)", 1000.0),
])
def test_urine_factor_to_mg_per_24h(unit, expected):
    assert factor(unit, URINE) == pytest.approx(expected, rel=1e-12)


def test_0_2_g_per_24h_is_200_mg_per_24h():
    assert convert(0.2, "g/24h", URINE) == pytest.approx(200.0, rel=1e-12)


def test_urine_per_hour_is_not_per_day():
    # mg/h is a rate 24 times larger than mg/24 h: the "24" must be read as a divisor, not dropped
    assert factor("mg/h", URINE) == pytest.approx(24.0, rel=1e-12)


# ---- free light chains: mg/L to mg/dL ---------------------------------------------------------------------------
def test_mg_per_l_to_mg_per_dl():
    assert factor("mg/L", FLC) == pytest.approx(0.1, rel=1e-12)
    assert convert(100, "mg/L", FLC) == pytest.approx(10.0, rel=1e-12)


def test_mg_per_dl_is_canonical_flc_unit():
    assert factor("mg/dL", FLC) == 1.0


# ---- CAR-T dose ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("unit, expected", [
    ("10*6{cells}", 1e6),
    ("x10^6 cells", 1e6),
    ("{cells}", 1.0),
])
def test_flat_dose_units_to_cells(unit, expected):
    assert factor(unit, CELLS) == pytest.approx(expected, rel=1e-12)


def test_115_million_cells():
    assert convert(115, "10*6{cells}", CELLS) == pytest.approx(115e6, rel=1e-12)
    assert convert(115, "x10^6 cells", CELLS) == pytest.approx(115e6, rel=1e-12)


def test_per_kg_dose_to_cells_per_kg():
    assert factor("10*6{cells}/kg", CELLS_PER_KG) == pytest.approx(1e6, rel=1e-12)


def test_per_kg_dose_is_not_a_flat_count():
    with pytest.raises(UnitError, match="cannot be converted"):
        factor("10*6{cells}/kg", CELLS)


def test_flat_dose_is_not_per_kg():
    with pytest.raises(UnitError, match="cannot be converted"):
        factor("10*6{cells}", CELLS_PER_KG)


# ---- circulating plasma cells: /uL, {cells}/uL, 10*9/L ---------------------------------------------------------
@pytest.mark.parametrize("unit, expected", [
    ("/uL", 1.0),
    ("{cells}/uL", 1.0),
    ("cells/uL", 1.0),
    ("10*9/L", 1000.0),
    ("cells/mm3", 1.0),
    ("/mm3", 1.0),
])
def test_blood_cell_counts_to_cells_per_ul(unit, expected):
    assert factor(unit, BLOOD_CELLS) == pytest.approx(expected, rel=1e-12)


def test_per_ul_and_cells_per_ul_are_the_same_unit():
    # UCUM: {cells} is an annotation, so /uL and {cells}/uL convert 1:1 both ways
    assert factor("/uL", "{cells}/uL") == pytest.approx(1.0, rel=1e-12)
    assert factor("{cells}/uL", "/uL") == pytest.approx(1.0, rel=1e-12)


def test_0_2_times_10_9_per_l_is_200_per_ul():
    assert convert(0.2, "10*9/L", BLOOD_CELLS) == pytest.approx(200.0, rel=1e-12)


# ---- eGFR: mL/min/1.73m2 spellings -----------------------------------------------------------------------------
@pytest.mark.parametrize("unit", [
    "mL/min/{1.73_m2}",
    "mL/min/1.73m2",
    "mL/min/1.73 m2",
    "mL/min/1.73m^2",
    "mL/min/1.73m²",
    "mL/min/{1.73m2}",
])
def test_egfr_spellings(unit):
    assert factor(unit, EGFR) == pytest.approx(1.0, rel=1e-12)
    assert convert(59, unit, EGFR) == pytest.approx(59.0, rel=1e-12)


def test_egfr_is_not_a_mass_concentration():
    with pytest.raises(UnitError, match="cannot be converted"):
        factor("mL/min/1.73m2", "mg/dL")


# ---- weight ---------------------------------------------------------------------------------------------------
def test_pounds_to_kg():
    assert factor("lb", "kg") == pytest.approx(0.45359237, rel=1e-12)
    assert convert(220.462, "lb", "kg") == pytest.approx(100.0, rel=1e-5)


def test_kg_is_canonical_weight_unit():
    assert factor("kg", "kg") == 1.0


# ---- percentages ---------------------------------------------------------------------------------------------
def test_percent_to_percent():
    assert factor("%", "%") == 1.0


# ---- spellings senders use beside UCUM ---------------------------------------------------------------------
@pytest.mark.parametrize("unit, target, expected", [
    ("G/DL", SERUM, 1.0), ("MG/DL", FLC, 1.0), ("gm/dL", SERUM, 1.0), ("GM/DL", SERUM, 1.0),   # UCUM case-insensitive
    ("MG/24HR", URINE, 1.0), ("ML/MIN/1.73M2", EGFR, 1.0),
    ("KG", "kg", 1.0), ("Kg", "kg", 1.0), ("kgs", "kg", 1.0), ("MG", "mg", 1.0), ("Mg", "mg", 1.0), ("gms", "mg", 1000.0),
    ("x10E6 cells", "10*6{cells}", 1.0), ("10e6 cells/kg", "10*6{cells}/kg", 1.0),   # 10E6 is 10^6, not 10 x 10^6
    ("x 10^6 CAR+ T cells", "10*6{cells}", 1.0), ("x10^6 CAR-positive viable T cells", "10*6{cells}", 1.0),
    ("10^6 CAR-T cells/kg", "10*6{cells}/kg", 1.0), ("10*6{CELLS}", "10*6{cells}", 1.0),
    ("K/uL", BLOOD_CELLS, 1000.0), ("ratio", "1", 1.0),
])
def test_the_spellings_senders_use(unit, target, expected):
    assert factor(unit, target) == pytest.approx(expected, rel=1e-12)


def test_a_capitalized_clinical_word_is_never_a_prefix():
    """A sender's "Mg/dL" is milligrams (UCUM would read megagrams: a billion times the M-protein); mixed-case
    UCUM such as mL or 10*9/L keeps its case."""
    assert factor("Mg/dL", FLC) == 1.0 and factor("Kg", "kg") == 1.0 and factor("Mg", "mg") == 1.0
    assert factor("mL/min", "mL/min/{1.73_m2}") == 1.0 and factor("10*9/L", BLOOD_CELLS) == pytest.approx(1000.0)


# ---- errors ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("unit", ["@@", "mg/dL/", "notaunit{x}/("])
def test_unreadable_unit_raises(unit):
    with pytest.raises(UnitError, match="is not a unit"):
        factor(unit, SERUM)


@pytest.mark.parametrize("unit", ["", "   "])
def test_empty_unit_raises(unit):
    with pytest.raises(UnitError, match="empty unit"):
        factor(unit, SERUM)


def test_unreadable_target_raises():
    with pytest.raises(UnitError, match="is not a unit"):
        factor("g/dL", "@@")


@pytest.mark.parametrize("unit, target", [
    ("g/dL", URINE),          # a concentration is not a daily amount
    (URINE, SERUM),
    ("mg", SERUM),            # a mass is not a concentration
    ("kg", CELLS),            # a weight is not a cell count
    (CELLS, "kg"),
    ("mL/min", "mg"),
    ("lb", "g/dL"),
])
def test_wrong_dimension_raises(unit, target):
    with pytest.raises(UnitError, match="cannot be converted"):
        factor(unit, target)


def test_convert_raises_the_same_error():
    with pytest.raises(UnitError):
        convert(1.0, "mg", SERUM)


def test_unit_error_is_a_value_error():
    # callers that catch ValueError (pydantic validators) see unit problems too
    assert issubclass(UnitError, ValueError)


def test_ucum_customary_units_in_brackets():
    assert factor("[lb_av]", "kg") == pytest.approx(0.45359237)
    assert factor("[oz_av]", "g") == pytest.approx(28.349523125)


def test_a_string_longer_than_any_unit_is_refused_and_never_kept():
    from priorauth.clinical import units

    before = units._factor.cache_info().currsize
    with pytest.raises(UnitError, match="characters long: not a unit"):
        factor("mg/" + "d" * 5000, SERUM)
    assert units._factor.cache_info().currsize == before


def test_first_use_from_many_threads_at_once_is_safe(monkeypatch):
    """The service evaluates in a thread pool: the registry is made once and pint is used under a lock."""
    from priorauth.clinical import units

    monkeypatch.setattr(units, "_registry", None)
    units._parse.cache_clear()
    units._factor.cache_clear()
    try:
        _threads_convert(units)
    finally:   # what was parsed belongs to the fresh registry, which monkeypatch is about to replace
        units._parse.cache_clear()
        units._factor.cache_clear()


def _threads_convert(units) -> None:
    import threading

    spellings = [("g/dL", "mg/L"), ("mg/dL", "g/L"), ("10*6{cells}", "10*6{cells}"), ("[lb_av]", "kg"),
                 ("mg/(24.h)", "mg/(24.h)"), ("x10^6 cells", "10*6{cells}"), ("/mm3", "/uL"), ("mL/min", "mL/min")]
    barrier = threading.Barrier(16)
    results, errors = [], []

    def work(i: int) -> None:
        try:
            barrier.wait()
            unit, target = spellings[i % len(spellings)]
            results.append((unit, target, units.convert(1.0, unit, target)))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    pool = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert errors == []
    got = {(u, t): v for u, t, v in results}
    assert got[("g/dL", "mg/L")] == pytest.approx(10000.0) and got[("[lb_av]", "kg")] == pytest.approx(0.45359237)
    assert got[("/mm3", "/uL")] == pytest.approx(1.0)


@pytest.mark.parametrize("unit, target", [("0", "mg"), ("mg", "0 mg"), ("g", "1e-400 g")])
def test_a_unit_of_zero_is_a_unit_error(unit, target):
    with pytest.raises(UnitError, match="cannot be converted"):
        factor(unit, target)
