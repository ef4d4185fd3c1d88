"""PAS request Bundle -> Case: the fast structural reader of docs/fhir-mapping.md ("Request Bundle -> Case").

A Da Vinci PAS request Bundle (FHIR R4 JSON, ``type`` collection, the Claim first) becomes the same
:class:`~priorauth.case.Case` a case file gives. The reader indexes the entries, checks that every reference
resolves, maps each resource it reads into a dict in the case-file shape, validates that dict with
``Case.model_validate`` (so every rule of the case model applies) and then attaches the sources it recorded.
It never builds FHIR models; ``strict=True`` first validates the whole Bundle with fhir.resources
(:func:`priorauth.fhir.validate.validate_resource`) and refuses it with those problems.

Sources. Every fact carries ``Source(file=origin, path="<ResourceType>/<id>")``, the resource it came from;
a DTR answer carries ``QuestionnaireResponse/<id>.item[linkId=<linkId>]``; a regimen grouped from several
medication resources carries the first of them. The sources of the request, member, prescriber and
attestations are equal to their resource's Source and also answer ``at(field)`` with the element or resource
each field the engine cites was read from, so evidence points into the Bundle: ``b.json#Claim/c-1.diagnosis[0]``,
``b.json#Coverage/cov-1.type``, ``payer eligibility (member M-1)``,
``b.json#QuestionnaireResponse/qr-1.item[linkId=I.A.7.no_prior_bcma]``.

Errors. A Bundle that cannot be read raises :class:`BundleError` listing every independent problem: the
FHIRPath of the element (``Bundle.entry[3].resource.valueQuantity.code``), an issue-type code and plain words;
:meth:`BundleError.operation_outcome` gives them as an OperationOutcome. Problems the case model finds are
mapped back to the element each case field was read from. An element of the wrong JSON type somewhere the
reader does not look for it is at worst reported as a structure problem of its resource, never a crash.

Left out and noted in ``case.notes``: Observations priorauth does not read or that are not final (status
final, amended, corrected), results given as a bound (``comparator``) or absent (``dataAbsentReason``),
resources whose status says they did not happen (entered-in-error, not-taken, not-done, cancelled, draft,
planned, ...), Conditions refuted, unknown DTR linkIds, later different answers to a question, resources of
types priorauth does not read.

Dates. A date the case needs (a lab's, a regimen's start and end, a transplant's, the receipt) must give the
day: a partial FHIR date (``2021-03``) is refused rather than guessed, since dropping or guessing it could hide
a prior therapy or a finding. An optional date that is partial (a condition's onset, a document's date) is
left out and noted.

Speed. The default path touches each JSON value at most a few times and builds no FHIR models: the reference
check first collects every reference without paths (skipping elements whose R4 types hold no Reference, and
Identifier.assigner) and only walks again with paths when one does not resolve; FHIRPaths of list items are
kept as (entry, field map) pairs and spelt out only when the case model reports a problem; dates are parsed
by the C date parser and memoized; the sources are made in one pydantic-core call.
"""

from __future__ import annotations

import json

import orjson
import re
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import Field, TypeAdapter, ValidationError

from priorauth.case import LAB_TESTS, STOP_REASONS, THERAPY_TAGS, Case, Source
from priorauth.fhir.codes import (CERTIFICATION_KIND, CONDITION_CLINICAL, CPT, CPT_TRANSPLANT, CS_DRUG_CLASS,
                                  CS_IMAGING_FINDING, CS_IMWG_RESPONSE, CS_LAB_TEST, CS_LINE_OF_BUSINESS,
                                  CS_STOP_REASON, CS_THERAPY_INTENT, EXT_CERTIFICATION_TYPE, EXT_CLINICAL_TRIAL,
                                  EXT_LINE_OF_THERAPY,
                                  EXT_REQUESTED_SERVICE, HCPCS, ICD10CM, INTERPRETATION, LOINC,
                                  LOINC_BODY_WEIGHT, LOINC_DISEASE_STATUS, LOINC_MEDICATION_HISTORY,
                                  LOINC_PAST_ILLNESS, NPI, NUCC, PAS_CLAIM_INQUIRY, PAS_INQUIRY_BUNDLE,
                                  PROCESS_PRIORITY, RXNORM, SNOMED,
                                  SNOMED_CONSULTATION, SNOMED_DISEASE_STATUS, SOPT, SYSTEM_ALIASES, UCUM)
