"""Syndrome differentiation (辨证): rank disease-specific syndromes from a patient's findings, with evidence.

Each syndrome's profile in the knowledge base weighs its findings by role (tongue and pulse, key, secondary: the role
weights are fitted) and by how specific a finding is (an inverse-document-frequency over all syndrome profiles:
发热 says less than 骨蒸潮热). A syndrome's score is the cosine between the patient's findings and its profile, where
each stated finding counts once, for the profile finding it says most of: itself; a broader one (patient 恶寒重,
profile 恶寒); in part a narrower one (patient 恶寒, profile 恶寒重); or a compound written with it (profile
小腹冷痛拒按 from 小腹冷痛 and 拒按; a patient's 舌红苔薄黄 states 舌红 and 苔薄黄). From that it subtracts what argues
against the syndrome (its contra findings, the opposite of a profile finding — 无汗 against 汗出 — and a key finding
the patient denies) and adds what is known before the findings are weighed: the note names the syndrome's disease or
states its hallmark (the finding the disease is named for, 咳嗽, 月经后期), the patient's age (儿科 is for children)
and sex, and the life stage a disease needs (妊娠期 for 子肿, 产后 for 产后发热), read from ``patient`` or the note.
Scores become probabilities with a softmax whose parameters are fitted on the tuning half of the development
vignettes (``cds/params.json``; never on held-out data). Learned models and case retrieval plug in through the
``Scorer`` and ``CaseIndex`` protocols when their artifacts are present; the answer says which were used.
"""

from __future__ import annotations

import functools
import json
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from scipy import sparse

import kb as kbmod
from cds.extract import Demographics, Extraction, Term, demographics, diseases_mentioned, extract, lookup, subterms
from cds.prescription import _patient
from kb import icd11
from kb import model as m
from kb.errors import InputError
from kb.normalize import normalize

ROLES = ("key", "tongue", "pulse", "secondary")
PARAMS_FILE = Path(__file__).resolve().parent / "params.json"
# Used where cds/params.json leaves a parameter out; the fitted values are in that file.
DEFAULT_PARAMS = {
    "w_key": 1.0, "w_tongue": 1.5, "w_pulse": 1.5, "w_secondary": 1.0,  # a profile finding's weight by its role
    "alpha": 12.0,  # the cosine
    "beta": 2.0,  # findings that argue against the syndrome
    "miss": 0.0,  # the share of its key findings the patient does not state
    "gamma": 0.5,  # the note names the syndrome's disease
    "hallmark": 1.0,  # the patient states the disease's hallmark
    "context": 8.0,  # the life stage the disease needs (妊娠期, 产后) is not stated
    "paed": 1.0,  # a child and a 儿科 syndrome, an adult and another
    "sex": 30.0,  # a syndrome of the other sex
    "model": 0.5,  # a learned model's log-opinion, when one is given (a scorer without a weight of its own)
    "department_prior": 0.25,  # the case-classify model's department prior (cds.learned.DepartmentPrior)
    "temperature": 0.5,
    "low_confidence": 0.35,
}  # fmt: skip


OVERRIDES: dict[str, float] = {}  # set only by the fitting harness (``python -m eval.syndromes --fit``)


@functools.lru_cache(maxsize=1)
def params() -> dict[str, float]:
    fitted = json.loads(PARAMS_FILE.read_text(encoding="utf-8"))["params"] if PARAMS_FILE.is_file() else {}
    return {**DEFAULT_PARAMS, **fitted, **OVERRIDES}


class Scorer(Protocol):
    """A learned model: syndrome id -> probability for these findings (absent syndromes: no opinion).

    Its log-opinion, relative to an even one over the syndromes it scores, is added to each syndrome's logit
    with the scorer's ``weight`` (else the ``model`` parameter)."""

    name: str

    def __call__(self, findings: Findings, base: kbmod.KnowledgeBase) -> dict[str, float]: ...


@dataclass(frozen=True, slots=True)
class SimilarCase:
    """A stored case near these findings: its herbs (name, knowledge-base id, dose in grams) and the formulas of
    the knowledge base its prescription is built on (id, name, share of the formula's herbs present)."""

    case_id: str
    similarity: float
    syndrome_id: str | None = None
    department: str | None = None
    excerpt: str = ""
    source: str = ""
    herbs: tuple[tuple[str, str | None, float | None], ...] = ()
    formulas: tuple[tuple[str, str, float], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "case_id": self.case_id, "similarity": round(self.similarity, 4), "department": self.department,
            "syndrome_id": self.syndrome_id, "findings": self.excerpt, "source": self.source,
            "formulas": [{"formula_id": f, "name": n, "coverage": round(c, 3)} for f, n, c in self.formulas],
            "herbs": [{"herb": n, "herb_id": h, "dose_g": d} for n, h, d in self.herbs],
        }  # fmt: skip


class CaseIndex(Protocol):
    """Similar-case retrieval: the ``k`` stored cases nearest to a findings text (``cds.learned.CaseEvidence``)."""

    name: str

    def search(self, text: str, k: int, base: kbmod.KnowledgeBase) -> list[SimilarCase]: ...


SIMILAR_CASES = 10  # the neighbours consulted; the answer lists the first SHOWN_CASES of them
SHOWN_CASES = 5


