"""Findings from a clinic note: symptom, tongue and pulse terms, with negation.

Dictionary recognition: the knowledge base's symptom vocabulary (names and synonyms) matched longest-first over
the normalised text. Negation: a cue (无, 否认, 未, 没有, 不伴, 未见 …) negates the terms after it up to the end of
its clause (，。；), so 否认发热、咳嗽 negates both. A term that is itself an absence (无汗, 口不渴, 不欲饮) is matched
as a whole before negation is considered, so it stays a finding of its own. Clauses with no recognised term are
reported back as unrecognised.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

import kb as kbmod
from kb.normalize import normalize, t2s_table

NEGATION_CUES = ("否认", "没有", "未见", "未闻", "未有", "不伴", "并无", "无明显", "无", "未", "不", "非")
CLAUSE = re.compile(r"[，,。；;！!？?\n\r|]+")
SPLIT_FINDINGS = re.compile(r"[、/和及与]+")
_VARIANTS = (("舌质", "舌"), ("舌体", "舌"), ("脉象", "脉"), ("舌苔", "苔"))
_FILLER = re.compile(r"^[\d\s.一二三四五六七八九十半余多个月天日年周次岁前后伴有见并且又时常偶感觉自诉患者主诉病史现症男女孩婴儿童性士]+$")


@dataclass(frozen=True, slots=True)
class Term:
    symptom_id: str
    name: str
    written: str
    start: int
    negated: bool


@dataclass(frozen=True, slots=True)
class Extraction:
    present: tuple[Term, ...]
    negated: tuple[Term, ...]
    unrecognised: tuple[str, ...]

    def ids(self) -> set[str]:
        return {t.symptom_id for t in self.present}


class Vocabulary:
    """Normalised term -> symptom id, longest terms first."""

    def __init__(self, kb: kbmod.KnowledgeBase):
        self.terms: dict[str, str] = {}
        for s in kb.symptoms.values():
            for name in (s.name, *s.synonyms):
                key = _norm_text(normalize(name))
                if len(key) >= 1:
                    self.terms.setdefault(key, s.id)
        self.max_len = max((len(k) for k in self.terms), default=1)
        self.names = {s.id: s.name for s in kb.symptoms.values()}
        self.negated_terms = {sid for sid, s in ((s.id, s) for s in kb.symptoms.values()) if s.negated}
        # diseases named in the text hint at the disease (咳嗽 is both a finding and a disease)
        self.diseases: dict[str, list[str]] = {}
        for d in kb.diseases.values():
            for name in (d.name, *d.aliases):
                self.diseases.setdefault(normalize(name), []).append(d.id)


@functools.lru_cache(maxsize=8)
def vocabulary(kb: kbmod.KnowledgeBase) -> Vocabulary:
    return Vocabulary(kb)


def _norm_text(text: str) -> str:
    s = unicodedata.normalize("NFKC", text).translate(t2s_table())
    for a, b in _VARIANTS:
        s = s.replace(a, b)
    return s


def _negated_at(clause: str, pos: int) -> bool:
    """Is position ``pos`` of the clause inside the scope of a negation cue?"""
    head = clause[:pos]
    for cue in NEGATION_CUES:
        i = head.rfind(cue)
        if i >= 0:
            between = head[i + len(cue) :]
            # scope runs over a list of findings (、 和 及) but not across a new statement
            if len(between) <= 12 and not re.search(r"[但而却仍]", between):
                return True
    return False


def extract(text: str, kb: kbmod.KnowledgeBase) -> Extraction:
    voc = vocabulary(kb)
    present: list[Term] = []
    negated: list[Term] = []
    unrecognised: list[str] = []
    norm = _norm_text(text)
    offset = 0
    for clause in CLAUSE.split(norm):
        i, found = 0, False
        n = len(clause)
        while i < n:
            hit = None
            for length in range(min(voc.max_len, n - i), 0, -1):
                piece = clause[i : i + length]
                sid = voc.terms.get(piece)
                if sid is not None and (length >= 2 or piece in ("咳", "喘", "呕", "痒", "麻")):
                    hit = (piece, sid)
                    break
            if hit is None:
                i += 1
                continue
            piece, sid = hit
            found = True
            neg = sid not in voc.negated_terms and _negated_at(clause, i)
            term = Term(sid, voc.names[sid], piece, offset + i, neg)
            (negated if neg else present).append(term)
            i += len(piece)
        if not found:
            stripped = clause.strip(" 　")
            if stripped and not _FILLER.match(stripped) and not any(d in stripped for d in voc.diseases):
                unrecognised.append(stripped)
        offset += len(clause) + 1
    present = _dedupe(present)
    negated = [t for t in _dedupe(negated) if t.symptom_id not in {p.symptom_id for p in present}]
    return Extraction(tuple(present), tuple(negated), tuple(unrecognised))


def _dedupe(terms: list[Term]) -> list[Term]:
    seen: set[str] = set()
    out = []
    for t in terms:
        if t.symptom_id not in seen:
            seen.add(t.symptom_id)
            out.append(t)
    return out


def diseases_mentioned(text: str, kb: kbmod.KnowledgeBase) -> list[str]:
    """Disease ids whose name or alias appears in the text (longest names first, no overlaps)."""
    voc = vocabulary(kb)
    norm = _norm_text(text)
    out: list[str] = []
    for name in sorted(voc.diseases, key=len, reverse=True):
        if len(name) >= 2 and name in norm:
            out += [d for d in voc.diseases[name] if d not in out]
            norm = norm.replace(name, "　")
    return out