from priorauth.intake.casefile import MAX_FILE_BYTES
from priorauth.intake.casefile import DUPLICATE_KEYS, json_pairs
from priorauth.intake.errors import IntakeError, format_loc, problems_from_validation
from priorauth.terminology import Drug, Terminology, load_terminology, normalize_code

__all__ = ["BundleError", "Issue", "is_bundle", "inquiry_profile", "case_from_bundle", "load_bundle_file",
           "parse_bundle_text", "ISSUE_CODES"]

#: FHIR issue-type codes (http://hl7.org/fhir/issue-type) a BundleError uses
STRUCTURE, REQUIRED, VALUE, INVALID, NOT_FOUND, NOT_SUPPORTED = (
    "structure", "required", "value", "invalid", "not-found", "not-supported")
ISSUE_CODES = (STRUCTURE, REQUIRED, VALUE, INVALID, NOT_FOUND, NOT_SUPPORTED)


class Issue(NamedTuple):
    """One problem of a Bundle: the element's FHIRPath, its issue-type code, and what is wrong in plain words."""

    expression: str
    code: str
    message: str


class BundleError(IntakeError):
    """A PAS request Bundle that cannot be read.

    ``problems`` (as every :class:`IntakeError`) are ``"<FHIRPath>: <message>"`` strings; ``issues`` keeps them
    structured as :class:`Issue` ``(expression, code, message)``. An expression in parentheses, ``(file)``,
    names the file rather than an element.
    """

    def __init__(self, origin: str, issues: list[tuple[str, str, str]]):
        self.issues = [Issue(*i) for i in issues]
        super().__init__(origin, [f"{i.expression}: {i.message}" for i in self.issues])

    def operation_outcome(self) -> dict:
        """The problems as an OperationOutcome: one issue each, severity error, diagnostics, expression.

        An issue about the file itself (expression ``(file)``, not a FHIRPath) has no ``expression``; its
        diagnostics say so.
        """
        out = []
        for expression, code, message in self.issues:
            issue: dict[str, Any] = {"severity": "error", "code": code}
            if expression.startswith("("):
                issue["diagnostics"] = f"{self.origin}: {message}"
            else:
                issue["diagnostics"] = message
                issue["expression"] = [expression]
            out.append(issue)
        return {"resourceType": "OperationOutcome", "issue": out}


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


def is_bundle(data: Any) -> bool:
    """True for parsed JSON that is a FHIR Bundle (an object whose resourceType is Bundle)."""
    return isinstance(data, dict) and data.get("resourceType") == "Bundle"


def inquiry_profile(bundle: Any) -> str | None:
    """The FHIRPath of the profile that makes ``bundle`` a PAS Inquiry Request (the Bundle's, or its first
    entry's Claim inquiry profile); None for any other bundle."""
    entries = bundle.get("entry") if isinstance(bundle, dict) else None
    first = entries[0] if isinstance(entries, list) and entries and isinstance(entries[0], dict) else {}
    for where, res, profile in (("Bundle", bundle, PAS_INQUIRY_BUNDLE),
                                ("Bundle.entry[0].resource", first.get("resource"), PAS_CLAIM_INQUIRY)):
        meta = res.get("meta") if isinstance(res, dict) else None
        profiles = meta.get("profile") if isinstance(meta, dict) else None
        if isinstance(profiles, list) and profile in profiles:
            return f"{where}.meta.profile[{profiles.index(profile)}]"
    return None


