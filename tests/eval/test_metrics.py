"""Ranking and classification metrics against hand-computed values and scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest

from eval.metrics import classification_metrics, ranking_metrics, top_k


def test_top_k_order_and_ties() -> None:
    s = np.array([[0.1, 0.5, 0.5, 0.9]])
    assert top_k(s, 3).tolist() == [[3, 1, 2]]


def test_precision_recall_and_standard_ndcg() -> None:
    scores = np.array([[0.9, 0.8, 0.1, 0.0], [0.1, 0.2, 0.3, 0.4]])
    truth = [[0, 2], [3]]
    m = ranking_metrics(scores, truth, ks=(1, 2, 3))
    assert m["P@2"] == pytest.approx((0.5 + 0.5) / 2)
    assert m["R@2"] == pytest.approx((0.5 + 1.0) / 2)
    # row 0: hits at ranks 1 and 3; ideal = 2 true herbs first
    dcg = 1 + 1 / math.log2(4)
    idcg = 1 + 1 / math.log2(3)
    assert m["NDCG@3"] == pytest.approx((dcg / idcg + 1.0) / 2)
    # NDCG@2 of row 0: one hit at rank 1 of two possible -> 1 / (1 + 1/log2 3), not 1.0
    assert m["NDCG@2"] == pytest.approx((1 / idcg + 1.0) / 2)


def test_classification_matches_sklearn() -> None:
    from sklearn.metrics import accuracy_score, f1_score

    yt = [0, 1, 3, 3, 5, 6, 6, 0, 1]
    yp = [0, 3, 3, 3, 5, 6, 0, 0, 5]
    m = classification_metrics(yt, yp, [0, 1, 3, 5, 6])
    assert m["accuracy"] == pytest.approx(accuracy_score(yt, yp))
    assert m["macro_f1"] == pytest.approx(f1_score(yt, yp, average="macro"))
    assert sum(map(sum, m["confusion"])) == len(yt)


def test_support_analysis_scores_frequent_symptom_sets_by_their_herbs_in_train() -> None:
    from types import SimpleNamespace as Row

    from eval.evaluate import support_analysis

    train = [Row(symptoms=(0,), herbs=h) for h in ((1, 2), (1, 3), (1, 2))] + [Row(symptoms=(5,), herbs=(4,))]
    test = [Row(symptoms=(0,), herbs=(1, 2)), Row(symptoms=(5,), herbs=(4,))]
    scores = np.zeros((2, 25))
    scores[0, 20:25] = 1.0  # the model misses on the frequent row, hits on the rare one
    scores[1, 4] = 1.0
    got = support_analysis(train, test, scores, n_herbs=25, target_p5=0.3, threshold=3)
    assert got["frequent"]["n"] == 1 and got["rare"]["n"] == 1
    assert got["frequent"]["exact_set_frequency"]["P@5"] == 0.4  # herbs 1 and 2 ranked first: 2 of 5
    assert got["frequent"]["model"]["P@5"] == 0.0 and got["rare"]["model"]["P@5"] == 0.2
    assert got["rare_P@5_needed"] == pytest.approx((0.3 * 2 - 0.4) / 1)
