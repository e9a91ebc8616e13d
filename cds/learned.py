"""The learned models and the case base, as differentiation and suggestion use them. All optional: without them
the engine works from the knowledge base alone, and every answer names the models it used (``models_used``).

    DepartmentPrior  the case-classify model (case text -> clinical department, trained on tcm-cases) as a
                     :class:`cds.differentiate.Scorer`: a syndrome's prior is the probability of its disease's
                     department, shared among that department's syndromes. It separates, say, a gynaecological
                     from an internal-medicine reading of the same complaint; it never names a syndrome itself.
    HerbModel        a herb-rec model (findings -> herbs): its symptom vocabulary and herbs mapped onto the
                     knowledge base once; recognised findings in, knowledge-base herb ids with scores out.
    CaseEvidence     the case base as a :class:`cds.differentiate.CaseIndex`: the nearest cases with their herbs
                     and doses, and the formulas of the knowledge base their prescriptions are built on
                     (:func:`kb.formula_match.match_formulas`, against the knowledge base in use).

``load(directory)`` opens what an artifacts folder holds (``cases/``, ``models/case-classify/``,
``models/herb-rec/tcm-pd`` or ``smgcn``); a part that is absent is skipped and one that is broken is an error
naming it. The ``models`` package (torch, faiss, scikit-learn) is imported only here, and only when loading.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import kb as kbmod
from cds.differentiate import Findings, SimilarCase, params
from kb.errors import ArtifactError
from kb.formula_match import match_formulas

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DIR = ROOT / "artifacts"

# tcm-cases department labels -> the knowledge base's disciplines they cover
DEPARTMENT_OF_DISCIPLINE = {
    "内科": 0, "外科": 1, "皮肤科": 1, "骨伤科": 1, "妇科": 3, "耳鼻咽喉科": 5, "眼科": 5, "儿科": 6,
}  # fmt: skip


def _card_tag(card: dict[str, Any] | None) -> str:
    if not card:
        return "unversioned"
    return str(card.get("created", "")).split("T")[0] or "unversioned"


class DepartmentPrior:
    """A case-classify model's department probabilities as a prior over syndromes (the Scorer protocol)."""

    def __init__(self, model: Any):
        clf = getattr(model, "tfidf", model)  # an ensemble's linear member: ~1 ms a note, the transformer ~40
        if not hasattr(clf, "proba"):
            raise ArtifactError(f"a {type(model).__name__} cannot give department probabilities")
        self.clf = clf
        self.labels = tuple(int(x) for x in clf.labels)
        self.name = f"case-classify:{clf.kind}@{_card_tag(getattr(model, 'card', None))}"

    @property
    def weight(self) -> float:
        """Fitted on the tuning half of eval/vignettes by log-loss (``python -m eval.syndromes --fit``)."""
        return params()["department_prior"]

    @functools.lru_cache(maxsize=4)  # noqa: B019 - one entry per knowledge base; the prior lives as long as they do
    def _shares(self, base: kbmod.KnowledgeBase) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
        sids, cols = [], []
        for sid, sy in base.syndromes.items():
            dept = DEPARTMENT_OF_DISCIPLINE.get(base.diseases[sy.disease_id].discipline)
            if dept in self.labels:
                sids.append(sid)
                cols.append(self.labels.index(dept))
        counts = np.bincount(np.array(cols, dtype=int), minlength=len(self.labels)).astype(float)
        return tuple(sids), np.array(cols, dtype=int), counts

    def __call__(self, findings: Findings, base: kbmod.KnowledgeBase) -> dict[str, float]:
        text = findings.text or "，".join(t.name for t in findings.present)
        if not text.strip():
            return {}
        sids, cols, counts = self._shares(base)
        p = self.clf.proba([text])[0]
        per = p[cols] / counts[cols]
        return dict(zip(sids, per.tolist(), strict=True))


