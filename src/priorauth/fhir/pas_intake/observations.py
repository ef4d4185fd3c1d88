"""Observations: lab results with their units, reference ranges and flags, disease assessments, body weight."""

from __future__ import annotations

from typing import Any

from priorauth.fhir.codes import (CS_IMAGING_FINDING, CS_IMWG_RESPONSE, CS_LAB_TEST, INTERPRETATION, LOINC,
                                  LOINC_BODY_WEIGHT, LOINC_DISEASE_STATUS, SNOMED, SNOMED_DISEASE_STATUS)
from priorauth.fhir.pas_intake.errors import REQUIRED, STRUCTURE, VALUE
from priorauth.fhir.pas_intake.fhirjson import (_LAB_CODE, _LEFT_OUT, _codings, _kind, _list, _parse_date, _sys,
                                                _unit_of)
from priorauth.fhir.pas_intake.bundle import BundleReader


_READ_OBSERVATION = frozenset({"final", "amended", "corrected"})
_FLAGS = {"H": "high", "HH": "high", "HU": "high", "L": "low", "LL": "low", "LU": "low", "A": "abnormal",
          "AA": "abnormal", "N": "normal"}
_LAB_INTEGER = {**_LAB_CODE, "value": "valueInteger", "unit": "valueInteger"}
_ASSESSMENT = {"date": "effective[x]", "response": "valueCodeableConcept", "finding": "valueCodeableConcept",
               "text": "note"}


