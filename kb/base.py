"""The knowledge base: validated content turned into linked domain objects, a name index, a version.

``load()`` reads ``kb/data`` (or another directory), checks every cross-reference and raises ``ContentError``
naming file, entry and field for each problem. Problems that do not make the content wrong but leave it
incomplete (a syndrome finding that is not in the symptom vocabulary) are kept as ``warnings``.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import logging
import os
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kb import icd11
from kb import model as m
from kb.errors import ContentError, UnknownEntityError
from kb.names import NameIndex, Resolution, Target

if TYPE_CHECKING:  # the schema (pydantic) is needed to build a knowledge base, not to use a compiled one
    import networkx as nx

    from kb import schema as s
    from kb.loader import Content

DEFAULT_DATA_DIR = Path(__file__).resolve().parent / "data"

logger = logging.getLogger(__name__)

SAFETY_FIELDS = (
    "dose_g", "toxicity", "pregnancy", "preparation", "internal_use", "controlled", "populations", "cautions",
)  # fmt: skip
DISCIPLINE_ORDER = {d: i for i, d in enumerate(m.DISCIPLINES)}
FINDING_FIELDS = ("key_symptoms", "secondary_symptoms", "tongue", "pulse", "contra_symptoms")


class KnowledgeBase:
    """Immutable once built. Safe to share between threads."""

    def __init__(self, content: Content, data_dir: Path, content_hash: str):
        from kb.loader import origin_map

        self.data_dir = data_dir
        self._content: Content | None = content
        self.sources: dict[str, m.Source] = {}
        self.herbs: dict[str, m.Herb] = {}
        self.forms: dict[str, m.Form] = {}
        self.formulas: dict[str, m.Formula] = {}
        self.diseases: dict[str, m.Disease] = {}
        self.syndromes: dict[str, m.Syndrome] = {}
        self.symptoms: dict[str, m.Symptom] = {}
        self.rules: dict[str, m.Rule] = {}
        self.rulesets: dict[str, m.RuleSet] = {}
        self.warnings: list[str] = []
        self.deprecated: dict[str, dict[str, Any]] = {}  # "kind:id" -> {replaced_by, reason}
        self.substitutions: dict[str, m.Substitution] = {}
        self.merged_symptoms: dict[str, str] = {}  # id of a symptom merged into another -> the id it lives on as
        self.names = NameIndex(self)
        self._origin = origin_map(content)
        self._problems: list[str] = list(content.problems)
        gc_was_on = gc.isenabled()
        gc.disable()  # ~100,000 new long-lived objects: in a big heap the collector would rescan it again and again
        try:
            self._build()
            self.names.freeze()
        finally:
            if gc_was_on:
                gc.enable()
        if self._problems:
            raise ContentError(self._problems)
        release = content.release.name if content.release else "unreleased"
        self.version = m.Version(release=release, content_hash=content_hash)
        self.ruleset_version = self._ruleset_version()
        self._graph: nx.MultiDiGraph | None = None
        self._graph_lock = threading.Lock()
        self._rules_by_herb: dict[str, list[m.Rule]] = defaultdict(list)
        for rule in self.rules.values():
            for member in (*rule.a, *rule.b, *rule.members):
                self._rules_by_herb[member.herb_id].append(rule)

    # ---- building ------------------------------------------------------------------------------------
    def _where(self, entry: Any) -> str:
        return self._origin.get(id(entry), "?")

    def _problem(self, entry: Any, field: str, message: str) -> None:
        self._problems.append(f"{self._where(entry)}: field {field}: {message}")

    def _source(self, entry: Any, ref: s.SourceRef, field: str = "source") -> m.SourceRef:
        src = self.sources.get(ref.ref)
        if src is None:
            self._problem(entry, f"{field}.ref", f"unknown source {ref.ref!r} (add it to sources.yaml)")
            return m.SourceRef(ref=ref.ref, loc=ref.loc, work=ref.ref, edition=None)
        return m.SourceRef(ref=ref.ref, loc=ref.loc, work=src.work, edition=src.edition)

    def _codes(self, entry: Any, field: str, codes: s.Codes, want: icd11.Kind) -> dict[str, str]:
        """The standard codes of a disease (an ICD-11 TM1 disorder code) or syndrome (a pattern code)."""
        out = {k: v for k, v in codes.model_dump().items() if v}
        if "icd11" in out and (why := icd11.problem(out["icd11"], want)) is not None:
            self._problem(entry, f"{field}.icd11", why)
        return out

    def _index(self, entry: Any, field: str, name: str, target: Target, display: str | None = None) -> None:
        clash = self.names.add(name, target, display)
        if clash:
            self._problem(entry, field, clash)

    def _build(self) -> None:
        c = self.content
        for src in c.sources:
            if src.id in self.sources:
                self._problems.append(f"sources.yaml: duplicate source id {src.id!r}")
            self.sources[src.id] = m.Source(src.id, src.work, src.edition, src.publisher, src.year, src.kind, src.note)
        for h in c.herbs:
            self._build_herb(h)
        for dn in c.names:
            self.names.add_distinct(dn.name, dn.reason)
            self._source(dn, dn.source)
        for sym in c.symptoms:
            self._build_symptom(sym)
        for f in c.formulas:
            self._build_formula(f)
        for sub in c.substitutes:
            self._build_substitution(sub)
        syndrome_entries: list[tuple[s.Disease, s.Syndrome]] = []
        syndrome_ids: set[str] = set()
        seen_names: dict[tuple[str, str], str] = {}
        for d in c.diseases:
            if d.id in self.diseases:
                self._problem(d, "id", f"duplicate disease id {d.id!r}")
            # one name may name a disease in several disciplines (感冒 in 内科 and 儿科), never twice in one
            key = (d.discipline.value, d.name)
            if key in seen_names:
                self._problem(
                    d, "name", f"{d.discipline.value} already has a disease named {d.name!r} ({seen_names[key]})"
                )
            seen_names[key] = d.id
            t = Target("disease", d.id)
            self.names.add(d.name, t)
            self.names.add(f"{d.discipline.value}·{d.name}", t, d.name)
            for a in d.aliases:
                self.names.add(a, t, d.name)
            self.diseases[d.id] = m.Disease(
                id=d.id, name=d.name, aliases=tuple(d.aliases), discipline=d.discipline.value,
                codes=self._codes(d, "codes", d.codes, "disorder"), western=tuple(d.western), syndrome_ids=tuple(x.id for x in d.syndromes),
                source=self._source(d, d.source), verification=d.verification.value,
            )  # fmt: skip
            for sy in d.syndromes:
                syndrome_entries.append((d, sy))
                if sy.id in syndrome_ids:
                    self._problem(d, f"syndromes[{sy.id}].id", f"duplicate syndrome id {sy.id!r}")
                syndrome_ids.add(sy.id)
                t = Target("syndrome", sy.id)
                self.names.add(sy.name, t)
                self.names.add(f"{d.name}·{sy.name}", t, sy.name)
                self.names.add(f"{d.name}{sy.name}", t, sy.name)
                for a in sy.aliases:
                    self.names.add(a, t, sy.name)
        for d, sy in syndrome_entries:
            self._build_syndrome(d, sy)
        for rf in c.rulefiles:
            self._build_rules(rf)
        self._deprecations()

    def _deprecations(self) -> None:
        """Deprecated entries stay (they still resolve); each replacement must exist, in the same kind."""
        c = self.content

        def check(kind: str, owner: Any, e: Any, field: str, table: dict[str, Any]) -> None:
            if e.replaced_by is not None and (e.replaced_by not in table or e.replaced_by == e.id):
                msg = f"{kind} {e.id!r} is replaced by {e.replaced_by!r}, which is not another {kind}"
                self._problem(owner, field, msg)
            self.deprecated[f"{kind}:{e.id}"] = {"replaced_by": e.replaced_by, "reason": e.deprecation_reason}

        for h in c.herbs:
            if h.deprecated:
                check("herb", h, h, "replaced_by", self.herbs)
            for i, f in enumerate(h.forms):
                if f.deprecated:
                    check("form", h, f, f"forms[{i}].replaced_by", self.forms)
        for kind, entries, table in (("formula", c.formulas, self.formulas), ("symptom", c.symptoms, self.symptoms)):
            for x in entries:
                if x.deprecated:
                    check(kind, x, x, "replaced_by", table)
        for sub in c.substitutes:
            if sub.deprecated:
                check("substitution", sub, sub, "replaced_by", self.substitutions)
        for old, into in self.merged_symptoms.items():
            if old in self.symptoms:
                self._problem(self._symptom_entry(into), "replaces", f"{old!r} is still a symptom of its own")
            else:
                self.deprecated[f"symptom:{old}"] = {"replaced_by": into, "reason": f"merged into {into}"}
        for d in c.diseases:
            if d.deprecated:
                check("disease", d, d, "replaced_by", self.diseases)
            for sy in d.syndromes:
                if sy.deprecated:
                    check("syndrome", d, sy, f"syndromes[{sy.id}].replaced_by", self.syndromes)
        for rf in c.rulefiles:
            for i, r in enumerate(rf.rules):
                if r.deprecated:
                    check("rule", rf, r, f"rules[{i}].replaced_by", self.rules)

    def _symptom_entry(self, ident: str) -> Any:
        return next(x for x in self.content.symptoms if x.id == ident)

    def deprecation(self, kind: str, ident: str) -> dict[str, Any] | None:
        """``{replaced_by, reason}`` when the entry is deprecated, else None."""
        return self.deprecated.get(f"{kind}:{ident}")

    def _safety(self, entry: s.SafetyFields, base: m.Safety | None) -> tuple[m.Safety, frozenset[str]]:
        own = frozenset(f for f in SAFETY_FIELDS if f in entry.model_fields_set)

        def pick(field: str, value: Any, inherited: Any) -> Any:
            return value if (base is None or field in own) else inherited

        def enum_value(v: Any) -> Any:
            return v.value if v is not None and hasattr(v, "value") else v

        return (
            m.Safety(
                dose_g=pick("dose_g", entry.dose_g, base.dose_g if base else None),
                toxicity=pick("toxicity", enum_value(entry.toxicity), base.toxicity if base else None),
                pregnancy=pick("pregnancy", enum_value(entry.pregnancy), base.pregnancy if base else None),
                preparation=pick("preparation", enum_value(entry.preparation), base.preparation if base else None),
                internal_use=pick("internal_use", entry.internal_use.value, base.internal_use if base else "allowed"),
                controlled=pick("controlled", entry.controlled, base.controlled if base else False),
                cautions=tuple(entry.cautions) if (base is None or "cautions" in own) else base.cautions,
                populations=tuple(entry.populations) if (base is None or "populations" in own) else base.populations,
            ),
            own,
        )

    def _build_herb(self, h: s.Herb) -> None:
        if h.id in self.herbs or h.id in self.forms:
            self._problem(h, "id", f"duplicate herb/form id {h.id!r}")
            return
        safety, _ = self._safety(h, None)
        form_ids = []
        for i, f in enumerate(h.forms):
            if f.id in self.herbs or f.id in self.forms or f.id == h.id:
                self._problem(h, f"forms[{i}].id", f"duplicate herb/form id {f.id!r}")
                continue
            fs, own = self._safety(f, safety)
            self.forms[f.id] = m.Form(
                id=f.id, herb_id=h.id, name=f.name, aliases=tuple(f.aliases), processing=f.processing, raw=f.raw,
                safety=fs, own_fields=own, source=self._source(h, f.source, f"forms[{i}].source"),
                verification=f.verification.value,
            )  # fmt: skip
            form_ids.append(f.id)
        self.herbs[h.id] = m.Herb(
            id=h.id, name=h.name, pinyin=h.pinyin, latin=h.latin, aliases=tuple(h.aliases), category=h.category,
            nature=h.nature, flavours=tuple(h.flavours), meridians=tuple(h.meridians), functions=tuple(h.functions),
            indications=tuple(h.indications), safety=safety, form_ids=tuple(form_ids),
            source=self._source(h, h.source), verification=h.verification.value,
        )  # fmt: skip
        t = Target("herb", h.id)
        self._index(h, "name", h.name, t)
        for a in h.aliases:
            self._index(h, "aliases", a, t, h.name)
        self.names.add(h.pinyin, t, h.name)
        if h.latin:
            self.names.add(h.latin, t, h.name)
        for i, f in enumerate(h.forms):
            if f.id not in self.forms or self.forms[f.id].herb_id != h.id:
                continue
            ft = Target("herb", h.id, f.id)
            self._index(h, f"forms[{i}].name", f.name, ft)
            for a in f.aliases:
                self._index(h, f"forms[{i}].aliases", a, ft, f.name)

    def _build_symptom(self, sym: s.Symptom) -> None:
        if sym.id in self.symptoms:
            self._problem(sym, "id", f"duplicate symptom id {sym.id!r}")
            return
        self.symptoms[sym.id] = m.Symptom(
            id=sym.id, name=sym.name, synonyms=tuple(sym.synonyms), category=sym.category.value, negated=sym.negated,
            opposite=sym.opposite, broader=sym.broader, source=self._source(sym, sym.source),
            verification=sym.verification.value,
        )  # fmt: skip
        for i, old in enumerate(sym.replaces):
            if old in self.merged_symptoms:
                self._problem(sym, f"replaces[{i}]", f"{old!r} is already merged into {self.merged_symptoms[old]!r}")
            self.merged_symptoms[old] = sym.id
        t = Target("symptom", sym.id)
        self._index(sym, "name", sym.name, t)
        for a in sym.synonyms:
            self._index(sym, "synonyms", a, t, sym.name)

    def _ingredient(self, entry: Any, field: str, ing: s.Ingredient | s.VersionIngredient) -> m.Ingredient | None:
        r = self.names.lookup(ing.herb, "herb")
        if not r.resolved or r.id is None:
            hint = f" (closest: {', '.join(r.candidates)})" if r.candidates else ""
            self._problem(entry, field, f"herb {ing.herb!r} does not resolve{hint}")
            return None
        return m.Ingredient(
            herb_id=r.id, form_id=r.form_id, written=ing.herb, dose_g=ing.dose_g, amount=ing.amount,
            role=role.value if (role := getattr(ing, "role", None)) else None, note=ing.note,
            dose_derived=getattr(ing, "derived", False),
        )  # fmt: skip

    def _build_formula(self, f: s.Formula) -> None:
        if f.id in self.formulas:
            self._problem(f, "id", f"duplicate formula id {f.id!r}")
            return
        comp = []
        for i, ing in enumerate(f.composition):
            x = self._ingredient(f, f"composition[{i}].herb", ing)
            if x is not None:
                comp.append(x)
        self.formulas[f.id] = m.Formula(
            id=f.id, name=f.name, aliases=tuple(f.aliases), origin=f.origin, category=f.category,
            composition=tuple(comp), functions=tuple(f.functions), indications=tuple(f.indications),
            cautions=tuple(f.cautions), usage=f.usage, source=self._source(f, f.source),
            verification=f.verification.value, versions=self._versions(f, comp),
        )  # fmt: skip
        t = Target("formula", f.id)
        self._index(f, "name", f.name, t)
        for a in f.aliases:
            self._index(f, "aliases", a, t, f.name)
        for i, v in enumerate(f.versions):
            if v.name and v.name != f.name and v.name not in f.aliases:
                self._index(f, f"versions[{i}].name", v.name, t, f.name)

    def _build_substitution(self, sub: s.Substitution) -> None:
        if sub.id in self.substitutions:
            self._problem(sub, "id", f"duplicate substitution id {sub.id!r}")
            return
        ids = {}
        for field in ("original", "substitute"):
            r = self.names.lookup(getattr(sub, field), "herb")
            if not r.resolved or r.id is None:
                self._problem(sub, field, f"herb {getattr(sub, field)!r} is not in the knowledge base")
            elif r.form_id is not None:
                self._problem(sub, field, f"{getattr(sub, field)!r} is a processed form; name the herb")
            else:
                ids[field] = r.id
        if len(ids) < 2:
            return
        if ids["original"] == ids["substitute"]:
            self._problem(sub, "substitute", "names the same herb as original")
            return
        pair = (ids["original"], ids["substitute"])
        if any((x.original_id, x.substitute_id) == pair for x in self.substitutions.values()):
            self._problem(sub, "substitute", f"{sub.substitute} for {sub.original} is already recorded")
            return
        excepted = set()
        for i, name in enumerate(sub.except_formulas):
            r = self.names.lookup(name, "formula")
            if not r.resolved or r.id is None:
                self._problem(sub, f"except_formulas[{i}]", f"formula {name!r} is not in the knowledge base")
            elif not any(x.herb_id == ids["original"] for x in self.formulas[r.id].composition):
                self._problem(sub, f"except_formulas[{i}]", f"{name} does not contain {sub.original}")
            else:
                excepted.add(r.id)
        self.substitutions[sub.id] = m.Substitution(
            id=sub.id, original_id=ids["original"], substitute_id=ids["substitute"], scope=sub.scope,
            except_formula_ids=frozenset(excepted), note=sub.note, source=self._source(sub, sub.source),
            verification=sub.verification.value,
        )  # fmt: skip

    def substitutes_in(self, formula_id: str) -> dict[str, tuple[m.Substitution, ...]]:
        """The recorded substitutes that apply to a formula: herb id of its composition -> the substitutions that
        may stand for it there (none where the formula already holds the substitute, or keeps the original)."""
        f = self.formulas[formula_id]
        have = {i.herb_id for i in f.composition}
        out: dict[str, list[m.Substitution]] = {}
        for sub in self.substitutions.values():
            if self.deprecated and self.deprecation("substitution", sub.id) is not None:
                continue  # withdrawn by a curator
            if sub.original_id in have and sub.substitute_id not in have and formula_id not in sub.except_formula_ids:
                out.setdefault(sub.original_id, []).append(sub)
        return {k: tuple(v) for k, v in out.items()}

    def _versions(self, f: s.Formula, main: list[m.Ingredient]) -> tuple[m.FormulaVersion, ...]:
        """The formula's other documented compositions; one that lists the same herbs as another says nothing."""
        out: list[m.FormulaVersion] = []
        seen = {frozenset((i.herb_id, i.form_id) for i in main): "composition"}
        for n, v in enumerate(f.versions):
            where = f"versions[{n}]"
            comp = [
                x
                for i, ing in enumerate(v.composition)
                if (x := self._ingredient(f, f"{where}.composition[{i}].herb", ing))
            ]
            if len(comp) < len(v.composition):
                continue  # reported above
            key = frozenset((i.herb_id, i.form_id) for i in comp)
            if key in seen:
                self._problem(f, where, f"lists the same herbs as {seen[key]}: a version must differ from it")
                continue
            seen[key] = where
            out.append(
                m.FormulaVersion(
                    kind=m.VERSION_KINDS[v.kind.value],
                    name=v.name,
                    origin=v.origin,
                    composition=tuple(comp),
                    note=v.note,
                    source=self._source(f, v.source, f"{where}.source"),
                    verification=v.verification.value,
                )
            )
        return tuple(out)

    def _findings(self, terms: Iterable[str], d: s.Disease, field: str) -> tuple[m.Finding, ...]:
        out = []
        for term in terms:
            r = self.names.lookup(term, "symptom")
            if not r.resolved:
                self.warnings.append(
                    f"{self._where(d)}: field {field}: finding {term!r} is not in the symptom vocabulary"
                )
            out.append(m.Finding(term=term, symptom_id=r.id if r.resolved else None))
        return tuple(out)

    def _build_syndrome(self, d: s.Disease, sy: s.Syndrome) -> None:
        base = f"syndromes[{sy.id}]"
        formula_ids = []
        for i, name in enumerate(sy.formulas):
            r = self.names.lookup(name, "formula")
            if not r.resolved or r.id is None:
                hint = f" (closest: {', '.join(r.candidates)})" if r.candidates else ""
                self._problem(d, f"{base}.formulas[{i}]", f"formula {name!r} does not exist{hint}")
            else:
                formula_ids.append(r.id)
        mods = []
        for i, mod in enumerate(sy.modifications):
            adds = []
            for j, ing in enumerate(mod.add):
                x = self._ingredient(d, f"{base}.modifications[{i}].add[{j}]", ing)
                if x is not None:
                    adds.append(x)
            removes = []
            for j, name in enumerate(mod.remove):
                r = self.names.lookup(name, "herb")
                if r.resolved and r.id:
                    removes.append(r.id)
                else:
                    self._problem(d, f"{base}.modifications[{i}].remove[{j}]", f"herb {name!r} does not resolve")
            when = self._findings(mod.when, d, f"{base}.modifications[{i}].when")
            mods.append(
                m.Modification(
                    when=tuple(mod.when),
                    when_ids=tuple(w.symptom_id for w in when),
                    add=tuple(adds),
                    remove=tuple(removes),
                    note=mod.note,
                )
            )
        self.syndromes[sy.id] = m.Syndrome(
            id=sy.id, disease_id=d.id, name=sy.name, aliases=tuple(sy.aliases),
            codes=self._codes(d, f"{base}.codes", sy.codes, "pattern"),
            key=self._findings(sy.key_symptoms, d, f"{base}.key_symptoms"),
            secondary=self._findings(sy.secondary_symptoms, d, f"{base}.secondary_symptoms"),
            tongue=self._findings(sy.tongue, d, f"{base}.tongue"),
            pulse=self._findings(sy.pulse, d, f"{base}.pulse"),
            contra=self._findings(sy.contra_symptoms, d, f"{base}.contra_symptoms"),
            principle=sy.principle, formula_ids=tuple(formula_ids), modifications=tuple(mods),
            source=self._source(d, sy.source, f"{base}.source"), verification=sy.verification.value,
        )  # fmt: skip

    def _member(self, entry: Any, field: str, name: str) -> m.Member | None:
        r = self.names.lookup(name, "herb")
        if not r.resolved or r.id is None:
            hint = f" (closest: {', '.join(r.candidates)})" if r.candidates else ""
            self._problem(entry, field, f"rule member {name!r} is not a herb in the knowledge base{hint}")
            return None
        return m.Member(written=name, herb_id=r.id, form_id=r.form_id, raw_only=r.raw and r.form_id is None)

    def _build_rules(self, rf: s.RuleFile) -> None:
        meta = rf.ruleset
        self._source(rf, meta.source, "ruleset.source")
        ids = []
        for i, r in enumerate(rf.rules):
            if r.id in self.rules:
                self._problem(rf, f"rules[{i}].id", f"duplicate rule id {r.id!r}")
                continue

            def members(names: list[str], field: str, i: int = i) -> tuple[m.Member, ...]:
                out = [self._member(rf, f"rules[{i}].{field}[{j}]", n) for j, n in enumerate(names)]
                return tuple(x for x in out if x is not None)

            self.rules[r.id] = m.Rule(
                id=r.id, kind=r.kind, severity=m.Severity(r.severity), a=members(r.a, "a"), b=members(r.b, "b"),
                members=members(r.members, "members"), params=dict(r.params), message_zh=r.message_zh,
                message_en=r.message_en, note=r.note, ruleset_id=meta.id,
                source=self._source(rf, r.source, f"rules[{i}].source"), verification=r.verification.value,
            )  # fmt: skip
            ids.append(r.id)
        self.rulesets[meta.id] = m.RuleSet(
            id=meta.id, name=meta.name, version=meta.version, edition=meta.edition, rule_ids=tuple(ids)
        )

    def _ruleset_version(self) -> str:
        """Rule-set releases plus a hash of every safety value the checks read (rules and herb/form fields)."""
        h = hashlib.sha256()
        for rs in sorted(self.rulesets.values(), key=lambda r: r.id):
            h.update(f"{rs.id}={rs.version};".encode())
        for rid in sorted(self.rules):
            r = self.rules[rid]
            h.update(repr((r.id, r.kind, r.severity.value, r.a, r.b, r.members, sorted(r.params.items()))).encode())
        for hid in sorted(self.herbs):
            h.update(repr((hid, self.herbs[hid].safety)).encode())
        for fid in sorted(self.forms):
            h.update(repr((fid, self.forms[fid].safety)).encode())
        names = "+".join(f"{rs.id}@{rs.version}" for rs in sorted(self.rulesets.values(), key=lambda r: r.id))
        return f"{names or 'none'}+{h.hexdigest()[:12]}"

    # ---- queries -------------------------------------------------------------------------------------
    def resolve(self, name: str, kind: str | None = None) -> Resolution:
        """Resolve any written name; ``kind`` limits it to herb, formula, syndrome, disease or symptom."""
        return self.names.lookup(name, kind)

    def resolve_herb(self, name: str) -> Resolution:
        return self.names.lookup(name, "herb")

    def rank(self, target: Target) -> int:
        """Order among entries sharing a name: diseases by discipline (内科 first), others as written."""
        if target.kind == "disease":
            return DISCIPLINE_ORDER.get(self.diseases[target.id].discipline, 99)
        return 0

    def display_name(self, kind: str, ident: str) -> str:
        return str(self._tables[kind][ident].name)

    @property
    def _tables(self) -> dict[str, dict[str, Any]]:
        return {
            "herb": self.herbs, "form": self.forms, "formula": self.formulas, "syndrome": self.syndromes,
            "disease": self.diseases, "symptom": self.symptoms, "rule": self.rules,
        }  # fmt: skip

    def safety(self, herb_id: str, form_id: str | None = None) -> m.Safety:
        """The safety facts that apply: the form's own where it has them, else the herb's."""
        if form_id is not None:
            return self.forms[form_id].safety
        return self.herbs[herb_id].safety

    def herb(self, key: str) -> m.Herb:
        """A herb by id or by any name that resolves to it."""
        if key in self.herbs:
            return self.herbs[key]
        r = self.resolve_herb(key)
        if r.resolved and r.id:
            return self.herbs[r.id]
        from kb.errors import UnknownHerbError

        raise UnknownHerbError(key, list(r.candidates))

    def get(self, kind: str, key: str) -> Any:
        """An entry of ``kind`` by id or name; raises UnknownEntityError with candidates."""
        table = self._tables
        if kind not in table:
            raise UnknownEntityError("kind", kind, sorted(table))
        if key in table[kind]:
            return table[kind][key]
        if kind == "symptom" and key in self.merged_symptoms:
            return table[kind][self.merged_symptoms[key]]
        if kind in ("herb", "formula", "syndrome", "disease", "symptom"):
            r = self.resolve(key, kind)
            if r.resolved and r.id:
                return table[kind][r.id]
            raise UnknownEntityError(kind, key, list(r.candidates))
        raise UnknownEntityError(kind, key)

    def rules_for(self, herb_id: str) -> list[m.Rule]:
        """Rules naming this herb (any of its forms) as a member."""
        return list(self._rules_by_herb.get(herb_id, ()))

    def incompatible_with(self, herb_id: str) -> list[dict[str, Any]]:
        """The 不宜同用 partners of a herb: for each pair rule naming it, the herbs on the other side."""
        out = []
        for rule in self.rules_for(herb_id):
            if rule.kind not in ("incompatibility", "antagonism"):
                continue
            for mine, other in ((rule.a, rule.b), (rule.b, rule.a)):
                if any(x.herb_id == herb_id for x in mine):
                    names = sorted({x.written for x in other})
                    out.append({"rule_id": rule.id, "kind": rule.kind, "herbs": names})
        return out

    def iter_rules(self, kind: str | None = None) -> Iterator[m.Rule]:
        for r in self.rules.values():
            if kind is None or r.kind == kind:
                yield r

    def stats(self) -> dict[str, Any]:
        per_kind: dict[str, int] = defaultdict(int)
        for r in self.rules.values():
            per_kind[r.kind] += 1
        herbs = list(self.herbs.values())
        return {
            "version": str(self.version),
            "release": self.version.release,
            "content_hash": self.version.content_hash,
            "ruleset_version": self.ruleset_version,
            "counts": {
                "herbs": len(self.herbs),
                "forms": len(self.forms),
                "formulas": len(self.formulas),
                "diseases": len(self.diseases),
                "syndromes": len(self.syndromes),
                "symptoms": len(self.symptoms),
                "rules": len(self.rules),
                "sources": len(self.sources),
            },
            "deprecated": len(self.deprecated),
            "rules_per_kind": dict(sorted(per_kind.items())),
            "safety_facts": {
                "herbs_with_dose_range": sum(1 for h in herbs if h.safety.dose_g),
                "toxic_herbs": sum(1 for h in herbs if h.safety.toxicity),
                "pregnancy_classified_herbs": sum(1 for h in herbs if h.safety.pregnancy),
                "herbs_with_preparation": sum(1 for h in herbs if h.safety.preparation),
                "controlled_herbs_or_forms": sum(1 for h in herbs if h.safety.controlled)
                + sum(1 for f in self.forms.values() if f.safety.controlled and "controlled" in f.own_fields),
                "pregnancy_rules_derived": sum(1 for h in herbs if h.safety.pregnancy)
                + sum(1 for f in self.forms.values() if "pregnancy" in f.own_fields),
            },
            "herb_monographs": _monograph_counts(herbs),
            "formula_records": _formula_counts(list(self.formulas.values())),
            "formula_versions": dict(
                sorted(Counter(v.kind for f in self.formulas.values() for v in f.versions).items())
            ),
            "substitutions": [
                f"{self.herbs[x.substitute_id].name} for {self.herbs[x.original_id].name}"
                for x in self.substitutions.values()
            ],
            "codes": {
                kind: {
                    field: sum(1 for e in table.values() if field in e.codes)
                    for field in ("icd11", "gbt15657", "gbt16751")
                }
                for kind, table in (("diseases", self.diseases), ("syndromes", self.syndromes))
            },
            "verification": _verification_counts(self),
            "warnings": len(self.warnings),
        }

    @property
    def content(self) -> Content:
        """The validated content entries (for RDF export). A compiled knowledge base re-reads them on first use."""
        if self._content is None:
            from kb.loader import load_content

            if content_hash(self.data_dir) != self.version.content_hash:
                raise ContentError(f"{self.data_dir}: content changed since this knowledge base was loaded; reload it")
            self._content = load_content(self.data_dir)
        return self._content

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_graph"] = None
        state["_content"] = None  # pydantic entries: re-read on demand, keeps the compiled file small and fast
        state["warnings"] = list(self.warnings)
        del state["_graph_lock"], state["_origin"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._graph_lock = threading.Lock()
        self._origin = {}

    @property
    def graph(self) -> nx.MultiDiGraph:
        """The networkx graph of the content, built on first use (and kept beside the compiled knowledge base)."""
        if self._graph is None:
            with self._graph_lock:
                if self._graph is None:
                    self._graph = _compiled_graph(self)
        return self._graph


MONOGRAPH_FIELDS = ("pinyin", "latin", "nature", "flavours", "meridians", "functions", "dose_g")


def _monograph_counts(herbs: list[m.Herb]) -> dict[str, Any]:
    """How many herbs have every monograph field (name, pinyin, Latin name, nature, flavours, meridians,
    functions, dose range), and how many lack each one. Toxicity, pregnancy class and preparation are left out:
    for most herbs their absence is the fact (not toxic, no pregnancy caution, decocted as usual)."""

    def has(h: m.Herb, field: str) -> bool:
        return bool(h.safety.dose_g if field == "dose_g" else getattr(h, field))

    return _completeness(herbs, MONOGRAPH_FIELDS, has)


FORMULA_FIELDS = ("functions", "indications", "cautions", "doses", "roles")


def _formula_counts(formulas: list[m.Formula]) -> dict[str, Any]:
    """How many formulas have every field the issue names (composition with a modern dose in grams, or a count, for
    each herb, the role of each herb, functions, indications, cautions), and how many lack each one. An original
    amount alone (一两, 等分, 半升) is not a modern dose; an ingredient named in the method of preparation needs none.
    ``doses_derived``: formulas whose grams this project derived from the original proportion (kb.derive_doses)."""

    def has(f: m.Formula, field: str) -> bool:
        if field == "doses":
            return all(
                i.dose_g is not None or m.modern_amount(i.amount) or m.named_in_usage(i.note) for i in f.composition
            )
        if field == "roles":
            return all(i.role for i in f.composition)
        return bool(getattr(f, field))

    out = _completeness(formulas, FORMULA_FIELDS, has)
    out["doses_derived"] = sum(1 for f in formulas if any(i.dose_derived for i in f.composition))
    return out


def _completeness(entries: Sequence[Any], fields: tuple[str, ...], has: Callable[[Any, str], bool]) -> dict[str, Any]:
    """``complete``: how many entries have every field; ``missing``: how many lack each one."""
    return {
        "complete": sum(1 for e in entries if all(has(e, f) for f in fields)),
        "missing": {f: sum(1 for e in entries if not has(e, f)) for f in fields},
    }


def _verification_counts(kb: KnowledgeBase) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for kind, table in (
        ("herbs", kb.herbs), ("forms", kb.forms), ("formulas", kb.formulas), ("syndromes", kb.syndromes),
        ("symptoms", kb.symptoms), ("rules", kb.rules), ("substitutions", kb.substitutions),
    ):  # fmt: skip
        counts: dict[str, int] = defaultdict(int)
        for e in table.values():
            counts[e.verification] += 1
        out[kind] = dict(sorted(counts.items()))
    return out


def content_files(data_dir: Path) -> list[Path]:
    return sorted(p for p in data_dir.rglob("*.yaml") if not p.name.startswith("."))


def content_hash(data_dir: Path) -> str:
    h = hashlib.sha256()
    for p in content_files(data_dir):
        h.update(str(p.relative_to(data_dir)).encode())
        h.update(b"\0")
        h.update(p.read_bytes())
        h.update(b"\0")
    return h.hexdigest()[:12]


def default_data_dir() -> Path:
    env = os.environ.get("TCM_KB_DIR")
    return Path(env) if env else DEFAULT_DATA_DIR


def _compiled_graph(base: KnowledgeBase) -> nx.MultiDiGraph:
    from kb.graph import build_graph

    path = cache_dir() / f"kb-{base.version.content_hash}-{_code_hash()}.graph.pickle"
    use_cache = os.environ.get("TCM_KB_CACHE", "1") != "0"
    g = _read_pickle(path) if use_cache else None
    if g is None:
        g = build_graph(base)
        if use_cache:
            _write_pickle(path, g)
    return g


def _read_pickle(path: Path) -> Any:
    """A compiled object from the cache, or None when absent or unreadable (it is then rebuilt)."""
    import gc
    import pickle

    if not path.is_file():
        return None
    gc_was_on = gc.isenabled()
    gc.disable()  # hundreds of thousands of small objects: the collector would rescan them again and again
    try:
        with path.open("rb") as fh:
            return pickle.load(fh)
    except Exception:  # a stale, partial or foreign cache file
        logger.info("ignoring unreadable cache file %s", path.name)
        return None
    finally:
        if gc_was_on:
            gc.enable()


def _write_pickle(path: Path, obj: Any) -> None:
    """Write a compiled object atomically (a reader never sees half a file); a cache that cannot be written is
    only logged."""
    import pickle

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with tmp.open("wb") as fh:
            pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(path)
    except OSError as exc:
        logger.info("cache not written: %s", exc)


def _write_bytes(path: Path, data: bytes) -> None:
    """Write a cache file atomically; a cache that cannot be written is only logged."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    except OSError as exc:
        logger.info("cache not written: %s", exc)


@functools.cache
def _code_hash() -> str:
    h = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for p in sorted([*here.glob("*.py"), *here.glob("*.tsv")]):
        h.update(p.read_bytes())
    return h.hexdigest()[:12]


def cache_dir() -> Path:
    env = os.environ.get("TCM_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tcm-cds"


def load(data_dir: Path | str | None = None, *, cache: bool = True) -> KnowledgeBase:
    """Load and validate a knowledge base (default: the built-in one, or ``$TCM_KB_DIR``).

    A valid knowledge base is compiled once and kept as a pickle in ``cache_dir()`` (``$TCM_CACHE_DIR``), keyed
    by the hash of its content files and of the code that builds it, so a later load of the same content skips
    YAML parsing and validation; any change to either rebuilds it. ``cache=False`` always builds.
    ``TCM_KB_CACHE=0`` turns the cache off.
    """
    path = Path(data_dir) if data_dir is not None else default_data_dir()
    if not path.is_dir():
        raise ContentError(f"{path}: knowledge-base directory not found")
    digest = content_hash(path)
    cache = cache and os.environ.get("TCM_KB_CACHE", "1") != "0"
    cached = cache_dir() / f"kb-{digest}-{_code_hash()}.pickle"
    if cache:
        base = _read_pickle(cached)
        if isinstance(base, KnowledgeBase) and base.version.content_hash == digest:
            base.data_dir = path
            return base
    from kb.loader import load_content

    content = load_content(path, keep_going=True)
    base = KnowledgeBase(content, path, digest)
    if cache:
        _write_pickle(cached, base)
    return base


@functools.lru_cache(maxsize=4)
def _cached(path: str, digest: str) -> KnowledgeBase:
    return load(path)


def default() -> KnowledgeBase:
    """The built-in knowledge base, loaded once per process (reloaded when its files change)."""
    path = default_data_dir()
    return _cached(str(path), content_hash(path))
