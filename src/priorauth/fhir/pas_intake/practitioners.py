"""Practitioners, PractitionerRoles and Organizations: the prescriber (Claim.provider, careTeam with its
role and qualification, the order's requester), its NPI and NUCC taxonomy, and the specialist consultation."""

from __future__ import annotations

from datetime import date
from typing import Any

from priorauth.fhir.codes import NPI, NUCC, SNOMED, SNOMED_CONSULTATION
from priorauth.fhir.pas_intake.fhirjson import _LEFT_OUT, _SKIP_STATUS, _codings, _list, _sys
from priorauth.fhir.pas_intake.bundle import BundleReader, _ElementSource


#: care team roles of the prescriber: HL7 claimcareteamrole primary, CARIN BB prescribing, X12 DK (ordering)
_PRESCRIBER_ROLES = frozenset({"primary", "prescribing", "DK", "ordering"})


def _nucc(cc: Any, expr: str):
    """(taxonomy code, FHIRPath) of each NUCC coding of a CodeableConcept at ``expr``."""
    for m, c in enumerate(_codings(cc)):
        if isinstance(c, dict) and _sys(c) == NUCC and isinstance(c.get("code"), str):
            yield c["code"], f"{expr}.coding[{m}].code"


def _care_team_prescriber(claim: dict, team: list[tuple[int, int, dict]]) -> int | None:
    """The entry of the prescriber in Claim.careTeam: the member whose role says it prescribes (or is primary),
    else the one the first item points to by careTeamSequence."""
    for _, k, ct in team:
        if any(isinstance(c, dict) and c.get("code") in _PRESCRIBER_ROLES for c in _codings(ct.get("role"))):
            return k
    item = next((it for it in _list(claim.get("item")) if isinstance(it, dict)), None)
    seqs = _list(item.get("careTeamSequence")) if item is not None else []
    return next((k for _, k, ct in team if ct.get("sequence") in seqs), None)


