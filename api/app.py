"""The FastAPI service hospital integrators plug into.

REST under ``/v1``, CDS Hooks 2.0 under ``/cds-services``, health, readiness, Prometheus metrics and
the OpenAPI document.

    uvicorn --factory api.app:create_app      (or ``tcm serve``, which also prepares the database and workers)

Routes are thin adapters (``api/rest.py``, ``api/cds_hooks.py``); errors become HTTP answers in one place
(``api/errors.py``); every call passes the gateway (``api/middleware.py``) that caps its size, audits it and
counts it. Settings come from ``TCM_*`` environment variables (``api/settings.py``).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from starlette.responses import Response

from api import cds_hooks, curation, errors, rest, schemas
from api.auth import CDS_CLIENT, PUBLIC, iter_routes, requires, roles_of
from api.calls import answer
from api.middleware import Gateway
from api.settings import Settings
from api.state import Services

logger = logging.getLogger(__name__)

DESCRIPTION = """Traditional Chinese Medicine clinical decision support: prescription safety review
(十八反, 十九畏, pregnancy, toxic and over-range doses …), syndrome differentiation and formula suggestion,
knowledge-base lookups and read-only SPARQL; CDS Hooks 2.0 services for EHRs. Decision support only: a
physician decides. Every answer carries the knowledge-base and rule-set versions; every call is audited
(no patient text is stored).

