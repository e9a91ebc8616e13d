"""A review rendered as CDS Hooks 2.0 cards: one card per finding group (same kind and rule).

Suggestions carry actions that remove an herb or set its dose into range; when the caller has the FHIR resource
being ordered it passes ``resource_for`` to turn each action into the updated resource.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from cds.review import Finding, Review

NAMESPACE = uuid.UUID("6f1c2b1e-3a57-4d0c-9a58-3f1d2c8b9e10")
OVERRIDE_REASONS = (
    {"code": "classical-combination", "system": "https://tcm-cds.org/override-reason", "display": "经典配伍，已知风险 / classical combination, risk accepted"},
    {"code": "patient-benefit", "system": "https://tcm-cds.org/override-reason", "display": "获益大于风险，已告知患者 / benefit outweighs risk, patient informed"},
    {"code": "dose-intended", "system": "https://tcm-cds.org/override-reason", "display": "剂量为有意调整 / dose intended"},
    {"code": "not-applicable", "system": "https://tcm-cds.org/override-reason", "display": "不适用于本患者 / not applicable to this patient"},
)  # fmt: skip


def card_id(review: Review, findings: list[Finding]) -> str:
    key = "|".join([review.prescription_id or "", review.kb_version, findings[0].rule_id,
                    *(",".join(map(str, f.items)) for f in findings)])  # fmt: skip
    return str(uuid.uuid5(NAMESPACE, key))


def review_cards(
    review: Review,
    source_label: str = "TCM CDS 处方安全审核",
    resource_for: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None,
) -> list[dict[str, Any]]:
    groups: OrderedDict[tuple[str, str], list[Finding]] = OrderedDict()
    for f in review.findings:
        groups.setdefault((f.kind, f.rule_id), []).append(f)
    cards = []
    for (_, _), fs in groups.items():
        top = max(fs, key=lambda f: f.severity.rank)
        summary = top.message_zh if len(fs) == 1 else f"{top.message_zh}（等{len(fs)}项）"
        if len(summary) >= 140:
            summary = summary[:138] + "…"
        detail = "\n".join(f"- **{f.severity.value}** {f.message_zh}  \n  {f.message_en}" for f in fs)
        src = top.source
        if src:
            detail += f"\n\n来源 / Source: {src.label()}"
        cid = card_id(review, fs)
        suggestions = []
        seen: set[tuple[Any, ...]] = set()
        for f in fs:
            for s in f.suggestions:
                key = (s["action"], s["item"], s.get("dose_g"))
                if key in seen:
                    continue
                seen.add(key)
                action: dict[str, Any] = {
                    "type": "update",
                    "description": s["label"],
                    "tcm": {
                        "action": s["action"],
                        "item": s["item"],
                        **({"dose_g": s["dose_g"]} if "dose_g" in s else {}),
                    },
                }
                if resource_for is not None:
                    resource = resource_for(s)
                    if resource is not None:
                        action["resource"] = resource
                suggestions.append({"label": s["label"], "uuid": str(uuid.uuid5(NAMESPACE, f"{cid}|{key}")),
                                    "actions": [action]})  # fmt: skip
        card: dict[str, Any] = {
            "uuid": cid,
            "summary": summary,
            "indicator": top.severity.value,
            "detail": detail,
            "source": {"label": source_label, **({"topic": {"code": top.kind, "display": top.rule_id}})},
        }
        if suggestions:
            card["suggestions"] = suggestions
            card["selectionBehavior"] = "at-most-one"
        if all(f.override_allowed for f in fs) and top.severity.value != "info":
            card["overrideReasons"] = list(OVERRIDE_REASONS)
        cards.append(card)
    return cards
