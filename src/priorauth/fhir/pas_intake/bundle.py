"""Resolving the Bundle: the entries indexed by fullUrl and Type/id, every reference checked, and the
bookkeeping every resource reader shares (problems with their FHIRPath, notes, dates, quantities, product
names). :class:`BundleReader` holds the state; the readers of each resource family extend it."""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import Field

from priorauth.case import Source
from priorauth.fhir.codes import HCPCS, RXNORM, UCUM
from priorauth.terminology import Drug, Terminology, load_terminology
from priorauth.fhir.pas_intake.errors import (BundleError, INVALID, NOT_FOUND, NOT_SUPPORTED, REQUIRED, STRUCTURE,
                                              VALUE)
from priorauth.fhir.pas_intake.fhirjson import _LEFT_OUT, _PARTIAL, _kind, _list, _parse_date, _sys


class _ElementSource(Source):
    """The Source of a model whose fields were read from different elements or resources.

    It is the resource's ``Source`` (equal to ``Source(file, path)``), and ``at(field)`` gives the element or
    resource the field came from where one is recorded, so evidence names ``Claim/c-1.diagnosis[0]`` rather
    than a case-file field.
    """

    #: field -> the path (in the same file) it was read from, or a Source elsewhere (the payer's table)
    elements: dict = Field(default_factory=dict, exclude=True, repr=False)

    def at(self, child: str) -> Source:
        found = self.elements.get(child)
        if found is None:
            return Source.at(self, child)
        return Source(file=self.file, path=found) if found.__class__ is str else found

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Source):
            return self.file == other.file and self.path == other.path
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.file, self.path))


