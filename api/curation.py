"""Knowledge curation over HTTP: ``/v1/curation/...`` (curators, reviewers, admins) and the ``/curate`` web page.

The workflow itself is ``kb.curation``; these routes read the caller's identity, pass ETags and If-Match, run the
blocking work in a worker thread, and hand a new release to the running engine (``Services.adopt``) so the next
answer already carries its version. docs/curation.md describes the contract.
"""

from __future__ import annotations

import enum
import re
import types
import typing
from pathlib import Path
from typing import Any

import anyio
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from api.auth import PUBLIC, requires
from api.calls import answer, note_audit, read_json
from api.errors import BadRequest, NotFound
from kb import icd11
from kb.content_tree import KINDS
from kb.errors import CurationInputError, PreconditionRequiredError

router = APIRouter(prefix="/v1/curation", tags=["curation"])
pages = APIRouter(include_in_schema=False)

READERS = ("curator", "reviewer")
STATIC_DIR = Path(__file__).resolve().parent / "static" / "curate"


def _who(request: Request) -> Any:
    return request.scope["state"]["identity"]


def _is_admin(request: Request) -> bool:
    return "admin" in _who(request).roles


async def _work(fn: Any, *args: Any) -> Any:
    """Blocking curation work in a worker thread, never abandoned: a release that starts also finishes."""
    return await anyio.to_thread.run_sync(fn, *args)


def _tag(value: Any) -> str:
    return f'"{value}"'


def _if_match(request: Request) -> str | None:
    raw = request.headers.get("if-match")
    if raw is None:
        return None
    raw = raw.strip()
    if raw.startswith("W/"):
        raw = raw[2:]
    return raw.strip('"') or None


def _services(request: Request) -> Any:
    return request.app.state.tcm


# ---- who, and what can be edited ----------------------------------------------------------------------
@router.get("/whoami", dependencies=[requires(*READERS)], summary="The caller's name and roles")
async def whoami(request: Request) -> Response:
    ident = _who(request)
    return answer({"client": ident.client, "roles": sorted(ident.roles)})


@router.get("/schema", dependencies=[requires(*READERS)], summary="How to edit each kind of entity (edit forms)")
async def schema(request: Request) -> Response:
    return answer(form_schema())


# ---- entities -----------------------------------------------------------------------------------------
@router.get("/entities", dependencies=[requires(*READERS)], summary="Search entities by name, alias, pinyin or id")
async def search_entities(
    request: Request,
    q: str = Query("", max_length=100),
    kind: str | None = Query(None, max_length=20),
    limit: int = Query(50, ge=1, le=500),
) -> Response:
    out = await _work(_services(request).curation.search, q, kind, limit)
    note_audit(request, outcome=f"results:{len(out['results'])}")
    return answer(out)


@router.get("/entities/{kind}/{ident}", dependencies=[requires(*READERS)], summary="An entity with its etag")
async def get_entity(request: Request, kind: str, ident: str) -> Response:
    out = await _work(_services(request).curation.entity, kind, ident)
    note_audit(request, kb_version=out["kb_version"])
    resp = answer(out)
    resp.headers["ETag"] = _tag(out["etag"])
    return resp


@router.get(
    "/entities/{kind}/{ident}/neighbourhood",
    dependencies=[requires(*READERS)],
    summary="What the entity links to in the knowledge graph",
)
async def neighbourhood(request: Request, kind: str, ident: str, limit: int = Query(80, ge=1, le=300)) -> Response:
    if kind not in KINDS:
        raise CurationInputError(f"unknown kind {kind!r}; kinds: {', '.join(KINDS)}")
    return answer(await _work(_services(request).curation.neighbourhood, kind, ident, limit))


@router.put(
    "/entities/{kind}/{ident}",
    dependencies=[requires("curator")],
    status_code=201,
    summary="Propose one edit of an entity (If-Match: its etag; If-None-Match: * to create it)",
)
async def put_entity(request: Request, kind: str, ident: str) -> Response:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise BadRequest("send a JSON object: {title, reason, source, data, unset?, op?, parent?}")
    creating = request.headers.get("if-none-match", "").strip() == "*"
    op = body.get("op", "create" if creating else "update")
    if op not in ("create", "update", "deprecate"):
        raise CurationInputError("op is create, update or deprecate (relations: POST a change request)")
    etag = _if_match(request)
    if op != "create" and etag is None:
        raise PreconditionRequiredError("send If-Match with the etag of the version you edited (GET the entity first)")
    edit: dict[str, Any] = {"op": op, "kind": kind, "id": ident, "data": body.get("data") or {}}
    if op != "create":
        edit["base_etag"] = etag
    if body.get("unset"):
        edit["unset"] = body["unset"]
    if body.get("parent"):
        edit["parent"] = body["parent"]
    cr = {k: body.get(k) for k in ("title", "reason", "source")} | {"edits": [edit]}
    out = await _work(_services(request).curation.propose, _who(request).client, cr)
    note_audit(request, outcome=f"change-request:{out['id']}")
    resp = answer(out, 201)
    resp.headers["ETag"] = _tag(out["revision"])
    resp.headers["Location"] = f"/v1/curation/change-requests/{out['id']}"
    return resp


