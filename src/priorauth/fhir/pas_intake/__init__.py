"""PAS request Bundle -> Case: the fast structural reader of docs/fhir-mapping.md ("Request Bundle -> Case").

A Da Vinci PAS request Bundle (FHIR R4 JSON, ``type`` collection, the Claim first) becomes the same
:class:`~priorauth.case.Case` a case file gives. The reader indexes the entries, checks that every reference
resolves, maps each resource it reads into a dict in the case-file shape, validates that dict with
``Case.model_validate`` (so every rule of the case model applies) and then attaches the sources it recorded.
It never builds FHIR models; ``strict=True`` first validates the whole Bundle with fhir.resources
(:func:`priorauth.fhir.validate.validate_resource`) and refuses it with those problems.

Layout, the way the data flows: ``bundle`` resolves the Bundle (entries indexed, every reference checked) and
holds the bookkeeping every reader shares; one module per resource family reads its resources into facts with
their sources: ``claim`` (the Claim and its items), ``member`` (Patient and Coverage), ``practitioners``
(the prescriber and the consultation), ``observations`` (labs, assessments, weight), ``medications``
(MedicationStatement, MedicationAdministration, MedicationRequest history into exposures), ``history``
(Conditions and Procedures), ``documents`` and ``questionnaires`` (DTR answers); ``reader`` runs them in order,
validates the case and attaches the sources; ``errors`` is the BundleError with its FHIRPaths; ``fhirjson`` the
small JSON readers they share. Problems are collected with their FHIRPath wherever they are found.

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
from pathlib import Path
from typing import Any

from priorauth.case import Case
from priorauth.fhir.codes import PAS_CLAIM_INQUIRY, PAS_INQUIRY_BUNDLE
from priorauth.intake.casefile import MAX_FILE_BYTES
from priorauth.intake.casefile import DUPLICATE_KEYS, json_pairs
from priorauth.fhir.pas_intake.errors import (ISSUE_CODES, INVALID, NOT_FOUND, REQUIRED, STRUCTURE, VALUE,
                                              BundleError, Issue)
from priorauth.fhir.pas_intake.reader import _Reader


__all__ = ["BundleError", "Issue", "is_bundle", "inquiry_profile", "case_from_bundle", "load_bundle_file",
           "parse_bundle_text", "ISSUE_CODES"]


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