@dataclass(frozen=True, slots=True)
class Findings:
    present: tuple[Term, ...]
    negated: tuple[Term, ...]
    unrecognised: tuple[str, ...]
    text: str
    disease_ids: tuple[str, ...]  # given by the physician (resolved)
    disease_hints: tuple[str, ...]  # named in the text
    candidates: tuple[str, ...] | None
    top_k: int
    patient: Any
    notes: tuple[str, ...]
    demo: Demographics = field(default_factory=Demographics)  # age, sex, pregnancy: `patient`, else the note


@dataclass
class Profile:
    weights: dict[str, float]  # symptom id -> role weight * specificity
    roles: dict[str, str]
    key: tuple[str, ...]
    contra: set[str]
    norm: float


# partial credit for a profile finding the patient states more or less precisely, by steps in the hierarchy
NARROWER_CREDIT = (1.0, 0.8, 0.7, 0.6)  # patient 恶寒重 for profile 恶寒
BROADER_CREDIT = (1.0, 0.35, 0.25, 0.2)  # patient 恶寒 for profile 恶寒重: not implied, weaker
HALLMARK_SHARE = 0.3  # a part of a key finding counts toward its disease's hallmark when it is this much of it
HALLMARK_FRACTION = 0.75  # ... and when this share of the disease's syndromes name it
COMMON_FRACTION = 0.045  # a finding in more than this share of all profiles (发热, 乏力, 心悸) is too common for one
LIFE_STAGE_DISEASES = 3  # a context finding required by this many diseases is a life stage (妊娠期, 产后)
FULL_PARTS = 0.8  # a patient's compound finding states its parts when they make up (nearly) all of it
PART_CREDIT = 0.9  # a compound finding (小腹冷痛拒按) by the share of its parts the patient states