def load_bundle_file(path: str | Path, **kw: Any) -> Case:
    """Read a PAS request Bundle from a JSON file; ``kw`` as :func:`case_from_bundle`.

    A file that cannot be read, is too large, is not UTF-8 or not JSON gives a BundleError at ``(file)``.
    """
    p = Path(path)
    origin = str(path)
    try:
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise BundleError(origin, [("(file)", STRUCTURE,
                                        f"{size} bytes is larger than the {MAX_FILE_BYTES} bytes a request may be")])
        raw = p.read_bytes()
    except FileNotFoundError:
        raise BundleError(origin, [("(file)", NOT_FOUND, "no such file")]) from None
    except OSError as exc:
        raise BundleError(origin, [("(file)", STRUCTURE, f"cannot be read: {exc.strerror or exc}")]) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BundleError(origin, [("(file)", STRUCTURE, f"not UTF-8 text (byte {exc.start})")]) from None
    return parse_bundle_text(text, origin, **kw)


_DUP = DUPLICATE_KEYS
_pairs = json_pairs


def _duplicates(node: Any, path: str, found: list[str]) -> None:
    if isinstance(node, dict):
        for key in node.get(_DUP, ()):
            found.append(f"{path}.{key}")
        for key, value in node.items():
            if key != _DUP:
                _duplicates(value, f"{path}.{key}", found)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _duplicates(value, f"{path}[{i}]", found)


def parse_bundle_text(text: str, origin: str, **kw: Any) -> Case:
    """A Case from the JSON text of a PAS request Bundle; ``kw`` as :func:`case_from_bundle`.

    The default path parses with orjson (several times faster than ``json``); with ``strict=True`` the standard
    parser also refuses a key given twice in one object (JSON parsers keep the last silently).
    """
    strict = kw.get("strict", False)
    try:
        if strict:
            data = json.loads(text, object_pairs_hook=_pairs)
        else:
            try:
                data = orjson.loads(text)
            except orjson.JSONDecodeError:
                data = json.loads(text)  # the standard parser's message names the line and column
    except json.JSONDecodeError as exc:
        raise BundleError(origin, [("(file)", STRUCTURE,
                                    f"not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}")]) from None
    except RecursionError:
        raise BundleError(origin, [("(file)", STRUCTURE, "not valid JSON: nested too deeply")]) from None
    except ValueError:                          # such as a number of more than 4300 digits
        raise BundleError(origin, [("(file)", STRUCTURE, "not valid JSON: a number is too long")]) from None
    if strict:
        found: list[str] = []
        _duplicates(data, "Bundle", found)
        if found:
            raise BundleError(origin, [(p, STRUCTURE, "the key appears twice in one object") for p in found])
    return case_from_bundle(data, origin, **kw)


def case_from_bundle(bundle: Any, origin: str, *, eligibility: dict[str, str] | None = None,
                     strict: bool = False) -> Case:
    """Map a parsed PAS request Bundle to a validated Case whose facts carry their sources.

    ``eligibility`` is the payer's member-id -> line-of-business table; it wins over the Coverage when the
    member is in it. ``strict`` validates every resource with the FHIR models first and refuses the Bundle
    with those problems. Raises :class:`BundleError` listing every problem found.
    """
    if strict:
        from priorauth.fhir.validate import validate_resource

        problems = validate_resource(bundle, "Bundle") if isinstance(bundle, dict) else []
        if problems:
            raise BundleError(origin, [(expr, _strict_code(msg), msg) for expr, msg in problems])
    return _Reader(bundle, origin, eligibility or {}).read()


def _strict_code(message: str) -> str:
    """The issue type of a problem the FHIR models report, from its message."""
    low = message.lower()
    if "required" in low or "missing" in low:
        return REQUIRED
    if "extra inputs" in low or "not a fhir resource" in low or "valid list" in low or "valid dictionary" in low:
        return STRUCTURE
    if "input should be" in low or "is not one of" in low or "does not match" in low or "is not an issue" in low:
        return VALUE
    return INVALID


