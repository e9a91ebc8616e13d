"""Syndrome differentiation (辨证): rank disease-specific syndromes from a patient's findings, with evidence.

Each syndrome's profile in the knowledge base weighs its findings by role (key > tongue = pulse > secondary) and by
how specific a finding is (an inverse-document-frequency over all syndrome profiles: 发热 says less than 骨蒸潮热).
A syndrome's score is the cosine between the patient's findings and its profile, with partial credit through the
symptom hierarchy (恶寒 vs 恶寒重), minus what argues against it (its contra findings, the opposite of a profile
finding — 无汗 against 汗出 — and a key finding the patient explicitly denies), plus a hint when the note names the
syndrome's disease. Scores become probabilities with a softmax whose parameters are fitted on the development
vignettes (``cds/params.json``; never on held-out data). Learned models and case retrieval plug in through the
``Scorer`` and ``CaseIndex`` protocols when their artifacts are present; the answer says which were used.
"""

from __future__ import annotations

import functools
import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import kb as kbmod
from cds.extract import Extraction, Term, diseases_mentioned, extract
from cds.prescription import _patient
from kb import model as m
from kb.errors import InputError
from kb.normalize import normalize

ROLE_WEIGHT = {"key": 3.0, "tongue": 1.5, "pulse": 1.5, "secondary": 1.0}
PARAMS_FILE = Path(__file__).resolve().parent / "params.json"
DEFAULT_PARAMS = {"alpha": 12.0, "beta": 6.0, "gamma": 1.5, "miss": 1.0, "temperature": 1.0, "low_confidence": 0.35}


@functools.lru_cache(maxsize=1)
def params() -> dict[str, float]:
    if PARAMS_FILE.is_file():
        return {**DEFAULT_PARAMS, **json.loads(PARAMS_FILE.read_text(encoding="utf-8"))["params"]}
    return dict(DEFAULT_PARAMS)


class Scorer(Protocol):
    """A learned model: syndrome id -> probability for these findings (absent syndromes: no opinion)."""

    name: str

    def __call__(self, findings: Findings) -> dict[str, float]: ...


class CaseIndex(Protocol):
    """Similar-case retrieval: the k nearest cases to a findings text, as (case id, similarity, syndrome id|None)."""

    name: str

    def search(self, text: str, k: int) -> list[tuple[str, float, str | None]]: ...


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


@dataclass
class Profile:
    weights: dict[str, float]  # symptom id -> role weight * specificity
    roles: dict[str, str]
    key: tuple[str, ...]
    contra: set[str]
    norm: float


class Index:
    """Syndrome profiles of one knowledge base, built once."""

    def __init__(self, kb: kbmod.KnowledgeBase):
        self.kb = kb
        df: dict[str, int] = defaultdict(int)
        for sy in kb.syndromes.values():
            for sid in {f.symptom_id for f in (*sy.key, *sy.secondary, *sy.tongue, *sy.pulse) if f.symptom_id}:
                df[sid] += 1
        n = max(len(kb.syndromes), 1)
        self.idf = {sid: math.log((n + 1) / (c + 1)) + 1.0 for sid, c in df.items()}
        self.default_idf = math.log(n + 1) + 1.0
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
        self.profiles: dict[str, Profile] = {}
        for sy in kb.syndromes.values():
            weights: dict[str, float] = {}
            roles: dict[str, str] = {}
            for role, fs in (("key", sy.key), ("tongue", sy.tongue), ("pulse", sy.pulse), ("secondary", sy.secondary)):
                for f in fs:
                    if f.symptom_id and f.symptom_id not in weights:
                        weights[f.symptom_id] = ROLE_WEIGHT[role] * self.idf.get(f.symptom_id, self.default_idf)
                        roles[f.symptom_id] = role
            contra = {f.symptom_id for f in sy.contra if f.symptom_id}
            key = tuple(f.symptom_id for f in sy.key if f.symptom_id)
            norm = math.sqrt(sum(w * w for w in weights.values())) or 1.0
            self.profiles[sy.id] = Profile(weights, roles, key, contra, norm)
        # which syndromes a patient finding can change the score of (everything else keeps its baseline)
        self.touch: dict[str, set[str]] = defaultdict(set)
        self.key_of: dict[str, set[str]] = defaultdict(set)
        for sid_, prof in self.profiles.items():
            for fid in prof.weights:
                self.touch[fid].add(sid_)
                if fid in self.broader:
                    self.touch[self.broader[fid]].add(sid_)  # patient 恶寒 gives partial credit to 恶寒重
                for child in self.children.get(fid, ()):
                    self.touch[child].add(sid_)  # patient 恶寒重 gives credit to 恶寒
                if fid in self.opposite:
                    self.touch[self.opposite[fid]].add(sid_)
            for fid in prof.contra:
                self.touch[fid].add(sid_)
            for fid in prof.key:
                self.key_of[fid].add(sid_)

    def w(self, sid: str) -> float:
        return self.idf.get(sid, self.default_idf)


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
        for term in symptoms:
            r = kb.resolve(term, "symptom")
            if r.resolved and r.id:
                if r.id not in {t.symptom_id for t in present}:
                    present.append(Term(r.id, r.name or term, term, -1, False))
            else:
                sub = extract(term, kb)  # a list item may hold several findings or a negation
                if sub.present or sub.negated:
                    present += [t for t in sub.present if t.symptom_id not in {p.symptom_id for p in present}]
                    negated += list(sub.negated)
                else:
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
        if not isinstance(candidates, list) or not candidates or not all(isinstance(c, str) and c.strip() for c in candidates):
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
        hit = {via for _, via, _ in self.matched}
        missing = [sym[k].name for k in prof.key if k not in hit]
        contradicting = [{"finding": self.names.get(sid, sym[sid].name),
                          "why": "argues against this syndrome" if what == "contra" else f"opposite of {sym[what].name}"}
                         for sid, what in self.contra]  # fmt: skip
        contradicting += [{"finding": f"无{sym[sid].name}", "why": "a key finding the patient denies"} for sid in self.denied]
        return supporting, missing, contradicting


