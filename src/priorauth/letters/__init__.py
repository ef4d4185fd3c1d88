"""Notice letters of a reviewer's decision: approval (or approval with changes), request for information and
denial, each for the provider and for the member, as HTML (Jinja2 templates) and PDF (WeasyPrint).

The templates and the plan's wording (``templates/letters.yaml``: the plan's name and contacts, appeal time
limits and instructions by line of business, the peer-to-peer offer) are data: a plan points
``PRIORAUTH_LETTER_TEMPLATES`` at a directory whose files replace the bundled ones of the same name.

A member's letter speaks plainly: each reason is the criterion in words and whether the records showed it, never
a criterion number or a code alone; the provider's letter adds the criterion number, the reason and the facts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, select_autoescape

__all__ = ["LetterWriter", "Reviewer", "LETTER_KIND", "AUDIENCES", "letter_text_hash"]

_BUNDLED = Path(__file__).parent / "templates"
#: the letter each decision sends
LETTER_KIND = {"approve": "approval", "modify": "approval", "pend": "request-for-information", "deny": "denial"}
AUDIENCES = ("provider", "member")
_TITLES = {("approve", "provider"): "Prior authorization approved", ("approve", "member"): "Your treatment is approved",
           ("modify", "provider"): "Prior authorization approved with changes",
           ("modify", "member"): "Your treatment is approved, with changes",
           ("pend", "provider"): "Request for information", ("pend", "member"): "We need more information",
           ("deny", "provider"): "Prior authorization denied", ("deny", "member"): "Your treatment was not approved"}


@dataclass(frozen=True)
class Reviewer:
    name: str
    credentials: str
    specialty: str


def letter_text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _day(value: Any) -> str:
    """A date as letters print it: 12 January 2027."""
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return f"{value.day} {value.strftime('%B %Y')}"


def _facts(node: dict) -> str:
    parts = []
    for e in node.get("evidence") or ():
        value = e.get("value")
        text = e["fact"] if value is None else f"{e['fact']} {value}{(' ' + e['unit']) if e.get('unit') else ''}"
        if e.get("date"):
            text += f" ({_day(e['date'])})"
        parts.append(text)
    return "; ".join(parts)


def _names(bundle: dict | None) -> tuple[str | None, str | None]:
    """The member's and the prescriber's names as the request Bundle gives them (None when it gives none)."""
    patient = prescriber = None
    for entry in (bundle or {}).get("entry") or ():
        res = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(res, dict):
            continue
        kind = res.get("resourceType")
        if kind in ("Patient", "Practitioner") and isinstance(res.get("name"), list) and res["name"]:
            n = res["name"][0] if isinstance(res["name"][0], dict) else {}
            text = n.get("text") or " ".join([*(g for g in n.get("given") or () if isinstance(g, str)),
                                              n.get("family") or ""]).strip()
            if kind == "Patient" and patient is None:
                patient = text or None
            elif kind == "Practitioner" and prescriber is None:
                prescriber = text or None
    return patient, prescriber


class LetterWriter:
    """Renders the letters of a decision from the templates (bundled, or a plan's directory over them)."""

    def __init__(self, directory: Path | None = None):
        loaders = [FileSystemLoader(str(directory))] if directory else []
        self._env = Environment(loader=ChoiceLoader([*loaders, FileSystemLoader(str(_BUNDLED))]),
                                autoescape=select_autoescape(["html"]), undefined=StrictUndefined,
                                trim_blocks=True, lstrip_blocks=True)
        wording = directory / "letters.yaml" if directory and (directory / "letters.yaml").is_file() \
            else _BUNDLED / "letters.yaml"
        self.wording = yaml.safe_load(wording.read_text(encoding="utf-8"))
        for key in ("plan", "appeals", "peer_to_peer", "rfi_note", "status_words"):
            if key not in self.wording:
                raise ValueError(f"{wording}: {key} is required")

    def write(self, *, decision, determination: dict, case_id: str, line_of_business: str | None,
              received_at: datetime, due_at: datetime | None, bundle: dict | None, member_id: str | None,
              reviewer: Reviewer, pdf: bool = True) -> list[dict]:
        """``[{"kind", "audience", "html", "pdf"}]``: the decision's letter for the provider and for the
        member."""
        w = self.wording
        patient, prescriber = _names(bundle)
        criteria = {n["id"]: n for n in determination.get("criteria") or ()}
        status_words = w["status_words"]
        reasons = []
        for cid in decision.cited:
            node = criteria.get(cid)
            if node is None:
                continue
            reasons.append({"id": cid, "label": node["label"], "plain": node["label"] + ".",
                            "status_words": status_words.get(node["status"], node["status"].replace("_", " ")),
                            "reason": node["reason"], "facts": _facts(node)})
        # what is needed: the reviewer's request, one item a line (the console pre-fills it from the missing
        # documentation, and the reviewer edits it); without one, the missing documentation itself
        needed = [line.strip().lstrip("-*• ").strip() for line in decision.reason.splitlines()]
        needed = [line for line in needed if line] or [
            str(m["documentation"]) for m in determination.get("missing") or ()
            if isinstance(m, dict) and m.get("documentation")]
        appeal = w["appeals"].get((line_of_business or "").lower()) or w["appeals"]["default"]
        auth = determination.get("authorization") or {}
        authorized = {"product": auth.get("product") or "the requested drug", "doses": auth.get("doses") or 1,
                      "max_cells": f"{auth['max_cells']:,.0f}" if auth.get("max_cells") else None,
                      "valid_from": _day(auth.get("valid_from") or decision.decided_at),
                      "valid_to": _day(auth.get("valid_to")) if auth.get("valid_to") else "",
                      "tocilizumab": auth.get("tocilizumab")}
        kind = LETTER_KIND[decision.action]
        template = self._env.get_template(f"{kind}.html")
        policy = determination.get("policy") or {}
        out = []
        for audience in AUDIENCES:
            context = {
                "audience": audience, "title": _TITLES[(decision.action, audience)], "plan": w["plan"],
                "letter_date": _day(decision.decided_at), "decided": _day(decision.decided_at),
                "recipient": (patient or "the member") if audience == "member" else (prescriber or "the prescriber"),
                "member": {"name": patient or "the member", "id": member_id},
                "prescriber": prescriber or "the requesting provider", "requested": authorized["product"],
                "reference": decision.auth_number or case_id, "auth_number": decision.auth_number or "",
                "received": _day(received_at), "reviewer": reviewer, "reason": decision.reason,
                "modified": decision.action == "modify", "authorized": authorized, "reasons": reasons,
                "needed": needed, "respond_by": _day(due_at) if due_at else "the date in our call",
                "rfi_note": w["rfi_note"], "appeal": appeal,
                "peer_to_peer": w["peer_to_peer"].format(phone=w["plan"]["phone"]),
                "policy": f"{policy.get('title') or policy.get('id', '')} (version {policy.get('version', '')})",
            }
            html = template.render(**context)
            out.append({"kind": kind, "audience": audience, "html": html,
                        "pdf": self.pdf(html) if pdf else b""})
        return out

    @staticmethod
    def pdf(html: str) -> bytes:
        from weasyprint import HTML

        return HTML(string=html).write_pdf()
