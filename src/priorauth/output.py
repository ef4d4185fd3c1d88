"""Output adapters for a determination: the JSON contract and the readable report (Rich)."""

from __future__ import annotations

import json
from typing import Any

from priorauth import __version__
from priorauth.determination import Determination
from priorauth.clinical.units import format_quantity
from priorauth.engine.results import MET, NOT_MET, NodeResult

__all__ = ["to_json", "dumps", "render_report", "render_policy_tree"]


def _node_json(n: NodeResult, parent: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": n.id,
        "parent": parent,
        "label": n.label,
        "reference": n.reference,
        "status": n.status,
        "reason": n.reason,
        "evidence": [e.to_json() for e in n.evidence],
    }
    if n.missing:
        out["missing"] = list(n.missing)
    if n.refer_to:
        out["refer_to"] = dict(n.refer_to)
    return out


def _flat(roots: list[NodeResult]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def walk(n: NodeResult, parent: str | None) -> None:
        out.append(_node_json(n, parent))
        for c in n.children:
            walk(c, n.id)

    for r in roots:
        walk(r, None)
    return out


def to_json(d: Determination) -> dict[str, Any]:
    """The JSON contract of ``priorauth evaluate --json`` (one object per case)."""
    return {
        "case": d.case_id,
        "title": d.title,
        "policy": {"id": d.policy.id, "version": d.policy.version, "title": d.policy.doc.title,
                   "content_hash": d.policy.content_hash},
        "as_of": d.as_of.isoformat(),
        "received": d.received.isoformat() if d.received else None,
        **({"receipt": d.receipt.isoformat(), "sent": d.sent.isoformat() if d.sent else None}
           if d.receipt is not None else {}),
        "outcome": d.outcome,
        "summary": d.summary,
        "reasons": list(d.reasons),
        "refer_to": d.refer_to,
        "missing": list(d.missing),
        "authorization": d.authorization,
        "review": d.review,
        "due": d.due.isoformat() if d.due else None,
        "scope": _flat(d.scope),
        "criteria": _flat(d.criteria),
        "data_problems": list(d.data_problems),
        "engine": {"name": "priorauth", "version": __version__},
    }


def dumps(results: list[dict[str, Any]] | dict[str, Any]) -> str:
    return json.dumps(results, indent=2, ensure_ascii=False) + "\n"


def _evidence_line(e) -> str:
    """A fact as a reviewer reads it: what, the value in clinicians' units, the date, and where it came from."""
    value = "" if e.value is None else (format_quantity(e.value, e.unit) if e.unit else str(e.value))
    text = f"{e.fact}: {value}" if value else e.fact
    if e.date is not None:
        text += f" ({e.date})"
    if e.source:
        text += f", from {e.source}"
    return text


_MARK = {MET: ("[green]✔ met[/]"), NOT_MET: ("[red]✘ not met[/]"), "unknown": ("[yellow]? unknown[/]")}
_OUTCOME = {
    "meets_criteria": "[bold green]MEETS CRITERIA[/]",
    "does_not_meet_criteria": "[bold red]DOES NOT MEET CRITERIA[/]",
    "needs_information": "[bold yellow]NEEDS INFORMATION[/]",
    "refer_to_policy": "[bold cyan]REFER TO POLICY[/]",
    "not_applicable": "[bold]NOT APPLICABLE[/]",
}


def render_report(d: Determination, console) -> None:
    from rich.markup import escape
    from rich.panel import Panel
    from rich.tree import Tree

    head = f"[bold]{escape(d.case_id)}[/]" + (f"  {escape(d.title)}" if d.title else "")
    when = f"evaluation date {d.as_of}"
    if d.received is not None and d.received != d.as_of:
        when += f" (received {d.received})"
    console.print(Panel(f"{head}\n{d.policy.id} v{d.policy.version}  ·  {when}", title="priorauth", expand=False))

    def add(tree, n: NodeResult) -> None:
        text = f"{_MARK[n.status]}  [bold]{escape(n.id)}[/] {escape(n.label)}\n[dim]{escape(n.reason)}[/]"
        for e in n.evidence:
            text += f"\n  [dim]· {escape(_evidence_line(e))}[/]"
        branch = tree.add(text)
        for c in n.children:
            add(branch, c)

    scope = Tree("[bold]Scope[/]")
    for n in d.scope:
        add(scope, n)
    console.print(scope)
    if d.criteria:
        crit = Tree("[bold]Criteria[/]")
        for n in d.criteria:
            add(crit, n)
        console.print(crit)
    console.print(f"\nOutcome: {_OUTCOME[d.outcome]}  {escape(d.summary)}")
    for r in d.reasons:
        console.print(f"  • {escape(r)}")
    if d.refer_to:
        console.print(f"Refer to: [bold]{escape(d.refer_to)}[/]")
    if d.missing:
        console.print("[bold]Documentation needed:[/]")
        for m in d.missing:
            console.print(f"  • {escape(m['criterion'])}: {escape(m['documentation'])}")
    if d.authorization:
        a = d.authorization
        console.print(f"[bold]Authorization (recommended):[/] {a['product']}, {a['doses']} dose, at most "
                      f"{a['max_cells'] / 1e6:g} x 10^6 CAR-positive viable T cells, {a['valid_from']} to "
                      f"{a['valid_to']}")
        t = a.get("tocilizumab")
        if t:
            mod = " [yellow](modified)[/]" if t["modified"] else ""
            console.print(f"  tocilizumab: {t['doses']} doses of at most {t['max_mg_per_dose']} mg{mod}; "
                          f"{escape(t['basis'])}")
    if d.data_problems:
        console.print("[bold]Data problems:[/]")
        for p in d.data_problems:
            console.print(f"  • {escape(p)}")
    due = d.due.isoformat(sep=" ", timespec="minutes") if d.due else "-"
    console.print(f"Decision due: {due}")
    console.print(f"[italic]{escape(d.review['statement'])}[/]\n")


def render_policy_tree(policy, console) -> None:
    from rich.markup import escape
    from rich.tree import Tree

    tree = Tree(f"[bold]{escape(policy.id)}[/] {escape(policy.doc.title)} (v{escape(policy.version)})")

    def add(t, node) -> None:
        how = f"check {node.check.name}" if node.check else ""
        if node.combine:
            how = (how + "; " if how else "") + f"{node.combine} of {len(node.children)}"
        refer = f" -> {', '.join(f'{k}: {v}' for k, v in node.refer_to.items())}" if node.refer_to else ""
        branch = t.add(f"[bold]{escape(node.id)}[/] {escape(node.label)} [dim]({escape(how)}){escape(refer)}[/]")
        for c in node.children:
            add(branch, c)

    for root in policy.roots.values():
        add(tree, root)
    console.print(tree)
