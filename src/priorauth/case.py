"""The Case: a prior authorization request and the member's clinical record, every fact with its source.

These models are what the core reads. Intake adapters (``priorauth.intake``) build them from case files
today and from FHIR bundles later; each sets ``source`` on every fact so a reviewer can trace evidence back
to the file and field (or the FHIR resource) it came from. A section that is ``None`` was not submitted;
an empty list was submitted and holds nothing (the exclusion criteria tell the two apart).
"""

from __future__ import annotations

import math
from functools import lru_cache
import re
from datetime import date, datetime, time

_Date = date  # models below have fields named `date`
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, PrivateAttr, Tag,
                      ValidationInfo, field_validator, model_validator)

from priorauth.clinical.units import UnitError, factor
from priorauth.terminology import load_terminology

__all__ = [
    "Source", "Quantity", "Context", "Tocilizumab", "Request", "Member", "Consultation", "Prescriber", "Lab",
    "Regimen", "Procedure", "Assessment", "HistoryEntry", "Attestations", "Case", "LAB_TESTS",
    "RESPONSES", "FINDINGS", "DRUG_CLASS_KEYS", "Therapy", "THERAPY_TAGS", "DOSE_UNITS", "CellDose", "MgDose",
    "Weight", "Number", "unit_problem", "Document", "STOP_REASONS",
]

LAB_TESTS = (
    "serum_m_protein", "urine_m_protein", "kappa_flc", "lambda_flc", "flc_ratio",
    "bone_marrow_plasma_cells", "circulating_plasma_cells", "egfr",
)
RESPONSES = (
    "progressive_disease", "relapse", "stable_disease", "minimal_response", "partial_response",
    "very_good_partial_response", "complete_response", "stringent_complete_response",
)
FINDINGS = ("new_lesion", "lesion_growth", "cns_involvement", "meningeal_involvement")
#: the units a CAR-T dose may be given in: a flat count of cells, or a count per kilogram of body weight
DOSE_UNITS = ("{cells}", "{cells}/kg")
DRUG_CLASS_KEYS = ("imid", "proteasome_inhibitor", "anti_cd38", "anti_bcma", "car_t", "other_anti_myeloma")
_ICD10CM = re.compile(r"^[A-TV-Z][0-9][0-9AB](\.?[0-9A-TV-Z]{1,4})?$", re.IGNORECASE)


@lru_cache(maxsize=65536)
def _source_text(file: str | None, path: str) -> str:
    return f"{file}#{path}" if file else path


class Source(BaseModel):
    """Where a fact came from: a file (or bundle) and a path in it (a field path or a resource reference)."""

    model_config = ConfigDict(frozen=True)
    file: str | None = None
    path: str = ""

    def at(self, child: str) -> "Source":
        if not child:
            return self
        return _source_at(self.file, self.path, child)

    def __str__(self) -> str:
        return _source_text(self.file, self.path)


@lru_cache(maxsize=65536)
def _source_at(file: str | None, path: str, child: str) -> "Source":
    """A child source (sources are frozen, so one object serves every evaluation that names it)."""
    sep = "" if not path or child.startswith("[") else "."
    return Source(file=file, path=f"{path}{sep}{child}")


class _Fact(BaseModel):
    # Unknown fields are kept and reported by intake as data problems, never silently used.
    model_config = ConfigDict(extra="allow")
    source: Source | None = Field(default=None, exclude=True)


def _not_bool(v: Any) -> Any:
    if isinstance(v, bool):
        raise ValueError(f"{v!r} is not a number")
    return v


Number = Annotated[float, BeforeValidator(_not_bool)]


def unit_problem(unit: str, targets: tuple[str, ...]) -> str | None:
    """Why ``unit`` cannot be read or converted to one of ``targets``; None when it can."""
    try:
        factor(unit, unit)
    except UnitError as exc:
        return str(exc)
    for target in targets:
        try:
            factor(unit, target)
            return None
        except UnitError:
            continue
    return f"{unit!r} cannot be converted to {' or '.join(repr(t) for t in targets)}"