@dataclass
class Patient:
    """The patient side of the scoring, computed once per request."""

    findings: list[tuple[str, float, str | None, tuple[str, ...]]]  # (symptom id, weight, broader, children)
    ids: set[str]
    denied: set[str]
    opposites: list[tuple[str, str]]  # (patient finding, its opposite)
    norm: float
    names: dict[str, str]


def patient_side(idx: Index, f: Findings) -> Patient:
    findings, sq = [], 0.0
    for t in f.present:
        w = idx.w(t.symptom_id)
        sq += w * w
        findings.append((t.symptom_id, w, idx.broader.get(t.symptom_id), tuple(idx.children.get(t.symptom_id, ()))))
    ids = {t.symptom_id for t in f.present}
    opposites = [(sid, idx.opposite[sid]) for sid in ids if sid in idx.opposite]
    return Patient(findings, ids, {t.symptom_id for t in f.negated}, opposites, math.sqrt(sq),
                   {t.symptom_id: t.name for t in f.present})  # fmt: skip


def score(idx: Index, sy: m.Syndrome, f: Findings, p: dict[str, float], pt: Patient | None = None) -> Scored:
    pt = pt or patient_side(idx, f)
    prof = idx.profiles[sy.id]
    weights = prof.weights
    dot = 0.0
    matched: list[tuple[str, str, float]] = []  # (patient finding, profile finding, credit)
    for sid, pw, broader, kids in pt.findings:
        w = weights.get(sid)
        if w is not None:
            dot += w * pw
            matched.append((sid, sid, 1.0))
        elif broader is not None and (w := weights.get(broader)) is not None:  # patient 恶寒重, profile 恶寒
            dot += 0.8 * w * pw
            matched.append((sid, broader, 0.8))
        else:
            for child in kids:  # patient 恶寒, profile 恶寒重
                w = weights.get(child)
                if w is not None:
                    dot += 0.5 * w * pw
                    matched.append((sid, child, 0.5))
                    break
    cosine = dot / (prof.norm * pt.norm) if pt.norm else 0.0
    contra = [(sid, "contra") for sid in pt.ids & prof.contra]
    contra += [(sid, opp) for sid, opp in pt.opposites if opp in weights]
    denied = pt.denied.intersection(prof.key)
    penalty = sum(idx.w(sid) for sid, _ in contra) + sum(idx.w(sid) for sid in denied)
    hit_keys = {via for _, via, _ in matched}
    n_missing = sum(1 for k in prof.key if k not in hit_keys)
    miss_frac = n_missing / len(prof.key) if prof.key else 0.0
    logit = p["alpha"] * cosine - p["beta"] * penalty / (pt.norm + 1.0) - p["miss"] * miss_frac
    if sy.disease_id in f.disease_hints:
        logit += p["gamma"]
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


