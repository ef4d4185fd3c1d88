"""Conditions and Procedures: the member's medical history (ICD-10-CM or words, status, onset) and stem cell
transplants; Lists that submit an empty history."""

from __future__ import annotations

import re
from typing import Any

from priorauth.fhir.codes import (CONDITION_CLINICAL, CPT, CPT_TRANSPLANT, ICD10CM, LOINC, LOINC_MEDICATION_HISTORY,
                                  LOINC_PAST_ILLNESS)
from priorauth.terminology import normalize_code
from priorauth.fhir.pas_intake.errors import INVALID, REQUIRED
from priorauth.fhir.pas_intake.fhirjson import _LEFT_OUT, _SKIP_STATUS, _codings, _list, _sys
from priorauth.fhir.pas_intake.bundle import BundleReader


_CLINICAL_ACTIVE = frozenset({"active", "recurrence", "relapse"})
_CLINICAL_RESOLVED = frozenset({"inactive", "remission", "resolved"})
_REFUTED = frozenset({"refuted", "entered-in-error"})
_SCT_WORDS = re.compile(r"transplant|\bh?sct\b|\bhct\b|\basct\b|stem[ -]?cell|\bauto-?(?:h?sct|hct)\b")
_AUTO = re.compile(r"\bautologous\b|\bauto\b|\basct\b|\bauto-")
_ALLO = re.compile(r"\ballogeneic\b|\ballo\b|\ballo-")
_HISTORY = {"code": "code", "text": "code.text", "onset": "onset[x]", "status": "clinicalStatus"}
_HISTORY_CODE0 = {**_HISTORY, "code": "code.coding[0].code"}


class HistoryReader(BundleReader):
    """Reads Conditions and Procedures."""

    def _procedure(self, k: int) -> dict | None:
        res = self.res[k]
        base = self.base(k)
        label = self.labels[k]
        kind = None
        for c in _codings(res.get("code")):
            if isinstance(c, dict) and _sys(c) == CPT and c.get("code") in CPT_TRANSPLANT:
                kind = CPT_TRANSPLANT[c["code"]]
                break
        if kind is None:
            text = res.get("code", {}).get("text") if isinstance(res.get("code"), dict) else None
            texts = [text] + [c.get("display") for c in _codings(res.get("code")) if isinstance(c, dict)]
            for t in texts:
                if isinstance(t, str) and _SCT_WORDS.search(t.lower()):
                    low = t.lower()
                    auto, allo = bool(_AUTO.search(low)), bool(_ALLO.search(low))
                    if auto != allo:
                        kind = "autologous_sct" if auto else "allogeneic_sct"
                        break
        if kind is None:
            self.note(label, "not a stem cell transplant (CPT 38241, 38240); left out")
            return None
        status = self._status(k)
        if status is _LEFT_OUT:
            return None
        if status in _SKIP_STATUS["Procedure"]:
            self.note(label, f"status {status}; not read as a therapy")
            return None
        if "performedDateTime" in res:
            when = self._date(res["performedDateTime"], f"{base}.performedDateTime", "the date of the transplant")
        elif isinstance(res.get("performedPeriod"), dict):
            when = self._date(res["performedPeriod"].get("start"), f"{base}.performedPeriod.start",
                              "the date of the transplant")
        else:
            self.issue(f"{base}.performed[x]", REQUIRED, "is required: the date of the transplant")
            return None
        line, _, line_ok = self._line(res, base)
        if when is None or not line_ok:
            return None
        out: dict[str, Any] = {"procedure": kind, "date": when}
        if line is not None:
            out["line"] = line
        return out

    def _history(self) -> tuple[list[dict], list[str]]:
        """Conditions other than the Claim's own diagnoses."""
        out: list[dict] = []
        srcs: list[str] = []
        claim_dx, claim_refs = self.claim_dx, self.claim_dx_refs
        for k in self.by_type.get("Condition", ()):
            try:
                if k in claim_refs:
                    continue
                cond = self.res[k]
                base, label = self.base(k), self.labels[k]
                ver = [c.get("code") for c in _codings(cond.get("verificationStatus")) if isinstance(c, dict)]
                if any(v in _REFUTED for v in ver):
                    self.note(label, f"verification status {ver[0]}; left out")
                    continue
                code = code_expr = None
                text = None
                cc = cond.get("code")
                for m, c in enumerate(_codings(cc)):
                    if isinstance(c, dict) and _sys(c) == ICD10CM and c.get("code") is not None:
                        code, code_expr = c["code"], (None if m == 0 else f"code.coding[{m}].code")
                        break
                if isinstance(cc, dict):
                    text = cc.get("text") if isinstance(cc.get("text"), str) else None
                    if text is None:
                        text = next((c.get("display") for c in _codings(cc) if isinstance(c, dict)
                                     and isinstance(c.get("display"), str)), None)
                if code is None and not text:
                    self.note(label, "no ICD-10-CM code and no text; left out")
                    continue
                if isinstance(code, str) and normalize_code(code) in claim_dx:
                    continue  # the request's own diagnosis
                entry: dict[str, Any] = {}
                fields = _HISTORY
                if code is not None:
                    entry["code"] = code
                    fields = _HISTORY_CODE0 if code_expr is None else {**_HISTORY, "code": code_expr}
                if text:
                    entry["text"] = text
                status = next((c.get("code") for c in _codings(cond.get("clinicalStatus"))
                               if isinstance(c, dict) and _sys(c) in (None, CONDITION_CLINICAL)), None)
                if status in _CLINICAL_ACTIVE:
                    entry["status"] = "active"
                elif status in _CLINICAL_RESOLVED:
                    entry["status"] = "resolved"
                onset = cond.get("onsetDateTime")
                onset_expr = f"{base}.onsetDateTime"
                if onset is None and isinstance(cond.get("onsetPeriod"), dict):
                    onset, onset_expr = cond["onsetPeriod"].get("start"), f"{base}.onsetPeriod.start"
                if onset is not None:
                    d = self._date(onset, onset_expr, "the onset", required=False, label=label)
                    if d is not None:
                        entry["onset"] = d
                out.append(entry)
                srcs.append(label)
                self.items.setdefault("history", []).append((k, fields))
            except (TypeError, AttributeError, ValueError) as exc:
                self._shape_problem(k, exc)
        return out, srcs

    def _lists(self) -> set[str]:
        """Which sections a List submits: LOINC 10160-0 (medication history), 11348-0 (past illness)."""
        sections: set[str] = set()
        for k in self.by_type.get("List", ()):
            try:
                lst = self.res[k]
                base, label = self.base(k), self.labels[k]
                codes = {c.get("code") for c in _codings(lst.get("code")) if isinstance(c, dict) and _sys(c) == LOINC}
                if LOINC_MEDICATION_HISTORY in codes:
                    section = "therapies"
                elif LOINC_PAST_ILLNESS in codes:
                    section = "history"
                else:
                    self.note(label, "not a medication history (LOINC 10160-0) or past illness list (11348-0); left out")
                    continue
                if lst.get("emptyReason") is not None and _list(lst.get("entry")):
                    self.issue(f"{base}.emptyReason", INVALID, "a List with entries has no emptyReason (lst-1)")
                    continue
                if section == "history" or lst.get("emptyReason") is not None:
                    sections.add(section)
                elif not _list(lst.get("entry")):
                    self.note(label, "an empty medication history without emptyReason does not submit an empty history")
            except (TypeError, AttributeError, ValueError) as exc:
                self._shape_problem(k, exc)
        return sections
