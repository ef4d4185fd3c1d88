"""CDS Hooks (CRD): the discovery endpoint and an order-sign service whose answer is the coverage-information
system action on the draft order."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from priorauth.fhir.crd import coverage_information
from priorauth.service.auth import Principal
from priorauth.service.errors import ApiError
from priorauth.service.http import caller, json_response, service_of

router = APIRouter(tags=["CDS Hooks (CRD)"])

ORDER_SIGN_ID = "priorauth-order-sign"


@router.get("/cds-services", summary="CDS Hooks discovery")
def discovery(request: Request):
    policy = service_of(request).policy
    return json_response({"services": [{
        "hook": "order-sign",
        "id": ORDER_SIGN_ID,
        "title": f"Coverage requirements: {policy.doc.product.name}",
        "description": (f"Whether {policy.doc.product.name} needs prior authorization under {policy.id}, and "
                        "the documentation it needs, as a coverage-information extension on the draft order"),
        "prefetch": {"patient": "Patient/{{context.patientId}}",
                     "coverage": "Coverage?patient={{context.patientId}}&status=active"},
    }]})


@router.post(f"/cds-services/{ORDER_SIGN_ID}", summary="CRD order-sign",
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
                 "type": "object", "required": ["hook", "hookInstance", "context"],
                 "properties": {"hook": {"type": "string"}, "hookInstance": {"type": "string"},
                                "context": {"type": "object"}, "prefetch": {"type": "object"}}}}}}})
async def order_sign(request: Request, who: Principal = Depends(caller("provider"))):
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise ApiError(415, "Content-Type must be application/json (a CDS Hooks request)", code="not-supported")
    try:
        hook = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise ApiError(400, "the body is not valid JSON", code="structure") from None
    if not isinstance(hook, dict) or hook.get("hook") != "order-sign":
        raise ApiError(400, "hook: this service answers order-sign", "hook", code="value")
    svc = service_of(request)
    try:
        answer = await run_in_threadpool(coverage_information, hook, svc.policy, config=svc.config,
                                         terminology=svc.term)
    except ValueError as exc:
        raise ApiError(400, str(exc), code="invalid") from None
    svc.store.audit(who.actor.name, who.role, "crd.order-sign", None, {"actions": len(answer["systemActions"])})
    return json_response(answer)
