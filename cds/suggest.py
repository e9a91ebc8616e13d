"""Formula suggestion: for the top syndromes, the main formula with doses, the modifications (加减) the findings
call for, each explained — and every suggested prescription safety-reviewed for this patient and adapted until it
carries no critical finding and no dose outside its range, or withheld with the reason.

Adaptation, in order: a dose above its range is set to the range's maximum; a herb forbidden or to be avoided in
pregnancy, a raw or external-only or banned drug, or one side of an incompatible pair (the herb a modification
added, else the lower-ranked herb) is removed. Removing the formula's principal herb (君) withholds the formula.

Where the knowledge base records the Pharmacopoeia's 成药 of the main formula, each is listed under
``patent_medicines``, reviewed for the same patient as one prescription item and marked unsuitable with the reason
when that review is critical (天王补心丸 holds 朱砂: not in pregnancy).
"""

from __future__ import annotations

from typing import Any

import kb as kbmod
from cds.differentiate import (
    CaseIndex,
    Findings,
    Scorer,
    SimilarCase,
    _differentiate,
    _parts,
    read_findings,
    similar_cases,
)
from cds.review import child_dose_share, review
from kb import model as m
from kb.derive_doses import proportion_factor, settle

ROLE_RANK = {"君": 0, "臣": 1, "佐": 2, "佐使": 3, "使": 4, None: 5}
MAX_ROUNDS = 8
HERB_SUGGESTIONS = 5  # model- and case-based herbs offered beside each prescription
HERB_CANDIDATES = 12  # at most this many are safety-checked per prescription


PRESCHOOL_SHARE = 2 / 3  # the share the 儿科 syndromes' modifications are written for (kb/data/diseases/erke.yaml)
DERIVED_NOTE = (
    "出处只给原方用量，汤剂剂量系本库按原方比例折算入药典用量范围（dose_derived），请酌定 / the source gives "
    "only the original amounts: the decoction doses marked dose_derived were scaled from the original "
    "proportion into the Pharmacopoeia ranges by this knowledge base; adjust them"
)


def herb_text(p: dict[str, Any]) -> str:
    """A prescribed herb as a physician reads it: 人参9g（可以党参代）."""
    subs = p.get("substitutes")
    return f"{p['herb']}{p.get('dose') or ''}" + (f"（可以{'、'.join(subs)}代）" if subs else "")


