"""Errors -> HTTP, in one place.

The engine's errors (``kb.errors``) and the service's own, each with its status code:

    TCMError                                   500  (anything the engine raises on purpose and is not below)
    ├── ContentError                           500  the knowledge base is broken (details go to the log only)
    ├── ArtifactError                          500  a model artifact is missing or corrupt
    ├── UnknownEntityError / UnknownHerbError  404  with the closest names as ``candidates``
    ├── QueryError                             400  malformed, updating, federated or over-limit SPARQL
    ├── RDFError                               400
    ├── InputError                             422  on REST routes; 400 on CDS Hooks routes (invalid FHIR)
    ├── CurationError                          409  a curation step that cannot be taken now (with problems)
    │   ├── StaleError                         412  the edit's etag / revision is out of date (current one given)
    │   ├── NotPermittedError                  403  e.g. approving one's own change request
    │   ├── PreconditionRequiredError          428  an edit without If-Match
    │   └── CurationInputError                 422  a malformed change request (every problem listed)
    └── APIError (this module)
        ├── BadRequest                         400  not JSON, wrong content type
        ├── Unauthorized                       401  no or bad credentials (WWW-Authenticate: Bearer)
        ├── Forbidden                          403  authenticated, but the route needs another role
        ├── NotFound                           404  no such route or service
        ├── MethodNotAllowed                   405
        ├── BodyTimeout                        408  the body did not arrive in time
        ├── PreconditionFailed                 412  CDS Hooks: a required prefetch key is missing
        ├── BodyTooLarge                       413
        ├── RateLimited                        429  with Retry-After
        └── Unavailable                        503  engine over its time limit, audit store down, not ready
    any other exception                        500  logged as type and place; the answer names the request

REST routes answer errors as RFC 9457 ``application/problem+json``; CDS Hooks routes as a FHIR
``OperationOutcome`` (``application/fhir+json``). Neither carries a stack trace, and quoted text from the
request is withheld, so a patient's words never come back in an error or go to a log.
"""

from __future__ import annotations

import logging
import re
import traceback
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from kb.errors import (
    ArtifactError,
    ContentError,
    CurationError,
    CurationInputError,
    InputError,
    NotPermittedError,
    PreconditionRequiredError,
    QueryError,
    RDFError,
    StaleError,
    TCMError,
    UnknownEntityError,
)

logger = logging.getLogger(__name__)

PROBLEM = "application/problem+json"
FHIR_JSON = "application/fhir+json"
PROBLEM_BASE = "https://tcm-cds.org/problems/"


class APIError(TCMError):
    status = 500
    slug = "error"
    fhir_code = "exception"

    def __init__(self, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.headers = headers or {}


class BadRequest(APIError, ValueError):
    status, slug, fhir_code = 400, "bad-request", "structure"


class Unauthorized(APIError, PermissionError):
    status, slug, fhir_code = 401, "unauthorized", "login"

    def __init__(self, message: str):
        super().__init__(message, {"WWW-Authenticate": 'Bearer realm="tcm-cds"'})


class Forbidden(APIError, PermissionError):
    status, slug, fhir_code = 403, "forbidden", "forbidden"


class NotFound(APIError, LookupError):
    status, slug, fhir_code = 404, "not-found", "not-found"


class MethodNotAllowed(APIError):
    status, slug, fhir_code = 405, "method-not-allowed", "not-supported"


class BodyTimeout(APIError, TimeoutError):
    status, slug, fhir_code = 408, "body-timeout", "timeout"


class PreconditionFailed(APIError):
    status, slug, fhir_code = 412, "prefetch-missing", "required"


class BodyTooLarge(APIError, ValueError):
    status, slug, fhir_code = 413, "too-large", "too-costly"


class RateLimited(APIError):
    status, slug, fhir_code = 429, "rate-limited", "throttled"

    def __init__(self, retry_after: float):
        seconds = max(1, int(retry_after + 0.999))
        super().__init__(f"rate limit exceeded; retry after {seconds} s", {"Retry-After": str(seconds)})


class Unavailable(APIError):
    status, slug, fhir_code = 503, "unavailable", "transient"


# ---- the mapping ---------------------------------------------------------------------------------------
_CURATION = (
    (StaleError, 412, "precondition-failed"),
    (PreconditionRequiredError, 428, "precondition-required"),
    (NotPermittedError, 403, "forbidden"),
    (CurationInputError, 422, "invalid-input"),
    (CurationError, 409, "conflict"),
)


def status_of(exc: BaseException, cds: bool = False) -> tuple[int, str, str]:
    """(HTTP status, problem slug, FHIR issue code) of an exception."""
    if isinstance(exc, APIError):
        return exc.status, exc.slug, exc.fhir_code
    if isinstance(exc, CurationError):
        for cls, status, slug in _CURATION:
            if isinstance(exc, cls):
                return status, slug, "conflict" if status in (409, 412) else "invalid"
    if isinstance(exc, UnknownEntityError):
        return 404, "unknown-entity", "not-found"
    if isinstance(exc, QueryError):
        return 400, "bad-query", "invalid"
    if isinstance(exc, RDFError):
        return 400, "bad-rdf", "invalid"
    if isinstance(exc, InputError):
        return (400 if cds else 422), "invalid-input", "invalid"
    if isinstance(exc, (ContentError, ArtifactError)):
        return 500, "engine-content", "exception"
    return 500, "internal", "exception"


_QUOTED = re.compile(r"'[^'\n]*'|\"[^\"\n]*\"")
_UNRECOGNISED = re.compile(r"\s*\(unrecognised: [^)]*\)")


def redact(message: str) -> str:
    """Withhold text the caller wrote (quoted values, unrecognised terms); keep the field and the reason."""
    return _QUOTED.sub("'…'", _UNRECOGNISED.sub("", message))[:1000]


def message_of(exc: BaseException, status: int) -> str:
    if status >= 500 and not isinstance(exc, APIError):
        return "internal error; the service log has the details under this request id"
    if isinstance(exc, UnknownEntityError):
        return f"unknown {exc.kind}"
    if isinstance(exc, InputError) and exc.where:
        text = str(exc)
        text = text[len(exc.where) + 2 :] if text.startswith(exc.where + ": ") else text
        return redact(text)
    if isinstance(exc, (APIError, CurationError)):  # curation messages name knowledge, never a patient
        return str(exc)
    return redact(str(exc))


def is_cds(path: str) -> bool:
    return path == "/cds-services" or path.startswith("/cds-services/")


def json_bytes(obj: Any) -> bytes:
    """Compact UTF-8 JSON. orjson (Rust) writes a review answer ~6x faster than the standard library, which is
    a measurable share of a /v1/check call; it writes NaN as null (the engine produces none)."""
    return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)