class BundleReader:
    """One Bundle being read: indexes, problems, notes, the case-path -> FHIRPath map, and sources."""

    def __init__(self, bundle: Any, origin: str, eligibility: dict[str, str]):
        self.bundle = bundle
        self.origin = origin
        self.eligibility = eligibility
        self.term: Terminology = load_terminology()
        self.issues: list[tuple[str, str, str]] = []
        self.notes: list[str] = []
        self.where: dict[str, str] = {}       # case-file path -> FHIRPath it was read from
        self.items: dict[str, list] = {}      # list section -> [(entry index or FHIRPath, field -> element)]
        self.suppress: list[str] = []         # case paths whose problems were already reported
        self.unrouted: list[tuple[str, str, str]] = []   # why the line of business is unknown (Case.unrouted)
        self.res: list[dict | None] = []      # entry index -> resource (None when unreadable)
        self.labels: list[str] = []           # entry index -> "Type/id"
        self.by_url: dict[str, int] = {}
        self.by_key: dict[str, int] = {}      # "Type/id" -> entry index; -1 when two entries share it
        self.by_type: dict[str, list[int]] = {}
        self.lookup: dict[str, int] = {}      # fullUrls and "Type/id"s -> entry index (-1: ambiguous)
        self.claimed: set[int] = set()        # MedicationRequests the Claim requests (or orders alongside)
        self.sources: dict[str, Any] = {}     # case path -> source path or Source (lists for list sections)
        self.product_drug: Drug | None = None
        self.product_mr: int | None = None
        self.claim_dx: set[str] = set()
        self.claim_dx_refs: set[int] = set()
        self.patient_k: int | None = None
        self.labs: list[dict] = []
        self.lab_src: list[str] = []
        self.assessments: list[dict] = []
        self.assess_src: list[str] = []
        self.data: dict[str, Any] = {}

    # -- bookkeeping
    def issue(self, expression: str, code: str, message: str) -> None:
        item = (expression, code, message)
        if item not in self.issues:
            self.issues.append(item)

    def note(self, where: str, message: str) -> None:
        self.notes.append(f"{where}: {message}")

    @staticmethod
    def base(k: int) -> str:
        return f"Bundle.entry[{k}].resource"

    def fail(self, issues: list[tuple[str, str, str]] | None = None) -> BundleError:
        """The BundleError of these problems (default: all found), knowing which entries hold the member's data."""
        personal = [k for rt in ("Patient", "RelatedPerson", "Coverage") for k in self.by_type.get(rt, ())]
        return BundleError(self.origin, self.issues + self.unrouted if issues is None else issues, personal)

    def _index(self, entries: list) -> None:
        res_list, labels, by_url, by_key, by_type = self.res, self.labels, self.by_url, self.by_key, self.by_type
        for i, e in enumerate(entries):
            res = e.get("resource") if e.__class__ is dict else None
            rt = res.get("resourceType") if res.__class__ is dict else None
            url = e.get("fullUrl") if e.__class__ is dict else None
            if rt.__class__ is not str or not rt or (url is not None and (url.__class__ is not str or url in by_url)):
                res, duplicate = self._entry_problem(i, e, res), True
            else:
                duplicate = False
            res_list.append(res)
            if res is None:
                labels.append(f"Bundle.entry[{i}].resource")
                continue
            rt = res["resourceType"]
            if url is not None and not duplicate:
                by_url[url] = i
            rid = res.get("id")
            if rid.__class__ is str and rid:
                key = f"{rt}/{rid}"
                labels.append(key)
                if not duplicate:
                    by_key[key] = -1 if key in by_key else i
            else:
                labels.append(f"Bundle.entry[{i}].resource")
                if rid is not None:
                    self.issue(f"Bundle.entry[{i}].resource.id", VALUE, f"{rid!r} is not a resource id")
            by_type.setdefault(rt, []).append(i)

    def _entry_problem(self, i: int, e: Any, r: Any) -> dict | None:
        """Report what is wrong with an entry; its resource when that is readable (a duplicate fullUrl)."""
        here = f"Bundle.entry[{i}]"
        res = None
        if not isinstance(e, dict):
            self.issue(here, STRUCTURE, f"an entry is a JSON object, not {_kind(e)}")
            return None
        if r is None:
            self.issue(f"{here}.resource", REQUIRED, "the entry has no resource")
        elif not isinstance(r, dict):
            self.issue(f"{here}.resource", STRUCTURE, f"a resource is a JSON object, not {_kind(r)}")
        elif not isinstance(r.get("resourceType"), str) or not r["resourceType"]:
            self.issue(f"{here}.resource.resourceType", REQUIRED, "is required")
        else:
            res = r
        url = e.get("fullUrl")
        if url is not None:
            if not isinstance(url, str) or not url.strip():
                self.issue(f"{here}.fullUrl", VALUE, f"{url!r} is not a URI")
            elif url in self.by_url:
                self.issue(f"{here}.fullUrl", INVALID, f"{url!r} is also the fullUrl of Bundle.entry[{self.by_url[url]}]")
        return res

    # -- references
    def _find(self, ref: str, container: dict | None, frm: int | None = None) -> int | None:
        """The entry a reference resolves to; -1 when several do; -2 for a resource contained in ``container``.

        A relative reference (``Type/id``) that several entries match resolves, as FHIR says, against the base
        of the referring entry's (``frm``) RESTful fullUrl.
        """
        if ref.startswith("#"):
            if container is not None and (ref == "#" or any(
                    isinstance(c, dict) and c.get("id") == ref[1:] for c in _list(container.get("contained")))):
                return -2
            return None
        k = self.by_url.get(ref)
        if k is not None:
            return k
        key = ref.split("/_history/", 1)[0]
        if "://" in key or key.startswith("urn:"):
            return self.by_url.get(key)
        k = self.by_key.get(key)
        if k == -1 and frm is not None:
            url = self._full_url(frm)
            parts = url.rsplit("/", 2) if url and "://" in url else ()
            if len(parts) == 3:
                return self.by_url.get(f"{parts[0]}/{key}", -1)
        return k

    def _full_url(self, k: int) -> str | None:
        entry = self.bundle["entry"][k]
        url = entry.get("fullUrl") if isinstance(entry, dict) else None
        return url if isinstance(url, str) else None

    def _check_references(self) -> None:
        """Every Reference.reference in every resource resolves to an entry (or a contained resource).

        The fast pass collects every reference of the Bundle without paths and looks each up; only when one
        does not resolve at once (a dangling, ambiguous, contained or malformed reference) are the resources
        walked again with paths, to resolve the rest the slow way and name each problem.
        """
        lookup = self.lookup
        lookup.update(self.by_key)
        lookup.update(self.by_url)
        refs: list = []
        for res in self.res:
            if res is not None:
                _collect_refs(res, refs)
        get = lookup.get
        try:
            wanted = set(refs)
            if lookup.keys() >= wanted and not any(get(r) == -1 for r in wanted):
                return
        except TypeError:  # a reference that is not text
            pass
        for i, res in enumerate(self.res):
            if res is None:
                continue
            refs = []
            _collect_refs(res, refs)
            for r in refs:
                k = get(r) if r.__class__ is str else None
                if k is None or k == -1:
                    k = self._find(r, res, i) if r.__class__ is str else None
                if k is None or k == -1:
                    self._report_refs(res, self.base(i), res, i)
                    break

    def _report_refs(self, node: Any, path: str, container: dict, frm: int) -> None:
        if isinstance(node, dict):
            r = node.get("reference")
            if r is not None and not isinstance(r, dict):
                where = f"{path}.reference"
                if not isinstance(r, str):
                    self.issue(where, VALUE, f"{r!r} is not a reference")
                else:
                    k = self._find(r, container, frm)
                    if k is None:
                        self.issue(where, NOT_FOUND, f"{r!r} resolves to no entry in the Bundle")
                    elif k == -1:
                        self.issue(where, INVALID, f"{r!r} resolves to more than one entry in the Bundle")
            for key, v in node.items():
                if isinstance(v, (dict, list)) and key not in _NO_REFERENCES:
                    self._report_refs(v, f"{path}.{key}", container, frm)
        elif isinstance(node, list):
            for j, v in enumerate(node):
                if isinstance(v, (dict, list)):
                    self._report_refs(v, f"{path}[{j}]", container, frm)

    def _ref(self, obj: Any, expr: str, types: tuple[str, ...], what: str, required: bool = False,
             frm: int = 0) -> int | None:
        """The entry index a Reference resolves to, of one of ``types``; None (with the problem reported)."""
        if obj is None:
            if required:
                self.issue(expr, REQUIRED, f"is required ({what})")
            return None
        if not isinstance(obj, dict):
            self.issue(expr, STRUCTURE, f"is a Reference (an object), not {_kind(obj)}")
            return None
        r = obj.get("reference")
        if r is None:
            if required:
                self.issue(f"{expr}.reference", REQUIRED,
                           f"is required: {what} must be a reference to an entry of the Bundle")
            return None
        if r.__class__ is not str:
            return None  # reported by the reference check
        k = self.lookup.get(r)
        if k is None or k == -1:
            k = self._find(r, None, frm)
        if k is None or k == -1:
            if r.startswith("#"):
                self.issue(f"{expr}.reference", NOT_SUPPORTED,
                           f"{r!r} is a contained resource: priorauth reads {what} from an entry of the Bundle")
            return None  # dangling and ambiguous references are reported by the reference check
        rt = self.res[k]["resourceType"]
        if rt not in types:
            self.issue(f"{expr}.reference", INVALID, f"{r!r} is a {rt}, not a {' or '.join(types)} ({what})")
            return None
        return k

    # -- dates and quantities
    def _date(self, value: Any, expr: str, what: str, *, required: bool = True, label: str = "") -> date | None:
        """A full date from a FHIR date/dateTime; problems reported (required ones only when ``required``)."""
        if value is None:
            if required:
                self.issue(expr, REQUIRED, f"is required: {what}")
            return None
        d, problem = _parse_date(value)
        if problem is None:
            return d
        if problem is _PARTIAL:
            if required:
                self.issue(expr, VALUE, f"{value!r} is a partial date: {what} must give the day (YYYY-MM-DD)")
            else:
                self.note(label or expr, f"{what} {value!r} is a partial date; not used")
            return None
        self.issue(expr, VALUE, problem)
        return None

    def _effective(self, res: dict, base: str, what: str, prefix: str = "effective") -> tuple[date | None, date | None, bool]:
        """(start, end, ok) of ``<prefix>DateTime`` / ``<prefix>Period`` (a one-day dateTime gives start = end)."""
        if f"{prefix}DateTime" in res:
            d = self._date(res[f"{prefix}DateTime"], f"{base}.{prefix}DateTime", what)
            return d, d, d is not None
        if prefix == "effective" and "effectiveInstant" in res:
            d = self._date(res["effectiveInstant"], f"{base}.effectiveInstant", what)
            return d, d, d is not None
        period = res.get(f"{prefix}Period")
        if period is None:
            self.issue(f"{base}.{prefix}[x]", REQUIRED, f"is required: {what} ({prefix}DateTime or {prefix}Period)")
            return None, None, False
        if not isinstance(period, dict):
            self.issue(f"{base}.{prefix}Period", STRUCTURE, f"is a Period (an object), not {_kind(period)}")
            return None, None, False
        start = self._date(period.get("start"), f"{base}.{prefix}Period.start", what)
        end = None
        ok = start is not None
        if period.get("end") is not None:
            end = self._date(period["end"], f"{base}.{prefix}Period.end", f"the end of {what}")
            ok = ok and end is not None
            if start is not None and end is not None and end < start:
                self.issue(f"{base}.{prefix}Period.end", VALUE, f"{end} is before the start {start}")
                ok = False
        return start, end, ok

    def _quantity(self, q: Any, expr: str, case_path: str) -> dict | None:
        """A FHIR Quantity as ``{value, unit}`` (UCUM ``code``, else ``unit``), with its elements recorded."""
        if not isinstance(q, dict):
            if q is not None:
                self.issue(expr, STRUCTURE, f"is a Quantity (an object), not {_kind(q)}")
            return None
        out: dict[str, Any] = {}
        if "value" in q:
            out["value"] = q["value"]
        code, system = q.get("code"), _sys(q)
        if code is not None and (system is None or system == UCUM):
            out["unit"], unit_expr = code, f"{expr}.code"
        elif q.get("unit") is not None:
            out["unit"], unit_expr = q["unit"], f"{expr}.unit"
        else:
            unit_expr = f"{expr}.code"
        w = self.where
        w[case_path] = expr
        w[f"{case_path}.value"] = f"{expr}.value"
        w[f"{case_path}.unit"] = unit_expr
        return out

    # -- names of drugs and products
    def _concept_name(self, cc: Any) -> tuple[str | None, Drug | None, tuple[str, ...] | None]:
        """(name, drug, regimen drugs) from a CodeableConcept: the first of its codings' displays and RxNorm /
        HCPCS codes, then its text, that terminology recognizes (as a drug or a regimen acronym); else the first
        of them given, else any coding's code."""
        if cc.__class__ is not dict:
            return None, None, None
        drug_of, regimen_of = self.term.drug, self.term.regimen

        def recognized(name: str):
            drug = drug_of(name)
            if drug is not None:
                return name, drug, None
            regimen = regimen_of(name)
            return (name.strip(), None, regimen) if regimen is not None else None

        first = None
        codings = cc.get("coding")
        candidates = [name for c in (codings if codings.__class__ is list else _list(codings)) if c.__class__ is dict
                      for name in (c.get("display"), c.get("code") if _sys(c) in _DRUG_SYSTEMS else None)]
        candidates.append(cc.get("text"))
        for name in candidates:
            if name.__class__ is str and name.strip():
                found = recognized(name)
                if found is not None:
                    return found
                first = first or name
        if first is None:
            for c in _list(codings):
                if c.__class__ is dict and c.get("code").__class__ is str and c["code"].strip():
                    return c["code"], None, None
        return first, None, None

    def _medication(self, res: dict, base: str) -> tuple[str | None, Drug | None, tuple[str, ...] | None, str]:
        """The drug of a Medication* resource: medicationCodeableConcept, or medicationReference -> Medication.code."""
        if "medicationCodeableConcept" in res:
            return (*self._concept_name(res["medicationCodeableConcept"]), f"{base}.medicationCodeableConcept")
        ref = res.get("medicationReference")
        if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
            r = ref["reference"]
            med = None
            if r.startswith("#"):
                med = next((c for c in _list(res.get("contained"))
                            if isinstance(c, dict) and c.get("id") == r[1:] and c.get("resourceType") == "Medication"), None)
            else:
                k = self._find(r, None)
                if k is not None and k >= 0 and self.res[k]["resourceType"] == "Medication":
                    med = self.res[k]
            if med is not None:
                return (*self._concept_name(med.get("code")), f"{base}.medicationReference")
            name = ref.get("display") if isinstance(ref.get("display"), str) else None
            if name:
                drug = self.term.drug(name)
                return name, drug, None if drug else self.term.regimen(name), f"{base}.medicationReference"
        return None, None, None, f"{base}.medication[x]"

    def _is_tocilizumab(self, drug: Drug | None) -> bool:
        return drug is not None and drug.generic == "tocilizumab"

    def _guarded(self, fn, arg: Any, k: int) -> Any:
        """``fn(arg)``, or None with a structure problem when the resource is not shaped as FHIR JSON."""
        try:
            return fn(arg)
        except (TypeError, AttributeError, ValueError) as exc:
            self._shape_problem(k, exc)
            return None

    def _shape_problem(self, k: int, exc: Exception) -> None:
        """The fallback for a resource the reader cannot walk (an element of the wrong JSON type somewhere)."""
        self.issue(self.base(k), STRUCTURE, f"{self.labels[k]} is not shaped as FHIR R4 JSON: an element holds a value "
                                            "of the wrong JSON type (validating with --strict names it)")

    def _status(self, k: int) -> Any:
        """A resource's status code; _LEFT_OUT (reported) when it is not text."""
        status = self.res[k].get("status")
        if status is None or status.__class__ is str:
            return status
        self.issue(f"{self.base(k)}.status", VALUE, f"{status!r} is not a status code")
        return _LEFT_OUT


