"""The FastAPI application: routers, error handling (every error an OperationOutcome, never a bare 500), the
request size limit, and the OAuth2 token endpoint."""

from __future__ import annotations

import gc
import logging
from contextlib import asynccontextmanager

import orjson
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from priorauth import __version__
from priorauth.policies import default_policy, load_policy
from priorauth.service.auth import OAuthError, TokenIssuer, TokenLimiter, parse_token_request
from priorauth.service.core import AuthorizationService
from priorauth.service.errors import FHIR_JSON, ApiError, issue_code, operation_outcome
from priorauth.service.settings import ServiceSettings
from priorauth.store import Store

__all__ = ["create_app", "app_from_env"]

log = logging.getLogger("priorauth.service")


def _outcome_response(status: int, outcome: dict, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(outcome), status_code=status, media_type=FHIR_JSON, headers=headers)


def _route(request: Request) -> str:
    """The route's path template for a log line (never the request's own path, which may carry ids)."""
    route = request.scope.get("route")
    return route.path if route is not None else "(no route)"


def _field(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    where = loc[0] if loc else ""
    name = ".".join(parts) or where
    return f"{where}:{name}" if where in ("query", "path", "header") else name


class BodyLimit:
    """Refuse a request body larger than ``limit`` bytes with 413 (by Content-Length, or while it streams)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or ()).get(b"content-length")

        def too_big(*args):
            return _outcome_response(413, operation_outcome([(
                "too-costly", f"the request body is larger than the {self.limit} bytes a request may be",
                None)]))(*args)

        if declared is not None:
            try:
                if int(declared) > self.limit:
                    return await too_big(scope, receive, send)
            except ValueError:
                bad = _outcome_response(400, operation_outcome([("structure", "Content-Length is not a number",
                                                                  None)]))
                return await bad(scope, receive, send)
        seen = 0
        started = exceeded = False

        async def limited_receive():
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    exceeded = True
                    raise _TooLarge()
            return message

        async def tracking_send(message):
            nonlocal started
            if exceeded:
                # the app caught _TooLarge (FastAPI's JSON body parsing does, answering 400): the answer is 413
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await too_big(scope, receive, send)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await too_big(scope, receive, send)


class _TooLarge(Exception):
    pass


def create_app(settings: ServiceSettings, store: Store | None = None) -> FastAPI:
    store = store or Store(settings.database_url)
    store.migrate()
    revision = store.schema_revision()
    policy = load_policy(settings.policy_path) if settings.policy_path else default_policy()
    service = AuthorizationService(settings, store, policy)
    tokens = TokenIssuer(settings, store)
    token_limiter = TokenLimiter(settings)
    extra_startup = []

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # the threads that run the blocking work (evaluation, the store): a few, since they share one GIL;
        # dozens only take turns at it while holding database locks
        import anyio.to_thread

        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.threads
        for hook in extra_startup:
            hook(app)
        try:
            yield
        finally:
            for stop in getattr(app.state, "on_stop", []):
                stop()

    app = FastAPI(title="priorauth", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Payer-side prior authorization: Da Vinci PAS, CRD and DTR for providers; the "
                              "review queue and decisions for the plan's reviewers. Recommendations only: every "
                              "request is pended for committee review and no denial is final without a "
                              "clinician's decision.")
    app.state.settings = settings
    app.state.store = store
    app.state.service = service
    app.state.tokens = tokens
    app.state.on_stop = []
    app.state.startup = extra_startup

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return _outcome_response(exc.status, exc.outcome, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        issues = []
        for e in exc.errors():
            loc = tuple(e.get("loc") or ())
            msg = e.get("msg", "invalid")
            if e.get("type") == "json_invalid":
                # a syntax error is a 400 like any other unreadable body; its loc is a character position, not
                # an element, so it names none
                at = f" (at character {loc[1]})" if len(loc) > 1 and isinstance(loc[1], int) else ""
                issues.append(("structure", f"the body is not valid JSON{at}", None))
                continue
            issues.append(("value" if loc and loc[0] != "body" else "invalid", msg, _field(loc)))
        return _outcome_response(422 if any(i[2] and not i[2].startswith(("query:", "path:", "header:"))
                                            for i in issues) else 400, operation_outcome(issues))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else "the request cannot be served"
        if exc.status_code == 404:
            detail = f"no such endpoint: {request.method} {request.url.path[:200]}"
        return _outcome_response(exc.status_code, operation_outcome([(issue_code(exc.status_code), detail, None)]),
                                 dict(exc.headers or {}))

    @app.exception_handler(OperationalError)
    async def database_unavailable(request: Request, exc: OperationalError):
        # the database did not answer or dropped the connection (the pool discards it); nothing was acknowledged
        log.warning("database unavailable (%s) on %s %s", type(exc.orig).__name__, request.method, _route(request))
        return _outcome_response(503, operation_outcome([(
            "transient", "the store is unavailable; nothing was recorded, send the request again", None)]),
            {"Retry-After": "5"})

    @app.exception_handler(DataError)
    async def data_error(request: Request, exc: DataError):
        # a value from the request the database will not store (PostgreSQL: longer than its column, or a NUL
        # character); nothing was written (the transaction rolled back). No value in the log: it may be patient data
        log.warning("the database refused a value (%s) on %s %s", type(exc.orig).__name__, request.method,
                    _route(request))
        return _outcome_response(400, operation_outcome([(
            "value", "a value in the request cannot be stored: it is longer than its element allows or holds a "
                     "character the database refuses (such as NUL)", None)]))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        # no request content and no exception message in the log: either may carry patient data
        log.error("unexpected %s on %s %s", type(exc).__name__, request.method, _route(request))
        return _outcome_response(500, operation_outcome([("exception", "the server could not complete the request; "
                                                          "it has been logged", None)]))

    @app.get("/health", tags=["Service"], summary="Liveness and database reachability (no token)")
    def health():
        try:
            store.ping()
        except Exception as exc:  # noqa: BLE001 - any database failure is reported, not raised
            return JSONResponse({"status": "unavailable", "database": type(exc).__name__}, 503)
        return JSONResponse({"status": "ok", "version": __version__, "schema": revision,
                             "policy": {"id": policy.id, "version": policy.version}})

    @app.post("/oauth/token", tags=["Service"], summary="OAuth2 client-credentials token",
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/x-www-form-urlencoded": {"schema": {
                      "type": "object", "required": ["grant_type"],
                      "properties": {"grant_type": {"type": "string", "enum": ["client_credentials"]},
                                     "client_id": {"type": "string"}, "client_secret": {"type": "string"},
                                     "scope": {"type": "string"}}}}}}})
    async def token(request: Request):
        headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
        try:
            client_id, secret, _scope = parse_token_request(await request.body(),
                                                            request.headers.get("content-type", ""),
                                                            request.headers.get("authorization"))
            token_limiter.check(client_id, request.client.host if request.client else "unknown")
            body = await run_in_threadpool(tokens.issue, client_id, secret)
        except OAuthError as err:
            if err.status == 401:
                headers["WWW-Authenticate"] = 'Basic realm="priorauth"'
            if err.retry_after is not None:
                headers["Retry-After"] = str(err.retry_after)
            return JSONResponse(err.body(), err.status, headers=headers)
        return JSONResponse(body, headers=headers)

    _offline_docs(app)

    from priorauth.service import cds, console, fhir_api, reports, review_api
    from priorauth.service import subscriptions

    app.include_router(fhir_api.router)
    app.include_router(cds.router)
    app.include_router(review_api.router)
    app.include_router(review_api.admin)
    app.include_router(reports.router)
    app.include_router(subscriptions.router)
    app.include_router(console.router)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    subscriptions.install(app)
    return app


def _offline_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc``, their assets served from the fastapi-offline package, so the pages
    work with no internet (no CDN)."""
    from importlib.resources import files

    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles

    app.mount("/docs-assets", StaticFiles(directory=str(files("fastapi_offline") / "static")), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs():
        return get_swagger_ui_html(openapi_url=app.openapi_url, title="priorauth API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon.png")

    @app.get("/redoc", include_in_schema=False)
    def redoc():
        return get_redoc_html(openapi_url=app.openapi_url, title="priorauth API",
                              redoc_js_url="/docs-assets/redoc.standalone.js",
                              redoc_favicon_url="/docs-assets/favicon.png", with_google_fonts=False)


def app_from_env() -> FastAPI:
    """The application as ``priorauth serve`` configures it for its workers (from ``PRIORAUTH_*`` variables)."""
    from priorauth.service.settings import settings_from_env

    app = create_app(settings_from_env())
    # what the worker loaded (the policy, the terminology, the libraries: some 130,000 objects) lives as long as
    # the process; left to the cyclic garbage collector, each full collection walks it all, a pause of some
    # 50 ms in which no request moves. Frozen, the collector looks only at what requests create.
    gc.collect()
    gc.freeze()
    return app
