"""Case classification: case text -> department label.

``TfidfClassifier``   character 1-3-gram TF-IDF + linear SVM (C picked on validation): the strong baseline.
``TransformerClassifier``  a small BERT-style encoder over characters, built from a config in code (no
                      download), optionally pretrained with masked-LM on the training texts, then fine-tuned;
                      the loops live in ``training.loops`` (they also run under ``torchrun``).
``EnsembleClassifier``  a weighted sum of the two (standardised SVM margins + transformer log-probabilities),
                      the weight picked on validation.

All three save plain files (JSON, ``.npy`` without pickles, safetensors): nothing is unpickled at load time.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kb.errors import ArtifactError, InputError

logger = logging.getLogger(__name__)


def _softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


class TfidfClassifier:
    kind = "tfidf-svm"
    task = "case-classify"

    def __init__(self, ngram: tuple[int, int] = (1, 3), c: float = 1.0, sublinear_tf: bool = False):
        self.ngram, self.c, self.sublinear_tf = ngram, c, sublinear_tf
        self.labels: tuple[int, ...] = ()
        self.vocabulary: dict[str, int] = {}
        self.idf = np.zeros(0)
        self.coef = np.zeros((0, 0))
        self.intercept = np.zeros(0)
        self.card: dict[str, Any] | None = None

    def _vectorizer(self) -> Any:
        """Kept once built: a fresh counter validates the whole given vocabulary on its first transform."""
        from sklearn.feature_extraction.text import CountVectorizer

        cv = getattr(self, "_cv", None)
        if cv is None or cv.vocabulary is not self.vocabulary:
            cv = CountVectorizer(analyzer="char", ngram_range=self.ngram, lowercase=False, vocabulary=self.vocabulary)
            self._cv = cv
        return cv

    def _features(self, texts: Sequence[str]) -> Any:
        from sklearn.preprocessing import normalize

        counts = self._vectorizer().transform(texts).astype(np.float64)
        if self.sublinear_tf:
            counts.data = 1.0 + np.log(counts.data)
        return normalize(counts.multiply(self.idf).tocsr())

    def fit(self, texts: Sequence[str], labels: Sequence[int]) -> TfidfClassifier:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.svm import LinearSVC

        vec = TfidfVectorizer(analyzer="char", ngram_range=self.ngram, lowercase=False, sublinear_tf=self.sublinear_tf)
        x = vec.fit_transform(texts)
        self.vocabulary = {k: int(v) for k, v in vec.vocabulary_.items()}
        self.idf = vec.idf_.astype(np.float64)
        svm = LinearSVC(C=self.c).fit(x, labels)
        self.labels = tuple(int(c) for c in svm.classes_)
        coef = svm.coef_
        if coef.shape[0] == 1:  # binary: sklearn keeps one row
            coef = np.vstack([-coef, coef])
            intercept = np.array([-svm.intercept_[0], svm.intercept_[0]])
        else:
            intercept = svm.intercept_
        self.coef, self.intercept = coef.astype(np.float64), intercept.astype(np.float64)
        return self

    def decision(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self._features(texts) @ self.coef.T) + self.intercept

    def proba(self, texts: Sequence[str]) -> np.ndarray:
        return _softmax(self.decision(texts) * 3.0)  # a monotone squashing for ensembling, not a calibration

    def predict(self, texts: Sequence[str]) -> list[int]:
        return [self.labels[i] for i in self.decision(texts).argmax(1)]

    def save(self, directory: Path, prefix: str = "") -> dict[str, Any]:
        terms = [""] * len(self.vocabulary)
        for t, i in self.vocabulary.items():
            terms[i] = t
        (directory / f"{prefix}tfidf_terms.json").write_text(json.dumps(terms, ensure_ascii=False), encoding="utf-8")
        np.save(directory / f"{prefix}tfidf_idf.npy", self.idf, allow_pickle=False)
        np.save(directory / f"{prefix}svm_coef.npy", self.coef, allow_pickle=False)
        np.save(directory / f"{prefix}svm_intercept.npy", self.intercept, allow_pickle=False)
        return {
            "ngram": list(self.ngram),
            "C": self.c,
            "sublinear_tf": self.sublinear_tf,
            "labels": list(self.labels),
        }

    @classmethod
    def load(
        cls, directory: Path, card: dict[str, Any], prefix: str = "", config: dict[str, Any] | None = None
    ) -> TfidfClassifier:
        conf = config or card["config"]
        m = cls(tuple(conf["ngram"]), float(conf["C"]), bool(conf.get("sublinear_tf", False)))  # type: ignore[arg-type]
        terms = json.loads((directory / f"{prefix}tfidf_terms.json").read_text(encoding="utf-8"))
        m.vocabulary = {t: i for i, t in enumerate(terms)}
        m.idf = np.load(directory / f"{prefix}tfidf_idf.npy", allow_pickle=False)
        m.coef = np.load(directory / f"{prefix}svm_coef.npy", allow_pickle=False)
        m.intercept = np.load(directory / f"{prefix}svm_intercept.npy", allow_pickle=False)
        m.labels = tuple(int(x) for x in conf["labels"])
        if m.coef.shape != (len(m.labels), len(terms)) or m.idf.shape != (len(terms),):
            raise ArtifactError(f"{directory}: TF-IDF/SVM arrays do not match the vocabulary or labels")
        return m


# ------------------------------------------------------------------------------------------------
# transformer


SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


class CharTokenizer:
    """Characters as tokens; vocabulary from the training texts (characters seen ``min_count`` times)."""

    def __init__(self, chars: Sequence[str]):
        self.itos = list(SPECIALS) + [c for c in chars if c not in SPECIALS]
        self.stoi = {c: i for i, c in enumerate(self.itos)}
        self.pad, self.unk, self.cls, self.sep, self.mask = range(5)

    @classmethod
    def build(cls, texts: Sequence[str], min_count: int = 2, max_size: int = 8000) -> CharTokenizer:
        counts = Counter(ch for t in texts for ch in t if not ch.isspace())
        chars = [c for c, n in counts.most_common(max_size) if n >= min_count]
        return cls(chars)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str, max_len: int) -> list[int]:
        chars = [c for c in text if not c.isspace()][: max_len - 2]
        return [self.cls, *(self.stoi.get(c, self.unk) for c in chars), self.sep]

    def batch(self, texts: Sequence[str], max_len: int) -> tuple[Any, Any]:
        import torch

        enc = [self.encode(t, max_len) for t in texts]
        width = max(len(e) for e in enc)
        ids = torch.full((len(enc), width), self.pad, dtype=torch.long)
        mask = torch.zeros((len(enc), width), dtype=torch.long)
        for i, e in enumerate(enc):
            ids[i, : len(e)] = torch.tensor(e)
            mask[i, : len(e)] = 1
        return ids, mask


@dataclass(frozen=True, slots=True)
class TransformerConfig:
    hidden: int = 128
    layers: int = 2
    heads: int = 4
    intermediate: int = 512
    max_len: int = 256
    dropout: float = 0.1
    min_char_count: int = 2
    pretrain_epochs: int = 1  # masked-LM epochs over the training texts (0 = none)
    mask_prob: float = 0.15
    pretrain_lr: float = 5e-4
    epochs: int = 5
    lr: float = 5e-4
    weight_decay: float = 0.01
    batch_size: int = 16
    warmup: float = 0.1
    patience: int = 3
    threads: int = 0  # torch threads (0 = torch's default)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TransformerConfig:
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise InputError(f"unknown transformer config keys: {', '.join(unknown)}", "config")
        return cls(**d)

    def bert_config(self, vocab_size: int, num_labels: int) -> Any:
        from transformers import BertConfig

        return BertConfig(
            vocab_size=vocab_size,
            hidden_size=self.hidden,
            num_hidden_layers=self.layers,
            num_attention_heads=self.heads,
            intermediate_size=self.intermediate,
            max_position_embeddings=self.max_len,
            hidden_dropout_prob=self.dropout,
            attention_probs_dropout_prob=self.dropout,
            num_labels=num_labels,
            pad_token_id=0,
        )


class TransformerClassifier:
    kind = "transformer"
    task = "case-classify"

    def __init__(self, config: TransformerConfig, tokenizer: CharTokenizer, labels: Sequence[int]):
        from transformers import BertForSequenceClassification

        self.config, self.tokenizer, self.labels = config, tokenizer, tuple(int(x) for x in labels)
        self.model = BertForSequenceClassification(config.bert_config(len(tokenizer), len(self.labels)))
        self.best_epoch = 0
        self.card: dict[str, Any] | None = None

    def logits(self, texts: Sequence[str], batch: int = 32) -> np.ndarray:
        import torch

        self.model.eval()
        out = []
        with torch.no_grad():
            for b in range(0, len(texts), batch):
                ids, mask = self.tokenizer.batch(texts[b : b + batch], self.config.max_len)
                out.append(self.model(input_ids=ids, attention_mask=mask).logits.float().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.labels)))

    def proba(self, texts: Sequence[str]) -> np.ndarray:
        return _softmax(self.logits(texts))

    def predict(self, texts: Sequence[str]) -> list[int]:
        return [self.labels[i] for i in self.logits(texts).argmax(1)]

    def save(self, directory: Path, prefix: str = "") -> dict[str, Any]:
        from safetensors.torch import save_file

        state = {k: v.contiguous() for k, v in self.model.state_dict().items()}
        save_file(state, str(directory / f"{prefix}transformer.safetensors"))
        (directory / f"{prefix}chars.json").write_text(
            json.dumps(self.tokenizer.itos, ensure_ascii=False), encoding="utf-8"
        )
        return {
            **asdict(self.config),
            "labels": list(self.labels),
            "vocab_size": len(self.tokenizer),
            "best_epoch": self.best_epoch,
        }

    @classmethod
    def load(
        cls, directory: Path, card: dict[str, Any], prefix: str = "", config: dict[str, Any] | None = None
    ) -> TransformerClassifier:
        from safetensors.torch import load_file

        conf = dict(config or card["config"])
        labels = conf.pop("labels")
        conf.pop("vocab_size", None)
        best_epoch = int(conf.pop("best_epoch", 0))
        itos = json.loads((directory / f"{prefix}chars.json").read_text(encoding="utf-8"))
        if tuple(itos[: len(SPECIALS)]) != SPECIALS:
            raise ArtifactError(f"{directory}: character vocabulary is corrupt (special tokens missing)")
        m = cls(TransformerConfig.from_dict(conf), CharTokenizer(itos[len(SPECIALS) :]), labels)
        try:
            m.model.load_state_dict(load_file(str(directory / f"{prefix}transformer.safetensors")))
        except RuntimeError as exc:
            raise ArtifactError(f"{directory}: weights do not match the config ({str(exc).splitlines()[0]})") from exc
        m.best_epoch = best_epoch
        return m


class EnsembleClassifier:
    kind = "ensemble"
    task = "case-classify"

    def __init__(self, tfidf: TfidfClassifier, transformer: TransformerClassifier, weight: float = 0.5):
        if tfidf.labels != transformer.labels:
            raise InputError("ensemble members were trained on different label sets", "ensemble")
        self.tfidf, self.transformer, self.weight = tfidf, transformer, weight
        self.labels = tfidf.labels
        self.card: dict[str, Any] | None = None

    @staticmethod
    def combine(tfidf_dec: np.ndarray, trans_logits: np.ndarray, weight: float) -> np.ndarray:
        """weight * log-softmax(transformer) + (1 - weight) * log-softmax(3 * svm margin)."""
        lt = np.log(_softmax(trans_logits) + 1e-9)
        ls = np.log(_softmax(3.0 * tfidf_dec) + 1e-9)
        return weight * lt + (1 - weight) * ls

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        return self.combine(self.tfidf.decision(texts), self.transformer.logits(texts), self.weight)

    def predict(self, texts: Sequence[str]) -> list[int]:
        return [self.labels[i] for i in self.scores(texts).argmax(1)]

    def save(self, directory: Path, prefix: str = "") -> dict[str, Any]:
        a = self.tfidf.save(directory, prefix + "tfidf.")
        b = self.transformer.save(directory, prefix + "transformer.")
        return {"weight": self.weight, "tfidf": a, "transformer": b, "labels": list(self.labels)}

    @classmethod
    def load(cls, directory: Path, card: dict[str, Any], prefix: str = "") -> EnsembleClassifier:
        conf = card["config"]
        a = TfidfClassifier.load(directory, card, prefix + "tfidf.", conf["tfidf"])
        b = TransformerClassifier.load(directory, card, prefix + "transformer.", conf["transformer"])
        return cls(a, b, float(conf["weight"]))
