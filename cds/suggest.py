"""Formula suggestion: for the top syndromes, the main formula with doses, the modifications (加减) the findings
call for, each explained — and every suggested prescription safety-reviewed for this patient and adapted until it
carries no critical finding and no dose outside its range, or withheld with the reason.

Adaptation, in order: a dose above its range is set to the range's maximum; a herb forbidden or to be avoided in
pregnancy, a raw or external-only or banned drug, or one side of an incompatible pair (the herb a modification
added, else the lower-ranked herb) is removed. Removing the formula's principal herb (君) withholds the formula.
"""

from __future__ import annotations

from typing import Any

import kb as kbmod
from cds.differentiate import CaseIndex, Scorer, _differentiate, read_findings
from cds.review import review
from kb import model as m

ROLE_RANK = {"君": 0, "臣": 1, "佐": 2, "佐使": 3, "使": 4, None: 5}
MAX_ROUNDS = 8


def _dose_text(dose_g: float | None, amount: str | None) -> str:
    if dose_g is not None:
        return f"{dose_g:g}g"
    return amount or ""


def _main_formula(base: kbmod.KnowledgeBase, sy: m.Syndrome) -> tuple[m.Formula | None, list[str]]:
    """The syndrome's first formula that is not deprecated (a deprecated one gives way to its replacement)."""
    notes: list[str] = []
    for fid in sy.formula_ids:
        seen = set()
        while fid not in seen:
            seen.add(fid)
            dep = base.deprecation("formula", fid)
            if dep is None:
                return base.formulas[fid], notes
            old = base.formulas[fid].name
            if dep["replaced_by"]:
                fid = dep["replaced_by"]
                notes.append(f"{old}已停用，改用{base.formulas[fid].name} / {old} is deprecated; replaced by "
                             f"{base.formulas[fid].name}" + (f"（{dep['reason']}）" if dep["reason"] else ""))  # fmt: skip
            else:
                notes.append(f"{old}已停用 / {old} is deprecated" + (f"（{dep['reason']}）" if dep["reason"] else ""))
                break
    return None, notes


