"""MedicationStatement, MedicationAdministration and MedicationRequest history: one exposure per resource
(drug or regimen, dates or dose, intent, line, stop reason, trial) for the engine's regimen assembly."""

from __future__ import annotations

from typing import Any

from priorauth.case import STOP_REASONS
from priorauth.fhir.codes import CS_STOP_REASON, CS_THERAPY_INTENT, EXT_CLINICAL_TRIAL, EXT_LINE_OF_THERAPY
from priorauth.fhir.pas_intake.errors import REQUIRED, VALUE
from priorauth.fhir.pas_intake.fhirjson import _LEFT_OUT, _SKIP_STATUS, _codings, _list, _parse_date, _sys
from priorauth.fhir.pas_intake.bundle import BundleReader


_SKIP_INTENT = frozenset({"proposal", "plan", "option"})
_INTENTS = ("induction", "consolidation", "maintenance")
_THERAPY = {"drugs": "medication[x]", "regimen": "medication[x]", "drug": "medication[x]", "doses": "effective[x]",
            "intent": "category", "line": "extension", "stop_reason": "statusReason", "trial": "extension"}
_THERAPY_DATES = {
    "effectivePeriod": {**_THERAPY, "start": "effectivePeriod.start", "end": "effectivePeriod.end"},
    "effectiveDateTime": {**_THERAPY, "start": "effectiveDateTime", "end": "effectiveDateTime"},
    "boundsPeriod": {**_THERAPY, "start": "dosageInstruction[0].timing.repeat.boundsPeriod.start",
                     "end": "dosageInstruction[0].timing.repeat.boundsPeriod.end"},
    "authoredOn": {**_THERAPY, "start": "authoredOn", "end": "authoredOn"},
}
_PROCEDURE = {"date": "performed[x]", "line": "extension", "procedure": "code"}


def _bounds(res: dict) -> Any:
    """A MedicationRequest's dosageInstruction[0].timing.repeat.boundsPeriod, when given."""
    di = res.get("dosageInstruction")
    if di.__class__ is list and di and di[0].__class__ is dict:
        timing = di[0].get("timing")
        rep = timing.get("repeat") if timing.__class__ is dict else None
        return rep.get("boundsPeriod") if rep.__class__ is dict else None
    return None