# ---- change requests ----------------------------------------------------------------------------------
@router.post(
    "/change-requests", dependencies=[requires("curator")], status_code=201, summary="Propose a change request"
)
async def propose(request: Request) -> Response:
    body = await read_json(request)
    out = await _work(_services(request).curation.propose, _who(request).client, body)
    note_audit(request, outcome=f"change-request:{out['id']}")
    resp = answer(out, 201)
    resp.headers["ETag"] = _tag(out["revision"])
    resp.headers["Location"] = f"/v1/curation/change-requests/{out['id']}"
    return resp


@router.get("/change-requests", dependencies=[requires(*READERS)], summary="Change requests, newest first")
async def list_change_requests(
    request: Request,
    status: str | None = Query(None, max_length=12),
    limit: int = Query(200, ge=1, le=1000),
) -> Response:
    items = await _work(_services(request).curation.change_requests, status, limit)
    return answer({"change_requests": items})


@router.get("/change-requests/{cr_id}", dependencies=[requires(*READERS)], summary="A change request with its diff")
async def get_change_request(request: Request, cr_id: int) -> Response:
    out = await _work(_services(request).curation.get, cr_id)
    resp = answer(out)
    resp.headers["ETag"] = _tag(out["revision"])
    return resp


@router.put(
    "/change-requests/{cr_id}",
    dependencies=[requires("curator")],
    summary="Replace a change request's content (If-Match: its revision)",
)
async def revise(request: Request, cr_id: int) -> Response:
    tag = _if_match(request)
    revision = None
    if tag is not None:
        if not re.fullmatch(r"\d{1,9}", tag):
            raise CurationInputError("If-Match of a change request is its revision number")
        revision = int(tag)
    body = await read_json(request)
    out = await _work(
        _services(request).curation.revise, cr_id, _who(request).client, body, revision, _is_admin(request)
    )
    resp = answer(out)
    resp.headers["ETag"] = _tag(out["revision"])
    return resp


@router.post("/change-requests/{cr_id}/validate", dependencies=[requires(*READERS)], summary="Validate again")
async def validate(request: Request, cr_id: int) -> Response:
    return answer(await _work(_services(request).curation.validate, cr_id, _who(request).client))


@router.post(
    "/change-requests/{cr_id}/review",
    dependencies=[requires("reviewer")],
    summary="Approve or reject (not one's own)",
)
async def review(request: Request, cr_id: int) -> Response:
    body = await read_json(request)
    if not isinstance(body, dict) or body.get("decision") not in ("approve", "reject"):
        raise CurationInputError("send {decision: approve | reject, comment}")
    comment = body.get("comment")
    if comment is not None and (not isinstance(comment, str) or len(comment) > 5000):
        raise CurationInputError("comment is text of at most 5000 characters")
    out = await _work(_services(request).curation.review, cr_id, _who(request).client, body["decision"], comment)
    note_audit(request, outcome=f"{out['status']}:{cr_id}")
    return answer(out)


@router.post("/change-requests/{cr_id}/withdraw", dependencies=[requires("curator")], summary="The author withdraws it")
async def withdraw(request: Request, cr_id: int) -> Response:
    return answer(await _work(_services(request).curation.withdraw, cr_id, _who(request).client, _is_admin(request)))


# ---- releases -----------------------------------------------------------------------------------------
@router.get("/releases", dependencies=[requires(*READERS)], summary="Release history, newest first")
async def history(request: Request, limit: int = Query(200, ge=1, le=1000)) -> Response:
    return answer({"releases": await _work(_services(request).curation.history, limit)})