class ObservationReader(BundleReader):
    """Reads Observations."""

    def _observation(self, k: int, labs: list, lab_src: list, assessments: list, assess_src: list,
                     weights: list) -> None:
        """One Observation: a lab result, the body weight, a disease status or an imaging finding (else noted)."""
        obs = self.res[k]
        test = loinc = named = kind = None
        code = obs.get("code")
        codings = code.get("coding") if code.__class__ is dict else None
        for c in (codings if codings.__class__ is list else ()):
            if c.__class__ is not dict:
                continue
            system = _sys(c)
            if system == LOINC:
                value = c.get("code")
                if value == LOINC_BODY_WEIGHT:
                    kind = "weight"
                elif value == LOINC_DISEASE_STATUS:
                    kind = "status"
                elif value.__class__ is str:
                    found = self.term.lab_by_loinc(value)
                    if found is not None:
                        kind, loinc, test = "lab", value, found
            elif system == CS_LAB_TEST:
                kind, named = "lab", c.get("code")
            elif system == CS_IMAGING_FINDING:
                kind = "finding"
        label = self.labels[k]
        if kind is None:
            codes = ", ".join(f"{c.get('system')}|{c.get('code')}" for c in _codings(code) if isinstance(c, dict))
            self.note(label, f"{'code ' + codes if codes else 'no code'}: not an observation priorauth reads; left out")
            return
        status = self._status(k)
        if status is _LEFT_OUT:
            return
        if status not in _READ_OBSERVATION:
            if status is None:
                self.issue(f"{self.base(k)}.status", REQUIRED, "is required")
            else:
                self.note(label, f"status {status}: not a final result; left out")
            return
        when = obs.get("effectiveDateTime")
        when, problem = _parse_date(when) if when is not None else (None, True)
        if problem is not None:
            what = {"lab": f"the {named or test} result", "weight": "the body weight",
                    "status": "the disease assessment", "finding": "the imaging finding"}[kind]
            when, _, ok = self._effective(obs, self.base(k), f"the date of {what}")
            if not ok:
                when = None
        if kind == "lab" or kind == "weight":
            vq = obs.get("valueQuantity")
            if vq.__class__ is dict and vq.get("value") is not None and vq.get("comparator") is None:
                value = vq
            else:
                value = self._observation_value(obs, self.base(k), label, named or test or "body weight")
                if value is _LEFT_OUT:
                    return
            if when is None:
                return
            if kind == "weight":
                if value.__class__ is not dict:
                    self.issue(f"{self.base(k)}.valueInteger", VALUE, "a body weight is a valueQuantity")
                    return
                weights.append((when, k, value))
                return
            lab: dict[str, Any] = {"test": named if named is not None else test}
            if loinc is not None:
                lab["loinc"] = loinc
            if value.__class__ is dict:
                lab["value"] = value["value"]
                unit, fields = _unit_of(value)
                if unit is not None:
                    lab["unit"] = unit
            else:
                lab["value"], fields = value, _LAB_INTEGER
            lab["date"] = when
            rr = obs.get("referenceRange")
            if rr.__class__ is list and rr and rr[0].__class__ is dict:
                low, high = rr[0].get("low"), rr[0].get("high")
                low = low.get("value") if low.__class__ is dict else None
                high = high.get("value") if high.__class__ is dict else None
                if low is not None and high is not None:
                    lab["reference_range"] = (low, high)
            interpretation = obs.get("interpretation")
            if interpretation is not None:
                for cc in _list(interpretation):
                    flag = next((_FLAGS[c["code"]] for c in _codings(cc) if isinstance(c, dict)
                                 and _sys(c) in (None, INTERPRETATION) and c.get("code") in _FLAGS), None)
                    if flag:
                        lab["flag"] = flag
                        break
            labs.append(lab)
            lab_src.append(label)
            self.items.setdefault("labs", []).append((k, fields))
            return
        # disease status and imaging findings: a coded value
        cc = obs.get("valueCodeableConcept")
        if cc.__class__ is not dict:
            if "dataAbsentReason" in obs:
                self.note(label, "no value (dataAbsentReason); left out")
            else:
                self.issue(f"{self.base(k)}.value[x]", REQUIRED,
                           "is required: the disease status or finding (valueCodeableConcept)")
            return
        value = None
        for c in _codings(cc):
            if c.__class__ is not dict:
                continue
            system, code = _sys(c), c.get("code")
            if kind == "status" and system == CS_IMWG_RESPONSE:
                value = code
                break
            if kind == "status" and system == SNOMED and code in SNOMED_DISEASE_STATUS:
                value = SNOMED_DISEASE_STATUS[code]
                break
            if kind == "finding" and system == CS_IMAGING_FINDING:
                value = code
                break
        if value is None:
            self.note(label, "the value is not a disease status or finding priorauth reads; left out")
            return
        if when is None:
            return
        a: dict[str, Any] = {"date": when, "response" if kind == "status" else "finding": value}
        notes = obs.get("note")
        texts = [x.get("text") for x in _list(notes) if isinstance(x, dict) and isinstance(x.get("text"), str)]
        if not texts and isinstance(cc.get("text"), str):
            texts = [cc["text"]]
        if texts:
            a["text"] = " ".join(texts)
        assessments.append(a)
        assess_src.append(label)
        self.items.setdefault("assessments", []).append((k, _ASSESSMENT))

    def _observation_value(self, obs: dict, base: str, label: str, what: str) -> Any:
        """The result of a lab or weight Observation: a Quantity dict, an integer, or _LEFT_OUT (reported)."""
        vq = obs.get("valueQuantity")
        if vq is not None:
            expr = f"{base}.valueQuantity"
            if not isinstance(vq, dict):
                self.issue(expr, STRUCTURE, f"is a Quantity (an object), not {_kind(vq)}")
                return _LEFT_OUT
            if vq.get("comparator") is not None:
                self.note(label, f"{what} given as a bound ({vq['comparator']} {vq.get('value')}), not a result; left out")
                return _LEFT_OUT
            self.issue(f"{expr}.value", REQUIRED, f"is required: the {what} result")
            return _LEFT_OUT
        if "valueInteger" in obs:
            return obs["valueInteger"]
        given = next((key for key in obs if key.startswith("value")), None)
        if given is not None:
            self.issue(f"{base}.{given}", VALUE, f"a {what} result is a valueQuantity, not {given}")
            return _LEFT_OUT
        if "dataAbsentReason" in obs:
            self.note(label, f"no {what} value (dataAbsentReason); left out")
            return _LEFT_OUT
        self.issue(f"{base}.value[x]", REQUIRED, f"is required: the {what} result (valueQuantity)")
        return _LEFT_OUT