class Index:
    """Syndrome profiles of one knowledge base, built once."""

    def __init__(self, kb: kbmod.KnowledgeBase):
        self.kb = kb
        self.broader: dict[str, str] = {}
        self.opposite: dict[str, str] = {}
        for s in kb.symptoms.values():
            if s.broader:
                r = kb.resolve(s.broader, "symptom")
                if r.resolved and r.id and r.id != s.id:
                    self.broader[s.id] = r.id
            if s.opposite:
                r = kb.resolve(s.opposite, "symptom")
                if r.resolved and r.id and r.id != s.id:
                    self.opposite[s.id] = r.id
                    self.opposite.setdefault(r.id, s.id)
        self.children: dict[str, list[str]] = defaultdict(list)
        for child, parent in self.broader.items():
            self.children[parent].append(child)
        # ancestors (with their distance) and descendants of every finding
        self.anc: dict[str, tuple[tuple[str, int], ...]] = {}
        self.desc: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for sid in kb.symptoms:
            chain: list[tuple[str, int]] = []
            cur, depth = sid, 0
            while cur in self.broader and depth < 3:
                cur, depth = self.broader[cur], depth + 1
                if cur == sid or any(c == cur for c, _ in chain):
                    break
                chain.append((cur, depth))
            self.anc[sid] = tuple(chain)
            for a, dist in chain:
                self.desc[a].append((sid, dist))
        # the parts a compound finding is written from (舌红苔薄黄 -> 舌红, 苔薄黄), and the compounds of each part
        self.parts: dict[str, tuple[tuple[str, float], ...]] = {}
        self.part_of: dict[str, set[str]] = defaultdict(set)
        for s in kb.symptoms.values():
            if s.negated:
                continue
            parts = subterms(s.name, kb)
            if parts:
                self.parts[s.id] = parts
                for a, _ in parts:
                    self.part_of[a].add(s.id)
        df: dict[str, int] = defaultdict(int)
        for sy in kb.syndromes.values():
            for sid in {f.symptom_id for f in (*sy.key, *sy.secondary, *sy.tongue, *sy.pulse) if f.symptom_id}:
                df[sid] += 1
        n = max(len(kb.syndromes), 1)
        self.idf = {sid: math.log((n + 1) / (c + 1)) + 1.0 for sid, c in df.items()}
        self.default_idf = math.log(n + 1) + 1.0
        self.w_common = math.log((n + 1) / (COMMON_FRACTION * n + 1)) + 1.0  # the weight of a common finding
        self.profiles: dict[str, Profile] = {}
        p = params()
        role_weight = {role: p[f"w_{role}"] for role in ROLES}  # how much a finding weighs by its role in a profile
        for sy in kb.syndromes.values():
            weights: dict[str, float] = {}
            roles: dict[str, str] = {}
            for role, fs in (("key", sy.key), ("tongue", sy.tongue), ("pulse", sy.pulse), ("secondary", sy.secondary)):
                for f in fs:
                    if f.symptom_id and f.symptom_id not in weights:
                        weights[f.symptom_id] = role_weight[role] * self.idf.get(f.symptom_id, self.default_idf)
                        roles[f.symptom_id] = role
            contra = {f.symptom_id for f in sy.contra if f.symptom_id}
            key = tuple(f.symptom_id for f in sy.key if f.symptom_id)
            norm = math.sqrt(sum(w * w for w in weights.values())) or 1.0
            self.profiles[sy.id] = Profile(weights, roles, key, contra, norm)
        # which syndromes name a finding in their profile, as contra, as key
        self.has: dict[str, set[str]] = defaultdict(set)
        self.contra_of: dict[str, set[str]] = defaultdict(set)
        self.key_of: dict[str, set[str]] = defaultdict(set)
        self.postings: dict[str, list[tuple[str, float, bool]]] = defaultdict(
            list
        )  # finding -> (syndrome, weight, key)
        for sid_, prof in self.profiles.items():
            for fid, w in prof.weights.items():
                self.has[fid].add(sid_)
                self.postings[fid].append((sid_, w, prof.roles[fid] == "key"))
            for fid in prof.contra:
                self.contra_of[fid].add(sid_)
            for fid in prof.key:
                self.key_of[fid].add(sid_)
        # who the syndrome is for: a disease of 儿科 is for children; one of 妇科, or whose every syndrome names a
        # finding of women (月经, 带下) or of men (遗精, 阳痿) among its key findings, for one sex
        cat = {s.id: s.category for s in kb.symptoms.values()}
        self.paediatric: set[str] = set()
        self.sex_only: dict[str, str] = {}
        for dis in kb.diseases.values():
            keys = [{cat.get(f.symptom_id) for f in kb.syndromes[syn].key if f.symptom_id} for syn in dis.syndrome_ids]
            only = None
            if dis.discipline == "妇科" or (keys and all("妇科" in k for k in keys)):
                only = "female"
            elif keys and all("男科" in k for k in keys):
                only = "male"
            for syn in dis.syndrome_ids:
                if dis.discipline == "儿科":
                    self.paediatric.add(syn)
                if only:
                    self.sex_only[syn] = only
        # the same profiles as sparse matrices, for scoring every syndrome at once
        self.rows = list(self.profiles)
        self.row_of = {sid: i for i, sid in enumerate(self.rows)}
        # deprecated syndromes are not offered (they still rank when a physician names one)
        self.deprecated_rows = frozenset(i for i, sid in enumerate(self.rows) if kb.deprecation("syndrome", sid))
        self.col: dict[str, int] = {}
        data: list[float] = []
        ri: list[int] = []
        ci: list[int] = []
        kri: list[int] = []
        kci: list[int] = []
        for row, sid_ in enumerate(self.rows):
            prof = self.profiles[sid_]
            for fid, w in prof.weights.items():
                c = self.col.setdefault(fid, len(self.col))
                data.append(w * self.w(fid))
                ri.append(row)
                ci.append(c)
                if prof.roles[fid] == "key":
                    kri.append(row)
                    kci.append(c)
        shape = (len(self.rows), max(len(self.col), 1))
        self.W = sparse.csc_matrix((data, (ri, ci)), shape=shape)
        self.K = sparse.csc_matrix(([1.0] * len(kri), (kri, kci)), shape=shape)
        self.roles_any_key = np.zeros(shape[1], dtype=bool)
        self.roles_any_key[kci] = True
        self.norms = np.array([self.profiles[s].norm for s in self.rows])
        self.n_key = np.array([len(self.profiles[s].key) for s in self.rows], dtype=float)
        self.is_paed = np.array([s in self.paediatric for s in self.rows])
        self.only_female = np.array([self.sex_only.get(s) == "female" for s in self.rows])
        self.only_male = np.array([self.sex_only.get(s) == "male" for s in self.rows])
        diseases = sorted({kb.syndromes[s].disease_id for s in self.rows})
        self.disease_col = {d: i for i, d in enumerate(diseases)}
        self.disease_of_row = np.array([self.disease_col[kb.syndromes[s].disease_id] for s in self.rows])
        # a disease's hallmark: the finding its name is (咳嗽, 痛经, 月经后期), and any finding, not a common one, that
        # (nearly) every one of its syndromes names among its key findings (带下量多 of 带下过多)
        self.hallmarks: dict[str, set[str]] = {}
        for dis in kb.diseases.values():
            marks = {sid for sid in (lookup(name, kb) for name in (dis.name, *dis.aliases)) if sid}
            count: dict[str, int] = defaultdict(int)
            for syn in dis.syndrome_ids:
                feats: set[str] = set()
                for k in self.profiles[syn].key:
                    for q in (k, *(pt for pt, share in self.parts.get(k, ()) if share >= HALLMARK_SHARE)):
                        feats.add(q)
                        feats.update(a for a, _ in self.anc.get(q, ()))
                for q in feats:
                    count[q] += 1
            n_syn = len(dis.syndrome_ids)
            marks |= {q for q, c in count.items() if n_syn >= 2 and c >= HALLMARK_FRACTION * n_syn
                      and self.w(q) >= self.w_common}  # fmt: skip
            self.hallmarks[dis.id] = marks
        # a life stage several diseases are defined by (妊娠期 of 子肿, 子淋 …; 产后 of 产后发热 …): a context finding
        # that every syndrome of each of them names among its key findings. A note that does not say it argues
        # against them (a pregnancy or a recent delivery is always written down).
        needs: dict[str, set[str]] = {}
        for dis in kb.diseases.values():
            common: set[str] | None = None
            for syn in dis.syndrome_ids:
                feats = set()
                for k in self.profiles[syn].key:
                    for q in (k, *(pt for pt, _ in self.parts.get(k, ()))):
                        feats.add(q)
                        feats.update(a for a, _ in self.anc.get(q, ()))
                ctx = {q for q in feats if kb.symptoms[q].category == "病史情境"}
                common = ctx if common is None else common & ctx
            if common:
                needs[dis.id] = common
        stage_count: dict[str, int] = defaultdict(int)
        for ctx_ids in needs.values():
            for q in ctx_ids:
                stage_count[q] += 1
        stages = {q for q, c in stage_count.items() if c >= LIFE_STAGE_DISEASES}
        self.requires: dict[str, set[str]] = {d: c & stages for d, c in needs.items() if c & stages}
        self.hallmark_of: dict[str, set[str]] = defaultdict(set)
        for d_id, marks in self.hallmarks.items():
            for q in marks:
                self.hallmark_of[q].add(d_id)
        self._credit_cache: dict[str, dict[str, float]] = {}
        self._row_cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.pregnancy_id = next((r.id for r in [kb.resolve("妊娠期", "symptom")] if r.resolved), None)

    def w(self, sid: str) -> float:
        return self.idf.get(sid, self.default_idf)

    def source_credit(self, sid: str) -> dict[str, float]:
        """What stating one finding says of every profile finding: itself 1, a broader one (恶寒 for 恶寒重) and a
        narrower one (恶寒重 for 恶寒) in part, a compound written with it (恶寒发热) by its share."""
        hit = self._credit_cache.get(sid)
        if hit is not None:
            return hit
        credit = {sid: 1.0}
        for a, d in self.anc.get(sid, ()):
            credit[a] = max(credit.get(a, 0.0), NARROWER_CREDIT[d])
        for child, d in self.desc.get(sid, ()):
            credit[child] = max(credit.get(child, 0.0), BROADER_CREDIT[d])
        for part, c in [(q, c) for q, c in credit.items() if c >= 0.5]:
            for compound in self.part_of.get(part, ()):
                share = sum(s for p2, s in self.parts[compound] if p2 == part)
                credit[compound] = max(credit.get(compound, 0.0), PART_CREDIT * share * c)
        self._credit_cache[sid] = credit
        return credit

    def source_row(self, sid: str) -> tuple[np.ndarray, np.ndarray]:
        """For every syndrome, the most one stated finding adds to its dot product (one profile finding per source)."""
        hit = self._row_cache.get(sid)
        if hit is not None:
            return hit
        pairs = [(self.col[q], c * 1.0) for q, c in self.source_credit(sid).items() if q in self.col]
        best = np.zeros(len(self.rows))
        if pairs:
            cols, vals = zip(*pairs, strict=True)
            sub = self.W[:, list(cols)].tocoo()
            np.maximum.at(best, sub.row, sub.data * np.asarray(vals)[sub.col])
        nz = np.flatnonzero(best)
        out = (nz, best[nz])
        self._row_cache[sid] = out
        return out