async def _body_or_empty(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    body = await read_json(request)
    if not isinstance(body, dict):
        raise BadRequest("send a JSON object: {note}")
    return body


@router.post("/releases", dependencies=[requires("reviewer")], status_code=201, summary="Release every approved change")
async def release(request: Request) -> Response:
    body = await _body_or_empty(request)
    note = body.get("note")
    services = _services(request)
    out = await _work(services.curation.release, _who(request).client, note, services.adopt)
    note_audit(request, kb_version=out["version"], outcome=f"release:{out['name']}")
    return answer(out, 201)


@router.get("/releases/{name}", dependencies=[requires(*READERS)], summary="A release with its changelog and diff")
async def release_detail(request: Request, name: str) -> Response:
    return answer(await _work(_services(request).curation.release_detail, name))


@router.post(
    "/releases/{name}/restore",
    dependencies=[requires("reviewer")],
    status_code=201,
    summary="Publish an earlier release's content again",
)
async def restore(request: Request, name: str) -> Response:
    body = await _body_or_empty(request)
    services = _services(request)
    out = await _work(services.curation.restore, name, _who(request).client, body.get("note"), services.adopt)
    note_audit(request, kb_version=out["version"], outcome=f"restore:{name}")
    return answer(out, 201)


@router.get("/diff", dependencies=[requires(*READERS)], summary="Field-by-field diff between two releases")
async def release_diff(
    request: Request,
    from_: str | None = Query(None, alias="from", max_length=40),
    to: str | None = Query(None, max_length=40),
) -> Response:
    return answer(await _work(_services(request).curation.diff, from_, to))


@router.get(
    "/releases/{name}/export",
    dependencies=[requires(*READERS)],
    summary="A release as Turtle or JSON-LD with PROV-O provenance",
)
async def export(request: Request, name: str, format: str = Query("ttl", max_length=10)) -> Response:
    data = await _work(_services(request).curation.export, name, format)
    media = "text/turtle" if format in ("ttl", "turtle") else "application/ld+json"
    ext = "ttl" if format in ("ttl", "turtle") else "jsonld"
    return Response(data, media_type=media, headers={"Content-Disposition": f'attachment; filename="kb-{name}.{ext}"'})


# ---- the web page -------------------------------------------------------------------------------------
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/x-icon"}  # fmt: skip
_CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'"


def _static(name: str) -> Response:
    path = STATIC_DIR / name
    if not re.fullmatch(r"[\w-]+\.(html|js|css|svg|png|ico)", name) or not path.is_file():
        raise NotFound("no such file")
    return Response(path.read_bytes(), media_type=_TYPES[path.suffix],
                    headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})  # fmt: skip


@pages.get("/curate", dependencies=[requires(PUBLIC)])
async def curate_page() -> Response:
    return _static("index.html")


@pages.get("/curate/static/{name}", dependencies=[requires(PUBLIC)])
async def curate_static(name: str) -> Response:
    return _static(name)


# ---- edit-form description ----------------------------------------------------------------------------
LABELS = {
    "id": "编号", "name": "正名", "pinyin": "拼音", "latin": "拉丁名", "aliases": "别名", "category": "分类",
    "nature": "药性", "flavours": "五味", "meridians": "归经", "functions": "功效", "indications": "主治",
    "dose_g": "用量范围（克/日）", "toxicity": "毒性", "pregnancy": "妊娠禁忌", "preparation": "特殊煎服法",
    "internal_use": "内服限制", "controlled": "医疗用毒性药品（管制）", "cautions": "使用注意", "source": "出处",
    "verification": "核实状态", "deprecated": "已停用", "replaced_by": "由…替代（编号）", "deprecation_reason": "停用原因",
    "processing": "炮制方法", "raw": "生品", "origin": "方源", "composition": "组成", "usage": "用法",
    "codes": "标准编码", "key_symptoms": "主症", "secondary_symptoms": "次症", "tongue": "舌象", "pulse": "脉象",
    "contra_symptoms": "不支持本证的表现", "principle": "治法", "formulas": "方剂（主方在前）", "modifications": "加减",
    "discipline": "科别", "western": "相关西医诊断", "synonyms": "同义词", "negated": "否定性表现（如无汗）",
    "opposite": "相反表现", "broader": "上位表现", "replaces": "并入本条的旧条目编号", "kind": "规则类型", "severity": "严重程度", "a": "甲组药物",
    "b": "乙组药物", "members": "药物", "params": "参数", "message_zh": "提示（中文）", "message_en": "提示（英文）",
    "note": "备注", "work": "著作", "edition": "版本", "publisher": "出版者", "year": "年份",
    "versions": "其他版本（药典成药、原方、别本）", "populations": "特殊人群禁忌",
}  # fmt: skip
HELP = {
    "dose_g": "成人每日煎服剂量，[最小, 最大]，单位克",
    "source": "ref：文献编号（见“文献来源”）；loc：章节或页码",
    "composition": "每味药一行：药名、剂量（克）或用量（如 12枚）、君臣佐使、备注（先煎、后下…）",
    "modifications": "加减：when 为症状列表，add 为加入的药（同组成格式），remove 为去掉的药名",
    "replaced_by": "同类条目的编号",
    "versions": "同名下另有出处的组成，各附出处：kind 为 药典（药典成方制剂，作为一味成药开具时按此审核）、原方（主方用了现代"
    "代用品时的古籍原方，如犀角）或 别本（他书或他本的同名方）；composition 每味药 {herb, dose_g?, note?}",
    "populations": "每项为人群加程度：婴幼儿（3岁以下）、儿童（14岁以下）、老年人（65岁及以上）、哺乳期、肝功能不全 或 肾功能不全，"
    "加 禁用、忌用、慎用 或 不宜，"
    "如 儿童禁用、哺乳期不宜；依出处的【注意】填写，孕妇另见“妊娠禁忌”",
    "codes": "GB/T 15657-2021、GB/T 16751.2-2021、ICD-11 第26章（TM1）编码：疾病填疾病编码（SA00–SE5Z），证候填证候编码"
    "（SE70–SJ3Z），仅当世卫组织名称与本条同义时填写；不确定请留空",
}
MULTILINE = {"usage", "note", "deprecation_reason", "message_zh", "message_en"}
# the order a physician reads an entry in; fields not listed follow in the schema's order, provenance last
FIRST = ("id", "name", "pinyin", "latin", "aliases", "synonyms", "category", "discipline", "processing", "raw",
         "nature", "flavours", "meridians", "functions", "indications", "origin", "composition", "usage", "versions",
         "key_symptoms", "secondary_symptoms", "tongue", "pulse", "contra_symptoms", "principle", "formulas",
         "modifications", "dose_g", "toxicity", "pregnancy", "preparation", "internal_use", "controlled", "populations", "cautions")  # fmt: skip
