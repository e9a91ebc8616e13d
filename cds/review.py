"""Prescription safety review, driven entirely by the knowledge base.

``review(prescription) -> Review`` resolves every item (an item it cannot resolve is a finding, never skipped),
then runs each registered check kind. A check kind is a small pure function ``(ctx) -> list[Finding]``; the
clinical facts it reads (rule members, dose ranges, toxicity, pregnancy class, preparation) all come from the
knowledge base, so a curator's edit changes the review without a code change.

Kinds and their severities: ``incompatibility`` (十八反) and ``antagonism`` (十九畏): the rule's severity
(critical); ``pregnancy``: 禁用/忌用 critical, 慎用 warning, and a warning asking to confirm pregnancy when it is
unknown and a 禁用 herb is present; ``dose``: above a toxic herb's maximum critical, above any other herb's range
warning, below it info; ``toxic``: raw forms that must be processed, external-only or banned drugs, controlled
toxic drugs; ``duplicate``; ``preparation``; ``unresolved``; ``duration``; ``population``.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import kb as kbmod
from cds.prescription import Item, Patient, Prescription, parse
from kb import model as m
from kb.names import Resolution
from kb.registry import Registry

SEVERITIES = ("info", "warning", "critical")
PREGNANCY_SEVERITY = {"禁用": m.Severity.CRITICAL, "忌用": m.Severity.CRITICAL, "慎用": m.Severity.WARNING}
DECOCTION_FLAGS = ("先煎", "后下", "包煎", "另煎", "烊化", "冲服", "溶入", "生汁兑服")


@dataclass(frozen=True, slots=True)
class Finding:
    rule_id: str
    kind: str
    severity: m.Severity
    herbs: tuple[str, ...]  # item names as written
    message_zh: str
    message_en: str
    source: m.SourceRef | None
    override_allowed: bool = True
    items: tuple[int, ...] = ()  # indexes into the prescription's items
    detail: dict[str, Any] = field(default_factory=dict)
    suggestions: tuple[dict[str, Any], ...] = ()  # {"label", "action": remove|set_dose, "item", "dose_g"?}

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "kind": self.kind,
            "severity": self.severity.value,
            "herbs": list(self.herbs),
            "message": f"{self.message_zh} / {self.message_en}",
            "message_zh": self.message_zh,
            "message_en": self.message_en,
            "source": self.source.as_dict() if self.source else None,
            "override_allowed": self.override_allowed,
            "items": list(self.items),
            **({"detail": self.detail} if self.detail else {}),
            **({"suggestions": list(self.suggestions)} if self.suggestions else {}),
        }


@dataclass(frozen=True, slots=True)
class Review:
    findings: tuple[Finding, ...]
    lines: tuple[Line, ...]
    kb_version: str
    ruleset_version: str
    prescription_id: str | None = None

    @property
    def resolution(self) -> list[dict[str, Any]]:
        """How every item resolved (in order): the herb, the form, the dose in grams, candidates when unknown."""
        rows = []
        for ln in self.lines:
            r, it = ln.facts.res, ln.item
            row: dict[str, Any] = {
                "item": it.pos, "input": it.herb, "resolved": r.resolved, "herb_id": r.id, "name": r.name,
                "form": r.form, "form_id": r.form_id, "dose_g": it.dose_g,
            }  # fmt: skip
            if r.note:
                row["note"] = r.note
            if it.count_text:
                row["count"] = it.count_text
            if not r.resolved:
                row["candidates"] = list(r.candidates)
            rows.append(row)
        return rows

    @property
    def summary(self) -> dict[str, int]:
        counts = dict.fromkeys(SEVERITIES, 0)
        for f in self.findings:
            counts[f.severity.value] += 1
        return counts

    @property
    def highest(self) -> str | None:
        return max((f.severity for f in self.findings), key=lambda s: s.rank).value if self.findings else None

    def as_dict(self) -> dict[str, Any]:
        return {
            **({"id": self.prescription_id} if self.prescription_id else {}),
            "findings": [f.as_dict() for f in self.findings],
            "summary": self.summary,
            "resolution": self.resolution,
            "kb_version": self.kb_version,
            "ruleset_version": self.ruleset_version,
        }


@dataclass(frozen=True, slots=True)
class Facts:
    """What the knowledge base says about one written herb name (memoised per knowledge base)."""

    res: Resolution
    safety: m.Safety | None
    source: m.SourceRef | None  # where the safety facts come from (the form's entry when it has its own)
    pairs: tuple[tuple[m.Rule, str], ...]  # pair rules this name is a member of, with its side
    members: dict[str, tuple[m.Rule, ...]]  # list rules (controlled, banned, herb_duration) it is a member of
    fact_id: dict[str, str]  # safety field -> the id of the entry that sets it (form or herb)
    triggers: frozenset[str] = frozenset()  # which check kinds can find anything for this name (see TRIGGERS)
    pair_keys: tuple[tuple[str, str], ...] = ()  # (rule id, side) of the pair rules this name is a member of


class Line(NamedTuple):
    """One prescription item with what the knowledge base says about it."""

    item: Item
    facts: Facts
    # a herb of a Pharmacopoeia 成药 written as one item: made by the Pharmacopoeia's method (藿香正气水 holds
    # 生半夏 legally), so the rules for decoction pieces (processing, controlled dispensing) do not apply to it
    patent: bool = False

    @property
    def res(self) -> Resolution:
        return self.facts.res

    @property
    def safety(self) -> m.Safety | None:
        return self.facts.safety

    @property
    def label(self) -> str:  # the resolved name, for messages: 川乌（生川乌）
        r = self.facts.res
        return (r.name or self.item.herb) + (f"（{r.form}）" if r.form and r.form != r.name else "")


@dataclass
class Context:
    rx: Prescription
    kb: kbmod.KnowledgeBase
    plan: Plan
    lines: list[Line]


Check = Callable[[Context], list[Finding]]
CHECKS: Registry[Check] = Registry("check kind")


# ---- the per-knowledge-base plan: rule membership indexed by herb ---------------------------------------
class Plan:
    def __init__(self, kb: kbmod.KnowledgeBase):
        self.kb = kb
        self._facts: dict[str, Facts] = {}
        self.checks: tuple[tuple[Check, frozenset[str] | None], ...] = ()
        self.pairs: dict[str, list[tuple[m.Rule, str, m.Member]]] = defaultdict(list)
        self.members: dict[str, dict[str, list[tuple[m.Rule, m.Member]]]] = defaultdict(lambda: defaultdict(list))
        self.duration: list[m.Rule] = []
        for rule in kb.rules.values():
            if rule.kind in ("incompatibility", "antagonism"):
                for side, mems in (("a", rule.a), ("b", rule.b)):
                    for mem in mems:
                        self.pairs[mem.herb_id].append((rule, side, mem))
            elif rule.kind == "duration":
                self.duration.append(rule)
            else:
                for mem in rule.members:
                    self.members[rule.kind][mem.herb_id].append((rule, mem))

    def formula_parts(self, it: Item) -> list[Line]:
        """The herbs of a formula written as one prescription item (六一散, 左金丸), checked one by one. Where the
        knowledge base records the Pharmacopoeia's 成药 of the name, what a pharmacy dispenses is checked too
        (``Formula.dispensed``): 柏子养心丸 成药 holds 朱砂, the classical formula of the name does not."""
        r = self.kb.resolve(it.herb, "formula")
        if not r.resolved or r.id is None:
            return []
        formula = self.kb.formulas[r.id]
        out = []
        for ing, chp in formula.dispensed(it.herb):
            per = "（《中国药典》成药组成） / (as the Pharmacopoeia's 成药 lists it)" if chp else ""
            f = self.facts(ing.written)
            via = f.res._replace(note=f"{formula.name} 的组成药{per} / an ingredient of {formula.name}")
            # the item's dose is that of a powder or pill, not of a decoction: parts are not dose- or preparation-checked
            out.append(Line(it._replace(dose_g=None), replace(f, res=via), chp))
        return out

    def combined_parts(self, it: Item) -> list[Line]:
        """The drugs of a name that writes several at once (川象贝, 生熟地, 乳没, 朱天冬 = 天冬 + 朱砂), checked one by one."""
        rs = self.kb.names.split_combined(it.herb)
        if not rs:
            return []
        out = []
        for r in rs:
            f = self.facts(r.name or r.input)
            via = f.res._replace(note=f"{it.herb} 中的一味 / one of the drugs written as {it.herb}")
            # one dose for two drugs says nothing about either: the parts are not dose-checked
            out.append(Line(it._replace(dose_g=None), replace(f, res=via)))
        return out

    def facts(self, name: str) -> Facts:
        hit = self._facts.get(name)
        if hit is not None:
            return hit
        kb = self.kb
        r = kb.resolve_herb(name)
        if not r.resolved or r.id is None:
            f = Facts(r, None, None, (), {}, {}, frozenset({"unresolved"}))
        else:
            form = kb.forms[r.form_id] if r.form_id else None
            own = form.own_fields if form else frozenset()
            f = Facts(
                res=r,
                safety=kb.safety(r.id, r.form_id),
                source=form.source if form else kb.herbs[r.id].source,
                pairs=tuple((rule, side) for rule, side, mem in self.pairs.get(r.id, ()) if matches(mem, r)),
                members={kind: rules for kind, by in self.members.items()
                         if (rules := tuple(rule for rule, mem in by.get(r.id, ()) if matches(mem, r)))},
                fact_id={fld: str(r.form_id if fld in own else r.id)
                         for fld in ("pregnancy", "dose_g", "preparation", "populations")},
            )  # fmt: skip
            triggers = _triggers(f)
            if kb.deprecated and (kb.deprecation("herb", r.id) or (r.form_id and kb.deprecation("form", r.form_id))):
                triggers |= {"deprecated"}
            f = replace(f, triggers=triggers, pair_keys=tuple((rule.id, side) for rule, side in f.pairs))
        if len(self._facts) < 100_000:
            self._facts[name] = f
        return f


def _triggers(f: Facts) -> frozenset[str]:
    t = {"resolved"}
    sf = f.safety
    if f.members:
        t.add("member")
    if sf is not None:
        for name, present in (("pregnancy", sf.pregnancy), ("dose", sf.dose_g), ("preparation", sf.preparation),
                              ("toxicity", sf.toxicity), ("internal_use", sf.internal_use != "allowed"),
                              ("populations", sf.populations)):  # fmt: skip
            if present:
                t.add(name)
    return frozenset(t)


# A check kind runs only when one of its triggers is present in the prescription (a fast path: most items of
# most prescriptions can find nothing for most kinds). Kinds not listed here always run.
TRIGGERS: dict[str, frozenset[str]] = {
    "unresolved": frozenset({"unresolved"}),
    "incompatibility": frozenset({"pair"}),
    "antagonism": frozenset({"pair"}),
    "pregnancy": frozenset({"pregnancy"}),
    "dose": frozenset({"dose"}),
    "toxic": frozenset({"member", "internal_use"}),
    "duplicate": frozenset({"duplicate"}),
    "preparation": frozenset({"preparation"}),
    "duration": frozenset({"days", "member"}),
    "population": frozenset({"toxicity", "populations"}),
    "deprecated": frozenset({"deprecated"}),
}


@functools.lru_cache(maxsize=8)
def plan_for(kb: kbmod.KnowledgeBase) -> Plan:
    return Plan(kb)


def matches(mem: m.Member, res: Resolution) -> bool:
    if res.id != mem.herb_id:
        return False
    if mem.form_id is not None:
        return res.form_id == mem.form_id
    return res.raw if mem.raw_only else True


# ---- the review ------------------------------------------------------------------------------------------
def review(prescription: Prescription | dict[str, Any], kb: kbmod.KnowledgeBase | None = None) -> Review:
    """Review one prescription (a ``Prescription`` or its JSON object). Pure and thread-safe."""
    rx = prescription if isinstance(prescription, Prescription) else parse(prescription)
    base = kb if kb is not None else kbmod.default()
    plan = plan_for(base)
    if len(plan.checks) != len(CHECKS):  # first use, or a check kind registered after the plan was made
        plan.checks = tuple((CHECKS.get(n), TRIGGERS.get(n)) for n in CHECKS)
    facts = plan.facts
    lines = []
    for it in rx.items:
        f = facts(it.herb)
        if not f.res.resolved and (parts := plan.formula_parts(it) or plan.combined_parts(it)):
            lines += (
                parts  # a formula written as one item (六一散, 左金丸) or two drugs in one name (川象贝): each checked
            )
        else:
            lines.append(Line(it, f))
    present: set[str] = set()
    sides: dict[str, str] = {}
    pair = False
    for ln in lines:
        ft = ln.facts
        present |= ft.triggers
        for rid, side in ft.pair_keys:  # a pair rule can fire only when both of its sides are present
            seen = sides.setdefault(rid, side)
            pair = pair or seen != side
    if pair:
        present.add("pair")
    ids = [ln.facts.res.id for ln in lines if ln.facts.res.id]
    if len(set(ids)) != len(ids):
        present.add("duplicate")
    if rx.days is not None:
        present.add("days")
    ctx = Context(rx, base, plan, lines)
    findings: list[Finding] = []
    for check, triggers in plan.checks:
        if triggers is None or not triggers.isdisjoint(present):
            findings += check(ctx)
    if len(findings) > 1:
        findings.sort(key=lambda f: (-f.severity.rank, f.items[:1] or (1 << 30,), f.rule_id))
    return Review(
        findings=tuple(findings), lines=tuple(lines), kb_version=str(base.version),
        ruleset_version=base.ruleset_version, prescription_id=rx.id,
    )  # fmt: skip


def _fmt(x: float) -> str:
    return f"{x:g}"


# ---- check kinds -----------------------------------------------------------------------------------------
@CHECKS.register("unresolved")
def check_unresolved(ctx: Context) -> list[Finding]:
    out = []
    for ln in ctx.lines:
        if ln.facts.res.resolved:
            continue
        cands = "、".join(ln.res.candidates) or "无"
        why = f"（{ln.res.note}）" if ln.res.note else ""
        out.append(
            Finding(
                rule_id="unresolved",
                kind="unresolved",
                severity=m.Severity.WARNING,
                herbs=(ln.item.herb,),
                message_zh=f"无法识别药名“{ln.item.herb}”{why}，未对其做安全审核；候选：{cands}",
                message_en=f"Unknown herb name '{ln.item.herb}': it was not safety-checked; candidates: "
                f"{', '.join(ln.res.candidates) or 'none'}",
                source=None,
                items=(ln.item.pos,),
                detail={"candidates": list(ln.res.candidates)},
            )  # fmt: skip
        )
    return out


def _label(ln: Line) -> str:
    """The item as written, and the herb inside it when the item is a formula written as one item."""
    r = ln.facts.res
    return ln.item.herb if r.input == ln.item.herb else f"{ln.item.herb}（{r.input}）"  # the part as its list writes it


def _pair_check(kind: str) -> Check:
    def check(ctx: Context) -> list[Finding]:
        hits: dict[str, dict[str, set[int]]] = {}
        rules: dict[str, m.Rule] = {}
        for pos, ln in enumerate(ctx.lines):
            for rule, side in ln.facts.pairs:
                if rule.kind == kind:
                    hits.setdefault(rule.id, {"a": set(), "b": set()})[side].add(pos)
                    rules[rule.id] = rule
        if not hits:
            return []
        out = []
        for rid, sides in hits.items():
            if not sides["a"] or not sides["b"]:
                continue
            rule = rules[rid]
            for pa in sorted(sides["a"]):
                for pb in sorted(sides["b"]):
                    if pa == pb:
                        continue
                    la, lb = ctx.lines[pa], ctx.lines[pb]
                    ia, ib = la.item.pos, lb.item.pos
                    a, b = la.item.herb, lb.item.herb
                    na, nb = _label(la), _label(lb)
                    out.append(
                        Finding(
                            rule_id=rule.id,
                            kind=kind,
                            severity=rule.severity,
                            herbs=(a,) if ia == ib else (a, b),
                            message_zh=f"{na} 与 {nb}：{rule.message_zh}",
                            message_en=f"{na} with {nb}: {rule.message_en}",
                            source=rule.source,
                            items=(ia,) if ia == ib else (ia, ib),
                            detail={"note": rule.note} if rule.note else {},
                            suggestions=(
                                {"label": f"删除 {b} / remove {b}", "action": "remove", "item": ib},
                                {"label": f"删除 {a} / remove {a}", "action": "remove", "item": ia},
                            )
                            if ia != ib
                            else ({"label": f"删除 {a} / remove {a}", "action": "remove", "item": ia},),
                        )  # fmt: skip
                    )
        return out

    check.__name__ = f"check_{kind}"
    return check


CHECKS.register("incompatibility", _pair_check("incompatibility"))
CHECKS.register("antagonism", _pair_check("antagonism"))


@CHECKS.register("pregnancy")
def check_pregnancy(ctx: Context) -> list[Finding]:
    p = ctx.rx.patient
    if p.pregnant is False:
        return []
    confirm = p.pregnant is None and p.may_be_pregnant()
    if p.pregnant is None and not confirm:
        return []
    out = []
    for ln in ctx.lines:
        safety = ln.facts.safety
        cls = safety.pregnancy if safety is not None else None
        if cls is None:
            continue
        src = ln.facts.source
        rid = f"pregnancy.{ln.facts.fact_id['pregnancy']}"
        name = _label(ln)  # 柏子养心丸（朱砂）: the drug inside a formula written as one item
        if p.pregnant:
            out.append(
                Finding(
                    rule_id=rid,
                    kind="pregnancy",
                    severity=PREGNANCY_SEVERITY[cls],
                    herbs=(ln.item.herb,),
                    message_zh=f"{name}：孕妇{cls}",
                    message_en=f"{name}: {_preg_en(cls)} in pregnancy",
                    source=src,
                    items=(ln.item.pos,),
                    detail={"pregnancy": cls},
                    suggestions=(
                        {
                            "label": f"删除 {ln.item.herb} / remove {ln.item.herb}",
                            "action": "remove",
                            "item": ln.item.pos,
                        },
                    ),
                )  # fmt: skip
            )
        elif cls == "禁用":
            out.append(
                Finding(
                    rule_id=rid,
                    kind="pregnancy",
                    severity=m.Severity.WARNING,
                    herbs=(ln.item.herb,),
                    message_zh=f"{name}：孕妇禁用；患者是否妊娠未知，请确认",
                    message_en=f"{name} is forbidden in pregnancy and the patient's pregnancy status is unknown: "
                    "confirm before signing",
                    source=src,
                    items=(ln.item.pos,),
                    detail={"pregnancy": cls, "confirm_pregnancy": True},
                )  # fmt: skip
            )
    return out


def _preg_en(cls: str) -> str:
    return {"禁用": "forbidden", "忌用": "to be avoided", "慎用": "to be used with caution"}[cls]


# 中医儿科学 (儿科用药剂量): a child's daily dose as a share of the adult's, by age — (under this age in years,
# share, group, share as written). From school age (7) the adult dose.
CHILD_DOSE_SHARE = (
    (28 / 365, 1 / 6, "新生儿", "1/6"),
    (1.0, 1 / 3, "乳婴儿", "1/3"),
    (3.0, 1 / 2, "幼儿", "1/2"),
    (7.0, 2 / 3, "学龄前儿童", "2/3"),
)


def child_dose_share(age_years: float | None) -> tuple[float, str, str] | None:
    """(share of the adult dose, age group, share as written) for a child under 7, else None."""
    if age_years is None:
        return None
    return next(((share, label, frac) for upper, share, label, frac in CHILD_DOSE_SHARE if age_years < upper), None)


@CHECKS.register("dose")
def check_dose(ctx: Context) -> list[Finding]:
    out = []
    child = child_dose_share(ctx.rx.patient.age_years)
    for ln in ctx.lines:
        d = ln.item.dose_g
        safety = ln.facts.safety
        if d is None or safety is None or safety.dose_g is None:
            continue
        lo, hi = safety.dose_g
        rid = f"dose.{ln.facts.fact_id['dose_g']}"
        if child is not None and d <= hi + 1e-9:
            share, label, frac = child
            c_lo, c_hi = lo * share, hi * share
            if d > c_hi + 1e-9:  # an adult dose for a young child: the paediatric reference, as information
                out.append(
                    Finding(
                        rule_id=f"{rid}.child",
                        kind="dose",
                        severity=m.Severity.INFO,
                        herbs=(ln.item.herb,),
                        source=_regulation(ctx.kb, "erkexue"),
                        items=(ln.item.pos,),
                        detail={
                            "dose_g": d,
                            "range_g": [lo, hi],
                            "child_range_g": [round(c_lo, 2), round(c_hi, 2)],
                            "share": frac,
                        },
                        message_zh=f"{ln.item.herb} {_fmt(d)} g 超过{label}参考用量（成人量的{frac}：{_fmt(round(c_lo, 2))}–"
                        f"{_fmt(round(c_hi, 2))} g）",
                        message_en=f"{ln.item.herb} {_fmt(d)} g is above the reference for this age ({frac} of the adult "
                        f"dose: {_fmt(round(c_lo, 2))}–{_fmt(round(c_hi, 2))} g)",
                    )  # fmt: skip
                )
            if d >= c_lo - 1e-9:
                continue  # below the adult range is what a child's dose is
        if lo - 1e-9 <= d <= hi + 1e-9:
            continue
        rng = f"{_fmt(lo)}–{_fmt(hi)} g"
        detail = {"dose_g": d, "range_g": [lo, hi], "toxicity": safety.toxicity}
        set_dose = {"label": f"{ln.item.herb} 调整为 {_fmt(hi)} g / set {ln.item.herb} to {_fmt(hi)} g",
                    "action": "set_dose", "item": ln.item.pos, "dose_g": hi}  # fmt: skip
        if d > hi + 1e-9:
            toxic = safety.toxicity is not None
            out.append(
                Finding(
                    rule_id=rid,
                    kind="dose",
                    severity=m.Severity.CRITICAL if toxic else m.Severity.WARNING,
                    herbs=(ln.item.herb,),
                    source=ln.facts.source,
                    items=(ln.item.pos,),
                    detail=detail,
                    message_zh=f"{ln.item.herb} {_fmt(d)} g 超过常用量上限（{rng}）"
                    + ("，为有毒药物" if toxic else ""),
                    message_en=f"{ln.item.herb} {_fmt(d)} g is above the {'toxic herb' if toxic else 'usual'} "
                    f"daily range ({rng})",
                    suggestions=(set_dose,),
                )  # fmt: skip
            )
        else:
            out.append(
                Finding(
                    rule_id=rid,
                    kind="dose",
                    severity=m.Severity.INFO,
                    herbs=(ln.item.herb,),
                    source=ln.facts.source,
                    items=(ln.item.pos,),
                    detail=detail,
                    message_zh=f"{ln.item.herb} {_fmt(d)} g 低于常用量（{rng}）",
                    message_en=f"{ln.item.herb} {_fmt(d)} g is below the usual daily range ({rng})",
                )  # fmt: skip
            )
    return out


@CHECKS.register("toxic")
def check_toxic(ctx: Context) -> list[Finding]:
    out = []
    banned_items: set[int] = set()
    for kind in ("banned", "controlled"):
        for ln in ctx.lines:
            if not ln.facts.members:
                continue
            for rule in ln.facts.members.get(kind, ()):
                detail: dict[str, Any] = {"rule_kind": kind}
                sev = rule.severity
                name = _label(ln)
                msg_zh, msg_en = f"{name}：{rule.message_zh}", f"{name}: {rule.message_en}"
                if ln.patent and kind == "controlled":  # a 成药 is not dispensed as a toxic decoction piece
                    sev = m.Severity.INFO
                    msg_zh = f"{name}：成药含医疗用毒性药材，按说明书用量，不宜过量、久服"
                    msg_en = f"{name}: the patent medicine holds a controlled toxic drug; keep to its labelled dose"
                    detail["patent_medicine"] = True
                limit_days = rule.params.get("max_days_of_max_dose")
                if kind == "controlled" and limit_days and ctx.rx.days and ln.safety and ln.safety.dose_g:
                    total = (ln.item.dose_g or 0) * ctx.rx.days
                    cap = float(limit_days) * ln.safety.dose_g[1]  # type: ignore[arg-type]
                    detail.update(total_g=total, cap_g=cap)
                    if total > cap + 1e-9:
                        sev = m.Severity.CRITICAL
                        msg_zh += f"；本处方总量 {_fmt(total)} g 超过 {limit_days} 日极量 {_fmt(cap)} g"
                        msg_en += f"; this prescription's total {_fmt(total)} g exceeds {limit_days} days' maximum {_fmt(cap)} g"
                if kind == "banned":
                    banned_items.add(ln.item.pos)
                out.append(
                    Finding(
                        rule_id=rule.id,
                        kind="toxic",
                        severity=sev,
                        herbs=(ln.item.herb,),
                        message_zh=msg_zh,
                        message_en=msg_en,
                        source=rule.source,
                        items=(ln.item.pos,),
                        detail=detail,
                        override_allowed=kind != "banned",
                        suggestions=(
                            {
                                "label": f"删除 {ln.item.herb} / remove {ln.item.herb}",
                                "action": "remove",
                                "item": ln.item.pos,
                            },
                        ),
                    )  # fmt: skip
                )
    for ln in ctx.lines:
        safety = ln.facts.safety
        if safety is None or safety.internal_use == "allowed" or ln.item.pos in banned_items:
            continue
        if ln.patent and safety.internal_use == "processed_only":
            continue  # the 成药's own method processes it (生半夏 in 藿香正气水)
        use = safety.internal_use
        src = ln.facts.source
        rid = f"internal_use.{ln.res.form_id or ln.res.id}"
        remove = ({"label": f"删除 {ln.item.herb} / remove {ln.item.herb}", "action": "remove", "item": ln.item.pos},)
        if use == "processed_only":
            explicit_raw = ln.res.raw
            out.append(
                Finding(
                    rule_id=rid,
                    kind="toxic",
                    severity=m.Severity.CRITICAL if explicit_raw else m.Severity.WARNING,
                    herbs=(ln.item.herb,),
                    message_zh=(
                        f"{ln.item.herb} 为生品，须炮制后方可内服"
                        if explicit_raw
                        else f"{ln.item.herb} 按药典为生品（{ln.label}），内服须用炮制品，请注明炮制规格"
                    ),
                    message_en=(
                        f"{ln.item.herb} is the raw drug and must be processed before internal use"
                        if explicit_raw
                        else f"{ln.item.herb} as written is the raw drug; internal use needs the processed form: "
                        "write the processed form"
                    ),
                    source=src,
                    items=(ln.item.pos,),
                    detail={"internal_use": use},
                    suggestions=remove,
                )  # fmt: skip
            )
        elif use in ("external_only", "banned"):
            out.append(
                Finding(
                    rule_id=rid,
                    kind="toxic",
                    severity=m.Severity.CRITICAL,
                    herbs=(ln.item.herb,),
                    message_zh=f"{ln.item.herb}：" + ("只供外用，不可内服" if use == "external_only" else "已禁止药用"),
                    message_en=f"{ln.item.herb}: "
                    + ("external use only" if use == "external_only" else "banned from use"),
                    source=src,
                    items=(ln.item.pos,),
                    detail={"internal_use": use},
                    override_allowed=False,
                    suggestions=remove,
                )  # fmt: skip
            )
    return out


@CHECKS.register("duplicate")
def check_duplicate(ctx: Context) -> list[Finding]:
    groups: dict[str, list[Line]] = defaultdict(list)
    for ln in ctx.lines:
        if ln.res.resolved and ln.res.id:
            groups[ln.res.id].append(ln)
    out = []
    for hid, lns in groups.items():
        if len({ln.item.pos for ln in lns}) < 2:  # twice inside one formula written as one item is the formula's
            continue
        herb = ctx.kb.herbs[hid]
        written = tuple(ln.item.herb for ln in lns)
        same_form = len({ln.res.form for ln in lns}) == 1
        what_zh = "重复" if same_form else "生品与炮制品（或不同炮制品）同用"
        what_en = "appears twice" if same_form else "raw and processed (or two processed) forms in one prescription"
        out.append(
            Finding(
                rule_id="duplicate",
                kind="duplicate",
                severity=m.Severity.WARNING,
                herbs=written,
                message_zh=f"{'、'.join(written)}：同一药物{herb.name}{what_zh}",
                message_en=f"{', '.join(written)}: {herb.name} {what_en}",
                source=_regulation(ctx.kb, "chufang-dianping"),
                items=tuple(ln.item.pos for ln in lns),
                suggestions=tuple(
                    {"label": f"删除 {ln.item.herb} / remove {ln.item.herb}", "action": "remove", "item": ln.item.pos}
                    for ln in lns[1:]
                ),
            )  # fmt: skip
        )
    return out


@CHECKS.register("deprecated")
def check_deprecated(ctx: Context) -> list[Finding]:
    """A herb or processed form that curators have withdrawn from the knowledge base (kept so that old prescriptions
    still resolve): its facts may be outdated, so the prescriber is told, with the replacement when there is one."""
    out = []
    for ln in ctx.lines:
        r = ln.res
        if not r.resolved or r.id is None:
            continue
        kind, ident = ("form", r.form_id) if r.form_id and ctx.kb.deprecation("form", r.form_id) else ("herb", r.id)
        dep = ctx.kb.deprecation(kind, ident)
        if dep is None:
            continue
        table = ctx.kb.forms if kind == "form" else ctx.kb.herbs
        new = table[dep["replaced_by"]].name if dep.get("replaced_by") in table else None
        why_zh = f"（{dep['reason']}）" if dep.get("reason") else ""
        why_en = f" ({dep['reason']})" if dep.get("reason") else ""
        out.append(
            Finding(
                rule_id="deprecated",
                kind="deprecated",
                severity=m.Severity.WARNING,
                herbs=(ln.item.herb,),
                message_zh=f"{ln.item.herb}：知识库已停用{ln.label}{why_zh}" + (f"，由{new}替代" if new else ""),
                message_en=f"{ln.item.herb}: {ln.label} is withdrawn from the knowledge base{why_en}"
                + (f"; replaced by {new}" if new else ""),
                source=None,
                items=(ln.item.pos,),
                detail={"entry": f"{kind}:{ident}", **({"replaced_by": dep["replaced_by"]} if new else {})},
            )
        )
    return out


@CHECKS.register("preparation")
def check_preparation(ctx: Context) -> list[Finding]:
    out = []
    for ln in ctx.lines:
        safety = ln.facts.safety
        need = safety.preparation if safety is not None else None
        if not need or ln.facts.res.input != ln.item.herb:  # a herb inside a formula written as one item
            continue
        stated = ln.item.preparation or ""
        if need in stated:
            continue
        rid = f"preparation.{ln.facts.fact_id['preparation']}"
        if need == "入丸散":
            zh, en, sev = (
                f"{ln.item.herb}：宜入丸散，不入煎剂",
                f"{ln.item.herb}: for pills and powders, not decocted",
                m.Severity.WARNING,
            )
        else:
            zh, en, sev = (
                f"{ln.item.herb}：需{need}，处方未注明",
                f"{ln.item.herb}: needs {need}, which the prescription does not state",
                m.Severity.INFO,
            )
        out.append(
            Finding(
                rule_id=rid,
                kind="preparation",
                severity=sev,
                herbs=(ln.item.herb,),
                message_zh=zh,
                message_en=en,
                source=ln.facts.source,
                items=(ln.item.pos,),
                detail={"required": need, "stated": stated or None},
            )  # fmt: skip
        )
    return out


@CHECKS.register("duration")
def check_duration(ctx: Context) -> list[Finding]:
    out = []
    days = ctx.rx.days
    if days is not None and ctx.rx.setting:
        for rule in ctx.plan.duration:
            if rule.params.get("setting") == ctx.rx.setting and days > int(rule.params["max_days"]):  # type: ignore[call-overload]
                out.append(
                    Finding(
                        rule_id=rule.id,
                        kind="duration",
                        severity=rule.severity,
                        herbs=(),
                        message_zh=f"处方 {days} 日：{rule.message_zh}",
                        message_en=f"{days} days: {rule.message_en}",
                        source=rule.source,
                        detail={"days": days, "max_days": rule.params["max_days"]},
                    )  # fmt: skip
                )
    for ln in ctx.lines:
        for rule in ln.facts.members.get("herb_duration", ()):
            too_long = days is not None and days > int(rule.params["max_days"])  # type: ignore[call-overload]
            alone = bool(rule.params.get("not_alone")) and len(ctx.lines) == 1
            if too_long or alone:
                out.append(
                    Finding(
                        rule_id=rule.id,
                        kind="duration",
                        severity=rule.severity,
                        herbs=(ln.item.herb,),
                        message_zh=f"{ln.item.herb}：{rule.message_zh}",
                        message_en=f"{ln.item.herb}: {rule.message_en}",
                        source=rule.source,
                        items=(ln.item.pos,),
                        detail={"days": days, "alone": alone},
                    )  # fmt: skip
                )
    return out


POPULATION_SEVERITY = {"禁用": m.Severity.CRITICAL, "忌用": m.Severity.CRITICAL, "慎用": m.Severity.WARNING,
                       "不宜": m.Severity.WARNING}  # fmt: skip
POPULATION_EN = {"婴幼儿": "an infant or toddler", "儿童": "a child", "老年人": "an elderly patient",
                 "哺乳期": "a breastfeeding patient", "肝功能不全": "hepatic impairment",
                 "肾功能不全": "renal impairment"}  # fmt: skip
AGE_GROUPS = frozenset({"婴幼儿", "儿童", "老年人"})
LEVEL_EN = {"禁用": "forbidden", "忌用": "to be avoided", "慎用": "to be used with caution", "不宜": "not advised"}


def patient_groups(p: Patient) -> list[str]:
    """The population groups of kb.schema.POPULATION_GROUPS the patient belongs to, most specific first."""
    age, groups = p.age_years, []
    if age is not None:
        groups = ["婴幼儿", "儿童"] if age < 3 else ["儿童"] if age < 14 else ["老年人"] if age >= 65 else []
    return groups + [g for g, flag in (("哺乳期", p.lactating), ("肝功能不全", p.hepatic_impairment),
                                       ("肾功能不全", p.renal_impairment)) if flag]  # fmt: skip


@CHECKS.register("population")
def check_population(ctx: Context) -> list[Finding]:
    """A herb restricted for a group the patient belongs to (罂粟壳 儿童禁用, 麦芽 哺乳期不宜: the herb's
    ``populations``); and children or the elderly given a toxic herb without such a restriction: a reminder to
    adjust the dose (the ranges are for adults)."""
    groups = patient_groups(ctx.rx.patient)
    if not groups:
        return []
    age = ctx.rx.patient.age_years
    out = []
    for ln in ctx.lines:
        safety = ln.safety
        if safety is None:
            continue
        hits = [(g, lvl) for g in groups if (lvl := safety.restriction(g))]
        if hits:  # the most severe level; among equals the most specific group (婴幼儿 before 儿童)
            group, level = min(hits, key=lambda h: -POPULATION_SEVERITY[h[1]].rank)
            same = [g for g, lvl in hits if lvl == level]  # 朱砂 肝功能不全、肾功能不全禁用: one finding
            name = _label(ln)
            out.append(
                Finding(
                    rule_id=f"population.{ln.facts.fact_id['populations']}.{group}",
                    kind="population",
                    severity=POPULATION_SEVERITY[level],
                    herbs=(ln.item.herb,),
                    message_zh=f"{name}：{'、'.join(same)}{level}",
                    message_en=f"{name}: {LEVEL_EN[level]} for " + " and ".join(POPULATION_EN[g] for g in same),
                    source=ln.facts.source,
                    items=(ln.item.pos,),
                    detail={
                        "population": group,
                        "groups": same,
                        "level": level,
                        **({"age_years": age} if age is not None else {}),
                    },  # fmt: skip
                    suggestions=(
                        {
                            "label": f"删除 {ln.item.herb} / remove {ln.item.herb}",
                            "action": "remove",
                            "item": ln.item.pos,
                        },
                    ),
                )  # fmt: skip
            )
            if any(g in AGE_GROUPS for g, _ in hits):
                continue  # the restriction for the age group says more than the reminder below
        if safety.toxicity is None or age is None or 14 <= age < 65:
            continue
        group_zh, group_en = ("儿童", "a child") if age < 14 else ("老年人", "an elderly patient")
        out.append(
            Finding(
                rule_id="population.age-toxic",
                kind="population",
                severity=m.Severity.WARNING,
                herbs=(ln.item.herb,),
                message_zh=f"{ln.item.herb}（{safety.toxicity}）用于{group_zh}：剂量范围按成人制定，须酌减并密切观察",
                message_en=f"{ln.item.herb} ({safety.toxicity}) for {group_en}: dose ranges are for adults; reduce and monitor",
                source=_regulation(ctx.kb, "chufang-shenhe"),
                items=(ln.item.pos,),
                detail={"age_years": age},
            )  # fmt: skip
        )
    return out


def _regulation(kb: kbmod.KnowledgeBase, ref: str) -> m.SourceRef | None:
    src = kb.sources.get(ref)
    return m.SourceRef(ref=ref, loc=None, work=src.work, edition=src.edition) if src else None
