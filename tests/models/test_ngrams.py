"""The n-gram counts and L2 rows used when answering match scikit-learn's, which fitted the vocabularies."""

from __future__ import annotations

import numpy as np
import pytest

from models.ngrams import char_ngram_counts, l2_rows

TEXTS = ["恶寒发热，无汗  头痛\t\n脉浮紧", "咳", "", "腹痛  便溏 ab AB", "经来腹痛，经色紫暗有块。"]


@pytest.mark.parametrize("ngram", [(1, 1), (1, 3), (2, 4)])
@pytest.mark.parametrize("binary", [False, True])
def test_counts_match_scikit_learn(ngram: tuple[int, int], binary: bool) -> None:
    from sklearn.feature_extraction.text import CountVectorizer

    opts = {"analyzer": "char", "ngram_range": ngram, "lowercase": False, "binary": binary}
    fitted = CountVectorizer(**opts).fit(TEXTS[:3])  # n-grams of the other texts are outside the vocabulary
    vocab = {k: int(v) for k, v in fitted.vocabulary_.items()}
    want = CountVectorizer(**opts, vocabulary=vocab).transform(TEXTS)
    got = char_ngram_counts(TEXTS, vocab, ngram, binary=binary)
    assert got.shape == want.shape and got.has_sorted_indices
    assert (got != want).nnz == 0


def test_l2_rows_match_scikit_learn_and_leave_empty_rows() -> None:
    from scipy import sparse
    from sklearn.preprocessing import normalize

    x = sparse.csr_matrix(np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 1.0]], dtype=np.float32))
    got = l2_rows(x)
    assert np.allclose(got.toarray(), normalize(x).toarray()) and got.dtype == np.float32
    assert x.toarray()[0, 0] == 3.0  # the input is not changed