LAST = ("codes", "source", "verification", "deprecated", "replaced_by", "deprecation_reason")
OPTION_LABELS = {
    "verified": "已核对原始文献", "secondary": "据二手资料", "unverified": "未核实",
    "allowed": "可内服", "processed_only": "须炮制后内服", "external_only": "仅外用", "banned": "已禁用",
    "incompatibility": "十八反（相反）", "antagonism": "十九畏（相畏）", "controlled": "毒性药品管制",
    "duration": "疗程限制", "herb_duration": "单味药疗程限制",
    "info": "提示", "warning": "警告", "critical": "严重",
    "pharmacopoeia": "药典", "standard": "标准", "regulation": "法规", "textbook": "教材", "classic": "古籍",
    "project": "本项目",
}  # fmt: skip


def _field(name: str, annotation: Any, required: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "label": LABELS.get(name, name), "required": required, "options": None}
    if name in HELP:
        out["help"] = HELP[name]
    ann = annotation
    origin = typing.get_origin(ann)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        ann = args[0] if len(args) == 1 else ann
        origin = typing.get_origin(ann)
    if origin is typing.Annotated:
        ann = typing.get_args(ann)[0]
        origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    if name == "dose_g":
        out["type"] = "range"
    elif origin is list:
        inner = args[0] if args else str
        if typing.get_origin(inner) is typing.Annotated:
            inner = typing.get_args(inner)[0]
        if getattr(inner, "__name__", "") == "Ingredient":
            out["type"] = "ingredients"
        elif inner is str:
            out["type"] = "list"
        else:
            out["type"] = "json"
    elif origin is typing.Literal:
        out["type"], out["options"] = "enum", list(args)
    elif isinstance(ann, type) and issubclass(ann, enum.Enum):
        out["type"], out["options"] = "enum", [e.value for e in ann]
    elif ann is bool:
        out["type"] = "bool"
    elif ann in (int, float):
        out["type"] = "number"
    elif getattr(ann, "__name__", "") == "SourceRef":
        out["type"] = "source"
    elif ann is str:
        out["type"] = "textarea" if name in MULTILINE else "text"
    else:
        out["type"] = "json"
    if out.get("options"):
        out["option_labels"] = {o: OPTION_LABELS.get(o, o) for o in out["options"]}
    return out


_SCHEMA: dict[str, Any] | None = None
ICD11_HALF = {"disease": "disorder", "syndrome": "pattern"}  # which half of ICD-11 chapter 26 each kind takes


def form_schema() -> dict[str, Any]:
    """How to edit each kind: its fields in order, with Chinese labels, types and allowed values."""
    global _SCHEMA
    if _SCHEMA is None:
        kinds = {}
        for k in KINDS.values():
            names = [n for n in k.model.model_fields if n != k.children]
            order = {n: i for i, n in enumerate(FIRST)} | {n: 1000 + i for i, n in enumerate(LAST)}
            names.sort(key=lambda n: order.get(n, 500))
            fields = [
                _field(n, k.model.model_fields[n].annotation, k.model.model_fields[n].is_required()) for n in names
            ]
            for f in fields:
                if f["name"] == "codes" and k.name in ICD11_HALF:
                    f["icd11_options"] = [
                        [c, t] for c, t in icd11.table().items() if icd11.kind(c) == ICD11_HALF[k.name]
                    ]
            kinds[k.name] = {"label": k.label, "parent": k.parent, "fields": fields}
        _SCHEMA = {"kinds": kinds, "statuses": ["open", "approved", "rejected", "released", "withdrawn", "conflict"]}
    return _SCHEMA
