"""Three-valued evaluation of a compiled criteria tree, with a trace of every node."""

from __future__ import annotations

from priorauth.engine.facts import Facts
from priorauth.engine.results import MET, NOT_MET, UNKNOWN, NodeResult, all_of, any_of

__all__ = ["evaluate_node"]


def _deciding(kids: list[NodeResult], want: str) -> str:
    return "; ".join(f"{k.id}: {k.decisive or k.reason}" for k in kids if k.status == want)


def _leaf(node, own) -> NodeResult:
    return NodeResult(node.id, node.label, node.reference, own.status, own.reason, own.evidence, own.missing, [],
                      node.refer_to, own.fact or "")


def _summary(combine: str, kids: list[NodeResult], status: str) -> str:
    """A combining node's reason: the decisive facts of the children that decided it."""
    if status == MET:
        if combine == "all":
            return f"All {len(kids)} met"
        return "Met by " + _deciding(kids, MET)
    if status == NOT_MET:
        return ("Not met: " if combine == "all" else "None is met: ") + _deciding(kids, NOT_MET)
    text = "Undecided: " + _deciding(kids, UNKNOWN)
    if combine == "any" and any(k.status == NOT_MET for k in kids):
        text += "; not met: " + ", ".join(k.id for k in kids if k.status == NOT_MET)
    return text


def _decisive(status: str, own, kids: list[NodeResult], combined: str | None) -> str:
    parts = []
    if own is not None and own.status == status:
        parts.append(own.fact or own.reason)
    if combined is not None and combined == status and status != MET:
        parts.append(_deciding(kids, status))
    return "; ".join(parts) if parts else (own.fact or own.reason if own is not None else "")


def _run(node, facts: Facts):
    """A check's result; the same check with the same parameters (one object, shared at compile) runs once."""
    memo = facts.results
    key = (node.check.name, id(node.params))
    found = memo.get(key)
    if found is None:
        found = memo[key] = node.check.run(facts, node.params)
    return found


def evaluate_node(node, facts: Facts) -> NodeResult:
    """Evaluate a node and all of its descendants (no short-circuit: the trace shows every criterion)."""
    own = None if node.check is None else (_run(node, facts) if node.repeated else node.check.run(facts, node.params))
    if not node.children:
        return _leaf(node, own)
    kids = [evaluate_node(c, facts) for c in node.children]
    if node.combine is None:
        return NodeResult(node.id, node.label, node.reference, own.status, own.reason, own.evidence, own.missing,
                          kids, node.refer_to, own.fact or own.reason)
    combined = (all_of if node.combine == "all" else any_of)(k.status for k in kids)
    summary = _summary(node.combine, kids, combined)
    if own is None:
        return NodeResult(node.id, node.label, node.reference, combined, summary, (), (), kids, node.refer_to,
                          _decisive(combined, None, kids, combined) if combined != MET else summary)
    status = all_of((own.status, combined))
    # the node's own result leads; its children's summary follows only where it adds (never "All met" beside a
    # result that is not met)
    reason = own.reason if combined == MET and own.status != MET else f"{own.reason}; {summary}"
    return NodeResult(node.id, node.label, node.reference, status, reason, own.evidence, own.missing, kids,
                      node.refer_to, _decisive(status, own, kids, combined))