@dataclass(frozen=True, slots=True)
class HerbScore:
    herb_id: str
    score: float  # the model's score, scaled so the top herb is 1


class HerbModel:
    """A herb-rec model over the knowledge base's symptoms and herbs."""

    def __init__(self, model: Any, dataset: str):
        self.model = model
        self.dataset = dataset
        self.name = f"herb-rec:{getattr(model, 'kind', 'model')}:{dataset}@{_card_tag(getattr(model, 'card', None))}"

    @functools.lru_cache(maxsize=4)  # noqa: B019
    def _maps(self, base: kbmod.KnowledgeBase) -> tuple[dict[str, list[int]], list[str | None], list[str]]:
        sym_index: dict[str, list[int]] = {}
        for i, name in enumerate(self.model.symptoms):
            r = base.resolve(name, "symptom")
            if r.resolved and r.id is not None:
                sym_index.setdefault(r.id, []).append(i)
        herb_ids: list[str | None] = []
        unresolved = []
        for name in self.model.herbs:
            r = base.resolve_herb(name)
            herb_ids.append(r.id if r.resolved else None)
            if not r.resolved:
                unresolved.append(name)
        return sym_index, herb_ids, unresolved

    def recommend(
        self, base: kbmod.KnowledgeBase, symptom_ids: list[str], k: int = 20
    ) -> tuple[list[HerbScore], list[str]]:
        """The top ``k`` knowledge-base herbs for these findings, and the findings the model knows (by id)."""
        sym_index, herb_ids, _ = self._maps(base)
        used = [s for s in _widen(base, symptom_ids) if s in sym_index]
        if not used:
            return [], []
        row = sorted({i for s in used for i in sym_index[s]})
        scores = np.asarray(self.model.score([row]))[0]
        order = np.argsort(-scores, kind="stable")
        top = float(scores[order[0]]) or 1.0
        out: list[HerbScore] = []
        for j in order.tolist():
            hid = herb_ids[j]
            if hid is None or base.deprecation("herb", hid) is not None or any(h.herb_id == hid for h in out):
                continue
            out.append(HerbScore(hid, float(scores[j]) / top))
            if len(out) == k:
                break
        return out, used


def _widen(base: kbmod.KnowledgeBase, symptom_ids: list[str]) -> list[str]:
    """The findings and what they imply in a coarser vocabulary: each one's broader terms (胁肋胀痛 -> 胁痛) and
    the findings a compound one is written from (经前乳房胀痛 -> 乳房胀痛)."""
    from cds.extract import subterms

    out: dict[str, None] = {}
    for sid in symptom_ids:
        todo = [sid, *(x for x, _ in subterms(base.symptoms[sid].name, base))]
        for first in todo:
            x: str | None = first
            for _ in range(4):
                if x is None or x in out or x not in base.symptoms:
                    break
                out[x] = None
                up = base.symptoms[x].broader
                r = base.resolve(up, "symptom") if up else None
                x = r.id if r is not None and r.resolved else None
    return list(out)


class CaseEvidence:
    """The case base as differentiation and suggestion see it (the CaseIndex protocol)."""

    def __init__(self, casebase: Any):
        self.casebase = casebase
        self.name = casebase.name

    def search(self, text: str, k: int, base: kbmod.KnowledgeBase) -> list[SimilarCase]:
        out = []
        for hit in self.casebase.similar(text, k):
            c = hit.case
            matches = match_formulas(base, [h.herb_id for h in c.herbs], limit=2)
            excerpt = c.findings if len(c.findings) <= 80 else c.findings[:80] + "…"
            out.append(SimilarCase(
                case_id=c.id, similarity=float(hit.score), syndrome_id=c.syndrome_id, department=c.department,
                excerpt=excerpt, source=c.source,
                herbs=tuple((h.name, h.herb_id, h.dose_g) for h in c.herbs),
                formulas=tuple((m.formula_id, m.name, m.coverage) for m in matches),
            ))  # fmt: skip
        return out


