"""Ranking and classification metrics.

Ranking (per example, then averaged over examples, as in SMGCN's evaluation):
    P@k     |top-k ∩ true| / k
    R@k     |top-k ∩ true| / |true|
    NDCG@k  DCG@k / IDCG@k with binary gains, DCG = Σ_{i<k} rel_i / log2(i + 2), and IDCG the DCG of the
            *ideal* ordering of the true herbs (min(|true|, k) ones first): standard NDCG. (Some published
            code normalises by re-sorting only the retrieved list, which inflates it; this does not.)
Classification: accuracy, macro-F1 (unweighted mean of per-class F1), confusion matrix.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

KS = (5, 10, 20)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores per row, best first (ties broken by lower index)."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(scores, part, 1)
    idx = np.lexsort((part, -order), axis=1)
    return np.take_along_axis(part, idx, 1)


def ranking_metrics(scores: np.ndarray, truth: Sequence[Sequence[int]], ks: Sequence[int] = KS) -> dict[str, float]:
    if scores.shape[0] != len(truth):
        raise ValueError(f"{scores.shape[0]} score rows but {len(truth)} true sets")
    if not len(truth):
        return {}
    kmax = max(ks)
    ranked = top_k(scores, kmax)
    rel = np.zeros(ranked.shape, dtype=np.float64)
    n_true = np.zeros(len(truth))
    for i, t in enumerate(truth):
        ts = set(t)
        n_true[i] = len(ts)
        rel[i] = [1.0 if h in ts else 0.0 for h in ranked[i]]
    discounts = 1.0 / np.log2(np.arange(2, kmax + 2))
    out: dict[str, float] = {}
    for k in ks:
        hits = rel[:, :k].sum(1)
        out[f"P@{k}"] = float((hits / k).mean())
        out[f"R@{k}"] = float((hits / np.maximum(n_true, 1)).mean())
        dcg = (rel[:, :k] * discounts[:k]).sum(1)
        ideal = np.array([discounts[: int(min(n, k))].sum() for n in n_true])
        out[f"NDCG@{k}"] = float(np.where(ideal > 0, dcg / np.maximum(ideal, 1e-12), 0.0).mean())
    return out


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[int]) -> dict[str, object]:
    lab = list(labels)
    pos = {c: i for i, c in enumerate(lab)}
    cm = np.zeros((len(lab), len(lab)), dtype=np.int64)
    for t, p in zip(y_true, y_pred, strict=True):
        cm[pos[t], pos[p]] += 1
    tp = np.diag(cm).astype(float)
    prec = np.divide(tp, cm.sum(0), out=np.zeros_like(tp), where=cm.sum(0) > 0)
    rec = np.divide(tp, cm.sum(1), out=np.zeros_like(tp), where=cm.sum(1) > 0)
    f1 = np.divide(2 * prec * rec, prec + rec, out=np.zeros_like(tp), where=(prec + rec) > 0)
    n = int(cm.sum())
    return {
        "accuracy": float(tp.sum() / n) if n else 0.0,
        "macro_f1": float(f1.mean()) if len(lab) else 0.0,
        "per_class_f1": {str(c): float(v) for c, v in zip(lab, f1, strict=True)},
        "confusion": cm.tolist(),
        "labels": lab,
        "n": n,
    }
