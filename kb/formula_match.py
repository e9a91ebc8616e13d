"""Which formulas of the knowledge base a prescription is built on: a case's herbs -> matching formulas.

A physician's prescription is rarely a formula as printed: herbs are added for accompanying findings and a few
left out. A prescription *matches* a formula when it contains most of the formula's herbs:

    missing  = |formula - prescription|              <=  (|formula| - 1) // 4   (none for formulas of 2-4
                                                         herbs, one for 5-8, two for 9-12, …)
    shared   = |formula ∩ prescription|              >=  MIN_SHARED (3); a formula of one or two herbs
               (芍药甘草汤, 当归补血汤: in countless prescriptions) only when it makes up at least half of it
    the formula's principal herbs (君) are all there, where the knowledge base names them

Matches are ranked by coverage, then by the number of shared herbs (a larger formula explains more of the
prescription), then by the share of the prescription the formula explains. Deprecated formulas do not match.
Herbs are compared by knowledge-base id, so processed forms (炙甘草) count as their herb (甘草); a documented modern
substitute (``kb/data/substitutes/``: 党参 for 人参) counts as the herb it stands for, in every formula the
substitution does not except (独参汤 keeps 人参). A match names the substitutes it accepted.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from kb.base import KnowledgeBase

MIN_SHARED = 3
MIN_EXPLAINED_SMALL = 0.5


@dataclass(frozen=True, slots=True)
class FormulaMatch:
    formula_id: str
    name: str
    coverage: float  # share of the formula's herbs the prescription has
    shared: int
    explained: float  # share of the prescription's herbs the formula accounts for
    missing: tuple[str, ...]  # herb ids of the formula the prescription lacks
    substituted: tuple[tuple[str, str], ...] = ()  # (formula herb id, the prescription's substitute herb id)

    def as_dict(self) -> dict[str, object]:
        d: dict[str, object] = {"formula_id": self.formula_id, "name": self.name, "coverage": round(self.coverage, 3),
                                "shared": self.shared, "explained": round(self.explained, 3),
                                "missing": list(self.missing)}  # fmt: skip
        if self.substituted:
            d["substituted"] = [{"herb_id": a, "by": b} for a, b in self.substituted]
        return d


class _Index:
    def __init__(self, kb: KnowledgeBase):
        self.kb = kb
        self.herbs: dict[str, frozenset[str]] = {}
        self.principal: dict[str, frozenset[str]] = {}
        self.by_herb: dict[str, list[str]] = {}
        self.stand_in: dict[str, dict[str, str]] = {}  # formula id -> {substitute herb id: the herb it stands for}
        for fid, f in kb.formulas.items():
            if kb.deprecation("formula", fid) is not None:
                continue
            herbs = frozenset(i.herb_id for i in f.composition if i.herb_id)
            if not herbs:
                continue
            self.herbs[fid] = herbs
            self.principal[fid] = frozenset(i.herb_id for i in f.composition if i.herb_id and i.role == "君")
            for h in herbs:
                self.by_herb.setdefault(h, []).append(fid)
            subs = {x.substitute_id: herb for herb, xs in kb.substitutes_in(fid).items() for x in xs}
            if subs:
                self.stand_in[fid] = subs
                for h in subs:
                    self.by_herb.setdefault(h, []).append(fid)


@functools.lru_cache(maxsize=8)
def _index(kb: KnowledgeBase) -> _Index:
    return _Index(kb)


def match_formulas(kb: KnowledgeBase, herb_ids: Iterable[str | None], *, limit: int = 3) -> list[FormulaMatch]:
    """The formulas this prescription (its herbs' knowledge-base ids; unresolved ones as None) is built on."""
    idx = _index(kb)
    given = [h for h in herb_ids if h]
    rx = frozenset(given)
    if not rx:
        return []
    candidates = Counter(fid for h in rx for fid in idx.by_herb.get(h, ()))
    out = []
    for fid, upper in candidates.items():
        herbs = idx.herbs[fid]
        if len(herbs) - upper > (len(herbs) - 1) // 4:
            continue  # even counting every candidate herb, too many are missing
        have = rx
        substituted: tuple[tuple[str, str], ...] = ()
        if fid in idx.stand_in:  # a substitute stands for its herb where the formula lacks the herb itself
            used = {h: o for h, o in idx.stand_in[fid].items() if h in rx and o not in rx}
            have = rx | frozenset(used.values())
            substituted = tuple(sorted((o, h) for h, o in used.items()))
        shared = len(herbs & have)
        explained = shared / len(rx)
        if len(herbs) - shared > (len(herbs) - 1) // 4 or not idx.principal[fid] <= have:
            continue
        if shared < MIN_SHARED and explained < MIN_EXPLAINED_SMALL:
            continue
        out.append(FormulaMatch(fid, kb.formulas[fid].name, shared / len(herbs), shared, explained,
                                tuple(sorted(herbs - have)), substituted))  # fmt: skip
    out.sort(key=lambda m: (-m.coverage, -m.shared, -m.explained, m.formula_id))
    return out[:limit]