# ---- small readers of FHIR JSON -------------------------------------------------------------------------------
_DATE = re.compile(r"([0-9]{4})(?:-([0-9]{2})(?:-([0-9]{2}))?)?")
_TIME = re.compile(r"T([01][0-9]|2[0-3]):[0-5][0-9](?::(?:[0-5][0-9]|60)(\.[0-9]+)?)?(Z|[+-](?:0[0-9]|1[0-4]):[0-5][0-9])?")
_PARTIAL = "partial"
_SUPPORT_TYPES = frozenset({
    "Patient", "Coverage", "Practitioner", "PractitionerRole", "Organization", "Location", "Medication",
    "Questionnaire", "Provenance", "Binary", "Device", "RelatedPerson", "ServiceRequest", "DeviceRequest",
    "NutritionOrder", "CommunicationRequest", "HealthcareService", "Claim",
})
_READ_OBSERVATION = frozenset({"final", "amended", "corrected"})
_SKIP_STATUS = {
    "MedicationStatement": frozenset({"entered-in-error", "not-taken", "intended"}),
    "MedicationAdministration": frozenset({"entered-in-error", "not-done"}),
    "MedicationRequest": frozenset({"entered-in-error", "cancelled", "draft"}),
    "Procedure": frozenset({"entered-in-error", "not-done", "preparation"}),
    "Encounter": frozenset({"entered-in-error", "cancelled", "planned"}),
    "DocumentReference": frozenset({"entered-in-error"}),
    "QuestionnaireResponse": frozenset({"entered-in-error"}),
}
_SKIP_INTENT = frozenset({"proposal", "plan", "option"})
_DRUG_SYSTEMS = frozenset({RXNORM, HCPCS})
_FLAGS = {"H": "high", "HH": "high", "HU": "high", "L": "low", "LL": "low", "LU": "low", "A": "abnormal",
          "AA": "abnormal", "N": "normal"}
_MAX_ID, _MAX_SYSTEM = 256, 512      # the widths of the store's identifier columns
_PRIORITY = {"stat": "expedited", "normal": "standard", "deferred": "standard"}
_SOPT_LOB = {"1": "medicare", "2": "medicaid", "5": "commercial"}
#: care team roles of the prescriber: HL7 claimcareteamrole primary, CARIN BB prescribing, X12 DK (ordering)
_PRESCRIBER_ROLES = frozenset({"primary", "prescribing", "DK", "ordering"})
_INTENTS = ("induction", "consolidation", "maintenance")
_CLINICAL_ACTIVE = frozenset({"active", "recurrence", "relapse"})
_CLINICAL_RESOLVED = frozenset({"inactive", "remission", "resolved"})
_REFUTED = frozenset({"refuted", "entered-in-error"})
_ATTEST_BOOLEANS = frozenset({"no_cns_pathology", "no_prior_bcma", "no_prior_car_t"})
_SCT_WORDS = re.compile(r"transplant|\bh?sct\b|\bhct\b|\basct\b|stem[ -]?cell|\bauto-?(?:h?sct|hct)\b")
_AUTO = re.compile(r"\bautologous\b|\bauto\b|\basct\b|\bauto-")
_ALLO = re.compile(r"\ballogeneic\b|\ballo\b|\ballo-")


def _kind(x: Any) -> str:
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "true/false"
    if isinstance(x, (int, float)):
        return "a number"
    if isinstance(x, str):
        return "text"
    if isinstance(x, list):
        return "a list"
    return "an object"


def _list(x: Any) -> list:
    """A FHIR array as a list (a lone object counts as one item; anything absent as none)."""
    if x is None:
        return []
    return x if isinstance(x, list) else [x]


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


def _sys(c: dict) -> Any:
    """A coding's (or identifier's, or quantity's) system, under the URI priorauth reads it by."""
    system = c.get("system")
    return SYSTEM_ALIASES.get(system, system) if system.__class__ is str else system


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


def _codings(cc: Any) -> list:
    return _list(cc.get("coding")) if isinstance(cc, dict) else []


_DATE_MEMO: dict[str, tuple[date | None, str | None]] = {}
_DATE_MEMO_LIMIT = 65536


