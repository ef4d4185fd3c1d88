"""Results of evaluation: three-valued statuses, evidence, and the trace of each criterion."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

__all__ = ["MET", "NOT_MET", "UNKNOWN", "STATUSES", "Evidence", "CheckResult", "NodeResult", "all_of", "any_of"]

MET, NOT_MET, UNKNOWN = "met", "not_met", "unknown"
STATUSES = (MET, NOT_MET, UNKNOWN)


def all_of(statuses) -> str:
    """AND: not met if any is not met, else unknown if any is unknown, else met."""
    seen_unknown = False
    for s in statuses:
        if s == NOT_MET:
            return NOT_MET
        if s == UNKNOWN:
            seen_unknown = True
    return UNKNOWN if seen_unknown else MET


def any_of(statuses) -> str:
    """OR: met if any is met, else unknown if any is unknown, else not met."""
    seen_unknown = False
    for s in statuses:
        if s == MET:
            return MET
        if s == UNKNOWN:
            seen_unknown = True
    return UNKNOWN if seen_unknown else NOT_MET


@dataclass(frozen=True, slots=True)
class Evidence:
    """One fact a result used: what it is, its value and unit, its date, and where it came from."""

    fact: str
    value: Any = None
    unit: str | None = None
    date: date | None = None
    source: str | None = None

    def to_json(self) -> dict:
        out: dict[str, Any] = {"fact": self.fact}
        if self.value is not None:
            out["value"] = self.value
        if self.unit is not None:
            out["unit"] = self.unit
        if self.date is not None:
            out["date"] = self.date.isoformat()
        if self.source is not None:
            out["source"] = self.source
        return out


@dataclass(frozen=True, slots=True)
class CheckResult:
    status: str
    reason: str
    evidence: tuple[Evidence, ...] = ()
    missing: tuple[str, ...] = ()       # documentation that would settle an unknown result
    fact: str | None = None             # the decisive fact in short, for a parent's reason (default: the reason)


@dataclass(slots=True)
class NodeResult:
    id: str
    label: str
    reference: str
    status: str
    reason: str
    evidence: tuple[Evidence, ...] = ()
    missing: tuple[str, ...] = ()
    children: list["NodeResult"] = field(default_factory=list)
    refer_to: str | None = None
    decisive: str = ""                  # the fact that decided this node, in short, for its parent's reason

    def walk(self):
        yield self
        for child in self.children:
            yield from child.walk()

    def find(self, node_id: str) -> "NodeResult | None":
        for n in self.walk():
            if n.id == node_id:
                return n
        return None

    def documentation_needed(self) -> list[str]:
        """What would settle this node when it is unknown: its own requests, else its unknown children's."""
        if self.status != UNKNOWN:
            return []
        if self.missing:
            return list(self.missing)
        out: list[str] = []
        for child in self.children:
            for item in child.documentation_needed():
                if item not in out:
                    out.append(item)
        return out