@functools.lru_cache(maxsize=8)
def index_for(kb: kbmod.KnowledgeBase) -> Index:
    return Index(kb)


# ---- input ---------------------------------------------------------------------------------------------
def read_findings(raw: Any, kb: kbmod.KnowledgeBase) -> Findings:
    """Validate and extract the findings of a request; raises InputError naming the field."""
    if not isinstance(raw, dict):
        raise InputError(f"findings are a JSON object (text, symptoms, tongue, pulse, …), got {type(raw).__name__}")
    notes: list[str] = []
    text_parts: list[str] = []
    for key in ("text", "tongue", "pulse"):
        v = raw.get(key)
        if v is None:
            continue
        if isinstance(v, list):
            v = "，".join(str(x) for x in v)
        if not isinstance(v, str):
            raise InputError(f"expected text, got {type(v).__name__}", key)
        if v.strip():
            text_parts.append(v)
    text = "。".join(text_parts)
    ex = extract(text, kb) if text else Extraction((), (), ())
    present, negated, unrecognised = list(ex.present), list(ex.negated), list(ex.unrecognised)
    symptoms = raw.get("symptoms")
    if symptoms is not None:
        if not isinstance(symptoms, list) or not all(isinstance(x, str) for x in symptoms):
            raise InputError("expected a list of finding terms", "symptoms")
        loose = []
        for term in symptoms:
            sid = lookup(term, kb)
            if sid is not None:
                if sid not in {t.symptom_id for t in present}:
                    present.append(Term(sid, kb.symptoms[sid].name, term, -1, False))
            else:
                loose.append(term)
        if loose:  # read as one note, so that an item like 量少色淡 speaks of the 月经 of the item before it
            sub = extract("，".join(symptoms), kb)
            present += [t for t in sub.present if t.symptom_id not in {p.symptom_id for p in present}]
            negated += list(sub.negated)
            for i, term in enumerate(symptoms):
                if term in loose:  # unread even after the item before it
                    before = symptoms[i - 1] if i else ""
                    ex = extract(before, kb)
                    seen = {t.symptom_id for t in (*ex.present, *ex.negated)}
                    got = extract(f"{before}，{term}", kb)
                    if not {t.symptom_id for t in (*got.present, *got.negated)} - seen:
                        unrecognised.append(term)
    disease_ids: list[str] = []
    disease = raw.get("disease")
    patient = _patient(raw.get("patient"))
    if disease is not None:
        if not isinstance(disease, str) or not disease.strip():
            raise InputError("expected a disease name", "disease")
        r = kb.resolve(disease, "disease")
        if not r.resolved or r.id is None:
            hint = f"; closest: {', '.join(r.candidates)}" if r.candidates else ""
            notes.append(f"disease {disease!r} is not in the knowledge base{hint}; all diseases were considered")
        else:
            disease_ids = [r.id, *(t.id for t in r.others if t.kind == "disease")]
            if len(disease_ids) > 1 and patient.age_years is not None:
                want = "儿科" if patient.age_years < 14 else None
                pick = [d for d in disease_ids if (kb.diseases[d].discipline == "儿科") == (want == "儿科")]
                disease_ids = pick or disease_ids
    candidates = raw.get("candidates")
    if candidates is not None:
        if (
            not isinstance(candidates, list)
            or not candidates
            or not all(isinstance(c, str) and c.strip() for c in candidates)
        ):
            raise InputError("expected a non-empty list of syndrome names", "candidates")
    top_k = raw.get("top_k", 5)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise InputError(f"expected a positive whole number, got {top_k!r}", "top_k")
    western = raw.get("western_diagnoses")
    if western is not None and not (isinstance(western, list) and all(isinstance(x, str) for x in western)):
        raise InputError("expected a list of diagnosis names", "western_diagnoses")
    if not present and not negated and not disease_ids and not western:
        what = "no finding was recognised" if (text or symptoms) else "no findings were given"
        raise InputError(f"{what}: give `text`, `symptoms`, `tongue` or `pulse` with terms the engine knows"
                         + (f" (unrecognised: {'; '.join(unrecognised[:5])})" if unrecognised else ""))  # fmt: skip
    said = demographics("，".join([text, *(symptoms or [])]))
    demo = Demographics(
        age_years=patient.age_years if patient.age_years is not None else said.age_years,
        child=said.child, sex=patient.sex or said.sex,
        pregnant=patient.pregnant if patient.pregnant is not None else said.pregnant,
    )  # fmt: skip
    preg = index_for(kb).pregnancy_id
    if demo.pregnant and preg and preg not in {t.symptom_id for t in present}:
        present.append(
            Term(preg, kb.symptoms[preg].name, "patient.pregnant" if patient.pregnant else "妊娠", -1, False)
        )
    hints = diseases_mentioned(text + "，" + "，".join(symptoms or []), kb) if (text or symptoms) else []
    if western:
        for w in western:
            for d in kb.diseases.values():
                if any(w == x or (len(x) >= 2 and x in w) for x in d.western) and d.id not in hints:
                    hints.append(d.id)
    return Findings(
        present=tuple(present), negated=tuple(negated), unrecognised=tuple(unrecognised), text=text,
        disease_ids=tuple(disease_ids), disease_hints=tuple(hints),
        candidates=tuple(candidates) if candidates else None, top_k=top_k, patient=patient, notes=tuple(notes),
        demo=demo,
    )  # fmt: skip