def _parse_date(text: Any) -> tuple[date | None, str | None]:
    """(date, None) for a full FHIR date or dateTime (the date as written); (None, _PARTIAL) for YYYY or
    YYYY-MM; (None, message) for anything else. Answers are memoized (bounded): Bundles repeat their dates."""
    try:
        return _DATE_MEMO[text]
    except (KeyError, TypeError):
        pass
    found = _read_date(text)
    if text.__class__ is str and len(_DATE_MEMO) < _DATE_MEMO_LIMIT:
        _DATE_MEMO[text] = found
    return found


def _read_date(text: Any) -> tuple[date | None, str | None]:
    if text.__class__ is str and len(text) >= 10 and text[4] == "-" == text[7] and (len(text) == 10 or text[10] == "T"):
        # the common case, YYYY-MM-DD or a dateTime: the C date parser, the time part checked by pattern
        try:
            d = date.fromisoformat(text[:10])
        except ValueError:
            return None, f"{text!r} is not a date"
        if len(text) == 10 or _TIME.fullmatch(text, 10):
            return d, None
        return None, f"{text!r} is not a date"
    if not isinstance(text, str):
        return None, f"{text!r} is not a date"
    m = _DATE.match(text)
    if m is None:
        return None, f"{text!r} is not a date"
    y, mo, d = m.groups()
    rest = text[m.end():]
    if rest and not (d and _TIME.fullmatch(rest)):
        return None, f"{text!r} is not a date"
    try:
        if d is None:
            date(int(y), int(mo or 1), 1)
            return None, _PARTIAL
        return date(int(y), int(mo), int(d)), None
    except ValueError:
        return None, f"{text!r} is not a date"


def _parse_instant(text: str) -> date | datetime:
    """A validated full FHIR date or dateTime as a date, or a datetime when a time is given."""
    return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)