def _child_share(patient: dict[str, Any] | None) -> tuple[float, str, str] | None:
    """The paediatric share of the adult dose for the request's patient (cds.review.child_dose_share)."""
    age = patient.get("age_years") if isinstance(patient, dict) else None
    return child_dose_share(age) if isinstance(age, (int, float)) and not isinstance(age, bool) else None


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
    subs = base.substitutes_in(formula.id)
    for ing in formula.composition:
        items.append({
            "herb": ing.written, "herb_id": ing.herb_id, "form_id": ing.form_id, "dose_g": ing.dose_g,
            "amount": ing.amount, "role": ing.role, "note": ing.note, "origin": "formula",
            "why": f"{formula.name}组成（{ing.role or '组成'}药）/ part of {formula.name}" + (f" as {ing.role}" if ing.role else ""),
            "substitutes": [base.herbs[x.substitute_id].name for x in subs.get(ing.herb_id, ())],
            "dose_derived": ing.dose_derived,
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


def _scale_down(
    base: kbmod.KnowledgeBase, items: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A formula whose listed grams are the original batch (银翘散: 连翘 30 g … "表列为全方总量") is reduced as its
    usage says, 用量按原方比例酌减: one factor for all its herbs (kb.derive_doses.proportion_factor), each dose then
    rounded and kept inside its range. Only when two or more of its herbs, and at least a third of those with a
    range, exceed their maximum; never scaled up."""
    herbs = [(n, it, base.safety(it["herb_id"], it["form_id"]).dose_g) for n, it in enumerate(items)
             if it["origin"] == "formula" and it["dose_g"] is not None]  # fmt: skip
    ranged = [(n, it, r) for n, it, r in herbs if r is not None]
    over = sum(1 for _, it, r in ranged if it["dose_g"] > r[1])
    if over < 2 or 3 * over < len(ranged):
        return items, []
    s = proportion_factor([it["dose_g"] for _, it, _ in ranged], [r for _, _, r in ranged])
    if s >= 1:
        return items, []
    items, changed = list(items), []
    for n, it, r in herbs:
        d, _ = settle(it["dose_g"] * s, r)
        if d != it["dose_g"]:
            changed.append({"herb": it["herb"], "from_g": it["dose_g"], "to_g": d})
            items[n] = {**it, "dose_g": d}
    note = (f"原方剂量超出{over}味药的常用量，按原方比例酌减（×{s:.2f}）/ the listed doses exceed the range of {over} "
            f"herbs: reduced in proportion (×{s:.2f})")  # fmt: skip
    return items, [{"action": "scaled", "factor": round(s, 3), "reason": note, "doses": changed}]


def _child_doses(
    base: kbmod.KnowledgeBase, sy: m.Syndrome, items: list[dict[str, Any]], patient: dict[str, Any] | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A child under 7 gets the share of the adult dose 中医儿科学 gives for the age (cds.review.CHILD_DOSE_SHARE):
    the formula's herbs and the modifications. Those of a 儿科 syndrome are written for a child of 3 to 7 (2/3 of
    the adult dose): they change only for a younger child, by its share over 2/3."""
    child = _child_share(patient)
    if child is None:
        return items, []
    share, label, frac = child
    age = patient["age_years"]  # type: ignore[index]
    paediatric = base.diseases[sy.disease_id].discipline == "儿科"
    items, changed = list(items), []
    for n, it in enumerate(items):
        factor = share / PRESCHOOL_SHARE if it["origin"] == "modification" and paediatric else share
        if it["dose_g"] is None or factor >= 1:
            continue
        d, _ = settle(it["dose_g"] * factor, None)
        changed.append({"herb": it["herb"], "from_g": it["dose_g"], "to_g": d})
        items[n] = {**it, "dose_g": d}
    if not changed:
        return items, []
    note = f"{label}用成人量的{frac}（中医儿科学）/ {frac} of the adult dose for a child of {age:g} years"
    return items, [{"action": "child_dose", "share": frac, "reason": note, "doses": changed}]


def _adapt(
    base: kbmod.KnowledgeBase,
    sy: m.Syndrome,
    items: list[dict[str, Any]],
    patient: dict[str, Any] | None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Any, str | None]:
    items, adaptations = _scale_down(base, items)
    items, for_child = _child_doses(base, sy, items, patient)
    adaptations += for_child
    for _ in range(MAX_ROUNDS):
        rv = review(_rx(items, patient), base)
        todo = [
            f
            for f in rv.findings
            if f.severity is m.Severity.CRITICAL or (f.kind == "dose" and f.severity is m.Severity.WARNING)
        ]
        if not todo:
            return items, adaptations, rv, None
        doses = [f for f in todo if f.kind == "dose" and f.detail.get("range_g")]
        if doses:  # every over-range dose at once: each is brought to its maximum
            for f in doses:
                i, hi = f.items[0], f.detail["range_g"][1]
                adaptations.append({"herb": items[i]["herb"], "action": "dose", "from_g": items[i]["dose_g"],
                                    "to_g": hi, "reason": f.message_zh})  # fmt: skip
                items[i] = {**items[i], "dose_g": hi}
            continue
        f = todo[0]
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


# ---- model- and case-based herbs -----------------------------------------------------------------------
def _herb_pool(
    base: kbmod.KnowledgeBase, f: Findings, herb_model: Any, hits: list[SimilarCase]
) -> list[dict[str, Any]]:
    """Herbs the herb-rec model and the similar cases point to, best first. A herb's score is the mean of the
    model's (scaled to 1 for its top herb) and the similarity-weighted share of the similar cases prescribing it,
    over the sources available."""
    pool: dict[str, dict[str, Any]] = {}
    if herb_model is not None:
        recs, used = herb_model.recommend(base, [t.symptom_id for t in f.present], k=30)
        names = "、".join(base.symptoms[s].name for s in used[:6]) + ("等" if len(used) > 6 else "")
        for r in recs:
            pool[r.herb_id] = {"model": {"score": round(r.score, 4), "findings": [base.symptoms[s].name for s in used]},
                               "why": [f"herb-rec模型据{names}推荐 / the herb-rec model suggests it for {names}"]}  # fmt: skip
    total = sum(max(h.similarity, 0.0) for h in hits)
    if total > 0:
        per: dict[str, tuple[float, list[float], list[str]]] = {}
        for h in hits:
            for hid in {hid for _, hid, _ in h.herbs if hid}:
                w, doses, ids = per.get(hid, (0.0, [], []))
                doses += [d for _, x, d in h.herbs if x == hid and d]
                per[hid] = (w + max(h.similarity, 0.0), doses, [*ids, h.case_id])
        for hid, (w, doses, ids) in per.items():
            if base.deprecation("herb", hid) is not None:
                continue
            e = pool.setdefault(hid, {"why": []})
            e["cases"] = {"share": round(w / total, 4), "case_ids": ids, "doses_g": doses}
            e["why"].append(f"见于{len(ids)}则相似医案 / prescribed in {len(ids)} of the {len(hits)} similar cases")
    sources = int(herb_model is not None) + int(total > 0)
    out = []
    for hid, e in pool.items():
        score = (e.get("model", {}).get("score", 0.0) + e.get("cases", {}).get("share", 0.0)) / max(sources, 1)
        out.append({"herb_id": hid, "score": score, **e})
    out.sort(key=lambda e: (-e["score"], e["herb_id"]))
    return out


def _round_dose(d: float) -> float:
    """A dose as a prescription writes it: whole grams from 3 g, half grams from 1 g, else two decimals."""
    if d >= 3:
        return float(round(d))
    if d >= 1:
        return round(d * 2) / 2
    return max(round(d, 2), 0.01)


def _herb_dose(herb: m.Herb, case_doses: list[float]) -> tuple[float | None, str]:
    """The median dose of the similar cases, kept inside the herb's range; else the middle of the range."""
    lo, hi = herb.safety.dose_g if herb.safety.dose_g else (None, None)
    if case_doses:
        d = sorted(case_doses)[len(case_doses) // 2]
        if lo is not None and hi is not None:
            return min(max(_round_dose(d), lo), hi), "similar cases (median), within the range"
        return _round_dose(d), "similar cases (median)"
    if lo is not None and hi is not None:
        return min(max(_round_dose((lo + hi) / 2), lo), hi), "middle of the herb's dose range"
    return None, "no dose range known"


def _extra_herbs(
    base: kbmod.KnowledgeBase, pool: list[dict[str, Any]], items: list[dict[str, Any]], patient: dict[str, Any] | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The pool's best herbs that the prescription lacks and that stay safe added to it for this patient."""
    have = {it["herb_id"] for it in items}
    offered: list[dict[str, Any]] = []
    withheld: list[dict[str, Any]] = []
    base_rx = _rx(items, patient)
    child = _child_share(patient)
    for e in [e for e in pool if e["herb_id"] not in have][:HERB_CANDIDATES]:
        herb = base.herbs[e["herb_id"]]
        dose, dose_from = _herb_dose(herb, e.get("cases", {}).get("doses_g", []))
        if dose is not None and child is not None:  # adult doses from the cases and ranges: the child's share
            dose, dose_from = settle(dose * child[0], None)[0], f"{dose_from}, ×{child[2]} for a child"
        entry: dict[str, Any] = {"herb": herb.name}
        if dose is not None:
            entry["dose_g"] = dose
        rv = review({**base_rx, "items": [*base_rx["items"], entry]}, base)
        pos = len(base_rx["items"])
        bad = [x for x in rv.findings if pos in x.items and (x.severity is m.Severity.CRITICAL or
                                                             (x.kind == "dose" and x.severity is m.Severity.WARNING))]  # fmt: skip
        if bad:
            withheld.append(
                {"herb": herb.name, "herb_id": herb.id, "reason": f"{bad[0].message_zh} / {bad[0].message_en}"}
            )
            continue
        offered.append({
            "herb": herb.name, "herb_id": herb.id, "dose_g": dose, "dose": _dose_text(dose, None),
            "dose_range_g": list(herb.safety.dose_g) if herb.safety.dose_g else None, "dose_from": dose_from,
            "score": round(e["score"], 4), "sources": {k: e[k] for k in ("model", "cases") if k in e},
            "why": "；".join(e["why"]),
            "cautions": [x.message_zh for x in rv.findings if pos in x.items],
        })  # fmt: skip
        if len(offered) == HERB_SUGGESTIONS:
            break
    for o in offered:
        if "cases" in o["sources"]:
            o["sources"]["cases"] = {k: v for k, v in o["sources"]["cases"].items() if k != "doses_g"}
    return offered, withheld


def _patent_medicines(
    base: kbmod.KnowledgeBase, formula: m.Formula, patient: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """The Pharmacopoeia's 成药 of the formula, each reviewed for this patient as one prescription item: one that
    draws a critical finding (柏子养心丸 成药 holds 朱砂, forbidden in pregnancy) is marked unsuitable, with why."""
    out = []
    for v in formula.versions:
        if v.kind != "pharmacopoeia":
            continue
        name = v.name or formula.name
        rv = review({"patient": patient or {}, "items": [{"herb": name}]}, base)
        critical = [f for f in rv.findings if f.severity is m.Severity.CRITICAL]
        entry: dict[str, Any] = {
            "name": name,
            "composition": [base.herbs[i.herb_id].name for i in v.composition],
            "note": v.note,
            "source": v.source.as_dict(),
            "suitable": not critical,
            "review": {"summary": rv.summary, "findings": [f.as_dict() for f in rv.findings]},
        }
        if critical:
            entry["reason"] = "; ".join(f"{f.message_zh} / {f.message_en}" for f in critical)
        out.append(entry)
    return out


def suggest(raw: Any, kb: kbmod.KnowledgeBase | None = None, *, models: Any = None, scorer: Scorer | None = None,
            cases: CaseIndex | None = None, top_n: int = 3) -> dict[str, Any]:  # fmt: skip
    """Differentiate, then suggest a safe prescription for each of the top syndromes, with the herbs the learned
    herb model and the similar cases add (``models``: ``cds.learned.Models``; ``scorer``/``cases`` override it)."""
    base = kb if kb is not None else kbmod.default()
    f = read_findings(raw, base)
    scorer, cases = _parts(models, scorer, cases)
    hits = similar_cases(base, f, cases) if cases is not None else []
    diff = _differentiate(base, f, scorer, cases, hits)
    herb_model = getattr(models, "herbs", None)
    pool = _herb_pool(base, f, herb_model, hits)
    if herb_model is not None:
        diff["models_used"] = [*diff["models_used"], herb_model.name]
        diff["method"] += "+" + herb_model.name
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
        items, adaptations, rv, withheld = _adapt(base, sy, items, patient)
        out: dict[str, Any] = {
            "syndrome_id": sy.id,
            "syndrome": sy.name,
            "disease": base.diseases[sy.disease_id].name,
            "score": d["score"],
            "treatment_principle": sy.principle,
            "codes": d.get("codes", []),
            "formula": {
                "id": formula.id,
                "name": formula.name,
                "origin": formula.origin,
                "usage": formula.usage,
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
        if patent := _patent_medicines(base, formula, patient):
            out["patent_medicines"] = patent
        if any(ing.dose_derived for ing in formula.composition):
            notes = [*notes, DERIVED_NOTE]
        if notes:
            out["notes"] = notes
        if withheld is not None:
            out["reason"] = withheld
        else:
            out["prescription"] = [
                {"herb": it["herb"], "dose_g": it["dose_g"], "dose": _dose_text(it["dose_g"], it["amount"]),
                 "role": it["role"], "preparation": it.get("note"), "why": it["why"],
                 **({"substitutes": it["substitutes"]} if it.get("substitutes") else {}),
                 **({"dose_derived": True} if it.get("dose_derived") and it["dose_g"] is not None else {})}
                for it in items
            ]  # fmt: skip
            out["review"] = {"summary": rv.summary, "findings": [x.as_dict() for x in rv.findings]}
            if pool:
                out["herb_suggestions"], withheld_herbs = _extra_herbs(base, pool, items, patient)
                if withheld_herbs:
                    out["herb_suggestions_withheld"] = withheld_herbs
        suggestions.append(out)
    return {**diff, "suggestions": suggestions}