@dataclass
class Models:
    """What an answer may use beside the knowledge base."""

    scorer: DepartmentPrior | None = None
    cases: CaseEvidence | None = None
    herbs: HerbModel | None = None
    loaded_from: str | None = None
    skipped: dict[str, str] = field(default_factory=dict)  # part -> why it is not used

    @property
    def names(self) -> list[str]:
        return [x.name for x in (self.scorer, self.cases, self.herbs) if x is not None]

    def describe(self) -> list[dict[str, str]]:
        kinds = (("syndrome-prior", self.scorer), ("similar-cases", self.cases), ("herb-rec", self.herbs))
        return [{"role": role, "name": x.name} for role, x in kinds if x is not None]


NONE = Models()


def models_dir_from_env() -> Path | None:
    """``TCM_MODELS_DIR``: an artifacts folder; ``none`` (or empty) for none; unset: ``artifacts/`` when present."""
    value = os.environ.get("TCM_MODELS_DIR")
    if value is None:
        return DEFAULT_DIR if DEFAULT_DIR.is_dir() else None
    if value.strip().lower() in ("", "none", "off", "0"):
        return None
    return Path(value)


def _linear_classifier(directory: Path) -> Any:
    """A case-classify artifact's TF-IDF/SVM (an ensemble's linear member alone: the prior needs no transformer,
    and importing torch and transformers for it would cost a command-line call ~10 s)."""
    from models.artifacts import read_card, verify_files
    from models.case_classify import TfidfClassifier
    from models.registry import load_model

    card = read_card(directory)
    if card.get("task") != "case-classify":
        raise ArtifactError(f"{directory} holds a {card.get('task')!r} model, not a case-classify model")
    if card.get("kind") != "ensemble":
        return load_model(directory, task="case-classify")
    verify_files(directory, {**card, "files": {k: v for k, v in card["files"].items() if k.startswith("tfidf.")}})
    model = TfidfClassifier.load(directory, card, "tfidf.", card["config"]["tfidf"])
    model.card = card
    return model


def load(directory: str | Path | None, *, cases: str | Path | None = None) -> Models:
    """Open the artifacts under ``directory`` (``cases/``, ``models/case-classify``, ``models/herb-rec/*``).

    ``cases`` names a case base elsewhere. A missing part is skipped (and said in ``skipped``); a part that is
    there but cannot be read raises ``ArtifactError`` naming it."""
    out = Models(loaded_from=str(directory) if directory else None)
    root = Path(directory) if directory else None
    if root is not None and not root.is_dir():
        raise ArtifactError(f"{root}: no artifacts folder there (train models with `make train`)")
    case_dir = Path(cases) if cases else (root / "cases" if root else None)
    if case_dir is not None:
        if (case_dir / "cases.sqlite").is_file():
            from models.casebase import CaseBase

            out.cases = CaseEvidence(CaseBase.open(case_dir))
        elif cases:
            raise ArtifactError(f"{case_dir}: no case base there (build one with `tcm cases build`)")
        else:
            out.skipped["similar-cases"] = f"no case base in {case_dir}"
    if root is None:
        return out
    from models.registry import load_model

    cc = root / "models" / "case-classify"
    if (cc / "model_card.json").is_file():
        out.scorer = DepartmentPrior(_linear_classifier(cc))
    else:
        out.skipped["syndrome-prior"] = f"no case-classify model in {cc}"
    for dataset in ("tcm-pd", "smgcn"):
        hr = root / "models" / "herb-rec" / dataset
        if (hr / "model_card.json").is_file():
            out.herbs = HerbModel(load_model(hr, task="herb-rec"), dataset)
            break
    else:
        out.skipped["herb-rec"] = f"no herb-rec model in {root / 'models' / 'herb-rec'}"
    logger.info("models in use: %s", ", ".join(out.names) or "none")
    return out