REST clients: `Authorization: Bearer <token>` (roles emr, curator, reviewer, researcher, monitor, admin).
CDS Hooks clients: a signed JWT (ES384 / RS384) from an allow-listed issuer, `aud` = the service URL."""

ERROR_CODES = (400, 401, 403, 404, 408, 413, 422, 429, 500, 503)
CURATION_ERROR_CODES = (*ERROR_CODES, 409, 412, 428)
CDS_ERROR_CODES = (*ERROR_CODES, 412)


def create_app(settings: Settings | None = None, *, knowledge: Any = None, jwks_transport: Any = None) -> FastAPI:
    """Build the app.

    ``knowledge``: a loaded KnowledgeBase (default: ``kb.load()``, i.e. ``$TCM_KB_DIR`` or the built-in one);
    ``jwks_transport``: an httpx transport for fetching allow-listed ``jku`` key sets (tests).
    """
    settings = settings or Settings.from_env()
    services = Services(settings, knowledge, jwks_transport)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services.writer.start()
        try:
            await anyio.to_thread.run_sync(lambda: services.kb)
            await anyio.to_thread.run_sync(lambda: services.models)
            # the knowledge base is hundreds of thousands of long-lived objects: keep the collector from rescanning
            # them on every full collection (a pause that lands on some unlucky request)
            gc.freeze()
            if settings.sparql_warmup:
                services.warm_graph()
            services.start_polling()
        except Exception as exc:  # the service still starts; /readyz says why it is not ready
            logger.error("knowledge base not loaded: %s", type(exc).__name__)
        yield
        services.close()

    app = FastAPI(
        title="TCM CDS",
        version=services.version,
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.tcm = services
    errors.install(app)
    app.include_router(rest.router)
    app.include_router(cds_hooks.router)
    app.include_router(curation.router)
    app.include_router(curation.pages)
    _ops_routes(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    if settings.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["X-Request-ID"],
        )
    app.add_middleware(Gateway, services=services)
    return app


def _ops_routes(app: FastAPI) -> None:
    @app.get(
        "/healthz",
        dependencies=[requires(PUBLIC)],
        responses={200: {"model": schemas.Status}},
        tags=["service"],
        summary="Liveness: the process answers",
    )
    async def healthz() -> Response:
        return answer({"status": "ok"})

    @app.get(
        "/readyz",
        dependencies=[requires(PUBLIC)],
        tags=["service"],
        summary="Readiness: knowledge base and database",
        responses={200: {"model": schemas.Status}, 503: {"model": schemas.Status}},
    )
    async def readyz(request: Request) -> Response:
        services: Services = request.app.state.tcm

        def probe() -> dict[str, Any]:
            from api.audit import check

            checks: dict[str, Any] = {"knowledge_base": services.kb_loaded, "database": False}
            try:
                checks["database"] = check(services.engine)
            except Exception as exc:
                checks["database_error"] = type(exc).__name__
            if services.kb_loaded:
                checks["kb_version"] = str(services.kb.version)
            return checks

        checks = await anyio.to_thread.run_sync(probe)
        ready = checks["knowledge_base"] and checks["database"]
        return answer({"status": "ok" if ready else "unavailable", "checks": checks}, 200 if ready else 503)

    @app.get(
        "/metrics",
        dependencies=[requires("monitor")],
        tags=["service"],
        summary="Prometheus metrics",
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    async def prometheus() -> Response:
        from api.metrics import exposition

        data, ctype = exposition()
        return Response(data, media_type=ctype)

    @app.get("/openapi.json", dependencies=[requires(PUBLIC)], include_in_schema=False)
    async def openapi_document(request: Request) -> Response:
        return answer(request.app.openapi())


# ---- the OpenAPI document ------------------------------------------------------------------------------
def _components(*models: type[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        out.update(schema.pop("$defs", {}))
        out[model.__name__] = schema
    return out


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    comps = doc.setdefault("components", {}).setdefault("schemas", {})
    comps["CheckIn"] = schemas.CHECK_IN
    comps.update(
        _components(
            *schemas.REQUEST_MODELS,
            schemas.Problem,
            schemas.OperationOutcome,
            schemas.SparqlOut,
            schemas.Discovery,
            schemas.CDSResponse,
            schemas.FeedbackOut,
            cds_hooks.CDSRequest,
            cds_hooks.FeedbackRequest,
        )
    )
    comps.pop("HTTPValidationError", None)
    comps.pop("ValidationError", None)
    doc["components"]["securitySchemes"] = {
        "apiToken": {
            "type": "http",
            "scheme": "bearer",
            "description": "REST client token (tcm token create)",
        },
        "cdsJWT": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "CDS Hooks client JWT: ES384/RS384, allow-listed iss, aud = the service URL",
        },
    }
    roles = {}
    for path, methods, route in iter_routes(app):
        for method in methods:
            roles[(path, method.lower())] = roles_of(route) or ()
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    outcome = {"application/fhir+json": {"schema": {"$ref": "#/components/schemas/OperationOutcome"}}}
    for path, ops in doc.get("paths", {}).items():
        cds = errors.is_cds(path)
        for method, op in ops.items():
            r = roles.get((path, method), ())
            op["x-roles"] = list(r)
            if PUBLIC not in r:
                op["security"] = [{"cdsJWT": []}] if CDS_CLIENT in r else [{"apiToken": []}]
            responses = op.setdefault("responses", {})
            codes = CDS_ERROR_CODES if cds else CURATION_ERROR_CODES if path.startswith("/v1/curation") else ERROR_CODES
            for code in codes:
                key = str(code)
                if key == "422" and cds:
                    continue
                if key not in responses or key == "422":
                    responses[key] = {"description": _reason(code), "content": outcome if cds else problem}
    cds_paths = doc["paths"]
    cds_paths["/cds-services"]["get"]["responses"]["200"] = {
        "description": "the services",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Discovery"}}},
    }
    call = cds_paths["/cds-services/{service_id}"]["post"]
    call["requestBody"] = {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CDSRequest"}}},
    }
    call["responses"]["200"] = {
        "description": "cards",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CDSResponse"}}},
    }
    fb = cds_paths["/cds-services/{service_id}/feedback"]["post"]
    fb["requestBody"] = {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/FeedbackRequest"}}},
    }
    fb["responses"]["200"] = {
        "description": "stored",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/FeedbackOut"}}},
    }
    app.openapi_schema = doc
    return doc


def _reason(code: int) -> str:
    from http import HTTPStatus

    return HTTPStatus(code).phrase
