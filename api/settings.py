"""Settings of the HTTP service, read once from ``TCM_*`` environment variables (pydantic at the edge).

TCM_DATABASE_URL        audit database (default ``sqlite:///var/tcm.db``; a PostgreSQL URL works too)
TCM_API_TOKENS_FILE     REST clients: hashed tokens and roles (default ``var/api-tokens.json``)
TCM_CDS_CLIENTS_FILE    CDS Hooks clients: allowed issuers and keys (default ``var/cds-clients.json``)
TCM_PUBLIC_URL          the base URL clients call; the ``aud`` of a CDS JWT must be
                        ``{TCM_PUBLIC_URL}/cds-services/{id}`` (unset: scheme and Host of each request)
TCM_MAX_BODY_BYTES      request size cap, larger bodies get 413 (default 1 MiB)
TCM_REQUEST_TIMEOUT_S   server-side limit on one engine call, 503 past it (default 10)
TCM_BODY_TIMEOUT_S      limit on reading a request body, 408 past it (default 10)
TCM_INLINE_MAX_BYTES    bodies up to this size are reviewed on the event loop, larger ones in a worker
                        thread under TCM_REQUEST_TIMEOUT_S (default 16384)
TCM_RATE_LIMIT          per-client requests per minute, per process (default 1200; 0 turns it off)
TCM_RATE_BURST          bucket size (default: a tenth of the rate, at least 20)
TCM_CORS_ORIGINS        comma-separated origins allowed by CORS (default: none; CORS off)
TCM_SPARQL_TIMEOUT_S    SPARQL time limit (default 5)
TCM_SPARQL_MAX_ROWS     SPARQL result limit (default 1000)
TCM_SPARQL_WARMUP       build the RDF graph in the background at start-up (default 1; 0: at the first query)
TCM_JWT_LEEWAY_S        clock skew allowed on exp/iat (default 60)
TCM_JWT_MAX_AGE_S       oldest iat accepted, and longest exp - iat (default 3600)
TCM_KB_POLL_S           how often a server process looks for a new knowledge-base release made by another process
                        (default 2 s; 0: never — a release made through this process is picked up at once)
TCM_ENV                 ``production`` (default) or ``development``
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from cds.learned import models_dir_from_env

VAR_DIR = Path("var")


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True)

    database_url: str = f"sqlite:///{VAR_DIR / 'tcm.db'}"
    api_tokens_file: Path = VAR_DIR / "api-tokens.json"
    cds_clients_file: Path = VAR_DIR / "cds-clients.json"
    public_url: str | None = None
    max_body_bytes: int = Field(1 << 20, ge=1024)
    request_timeout_s: float = Field(10.0, gt=0)
    body_timeout_s: float = Field(10.0, gt=0)
    inline_max_bytes: int = Field(16384, ge=0)
    rate_limit_per_min: int = Field(1200, ge=0)
    rate_burst: int | None = Field(None, ge=1)
    cors_origins: tuple[str, ...] = ()
    sparql_timeout_s: float = Field(5.0, gt=0)
    sparql_max_rows: int = Field(1000, ge=1, le=100_000)
    sparql_concurrency: int = Field(2, ge=1)
    sparql_warmup: bool = True
    jwt_leeway_s: int = Field(60, ge=0)
    jwt_max_age_s: int = Field(3600, ge=60)
    kb_poll_s: float = Field(2.0, ge=0)
    models_dir: Path | None = None  # learned models and the case base (cds.learned); None: the knowledge base alone
    environment: str = "production"

    @property
    def development(self) -> bool:
        return self.environment == "development"

    @property
    def burst(self) -> int:
        return self.rate_burst or max(20, self.rate_limit_per_min // 10)

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        origins = [o.strip() for o in _env("TCM_CORS_ORIGINS", "").split(",") if o.strip()]
        values: dict[str, object] = {
            "database_url": _env("TCM_DATABASE_URL", f"sqlite:///{VAR_DIR / 'tcm.db'}"),
            "api_tokens_file": Path(_env("TCM_API_TOKENS_FILE", str(VAR_DIR / "api-tokens.json"))),
            "cds_clients_file": Path(_env("TCM_CDS_CLIENTS_FILE", str(VAR_DIR / "cds-clients.json"))),
            "public_url": os.environ.get("TCM_PUBLIC_URL") or None,
            "max_body_bytes": int(_env("TCM_MAX_BODY_BYTES", str(1 << 20))),
            "request_timeout_s": float(_env("TCM_REQUEST_TIMEOUT_S", "10")),
            "body_timeout_s": float(_env("TCM_BODY_TIMEOUT_S", "10")),
            "inline_max_bytes": int(_env("TCM_INLINE_MAX_BYTES", "16384")),
            "rate_limit_per_min": int(_env("TCM_RATE_LIMIT", "1200")),
            "rate_burst": int(os.environ["TCM_RATE_BURST"]) if os.environ.get("TCM_RATE_BURST") else None,
            "cors_origins": tuple(origins),
            "sparql_timeout_s": float(_env("TCM_SPARQL_TIMEOUT_S", "5")),
            "sparql_max_rows": int(_env("TCM_SPARQL_MAX_ROWS", "1000")),
            "sparql_warmup": _env("TCM_SPARQL_WARMUP", "1") != "0",
            "jwt_leeway_s": int(_env("TCM_JWT_LEEWAY_S", "60")),
            "jwt_max_age_s": int(_env("TCM_JWT_MAX_AGE_S", "3600")),
            "kb_poll_s": float(_env("TCM_KB_POLL_S", "2")),
            "models_dir": models_dir_from_env(),
            "environment": _env("TCM_ENV", "production"),
        }
        values.update(overrides)
        return cls.model_validate(values)