class Quantity(_Fact):
    value: Number
    unit: str

    @field_validator("value")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("must be a finite number")
        if v < 0:
            raise ValueError("must not be negative")
        return v

    @field_validator("unit")
    @classmethod
    def _unit(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        v = v.strip()
        problem = unit_problem(v, cls.UNITS) if cls.UNITS else None
        if problem:
            raise ValueError(problem)
        return v

    UNITS: ClassVar[tuple[str, ...]] = ()

    def __str__(self) -> str:
        return f"{self.value:g} {self.unit}"


class CellDose(Quantity):
    """A CAR-T dose: a count of cells, flat or per kilogram of body weight."""

    UNITS: ClassVar[tuple[str, ...]] = DOSE_UNITS


class MgDose(Quantity):
    UNITS: ClassVar[tuple[str, ...]] = ("mg", "mg/kg")


class Weight(Quantity):
    UNITS: ClassVar[tuple[str, ...]] = ("kg",)


class Context(_Fact):
    """Payer-side facts; a key that is absent takes the deployment's configuration (see ``model_fields_set``)."""

    policy_effective: _Date | None = None
    formulary: dict[str, bool] | None = None
    label_change_within_6_months: bool | None = None


class Tocilizumab(_Fact):
    doses: int = Field(ge=1)
    dose: MgDose
    # the order's own ceiling per administration (FHIR maxDosePerAdministration), in mg: with a per-kg dose it is
    # the most any one dose may be, whatever the weight on the day of infusion
    max_per_dose: MgDose | None = None

    @model_validator(mode="after")
    def _ceiling_in_mg(self):
        if self.max_per_dose is not None and self.max_per_dose.unit != "mg":
            raise ValueError(f"max_per_dose: {self.max_per_dose.unit!r} is not a ceiling per dose; give it in mg")
        return self


def _icd10cm(code: str) -> str:
    if not _ICD10CM.match(code.strip()):
        raise ValueError(f"{code!r} is not an ICD-10-CM code")
    return code.strip().upper()


def _parse_received(v: Any) -> Any:
    if isinstance(v, datetime) or isinstance(v, date):
        return v
    if isinstance(v, str):
        s = v.strip()
        try:
            return date.fromisoformat(s) if len(s) == 10 else datetime.fromisoformat(s.replace("Z", "+00:00"))
        except ValueError:
            return v  # the field's own date check names the field and the value
    return v


class Request(_Fact):
    received: _Date
    received_at: datetime | None = Field(default=None, exclude=True)
    kind: Literal["initial", "continuation"] = "initial"
    urgency: Literal["standard", "expedited"] = "standard"
    drug: str
    dose: CellDose | None = None
    tocilizumab: Tocilizumab | None = None
    diagnoses: list[Annotated[str, AfterValidator(_icd10cm)]] = Field(default_factory=list)
    concurrent: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _received(cls, data: Any) -> Any:
        if isinstance(data, dict) and "received" in data:
            parsed = _parse_received(data["received"])
            data = dict(data)
            if isinstance(parsed, datetime):
                data["received"], data["received_at"] = parsed.date(), parsed
            else:
                data["received"] = parsed
        return data

    @field_validator("drug")
    @classmethod
    def _drug(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v.strip()

    def received_datetime(self) -> datetime:
        """The moment of receipt: the given time, or the start of the day received."""
        return self.received_at or datetime.combine(self.received, time(0, 0))


class Member(_Fact):
    id: str | None = None
    birth_date: _Date | None = None
    # None: not given. Routing checks the product first (an out-of-scope product is not applicable whatever
    # the line of business); a request for the policy's product without one is refused (Case.unrouted).
    line_of_business: str | None = None
    state: str | None = None
    weight: Weight | None = None

    @field_validator("line_of_business")
    @classmethod
    def _lob(cls, v: str) -> str:
        v = v.strip().lower()
        if not v:
            raise ValueError("must not be empty")
        return v


class Consultation(_Fact):
    taxonomy: str | None = None
    specialty: str | None = None
    date: _Date | None = None

    @model_validator(mode="after")
    def _one(self) -> "Consultation":
        if not (self.taxonomy or self.specialty):
            raise ValueError("a consultation needs a taxonomy or a specialty")
        return self


class Prescriber(_Fact):
    npi: str | None = None
    taxonomy: str | None = None
    specialty: str | None = None
    consultation: Consultation | None = None

    @field_validator("npi", mode="before")
    @classmethod
    def _npi(cls, v: Any) -> Any:
        if v is None:
            return v
        s = str(v).strip()
        if not re.fullmatch(r"[0-9]{10}", s):          # ASCII digits: \d would take other scripts' digits
            raise ValueError(f"{v!r} is not an NPI (10 digits)")
        return s


class Lab(_Fact):
    test: Literal[LAB_TESTS] | None = None  # type: ignore[valid-type]
    loinc: str | None = None
    value: Number
    unit: str | None = Field(default=None, validate_default=True)
    date: _Date
    reference_range: tuple[float, float] | None = None
    flag: Literal["abnormal", "normal", "high", "low"] | None = None
    # the value in the test's canonical unit (set on validation)
    canonical: float | None = Field(default=None, exclude=True)

    @field_validator("value")
    @classmethod
    def _value(cls, v: float) -> float:
        if not math.isfinite(v) or v < 0:
            raise ValueError("must be a finite number, not negative")
        return v

    @field_validator("loinc")
    @classmethod
    def _loinc(cls, v: str | None, info: ValidationInfo) -> str | None:
        test = info.data.get("test")
        by_code = _lab_test(None, v)
        if test is not None and by_code is not None and by_code != test:
            raise ValueError(f"{v!r} is {by_code}, but test says {test}")
        return v

    @field_validator("unit")
    @classmethod
    def _unit(cls, v: str | None, info: ValidationInfo) -> str | None:
        test = _lab_test(info.data.get("test"), info.data.get("loinc"))
        if test is None:
            return v
        target = _terminology().lab_tests[test]["unit"]
        if v is None or not v.strip():
            if target in ("1", "%"):
                return target
            raise ValueError(f"is required for {test} (for instance {target})")
        problem = unit_problem(v.strip(), (target,))
        if problem:
            raise ValueError(f"{problem} (the unit of {test})")
        return v.strip()

    @field_validator("reference_range")
    @classmethod
    def _range(cls, v):
        if v is not None and v[0] > v[1]:
            raise ValueError(f"low {v[0]:g} is above high {v[1]:g}")
        return v

    @model_validator(mode="after")
    def _named(self) -> "Lab":
        if self.test is None and self.loinc is None:
            raise ValueError("a lab needs `test` or `loinc`")
        self.test = self.test or _lab_test(None, self.loinc)
        if self.test is not None and self.unit is not None:
            self.canonical = self.value * factor(self.unit, _terminology().lab_tests[self.test]["unit"])
        return self


def _terminology():
    return load_terminology()


def _lab_test(test: str | None, loinc: str | None) -> str | None:
    if test is not None:
        return test
    return _terminology().lab_by_loinc(loinc) if loinc else None


STOP_REASONS = ("progression", "toxicity", "hold", "completed", "patient_choice")


class Regimen(_Fact):
    """A treatment entry: a regimen as written (``drugs`` naming several, or a ``regimen`` acronym), or one drug
    (``drug``, or ``drugs`` naming one) over a period (``start``/``end``) or by administration (``doses``).

    ``end`` is the date of the last dose; without it the entry is ongoing, unless ``stop_reason`` says it was
    stopped (then its end is unknown). With ``doses`` the first and last dose are the start and the end.
    """

    drugs: list[str] | None = None
    regimen: str | None = None
    drug: str | None = None
    start: _Date | None = None
    end: _Date | None = None
    doses: list[_Date] | None = None
    intent: Literal["induction", "consolidation", "maintenance"] | None = None
    line: int | None = Field(default=None, ge=1)
    stop_reason: Literal[STOP_REASONS] | None = None  # type: ignore[valid-type]
    trial: bool | None = None
    # the products as written, read once on validation (never from the file: always recomputed)
    name_key: tuple[str, ...] = Field(default=(), exclude=True, repr=False)

    @model_validator(mode="before")
    @classmethod
    def _not_both(cls, data: Any) -> Any:
        if isinstance(data, dict) and "procedure" in data:
            raise ValueError("an entry is a regimen (`drugs` or `regimen`), a drug (`drug`) or a procedure, not both")
        return data

    @model_validator(mode="after")
    def _check(self) -> "Regimen":
        given = [k for k in ("drugs", "regimen", "drug") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("a therapy entry needs exactly one of `drugs`, `regimen` or `drug`"
                             + (f" (it gives {' and '.join(given)})" if given else ""))
        if self.drugs is not None and not [d for d in self.drugs if str(d).strip()]:
            raise ValueError("`drugs` must name at least one drug")
        for key in ("regimen", "drug"):
            value = getattr(self, key)
            if value is not None and not value.strip():
                raise ValueError(f"`{key}` must not be empty")
        if self.doses is not None:
            if self.drug is None:
                raise ValueError("`doses` (one date per administration) goes with a single `drug`")
            if not self.doses:
                raise ValueError("`doses` must list at least one date")
            first, last = min(self.doses), max(self.doses)
            if self.start is not None and self.start != first:
                raise ValueError(f"start {self.start} is not the first dose {first}")
            if self.end is not None and self.end != last:
                raise ValueError(f"end {self.end} is not the last dose {last}")
            self.doses = sorted(self.doses)
            self.start, self.end = first, last
        if self.start is None:
            raise ValueError("`start` is required (or `doses`, one date per administration)")
        if self.end is not None and self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        if self.drugs is not None:
            self.name_key = tuple(d for d in map(str.strip, self.drugs) if d)
        else:
            self.name_key = ((self.regimen if self.regimen is not None else self.drug).strip(),)
        return self

    @property
    def names(self) -> list[str]:
        """The products as written: the drugs, the acronym, or the single drug."""
        return list(self.name_key)

    @property
    def stopped_undated(self) -> bool:
        """Stopped (a stop reason is given) without a date of the last dose: the end is unknown."""
        return self.end is None and self.stop_reason is not None


class Procedure(_Fact):
    procedure: Literal["autologous_sct", "allogeneic_sct"]
    date: _Date
    line: int | None = Field(default=None, ge=1)


class Assessment(_Fact):
    date: _Date
    response: Literal[RESPONSES] | None = None  # type: ignore[valid-type]
    finding: Literal[FINDINGS] | None = None  # type: ignore[valid-type]
    text: str | None = None

    @model_validator(mode="after")
    def _one(self) -> "Assessment":
        if self.response is None and self.finding is None:
            raise ValueError("an assessment needs a `response` or a `finding`")
        return self


class HistoryEntry(_Fact):
    code: str | None = None
    text: str | None = None
    onset: _Date | None = None
    status: Literal["active", "resolved"] | None = None

    @field_validator("code")
    @classmethod
    def _code(cls, v: str | None) -> str | None:
        return None if v is None else _icd10cm(v)

    @model_validator(mode="after")
    def _one(self) -> "HistoryEntry":
        if not (self.code or self.text):
            raise ValueError("a history entry needs a `code` or a `text`")
        return self


class Attestations(_Fact):
    no_cns_pathology: bool | None = None
    no_prior_bcma: bool | None = None
    no_prior_car_t: bool | None = None
    prior_lines: int | None = Field(default=None, ge=0)
    prior_classes: list[Literal[DRUG_CLASS_KEYS]] | None = None  # type: ignore[valid-type]


DOCUMENT_KINDS = ("progress_note", "consult_note", "lab_report", "pathology_report", "imaging_report",
                  "discharge_summary", "letter", "other")


class Document(_Fact):
    """A document attached to the request (a FHIR DocumentReference, or a case file's ``documents[]`` entry).

    ``text`` is the document's text as read (given in the case file, or read from ``file``, a ``.txt`` or ``.pdf``
    path relative to the case file); ``text_note`` says how it was read, or why there is none (a scan)."""

    id: str | None = None
    kind: Literal[DOCUMENT_KINDS] | None = None  # type: ignore[valid-type]
    title: str | None = None
    content_type: str | None = None
    url: str | None = None
    size: int | None = None
    date: _Date | None = None
    text: str | None = None
    file: str | None = None
    text_note: str | None = None

    @model_validator(mode="after")
    def _one_body(self) -> "Document":
        if self.text is not None and self.file is not None:
            raise ValueError("give the document as `text` or as `file`, not both")
        return self


def _therapy_kind(v: Any) -> str:
    # the entry's keys choose the model, so that errors speak of the right one
    if isinstance(v, dict):
        return "procedure" if "procedure" in v and not ({"drugs", "regimen", "drug"} & v.keys()) else "regimen"
    return "procedure" if isinstance(v, Procedure) else "regimen"


Therapy = Annotated[
    Union[Annotated[Regimen, Tag("regimen")], Annotated[Procedure, Tag("procedure")]],
    Discriminator(_therapy_kind),
]
THERAPY_TAGS = ("regimen", "procedure")


class Case(_Fact):
    id: str
    title: str | None = None
    context: Context = Field(default_factory=Context)
    request: Request
    member: Member
    prescriber: Prescriber | None = None
    labs: list[Lab] | None = None
    therapies: list[Therapy] | None = None
    assessments: list[Assessment] | None = None
    history: list[HistoryEntry] | None = None
    attestations: Attestations | None = None
    documents: list[Document] = Field(default_factory=list)
    expect: dict[str, Any] | None = Field(default=None, exclude=True)
    # set by intake: problems in the data that did not stop it from being read (unknown fields, ...)
    notes: list[str] = Field(default_factory=list, exclude=True)
    # set by intake when the line of business could not be resolved: the error naming what it looked for
    _unrouted: Any = PrivateAttr(default=None)

    def unrouted(self) -> Exception:
        """The refusal of a request whose line of business is not given, raised once routing has found the
        product in scope: the intake's own (naming the elements it read), else one naming the case field."""
        if self._unrouted is not None:
            return self._unrouted
        from priorauth.intake.errors import IntakeError

        origin = self.source.file if self.source is not None and self.source.file else "case"
        return IntakeError(origin, ["member.line_of_business: is required (commercial, marketplace, medicaid or "
                                    "the plan's name for another line of business)"])