# ---- scoring -------------------------------------------------------------------------------------------
@dataclass
class Scored:
    syndrome: m.Syndrome
    logit: float
    cosine: float
    matched: list[tuple[str, str, float]]
    contra: list[tuple[str, str]]  # (patient finding, "contra" or the profile finding it is the opposite of)
    denied: list[str]
    names: dict[str, str]

    def evidence(self, idx: Index) -> tuple[list[dict[str, Any]], list[str], list[dict[str, Any]]]:
        """Supporting findings, missing key findings and contradicting findings, for the answer."""
        sym = idx.kb.symptoms
        prof = idx.profiles[self.syndrome.id]
        supporting = [{"finding": self.names.get(sid, sym[sid].name), "matches": sym[via].name, "role": prof.roles[via],
                       "credit": credit} for sid, via, credit in self.matched]  # fmt: skip
        hit = {via for _, via, credit in self.matched if credit >= 0.5}
        missing = [sym[k].name for k in prof.key if k not in hit]
        contradicting = [{"finding": self.names.get(sid, sym[sid].name),
                          "why": "argues against this syndrome" if what == "contra" else f"opposite of {sym[what].name}"}
                         for sid, what in self.contra]  # fmt: skip
        contradicting += [
            {"finding": f"无{sym[sid].name}", "why": "a key finding the patient denies"} for sid in self.denied
        ]
        return supporting, missing, contradicting


@dataclass
class Patient:
    """The patient side of the scoring, computed once per request."""

    stated: dict[str, tuple[float, str]]  # finding -> (credit, the patient finding that states it)
    ids: set[str]
    denied: set[str]
    opposites: list[tuple[str, str]]  # (patient finding, its opposite)
    norm: float
    names: dict[str, str]
    credit: dict[str, tuple[float, str]]  # profile finding -> (credit, patient finding): only those with credit
    demo: Demographics
    sources: tuple[str, ...] = ()  # the findings the patient states, each counted once per profile
    hallmark: dict[str, float] = field(default_factory=dict)  # disease -> how fully its hallmark is stated


def patient_side(idx: Index, f: Findings) -> Patient:
    ids = {t.symptom_id for t in f.present}
    sq = sum(idx.w(sid) ** 2 for sid in ids)
    # what the patient states: each finding, and the parts of a compound one (舌红苔薄黄 states 舌红 and 苔薄黄)
    sources: list[str] = []
    for sid in sorted(ids):
        parts = idx.parts.get(sid, ())
        if sum(share for _, share in parts) >= FULL_PARTS:  # written wholly from its parts
            sources += [part for part, _ in parts if part not in sources]
        if sid not in sources:
            sources.append(sid)
    # credit of each profile finding, the best any source gives it, with compounds credited from all their parts
    credit: dict[str, tuple[float, str]] = {}
    for src in sources:
        for q, c in idx.source_credit(src).items():
            if c > credit.get(q, (0.0, ""))[0]:
                credit[q] = (c, src)
    for part in [q for q, (c, _) in credit.items() if c >= 0.5]:
        for compound in idx.part_of.get(part, ()):
            total, src = 0.0, ""
            for p2, share in idx.parts[compound]:
                c2 = credit.get(p2)
                if c2 is not None and c2[0] >= 0.5:
                    total += share * c2[0]
                    src = src or c2[1]
            cr = PART_CREDIT * total
            if cr > credit.get(compound, (0.0, ""))[0]:
                credit[compound] = (cr, src)
    opposites = [(sid, idx.opposite[sid]) for sid in ids if sid in idx.opposite]
    hallmark: dict[str, float] = {}
    for q, (c, _src) in credit.items():
        if c >= 0.5:
            for d in idx.hallmark_of.get(q, ()):
                hallmark[d] = max(hallmark.get(d, 0.0), c)
    return Patient({s: (1.0, s) for s in sources}, ids, {t.symptom_id for t in f.negated}, opposites, math.sqrt(sq),
                   {t.symptom_id: t.name for t in f.present}, credit, f.demo, tuple(sources), hallmark)  # fmt: skip


