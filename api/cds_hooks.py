"""CDS Hooks 2.0 services.

    GET  /cds-services                              discovery
    POST /cds-services/tcm-rx-safety-order-select   order-select and order-sign: the herbal orders in
    POST /cds-services/tcm-rx-safety-order-sign     draftOrders reviewed; cards with override reasons and
                                                    suggestions carrying the updated MedicationRequest
    POST /cds-services/tcm-differentiation          patient-view: ranked syndromes and suggested formulas
                                                    from prefetched Conditions and Observations
    POST /cds-services/{id}/feedback                feedback, stored and linked to the call that made the card

Card ids are unique per hook call (derived from the ``hookInstance`` and the engine's stable card id), so
feedback always names one audited call. Services never query a FHIR server: a required prefetch key that is
absent gets 412 (a key present with ``null`` means "no data" and is fine).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.responses import Response

from api import metrics
from api.auth import CDS_CLIENT, requires
from api.calls import answer, note_audit, read_json, run
from api.errors import NotFound, PreconditionFailed
from api.fhir_io import _age as age_of
from api.fhir_io import (
    codings_of,
    draft_patent_order,
    findings_request,
    herbal_orders,
    is_breastfeeding_status,
    is_pregnancy_status,
    order_ref,
    relocate,
    resources,
    updated_order,
    validate,
)
from api.fhir_io import draft_diagnosis as make_draft_diagnosis
from api.fhir_io import draft_order as make_draft_order
from cds.fhir import impairments_of
from kb.errors import InputError

logger = logging.getLogger(__name__)

CARD_NS = uuid.UUID("0b8e7c52-3f4e-4c0a-9d4b-5b8f1d2e6a77")
TOPIC_SYSTEM = "https://tcm-cds.org/CodeSystem/card-topic"
EXTENSION_KEY = "org.tcm-cds.action"

PATIENT = "Patient/{{context.patientId}}"
PREGNANCY = "Observation?patient={{context.patientId}}&code=http://loinc.org|82810-3&_sort=-date&_count=1"
LACTATION = "Observation?patient={{context.patientId}}&code=http://loinc.org|63895-7&_sort=-date&_count=1"
CONDITIONS = "Condition?patient={{context.patientId}}&clinical-status=active"


@dataclass(frozen=True)
class Service:
    id: str
    hook: str
    title: str
    description: str
    prefetch: dict[str, str]
    required: tuple[str, ...] = ()
    context_required: tuple[str, ...] = ("patientId",)
    extra: dict[str, Any] = field(default_factory=dict)

    def discovery(self) -> dict[str, Any]:
        return {
            "hook": self.hook,
            "title": self.title,
            "description": self.description,
            "id": self.id,
            "prefetch": dict(self.prefetch),
            **self.extra,
        }


_SAFETY_TEXT = (
    "中药处方安全审核：十八反、十九畏、妊娠禁忌、毒性与超量、重复、煎法、疗程。"
    "Reviews the herbal MedicationRequests in draftOrders (a Medication whose ingredients are the "
    "herbs, strength in g) against the Chinese Pharmacopoeia rules; cards carry override reasons and "
    "suggestions that remove a herb or set its dose. Prefetch is optional."
)
SERVICES: dict[str, Service] = {
    s.id: s
    for s in (
        Service(
            "tcm-rx-safety-order-select",
            "order-select",
            "TCM herbal prescription safety (order-select)",
            _SAFETY_TEXT,
            {"patient": PATIENT, "pregnancy": PREGNANCY, "lactation": LACTATION, "conditions": CONDITIONS},
            context_required=("patientId", "selections", "draftOrders"),
        ),
        Service(
            "tcm-rx-safety-order-sign",
            "order-sign",
            "TCM herbal prescription safety (order-sign)",
            _SAFETY_TEXT,
            {"patient": PATIENT, "pregnancy": PREGNANCY, "lactation": LACTATION, "conditions": CONDITIONS},
            context_required=("patientId", "draftOrders"),
        ),
        Service(
            "tcm-differentiation",
            "patient-view",
            "TCM syndrome differentiation (辨证参考)",
            "辨证参考与方剂建议：ranks the TCM syndromes that fit the patient's prefetched Conditions and "
            "Observations (tongue, pulse, symptoms; pregnancy status LOINC 82810-3) and suggests "
            "safety-checked "
            "formulas; a differential can be recorded as a provisional diagnosis (Conditions coded in ICD-11 "
            "chapter 26 where the knowledge base has the code). Requires the conditions and observations prefetch.",
            {
                "patient": PATIENT,
                "conditions": "Condition?patient={{context.patientId}}&clinical-status=active",
                "observations": "Observation?patient={{context.patientId}}&_sort=-date&_count=100",
            },
            required=("conditions", "observations"),
        ),
    )
}


class CDSRequest(BaseModel):
    """The body of a CDS Hooks 2.0 service call."""

    model_config = ConfigDict(extra="allow")
    hook: str = Field(min_length=1, max_length=100)
    hookInstance: str = Field(min_length=1, max_length=200)
    fhirServer: str | None = Field(None, max_length=2000)
    fhirAuthorization: dict[str, Any] | None = None
    context: dict[str, Any]
    prefetch: dict[str, Any] | None = None


class AcceptedSuggestion(BaseModel):
    id: str = Field(min_length=1, max_length=200)


class Coding(BaseModel):
    model_config = ConfigDict(extra="allow")
    code: str = Field(min_length=1, max_length=100)
    system: str = Field(min_length=1, max_length=200)
    display: str | None = Field(None, max_length=300)


class OverrideReason(BaseModel):
    reason: Coding | None = None
    userComment: str | None = Field(None, max_length=4000)


class FeedbackEntry(BaseModel):
    model_config = ConfigDict(extra="allow")
    card: str = Field(min_length=1, max_length=100)
    outcome: str = Field(pattern="^(accepted|overridden)$")
    acceptedSuggestions: list[AcceptedSuggestion] | None = None
    overrideReason: OverrideReason | None = None
    outcomeTimestamp: str = Field(min_length=10, max_length=40)


class FeedbackRequest(BaseModel):
    feedback: list[FeedbackEntry] = Field(min_length=1, max_length=100)


def _parse(model: type[BaseModel], raw: Any, what: str) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        raise InputError(f"invalid {what}: {err['msg']}", loc or None) from None


def _service(service_id: str) -> Service:
    svc = SERVICES.get(service_id)
    if svc is None:
        raise NotFound("no CDS service with this id; see GET /cds-services")
    return svc


def _check_request(svc: Service, req: CDSRequest) -> dict[str, Any]:
    if req.hook != svc.hook:
        raise InputError(f"this service answers the {svc.hook} hook, not the one sent", "hook")
    if req.fhirAuthorization is not None and not req.fhirServer:
        raise InputError("fhirAuthorization needs fhirServer", "fhirServer")
    for key in svc.context_required:
        if req.context.get(key) in (None, "", [], {}):
            raise InputError(f"the {svc.hook} context needs {key}", f"context.{key}")
    if "patientId" in req.context and not isinstance(req.context["patientId"], str):
        raise InputError("patientId must be a string", "context.patientId")
    prefetch = req.prefetch or {}
    missing = [k for k in svc.required if k not in prefetch]
    if missing:
        raise PreconditionFailed(
            f"required prefetch {', '.join(missing)} missing; this service does not query FHIR "
            "servers, so the "
            "CDS client must send it (a key with null means no data)"
        )
    for key, value in prefetch.items():
        if key in svc.prefetch and value is not None:
            validate(value, f"prefetch.{key}")
    return prefetch


# ---- card post-processing ------------------------------------------------------------------------------
def _rekey(cards: list[dict[str, Any]], hook_instance: str) -> None:
    """Card and suggestion ids unique to this hook call (stable if the same call is retried)."""
    for card in cards:
        stable = card.get("uuid") or ""
        card["uuid"] = str(uuid.uuid5(CARD_NS, f"{hook_instance}|{stable}"))
        for s in card.get("suggestions", []):
            s["uuid"] = str(uuid.uuid5(CARD_NS, f"{hook_instance}|{s.get('uuid', '')}"))


def _audit_cards(service_id: str, cards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    import json

    out = []
    for c in cards:
        topic = (c.get("source") or {}).get("topic") or {}
        out.append(
            {
                "card_uuid": c["uuid"],
                "service_id": service_id,
                "indicator": c.get("indicator"),
                "topic": str(topic.get("display") or topic.get("code") or "")[:200],
                "suggestion_ids": json.dumps([s["uuid"] for s in c.get("suggestions", [])]),
            }
        )
    return out


def _finish(
    request: Request,
    svc: Service,
    req: CDSRequest,
    cards: list[dict[str, Any]],
    versions: dict[str, Any],
    models: list[str] | None = None,
) -> Response:
    _rekey(cards, req.hookInstance)
    for c in cards:
        metrics.CARDS.labels(svc.id, c.get("indicator", "info")).inc()
    note_audit(
        request,
        service_id=svc.id,
        hook=svc.hook,
        hook_instance=req.hookInstance,
        kb_version=versions.get("kb_version"),
        ruleset_version=versions.get("ruleset_version"),
        models=models or [],
        cards=_audit_cards(svc.id, cards),
        outcome=f"cards:{len(cards)}",
    )
    return answer({"cards": cards})


# ---- prescription safety -------------------------------------------------------------------------------
def _safety(
    services: Any, svc: Service, req: CDSRequest, prefetch: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from cds.cards import review_cards
    from cds.fhir import prescription_from_fhir
    from cds.review import review

    kb = services.kb
    versions = {"kb_version": str(kb.version), "ruleset_version": kb.ruleset_version}
    draft = req.context.get("draftOrders")
    if not isinstance(draft, dict) or draft.get("resourceType") != "Bundle":
        raise InputError("draftOrders must be a FHIR Bundle", "context.draftOrders")
    validate(draft, "context.draftOrders")
    extra: list[tuple[dict[str, Any], str]] = []
    for key in ("patient", "pregnancy", "lactation", "conditions"):
        for n, res in enumerate(resources(prefetch.get(key))):
            if (res.get("resourceType") == "Patient" or is_pregnancy_status(res) or is_breastfeeding_status(res)
                    or (res.get("resourceType") == "Condition" and impairments_of(res))):  # fmt: skip
                extra.append(
                    (
                        res,
                        f"prefetch.{key}" + (f".entry[{n}]" if prefetch[key].get("resourceType") == "Bundle" else ""),
                    )
                )
    orders = herbal_orders(draft, extra, "context.draftOrders")
    if not orders.orders:
        return [], versions  # no herbal order: nothing to say
    try:  # draftOrders and the prefetch were validated above: read them without validating them again
        rx = prescription_from_fhir(orders.bundle, validated=True)
    except InputError as exc:
        raise relocate(exc, orders.origins) from None
    patient = next((r for r, _ in extra if r.get("resourceType") == "Patient"), None)
    if patient is not None and rx.patient.age_years is None:
        age = age_of(patient.get("birthDate"), dt.date.today())
        if age is not None:
            rx = dataclasses.replace(rx, patient=dataclasses.replace(rx.patient, age_years=age))
    rv = review(rx, kb)
    if svc.hook == "order-select":
        selected = {s for s in req.context.get("selections") or [] if isinstance(s, str)}
        picked = {i for i in range(len(orders.items)) if order_ref(orders, i) in selected}
        rv = dataclasses.replace(rv, findings=tuple(f for f in rv.findings if not f.items or set(f.items) & picked))

    def resource_for(s: dict[str, Any]) -> dict[str, Any] | None:
        return updated_order(orders, int(s["item"]), s["action"], s.get("dose_g"))

    cards = review_cards(rv, resource_for=resource_for)
    for card in cards:
        topic = card["source"].get("topic")
        if isinstance(topic, dict):
            card["source"]["topic"] = {"system": TOPIC_SYSTEM, **topic}
        for sug in card.get("suggestions", []):
            for action in sug.get("actions", []):
                detail = action.pop("tcm", None)
                if detail is not None:
                    action["extension"] = {EXTENSION_KEY: detail}
                if "resource" not in action and detail is not None:
                    ref = order_ref(orders, int(detail.get("item", -1)))
                    if detail.get("action") == "remove" and ref:
                        action["type"] = "delete"
                        action["resourceId"] = ref
    return cards, versions


# ---- differentiation -----------------------------------------------------------------------------------
def _pct(x: Any) -> str:
    return f"{float(x) * 100:.0f}%" if isinstance(x, (int, float)) else "–"


def _reasons(s: dict[str, Any]) -> list[tuple[str, list[dict[str, str]]]]:
    """The diagnosis a suggested formula treats, for its draft order: the disease, then the syndrome."""
    codes = s.get("codes") or []
    out = []
    for of, name in (("disease", s.get("disease")), ("syndrome", s.get("syndrome"))):
        if name:
            out.append((str(name), codings_of(codes, of)))
    return out


def _record_diagnosis(d: dict[str, Any], patient_id: str | None, card_id: str) -> dict[str, Any]:
    """A suggestion that records a differential as a provisional diagnosis: two Conditions (disease, syndrome)."""
    disease, syndrome = str(d["disease"]), str(d["name"])
    conditions = make_draft_diagnosis(
        patient_id, disease, syndrome, d.get("codes") or [],
        "TCM CDS 辨证参考，需医师确认 / decision support, to be confirmed by the physician",
    )  # fmt: skip
    return {
        "label": f"记录拟诊：{disease}·{syndrome} / record as provisional diagnosis"[:200],
        "uuid": str(uuid.uuid5(CARD_NS, f"{card_id}|record|{d['syndrome_id']}")),
        "actions": [
            {"type": "create", "description": f"Provisional diagnosis ({what}): {c['code']['text']}", "resource": c}
            for what, c in zip(("disease", "syndrome"), conditions, strict=True)
        ],
    }


def _differentiation(
    services: Any, svc: Service, req: CDSRequest, prefetch: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, Any], list[str]]:
    from cds.suggest import herb_text, suggest

    kb = services.kb
    versions = {"kb_version": str(kb.version), "ruleset_version": kb.ruleset_version}
    ask = findings_request(prefetch, kb)
    if ask is None:
        return [], versions, []
    try:
        ans = suggest(ask, kb, models=services.models)
    except InputError as exc:
        if exc.where is None:  # nothing the engine could recognise: no guidance, not an error
            return [], versions, []
        raise InputError(str(exc).split(": ", 1)[-1], f"prefetch ({exc.where})") from None
    diffs = [d for d in ans.get("differentials", []) if d.get("syndrome_id")]
    if not diffs:
        return [], versions, ans.get("models_used", [])
    source = {
        "label": "TCM CDS 辨证参考",
        "topic": {"system": TOPIC_SYSTEM, "code": "differentiation", "display": "syndrome differentiation"},
    }
    head = "；".join(f"{d['name']}（{d.get('disease') or ''}）{_pct(d.get('score'))}" for d in diffs[:3])
    summary = ("辨证参考：" + head)[:139]
    lines = [
        "| 证候 Syndrome | 病 Disease | 评分 Score | 治法 Principle | 依据 Supporting | 缺主症 Missing key |",
        "|---|---|---|---|---|---|",
    ]
    for d in diffs:
        ev = d.get("evidence", {})
        sup = "、".join(str(x.get("finding", "")) for x in ev.get("supporting", [])[:6])
        miss = "、".join(str(x) for x in ev.get("missing_key", [])[:4])
        lines.append(
            f"| {d['name']} | {d.get('disease') or ''} | {_pct(d.get('score'))} | "
            f"{d.get('treatment_principle') or ''} | {sup} | {miss} |"
        )
    if ans.get("low_confidence"):
        lines.append("\n**低置信度 / low confidence**：请补充舌象、脉象与主症 / gather more findings.")
    lines.append(f"\n知识库 / KB {versions['kb_version']} · 仅供辨证参考，由医师决定 / decision support only.")
    patient_id = req.context.get("patientId")
    diff_id = str(uuid.uuid5(CARD_NS, "differentiation|" + "|".join(d["syndrome_id"] for d in diffs)))
    record = [_record_diagnosis(d, patient_id, diff_id) for d in diffs[:3] if d.get("disease")]
    card: dict[str, Any] = {
        "uuid": diff_id,
        "summary": summary,
        "indicator": "info",
        "detail": "\n".join(lines),
        "source": source,
    }
    if record:
        card["suggestions"] = record
        card["selectionBehavior"] = "at-most-one"
    cards: list[dict[str, Any]] = [card]
    for s in ans.get("suggestions", []):
        if s.get("withheld"):
            cards.append(
                {
                    "uuid": str(uuid.uuid5(CARD_NS, f"withheld|{s.get('syndrome_id')}")),
                    "summary": f"{s.get('syndrome', '')}：方剂未推荐 / formula withheld"[:139],
                    "indicator": "warning",
                    "detail": str(s.get("reason", "")),
                    "source": source,
                }
            )
            continue
        formula = s["formula"]["name"]
        herbs = "、".join(herb_text(p) for p in s.get("prescription", []))
        review_summary = (s.get("review") or {}).get("summary") or {}
        indicator = "warning" if review_summary.get("critical") or review_summary.get("warning") else "info"
        detail = [
            f"**{formula}**（{s['syndrome']}，{s.get('treatment_principle') or ''}）",
            "",
            herbs,
            "",
            str(s.get("why", "")),
        ]
        for a in s.get("adaptations", []):  # one herb changed, or the whole formula rescaled (no herb)
            what = f"{a['herb']} {a.get('action')}" if a.get("herb") else str(a.get("action"))
            detail.append(f"- 调整 / adapted: {what} — {a.get('reason')}")
        detail += [f"- {n}" for n in s.get("notes", [])]
        for mod in s.get("modifications", []):
            detail.append(
                f"- 加减 / modification: +{'、'.join(mod.get('added', []))} −{'、'.join(mod.get('removed', []))}"
            )
        if review_summary:
            detail.append(f"- 安全审核 / safety review: {review_summary}")
        patent = s.get("patent_medicines", [])
        for pm in patent:
            detail.append(
                f"- 成药 / patent medicine: {pm['name']}（{'、'.join(pm['composition'])}）"
                + ("" if pm["suitable"] else f" — 不宜用于此患者 / not for this patient: {pm.get('reason', '')}")
            )
        note = f"{formula}：{s['syndrome']}，{s.get('treatment_principle') or ''}（TCM CDS 建议，需医师确认）"
        cid = str(uuid.uuid5(CARD_NS, f"suggest|{s['syndrome_id']}|{formula}"))
        # a suitable 成药 is offered as an order of its own; an unsuitable one only appears in the detail, with why
        patent_orders = [
            {
                "label": f"开具成药{pm['name']}草稿 / draft an order for {pm['name']}",
                "uuid": str(uuid.uuid5(CARD_NS, f"{cid}|patent|{pm['name']}")),
                "actions": [
                    {
                        "type": "create",
                        "description": f"Draft a patent-medicine order: {pm['name']}",
                        "resource": draft_patent_order(
                            patient_id,
                            pm["name"],
                            f"{pm['name']}：{s['syndrome']}（TCM CDS 建议，剂量按说明书，需医师确认）",
                            _reasons(s),
                        ),
                    }
                ],
            }
            for pm in patent
            if pm["suitable"]
        ]
        cards.append(
            {
                "uuid": cid,
                "summary": f"建议方剂：{formula}（{s['syndrome']}）{_pct(s.get('score'))}"[:139],
                "indicator": indicator,
                "detail": "\n".join(detail),
                "source": {
                    **source,
                    "topic": {"system": TOPIC_SYSTEM, "code": "formula-suggestion", "display": formula},
                },
                "suggestions": [
                    {
                        "label": f"开具{formula}草稿 / draft an order for {formula}",
                        "uuid": str(uuid.uuid5(CARD_NS, f"{cid}|create")),
                        "actions": [
                            {
                                "type": "create",
                                "description": f"Draft a herbal order: {formula}",
                                "resource": make_draft_order(
                                    patient_id, formula, s.get("prescription", []), note, _reasons(s)
                                ),
                            }
                        ],
                    },
                    *patent_orders,
                ],
                "selectionBehavior": "at-most-one",
            }
        )
    return cards, versions, list(ans.get("models_used", []))


# ---- routes --------------------------------------------------------------------------------------------
router = APIRouter(tags=["CDS Hooks"])


@router.get("/cds-services", dependencies=[requires(CDS_CLIENT)], summary="CDS Hooks discovery")
async def discovery() -> Response:
    return answer({"services": [s.discovery() for s in SERVICES.values()]})


@router.post("/cds-services/{service_id}", dependencies=[requires(CDS_CLIENT)], summary="Call a CDS service")
async def call_service(service_id: str, request: Request) -> Response:
    svc = _service(service_id)
    req: CDSRequest = _parse(CDSRequest, await read_json(request), "CDS Hooks request")
    note_audit(request, service_id=svc.id, hook=svc.hook, hook_instance=req.hookInstance)
    services = request.app.state.tcm
    prefetch = _check_request(svc, req)
    if svc.hook == "patient-view":
        cards, versions, models = await run(request, _differentiation, services, svc, req, prefetch)
        return _finish(request, svc, req, cards, versions, models)
    cards, versions = await run(request, _safety, services, svc, req, prefetch)
    return _finish(request, svc, req, cards, versions)


@router.post("/cds-services/{service_id}/feedback", dependencies=[requires(CDS_CLIENT)], summary="Card feedback")
async def feedback(service_id: str, request: Request) -> Response:
    from api.audit import feedback_op

    svc = _service(service_id)
    body: FeedbackRequest = _parse(FeedbackRequest, await read_json(request), "feedback")
    for i, e in enumerate(body.feedback):
        if e.outcome == "accepted" and not e.acceptedSuggestions:
            raise InputError("an accepted outcome needs acceptedSuggestions", f"feedback[{i}].acceptedSuggestions")
    services = request.app.state.tcm
    state = request.scope.get("state", {})
    ident = state.get("identity")
    entries = [e.model_dump(exclude_none=True) for e in body.feedback]
    unknown = await services.writer.run(
        feedback_op(svc.id, state["request_id"], ident.client if ident else None, entries)
    )
    if unknown:
        raise NotFound(f"{len(unknown)} card id(s) were not returned by this service; nothing was stored")
    for e in body.feedback:
        metrics.FEEDBACK.labels(svc.id, e.outcome).inc()
    note_audit(request, service_id=svc.id, outcome=f"feedback:{len(entries)}")
    return answer({"stored": len(entries)})
