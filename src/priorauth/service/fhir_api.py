"""The provider-facing FHIR API: PAS ``Claim/$submit`` and ``Claim/$inquire``, ``ClaimResponse`` reads and DTR
``Questionnaire/$questionnaire-package``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool

from priorauth.fhir.dtr import questionnaire_package
from priorauth.fhir.letters import letter_bundle, letter_resource
from priorauth.service.auth import Principal
from priorauth.service.errors import ApiError
from priorauth.service.http import FHIR_BODY, caller, fhir_response, read_resource, service_of

router = APIRouter(prefix="/fhir", tags=["FHIR (provider)"])

_FHIR_ID = r"^[A-Za-z0-9\-\.]{1,64}$"


@router.post("/Claim/$submit", openapi_extra=FHIR_BODY, summary="Submit a PAS request Bundle",
             description="Returns the PAS response Bundle: every item pended (A4) for committee review, with the "
                         "engine's recommendation and what documentation is missing. Idempotent on "
                         "Bundle.identifier. A Claim whose `related.claim` names an earlier request of the same "
                         "organization is an update of that request (re-evaluated, history kept).")
async def submit(request: Request, who: Principal = Depends(caller("provider"))):
    bundle, text = await read_resource(request, "Bundle")
    svc = service_of(request)
    done = await run_in_threadpool(svc.submit, bundle, text, who)
    status = 201 if done.result.created and not done.resubmission else 200
    return fhir_response(done.response, status,
                         {"Location": f"/fhir/ClaimResponse/{done.result.case.id}"})


@router.post("/Claim/$inquire", openapi_extra=FHIR_BODY, summary="Inquire on a submitted request",
             description="A PAS inquiry Bundle whose Claim carries the identifier of an earlier request; returns "
                         "that request's current response Bundle.")
async def inquire(request: Request, who: Principal = Depends(caller("provider"))):
    bundle, _text = await read_resource(request, "Bundle")
    svc = service_of(request)
    return fhir_response(await run_in_threadpool(svc.inquire, bundle, who))


@router.get("/ClaimResponse/{id}", summary="The current ClaimResponse of a request")
def claim_response(request: Request, id: str = Path(..., pattern=_FHIR_ID),
                   who: Principal = Depends(caller("provider", "reviewer"))):
    svc = service_of(request)
    svc.case_for(id, who, "claimresponse.read")
    return fhir_response(svc.claim_response(svc.response(id)))


@router.get("/DocumentReference", summary="The notice letters of a request (searchset)",
            description="`related=ClaimResponse/{id}`: the letters each decision on the request sent, as "
                        "DocumentReferences (PDF and HTML). A provider gets the provider's letters of its own "
                        "requests; a reviewer gets the member's too.")
def letters(request: Request, related: str = Query(..., max_length=80, pattern=r"^ClaimResponse/[A-Za-z0-9\-\.]{1,64}$"),
            who: Principal = Depends(caller("provider", "reviewer"))):
    svc = service_of(request)
    case_id = related.split("/", 1)[1]
    svc.case_for(case_id, who, "letters.read")
    rows = [r for r in svc.store.letters(case_id) if who.role == "reviewer" or r.audience == "provider"]
    return fhir_response(letter_bundle(rows, svc.settings.base_url))


@router.get("/DocumentReference/{id}", summary="One notice letter")
def letter(request: Request, id: str = Path(..., pattern=r"^letter-[0-9]{1,12}$"),
           who: Principal = Depends(caller("provider", "reviewer"))):
    svc = service_of(request)
    row = svc.store.letter(int(id.split("-", 1)[1]))
    if row is not None:
        svc.case_for(row.case_id, who, "letter.read")
    if row is None or (who.role != "reviewer" and row.audience != "provider"):
        raise ApiError(404, f"no letter {id!r} that you may see", code="not-found")
    return fhir_response(letter_resource(row))


@router.post("/Questionnaire/$questionnaire-package", openapi_extra=FHIR_BODY,
             summary="DTR: the policy's Questionnaire package",
             description="Input: a Parameters with at least one `coverage` (DTR). Output: a Parameters whose "
                         "PackageBundle holds the Questionnaire for the policy's documentation.")
async def package(request: Request, who: Principal = Depends(caller("provider"))):
    params, _text = await read_resource(request, "Parameters")
    parameters = params.get("parameter")
    if parameters is not None and not isinstance(parameters, list):
        raise ApiError(400, "Parameters.parameter is a list", "Parameters.parameter", code="structure")
    coverage = [p for p in parameters or () if isinstance(p, dict) and p.get("name") == "coverage"]
    if not coverage:
        raise ApiError(400, "a `coverage` parameter (the member's Coverage) is required", "Parameters.parameter",
                       code="required")
    for i, p in enumerate(coverage):
        res = p.get("resource")
        if not isinstance(res, dict) or res.get("resourceType") != "Coverage":
            raise ApiError(400, "the coverage parameter's resource is a Coverage",
                           f"Parameters.parameter[{i}].resource", code="structure")
    svc = service_of(request)
    svc.store.audit(who.actor.name, who.role, "questionnaire.package", None, {})
    return fhir_response(questionnaire_package(svc.policy, terminology=svc.term))
