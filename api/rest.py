"""REST under ``/v1``: thin adapters — parse, call one ``cds`` / ``kb`` function in a worker thread, render.

POST /v1/check            emr         a prescription (or FHIR MedicationRequest / Bundle) -> review (+ cards)
POST /v1/differentiate    emr         findings -> ranked syndromes with evidence
POST /v1/suggest          emr         findings -> syndromes and safety-checked formulas
GET  /v1/herbs/{id}       kb readers  a herb by id or any name (炙甘草, 國老 …); /v1/herbs?q= searches
GET  /v1/formulas/{id}    kb readers  likewise for formulas and syndromes
GET  /v1/syndromes/{id}
GET|POST /v1/sparql       curator, researcher   read-only SPARQL with time and row limits
GET  /v1/version          public      engine, knowledge-base, rule-set and model versions
GET  /v1/ping             any role    a hello-world route (the load benchmark's baseline); not audited
GET  /v1/audit            admin       the audit trail (JSON; ``tcm audit export`` for files)
GET  /v1/feedback         reviewer    feedback and overrides on CDS cards, with the card they answer
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from api import schemas
from api.auth import PUBLIC, ROLES, requires
from api.calls import answer, note_audit, read_json, run, run_sized
from api.errors import BadRequest
from kb.errors import InputError

KB_READERS = ("emr", "curator", "reviewer", "researcher")
router = APIRouter(prefix="/v1")


def body(name: str, description: str) -> dict[str, Any]:
    """openapi_extra for a JSON request body read by hand (the engine validates it)."""
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}},
        }
    }


def ok(model: type[Any]) -> dict[int | str, dict[str, Any]]:
    return {200: {"model": model}}


# ---- clinical ------------------------------------------------------------------------------------------
def _check(services: Any, raw: Any, with_cards: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from cds.review import review

    rv = review(raw, services.kb)
    out = rv.as_dict()
    cards: list[dict[str, Any]] = []
    if with_cards:
        from cds.cards import review_cards

        cards = review_cards(rv)
        out["cards"] = cards
    return out, cards


@router.post(
    "/check",
    dependencies=[requires("emr")],
    responses=ok(schemas.ReviewOut),
    tags=["clinical"],
    summary="Safety-review a prescription",
    openapi_extra={
        **body("CheckIn", "a prescription, or a FHIR MedicationRequest / Bundle"),
        "parameters": [
            {
                "name": "cards",
                "in": "query",
                "required": False,
                "description": "add CDS Hooks cards",
                "schema": {"type": "boolean", "default": False},
            }
        ],
    },
)
async def check(request: Request) -> Response:
    # the one query parameter is read by hand: FastAPI's parameter machinery costs more than the review
    flag = request.query_params.get("cards", "false").lower()
    if flag not in ("true", "false", "1", "0"):
        raise InputError("expected true or false", "cards")
    cards = flag in ("true", "1")
    raw = await read_json(request)
    size = len(await request.body())
    out, card_list = await run_sized(request, size, _check, request.app.state.tcm, raw, cards)
    note_audit(
        request,
        kb_version=out["kb_version"],
        ruleset_version=out["ruleset_version"],
        outcome=f"findings:{len(out['findings'])}",
        cards=[
            {
                "card_uuid": c["uuid"],
                "service_id": "rest:check",
                "indicator": c["indicator"],
                "topic": str(c["source"].get("topic", {}).get("display", "")),
                "suggestion_ids": "[]",
            }
            for c in card_list
        ],
    )
    return answer(out)


def _clinical(fn_name: str) -> Any:
    async def route(request: Request) -> Response:
        raw = await read_json(request)
        if fn_name == "differentiate":
            from cds.differentiate import differentiate as fn
        else:
            from cds.suggest import suggest as fn
        services = request.app.state.tcm
        out = await run(request, lambda: fn(raw, services.kb, models=services.models))
        note_audit(
            request,
            kb_version=out["kb_version"],
            ruleset_version=out["ruleset_version"],
            models=out.get("models_used", []),
            outcome=f"differentials:{len(out['differentials'])}",
        )
        return answer(out)

    route.__name__ = fn_name
    return route


router.add_api_route(
    "/differentiate",
    _clinical("differentiate"),
    methods=["POST"],
    dependencies=[requires("emr")],
    responses=ok(schemas.DifferentiationOut),
    tags=["clinical"],
    summary="Rank syndromes (辨证)",
    openapi_extra=body("FindingsIn", "the patient's findings"),
)
router.add_api_route(
    "/suggest",
    _clinical("suggest"),
    methods=["POST"],
    dependencies=[requires("emr")],
    responses=ok(schemas.SuggestionOut),
    tags=["clinical"],
    summary="Differentiate, then suggest safe formulas",
    openapi_extra=body("FindingsIn", "the patient's findings"),
)


# ---- knowledge base ------------------------------------------------------------------------------------
def _src(s: Any) -> dict[str, Any] | None:
    return s.as_dict() if s is not None else None


def _safety(s: Any) -> dict[str, Any]:
    return {
        "dose_g": s.dose_dict(),
        "toxicity": s.toxicity,
        "toxicity_code": s.toxicity_code,
        "pregnancy": s.pregnancy,
        "pregnancy_code": s.pregnancy_code,
        "preparation": s.preparation,
        "internal_use": s.internal_use,
        "controlled": s.controlled,
        "populations": list(s.populations),
        "cautions": list(s.cautions),
    }


def _ingredient(kb: Any, i: Any) -> dict[str, Any]:
    return {
        "herb_id": i.herb_id,
        "herb": kb.herbs[i.herb_id].name,
        "form_id": i.form_id,
        "written": i.written,
        "dose_g": i.dose_g,
        "dose_derived": i.dose_derived,
        "amount": i.amount,
        "role": i.role,
        "note": i.note,
    }


def _substitutes(kb: Any, subs: dict[str, Any], i: Any) -> list[dict[str, str]]:
    """The recorded modern substitutes that may stand for this ingredient in its formula (党参 for 人参)."""
    return [{"herb": kb.herbs[x.substitute_id].name, "substitution": x.id} for x in subs.get(i.herb_id, ())]


def render_entity(kb: Any, kind: str, e: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"id": e.id, "name": e.name, "kind": kind, "aliases": list(e.aliases)}
    if kind == "herb":
        out.update(
            pinyin=e.pinyin,
            latin=e.latin,
            category=e.category,
            nature=e.nature,
            flavours=list(e.flavours),
            meridians=list(e.meridians),
            functions=list(e.functions),
            indications=list(e.indications),
            safety=_safety(e.safety),
            forms=[
                {
                    "id": f.id,
                    "name": f.name,
                    "aliases": list(f.aliases),
                    "processing": f.processing,
                    "raw": f.raw,
                    "safety": _safety(f.safety),
                    "own_fields": sorted(f.own_fields),
                }
                for f in (kb.forms[x] for x in e.form_ids)
            ],
            incompatible_with=kb.incompatible_with(e.id),
        )
    elif kind == "formula":
        subs = kb.substitutes_in(e.id)
        out.update(
            origin=e.origin,
            category=e.category,
            composition=[{**_ingredient(kb, i), "substitutes": _substitutes(kb, subs, i)} for i in e.composition],
            versions=[
                {
                    "kind": v.kind,
                    "name": v.name,
                    "origin": v.origin,
                    "composition": [_ingredient(kb, i) for i in v.composition],
                    "note": v.note,
                    "source": v.source.as_dict(),
                    "verification": v.verification,
                }
                for v in e.versions
            ],
            functions=list(e.functions),
            indications=list(e.indications),
            cautions=list(e.cautions),
            usage=e.usage,
            syndromes=[{"id": s.id, "name": s.name} for s in kb.syndromes.values() if e.id in s.formula_ids],
        )
    else:
        d = kb.diseases[e.disease_id]
        out.update(
            disease={"id": d.id, "name": d.name, "discipline": d.discipline},
            codes=dict(e.codes),
            key_symptoms=[f.term for f in e.key],
            secondary_symptoms=[f.term for f in e.secondary],
            tongue=[f.term for f in e.tongue],
            pulse=[f.term for f in e.pulse],
            contra_symptoms=[f.term for f in e.contra],
            treatment_principle=e.principle,
            formulas=[{"id": f, "name": kb.formulas[f].name} for f in e.formula_ids],
            modifications=[
                {
                    "when": list(m.when),
                    "add": [{"herb": a.written, "dose_g": a.dose_g, "amount": a.amount} for a in m.add],
                    "remove": [kb.herbs[h].name for h in m.remove],
                    "note": m.note,
                }
                for m in e.modifications
            ],
        )
    dep = kb.deprecation(kind, e.id)
    out.update(
        deprecated=dep is not None, source=_src(e.source), verification=e.verification, kb_version=str(kb.version)
    )
    if dep is not None:
        out.update(replaced_by=dep["replaced_by"], deprecation_reason=dep["reason"])
    return out


def _get(services: Any, kind: str, key: str) -> dict[str, Any]:
    kb = services.kb
    return render_entity(kb, kind, kb.get(kind, key))


def search(kb: Any, kind: str, q: str, limit: int) -> dict[str, Any]:
    """Resolution first (names, aliases, processed forms, variants), then names containing the query."""
    from kb.normalize import normalize

    res = kb.resolve(q, kind)
    hits: list[dict[str, Any]] = []
    seen: set[str] = set()
    table = {"herb": kb.herbs, "formula": kb.formulas, "syndrome": kb.syndromes}[kind]

    def add(ident: str, matched: str, how: str) -> None:
        if ident not in seen and ident in table and len(hits) < limit:
            seen.add(ident)
            hits.append({"kind": kind, "id": ident, "name": table[ident].name, "matched": matched, "how": how})

    if res.resolved and res.id:
        add(res.id, res.input, res.how)
        for t in res.others:
            if t.kind == kind:
                add(t.id, res.input, res.how)
    key = normalize(q)
    if key:
        for name, targets in kb.names.index.items():
            if key in name:
                for t in targets:
                    if t.kind == kind:
                        add(t.id, name, "contains")
    for cand in res.candidates:
        r = kb.resolve(cand, kind)
        if r.resolved and r.id:
            add(r.id, cand, "candidate")
    return {
        "query": q,
        "kind": kind,
        "resolution": res.as_dict(),
        "results": hits,
        "kb_version": str(kb.version),
    }


def _kb_routes(kind: str, plural: str) -> None:
    async def get_one(request: Request, id: str) -> Response:
        out = await run_sized(request, len(id), _get, request.app.state.tcm, kind, id)
        note_audit(request, kb_version=out["kb_version"])
        return answer(out)

    async def find(
        request: Request,
        q: str = Query(..., min_length=1, max_length=100, description="name or alias"),
        limit: int = Query(20, ge=1, le=100),
    ) -> Response:
        services = request.app.state.tcm
        out = await run(request, lambda: search(services.kb, kind, q, limit))
        note_audit(request, kb_version=out["kb_version"], outcome=f"results:{len(out['results'])}")
        return answer(out)

    get_one.__name__ = f"get_{kind}"
    find.__name__ = f"search_{plural}"
    router.add_api_route(
        f"/{plural}/{{id}}",
        get_one,
        methods=["GET"],
        dependencies=[requires(*KB_READERS)],
        responses=ok(schemas.EntityOut),
        tags=["knowledge base"],
        summary=f"A {kind} by id or by any name",
    )
    router.add_api_route(
        f"/{plural}",
        find,
        methods=["GET"],
        dependencies=[requires(*KB_READERS)],
        responses=ok(schemas.SearchOut),
        tags=["knowledge base"],
        summary=f"Search {plural} by name",
    )


for _kind, _plural in (("herb", "herbs"), ("formula", "formulas"), ("syndrome", "syndromes")):
    _kb_routes(_kind, _plural)


# ---- SPARQL --------------------------------------------------------------------------------------------
async def _sparql(request: Request, text: str, limit: int | None) -> Response:
    from api import sparql

    services = request.app.state.tcm
    s = services.settings
    rows = min(limit or s.sparql_max_rows, s.sparql_max_rows)
    out = await run(request, sparql.run, services, text, rows, s.sparql_timeout_s)
    note_audit(request, kb_version=str(services.kb.version))
    if "triples" in out:  # CONSTRUCT / DESCRIBE: N-Triples lines in JSON
        out = {"head": {}, **out}
    return answer(out, media_type="application/sparql-results+json")


SPARQL_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/sparql-results+json": {"schema": {"$ref": "#/components/schemas/SparqlOut"}}}}
}


@router.get(
    "/sparql",
    dependencies=[requires("curator", "researcher")],
    tags=["knowledge base"],
    responses=SPARQL_RESPONSES,
    summary="Read-only SPARQL (SPARQL 1.1 protocol, query by GET)",
)
async def sparql_get(
    request: Request,
    query: str = Query(..., min_length=1, max_length=20_000),
    limit: int | None = Query(None, ge=1, le=100_000),
) -> Response:
    return await _sparql(request, query, limit)


@router.post(
    "/sparql",
    dependencies=[requires("curator", "researcher")],
    tags=["knowledge base"],
    responses=SPARQL_RESPONSES,
    summary="Read-only SPARQL (query in the body)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/sparql-query": {"schema": {"type": "string", "minLength": 1}},
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "required": ["query"],
                        "properties": {"query": {"type": "string"}},
                    }
                },
            },
        }
    },
)
async def sparql_post(request: Request, limit: int | None = Query(None, ge=1, le=100_000)) -> Response:
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    raw = await request.body()
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the query is not UTF-8") from None
    if ctype == "application/sparql-query":
        text = decoded
    elif ctype == "application/x-www-form-urlencoded":
        from urllib.parse import parse_qs

        form = parse_qs(decoded)
        if "update" in form:
            raise InputError("SPARQL updates are refused: this endpoint is read-only", "update")
        text = (form.get("query") or [""])[0]
    else:
        raise BadRequest("send the query as application/sparql-query or a form field query=")
    if not text.strip():
        raise InputError("empty SPARQL query", "query")
    return await _sparql(request, text, limit)


# ---- service information -------------------------------------------------------------------------------
def version_info(services: Any) -> dict[str, Any]:
    v = services.versions()
    return {
        "engine": v["engine"],
        "api": "v1",
        "kb_version": v["kb_version"],
        "ruleset_version": v["ruleset_version"],
        "models": services.models.describe(),
        "cds_hooks": "2.0",
        "fhir": "4.0.1",
    }


@router.get(
    "/version",
    dependencies=[requires(PUBLIC)],
    responses=ok(schemas.VersionOut),
    tags=["service"],
    summary="Engine, knowledge-base, rule-set and model versions",
)
async def version(request: Request) -> Response:
    services = request.app.state.tcm
    out = version_info(services) if services.kb_loaded else await run(request, version_info, services)
    note_audit(request, kb_version=out["kb_version"], ruleset_version=out["ruleset_version"])
    return answer(out)


@router.get(
    "/ping",
    dependencies=[requires(*ROLES)],
    responses=ok(schemas.Pong),
    tags=["service"],
    summary="Hello world (any role): the load benchmark's baseline",
)
async def ping() -> Response:
    return answer({"ok": True})


def _since(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InputError("expected an ISO 8601 time, e.g. 2026-01-31T00:00:00Z", "since") from None
    return t.astimezone(dt.UTC).replace(tzinfo=None) if t.tzinfo else t


@router.get(
    "/audit",
    dependencies=[requires("admin")],
    responses=ok(schemas.AuditOut),
    tags=["audit"],
    summary="Audit records (newest last), with cards and feedback",
)
async def audit_records(
    request: Request, since: str | None = Query(None, max_length=40), limit: int = Query(100, ge=1, le=1000)
) -> Response:
    from api.audit import export

    services = request.app.state.tcm
    t = _since(since)
    records = await run(request, lambda: list(export(services.engine, t, limit)))
    return answer({"records": records})


@router.get(
    "/feedback",
    dependencies=[requires("reviewer")],
    responses=ok(schemas.FeedbackListOut),
    tags=["audit"],
    summary="Feedback and overrides on CDS cards (newest first)",
)
async def feedback_list(
    request: Request, since: str | None = Query(None, max_length=40), limit: int = Query(100, ge=1, le=1000)
) -> Response:
    from api.audit import feedback

    services = request.app.state.tcm
    t = _since(since)
    rows = await run(request, lambda: feedback(services.engine, t, limit))
    return answer({"feedback": rows})
