"""Similar-case retrieval quality, and the wiring that turns raw case records into case-base cases.

Wiring (used by ``tcm cases build`` too): :func:`case_normaliser` plugs ``cds.extract`` (symptoms),
``kb.resolve_herb`` (herb ids), ``training.deid`` (de-identification, year-only dates so ids and text are
stable) into :class:`models.casebase.Normaliser`; :func:`cases_from_tcm_cases` and :func:`cases_from_jsonl`
read the two sources through the project's loaders.

Evaluation (``python -m eval.retrieval --data DIR --json``): the published ``train`` split of tcm-cases is
the case base; each held-out case of ``val`` and ``test`` is a query (its findings only: the text before its
first prescription). Its ``k`` nearest training cases predict

* the prescription: herbs scored by the similarity-weighted union of the neighbours' herbs; P@n and R@n
  against the held-out case's first prescription (cases without an extracted prescription are not scored);
* the department label: similarity-weighted vote of the neighbours (accuracy, macro-F1).

Compared in one run: the TF-IDF encoder, the BERT encoder trained from scratch within ``--bert-budget``
seconds (0 skips it), and a random-neighbour floor (k training cases drawn at random, equal weights).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.casebase import Case, Normaliser

logger = logging.getLogger(__name__)

HERB_CUTOFFS = (5, 10, 20)


# ------------------------------------------------------------------------------------------------
# wiring


def case_normaliser(kb: Any, lexicon_names: Sequence[str] = (), deidentify: bool = True) -> Normaliser:
    from cds.extract import extract

    def symptoms(text: str) -> list[str]:
        return [t.symptom_id for t in extract(text, kb).present]

    def resolve_herb(name: str) -> str | None:
        r = kb.resolve_herb(name)
        return r.id if r.resolved else None

    def resolve_syndrome(name: str) -> str | None:
        r = kb.resolve(name, "syndrome")
        return r.id if r.resolved else None

    deid = None
    if deidentify:
        from training.deid import Deidentifier

        d = Deidentifier(date_mode="year", protect=frozenset(lexicon_names))

        def deid(text: str) -> tuple[str, dict[str, int]]:
            res = d.deidentify(text)
            return res.text, res.counts()

    return Normaliser(symptoms, resolve_herb, deid, resolve_syndrome)


def split_case_text(text: str, lexicon: Any) -> tuple[str, list[tuple[str, float | None, str | None, float | None]]]:
    """(findings, first prescription's herbs): findings are the segments before the first prescription."""
    from training.prescriptions import extract_prescriptions

    segments = text.split("|")
    found = extract_prescriptions(text, lexicon)
    if not found:
        return text.replace("|", "。").strip("。 "), []
    first = found[0]
    rx_segments = {p.segment for p in found}
    before = [s for i, s in enumerate(segments[: first.segment]) if s.strip()]
    if not before:
        before = [s for i, s in enumerate(segments) if s.strip() and i not in rx_segments]
    findings = "。".join(s.strip() for s in before).strip()
    herbs = [(h.name, h.dose, h.unit, h.dose_g) for h in first.herbs]
    return findings, herbs


def cases_from_tcm_cases(
    data_dir: str | Path | None, kb: Any, splits: Sequence[str] = ("train", "val", "test"),
    limit: int | None = None, deidentify: bool = True,
) -> tuple[list[Case], dict[str, Any]]:  # fmt: skip
    from training.datasets import load_tcm_cases, resolve_data_dir
    from training.prescriptions import HerbLexicon

    root = resolve_data_dir(data_dir)
    ds = load_tcm_cases(root)
    lexicon = HerbLexicon.from_data_dir(root)
    norm = case_normaliser(kb, sorted(lexicon.names), deidentify)
    out: list[Case] = []
    for split in splits:
        rows = ds.splits.get(split, ())
        if limit is not None:
            rows = rows[:limit]
        for row in rows:
            findings, herbs = split_case_text(row.text, lexicon)
            if not findings:
                continue
            out.append(
                norm.case(findings, herbs, f"tcm-cases/{split}.tsv", department=ds.label_names.get(row.label),
                          label=row.label, split=split)
            )  # fmt: skip
    return out, ds.card.to_dict()


def cases_from_jsonl(path: str | Path, kb: Any, deidentify: bool = True) -> tuple[list[Case], dict[str, Any]]:
    from training.datasets import load_case_jsonl

    cf = load_case_jsonl(path)
    norm = case_normaliser(kb, (), deidentify)
    grams = {"g": 1.0, "钱": 3.0, "两": 30.0, "分": 0.3}
    out = []
    for r in cf.records:
        parts = [r.text or "", "，".join(r.symptoms), r.tongue or "", r.pulse or ""]
        findings = "，".join(p for p in parts if p)
        if not findings:
            continue
        herbs = [
            (h.name, h.dose, h.unit, round(h.dose * grams[h.unit], 3) if h.dose and h.unit in grams else None)
            for h in r.herbs
        ]
        out.append(
            norm.case(findings, herbs, f"{Path(path).name}#{r.id}|{r.source}", department=r.department,
                      syndrome=r.syndrome, formula=r.formula, split="jsonl")
        )  # fmt: skip
    return out, cf.card.to_dict()


# ------------------------------------------------------------------------------------------------
# metrics


def herb_scores(neighbours: Sequence[tuple[Case, float]]) -> list[str]:
    score: dict[str, float] = defaultdict(float)
    for c, s in neighbours:
        for h in c.herb_keys():
            score[h] += max(s, 1e-6)
    return [h for h, _ in sorted(score.items(), key=lambda kv: (-kv[1], kv[0]))]


def vote(neighbours: Sequence[tuple[Case, float]]) -> int | None:
    score: dict[int, float] = defaultdict(float)
    for c, s in neighbours:
        if c.label is not None:
            score[c.label] += max(s, 1e-6)
    return max(score.items(), key=lambda kv: (kv[1], -kv[0]))[0] if score else None


def macro_f1(y: Sequence[int], p: Sequence[int | None]) -> float:
    labels = sorted(set(y))
    f1s = []
    for lab in labels:
        tp = sum(1 for a, b in zip(y, p, strict=True) if a == lab and b == lab)
        fp = sum(1 for a, b in zip(y, p, strict=True) if a != lab and b == lab)
        fn = sum(1 for a, b in zip(y, p, strict=True) if a == lab and b != lab)
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return float(np.mean(f1s)) if f1s else 0.0


def score_neighbours(queries: Sequence[Case], neighbours: Sequence[Sequence[tuple[Case, float]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with_rx = [(q, n) for q, n in zip(queries, neighbours, strict=True) if q.herbs]
    for cut in HERB_CUTOFFS:
        ps, rs = [], []
        for q, n in with_rx:
            truth = q.herb_keys()
            pred = herb_scores(n)[:cut]
            hit = len(truth & set(pred))
            ps.append(hit / cut)
            rs.append(hit / len(truth))
        out[f"P@{cut}"] = round(float(np.mean(ps)), 4) if ps else None
        out[f"R@{cut}"] = round(float(np.mean(rs)), 4) if rs else None
    y = [q.label for q in queries if q.label is not None]
    p = [vote(n) for q, n in zip(queries, neighbours, strict=True) if q.label is not None]
    p1 = [n[0][0].label if n else None for q, n in zip(queries, neighbours, strict=True) if q.label is not None]
    out["label_accuracy"] = round(float(np.mean([a == b for a, b in zip(y, p, strict=True)])), 4) if y else None
    out["label_macro_f1"] = round(macro_f1(y, p), 4) if y else None  # type: ignore[arg-type]
    out["label_accuracy_nearest1"] = (
        round(float(np.mean([a == b for a, b in zip(y, p1, strict=True)])), 4) if y else None
    )
    out["queries"] = len(queries)
    out["queries_with_prescription"] = len(with_rx)
    return out


def evaluate_encoder(encoder: Any, train: Sequence[Case], held: dict[str, list[Case]], k: int) -> dict[str, Any]:
    from models.vector_index import VectorIndex

    t0 = time.perf_counter()
    vecs = encoder.encode([c.findings for c in train])
    index = VectorIndex.build(vecs, [c.id for c in train], encoder.name, encoder.version, kind="flat")
    by_id = {c.id: c for c in train}
    res: dict[str, Any] = {"encoder": encoder.name, "version": encoder.version, "dim": encoder.dim,
                           "index_seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
    for split, qs in held.items():
        if not qs:
            continue
        qv = encoder.encode([q.findings for q in qs])
        hits = index.search(qv, k)
        res[split] = score_neighbours(qs, [[(by_id[i], s) for i, s in row] for row in hits])
    return res


def random_floor(train: Sequence[Case], held: dict[str, list[Case]], k: int, seed: int = 0) -> dict[str, Any]:
    rng = random.Random(seed)
    res: dict[str, Any] = {"encoder": "random-neighbours", "seed": seed}
    for split, qs in held.items():
        if qs:
            res[split] = score_neighbours(qs, [[(c, 1.0) for c in rng.sample(list(train), k)] for _ in qs])
    return res


def run(data_dir: str | Path | None, k: int = 10, bert_budget: float = 300.0, limit: int | None = None,
        svd_dim: int = 128, seed: int = 0) -> dict[str, Any]:  # fmt: skip
    import kb as kbmod
    from models.encoders import BertEncoder, BertEncoderConfig, TfidfEncoder

    t0 = time.perf_counter()
    base = kbmod.default()
    cases, card = cases_from_tcm_cases(data_dir, base, limit=limit)
    by_split: dict[str, list[Case]] = defaultdict(list)
    for c in cases:
        by_split[c.split or "?"].append(c)
    train = by_split["train"]
    held = {s: by_split[s] for s in ("val", "test")}
    rx = Counter(s for c in cases if c.herbs for s in [c.split])
    report: dict[str, Any] = {
        "data": {"name": card["name"], "content_hash": card["content_hash"], "splits": card["splits"],
                 "cases": {s: len(v) for s, v in by_split.items()}, "with_prescription": dict(rx),
                 "herbs_resolved_to_kb": round(float(np.mean([float(h.herb_id is not None) for c in cases for h in c.herbs]
                                                              or [0.0])), 4)},
        "k": k, "herb_cutoffs": list(HERB_CUTOFFS),
        "note": "queries are held-out findings (text before the first prescription); the base is tcm-cases train",
        "results": [],
    }  # fmt: skip
    report["normalise_seconds"] = round(time.perf_counter() - t0, 1)
    report["results"].append(random_floor(train, held, k, seed))
    tf = TfidfEncoder(svd_dim=svd_dim or None, seed=seed).fit([c.findings for c in train])
    report["results"].append(evaluate_encoder(tf, train, held, k))
    if bert_budget > 0:
        cfg = BertEncoderConfig(budget_s=bert_budget, seed=seed, threads=2)
        bert = BertEncoder.build(cfg, [c.findings for c in train])
        log = bert.train([c.findings for c in train], [c.herb_keys() for c in train])
        r = evaluate_encoder(bert, train, held, k)
        r["training"] = {"budget_s": bert_budget, "seconds": log.seconds, "mlm_steps": log.mlm_steps,
                         "contrastive_steps": log.contrastive_steps, "positive_anchors": log.positive_pairs,
                         "mlm_loss_last": round(float(np.mean(log.mlm_loss[-20:])), 3) if log.mlm_loss else None,
                         "contrastive_loss_last": round(float(np.mean(log.contrastive_loss[-20:])), 3)
                         if log.contrastive_loss else None}  # fmt: skip
        report["results"].append(r)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.retrieval", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help="data directory (default $TCM_DATA_DIR or ../shared/data)")
    p.add_argument("--k", type=int, default=10, help="neighbours per query")
    p.add_argument("--bert-budget", type=float, default=300.0, help="seconds to train the BERT encoder (0 = skip)")
    p.add_argument("--svd-dim", type=int, default=128, help="TF-IDF SVD dimension (0 = no reduction)")
    p.add_argument("--limit", type=int, help="at most this many cases per split (smoke runs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--out", help="also write the JSON report here")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    rep = run(a.data, a.k, a.bert_budget, a.limit, a.svd_dim, a.seed)
    text = json.dumps(rep, ensure_ascii=False, indent=None if a.json else 2)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(rep, ensure_ascii=False, indent=2), encoding="utf-8")
    if a.json:
        sys.stdout.write(text + "\n")
    else:
        for r in rep["results"]:
            for split in ("val", "test"):
                if split in r:
                    m = r[split]
                    sys.stdout.write(
                        f"{r['encoder']:<18} {split:<5} P@5 {m['P@5']}  R@5 {m['R@5']}  P@10 {m['P@10']}  R@10 "
                        f"{m['R@10']}  R@20 {m['R@20']}  label acc {m['label_accuracy']}  macro-F1 {m['label_macro_f1']}\n"
                    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
