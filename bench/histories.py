"""Synthetic per-drug treatment histories for the benchmarks: records written the way EHRs send them.

``per_drug_case(n_entries, seed)`` returns case data (a dict for ``case_from_data``) whose history has exactly
``n_entries`` therapy entries: one entry per drug with its period, infusions as one entry per administration
date, a transplant, a maintenance, drugs dropped for toxicity and a formulation switch, with progression
documented before each new line. Deterministic for a seed.
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any

#: lines a history cycles through (per-drug entries; an infusion drug is given by administration dates)
_LINES = [
    (["bortezomib", "lenalidomide", "dexamethasone"], None),
    (["daratumumab", "pomalidomide", "dexamethasone"], "daratumumab"),
    (["carfilzomib", "cyclophosphamide", "dexamethasone"], None),
    (["isatuximab-irfc", "carfilzomib", "dexamethasone"], "isatuximab-irfc"),
    (["selinexor", "bortezomib", "dexamethasone"], None),
    (["elotuzumab", "pomalidomide", "dexamethasone"], "elotuzumab"),
]


def per_drug_case(n_entries: int = 40, seed: int = 0, case_id: str | None = None) -> dict[str, Any]:
    rng = random.Random(seed)
    day = date(2015, 1, 5) + timedelta(days=rng.randrange(0, 60))
    therapies: list[dict[str, Any]] = []
    assessments: list[dict[str, Any]] = []
    k = 0
    while len(therapies) < n_entries:
        drugs, infused = _LINES[k % len(_LINES)]
        months = rng.randrange(5, 14)
        end = day + timedelta(days=30 * months)
        for drug in drugs:
            if len(therapies) >= n_entries:
                break
            if drug == infused:
                doses = [(day + timedelta(days=14 * j)).isoformat() for j in range(min(8, 2 * months))]
                therapies.append({"drug": drug, "doses": doses})
            else:
                stop = end if drug != drugs[0] or k % 3 else day + timedelta(days=90)   # a drug dropped early
                entry: dict[str, Any] = {"drug": drug, "start": day.isoformat(), "end": stop.isoformat()}
                if stop != end:
                    entry["stop_reason"] = "toxicity"
                therapies.append(entry)
        if k == 0 and len(therapies) < n_entries:
            therapies.append({"procedure": "autologous_sct", "date": (end + timedelta(days=50)).isoformat()})
            if len(therapies) < n_entries:
                therapies.append({"drug": "lenalidomide", "start": (end + timedelta(days=110)).isoformat(),
                                  "end": (end + timedelta(days=500)).isoformat(), "intent": "maintenance"})
                end = end + timedelta(days=500)
        progression = end + timedelta(days=rng.randrange(3, 20))
        assessments.append({"date": progression.isoformat(), "response": "progressive_disease"})
        day = progression + timedelta(days=rng.randrange(7, 21))
        k += 1
    last_end = max(date.fromisoformat(t.get("end") or t.get("date") or t["doses"][-1]) for t in therapies)
    received = last_end + timedelta(days=30)
    return {
        "id": case_id or f"BENCH-{n_entries}-{seed}",
        "context": {"policy_effective": "2015-01-01"},
        "request": {"received": received.isoformat(), "drug": "anitocabtagene autoleucel",
                    "dose": {"value": 115, "unit": "10*6{cells}"},
                    "tocilizumab": {"doses": 4, "dose": {"value": 8, "unit": "mg/kg"}}, "diagnoses": ["C90.02"]},
        "member": {"birth_date": "1958-03-14", "line_of_business": "commercial", "weight": {"value": 82, "unit": "kg"}},
        "prescriber": {"npi": "1234567893", "taxonomy": "207RH0003X"},
        "labs": [{"test": "serum_m_protein", "value": round(1.2 + 0.1 * rng.random(), 2), "unit": "g/dL",
                  "date": (received - timedelta(days=5)).isoformat()}],
        "therapies": therapies,
        "assessments": assessments,
        "history": [{"code": "I10", "text": "essential hypertension"}],
    }