def prior(idx: Index, sy: m.Syndrome, f: Findings, p: dict[str, float], pt: Patient) -> float:
    """What the syndrome's disease (named in the note, its hallmark stated, the life stage it needs) and the
    patient's age and sex say, before the findings are weighed against its profile."""
    d = sy.disease_id
    out = p["gamma"] if d in f.disease_hints else 0.0
    out += p["hallmark"] * pt.hallmark.get(d, 0.0)
    demo = f.demo
    child = demo.age_years < 14 if demo.age_years is not None else demo.child
    for q in idx.requires.get(d, ()):
        if pt.credit.get(q, (0.0, ""))[0] < 0.5:
            out -= p["context"]
    if idx.requires.get(d) and (demo.sex == "male" or child):  # a life stage of women
        out -= p["sex"]
    if child is not None:
        out += p["paed"] if child == (sy.id in idx.paediatric) else -p["paed"]
    only = idx.sex_only.get(sy.id)
    if only and demo.sex and only != demo.sex:
        out -= p["sex"]
    return out


def score(idx: Index, sy: m.Syndrome, f: Findings, p: dict[str, float], pt: Patient | None = None) -> Scored:
    pt = pt or patient_side(idx, f)
    prof = idx.profiles[sy.id]
    weights = prof.weights
    dot = 0.0
    matched: list[tuple[str, str, float]] = []  # (patient finding, profile finding, credit)
    for src in pt.sources:  # each stated finding counts once, for the profile finding it says most of
        sc = idx.source_credit(src)
        best, via = 0.0, ""
        for q, w in weights.items():
            c = sc.get(q)
            if c is not None and w * idx.w(q) * c > best:
                best, via = w * idx.w(q) * c, q
        if via:
            dot += best
            matched.append((src, via, round(sc[via], 3)))
    missing = 0.0
    for k in prof.key:
        hit = pt.credit.get(k)
        missing += 1.0 - (hit[0] if hit else 0.0)
    cosine = dot / (prof.norm * pt.norm) if pt.norm else 0.0
    contra = [(sid, "contra") for sid in pt.ids & prof.contra]
    contra += [(sid, opp) for sid, opp in pt.opposites if opp in weights]
    denied = pt.denied.intersection(prof.key)
    penalty = sum(idx.w(sid) for sid, _ in contra) + sum(idx.w(sid) for sid in denied)
    miss_frac = missing / len(prof.key) if prof.key else 0.0
    logit = (
        p["alpha"] * cosine - p["beta"] * penalty / (pt.norm + 1.0) - p["miss"] * miss_frac + prior(idx, sy, f, p, pt)
    )
    return Scored(sy, logit, cosine, matched, contra, sorted(denied), pt.names)


def _softmax(xs: list[float], t: float) -> list[float]:
    if not xs:
        return []
    mx = max(xs)
    es = [math.exp((x - mx) / t) for x in xs]
    total = sum(es)
    return [e / total for e in es]


def _pool(kb: kbmod.KnowledgeBase, f: Findings) -> list[m.Syndrome]:
    if f.disease_ids:
        return [kb.syndromes[s] for d in f.disease_ids for s in kb.diseases[d].syndrome_ids]
    return list(kb.syndromes.values())


def _map_candidates(
    kb: kbmod.KnowledgeBase, f: Findings, logit: Callable[[str], float]
) -> list[tuple[str, str | None, str]]:
    """Each candidate name -> (name as given, syndrome id or None, how it matched).

    A name several diseases share (阴虚火旺证) is read as the syndrome of the disease the physician gave, else of the
    disease the other candidates point to (a candidate list is usually one disease's syndromes), else of the disease
    the note names, else the best-scoring one.
    """
    matches: list[tuple[str, list[str], str]] = []
    for cand in f.candidates or ():
        r = kb.resolve(cand, "syndrome")
        ids = [r.id, *(t.id for t in r.others if t.kind == "syndrome")] if r.resolved and r.id else []
        how = "name" if ids else ""
        if not ids and r.candidates and _similar(cand, r.candidates[0]) >= 0.6:  # closest match by name
            close = kb.resolve(r.candidates[0], "syndrome")
            if close.resolved and close.id:
                ids = [close.id, *(t.id for t in close.others if t.kind == "syndrome")]
                how = f"closest name: {r.candidates[0]}"
        if f.disease_ids:
            ids = [i for i in ids if kb.syndromes[i].disease_id in f.disease_ids] or ids
        matches.append((cand, ids, how))
    support: dict[str, int] = defaultdict(int)  # how many of the candidates the disease has
    for _, ids, _ in matches:
        for d in {kb.syndromes[i].disease_id for i in ids}:
            support[d] += 1
    out = []
    for cand, ids, how in matches:

        def rank(i: str) -> tuple[int, int, float]:
            d = kb.syndromes[i].disease_id
            return (support[d], d in f.disease_hints, logit(i))

        best = max(ids, key=rank) if ids else None
        out.append((cand, best, how or "no match"))
    return out


