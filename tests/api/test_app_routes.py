"""Every route declares who may call it, and the OpenAPI document says so."""

from __future__ import annotations

from fastapi.routing import APIRoute

from api.auth import CDS_CLIENT, PUBLIC, ROLES, iter_routes, roles_of
from tests.api.app_support import *  # noqa: F403
from tests.api.app_support import Env

PUBLIC_ROUTES = {
    "/healthz",
    "/readyz",
    "/v1/version",
    "/openapi.json",
    "/curate",
    "/curate/static/{name}",
}  # page: data needs a token


def test_every_route_declares_its_roles(env: Env) -> None:
    seen = 0
    for path, methods, route in iter_routes(env.app):
        assert isinstance(route, APIRoute), f"{route!r} is not an APIRoute and cannot declare a role"
        roles = roles_of(route)
        assert roles, f"{path} {sorted(methods)} declares no role (add dependencies=[requires(...)])"
        assert set(roles) <= {*ROLES, PUBLIC, CDS_CLIENT}
        if PUBLIC in roles:
            assert path in PUBLIC_ROUTES, f"{path} is public; is that intended?"
        if path.startswith("/cds-services"):
            assert roles == (CDS_CLIENT,)
        seen += 1
    assert seen >= 20


def test_openapi_document_lists_roles_and_errors(env: Env) -> None:
    doc = env.client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["x-roles"], (method, path)
            codes = set(op["responses"])
            assert {"400", "401", "413", "429", "500", "503"} <= codes, (method, path)
            assert "200" in codes or "201" in codes, (method, path)
            if path.startswith("/v1/curation"):
                assert {"409", "412"} <= codes, (method, path)
            if path.startswith("/cds-services/{service_id}") and not path.endswith("feedback"):
                assert "412" in codes
    schemas = doc["components"]["schemas"]
    assert {"Problem", "OperationOutcome", "CDSRequest", "CheckIn", "FindingsIn", "Card"} <= set(schemas)


def test_the_role_check_catches_a_route_without_roles() -> None:
    from fastapi import FastAPI

    from api.auth import requires

    app = FastAPI()

    @app.get("/open")
    async def open_route() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/guarded", dependencies=[requires("admin")])
    async def guarded() -> dict[str, bool]:
        return {"ok": True}

    declared = {path: roles_of(route) for path, _, route in iter_routes(app) if path in ("/open", "/guarded")}
    assert declared == {"/open": None, "/guarded": ("admin",)}