def operation_outcome(detail: str, code: str, where: str | None = None, severity: str = "error") -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": detail}
    if where:
        issue["expression"] = [where]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def render(exc: BaseException, path: str, request_id: str | None) -> Response:
    """The one response for an error on ``path``."""
    cds = is_cds(path)
    status, slug, fhir_code = status_of(exc, cds)
    detail = message_of(exc, status)
    where = exc.where if isinstance(exc, InputError) else None
    headers = dict(exc.headers) if isinstance(exc, APIError) else {}
    if cds:
        body = operation_outcome(detail, fhir_code, where)
        if request_id:
            body["id"] = request_id
        return Response(json_bytes(body), status, headers=headers, media_type=FHIR_JSON)
    problem: dict[str, Any] = {
        "type": PROBLEM_BASE + slug,
        "title": slug.replace("-", " "),
        "status": status,
        "detail": detail,
    }
    if where:
        problem["where"] = where
    if isinstance(exc, UnknownEntityError) and exc.candidates:
        problem["candidates"] = list(exc.candidates)
    if isinstance(exc, CurationError):
        if exc.problems:
            problem["problems"] = exc.problems[:200]
        problem.update({k: v for k, v in exc.details.items() if k not in problem})
        if "current_etag" in exc.details:
            headers.setdefault("ETag", f'"{exc.details["current_etag"]}"')
    if request_id:
        problem["request_id"] = request_id
    return Response(json_bytes(problem), status, headers=headers, media_type=PROBLEM)


def log_unexpected(exc: BaseException, request_id: str | None) -> None:
    """Type and innermost place of an unexpected error, never its message (it may quote the request)."""
    frames = traceback.extract_tb(exc.__traceback__)
    place = f"{frames[-1].filename}:{frames[-1].lineno} in {frames[-1].name}" if frames else "?"
    logger.error("internal error %s at %s (request %s)", type(exc).__name__, place, request_id)


def request_id_of(request: Request) -> str | None:
    return request.scope.get("state", {}).get("request_id")


# ---- handlers ------------------------------------------------------------------------------------------
def install(app: FastAPI) -> None:
    async def on_tcm_error(request: Request, exc: Exception) -> Response:
        rid = request_id_of(request)
        status, _, _ = status_of(exc, is_cds(request.url.path))
        if isinstance(exc, ContentError):
            logger.error("knowledge base invalid: %d problem(s) (request %s)", len(exc.problems), rid)
        elif status >= 500 and not isinstance(exc, APIError):
            log_unexpected(exc, rid)
        return render(exc, request.url.path, rid)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errs = exc.errors()
        first = errs[0] if errs else {}
        loc = ".".join(str(x) for x in first.get("loc", ()) if x not in ("body",))
        err = InputError(str(first.get("msg", "invalid request")), loc or None)
        return render(err, request.url.path, request_id_of(request))

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        mapped: APIError
        if exc.status_code == 404:
            mapped = NotFound("no such route")
        elif exc.status_code == 405:
            mapped = MethodNotAllowed("method not allowed on this route")
        else:
            mapped = APIError(str(exc.detail))
            mapped.status = exc.status_code
        return render(mapped, request.url.path, request_id_of(request))

    app.add_exception_handler(TCMError, on_tcm_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
