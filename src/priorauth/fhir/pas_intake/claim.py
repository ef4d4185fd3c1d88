"""The Claim and its items: the request's id, parties, receipt, urgency, the product and its dose, tocilizumab
(doses, dose, ceiling), the products ordered alongside, diagnoses and the request's kind."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from priorauth.fhir.codes import (CERTIFICATION_KIND, EXT_CERTIFICATION_TYPE, EXT_REQUESTED_SERVICE, ICD10CM,
                                  PROCESS_PRIORITY)
from priorauth.terminology import Drug, normalize_code
from priorauth.fhir.pas_intake.errors import INVALID, NOT_SUPPORTED, REQUIRED, STRUCTURE, VALUE
from priorauth.fhir.pas_intake.fhirjson import _codings, _kind, _list, _sys
from priorauth.fhir.pas_intake.bundle import BundleReader, _ElementSource


_MAX_ID, _MAX_SYSTEM = 256, 512      # the widths of the store's identifier columns
_PRIORITY = {"stat": "expedited", "normal": "standard", "deferred": "standard"}


def _parse_instant(text: str) -> date | datetime:
    """A validated full FHIR date or dateTime as a date, or a datetime when a time is given."""
    return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)


class ClaimReader(BundleReader):
    """Reads the Claim."""

    def _case_id(self, claim: dict | None) -> Any:
        b = self.bundle
        ident = b.get("identifier")
        if isinstance(ident, dict) and isinstance(ident.get("system"), str) and len(ident["system"]) > _MAX_SYSTEM:
            self.issue("Bundle.identifier.system", VALUE, f"is {len(ident['system'])} characters long; an "
                                                          f"identifier system has at most {_MAX_SYSTEM}")
        if isinstance(ident, dict) and isinstance(ident.get("value"), str) and ident["value"].strip():
            return self._bounded_id(ident["value"], "Bundle.identifier.value")
        if claim is not None:
            for idf in _list(claim.get("identifier"))[:1]:
                if isinstance(idf, dict) and isinstance(idf.get("value"), str) and idf["value"].strip():
                    return self._bounded_id(idf["value"], "Bundle.entry[0].resource.identifier[0].value")
        for x, where in ((b.get("id"), "Bundle.id"),
                         (claim.get("id") if claim else None, "Bundle.entry[0].resource.id")):
            if isinstance(x, str) and x.strip():
                return self._bounded_id(x, where)
        self.issue("Bundle.identifier", REQUIRED,
                   "is required: the request's id (Bundle.identifier, Claim.identifier or Bundle.id)")
        self.suppress.append("id")
        return None

    def _parties(self, claim: dict) -> None:
        """The Claim's patient, insurer and provider (1..1 in PAS; the response names them): present, a
        Reference, and when it references an entry, by a string and to one of the right type (a dangling
        reference is reported by the reference check; the patient's other problems where the member is read)."""
        for element, types, what in (("patient", ("Patient",), "the member"),
                                     ("insurer", ("Organization",), "the plan the request is made to"),
                                     ("provider", ("PractitionerRole", "Practitioner", "Organization"),
                                      "the requesting provider")):
            expr = f"Bundle.entry[0].resource.{element}"
            obj = claim.get(element)
            if element == "patient":
                if isinstance(obj, dict) and obj.get("reference") is not None \
                        and not isinstance(obj["reference"], str):
                    self.issue(f"{expr}.reference", VALUE, f"{obj['reference']!r} is not a reference")
            elif obj is None:
                self.issue(expr, REQUIRED, f"is required ({what})")
            elif not isinstance(obj, dict):
                self.issue(expr, STRUCTURE, f"is a Reference (an object), not {_kind(obj)}")
            elif obj.get("reference") is not None:
                if not isinstance(obj["reference"], str):
                    self.issue(f"{expr}.reference", VALUE, f"{obj['reference']!r} is not a reference")
                else:
                    self._ref(obj, expr, types, what)

    def _respondable(self) -> None:
        """The PAS response is built from the request (its entries, its Claim's items by sequence): read the
        request as the response builder does, so that a request it cannot answer is refused here rather than
        accepted (and stored) and then not answered."""
        from priorauth.fhir import claim_response as cr

        cbase = "Bundle.entry[0].resource"
        try:
            req = cr._Request(self.bundle)
            cr._roles(req)
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            why = exc if isinstance(exc, ValueError) else "an element is not shaped as FHIR JSON"
            self.issue(cbase, STRUCTURE, f"a PAS response cannot be built from the request: {why}")

    def _bounded_id(self, value: str, where: str) -> str:
        """An identifier the store keeps (the request's and the member's): at most ``_MAX_ID`` characters."""
        if len(value) > _MAX_ID:
            self.issue(where, VALUE, f"is {len(value)} characters long; an identifier has at most {_MAX_ID}")
        return value

    # -- the Claim
    def _request(self, claim: dict) -> dict | None:
        cbase = "Bundle.entry[0].resource"
        clabel = self.labels[0]
        out: dict[str, Any] = {}
        elements: dict[str, Any] = {}
        w = self.where
        # received
        b = self.bundle
        received_date = None
        if b.get("timestamp") is not None:
            rexpr, rvalue = "Bundle.timestamp", b["timestamp"]
            bid = b.get("id")
            elements["received"] = f"Bundle/{bid}.timestamp" if isinstance(bid, str) and bid else "Bundle.timestamp"
        else:
            rexpr, rvalue = f"{cbase}.created", claim.get("created")
            elements["received"] = f"{clabel}.created"
        if rvalue is None:
            self.issue("Bundle.timestamp", REQUIRED, "is required: the time of receipt (Bundle.timestamp or Claim.created)")
            self.suppress.append("request.received")
        else:
            received_date = self._date(rvalue, rexpr, "the time of receipt")
            if received_date is not None:
                out["received"] = _parse_instant(rvalue)
            else:
                self.suppress.append("request.received")
        w["request.received"] = rexpr
        # urgency
        priority = claim.get("priority")
        if priority is not None:
            for j, c in enumerate(_codings(priority)):
                if isinstance(c, dict) and _sys(c) in (None, PROCESS_PRIORITY) and c.get("code") is not None:
                    urgency = _PRIORITY.get(c["code"])
                    if urgency is None:
                        self.issue(f"{cbase}.priority.coding[{j}].code", VALUE,
                                   f"{c['code']!r} is not a priority priorauth reads (stat, normal, deferred)")
                    else:
                        out["urgency"] = urgency
                        elements["urgency"] = f"{clabel}.priority"
                    break
        # items: the product, tocilizumab, anything else requested alongside
        items = _list(claim.get("item"))
        product = toci = None
        concurrent: list[str] = []
        sequences: dict[int, int] = {}
        for i, item in enumerate(items):
            ibase = f"{cbase}.item[{i}]"
            if not isinstance(item, dict):
                self.issue(ibase, STRUCTURE, f"an item is a JSON object, not {_kind(item)}")
                continue
            seq = item.get("sequence")          # the response answers each item by its sequence
            if seq is None:
                self.issue(f"{ibase}.sequence", REQUIRED, "is required (a positive integer)")
            elif not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
                self.issue(f"{ibase}.sequence", VALUE, f"{seq!r} is not a positive integer")
            elif seq in sequences:
                self.issue(f"{ibase}.sequence", INVALID, f"{seq} is also the sequence of Claim.item[{sequences[seq]}]")
            else:
                sequences[seq] = i
            name, drug, mr_k, name_expr = self._item_product(item, ibase, claim)
            if name is None:
                self.issue(f"{ibase}.productOrService", REQUIRED,
                           "is required: the product requested (productOrService, or extension requestedService "
                           "referring to a MedicationRequest)")
                continue
            entry = (i, item, ibase, name, drug, mr_k, name_expr)
            if self._is_tocilizumab(drug):
                if toci is None:
                    toci = entry
                else:
                    self.note(f"{clabel}.item[{i}]", "a further tocilizumab item; the first is read")
            elif product is None:
                product = entry
            else:
                concurrent.append(name)
                n = len(concurrent) - 1
                elements[f"concurrent[{n}]"] = self.labels[mr_k] if mr_k is not None else f"{clabel}.item[{i}]"
                w[f"request.concurrent[{n}]"] = name_expr
        if product is None:
            self.issue(f"{cbase}.item", REQUIRED, "no item requests a product other than tocilizumab"
                       if items else "is required: the product requested")
            self.suppress.append("request.drug")
        else:
            i, item, ibase, name, drug, mr_k, name_expr = product
            self.product_drug, self.product_mr = drug, mr_k
            out["drug"] = name
            w["request.drug"] = name_expr
            elements["drug"] = self.labels[mr_k] if mr_k is not None else f"{clabel}.item[{i}].productOrService"
            self._kind_of(item, ibase, f"{clabel}.item[{i}]", out, elements)
            if mr_k is not None:
                dose = self._dose(mr_k, "request.dose")
                if dose is not None:
                    out["dose"] = dose
                    self.sources["request.dose"] = self.labels[mr_k]
        if toci is not None:
            i, item, ibase, name, drug, mr_k, name_expr = toci
            t: dict[str, Any] = {}
            qty = item.get("quantity")
            w["request.tocilizumab"] = ibase
            w["request.tocilizumab.doses"] = f"{ibase}.quantity.value"
            w["request.tocilizumab.dose"] = (f"{self.base(mr_k)}.dosageInstruction" if mr_k is not None
                                             else f"{ibase}.extension")
            count = self._timing_count(mr_k) if mr_k is not None else None
            if isinstance(qty, dict) and qty.get("value") is not None:
                t["doses"] = qty["value"]
            elif count is not None:       # no item quantity: the order's own count of doses
                t["doses"], w["request.tocilizumab.doses"] = count
            else:
                self.issue(f"{ibase}.quantity.value", REQUIRED, "is required: the number of tocilizumab doses")
                self.suppress.append("request.tocilizumab.doses")
            dose = self._dose(mr_k, "request.tocilizumab.dose") if mr_k is not None else None
            if dose is not None:
                t["dose"] = dose
                self.sources["request.tocilizumab.dose"] = self.labels[mr_k]
                di = _list(self.res[mr_k].get("dosageInstruction"))
                ceiling = di[0].get("maxDosePerAdministration") if di and isinstance(di[0], dict) else None
                if ceiling is not None:
                    expr = f"{self.base(mr_k)}.dosageInstruction[0].maxDosePerAdministration"
                    w["request.tocilizumab.max_per_dose"] = expr
                    q = self._quantity(ceiling, expr, "request.tocilizumab.max_per_dose")
                    if q is not None:
                        t["max_per_dose"] = q
            else:
                where = (f"{self.base(mr_k)}.dosageInstruction[0].doseAndRate[0].doseQuantity" if mr_k is not None
                         else f"{ibase}.extension")
                what = ("is required: the tocilizumab dose (mg or mg/kg)" if mr_k is not None else
                        "is required: a requestedService extension referring to the tocilizumab MedicationRequest "
                        "with its dose")
                self.issue(where, REQUIRED, what)
                self.suppress.append("request.tocilizumab.dose")
            out["tocilizumab"] = t
            self.sources["request.tocilizumab"] = self.labels[mr_k] if mr_k is not None else f"{clabel}.item[{i}]"
        # other CAR-T orders in the Bundle are requested alongside too
        requested = self.product_drug
        for k in self.by_type.get("MedicationRequest", ()):
            if k in self.claimed:
                continue
            mr = self.res[k]
            if mr.get("intent") != "order" or mr.get("status") not in ("active", "draft"):
                continue
            name, drug, _, name_expr = self._medication(mr, self.base(k))
            if drug is None or not drug.has("car_t"):
                continue
            self.claimed.add(k)
            if drug == requested:
                self.note(self.labels[k], "an order for the requested product; not read as a prior therapy")
                continue
            concurrent.append(name)
            n = len(concurrent) - 1
            elements[f"concurrent[{n}]"] = self.labels[k]
            w[f"request.concurrent[{n}]"] = name_expr
        out["concurrent"] = concurrent
        # diagnoses
        diagnoses: list[Any] = []
        for j, dx in enumerate(_list(claim.get("diagnosis"))):
            dbase = f"{cbase}.diagnosis[{j}]"
            if not isinstance(dx, dict):
                self.issue(dbase, STRUCTURE, f"a diagnosis is a JSON object, not {_kind(dx)}")
                continue
            if "diagnosisCodeableConcept" in dx:
                cc, cc_expr, src = dx["diagnosisCodeableConcept"], f"{dbase}.diagnosisCodeableConcept", f"{clabel}.diagnosis[{j}]"
            elif "diagnosisReference" in dx:
                k = self._ref(dx["diagnosisReference"], f"{dbase}.diagnosisReference", ("Condition",), "a diagnosis")
                if k is None:
                    continue
                self.claim_dx_refs.add(k)
                cc, cc_expr, src = self.res[k].get("code"), f"{self.base(k)}.code", self.labels[k]
            else:
                self.issue(f"{dbase}.diagnosis[x]", REQUIRED, "is required (diagnosisCodeableConcept with an ICD-10-CM code)")
                continue
            for m, c in enumerate(_codings(cc)):
                if isinstance(c, dict) and _sys(c) == ICD10CM:
                    n = len(diagnoses)
                    diagnoses.append(c.get("code"))
                    w[f"request.diagnoses[{n}]"] = f"{cc_expr}.coding[{m}].code"
                    elements[f"diagnoses[{n}]"] = src
        out["diagnoses"] = diagnoses
        self.claim_dx = {normalize_code(c) for c in diagnoses if isinstance(c, str)}
        w["request"] = cbase
        self.sources["request"] = _ElementSource(file=self.origin, path=clabel, elements=elements)
        out["_received_date"] = received_date
        return out

    def _item_product(self, item: dict, ibase: str, claim: dict) -> tuple[str | None, Drug | None, int | None, str]:
        """(name, drug, MedicationRequest entry, FHIRPath of the name) of a Claim item."""
        for j, ext in enumerate(_list(item.get("extension"))):
            if isinstance(ext, dict) and ext.get("url") == EXT_REQUESTED_SERVICE:
                k = self._ref(ext.get("valueReference"), f"{ibase}.extension[{j}].valueReference",
                              ("MedicationRequest", "ServiceRequest", "DeviceRequest"), "the requested service", True)
                if k is None:
                    break
                res = self.res[k]
                if res["resourceType"] == "MedicationRequest":
                    self.claimed.add(k)
                    name, drug, _, expr = self._medication(res, self.base(k))
                    if name is not None:
                        return name, drug, k, expr
                    self.issue(f"{self.base(k)}.medication[x]", REQUIRED,
                               "is required: the product requested (medicationCodeableConcept)")
                    return self._item_code(item, ibase)[:2] + (k, f"{ibase}.productOrService")
                name, drug, _ = self._concept_name(res.get("code"))
                if name is not None:
                    return name, drug, None, f"{self.base(k)}.code"
                break
        name, drug = self._item_code(item, ibase)
        linked = self._informed_order(item, drug, claim)
        if linked is not None:
            return linked
        return name, drug, None, f"{ibase}.productOrService"

    def _timing_count(self, k: int) -> tuple[int, str] | None:
        """(the number of doses an order's timing allows, its FHIRPath): dosageInstruction.timing.repeat.count."""
        for n, di in enumerate(_list(self.res[k].get("dosageInstruction"))):
            timing = di.get("timing") if isinstance(di, dict) else None
            repeat = timing.get("repeat") if isinstance(timing, dict) else None
            count = repeat.get("count") if isinstance(repeat, dict) else None
            if count.__class__ is int:
                return count, f"{self.base(k)}.dosageInstruction[{n}].timing.repeat.count"
        return None

    def _informed_order(self, item: dict, item_drug: Drug | None, claim: dict) -> tuple[str, Drug | None, int, str] | None:
        """The MedicationRequest an item points to through item.informationSequence and Claim.supportingInfo
        (the other way PAS links an item to its order): the one naming the item's product, else the only one."""
        seqs = [q for q in _list(item.get("informationSequence")) if isinstance(q, int)]
        if not seqs:
            return None
        orders = []
        for si in _list(claim.get("supportingInfo")):
            if isinstance(si, dict) and si.get("sequence") in seqs and isinstance(si.get("valueReference"), dict):
                ref = si["valueReference"].get("reference")
                k = self._find(ref, None, 0) if isinstance(ref, str) else None   # any type: not an error here
                if k is not None and k >= 0 and self.res[k]["resourceType"] == "MedicationRequest":
                    orders.append(k)
        found = []
        for k in orders:
            name, drug, _, expr = self._medication(self.res[k], self.base(k))
            if name is not None:
                found.append((name, drug, k, expr))
        pick = next((f for f in found if item_drug is not None and f[1] == item_drug), None)
        if pick is None and len(found) == 1:
            pick = found[0]
        if pick is not None:
            self.claimed.add(pick[2])
        return pick

    def _item_code(self, item: dict, ibase: str) -> tuple[str | None, Drug | None]:
        name, drug, _ = self._concept_name(item.get("productOrService"))
        return name, drug

    def _kind_of(self, item: dict, ibase: str, ilabel: str, out: dict, elements: dict) -> None:
        for j, ext in enumerate(_list(item.get("extension"))):
            if isinstance(ext, dict) and ext.get("url") == EXT_CERTIFICATION_TYPE:
                for m, c in enumerate(_codings(ext.get("valueCodeableConcept"))):
                    if isinstance(c, dict) and c.get("code") is not None:
                        kind = CERTIFICATION_KIND.get(c["code"])
                        if kind is None:
                            self.issue(f"{ibase}.extension[{j}].valueCodeableConcept.coding[{m}].code", NOT_SUPPORTED,
                                       f"{c['code']!r} is not a certification type priorauth reads "
                                       f"({', '.join(CERTIFICATION_KIND)})")
                        else:
                            out["kind"] = kind
                            elements["kind"] = f"{ilabel}.extension[{j}]"
                        return

    def _dose(self, k: int, case_path: str) -> dict | None:
        mr = self.res[k]
        base = self.base(k)
        di = _list(mr.get("dosageInstruction"))
        if not di or not isinstance(di[0], dict):
            return None
        dr = _list(di[0].get("doseAndRate"))
        if not dr or not isinstance(dr[0], dict) or "doseQuantity" not in dr[0]:
            return None
        return self._quantity(dr[0]["doseQuantity"], f"{base}.dosageInstruction[0].doseAndRate[0].doseQuantity", case_path)
