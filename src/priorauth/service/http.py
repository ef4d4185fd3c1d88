"""Request and response plumbing shared by the routers: JSON bodies read with their errors named, FHIR JSON
responses, the caller's token checked for a role."""

from __future__ import annotations

import json
from typing import Any, Callable

import orjson
from fastapi import Depends, Request
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from priorauth.service.auth import Principal
from priorauth.service.errors import FHIR_JSON, ApiError

__all__ = ["fhir_response", "json_response", "read_resource", "caller", "FHIR_BODY", "service_of"]

_JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")

# the OpenAPI description of a FHIR resource body (validated by the service, not by FastAPI)
FHIR_BODY = {"requestBody": {"required": True, "content": {
    t: {"schema": {"type": "object", "properties": {"resourceType": {"type": "string"}},
                   "required": ["resourceType"]}} for t in ("application/fhir+json", "application/json")}}}

_bearer = HTTPBearer(auto_error=False, description="An access token from POST /oauth/token")


def service_of(request: Request):
    return request.app.state.service


def fhir_response(resource: dict, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(resource), status_code=status, media_type=FHIR_JSON, headers=headers)


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


async def read_resource(request: Request, resource_type: str | tuple[str, ...]) -> tuple[dict, str]:
    """The request body as a FHIR resource of ``resource_type`` and its text, or a 4xx naming the problem."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in _JSON_TYPES:
        raise ApiError(415, f"Content-Type must be application/fhir+json (got {ctype or 'none'})", code="not-supported")
    raw = await request.body()
    if not raw.strip():
        raise ApiError(400, "the request has no body; send a FHIR resource", code="required")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"the body is not UTF-8 (byte {exc.start})", code="structure") from None
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        try:
            json.loads(text)
            msg = "the body is not valid JSON"
        except json.JSONDecodeError as exc:
            msg = f"the body is not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        except RecursionError:
            msg = "the body is not valid JSON: nested too deeply"
        except ValueError:                      # such as a number of more than 4300 digits
            msg = "the body is not valid JSON: a number is too long"
        raise ApiError(400, msg, code="structure") from None
    wanted = (resource_type,) if isinstance(resource_type, str) else resource_type
    if not isinstance(data, dict):
        raise ApiError(400, f"the body is JSON but not a FHIR resource; expected a {' or '.join(wanted)}",
                       code="structure")
    rt = data.get("resourceType")
    if rt not in wanted:
        shown = repr(rt) if isinstance(rt, str) and len(rt) < 64 else "missing or not a string"
        raise ApiError(400, f"resourceType is {shown}; this operation takes a {' or '.join(wanted)}",
                       "resourceType", code="structure")
    problem = _unstorable(data, rt, nul_possible=b"\\u0000" in raw)
    if problem is not None:
        raise ApiError(400, problem[1], problem[0], code="structure" if "nested" in problem[1] else "value")
    return data, text


# deeper than any FHIR resource nests (and well inside what orjson writes back: 254 levels)
MAX_DEPTH = 100


def _unstorable(data: dict, root: str, nul_possible: bool = True) -> tuple[str, str] | None:
    """``(element, problem)`` for the first element a resource may not carry: nesting deeper than ``MAX_DEPTH``,
    or a NUL character in a string or key (FHIR strings carry no control characters but tab, CR and LF, and
    PostgreSQL cannot store NUL in text). JSON writes a NUL in a string only as the escape ``\\u0000``: a body
    without that text (``nul_possible`` False) has none, and only its depth is measured (the element is then
    found by the full walk, when it is too deep)."""
    if not nul_possible and not _deeper_than(data, MAX_DEPTH):
        return None
    stack: list[tuple[Any, tuple, int]] = [(data, (), 0)]
    while stack:
        node, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            return _fhirpath(root, path[:8]), f"the resource is nested more than {MAX_DEPTH} levels deep"
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for k, v in items:
            if k.__class__ is str and "\x00" in k:
                return _fhirpath(root, path), "a key holds a NUL character (U+0000)"
            if v.__class__ is str:
                if "\x00" in v:
                    return _fhirpath(root, path + (k,)), "the value holds a NUL character (U+0000)"
            elif isinstance(v, (dict, list)):
                stack.append((v, path + (k,), depth + 1))
    return None


def _deeper_than(data: Any, limit: int) -> bool:
    """Whether objects and arrays nest more than ``limit`` levels (level by level, no paths kept)."""
    level, depth = [data], 0
    while level:
        if depth > limit:
            return True
        below = []
        for node in level:
            for v in node.values() if node.__class__ is dict else node:
                if v.__class__ is dict or v.__class__ is list:
                    below.append(v)
        level, depth = below, depth + 1
    return False


def _fhirpath(root: str, path: tuple) -> str:
    return root + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def caller(*roles: str) -> Callable[..., Principal]:
    """A dependency: the caller, whose bearer token must carry one of ``roles`` (an admin only where named)."""

    # async: the check is a little CPU (an HS256 signature), not worth a hop to the thread pool
    async def dependency(request: Request,
                         credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Principal:
        header = request.headers.get("authorization")
        return request.app.state.tokens.principal(header, roles)

    return dependency