# ---- the reader -----------------------------------------------------------------------------------------------
class _Reader:
    """One Bundle read into a Case: indexes, problems, notes, the case-path -> FHIRPath map, and sources."""

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

    def fail(self) -> BundleError:
        return BundleError(self.origin, self.issues + self.unrouted)

    # -- top level
    def read(self) -> Case:
        b = self.bundle
        if not isinstance(b, dict):
            raise BundleError(self.origin, [("Bundle", STRUCTURE, f"a PAS request Bundle is a JSON object, not {_kind(b)}")])
        rt = b.get("resourceType")
        if rt is None:
            raise BundleError(self.origin, [("Bundle.resourceType", REQUIRED, "is required: a PAS request is a Bundle")])
        if rt != "Bundle":
            raise BundleError(self.origin, [("Bundle.resourceType", NOT_SUPPORTED,
                                             f"{rt!r} is not Bundle: priorauth reads PAS request Bundles")])
        btype = b.get("type")
        if btype is None:
            self.issue("Bundle.type", REQUIRED, "is required (collection)")
        elif btype != "collection":
            self.issue("Bundle.type", INVALID, f"{btype!r} is not collection: a PAS request Bundle is a collection")
        entries = b.get("entry")
        if entries is None or entries == []:
            self.issue("Bundle.entry", REQUIRED, "the Bundle has no entries (the first is the PAS Claim)")
            raise self.fail()
        if not isinstance(entries, list):
            self.issue("Bundle.entry", STRUCTURE, f"is a list of entries, not {_kind(entries)}")
            raise self.fail()
        self._index(entries)
        self._check_references()
        return self._map()

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

    # -- mapping
    def _map(self) -> Case:
        claim_k = None
        first = self.res[0]
        if first is not None:
            if first["resourceType"] != "Claim":
                self.issue("Bundle.entry[0].resource.resourceType", INVALID,
                           f"{first['resourceType']!r} is not Claim: the first entry of a PAS request Bundle is the Claim")
            else:
                claim_k = 0
                use = first.get("use")
                if use is None:
                    self.issue("Bundle.entry[0].resource.use", REQUIRED, "is required (preauthorization)")
                elif use != "preauthorization":
                    self.issue("Bundle.entry[0].resource.use", INVALID,
                               f"{use!r} is not preauthorization: priorauth reads prior authorization requests")
        for k in self.by_type.get("Claim", ()):
            if k != 0:
                self.note(self.labels[k], "a further Claim; only the first entry's Claim is read")
        claim = self.res[0] if claim_k == 0 else None
        if claim is not None:
            self._parties(claim)

        data: dict[str, Any] = self.data
        request = self._guarded(self._request, claim, 0) if claim is not None else None
        if request is None:
            self.suppress.append("request")
            received = None
        else:
            received = request.pop("_received_date", None)
            data["request"] = request
        data["id"] = self._case_id(claim)
        member = self._guarded(self._member, claim, self.patient_k if self.patient_k is not None else 0)
        if member is None:
            self.suppress.append("member")
        else:
            data["member"] = member
        if claim is not None:
            prescriber = self._guarded(self._prescriber, claim, 0)
            if prescriber is not None:
                data["prescriber"] = prescriber
        self._clinical(data, received)
        self._questionnaires(data)
        self._documents(data)
        self._others()
        return self._validate(data)

    def _guarded(self, fn, arg: Any, k: int) -> Any:
        """``fn(arg)``, or None with a structure problem when the resource is not shaped as FHIR JSON."""
        try:
            return fn(arg)
        except (TypeError, AttributeError, ValueError) as exc:
            self._shape_problem(k, exc)
            return None

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

    # -- clinical resources
    def _clinical(self, data: dict, received: date | None) -> None:
        """Observations (labs, body weight, disease status, imaging findings), the consultation, the treatment
        history, the medical history and the Lists that submit either section empty."""
        labs: list[dict] = []
        lab_src: list[str] = []
        assessments: list[dict] = []
        assess_src: list[str] = []
        weights: list[tuple[date, int, dict]] = []
        for k in self.by_type.get("Observation", ()):
            try:
                self._observation(k, labs, lab_src, assessments, assess_src, weights)
            except (TypeError, AttributeError, ValueError) as exc:
                self._shape_problem(k, exc)
        # body weight: the latest on or before receipt
        member = data.get("member")
        weights.sort(key=lambda x: (x[0], -x[1]))
        chosen = None
        for d, k, q in weights:
            if received is not None and d > received:
                self.note(self.labels[k], f"body weight dated {d}, after receipt; not used")
            else:
                chosen = (d, k, q)
        if chosen is not None and member is not None:
            d, k, _ = chosen
            q = self._quantity(self.res[k]["valueQuantity"], f"{self.base(k)}.valueQuantity", "member.weight")
            member["weight"] = q
            self.sources["member.weight"] = self.labels[k]
            for d2, k2, _ in weights:
                if k2 != k and (received is None or d2 <= received):
                    self.note(self.labels[k2], f"an earlier body weight; the latest ({self.labels[k]}) is used")
        # prescriber's consultation
        consult = self._consultation(received)
        if consult is not None:
            if data.get("prescriber") is None:
                data["prescriber"] = {}
                self.sources["prescriber"] = consult[1]
            data["prescriber"]["consultation"] = consult[0]
            self.sources["prescriber.consultation"] = consult[1]
        # treatment history, medical history, lists
        therapies, ther_src = self._therapies()
        history, hist_src = self._history()
        lists = self._lists()
        if therapies or self.therapy_resources or "therapies" in lists:
            data["therapies"] = therapies
            self.sources["therapies"] = ther_src
        if history or self.by_type.get("Condition") or "history" in lists:
            data["history"] = history
            self.sources["history"] = hist_src
        if labs:
            data["labs"] = labs
            self.sources["labs"] = lab_src
        self.assessments, self.assess_src = assessments, assess_src
        self.labs, self.lab_src = labs, lab_src
        self.data = data

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

    # -- documents and the rest
    def _documents(self, data: dict) -> None:
        docs: list[dict] = []
        srcs: list[str] = []
        for k in self.by_type.get("DocumentReference", ()):
            try:
                ref = self.res[k]
                label, base = self.labels[k], self.base(k)
                if self._status(k) is _LEFT_OUT:
                    continue
                if ref.get("status") in _SKIP_STATUS["DocumentReference"]:
                    self.note(label, f"status {ref.get('status')}; left out")
                    continue
                when = None
                if ref.get("date") is not None:
                    when = self._date(ref["date"], f"{base}.date", "the document date", required=False, label=label)
                kind = ref.get("type", {}).get("text") if isinstance(ref.get("type"), dict) else None
                contents = [(j, c) for j, c in enumerate(_list(ref.get("content")))
                            if isinstance(c, dict) and isinstance(c.get("attachment"), dict)]
                if not contents:
                    self.note(label, "no content attachment; left out")
                    continue
                for j, c in contents:
                    att = c["attachment"]
                    doc: dict[str, Any] = {"id": ref.get("id") if isinstance(ref.get("id"), str) else None}
                    title = att.get("title") or kind or ref.get("description")
                    if title is not None:
                        doc["title"] = title
                    for key, field in (("contentType", "content_type"), ("url", "url"), ("size", "size")):
                        if att.get(key) is not None:
                            doc[field] = att[key]
                    if when is not None:
                        doc["date"] = when
                    docs.append(doc)
                    self.items.setdefault("documents", []).append(
                        (k, _DOCUMENT if j == 0 else {f: v.replace("content[0]", f"content[{j}]") for f, v in _DOCUMENT.items()}))
                    srcs.append(label)
            except (TypeError, AttributeError, ValueError) as exc:
                self._shape_problem(k, exc)
        if docs:
            data["documents"] = docs
            self.sources["documents"] = srcs

    def _others(self) -> None:
        read = {"Observation", "MedicationStatement", "MedicationAdministration", "MedicationRequest", "Procedure",
                "Condition", "List", "QuestionnaireResponse", "DocumentReference", "Encounter"}
        for rt, ks in self.by_type.items():
            if rt not in read and rt not in _SUPPORT_TYPES:
                for k in ks:
                    self.note(self.labels[k], f"a {rt} is not a resource priorauth reads; left out")

    # -- validation and sources
    def _expr(self, path: str) -> str:
        """The FHIRPath a case-file path was read from: the item's element, else the nearest recorded parent."""
        m = _ITEM_PATH.match(path)
        if m is not None:
            rows = self.items.get(m[1], ())
            n = int(m[2])
            if n < len(rows):
                base, fields = rows[n]
                base = self.base(base) if base.__class__ is int else base
                sub = fields.get(m[3]) if m[3] else None
                if sub is None:
                    return base
                return sub if sub.startswith("Bundle") else f"{base}.{sub}"
        p = path
        while True:
            found = self.where.get(p)
            if found is not None:
                return found
            cut = max(p.rfind("."), p.rfind("["))
            if cut <= 0:
                return "Bundle"
            p = p[:cut]

    def _validate(self, data: dict) -> Case:
        try:
            case = Case.model_validate(data)
        except ValidationError as err:
            texts = problems_from_validation(err, skip=THERAPY_TAGS)
            for e, text in zip(err.errors(include_url=False), texts):
                path = format_loc(tuple(e["loc"]), THERAPY_TAGS)
                if any(path == s or path.startswith(s + ".") or path.startswith(s + "[") for s in self.suppress):
                    continue
                message = text[len(path) + 2:]
                self.issue(self._expr(path), REQUIRED if e["type"] == "missing" else VALUE, message)
            raise self.fail() from None
        if not self.issues:
            self._respondable()
        if self.issues:
            raise self.fail()
        self._attach(case)
        case.notes.extend(self.notes)
        if self.unrouted:
            case._unrouted = BundleError(self.origin, self.unrouted)
            case.notes.extend(f"{expr}: {message}" for expr, _, message in self.unrouted)
        return case

    def _attach(self, case: Case) -> None:
        """Set each fact's source from the index kept while mapping (list items in the order they were built).

        Sources were recorded as paths (or, for the request, member, prescriber and attestations, as
        _ElementSources); the paths become Sources in one pydantic-core call, several times cheaper than one
        constructor call each. ``source`` is excluded from dumps and not validated, so it is written to the
        instance dict directly (pydantic's ``__setattr__`` costs several times more).
        """
        s = self.sources
        targets: list[tuple[Any, Any]] = [(case, "Bundle"), (case.request, s["request"]), (case.member, s["member"])]
        req = case.request
        if req.dose is not None:
            targets.append((req.dose, s["request.dose"]))
        if req.tocilizumab is not None:
            targets.append((req.tocilizumab, s["request.tocilizumab"]))
            targets.append((req.tocilizumab.dose, s.get("request.tocilizumab.dose", s["request.tocilizumab"])))
        if case.member.weight is not None:
            targets.append((case.member.weight, s["member.weight"]))
        if case.prescriber is not None:
            targets.append((case.prescriber, s["prescriber"]))
            if case.prescriber.consultation is not None:
                targets.append((case.prescriber.consultation, s["prescriber.consultation"]))
        for section in ("labs", "therapies", "assessments", "history", "documents"):
            items = getattr(case, section)
            if items:
                targets.extend(zip(items, s[section]))
        if case.attestations is not None:
            targets.append((case.attestations, s["attestations"]))
        origin = self.origin
        made = iter(_source_list().validate_python(
            [{"file": origin, "path": src} for _, src in targets if src.__class__ is str]))
        for model, src in targets:
            model.__dict__["source"] = next(made) if src.__class__ is str else src