def _items_for(
    base: kbmod.KnowledgeBase, sy: m.Syndrome, formula: m.Formula, present: set[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    items: list[dict[str, Any]] = []
    for ing in formula.composition:
        items.append({
            "herb": ing.written, "herb_id": ing.herb_id, "form_id": ing.form_id, "dose_g": ing.dose_g,
            "amount": ing.amount, "role": ing.role, "note": ing.note, "origin": "formula",
            "why": f"{formula.name}组成（{ing.role or '组成'}药）/ part of {formula.name}" + (f" as {ing.role}" if ing.role else ""),
        })  # fmt: skip
    applied = []
    for mod in sy.modifications:
        hits = [w for w, wid in zip(mod.when, mod.when_ids, strict=True) if wid and wid in present]
        if not hits:
            continue
        because = "、".join(hits)
        removed = []
        for hid in mod.remove:
            before = len(items)
            items = [it for it in items if it["herb_id"] != hid]
            if len(items) < before:
                removed.append(base.herbs[hid].name)
        added = []
        for ing in mod.add:
            if any(it["herb_id"] == ing.herb_id for it in items):
                continue
            items.append({
                "herb": ing.written, "herb_id": ing.herb_id, "form_id": ing.form_id, "dose_g": ing.dose_g,
                "amount": ing.amount, "role": None, "note": ing.note, "origin": "modification",
                "why": f"因{because}而加 / added for {because}" + (f"（{mod.note}）" if mod.note else ""),
            })  # fmt: skip
            added.append(ing.written)
        applied.append({"when": hits, "added": added, "removed": removed, "note": mod.note})
    return items, applied


def _rx(items: list[dict[str, Any]], patient: dict[str, Any] | None) -> dict[str, Any]:
    out: list[dict[str, Any]] = []
    for it in items:
        entry: dict[str, Any] = {"herb": it["herb"]}
        if it["dose_g"] is not None:
            entry["dose_g"] = it["dose_g"]
        elif it["amount"]:
            if it["amount"][-1] in "枚片个只条粒":
                entry["dose"] = it["amount"]
        if it.get("note"):
            entry["preparation"] = it["note"]
        out.append(entry)
    return {"patient": patient or {}, "items": out}


def _adapt(
    base: kbmod.KnowledgeBase, items: list[dict[str, Any]], patient: dict[str, Any] | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Any, str | None]:
    adaptations: list[dict[str, Any]] = []
    for _ in range(MAX_ROUNDS):
        rv = review(_rx(items, patient), base)
        todo = [
            f
            for f in rv.findings
            if f.severity is m.Severity.CRITICAL or (f.kind == "dose" and f.severity is m.Severity.WARNING)
        ]
        if not todo:
            return items, adaptations, rv, None
        f = todo[0]
        if f.kind == "dose" and f.detail.get("range_g"):
            i = f.items[0]
            hi = f.detail["range_g"][1]
            adaptations.append({"herb": items[i]["herb"], "action": "dose", "from_g": items[i]["dose_g"], "to_g": hi,
                                "reason": f.message_zh})  # fmt: skip
            items[i] = {**items[i], "dose_g": hi}
            continue
        drop: dict[str, Any] | None
        if f.kind in ("incompatibility", "antagonism"):
            pair = [items[i] for i in f.items]
            pair.sort(key=lambda it: (it["origin"] != "modification", -ROLE_RANK.get(it["role"], 5)))
            drop = pair[0]
        else:
            drop = items[f.items[0]] if f.items else None
        if drop is None:
            return items, adaptations, rv, f"{f.message_zh} / {f.message_en}"
        adaptations.append({"herb": drop["herb"], "action": "removed", "reason": f.message_zh, "rule_id": f.rule_id})
        if drop["role"] == "君":
            items = [it for it in items if it is not drop]
            return (
                items,
                adaptations,
                review(_rx(items, patient), base),
                (
                    f"主药{drop['herb']}不宜用于此患者（{f.message_zh}），方剂不予推荐 / the principal herb {drop['herb']} "
                    f"is contraindicated for this patient ({f.message_en}); formula withheld"
                ),
            )
        items = [it for it in items if it is not drop]
        if not items:
            return items, adaptations, rv, "no herb of the formula is safe for this patient"
    rv = review(_rx(items, patient), base)
    return items, adaptations, rv, "the prescription could not be made safe automatically"


def suggest(raw: Any, kb: kbmod.KnowledgeBase | None = None, *, scorer: Scorer | None = None,
            cases: CaseIndex | None = None, top_n: int = 3) -> dict[str, Any]:  # fmt: skip
    """Differentiate, then suggest a safe prescription for each of the top syndromes."""
    base = kb if kb is not None else kbmod.default()
    f = read_findings(raw, base)
    diff = _differentiate(base, f, scorer, cases)
    present = {t.symptom_id for t in f.present}
    patient = raw.get("patient") if isinstance(raw, dict) else None
    suggestions = []
    for d in [e for e in diff["differentials"] if e.get("syndrome_id")][:top_n]:
        sy = base.syndromes[d["syndrome_id"]]
        if not sy.formula_ids:
            suggestions.append({"syndrome_id": sy.id, "syndrome": sy.name, "withheld": True,
                                "reason": "the knowledge base names no formula for this syndrome"})  # fmt: skip
            continue
        formula, notes = _main_formula(base, sy)
        if formula is None:
            suggestions.append({"syndrome_id": sy.id, "syndrome": sy.name, "withheld": True, "notes": notes,
                                "reason": "every formula the knowledge base names for this syndrome is deprecated"})  # fmt: skip
            continue
        items, applied = _items_for(base, sy, formula, present)
        items, adaptations, rv, withheld = _adapt(base, items, patient)
        out: dict[str, Any] = {
            "syndrome_id": sy.id,
            "syndrome": sy.name,
            "disease": base.diseases[sy.disease_id].name,
            "score": d["score"],
            "treatment_principle": sy.principle,
            "formula": {
                "id": formula.id,
                "name": formula.name,
                "origin": formula.origin,
                "source": formula.source.as_dict(),
            },  # fmt: skip
            "why": f"{sy.name}治以{sy.principle}，主方{formula.name} / {sy.name} is treated by {sy.principle}; "
            f"main formula {formula.name}",
            "alternatives": [
                base.formulas[x].name
                for x in sy.formula_ids
                if x != formula.id and base.deprecation("formula", x) is None
            ],  # fmt: skip
            "modifications": applied,
            "adaptations": adaptations,
            "withheld": withheld is not None,
        }
        if notes:
            out["notes"] = notes
        if withheld is not None:
            out["reason"] = withheld
        else:
            out["prescription"] = [
                {"herb": it["herb"], "dose_g": it["dose_g"], "dose": _dose_text(it["dose_g"], it["amount"]),
                 "role": it["role"], "preparation": it.get("note"), "why": it["why"]}
                for it in items
            ]  # fmt: skip
            out["review"] = {"summary": rv.summary, "findings": [x.as_dict() for x in rv.findings]}
        suggestions.append(out)
    return {**diff, "suggestions": suggestions}
