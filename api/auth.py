"""Who may call what.

REST clients send ``Authorization: Bearer <token>``; the token file (``TCM_API_TOKENS_FILE``) keeps only each
token's SHA-256 with the client's name and roles:

    emr          POST /v1/check, /v1/differentiate, /v1/suggest; knowledge-base reads
    curator      knowledge-base reads and SPARQL
    reviewer     knowledge-base reads; the feedback and overrides clinicians gave on cards
    researcher   knowledge-base reads and SPARQL
    monitor      /metrics
    admin        everything above, and the audit trail

CDS Hooks clients (EHRs) send a signed JWT instead (CDS Hooks 2.0 §Trusting CDS Clients): ``alg`` RS384 or
ES384 only (``none`` and HMAC are refused), ``iss`` on the allow-list (``TCM_CDS_CLIENTS_FILE``) with the
issuer's public keys from a JWKS file, or from a ``jku`` URL only when that URL is allow-listed for the
issuer; ``aud`` equal to the URL of the service called; ``exp`` and ``iat`` checked with a small leeway;
a ``jti`` is accepted once.

Every route declares its roles with ``requires(...)`` (``PUBLIC`` for health, readiness, discovery of the
OpenAPI document); a test walks the routes and fails on one that declares none.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Depends, Request
from sqlalchemy.exc import IntegrityError

from api.errors import Forbidden, RateLimited, Unauthorized, Unavailable

if TYPE_CHECKING:
    from api.state import Services

logger = logging.getLogger(__name__)

PUBLIC = "public"
CDS_CLIENT = "cds-client"
ROLES = ("emr", "curator", "reviewer", "researcher", "monitor", "admin")
JWT_ALGS = ("ES384", "RS384")


@dataclass(frozen=True, slots=True)
class Identity:
    client: str
    roles: frozenset[str]
    kind: str  # token | jwt | anonymous
    role: str | None = None  # the role this call was allowed under
    tenant: str | None = None


ANONYMOUS = Identity("anonymous", frozenset(), "anonymous")


# ---- REST bearer tokens --------------------------------------------------------------------------------
def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token(prefix: str = "tcm") -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, ensure_ascii=False, indent=2)
    tmp.replace(path)


def add_api_client(path: Path, name: str, roles: list[str], token: str | None = None) -> str:
    """Register a REST client; returns its token (shown once: only the hash is kept)."""
    bad = sorted(set(roles) - set(ROLES))
    if bad or not roles:
        raise ValueError(f"unknown role(s) {bad}; roles are {', '.join(ROLES)}")
    data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"clients": []}
    if any(c.get("name") == name for c in data["clients"]):
        raise ValueError(f"a client named {name!r} exists already; revoke it first")
    token = token or new_token()
    data["clients"].append(
        {
            "name": name,
            "token_sha256": token_hash(token),
            "roles": sorted(set(roles)),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    )
    _write_json(path, data)
    return token


def revoke_api_client(path: Path, name: str) -> bool:
    data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"clients": []}
    keep = [c for c in data["clients"] if c.get("name") != name]
    if len(keep) == len(data["clients"]):
        return False
    _write_json(path, {**data, "clients": keep})
    return True


class _Watched:
    """A JSON file re-read when it changes (checked at most once a second)."""

    def __init__(self, path: Path):
        self.path = path
        self._stamp: tuple[float, int] | None = None
        self._checked = 0.0
        self._lock = threading.Lock()
        self.data: Any = None

    def current(self) -> Any:
        now = time.monotonic()
        if now - self._checked < 1.0 and self._stamp is not None:
            return self.data
        with self._lock:
            self._checked = now
            try:
                st = self.path.stat()
                stamp = (st.st_mtime, st.st_size)
            except OSError:
                stamp = (0.0, -1)
            if stamp != self._stamp:
                self._stamp = stamp
                self.data = self._load() if stamp[1] >= 0 else None
                self.loaded()
        return self.data

    def _load(self) -> Any:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            logger.error("cannot read %s: %s", self.path, type(exc).__name__)
            return None

    def loaded(self) -> None:
        pass


class TokenStore(_Watched):
    def loaded(self) -> None:
        self.by_hash: dict[str, Identity] = {}
        for c in (self.data or {}).get("clients", []):
            if c.get("disabled"):
                continue
            roles = frozenset(r for r in c.get("roles", []) if r in ROLES)
            self.by_hash[str(c.get("token_sha256", "")).lower()] = Identity(str(c.get("name")), roles, "token")

    def lookup(self, token: str) -> Identity | None:
        self.current()
        return getattr(self, "by_hash", {}).get(token_hash(token))


# ---- CDS Hooks JWT -------------------------------------------------------------------------------------
@dataclass
class Issuer:
    iss: str
    name: str
    keys: Any  # joserfc KeySet or None
    jku: tuple[str, ...] = ()
    tenant: str | None = None


class CDSClients(_Watched):
    """The issuer allow-list.

    ``{"issuers": [{"iss", "name", "jwks" | "jwks_file", "jku": [...], "tenant"}]}``
    """

    def loaded(self) -> None:
        from joserfc.jwk import KeySet

        self.issuers: dict[str, Issuer] = {}
        for entry in (self.data or {}).get("issuers", []):
            iss = entry.get("iss")
            if not isinstance(iss, str) or not iss:
                continue
            keys = None
            raw = entry.get("jwks")
            if raw is None and entry.get("jwks_file"):
                p = Path(entry["jwks_file"])
                p = p if p.is_absolute() else self.path.parent / p
                try:
                    raw = json.loads(p.read_text(encoding="utf-8"))
                except (OSError, ValueError) as exc:
                    logger.error("cannot read the JWKS of issuer %s: %s", iss, type(exc).__name__)
            if raw is not None:
                try:
                    keys = KeySet.import_key_set(_public_only(raw))  # type: ignore[arg-type]
                except Exception as exc:
                    logger.error("invalid JWKS for issuer %s: %s", iss, type(exc).__name__)
            self.issuers[iss] = Issuer(
                iss, str(entry.get("name") or iss), keys, tuple(entry.get("jku") or ()), entry.get("tenant")
            )

    def get(self, iss: str) -> Issuer | None:
        self.current()
        return getattr(self, "issuers", {}).get(iss)


def _public_only(jwks: dict[str, Any]) -> dict[str, Any]:
    private = {"d", "p", "q", "dp", "dq", "qi", "k"}
    keys = [{k: v for k, v in key.items() if k not in private} for key in jwks.get("keys", [])]
    return {"keys": [k for k in keys if k.get("kty") in ("EC", "RSA")]}


def register_issuer(
    path: Path,
    iss: str,
    jwks: dict[str, Any] | None = None,
    jwks_file: str | None = None,
    jku: list[str] | None = None,
    name: str | None = None,
    tenant: str | None = None,
) -> None:
    """Add or replace an issuer in the CDS client allow-list file."""
    data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"issuers": []}
    entry: dict[str, Any] = {"iss": iss, "name": name or iss}
    if jwks is not None:
        entry["jwks"] = _public_only(jwks)
    if jwks_file:
        entry["jwks_file"] = jwks_file
    if jku:
        entry["jku"] = list(jku)
    if tenant:
        entry["tenant"] = tenant
    data["issuers"] = [e for e in data["issuers"] if e.get("iss") != iss] + [entry]
    _write_json(path, data)


def _b64json(part: str, what: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Unauthorized(f"malformed JWT {what}") from exc
    if not isinstance(obj, dict):
        raise Unauthorized(f"malformed JWT {what}")
    return obj


@dataclass
class JWKSCache:
    """JWK Sets fetched from allow-listed ``jku`` URLs, kept for ``ttl`` seconds."""

    transport: Any = None  # an httpx transport (tests pass httpx.MockTransport)
    ttl: float = 300.0
    _cache: dict[str, tuple[float, Any]] = field(default_factory=dict)

    async def get(self, url: str) -> Any:
        import httpx
        from joserfc.jwk import KeySet

        hit = self._cache.get(url)
        if hit and time.monotonic() - hit[0] < self.ttl:
            return hit[1]
        try:
            async with httpx.AsyncClient(transport=self.transport, timeout=3.0, follow_redirects=False) as client:
                resp = await client.get(url, headers={"Accept": "application/json"})
            if resp.status_code != 200 or len(resp.content) > 256_000:
                raise ValueError(f"status {resp.status_code}")
            keys = KeySet.import_key_set(_public_only(resp.json()))  # type: ignore[arg-type]
        except Exception as exc:
            logger.warning("cannot fetch the JWK Set at an allow-listed jku: %s", type(exc).__name__)
            raise Unauthorized("the JWK Set named by jku could not be fetched") from exc
        self._cache[url] = (time.monotonic(), keys)
        return keys


async def verify_cds_jwt(services: Services, token: str, audiences: tuple[str, ...]) -> Identity:
    from joserfc import jwt
    from joserfc.errors import JoseError

    from api.audit import jti_op

    s = services.settings
    parts = token.split(".")
    if len(parts) != 3:
        raise Unauthorized("the bearer token is not a signed JWT")
    header = _b64json(parts[0], "header")
    alg = header.get("alg")
    if alg not in JWT_ALGS:
        raise Unauthorized(
            f"JWT alg {alg if isinstance(alg, str) else type(alg).__name__!s:.20} is not accepted; "
            "sign with ES384 or RS384"
        )
    if "typ" in header and header["typ"] != "JWT":
        raise Unauthorized("JWT typ must be JWT")
    claims_unverified = _b64json(parts[1], "payload")
    iss = claims_unverified.get("iss")
    issuer = services.cds_clients.get(iss) if isinstance(iss, str) else None
    if issuer is None:
        raise Unauthorized("JWT issuer is not on this service's allow-list")
    jku = header.get("jku")
    if jku is not None:
        if not isinstance(jku, str) or jku not in issuer.jku:
            raise Unauthorized("JWT jku is not on the allow-list for this issuer")
        keys = await services.jwks.get(jku)
    else:
        keys = issuer.keys
    if keys is None:
        raise Unauthorized("no public key is registered for this issuer")
    try:
        claims = jwt.decode(token, keys, algorithms=[alg]).claims
    except JoseError as exc:
        raise Unauthorized("JWT signature does not verify with the issuer's keys") from exc
    now = int(time.time())
    lee = s.jwt_leeway_s
    aud = claims.get("aud")
    auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if not any(a in audiences for a in auds if isinstance(a, str)):
        raise Unauthorized("JWT aud must be the URL of the CDS service called")
    exp, iat, jti = claims.get("exp"), claims.get("iat"), claims.get("jti")
    if not isinstance(exp, (int, float)) or isinstance(exp, bool):
        raise Unauthorized("JWT exp is missing")
    if not isinstance(iat, (int, float)) or isinstance(iat, bool):
        raise Unauthorized("JWT iat is missing")
    if exp <= now - lee:
        raise Unauthorized("JWT has expired")
    if iat > now + lee:
        raise Unauthorized("JWT iat is in the future")
    if iat < now - s.jwt_max_age_s - lee or exp - iat > s.jwt_max_age_s:
        raise Unauthorized(f"JWT lifetime too long or issued too long ago (at most {s.jwt_max_age_s} s)")
    if not isinstance(jti, str) or not jti or len(jti) > 300:
        raise Unauthorized("JWT jti is missing")
    tenant = claims.get("tenant")
    if issuer.tenant is not None and tenant != issuer.tenant:
        raise Unauthorized("JWT tenant does not match the registered tenant")
    try:
        fresh = await services.writer.run(jti_op(issuer.iss, jti, int(exp), now))
    except IntegrityError:
        fresh = False
    except Exception as exc:
        raise Unavailable("the replay store is unavailable; retry") from exc
    if not fresh:
        raise Unauthorized("JWT jti was used before (replay)")
    return Identity(
        issuer.name, frozenset({CDS_CLIENT}), "jwt", CDS_CLIENT, tenant if isinstance(tenant, str) else None
    )


# ---- the route dependency ------------------------------------------------------------------------------
def _bearer(request: Request) -> str | None:
    h = request.headers.get("authorization")
    if not h:
        return None
    scheme, _, value = h.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthorized("use Authorization: Bearer <token>")
    return value.strip()


def base_url(request: Request, services: Services) -> str:
    if services.settings.public_url:
        return services.settings.public_url.rstrip("/")
    return f"{request.url.scheme}://{request.url.netloc}"


class Requires:
    """A route's access rule: ``Requires(("emr",))``; ``Requires((PUBLIC,))`` for open routes."""

    def __init__(self, roles: tuple[str, ...]):
        unknown = set(roles) - {*ROLES, PUBLIC, CDS_CLIENT}
        if unknown or not roles:
            raise ValueError(f"unknown roles {sorted(unknown)}")
        self.roles = roles

    def __repr__(self) -> str:
        return f"Requires{self.roles}"

    async def __call__(self, request: Request) -> Identity:
        services: Services = request.app.state.tcm
        state = request.scope.setdefault("state", {})
        if PUBLIC in self.roles:
            state["identity"] = ANONYMOUS
            return ANONYMOUS
        token = _bearer(request)
        client_ip = request.client.host if request.client else "?"
        if token is None:
            self._limit(services, f"ip:{client_ip}")
            raise Unauthorized("this route needs a bearer token")
        if CDS_CLIENT in self.roles:
            base = base_url(request, services)
            path = request.url.path
            auds: tuple[str, ...] = (base + path,)
            if path.endswith("/feedback"):
                auds += (base + path[: -len("/feedback")],)
            try:
                ident = await verify_cds_jwt(services, token, auds)
            except Unauthorized:
                self._limit(services, f"ip:{client_ip}")
                raise
        else:
            found = services.tokens.lookup(token)
            if found is None:
                self._limit(services, f"ip:{client_ip}")
                raise Unauthorized("unknown or revoked token")
            allowed = [r for r in self.roles if r in found.roles] or (["admin"] if "admin" in found.roles else [])
            if not allowed:
                state["identity"] = found
                raise Forbidden(f"this route needs the role {' or '.join(self.roles)}")
            ident = Identity(found.client, found.roles, "token", allowed[0])
        state["identity"] = ident
        self._limit(services, f"client:{ident.client}")
        return ident

    @staticmethod
    def _limit(services: Services, key: str) -> None:
        wait = services.limiter.hit(key)
        if wait > 0:
            raise RateLimited(wait)


def requires(*roles: str) -> Any:
    """The dependency to put in a route's ``dependencies``: ``dependencies=[requires("emr")]``."""
    return Depends(Requires(tuple(roles)))


def iter_routes(app: Any) -> Any:
    """(path, methods, route) of every route the app serves, routers included (their prefix applied)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI versions that flatten included routers into app.routes
        for route in app.routes:
            yield getattr(route, "path", ""), set(getattr(route, "methods", None) or ()), route
        return
    for ctx in iter_route_contexts(app.routes):
        yield ctx.path or "", set(ctx.methods or ()), ctx.original_route


def roles_of(route: Any) -> tuple[str, ...] | None:
    """The roles a route declares (None when it declares none)."""
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return None
    for dep in dependant.dependencies:
        if isinstance(dep.call, Requires):
            return dep.call.roles
    return None
