"""The Patient and the Coverage: the member's id, birth date, state and line of business (the payer's
eligibility table, priorauth's coding, or the Source of Payment Typology with the plan's class)."""

from __future__ import annotations

import re
from typing import Any

from priorauth.case import Source
from priorauth.fhir.codes import CS_LINE_OF_BUSINESS, SOPT
from priorauth.fhir.pas_intake.errors import REQUIRED, STRUCTURE
from priorauth.fhir.pas_intake.fhirjson import _codings, _kind, _list, _sys
from priorauth.fhir.pas_intake.bundle import BundleReader, _ElementSource


_SOPT_LOB = {"1": "medicare", "2": "medicaid", "5": "commercial"}
_MARKETPLACE_WORDS = re.compile(r"\bmarketplace\b|\b(?:health|insurance)\s+exchange\b", re.I)


def _marketplace_class(coverage: dict) -> int | None:
    """The position of a Coverage.class (plan or group) whose name or value says Health Insurance Marketplace."""
    for n, cl in enumerate(_list(coverage.get("class"))):
        if not isinstance(cl, dict):
            continue
        for text in (cl.get("name"), cl.get("value")):
            if isinstance(text, str) and _MARKETPLACE_WORDS.search(text):
                return n
    return None


class MemberReader(BundleReader):
    """Reads the member."""

    # -- the member
    def _member(self, claim: dict | None) -> dict | None:
        out: dict[str, Any] = {}
        elements: dict[str, Any] = {}
        w = self.where
        patient = patient_k = None
        if claim is not None:
            patient_k = self._ref(claim.get("patient"), "Bundle.entry[0].resource.patient", ("Patient",),
                                  "the member", True)
        if patient_k is None and claim is None and self.by_type.get("Patient"):
            patient_k = self.by_type["Patient"][0]
        if patient_k is not None:
            patient = self.res[patient_k]
        plabel = self.labels[patient_k] if patient_k is not None else "Patient"
        pbase = self.base(patient_k) if patient_k is not None else "Bundle.entry[0].resource.patient"
        self.patient_k = patient_k
        if patient is not None:
            if patient.get("birthDate") is not None:
                bd = self._date(patient["birthDate"], f"{pbase}.birthDate", "the birth date")
                if bd is not None:
                    out["birth_date"] = bd
                    elements["birth_date"] = f"{plabel}.birthDate"
            addr = _list(patient.get("address"))
            if addr and isinstance(addr[0], dict) and addr[0].get("state") is not None:
                out["state"] = addr[0]["state"]
                w["member.state"] = f"{pbase}.address[0].state"
        w["member.birth_date"] = f"{pbase}.birthDate"
        # coverage
        cov_k = None
        if claim is not None:
            insurance = []
            for j, x in enumerate(_list(claim.get("insurance"))):
                if isinstance(x, dict):
                    insurance.append((j, x))
                else:
                    self.issue(f"Bundle.entry[0].resource.insurance[{j}]", STRUCTURE,
                               f"an insurance is a JSON object, not {_kind(x)}")
            insurance.sort(key=lambda jx: jx[1].get("focal") is not True)  # the focal coverage first
            for j, ins in insurance:
                cov_k = self._ref(ins.get("coverage"), f"Bundle.entry[0].resource.insurance[{j}].coverage",
                                  ("Coverage",), "the member's coverage")
                if cov_k is not None:
                    break
        if cov_k is None and self.by_type.get("Coverage") and not (claim and claim.get("insurance")):
            cov_k = self.by_type["Coverage"][0]
        coverage = self.res[cov_k] if cov_k is not None else None
        # member id
        member_id = None
        if coverage is not None and isinstance(coverage.get("subscriberId"), str) and coverage["subscriberId"].strip():
            member_id = coverage["subscriberId"]
            w["member.id"] = f"{self.base(cov_k)}.subscriberId"
            elements["id"] = f"{self.labels[cov_k]}.subscriberId"
        elif patient is not None:
            ids = _list(patient.get("identifier"))
            if ids and isinstance(ids[0], dict) and isinstance(ids[0].get("value"), str) and ids[0]["value"].strip():
                member_id = ids[0]["value"]
                w["member.id"] = f"{pbase}.identifier[0].value"
                elements["id"] = f"{plabel}.identifier[0]"
        if member_id is not None:
            out["id"] = self._bounded_id(member_id, w["member.id"])
        # line of business: the payer's eligibility table, then the Coverage's own coding, then SOPT
        lob, lob_expr, lob_src = self._coverage_lob(coverage, cov_k)
        if member_id is not None and member_id in self.eligibility:
            table = self.eligibility[member_id]
            if lob is not None and self.term.line_of_business(str(lob)) != self.term.line_of_business(str(table)):
                self.note(self.labels[cov_k], f"Coverage.type says {lob}; the payer's eligibility table says {table} "
                                              "for this member, which is used")
            out["line_of_business"] = table
            elements["line_of_business"] = Source(file=None, path=f"payer eligibility (member {member_id})")
            w["member.line_of_business"] = "Bundle.entry[0].resource.insurance"
        elif lob is not None:
            out["line_of_business"] = lob
            elements["line_of_business"] = lob_src
            w["member.line_of_business"] = lob_expr
        else:
            # not an issue yet: routing looks at the product first, and refuses this only for one in scope
            who = f"member {member_id!r} is not in the payer's eligibility table" if member_id else "no member id is given"
            if coverage is None:
                if claim is not None and not any(e.startswith("Bundle.entry[0].resource.insurance") for e, _, _ in self.issues):
                    self.unrouted.append(("Bundle.entry[0].resource.insurance", REQUIRED,
                                          f"no Coverage, and {who}: the member's line of business cannot be resolved"))
            else:
                self.unrouted.append((f"{self.base(cov_k)}.type", REQUIRED,
                                      f"no line of business: Coverage.type has no coding of {CS_LINE_OF_BUSINESS} or "
                                      f"of the Source of Payment Typology (1x, 2x, 5x), and {who}"))
        if patient is None and "line_of_business" not in out:
            return None
        self.sources["member"] = _ElementSource(file=self.origin, path=plabel, elements=elements)
        w["member"] = pbase
        return out

    def _coverage_lob(self, coverage: dict | None, k: int | None) -> tuple[str | None, str, str | None]:
        """(line of business, FHIRPath, source path) from Coverage.type: priorauth's coding, else SOPT."""
        if coverage is None:
            return None, "", None
        base = self.base(k)
        sopt = None
        for m, c in enumerate(_codings(coverage.get("type"))):
            if not isinstance(c, dict) or not isinstance(c.get("code"), str):
                continue
            if _sys(c) == CS_LINE_OF_BUSINESS:
                return c["code"], f"{base}.type.coding[{m}].code", f"{self.labels[k]}.type"
            code = c["code"].strip()
            if _sys(c) == SOPT and sopt is None and code[:1] in _SOPT_LOB:
                lob = _SOPT_LOB[code[:1]]
                where = (f"{base}.type.coding[{m}].code", f"{self.labels[k]}.type")
                if lob == "commercial":      # SOPT has no Marketplace code: the plan's class names the Marketplace
                    n = _marketplace_class(coverage)
                    if n is not None:
                        lob, where = "marketplace", (f"{base}.class[{n}]", f"{self.labels[k]}.class[{n}]")
                sopt = (lob, *where)
        return sopt if sopt is not None else (None, "", None)
