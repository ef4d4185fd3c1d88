"""QuestionnaireResponses (DTR): answers by linkId into attestations, labs, progression and the facts the
request lacks."""

from __future__ import annotations

from typing import Any

from priorauth.case import LAB_TESTS
from priorauth.fhir.codes import CS_DRUG_CLASS, NUCC
from priorauth.fhir.pas_intake.errors import REQUIRED, STRUCTURE, VALUE
from priorauth.fhir.pas_intake.fhirjson import _LEFT_OUT, _SKIP_STATUS, _kind, _list, _sys, _unit_of
from priorauth.fhir.pas_intake.bundle import BundleReader, _ElementSource


_ATTEST_BOOLEANS = frozenset({"no_cns_pathology", "no_prior_bcma", "no_prior_car_t"})


def _value_key(answer: dict) -> str:
    return next((k for k in answer if k.startswith("value")), "no value")


def _flatten_items(items: Any, base: str, out: list) -> None:
    """Every QuestionnaireResponse item with answers, nested items included, as (linkId, item, FHIRPath)."""
    for i, it in enumerate(_list(items)):
        if not isinstance(it, dict):
            continue
        path = f"{base}.item[{i}]"
        answers = _list(it.get("answer"))
        if answers:
            out.append((it.get("linkId"), it, path))
            for a_i, a in enumerate(answers):
                if isinstance(a, dict) and a.get("item"):
                    _flatten_items(a["item"], f"{path}.answer[{a_i}]", out)
        if it.get("item"):
            _flatten_items(it["item"], path, out)


