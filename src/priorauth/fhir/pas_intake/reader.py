"""The reader of one Bundle: resolve it, read each resource family, validate the case and attach the sources."""

from __future__ import annotations

import re
from datetime import date
from functools import lru_cache
from typing import Any

from pydantic import TypeAdapter, ValidationError

from priorauth.case import THERAPY_TAGS, Case, Source
from priorauth.intake.errors import format_loc, problems_from_validation
from priorauth.fhir.pas_intake.errors import BundleError, INVALID, NOT_SUPPORTED, REQUIRED, STRUCTURE, VALUE
from priorauth.fhir.pas_intake.fhirjson import _kind
from priorauth.fhir.pas_intake.claim import ClaimReader
from priorauth.fhir.pas_intake.member import MemberReader
from priorauth.fhir.pas_intake.practitioners import PractitionerReader
from priorauth.fhir.pas_intake.observations import ObservationReader
from priorauth.fhir.pas_intake.medications import MedicationReader
from priorauth.fhir.pas_intake.history import HistoryReader
from priorauth.fhir.pas_intake.documents import DocumentReader
from priorauth.fhir.pas_intake.questionnaires import QuestionnaireReader


class _Reader(ClaimReader, MemberReader, PractitionerReader, ObservationReader, MedicationReader,
              HistoryReader, DocumentReader, QuestionnaireReader):
    """One Bundle read into a Case: each resource family by its reader, then validated with sources."""

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
            case._unrouted = self.fail(self.unrouted)
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


_SUPPORT_TYPES = frozenset({
    "Patient", "Coverage", "Practitioner", "PractitionerRole", "Organization", "Location", "Medication",
    "Questionnaire", "Provenance", "Binary", "Device", "RelatedPerson", "ServiceRequest", "DeviceRequest",
    "NutritionOrder", "CommunicationRequest", "HealthcareService", "Claim",
})


@lru_cache(maxsize=1)
def _source_list() -> TypeAdapter:
    return TypeAdapter(list[Source])


_ITEM_PATH = re.compile(r"(labs|therapies|assessments|history|documents)\[(\d+)\](?:\.(\w+))?")