@lru_cache(maxsize=1)
def _source_list() -> TypeAdapter:
    return TypeAdapter(list[Source])


_LEFT_OUT = object()

# Where each field of a list item was read, relative to its resource (an item is indexed by its entry and one
# of these maps, so FHIRPaths are only built when the case model reports a problem)
_LAB_CODE = {"test": "code", "loinc": "code", "value": "valueQuantity.value", "unit": "valueQuantity.code",
             "date": "effective[x]", "reference_range": "referenceRange[0]", "flag": "interpretation"}
_LAB_UNIT = {**_LAB_CODE, "unit": "valueQuantity.unit"}
_LAB_INTEGER = {**_LAB_CODE, "value": "valueInteger", "unit": "valueInteger"}
_ASSESSMENT = {"date": "effective[x]", "response": "valueCodeableConcept", "finding": "valueCodeableConcept",
               "text": "note"}
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
_HISTORY = {"code": "code", "text": "code.text", "onset": "onset[x]", "status": "clinicalStatus"}
_HISTORY_CODE0 = {**_HISTORY, "code": "code.coding[0].code"}
_DOCUMENT = {"title": "content[0].attachment.title", "content_type": "content[0].attachment.contentType",
             "url": "content[0].attachment.url", "size": "content[0].attachment.size", "date": "date"}
_ITEM_PATH = re.compile(r"(labs|therapies|assessments|history|documents)\[(\d+)\](?:\.(\w+))?")


def _unit_of(q: dict) -> tuple[Any, dict]:
    """The unit of a FHIR Quantity (UCUM ``code``, else ``unit``) and the lab field map that names it."""
    code = q.get("code")
    if code is not None and _sys(q) in (None, UCUM):
        unit, fields = code, _LAB_CODE
    else:
        unit, fields = q.get("unit"), _LAB_UNIT
    return unit, fields


def _bounds(res: dict) -> Any:
    """A MedicationRequest's dosageInstruction[0].timing.repeat.boundsPeriod, when given."""
    di = res.get("dosageInstruction")
    if di.__class__ is list and di and di[0].__class__ is dict:
        timing = di[0].get("timing")
        rep = timing.get("repeat") if timing.__class__ is dict else None
        return rep.get("boundsPeriod") if rep.__class__ is dict else None
    return None


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