def _similar(a: str, b: str) -> float:
    """Character-set Dice similarity of two syndrome names, ignoring the trailing 证."""
    x, y = set(normalize(a).rstrip("证")), set(normalize(b).rstrip("证"))
    return 2 * len(x & y) / (len(x) + len(y)) if x and y else 0.0


def differentiate(raw: Any, kb: kbmod.KnowledgeBase | None = None, *, models: Any = None,
                  scorer: Scorer | None = None, cases: CaseIndex | None = None) -> dict[str, Any]:  # fmt: skip
    """Rank syndromes for a findings request; see the module docstring. Pure and thread-safe.

    ``models`` (``cds.learned.Models``) supplies a scorer and a case index; ``scorer``/``cases`` override it."""
    base = kb if kb is not None else kbmod.default()
    f = read_findings(raw, base)
    scorer, cases = _parts(models, scorer, cases)
    return _differentiate(base, f, scorer, cases)


def _parts(models: Any, scorer: Scorer | None, cases: CaseIndex | None) -> tuple[Scorer | None, CaseIndex | None]:
    if models is None:
        return scorer, cases
    return scorer or models.scorer, cases or models.cases


def _logits(idx: Index, f: Findings, p: dict[str, float], pt: Patient) -> tuple[np.ndarray, np.ndarray]:
    """Logit and cosine of every syndrome (rows of ``idx.rows``): the same numbers as ``score``, all at once."""
    n = len(idx.rows)
    dot = np.zeros(n)
    for src in pt.sources:
        rows, vals = idx.source_row(src)
        dot[rows] += vals
    cols: list[int] = []
    credits: list[float] = []
    for q, (c, _src) in pt.credit.items():
        j = idx.col.get(q)
        if j is not None and idx.roles_any_key[j]:
            cols.append(j)
            credits.append(c)
    keys = idx.K[:, cols] @ np.array(credits) if cols else np.zeros(n)
    pen = np.zeros(n)
    for pid in pt.ids:
        for sid in idx.contra_of.get(pid, ()):
            pen[idx.row_of[sid]] += idx.w(pid)
    for pid, opp in pt.opposites:
        for sid in idx.has.get(opp, ()):
            pen[idx.row_of[sid]] += idx.w(pid)
    for pid in pt.denied:
        for sid in idx.key_of.get(pid, ()):
            pen[idx.row_of[sid]] += idx.w(pid)
    cosine = dot / (idx.norms * pt.norm) if pt.norm else np.zeros(n)
    miss_frac = np.divide(idx.n_key - keys, idx.n_key, out=np.zeros(n), where=idx.n_key > 0)
    logit = p["alpha"] * cosine - p["beta"] * pen / (pt.norm + 1.0) - p["miss"] * miss_frac
    return logit + _prior_vector(idx, f, p, pt), cosine


def _prior_vector(idx: Index, f: Findings, p: dict[str, float], pt: Patient) -> np.ndarray:
    """``prior`` for every syndrome at once."""
    per_disease = np.zeros(len(idx.disease_col))
    for d in f.disease_hints:
        if d in idx.disease_col:
            per_disease[idx.disease_col[d]] += p["gamma"]
    for d, c in pt.hallmark.items():
        per_disease[idx.disease_col[d]] += p["hallmark"] * c
    demo = f.demo
    child = demo.age_years < 14 if demo.age_years is not None else demo.child
    for d, qs in idx.requires.items():
        per_disease[idx.disease_col[d]] -= p["context"] * sum(1 for q in qs if pt.credit.get(q, (0.0, ""))[0] < 0.5)
        if demo.sex == "male" or child:  # a life stage of women
            per_disease[idx.disease_col[d]] -= p["sex"]
    out = per_disease[idx.disease_of_row]
    if child is not None:
        out += np.where(idx.is_paed == child, p["paed"], -p["paed"])
    if demo.sex == "male":
        out -= p["sex"] * idx.only_female
    elif demo.sex == "female":
        out -= p["sex"] * idx.only_male
    return out


def similar_cases(base: kbmod.KnowledgeBase, f: Findings, cases: CaseIndex) -> list[SimilarCase]:
    """The stored cases nearest to these findings (the note, else the recognised findings as text)."""
    query = f.text or "，".join(t.name for t in f.present)
    return cases.search(query, SIMILAR_CASES, base) if query.strip() else []


