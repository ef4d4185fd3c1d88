"""Three-valued evaluation of a compiled criteria tree, with a trace of every node."""

from __future__ import annotations

from priorauth.engine.facts import Facts
from priorauth.engine.results import MET, NOT_MET, UNKNOWN, NodeResult, all_of, any_of

__all__ = ["evaluate_node"]


def _summary(combine: str, kids: list[NodeResult], status: str) -> str:
    def ids(want: str) -> str:
        return ", ".join(k.id for k in kids if k.status == want)

    if combine == "all":
        if status == MET:
            return f"All {len(kids)} met"
        if status == NOT_MET:
            return f"Not met: {ids(NOT_MET)}"
        return f"Undecided: {ids(UNKNOWN)}"
    if status == MET:
        return f"Met by {ids(MET)}"
    if status == NOT_MET:
        return f"None of {', '.join(k.id for k in kids)} is met"
    return f"Undecided: {ids(UNKNOWN)}" + (f" (not met: {ids(NOT_MET)})" if any(k.status == NOT_MET for k in kids) else "")


def evaluate_node(node, facts: Facts) -> NodeResult:
    """Evaluate a node and all of its descendants (no short-circuit: the trace shows every criterion)."""
    own = node.check.run(facts, node.params) if node.check is not None else None
    kids = [evaluate_node(c, facts) for c in node.children]
    if node.combine is None:
        return NodeResult(node.id, node.label, node.reference, own.status, own.reason, own.evidence, own.missing,
                          kids, node.refer_to)
    combined = (all_of if node.combine == "all" else any_of)(k.status for k in kids)
    summary = _summary(node.combine, kids, combined)
    if own is None:
        return NodeResult(node.id, node.label, node.reference, combined, summary, (), (), kids, node.refer_to)
    status = all_of((own.status, combined))
    return NodeResult(node.id, node.label, node.reference, status, f"{own.reason}; {summary}", own.evidence,
                      own.missing, kids, node.refer_to)
