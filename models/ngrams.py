"""Character n-gram counts over a fitted vocabulary, counted as scikit-learn's ``CountVectorizer(analyzer="char",
lowercase=False)`` counts them, and L2 row normalisation, without importing scikit-learn.

Training fits the vocabularies with scikit-learn; answering one query only needs the counts. Importing
``sklearn.feature_extraction.text`` costs about a second, which was most of a one-shot ``tcm differentiate``.
``tests/models/test_ngrams.py`` checks these against scikit-learn on texts with runs of whitespace, short texts and
n-grams outside the vocabulary.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

_WHITE_SPACES = re.compile(r"\s\s+")  # CountVectorizer's char analyzer folds each run of whitespace into one space


def char_ngram_counts(
    texts: Sequence[str], vocabulary: Mapping[str, int], ngram: tuple[int, int], binary: bool = False
) -> Any:
    """A CSR matrix (len(texts), len(vocabulary)) of int64 counts (1 for present with ``binary``), indices sorted."""
    from scipy import sparse

    lo, hi = ngram
    indptr, indices, values = [0], [], []
    get = vocabulary.get
    for text in texts:
        doc = _WHITE_SPACES.sub(" ", text)
        counts: dict[int, int] = {}
        for n in range(lo, min(hi, len(doc)) + 1):
            for i in range(len(doc) - n + 1):
                j = get(doc[i : i + n])
                if j is not None:
                    counts[j] = counts.get(j, 0) + 1
        for j in sorted(counts):
            indices.append(j)
            values.append(1 if binary else counts[j])
        indptr.append(len(indices))
    return sparse.csr_matrix(
        (np.asarray(values, dtype=np.int64), np.asarray(indices, dtype=np.int32), np.asarray(indptr, dtype=np.int64)),
        shape=(len(texts), len(vocabulary)),
    )


def l2_rows(x: Any) -> Any:
    """Each row of a CSR matrix divided by its L2 norm (an all-zero row stays zero), like ``normalize(x, "l2")``."""
    x = x.tocsr(copy=True)
    norms = np.sqrt(np.asarray(x.multiply(x).sum(1)).ravel())
    norms[norms == 0] = 1.0
    x.data = x.data / np.repeat(norms, np.diff(x.indptr)).astype(x.data.dtype, copy=False)
    return x
