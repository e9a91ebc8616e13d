"""The gateway every HTTP request passes (pure ASGI, cheap).

Request id, request size cap and body read timeout, input hash, metrics, one log line without patient
text, and the audit record — committed before the response starts, so an answered call always has its
record. An exception that escapes a route becomes a 500 here, rendered like every other error and audited.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from typing import Any

from api import errors, metrics
from api.audit import record_op, utcnow

logger = logging.getLogger("api.access")

UNAUDITED = frozenset({"/healthz", "/readyz", "/metrics", "/v1/ping", "/openapi.json"})

Scope = dict[str, Any]
Message = dict[str, Any]


class Gateway:
    def __init__(self, app: Any, services: Any):
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        services = self.services
        settings = services.settings
        start = time.perf_counter()
        rid = str(uuid.uuid4())
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        path: str = scope["path"]
        audited = path not in UNAUDITED
        cap = settings.max_body_bytes
        hasher = hashlib.sha256()
        body = {"bytes": 0, "complete": False}
        sent = {"started": False, "swallow": False, "status": 0}

        async def limited_receive() -> Message:
            try:
                async with asyncio.timeout(settings.body_timeout_s):
                    message = await receive()
            except TimeoutError:
                raise errors.BodyTimeout(
                    f"the request body did not arrive within {settings.body_timeout_s:g} s"
                ) from None
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                body["bytes"] += len(chunk)
                if body["bytes"] > cap:
                    raise errors.BodyTooLarge(f"request body over the {cap} byte limit")
                hasher.update(chunk)
                if not message.get("more_body", False):
                    body["complete"] = True
            return message

        async def guarded_send(message: Message) -> None:
            if sent["swallow"]:
                return
            if message["type"] == "http.response.start":
                status = int(message["status"])
                sent["status"] = status
                headers = list(message.get("headers", []))
                if not any(k == b"x-request-id" for k, _ in headers):
                    headers.append((b"x-request-id", rid.encode()))
                message = {**message, "headers": headers}
                route = scope.get("route")
                template = getattr(route, "path", None) or "(no route)"
                elapsed = time.perf_counter() - start
                if audited:
                    ok = await self._audit(scope, state, template, status, elapsed, hasher, body)
                    if not ok:
                        sent["swallow"] = True
                        sent["started"] = True
                        await self._send_error(
                            send, errors.Unavailable("the audit store is unavailable; retry"), path, rid
                        )
                        return
                metrics.REQUESTS.labels(scope["method"], template, str(status)).inc()
                metrics.LATENCY.labels(template).observe(elapsed)
                ident = state.get("identity")
                logger.info(
                    "%s %s %d %.1fms client=%s request=%s",
                    scope["method"],
                    template,
                    status,
                    elapsed * 1000,
                    ident.client if ident else "-",
                    rid,
                )
                sent["started"] = True
            await send(message)

        header_len = _content_length(scope)
        if header_len is not None and header_len > cap:
            await self._send_error(
                guarded_send, errors.BodyTooLarge(f"request body over the {cap} byte limit"), path, rid
            )
            return
        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception as exc:
            if sent["started"]:
                errors.log_unexpected(exc, rid)
                return
            if isinstance(exc, errors.APIError):
                err: BaseException = exc
            else:
                errors.log_unexpected(exc, rid)
                err = exc
            await self._send_error(guarded_send, err, path, rid)

    @staticmethod
    async def _send_error(send: Any, exc: BaseException, path: str, rid: str) -> None:
        resp = errors.render(exc, path, rid)
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in resp.headers.items()]
        headers.append((b"x-request-id", rid.encode()))
        await send({"type": "http.response.start", "status": resp.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": resp.body})

    async def _audit(
        self,
        scope: Scope,
        state: dict[str, Any],
        template: str,
        status: int,
        elapsed: float,
        hasher: Any,
        body: dict[str, Any],
    ) -> bool:
        info: dict[str, Any] = state.get("audit") or {}
        ident = state.get("identity")
        if body["complete"]:
            digest = hasher.hexdigest()
        elif scope["method"] == "GET":
            digest = hashlib.sha256(scope["path"].encode() + b"?" + scope.get("query_string", b"")).hexdigest()
        else:
            digest = None
        cards = info.get("cards") or []
        outcome = info.get("outcome") or ("ok" if status < 400 else f"error:{status}")
        rec = {
            "request_id": state["request_id"],
            "ts": utcnow(),
            "client": ident.client if ident else None,
            "role": ident.role if ident else None,
            "method": scope["method"],
            "route": template,
            "status": status,
            "outcome": outcome[:80],
            "service_id": info.get("service_id"),
            "hook": info.get("hook"),
            "hook_instance": info.get("hook_instance"),
            "input_sha256": digest,
            "engine_version": self.services.version,
            "kb_version": info.get("kb_version"),
            "ruleset_version": info.get("ruleset_version"),
            "models": json.dumps(info["models"]) if info.get("models") else "[]",
            "card_ids": json.dumps([c["card_uuid"] for c in cards]) if cards else "[]",
            "latency_ms": round(elapsed * 1000, 3),
        }
        t0 = time.perf_counter()
        try:
            await self.services.writer.run(record_op(rec, cards))
        except Exception as exc:
            metrics.AUDIT_FAILURES.inc()
            logger.error(
                "audit record not written (%s); answering 503 (request %s)",
                type(exc).__name__,
                rec["request_id"],
            )
            return False
        metrics.AUDIT_SECONDS.observe(time.perf_counter() - t0)
        return True


def _content_length(scope: Scope) -> int | None:
    for k, v in scope.get("headers", ()):
        if k == b"content-length":
            try:
                return int(v)
            except ValueError:
                return None
    return None
