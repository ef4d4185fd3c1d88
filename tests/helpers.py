"""Build cases for tests from a complete, eligible base case, changed field by field."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

from priorauth.intake.casefile import case_from_data

BASE: dict[str, Any] = {
    "id": "T-BASE",
    "context": {"policy_effective": "2026-12-23"},
    "request": {
        "received": "2027-01-11", "kind": "initial", "urgency": "standard", "drug": "anitocabtagene autoleucel",
        "dose": {"value": 115, "unit": "10*6{cells}"}, "tocilizumab": {"doses": 4, "dose": {"value": 800, "unit": "mg"}},
        "diagnoses": ["C90.02"], "concurrent": [],
    },
    "member": {"id": "M-1", "birth_date": "1957-06-30", "line_of_business": "medicaid", "state": "TX"},
    "prescriber": {"npi": "1234567893", "taxonomy": "207RH0003X"},
    "labs": [{"test": "serum_m_protein", "value": 1.6, "unit": "g/dL", "date": "2027-01-03"}],
    "therapies": [
        {"drugs": ["bortezomib", "lenalidomide", "dexamethasone"], "start": "2021-03-01", "end": "2021-07-15", "intent": "induction"},
        {"procedure": "autologous_sct", "date": "2021-09-02"},
        {"drugs": ["lenalidomide"], "start": "2021-12-01", "end": "2023-05-20", "intent": "maintenance"},
        {"drugs": ["daratumumab", "pomalidomide", "dexamethasone"], "start": "2023-06-05", "end": "2024-08-30"},
        {"drugs": ["carfilzomib", "cyclophosphamide", "dexamethasone"], "start": "2024-09-15", "end": "2025-06-01"},
        {"drugs": ["selinexor", "bortezomib", "dexamethasone"], "start": "2025-06-20", "end": "2026-12-01"},
    ],
    "assessments": [{"date": "2026-12-05", "response": "progressive_disease"}],
    "history": [{"code": "I10", "text": "essential hypertension"}],
}


def make_case(*, drop: tuple[str, ...] = (), **changes: Any):
    """A copy of BASE with dotted-path changes (``request__drug='x'`` sets request.drug) and sections dropped."""
    data = copy.deepcopy(BASE)
    for key, value in changes.items():
        parts = key.split("__")
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    for path in drop:
        parts = path.split("__")
        node = data
        for part in parts[:-1]:
            node = node[part]
        node.pop(parts[-1], None)
    return case_from_data(data, "test.yaml")


#: an eligible case written as a case file (the text of shared/scenarios/PUB-01.yaml): four prior lines,
#: measurable serum M-protein 8 days before receipt, progression 4 days after the last dose
ELIGIBLE_YAML = """\
id: PUB-01
title: 'Eligible: four prior lines, measurable serum M-protein, progression after the last regimen'
context: {policy_effective: 2026-12-23}
request:
  received: 2027-01-11
  kind: initial
  urgency: standard
  drug: anitocabtagene autoleucel
  dose: {value: 115, unit: '10*6{cells}'}
  tocilizumab:
    doses: 4
    dose: {value: 800, unit: mg}
  diagnoses: [C90.02]
  concurrent: []
member: {id: M-0001, birth_date: 1957-06-30, line_of_business: medicaid, state: TX}
prescriber: {npi: '1234567893', taxonomy: 207RH0003X}
labs:
- {test: serum_m_protein, value: 1.6, unit: g/dL, date: 2027-01-03}
therapies:
- drugs: [bortezomib, lenalidomide, dexamethasone]
  start: 2021-03-01
  end: 2021-07-15
  intent: induction
- {procedure: autologous_sct, date: 2021-09-02}
- drugs: [lenalidomide]
  start: 2021-12-01
  end: 2023-05-20
  intent: maintenance
- drugs: [daratumumab, pomalidomide, dexamethasone]
  start: 2023-06-05
  end: 2024-08-30
- drugs: [carfilzomib, cyclophosphamide, dexamethasone]
  start: 2024-09-15
  end: 2025-06-01
- drugs: [selinexor, bortezomib, dexamethasone]
  start: 2025-06-20
  end: 2026-12-01
assessments:
- {date: 2026-12-05, response: progressive_disease}
history:
- {code: I10, text: essential hypertension}
- {code: E11.9, text: type 2 diabetes mellitus}
expect:
  outcome: meets_criteria
  criteria: {I.A.1: met, I.A.2: met, I.A.3: met, I.A.4: met, I.A.5: met, I.A.6: met, I.A.7: met, I.A.8: met, I.A.9: met, I.A.10: met}
  authorization:
    product: anitocabtagene autoleucel
    doses: 1
    max_cells: 115000000.0
    valid_from: 2027-01-11
    valid_to: 2027-04-11
    tocilizumab: {doses: 4, max_mg_per_dose: 800}
"""


def _norm(v):
    if isinstance(v, (dt.date, dt.datetime)):
        return v.isoformat()
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in v.items()}
    return v


def assert_subset(expected, actual, path="authorization"):
    """Every key ``expected`` gives must match in ``actual`` (dates as ISO text, floats approximately)."""
    import pytest

    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: expected a mapping, got {actual!r}"
        for k, v in expected.items():
            assert k in actual, f"{path}.{k}: missing"
            assert_subset(v, actual[k], f"{path}.{k}")
    elif isinstance(expected, float) or isinstance(actual, float):
        assert actual == pytest.approx(float(expected)), f"{path}: {actual!r} != {expected!r}"
    else:
        assert _norm(expected) == actual, f"{path}: {actual!r} != {expected!r}"


def folded(text: str) -> str:
    """Text with its white space folded, for finding messages whatever the line breaks."""
    return " ".join(text.split())


def refused(r) -> str:
    """A CLI run that refused its input: exit code 2, no traceback; its stderr folded."""
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    return folded(r.stderr)