class PractitionerReader(BundleReader):
    """Reads the prescriber."""

    # -- the prescriber
    def _practitioner(self, k: int) -> dict:
        """NPI, taxonomy and specialty words of a PractitionerRole (with its Practitioner) or a Practitioner."""
        res = self.res[k]
        base = self.base(k)
        found: dict[str, Any] = {"taxonomies": [], "npi": None, "specialty": None}
        prac_k = None
        if res["resourceType"] == "PractitionerRole":
            for field in ("code", "specialty"):
                for n, cc in enumerate(_list(res.get(field))):
                    found["taxonomies"] += [(code, expr, k) for code, expr in _nucc(cc, f"{base}.{field}[{n}]")]
            for cc in _list(res.get("specialty")):
                if isinstance(cc, dict) and found["specialty"] is None:
                    words = cc.get("text") or next((c.get("display") for c in _codings(cc)
                                                    if isinstance(c, dict) and c.get("display")), None)
                    if isinstance(words, str) and words.strip():
                        found["specialty"] = words
            prac_k = self._ref(res.get("practitioner"), f"{base}.practitioner", ("Practitioner",), "the practitioner",
                               frm=k)
        else:
            prac_k = k
        if prac_k is not None:
            prac = self.res[prac_k]
            pbase = self.base(prac_k)
            for n, idf in enumerate(_list(prac.get("identifier"))):
                if isinstance(idf, dict) and _sys(idf) == NPI and idf.get("value") is not None:
                    found["npi"] = (idf["value"], f"{pbase}.identifier[{n}].value", f"{self.labels[prac_k]}.identifier[{n}]")
                    break
            for n, q in enumerate(_list(prac.get("qualification"))):
                if isinstance(q, dict):
                    found["taxonomies"] += [(code, expr, prac_k)
                                            for code, expr in _nucc(q.get("code"), f"{pbase}.qualification[{n}].code")]
        if res["resourceType"] == "PractitionerRole" and found["npi"] is None:
            for n, idf in enumerate(_list(res.get("identifier"))):
                if isinstance(idf, dict) and _sys(idf) == NPI and idf.get("value") is not None:
                    found["npi"] = (idf["value"], f"{base}.identifier[{n}].value", f"{self.labels[k]}.identifier[{n}]")
                    break
        tax = found["taxonomies"]
        # a hematology or oncology taxonomy among several decides the specialty (a subspecialist's role often
        # lists the board specialty first)
        found["taxonomy"] = next((t for t in tax if self.term.is_heme_onc_taxonomy(t[0])), tax[0] if tax else None)
        return found

    def _prescriber(self, claim: dict) -> dict | None:
        cbase = "Bundle.entry[0].resource"
        k = None
        provider = claim.get("provider")
        if provider is not None:
            k = self._ref(provider, f"{cbase}.provider", ("PractitionerRole", "Practitioner", "Organization"),
                          "the requesting provider")
            if k is not None and self.res[k]["resourceType"] == "Organization":
                self.note(self.labels[k], "the requesting provider is an organization; the prescriber is read from the "
                                          "product's MedicationRequest.requester")
                k = None
        team = self._team_members(claim)
        if k is None:
            k = _care_team_prescriber(claim, team)
        if k is None:
            order = [self.product_mr] if self.product_mr is not None else []
            for mr_k in order + sorted(self.claimed - set(order)):
                req = self.res[mr_k].get("requester")
                if isinstance(req, dict) and isinstance(req.get("reference"), str):
                    k = self._ref(req, f"{self.base(mr_k)}.requester",
                                  ("PractitionerRole", "Practitioner", "Organization", "Patient", "RelatedPerson", "Device"),
                                  "the prescriber", frm=mr_k)
                    if k is not None and self.res[k]["resourceType"] not in ("PractitionerRole", "Practitioner"):
                        k = None
                    if k is not None:
                        break
        if k is None:
            return None
        found = self._practitioner(k)
        if found["taxonomy"] is None:
            # the taxonomy may sit on the careTeam member that names this prescriber, or on a PractitionerRole of
            # the same practitioner elsewhere in the Bundle
            found["taxonomy"] = self._team_qualification(team, k) or self._role_taxonomy(k)
        out: dict[str, Any] = {}
        elements: dict[str, Any] = {}
        w = self.where
        w["prescriber"] = self.base(k)
        path = self.labels[k]
        if found["npi"] is not None:
            out["npi"] = found["npi"][0]
            w["prescriber.npi"] = found["npi"][1]
            elements["npi"] = found["npi"][2]
        if found["taxonomy"] is not None:
            code, expr, tk = found["taxonomy"]
            out["taxonomy"] = code
            w["prescriber.taxonomy"] = expr
            path = self.labels[tk]
        elif found["specialty"] is not None:
            out["specialty"] = found["specialty"]
        self.sources["prescriber"] = _ElementSource(file=self.origin, path=path, elements=elements)
        return out

    def _team_members(self, claim: dict) -> list[tuple[int, int, dict]]:
        """(careTeam position, entry index of its provider, the member) for each member naming a practitioner."""
        out = []
        for n, ct in enumerate(_list(claim.get("careTeam"))):
            if isinstance(ct, dict) and isinstance(ct.get("provider"), dict):
                k = self._ref(ct["provider"], f"Bundle.entry[0].resource.careTeam[{n}].provider",
                              ("PractitionerRole", "Practitioner", "Organization"), "a care team member")
                if k is not None and self.res[k]["resourceType"] != "Organization":
                    out.append((n, k, ct))
        return out

    def _team_qualification(self, team: list[tuple[int, int, dict]], k: int) -> tuple | None:
        """A NUCC taxonomy in careTeam.qualification of the member naming entry ``k`` or the same practitioner."""
        same = {k, self._practitioner_of(k)} - {None}
        for n, mk, ct in team:
            if mk in same or self._practitioner_of(mk) in same:
                for code, expr in _nucc(ct.get("qualification"), f"Bundle.entry[0].resource.careTeam[{n}].qualification"):
                    return code, expr, 0
        return None

    def _practitioner_of(self, k: int) -> int | None:
        """The Practitioner entry of a PractitionerRole (``k`` itself for a Practitioner)."""
        res = self.res[k]
        if res["resourceType"] != "PractitionerRole":
            return k
        return self._ref(res.get("practitioner"), f"{self.base(k)}.practitioner", ("Practitioner",), "the practitioner",
                         frm=k)

    def _role_taxonomy(self, k: int) -> tuple | None:
        """The NUCC taxonomy of a PractitionerRole in the Bundle whose practitioner is the prescriber's."""
        pk = self._practitioner_of(k)
        if pk is None:
            return None
        for rk in self.by_type.get("PractitionerRole", ()):
            if rk != k and self._practitioner_of(rk) == pk:
                found = self._practitioner(rk)
                if found["taxonomy"] is not None:
                    return found["taxonomy"]
        return None

    def _consultation(self, received: date | None) -> tuple[dict, str] | None:
        """The consultation: an Encounter typed SNOMED 11429006 with a participant carrying a NUCC taxonomy (or
        specialty words); among several, a hematology-oncology one dated by receipt, then the latest.
        Returns the consultation dict and its source path."""
        best = None
        for k in self.by_type.get("Encounter", ()):
            try:
                enc = self.res[k]
                if not any(isinstance(c, dict) and _sys(c) == SNOMED and c.get("code") == SNOMED_CONSULTATION
                           for cc in _list(enc.get("type")) for c in _codings(cc)):
                    self.note(self.labels[k], "not a consultation (SNOMED 11429006); left out")
                    continue
                if self._status(k) is _LEFT_OUT:
                    continue
                if enc.get("status") in _SKIP_STATUS["Encounter"]:
                    self.note(self.labels[k], f"status {enc.get('status')}; left out")
                    continue
                base = self.base(k)
                when = None
                period = enc.get("period")
                if isinstance(period, dict) and period.get("start") is not None:
                    when = self._date(period["start"], f"{base}.period.start", "the consultation date", required=False,
                                      label=self.labels[k])
                candidates = []
                for n, part in enumerate(_list(enc.get("participant"))):
                    if isinstance(part, dict) and part.get("individual") is not None:
                        pk = self._ref(part["individual"], f"{base}.participant[{n}].individual",
                                       ("PractitionerRole", "Practitioner", "RelatedPerson"), "the consultant", frm=k)
                        if pk is not None and self.res[pk]["resourceType"] != "RelatedPerson":
                            candidates.append(self._practitioner(pk))
                found = next((f for f in candidates if f["taxonomy"] and self.term.is_heme_onc_taxonomy(f["taxonomy"][0])),
                             next((f for f in candidates if f["taxonomy"] or f["specialty"]), None))
                if found is None:
                    self.note(self.labels[k], "consultation with no participant carrying a NUCC taxonomy; left out")
                    continue
                out: dict[str, Any] = {}
                if found["taxonomy"]:
                    out["taxonomy"] = found["taxonomy"][0]
                else:
                    out["specialty"] = found["specialty"]
                if when is not None:
                    out["date"] = when
                heme = bool(found["taxonomy"] and self.term.is_heme_onc_taxonomy(found["taxonomy"][0]))
                usable = when is None or received is None or when <= received
                rank = (heme, usable, when or date.min)
                if best is None or rank > best[0]:
                    best = (rank, out, self.labels[k], base, found["taxonomy"][1] if found["taxonomy"] else base)
            except (TypeError, AttributeError, ValueError) as exc:
                self._shape_problem(k, exc)
        if best is None:
            return None
        self.where["prescriber.consultation"] = best[3]
        self.where["prescriber.consultation.taxonomy"] = best[4]
        return best[1], best[2]
