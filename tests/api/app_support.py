"""Shared set-up for the HTTP service tests: an app on the fixture knowledge base with a scratch database, one
REST client per role, a CDS Hooks issuer with ES384 and RS384 keys, and a JWT minter.

Imported by the ``tests/api/test_app*.py`` and ``test_cds_hooks*.py`` modules (``from tests.api.app_support
import *`` brings the fixtures in).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import kb
from api.app import create_app
from api.auth import ROLES, add_api_client, register_issuer
from api.settings import Settings

FIXTURE_KB = Path(__file__).resolve().parents[1] / "fixtures" / "kb"
ISSUER = "https://ehr.example.org"
BASE = "http://testserver"
SIGN = "tcm-rx-safety-order-sign"
SELECT = "tcm-rx-safety-order-select"
DIFF = "tcm-differentiation"


@dataclass
class Keys:
    es: Any
    rs: Any

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.es.as_dict(private=False), self.rs.as_dict(private=False)]}


@dataclass
class Env:
    """One app and the credentials to call it."""

    app: FastAPI
    client: TestClient
    dir: Path
    tokens: dict[str, str]
    keys: Keys
    settings: Settings
    extra: dict[str, Any] = field(default_factory=dict)

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def jwt(
        self,
        aud: str | None = None,
        service: str | None = SIGN,
        alg: str = "ES384",
        header: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        from joserfc import jwt

        now = int(time.time())
        base = {
            "iss": ISSUER,
            "aud": aud or f"{BASE}/cds-services" + (f"/{service}" if service else ""),
            "iat": now,
            "exp": now + 300,
            "jti": str(uuid.uuid4()),
        }
        base.update(claims)
        base = {k: v for k, v in base.items() if v is not None}
        key = self.keys.es if alg == "ES384" else self.keys.rs
        hdr = {"alg": alg, "kid": key.kid, **(header or {})}
        return jwt.encode(hdr, base, key, algorithms=[alg])

    def cds(self, service: str | None = SIGN, feedback: bool = False, **kw: Any) -> dict[str, str]:
        kw.setdefault(
            "aud",
            f"{BASE}/cds-services" + (f"/{service}" if service else "") + ("/feedback" if feedback else ""),
        )
        return {"Authorization": f"Bearer {self.jwt(**kw)}"}


_KEYS: Keys | None = None


def keys() -> Keys:
    global _KEYS
    if _KEYS is None:
        from joserfc.jwk import ECKey, RSAKey

        _KEYS = Keys(
            ECKey.generate_key("P-384", parameters={"kid": "es-1", "alg": "ES384", "use": "sig"}),
            RSAKey.generate_key(2048, parameters={"kid": "rs-1", "alg": "RS384", "use": "sig"}),
        )
    return _KEYS


_KB: kb.KnowledgeBase | None = None


def fixture_kb() -> kb.KnowledgeBase:
    global _KB
    if _KB is None:
        _KB = kb.load(FIXTURE_KB)
    return _KB


def build(
    tmp: Path,
    knowledge: Any = None,
    jwks_transport: Any = None,
    issuers: list[dict[str, Any]] | None = None,
    **overrides: Any,
) -> Env:
    tmp.mkdir(parents=True, exist_ok=True)
    tokens_file, cds_file = tmp / "api-tokens.json", tmp / "cds-clients.json"
    tokens = {role: add_api_client(tokens_file, f"client-{role}", [role]) for role in ROLES}
    k = keys()
    register_issuer(cds_file, ISSUER, jwks=k.jwks(), name="Example EHR")
    for extra in issuers or []:
        register_issuer(cds_file, **extra)
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp / 'audit.db'}",
        "api_tokens_file": tokens_file,
        "cds_clients_file": cds_file,
        "rate_limit_per_min": 0,
        "sparql_warmup": False,
    }
    values.update(overrides)
    settings = Settings(**values)
    app = create_app(
        settings,
        knowledge=knowledge if knowledge is not None else fixture_kb(),
        jwks_transport=jwks_transport,
    )
    client = TestClient(app, raise_server_exceptions=False)
    client.__enter__()
    return Env(app, client, tmp, tokens, k, settings)


def close(env: Env) -> None:
    env.client.__exit__(None, None, None)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    e = build(tmp_path_factory.mktemp("app"))
    yield e
    close(e)


@pytest.fixture
def make_env(tmp_path: Path) -> Iterator[Callable[..., Env]]:
    made: list[Env] = []

    def make(**kw: Any) -> Env:
        e = build(tmp_path / f"app{len(made)}", **kw)
        made.append(e)
        return e

    yield make
    for e in made:
        close(e)


# ---- request bodies ------------------------------------------------------------------------------------
def ingredient(herb: str, grams: float | None) -> dict[str, Any]:
    ing: dict[str, Any] = {"itemCodeableConcept": {"text": herb}}
    if grams is not None:
        ing["strength"] = {
            "numerator": {"value": grams, "unit": "g", "system": "http://unitsofmeasure.org", "code": "g"},
            "denominator": {"value": 1, "unit": "剂"},
        }
    return ing


def med_request(rid: str, herbs: list[tuple[str, float | None]], contained: bool = True) -> dict[str, Any]:
    mr: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": "draft",
        "intent": "order",
        "subject": {"reference": "Patient/p-1"},
    }
    med = {
        "resourceType": "Medication",
        "id": f"med-{rid}",
        "ingredient": [ingredient(h, g) for h, g in herbs],
    }
    if contained:
        mr["contained"] = [med]
        mr["medicationReference"] = {"reference": f"#med-{rid}"}
    else:
        mr["medicationReference"] = {"reference": f"Medication/med-{rid}"}
    return mr


def bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


def hook_request(
    hook: str, draft: dict[str, Any] | None = None, prefetch: dict[str, Any] | None = None, **context: Any
) -> dict[str, Any]:
    ctx: dict[str, Any] = {"userId": "Practitioner/example", "patientId": "p-1", **context}
    if draft is not None:
        ctx["draftOrders"] = draft
    body: dict[str, Any] = {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": ctx}
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


def _status(oid: str, loinc: str, display: str, system: str, value: str) -> dict[str, Any]:
    """A coded status Observation (pregnancy, breastfeeding) as an EMR sends it."""
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": loinc, "display": display}]},
        "valueCodeableConcept": {"coding": [{"system": system, "code": value}]},
    }


def pregnancy(pregnant: bool) -> dict[str, Any]:
    return _status(
        "preg", "82810-3", "Pregnancy status", "http://snomed.info/sct", "77386006" if pregnant else "60001007"
    )


def breastfeeding(status: bool) -> dict[str, Any]:
    return _status("bf", "63895-7", "Breastfeeding status", "http://loinc.org", "LA29252-6" if status else "LA29253-4")


def observation(code_text: str, value: str | bool | None = None, oid: str | None = None) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": oid or f"o-{uuid.uuid4().hex[:8]}",
        "status": "final",
        "code": {"text": code_text},
        "subject": {"reference": "Patient/p-1"},
    }
    if isinstance(value, bool):
        obs["valueBoolean"] = value
    elif value is not None:
        obs["valueString"] = value
    return obs


def searchset(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


def audit_rows(env: Env) -> list[dict[str, Any]]:
    from api.audit import export

    return list(export(env.app.state.tcm.engine))


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


__all__ = [
    "BASE",
    "DIFF",
    "ISSUER",
    "SELECT",
    "SIGN",
    "Env",
    "audit_rows",
    "breastfeeding",
    "build",
    "bundle",
    "close",
    "dumps",
    "env",
    "fixture_kb",
    "hook_request",
    "ingredient",
    "make_env",
    "med_request",
    "observation",
    "pregnancy",
    "searchset",
]
