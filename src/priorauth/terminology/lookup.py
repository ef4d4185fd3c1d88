"""What ``priorauth terminology lookup`` shows: how a name resolved (ingredients, classes, target, kind, the rule
and the key, the formulation, source and status) or why it did not, as data and as lines a pharmacist reads."""

from __future__ import annotations

from typing import TYPE_CHECKING

from priorauth.terminology.drugs import Drug, Resolution

if TYPE_CHECKING:
    from priorauth.terminology import Terminology

__all__ = ["resolution_data", "resolution_lines"]

_HINTS = {"anti_bcma": "the name suggests a BCMA-directed therapy", "car_t": "the name suggests a CAR-T"}


def _drug_data(term: "Terminology", d: Drug) -> dict:
    return {
        "generic": d.generic,
        "classes": sorted(d.classes),
        "class_labels": [term.drug_classes[c]["label"] for c in sorted(d.classes)],
        "anti_myeloma": term.is_anti_myeloma(d),
        "target": d.target,
        "kind": d.kind,
        "brands": list(d.brands),
        "source": d.source,
        "status": d.status,
    }


def resolution_data(term: "Terminology", r: Resolution) -> dict:
    """A resolution as JSON-ready data."""
    return {
        "text": r.text,
        "kind": r.kind,
        "recognized": r.recognized,
        "rule": r.rule,
        "normalized": r.normalized,
        "regimen": r.regimen,
        "formulation": r.formulation,
        "route": r.route,
        "drugs": [_drug_data(term, d) for d in r.drugs],
        "meanings": [[_drug_data(term, d) for d in m] for m in r.meanings],
        "hints": sorted(r.hints),
        "hint_text": [_HINTS[h] for h in sorted(r.hints)],
        "reason": r.reason,
    }


def _drug_line(term: "Terminology", d: Drug) -> list[str]:
    labels = ", ".join(term.drug_classes[c]["label"] for c in sorted(d.classes))
    facts = [labels]
    if d.target:
        facts.append(f"target {d.target}")
    if d.kind and d.kind not in labels:
        facts.append(d.kind)
    facts.append("anti-myeloma (makes a line)" if term.is_anti_myeloma(d) else "not an anti-myeloma drug")
    return [f"    {d.generic}: {'; '.join(facts)}",
            f"      source: {d.source}; status: {d.status}"]


def resolution_lines(term: "Terminology", r: Resolution) -> list[str]:
    """A resolution as readable lines."""
    what = {"drug": "a drug", "regimen": "a regimen", "ambiguous": "an ambiguous regimen acronym",
            "unrecognized": "not recognized"}[r.kind]
    lines = [f"{r.text!r}: {what}"]
    if r.kind == "unrecognized":
        lines.append(f"  normalized key tried: {r.normalized!r}")
        lines.append(f"  {r.reason}")
        lines.extend(f"  hint: {_HINTS[h]}" for h in sorted(r.hints))
        return lines
    lines.append(f"  matched by: {r.rule} (normalized key {r.normalized!r})")
    if r.regimen:
        lines.append(f"  regimen acronym: {r.regimen}")
    if r.formulation or r.route:
        lines.append(f"  formulation: {r.formulation or '-'}" + (f"; route: {r.route}" if r.route else ""))
    if r.kind == "ambiguous":
        lines.append(f"  {r.reason}")
        for i, meaning in enumerate(r.meanings, 1):
            lines.append(f"  meaning {i}: {', '.join(d.generic for d in meaning)}")
            for d in meaning:
                lines.extend(_drug_line(term, d))
        return lines
    if r.reason:
        lines.append(f"  note: {r.reason}")
    lines.append("  ingredients:")
    for d in r.drugs:
        lines.extend(_drug_line(term, d))
    return lines
