"""HTTP schemas (pydantic at the edge) for the OpenAPI document.

Request bodies are read as JSON and validated by the engine itself (``cds.parse``, ``cds.differentiate``),
whose errors name the item and field; these models document them. Responses are built by the engine and sent
as they are; these models describe them so that clients (and the schemathesis run in the test suite)
can check them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


# ---- errors --------------------------------------------------------------------------------------------
class Problem(_Open):
    """RFC 9457 problem details (REST routes)."""

    type: str
    title: str
    status: int
    detail: str
    where: str | None = Field(None, description="the request field at fault, e.g. items[2].dose")
    candidates: list[str] | None = Field(None, description="closest names, for an unknown entity")
    request_id: str | None = None


class OperationOutcomeIssue(_Open):
    severity: Literal["fatal", "error", "warning", "information"]
    code: str
    diagnostics: str | None = None
    expression: list[str] | None = None


class OperationOutcome(_Open):
    """FHIR OperationOutcome (CDS Hooks routes)."""

    resourceType: Literal["OperationOutcome"]
    id: str | None = None
    issue: list[OperationOutcomeIssue] = Field(min_length=1)


# ---- requests ------------------------------------------------------------------------------------------
class PatientIn(_Open):
    pregnant: bool | None = None
    lactating: bool | None = None
    age_years: float | None = Field(None, ge=0, le=130)
    sex: Literal["female", "male"] | None = None
    hepatic_impairment: bool | None = Field(None, description="肝功能不全: herbs restricted for it are reported")
    renal_impairment: bool | None = Field(None, description="肾功能不全: herbs restricted for it are reported")


class ItemIn(_Open):
    herb: str = Field(description="the herb as written: 炙甘草, 黃耆, 怀山药 …")
    dose: str | None = Field(None, description="a dose with a unit: 6g, 3钱, 3枚")
    dose_g: float | None = Field(None, gt=0, description="or the dose in grams")
    preparation: str | None = Field(None, description="先煎, 后下, 包煎 …")


class PrescriptionIn(_Open):
    """A prescription (the ``tcm check`` JSON); a FHIR MedicationRequest or Bundle is accepted too."""

    items: list[ItemIn] = Field(min_length=1)
    patient: PatientIn | None = None
    days: int | None = Field(None, ge=1)
    setting: Literal["outpatient", "emergency", "inpatient", "discharge"] | None = None
    id: str | None = None


class FHIRIn(_Open):
    """A FHIR R4 MedicationRequest, Medication or Bundle of them (see README)."""

    resourceType: Literal["MedicationRequest", "Bundle", "Medication"]


class FindingsIn(_Open):
    """A findings request (the ``tcm differentiate`` / ``tcm suggest`` JSON)."""

    text: str | None = Field(None, description="free text: 恶寒重，发热轻，无汗，头痛")
    symptoms: list[str] | None = None
    tongue: str | list[str] | None = None
    pulse: str | list[str] | None = None
    disease: str | None = None
    candidates: list[str] | None = None
    western_diagnoses: list[str] | None = None
    top_k: int | None = Field(None, ge=1, le=50)
    patient: PatientIn | None = None


CHECK_IN = {
    "oneOf": [{"$ref": "#/components/schemas/PrescriptionIn"}, {"$ref": "#/components/schemas/FHIRIn"}],
    "description": "a prescription, or a FHIR MedicationRequest / Medication / Bundle",
}


# ---- responses -----------------------------------------------------------------------------------------
class SourceOut(_Open):
    ref: str | None = None
    work: str | None = None
    edition: str | None = None
    section: str | None = None


class FindingOut(_Open):
    rule_id: str
    kind: str
    severity: Literal["info", "warning", "critical"]
    herbs: list[str]
    message: str
    message_zh: str
    message_en: str
    source: SourceOut | None
    override_allowed: bool
    items: list[int]


class Summary(BaseModel):
    info: int
    warning: int
    critical: int


class Coding(_Open):
    system: str
    code: str
    display: str | None = None


class Action(_Open):
    type: Literal["create", "update", "delete"]
    description: str
    resource: dict[str, Any] | None = None
    resourceId: str | None = None


class Suggestion(_Open):
    label: str
    uuid: str | None = None
    isRecommended: bool | None = None
    actions: list[Action] | None = None


class CardSource(_Open):
    label: str
    url: str | None = None
    icon: str | None = None
    topic: dict[str, Any] | None = None


class Card(_Open):
    uuid: str | None = None
    summary: str = Field(max_length=140)
    detail: str | None = None
    indicator: Literal["info", "warning", "critical"]
    source: CardSource
    suggestions: list[Suggestion] | None = None
    selectionBehavior: Literal["at-most-one", "any"] | None = None
    overrideReasons: list[Coding] | None = None
    links: list[dict[str, Any]] | None = None


class ReviewOut(_Open):
    id: str | None = None
    findings: list[FindingOut]
    summary: Summary
    resolution: list[dict[str, Any]]
    kb_version: str
    ruleset_version: str
    cards: list[Card] | None = None


class DifferentiationOut(_Open):
    differentials: list[dict[str, Any]]
    low_confidence: bool
    recognised: list[dict[str, Any]]
    negated: list[dict[str, Any]]
    unrecognised: list[str]
    disease: list[str]
    disease_hints: list[str]
    notes: list[str]
    similar_cases: list[dict[str, Any]]
    models_used: list[str]
    kb_version: str
    ruleset_version: str
    method: str


class SuggestionOut(DifferentiationOut):
    suggestions: list[dict[str, Any]]


class EntityOut(_Open):
    id: str
    name: str
    kind: Literal["herb", "formula", "syndrome"]
    aliases: list[str]
    source: SourceOut | None
    verification: str
    kb_version: str


class SearchHit(_Open):
    kind: str
    id: str
    name: str
    matched: str
    how: str


class SearchOut(_Open):
    query: str
    kind: str
    resolution: dict[str, Any]
    results: list[SearchHit]
    kb_version: str


class VersionOut(_Open):
    engine: str
    api: str
    kb_version: str
    ruleset_version: str
    models: list[dict[str, Any]]
    cds_hooks: str
    fhir: str


class SparqlOut(_Open):
    head: dict[str, Any]
    results: dict[str, Any] | None = None
    boolean: bool | None = None
    truncated: bool | None = None


class Status(_Open):
    status: Literal["ok", "unavailable"]
    checks: dict[str, Any] | None = None


class Pong(_Open):
    ok: bool


class ServiceOut(_Open):
    hook: str
    title: str | None = None
    description: str
    id: str
    prefetch: dict[str, str] | None = None


class Discovery(BaseModel):
    services: list[ServiceOut]


class CDSResponse(_Open):
    cards: list[Card]
    systemActions: list[Action] | None = None


class FeedbackOut(BaseModel):
    stored: int


class AuditOut(BaseModel):
    records: list[dict[str, Any]]


class FeedbackListOut(BaseModel):
    feedback: list[dict[str, Any]]


REQUEST_MODELS: tuple[type[BaseModel], ...] = (PrescriptionIn, FHIRIn, FindingsIn, PatientIn, ItemIn)