_DRUG_SYSTEMS = frozenset({RXNORM, HCPCS})
#: elements whose FHIR R4 types hold no Reference (Narrative, Meta, CodeableConcept, Coding, Quantity, Period,
#: Range, Address, HumanName, ContactPoint, Attachment, Dosage) or only one priorauth never follows
#: (Identifier.assigner): the reference check does not descend into them, which keeps it fast
_NO_REFERENCES = frozenset({
    "text", "meta", "coding", "code", "type", "category", "identifier", "medicationCodeableConcept",
    "valueCodeableConcept", "productOrService", "priority", "clinicalStatus", "verificationStatus", "interpretation",
    "specialty", "valueQuantity", "doseQuantity", "quantity", "period", "effectivePeriod", "performedPeriod",
    "onsetPeriod", "boundsPeriod", "low", "high", "address", "name", "telecom", "attachment", "content", "timing",
    "valueCoding", "valuePeriod", "valueRange", "referenceRange", "unitPrice", "net", "dosageInstruction", "dosage",
    "class", "status", "emptyReason", "bodySite", "severity", "stage",
})


def _collect_refs(node: dict, out: list, skip: frozenset = _NO_REFERENCES) -> None:
    """Every Reference.reference value under the object ``node`` (no paths: the fast first pass)."""
    for key, v in node.items():
        c = v.__class__
        if c is dict:
            if key in skip:
                continue
            r = v.get("reference")
            if r is None or r.__class__ is dict:
                _collect_refs(v, out)
            else:
                out.append(r)  # a Reference: its other elements (display, identifier, type) hold none
        elif c is list:
            if key in skip:
                continue
            for x in v:
                c = x.__class__
                if c is dict:
                    r = x.get("reference")
                    if r is None or r.__class__ is dict:
                        _collect_refs(x, out)
                    else:
                        out.append(r)
                elif c is list:
                    _collect_refs({"": x}, out)