def _map_candidates(kb: kbmod.KnowledgeBase, f: Findings, scored: dict[str, Scored]) -> list[tuple[str, str | None, str]]:
    """Each candidate name -> (name as given, syndrome id or None, how it matched)."""
    out = []
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
        best = max(ids, key=lambda i: scored[i].logit) if ids else None
        out.append((cand, best, how or "no match"))
    return out


def _similar(a: str, b: str) -> float:
    """Character-set Dice similarity of two syndrome names, ignoring the trailing 证."""
    x, y = set(normalize(a).rstrip("证")), set(normalize(b).rstrip("证"))
    return 2 * len(x & y) / (len(x) + len(y)) if x and y else 0.0


def differentiate(raw: Any, kb: kbmod.KnowledgeBase | None = None, *, scorer: Scorer | None = None,
                  cases: CaseIndex | None = None) -> dict[str, Any]:  # fmt: skip
    """Rank syndromes for a findings request; see the module docstring. Pure and thread-safe."""
    base = kb if kb is not None else kbmod.default()
    f = read_findings(raw, base)
    return _differentiate(base, f, scorer, cases)


def _score_pool(idx: Index, pool: list[m.Syndrome], f: Findings, p: dict[str, float]) -> dict[str, Scored]:
    """Score every syndrome of the pool: in full where a finding touches it, else its baseline (no evidence)."""
    touched: set[str] = set()
    for t in f.present:
        touched |= idx.touch.get(t.symptom_id, set())
    for t in f.negated:
        touched |= idx.key_of.get(t.symptom_id, set())
    out = {}
    pt = patient_side(idx, f)
    for sy in pool:
        if sy.id in touched:
            out[sy.id] = score(idx, sy, f, p, pt)
        else:
            prof = idx.profiles[sy.id]
            logit = -p["miss"] * (1.0 if prof.key else 0.0) + (p["gamma"] if sy.disease_id in f.disease_hints else 0.0)
            out[sy.id] = Scored(sy, logit, 0.0, [], [], [], pt.names)
    return out


def _differentiate(base: kbmod.KnowledgeBase, f: Findings, scorer: Scorer | None, cases: CaseIndex | None) -> dict[str, Any]:
    idx = index_for(base)
    p = params()
    pool = _pool(base, f)
    scored = _score_pool(idx, pool, f, p)
    notes = list(f.notes)
    if f.candidates:
        extra = [sy for sy in base.syndromes.values() if sy.id not in scored]
        scored.update(_score_pool(idx, extra, f, p))
        mapping = _map_candidates(base, f, scored)
        chosen = [(c, sid, how) for c, sid, how in mapping]
        known = [(c, sid, how) for c, sid, how in chosen if sid is not None]
        probs = _softmax([scored[sid].logit for _, sid, _ in known], p["temperature"])  # type: ignore[index]
        entries = []
        for (cand, sid, how), prob in zip(known, probs, strict=True):
            entries.append(_entry(base, scored[sid], prob, candidate=cand, how=how))  # type: ignore[index]
        for cand, missing_id, _how in chosen:
            if missing_id is None:
                entries.append({"candidate": cand, "name": cand, "syndrome_id": None, "aliases": [], "disease": None,
                                "score": None, "treatment_principle": None, "resolved": False,
                                "evidence": {"supporting": [], "missing_key": [], "contradicting": [], "paths": [],
                                             "similar_cases": []},
                                "note": "no syndrome of the knowledge base matches this name"})  # fmt: skip
                notes.append(f"candidate {cand!r} matches no syndrome of the knowledge base")
        entries.sort(key=lambda e: -(e["score"] if e["score"] is not None else -1.0))
    else:
        ranked = sorted(scored.values(), key=lambda s: -s.logit)
        probs = _softmax([s.logit for s in ranked], p["temperature"])
        entries = [_entry(base, s, prob) for s, prob in zip(ranked[: f.top_k], probs[: f.top_k], strict=False)]
    models_used = []
    if scorer is not None:
        models_used.append(scorer.name)
    if cases is not None and f.text:
        models_used.append(cases.name)
        hits = cases.search(f.text, 10)
        for e in entries:
            e["evidence"]["similar_cases"] = [{"case_id": cid, "similarity": round(sim, 4)} for cid, sim, sid in hits
                                              if sid == e["syndrome_id"]]  # fmt: skip
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
        "models_used": models_used,
        "kb_version": str(base.version),
        "ruleset_version": base.ruleset_version,
        "method": "kb-profile-cosine" + ("+" + "+".join(models_used) if models_used else ""),
    }


def _entry(base: kbmod.KnowledgeBase, s: Scored, prob: float, candidate: str | None = None, how: str | None = None) -> dict[str, Any]:
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