class MedicationReader(BundleReader):
    """Reads the medication history."""

    def _therapies(self) -> tuple[list[dict], list[str]]:
        """Therapy entries from medication resources (one per resource: a drug over its period, one administration,
        or a regimen acronym) and transplants from Procedures, in Bundle order. Grouping drugs into regimens is the
        clinical layer's work (priorauth.clinical.therapy), the same for every shape of record.
        """
        by_type = self.by_type
        claimed = self.claimed
        ks = [k for rt in ("MedicationStatement", "MedicationAdministration", "MedicationRequest")
              for k in by_type.get(rt, ()) if k not in claimed]
        ks.sort()
        # a MedicationStatement or MedicationAdministration submits a treatment history whatever its status; a
        # MedicationRequest (a draft or cancelled order was never given) only when it is read as a therapy
        self.therapy_resources = len(ks) - len(by_type.get("MedicationRequest", ())) + len(
            claimed.intersection(by_type.get("MedicationRequest", ())))
        out: list[dict] = []
        srcs: list[str] = []
        items = self.items.setdefault("therapies", [])
        for k in ks:
            try:
                row = self._medication_row(k)
            except (TypeError, AttributeError, ValueError) as exc:
                self._shape_problem(k, exc)
                continue
            if row is None:
                continue
            rt = self.res[k]["resourceType"]
            if rt == "MedicationRequest":
                self.therapy_resources += 1
            (start, end, intent, line), _, name, regimen, fields, extra = row
            # one entry per resource: the clinical layer assembles single drugs into regimens; an administration is
            # one dose (several days of infusion: a period)
            if regimen is not None:
                entry: dict[str, Any] = {"regimen": name, "start": start}
            elif rt == "MedicationAdministration" and (end is None or end == start):
                entry = {"drug": name, "doses": [start]}
            else:
                entry = {"drug": name, "start": start}
            if end is not None and "doses" not in entry:
                entry["end"] = end
            if intent is not None:
                entry["intent"] = intent
            if line is not None:
                entry["line"] = line
            entry.update(extra)
            out.append(entry)
            srcs.append(self.labels[k])
            items.append((k, fields))
        for k in by_type.get("Procedure", ()):
            try:
                proc = self._procedure(k)
            except (TypeError, AttributeError, ValueError) as exc:
                self._shape_problem(k, exc)
                continue
            if proc is not None:
                self.therapy_resources += 1
                out.append(proc)
                srcs.append(self.labels[k])
                items.append((k, _PROCEDURE))
        return out, srcs

    def _medication_row(self, k: int) -> tuple | None:
        """``((start, end, intent, line), k, name, regimen drugs, field map)`` of a MedicationStatement,
        MedicationAdministration or MedicationRequest; None when it is left out (noted) or has a problem
        (reported)."""
        res = self.res[k]
        rt = res["resourceType"]
        status = res.get("status")
        if status is not None and (status.__class__ is not str or status in _SKIP_STATUS[rt]):
            if self._status(k) is _LEFT_OUT:
                return None
            self.note(self.labels[k], f"status {status}; not read as a therapy")
            return None
        if rt == "MedicationRequest" and res.get("intent") in _SKIP_INTENT:
            self.note(self.labels[k], f"intent {res.get('intent')}; not read as a therapy")
            return None
        cc = res.get("medicationCodeableConcept")
        if cc is not None:
            name, _, regimen = self._concept_name(cc)
        else:
            name, _, regimen, _ = self._medication(res, "")
        ok = True
        if name is None:
            self.issue(f"{self.base(k)}.medication[x]", REQUIRED, "is required: the drug (medicationCodeableConcept "
                                                                  "with a coding or text, or medicationReference to a Medication)")
            ok = False
        # dates: effective[x]; a MedicationRequest's dosage bounds, else authoredOn
        if rt != "MedicationRequest":
            period, dates = res.get("effectivePeriod"), "effectivePeriod"
        else:
            period, dates = _bounds(res), "boundsPeriod"
        if period.__class__ is dict and period.get("start") is not None:
            start, p1 = _parse_date(period["start"])
            end, p2 = _parse_date(period["end"]) if period.get("end") is not None else (None, None)
            if p1 is not None or p2 is not None or (end is not None and end < start):
                where = dates if dates == "effectivePeriod" else "dosageInstruction[0].timing.repeat.boundsPeriod"
                self._period_problems(period, f"{self.base(k)}.{where}", "the therapy")
                ok = False
        elif rt == "MedicationRequest":
            start = self._date(res.get("authoredOn"), f"{self.base(k)}.authoredOn", "the start of the therapy "
                               "(dosageInstruction[0].timing.repeat.boundsPeriod or authoredOn)")
            end, dates = None, "authoredOn"
            ok = ok and start is not None
        else:
            start, end, period_ok = self._effective(res, self.base(k), "the dates of the therapy")
            ok = ok and period_ok
            dates = "effectivePeriod" if "effectivePeriod" in res else "effectiveDateTime"
        # intent (category) and line (extension)
        intent = None
        category = res.get("category")
        if category is not None:
            for n, cat in enumerate(_list(category)):
                for m, c in enumerate(_codings(cat)):
                    if c.__class__ is dict and _sys(c) == CS_THERAPY_INTENT:
                        intent = c.get("code")
                        if intent not in _INTENTS:
                            where = "category" if category.__class__ is dict else f"category[{n}]"
                            self.issue(f"{self.base(k)}.{where}.coding[{m}].code", VALUE,
                                       f"{intent!r} is not one of {', '.join(_INTENTS)}")
                            ok = False
                        break
        line = None
        extra: dict[str, Any] = {}
        if "extension" in res:
            line, _, line_ok = self._line(res, self.base(k))
            ok = ok and line_ok
            if any(isinstance(e, dict) and e.get("url") == EXT_CLINICAL_TRIAL and e.get("valueBoolean") is True
                   for e in _list(res.get("extension"))):
                extra["trial"] = True
        if "statusReason" in res:
            ok = self._stop_reason(k, res["statusReason"], extra) and ok
        if not ok:
            return None
        return (start, end, intent, line), k, name, regimen, _THERAPY_DATES[dates], extra

    def _stop_reason(self, k: int, value: Any, extra: dict) -> bool:
        """Why a medication stopped (statusReason: a list, or one CodeableConcept on a MedicationRequest):
        priorauth's coding, else the words of its text or a coding's display. A reason in words none of the
        terminology's phrases names is noted for the reviewer (the boundary it marks is not assumed)."""
        words: list[str] = []
        for n, reason in enumerate(_list(value)):
            for m, c in enumerate(_codings(reason)):
                if c.__class__ is not dict:
                    continue
                if _sys(c) == CS_STOP_REASON:
                    if c.get("code") not in STOP_REASONS:
                        where = "statusReason" if value.__class__ is dict else f"statusReason[{n}]"
                        self.issue(f"{self.base(k)}.{where}.coding[{m}].code", VALUE,
                                   f"{c.get('code')!r} is not one of {', '.join(STOP_REASONS)}")
                        return False
                    extra["stop_reason"] = c["code"]
                    return True
                if isinstance(c.get("display"), str):
                    words.append(c["display"])
            if reason.__class__ is dict and isinstance(reason.get("text"), str):
                words.append(reason["text"])
        for text in words:
            found = self.term.stop_reason(text)
            if found is not None:
                extra["stop_reason"] = found
                return True
        if words:
            self.note(self.labels[k], f"statusReason {words[0]!r} is not a stop reason priorauth reads "
                                      f"({', '.join(STOP_REASONS)}); what it says of the regimen is left to the reviewer")
        return True

    def _period_problems(self, period: dict, expr: str, what: str) -> None:
        start = self._date(period.get("start"), f"{expr}.start", f"the start of {what}")
        end = self._date(period["end"], f"{expr}.end", f"the end of {what}") if period.get("end") is not None else None
        if start is not None and end is not None and end < start:
            self.issue(f"{expr}.end", VALUE, f"{end} is before the start {start}")

    def _line(self, res: dict, base: str) -> tuple[int | None, str, bool]:
        for j, ext in enumerate(_list(res.get("extension"))):
            if isinstance(ext, dict) and ext.get("url") == EXT_LINE_OF_THERAPY:
                expr = f"{base}.extension[{j}].valueInteger"
                v = ext.get("valueInteger")
                if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                    self.issue(expr, VALUE, f"{v!r} is not a line of therapy (a whole number from 1)")
                    return None, expr, False
                return v, expr, True
        return None, f"{base}.extension", True