def _differentiate(
    base: kbmod.KnowledgeBase, f: Findings, scorer: Scorer | None, cases: CaseIndex | None,
    hits: list[SimilarCase] | None = None,
) -> dict[str, Any]:  # fmt: skip
    idx = index_for(base)
    p = params()
    pt = patient_side(idx, f)
    logit_arr, _cos = _logits(idx, f, p, pt)
    if scorer is not None:  # a learned model's opinion, relative to an even one over the syndromes it scores
        opinion = {sid: pr for sid, pr in scorer(f, base).items() if sid in idx.row_of}
        weight = getattr(scorer, "weight", p["model"])
        for sid, pr in opinion.items():
            logit_arr[idx.row_of[sid]] += weight * math.log(max(pr, 1e-6) * len(opinion))
    logits = logit_arr.tolist()
    notes = list(f.notes)

    def shown(sid: str) -> Scored:  # the evidence behind a score that is shown
        return score(idx, base.syndromes[sid], f, p, pt)

    if f.candidates:
        mapping = _map_candidates(base, f, lambda sid: logits[idx.row_of[sid]])
        known = [(c, sid, how) for c, sid, how in mapping if sid is not None]
        probs = _softmax([logits[idx.row_of[sid]] for _, sid, _ in known], p["temperature"])  # type: ignore[index]
        entries = []
        for (cand, sid, how), prob in zip(known, probs, strict=True):
            entries.append(_entry(base, shown(sid), prob, candidate=cand, how=how))  # type: ignore[arg-type]
        for cand, missing_id, _how in mapping:
            if missing_id is None:
                entries.append({"candidate": cand, "name": cand, "syndrome_id": None, "aliases": [], "disease": None,
                                "score": None, "treatment_principle": None, "resolved": False,
                                "evidence": {"supporting": [], "missing_key": [], "contradicting": [], "paths": [],
                                             "similar_cases": []},
                                "note": "no syndrome of the knowledge base matches this name"})  # fmt: skip
                notes.append(f"candidate {cand!r} matches no syndrome of the knowledge base")
        entries.sort(key=lambda e: -(e["score"] if e["score"] is not None else -1.0))
    else:
        rows = np.array([idx.row_of[sy.id] for sy in _pool(base, f)]) if f.disease_ids else np.arange(len(idx.rows))
        if idx.deprecated_rows:  # a deprecated syndrome is not offered (it still ranks when a physician names it)
            rows = np.array([r for r in rows.tolist() if r not in idx.deprecated_rows], dtype=int)
        pool_logits = logit_arr[rows]
        order = np.argsort(-pool_logits, kind="stable")
        probs = _softmax(pool_logits.tolist(), p["temperature"])
        entries = [_entry(base, shown(idx.rows[rows[i]]), probs[i]) for i in order[: f.top_k].tolist()]
    models_used = []
    if scorer is not None:
        models_used.append(scorer.name)
    if cases is not None:
        models_used.append(cases.name)
        if hits is None:
            hits = similar_cases(base, f, cases)
        for e in entries:  # a case speaks for a syndrome it was labelled with, or whose formula it follows
            if not e.get("syndrome_id"):
                continue
            own = set(base.syndromes[e["syndrome_id"]].formula_ids)
            e["evidence"]["similar_cases"] = [
                {"case_id": h.case_id, "similarity": round(h.similarity, 4),
                 "via": "syndrome" if h.syndrome_id == e["syndrome_id"] else
                        "formula " + "、".join(n for fid, n, _ in h.formulas if fid in own)}
                for h in hits
                if h.syndrome_id == e["syndrome_id"] or any(fid in own for fid, _, _ in h.formulas)
            ]  # fmt: skip
    top = entries[0]["score"] if entries and entries[0]["score"] is not None else 0.0
    low = top < p["low_confidence"] or len(f.present) < 2
    if low:
        notes.append("low confidence: few findings recognised or no syndrome clearly ahead; gather more findings")
    return {
        "differentials": entries,
        "low_confidence": low,
        "recognised": [{"term": t.written, "finding": t.name, "symptom_id": t.symptom_id} for t in f.present],
        "negated": [{"term": t.written, "finding": t.name, "symptom_id": t.symptom_id} for t in f.negated],
        "unrecognised": list(f.unrecognised),
        "disease": [base.diseases[d].name for d in f.disease_ids],
        "disease_hints": [base.diseases[d].name for d in f.disease_hints],
        "notes": notes,
        "similar_cases": [h.as_dict() for h in (hits or [])[:SHOWN_CASES]],
        "models_used": models_used,
        "kb_version": str(base.version),
        "ruleset_version": base.ruleset_version,
        "method": "kb-profile-cosine" + ("+" + "+".join(models_used) if models_used else ""),
    }


def diagnosis_codes(base: kbmod.KnowledgeBase, syndrome_id: str) -> list[dict[str, str]]:
    """The ICD-11 TM1 codings of a syndrome's diagnosis: the disease's disorder code, then the pattern code.

    Each coding says what it codes (``of``: disease or syndrome); a side without a recorded code is left out, so
    the list can be empty.
    """
    sy = base.syndromes[syndrome_id]
    out = []
    for of, codes in (("disease", base.diseases[sy.disease_id].codes), ("syndrome", sy.codes)):
        if "icd11" in codes:
            out.append({"of": of, **icd11.coding(codes["icd11"])})
    return out


def _entry(
    base: kbmod.KnowledgeBase, s: Scored, prob: float, candidate: str | None = None, how: str | None = None
) -> dict[str, Any]:
    sy = s.syndrome
    disease = base.diseases[sy.disease_id]
    formula = base.formulas[sy.formula_ids[0]].name if sy.formula_ids else None
    supporting, missing, contradicting = s.evidence(index_for(base))
    paths = [[x["finding"], sy.name, sy.principle, formula] for x in supporting[:3] if formula]
    out: dict[str, Any] = {
        "syndrome_id": sy.id,
        "name": sy.name,
        "aliases": list(sy.aliases),
        "disease": disease.name,
        "discipline": disease.discipline,
        "score": round(prob, 4),
        "cosine": round(s.cosine, 4),
        "treatment_principle": sy.principle,
        "formulas": [base.formulas[fid].name for fid in sy.formula_ids],
        "codes": diagnosis_codes(base, sy.id),
        "evidence": {
            "supporting": supporting,
            "missing_key": missing,
            "contradicting": contradicting,
            "paths": paths,
            "similar_cases": [],
        },
        "source": sy.source.as_dict(),
    }
    if candidate is not None:
        out = {"candidate": candidate, "matched_by": how, **out, "resolved": True}
    return out