class QuestionnaireReader(BundleReader):
    """Reads DTR answers."""

    # -- DTR answers
    def _questionnaires(self, data: dict) -> None:
        """DTR answers, read by the last segment of each item's linkId (docs/fhir-mapping.md, "DTR answers").

        The first answer to a question wins; a later different answer is noted. Attestations go to
        ``attestations``; lab values with their sibling dates to ``labs``; the rest fill what the request lacks.
        """
        answers: dict[str, tuple] = {}   # name -> (value, source path, FHIRPath)
        att: dict[str, Any] = {}
        att_elements: dict[str, str] = {}
        att_first: int | None = None     # the QuestionnaireResponse whose answer came first
        w = self.where
        for k in self.by_type.get("QuestionnaireResponse", ()):
            try:
                qr = self.res[k]
                label = self.labels[k]
                if self._status(k) is _LEFT_OUT:
                    continue
                if qr.get("status") in _SKIP_STATUS["QuestionnaireResponse"]:
                    self.note(label, f"status {qr.get('status')}; left out")
                    continue
                flat: list[tuple[str, dict, str]] = []
                try:
                    _flatten_items(qr.get("item"), self.base(k), flat)
                    by_link = {link: (item, path) for link, item, path in flat if link.__class__ is str}
                except (TypeError, AttributeError) as exc:
                    self._shape_problem(k, exc)
                    continue
                for link, item, path in flat:
                    if link.__class__ is not str or not link:
                        self.issue(f"{path}.linkId", REQUIRED, "is required")
                        continue
                    segs = link.split(".")
                    last = segs[-1]
                    spath = f"{label}.item[linkId={link}]"
                    ans = [a for a in _list(item.get("answer")) if a.__class__ is dict]
                    value = _LEFT_OUT
                    if last in _ATTEST_BOOLEANS:
                        value, expr = self._answer(ans, path, link, "valueBoolean"), f"{path}.answer[0].valueBoolean"
                    elif last == "prior_lines":
                        value, expr = self._answer(ans, path, link, "valueInteger"), f"{path}.answer[0].valueInteger"
                    elif last == "prior_classes":
                        value, expr = self._drug_classes(ans, path, link), path
                    elif last == "value" and len(segs) >= 2 and segs[-2] in LAB_TESTS:
                        self._dtr_lab(segs[-2], link, path, ans, by_link, spath)
                        continue
                    elif last == "date" and len(segs) >= 2 and segs[-2] in LAB_TESTS:
                        if ".".join(segs[:-1] + ["value"]) not in by_link:
                            self.note(spath, "a lab date with no value; left out")
                        continue
                    elif last in ("progression_date", "birth_date"):
                        v = self._answer(ans, path, link, "valueDate")
                        if v is not _LEFT_OUT:
                            d = self._date(v, f"{path}.answer[0].valueDate", f"the answer to {link}")
                            if d is not None:
                                self._first(answers, last, (d, spath, f"{path}.answer[0].valueDate"), spath)
                        continue
                    elif last in ("weight", "dose"):
                        v = self._answer(ans, path, link, "valueQuantity")
                        if v is not _LEFT_OUT:
                            self._first(answers, last, (v, spath, f"{path}.answer[0].valueQuantity"), spath)
                        continue
                    elif last == "taxonomy":
                        v = self._answer(ans, path, link, "valueCoding")
                        if v is not _LEFT_OUT:
                            if v.__class__ is not dict or _sys(v) not in (None, NUCC) or not v.get("code"):
                                self.issue(f"{path}.answer[0].valueCoding", VALUE, f"{link} takes a NUCC taxonomy code ({NUCC})")
                            else:
                                self._first(answers, last, (v["code"], spath, f"{path}.answer[0].valueCoding.code"), spath)
                        continue
                    else:
                        self.note(spath, "not a question priorauth reads; left out")
                        continue
                    if value is _LEFT_OUT:
                        continue
                    if last in att:
                        if att[last] != value:
                            self.note(spath, f"{last} was answered {att[last]!r} first; that answer is used")
                        continue
                    att[last] = value
                    att_elements[last] = spath
                    w[f"attestations.{last}"] = expr
                    if att_first is None:
                        att_first = k
            except (TypeError, AttributeError, ValueError) as exc:
                self._shape_problem(k, exc)
        if att:
            data["attestations"] = att
            self.sources["attestations"] = _ElementSource(file=self.origin, path=self.labels[att_first],
                                                          elements=att_elements)
            w["attestations"] = self.base(att_first)
        self._apply_answers(data, answers)

    def _first(self, answers: dict, name: str, answer: tuple, spath: str) -> None:
        if name not in answers:
            answers[name] = answer
        elif answers[name][0] != answer[0]:
            self.note(spath, f"{name} was answered {answers[name][0]!r} first; that answer is used")

    def _drug_classes(self, ans: list, path: str, link: str) -> Any:
        """The drug classes of a ``prior_classes`` question (valueCoding answers), or _LEFT_OUT."""
        if not ans:
            return _LEFT_OUT
        classes = []
        for a_i, a in enumerate(ans):
            c = a.get("valueCoding")
            if c.__class__ is not dict:
                self.issue(f"{path}.answer[{a_i}]", VALUE, f"{link} takes valueCoding ({CS_DRUG_CLASS}), not {_value_key(a)}")
                return _LEFT_OUT
            if _sys(c) not in (None, CS_DRUG_CLASS):
                self.issue(f"{path}.answer[{a_i}].valueCoding.system", VALUE, f"{c.get('system')!r} is not {CS_DRUG_CLASS}")
                return _LEFT_OUT
            self.where[f"attestations.prior_classes[{len(classes)}]"] = f"{path}.answer[{a_i}].valueCoding.code"
            classes.append(c.get("code"))
        return classes

    def _answer(self, answers: list[dict], path: str, link: str, key: str) -> Any:
        """The first answer's ``key`` value; a problem (value) when the answer is of another type."""
        if not answers:
            return _LEFT_OUT
        a = answers[0]
        if key not in a:
            self.issue(f"{path}.answer[0]", VALUE, f"{link} takes {key}, not {_value_key(a)}")
            return _LEFT_OUT
        v = a[key]
        if key == "valueBoolean" and not isinstance(v, bool):
            self.issue(f"{path}.answer[0].valueBoolean", VALUE, f"{v!r} is not true or false")
            return _LEFT_OUT
        if key == "valueInteger" and (isinstance(v, bool) or not isinstance(v, int)):
            self.issue(f"{path}.answer[0].valueInteger", VALUE, f"{v!r} is not a whole number")
            return _LEFT_OUT
        return v

    def _dtr_lab(self, test: str, link: str, path: str, ans: list, by_link: dict, spath: str) -> None:
        """A lab result answered in DTR: ``<test>.value`` (valueQuantity) with its sibling ``<test>.date``."""
        v = self._answer(ans, path, link, "valueQuantity")
        if v is _LEFT_OUT:
            return
        date_link = link[: -len("value")] + "date"
        sibling = by_link.get(date_link)
        s_ans = [a for a in _list(sibling[0].get("answer")) if a.__class__ is dict] if sibling else []
        if not s_ans:
            self.issue(path, REQUIRED, f"{link} needs its date: an answer to {date_link}")
            return
        s_path = sibling[1]
        dv = self._answer(s_ans, s_path, date_link, "valueDate")
        if dv is _LEFT_OUT:
            return
        d = self._date(dv, f"{s_path}.answer[0].valueDate", f"the date of {test}")
        if d is None:
            return
        if v.__class__ is not dict:
            self.issue(f"{path}.answer[0].valueQuantity", STRUCTURE, f"is a Quantity (an object), not {_kind(v)}")
            return
        lab = {"test": test, "date": d, "value": v.get("value")}
        unit, _ = _unit_of(v)
        if unit is not None:
            lab["unit"] = unit
        q = f"{path}.answer[0].valueQuantity"
        self.items.setdefault("labs", []).append((path, {
            "value": f"{q}.value", "unit": f"{q}.code" if v.get("code") is not None else f"{q}.unit",
            "date": f"{s_path}.answer[0].valueDate", "test": f"{path}.linkId"}))
        self.labs.append(lab)
        self.lab_src.append(spath)
        if "labs" not in self.data:
            self.data["labs"] = self.labs
            self.sources["labs"] = self.lab_src

    def _apply_answers(self, data: dict, answers: dict) -> None:
        """DTR answers that fill what the request lacks, and the progression date as an assessment."""
        w = self.where
        member = data.get("member")
        request = data.get("request")
        if "progression_date" in answers:
            d, spath, expr = answers["progression_date"]
            self.assessments.append({"date": d, "response": "progressive_disease"})
            self.assess_src.append(spath)
            self.items.setdefault("assessments", []).append((expr, {"date": expr}))
        if self.assessments:
            data["assessments"] = self.assessments
            self.sources["assessments"] = self.assess_src
        if "birth_date" in answers and member is not None and member.get("birth_date") is None:
            d, spath, expr = answers["birth_date"]
            member["birth_date"] = d
            self.sources["member"].elements["birth_date"] = spath
            w["member.birth_date"] = expr
        if "weight" in answers and member is not None and member.get("weight") is None:
            v, spath, expr = answers["weight"]
            member["weight"] = self._quantity(v, expr, "member.weight")
            self.sources["member.weight"] = spath
        if "dose" in answers and request is not None and request.get("dose") is None:
            v, spath, expr = answers["dose"]
            request["dose"] = self._quantity(v, expr, "request.dose")
            self.sources["request.dose"] = spath
        if "taxonomy" in answers:
            code, spath, expr = answers["taxonomy"]
            pres = data.get("prescriber")
            if pres is None:
                data["prescriber"] = {"taxonomy": code}
                self.sources["prescriber"] = spath
                w["prescriber.taxonomy"] = expr
            elif not pres.get("taxonomy") and not pres.get("specialty"):
                pres["taxonomy"] = code
                old = self.sources.get("prescriber")
                elements = old.elements if isinstance(old, _ElementSource) else {}
                self.sources["prescriber"] = _ElementSource(file=self.origin, path=spath, elements=elements)
                w["prescriber.taxonomy"] = expr
