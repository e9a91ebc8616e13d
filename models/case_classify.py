"""Case classification: case text -> department label.

``NBSVMClassifier``   the default: NB-SVM (naive-Bayes log-count ratios + linear SVM, one-vs-rest) over binary
                      character 1-3-grams of the whole text and of its first 20 characters, plus the patient's
                      age bucket read by :func:`case_age`. On the published validation split: 88.96 % accuracy /
                      87.02 % macro-F1 (the TF-IDF + SVM below: 83.84 / 82.24); trains in well under a minute.
``CharCNNClassifier`` a character CNN (parallel convolutions, max-pooling); ~82-85 % on validation in ~8 minutes
                      on one core, but it adds nothing to the NB-SVM there (``NBSVMCNNEnsemble`` picks weight 0).
``NBSVMCNNEnsemble``  weighted log-probabilities of the two, the weight picked on validation.
``TfidfClassifier``   character 1-3-gram TF-IDF + linear SVM (C picked on validation): the earlier baseline.
``TransformerClassifier``  a small BERT-style encoder over characters, built from a config in code (no
                      download), optionally pretrained with masked-LM on the training texts, then fine-tuned;
                      the loops live in ``training.loops`` (they also run under ``torchrun``). ~75 % on validation.
``EnsembleClassifier``  a weighted sum of those two (standardised SVM margins + transformer log-probabilities),
                      the weight picked on validation.

All save plain files (JSON, ``.npy`` without pickles, safetensors): nothing is unpickled at load time.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kb.errors import ArtifactError, InputError
from kb.normalize import CN_DIGITS, cn_number
from models.ngrams import char_ngram_counts, l2_rows

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

    def _features(self, texts: Sequence[str]) -> Any:
        counts = char_ngram_counts(texts, self.vocabulary, self.ngram).astype(np.float64)
        if self.sublinear_tf:
            counts.data = 1.0 + np.log(counts.data)
        return l2_rows(counts.multiply(self.idf).tocsr())

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


def _saved_config(config: dict[str, Any]) -> tuple[dict[str, Any], list[str], int]:
    """A character model's saved config split into its own settings, its labels and its best epoch."""
    conf = dict(config)
    labels = conf.pop("labels")
    conf.pop("vocab_size", None)
    return conf, labels, int(conf.pop("best_epoch", 0))


def _read_chars(directory: Path, name: str, specials: tuple[str, ...]) -> list[str]:
    """A saved character vocabulary, which must open with ``specials``."""
    itos: list[str] = json.loads((directory / name).read_text(encoding="utf-8"))
    if tuple(itos[: len(specials)]) != specials:
        raise ArtifactError(f"{directory}: character vocabulary is corrupt (special tokens missing)")
    return itos


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

        conf, labels, best_epoch = _saved_config(config or card["config"])
        itos = _read_chars(directory, f"{prefix}chars.json", SPECIALS)
        m = cls(TransformerConfig.from_dict(conf), CharTokenizer(itos[len(SPECIALS) :]), labels)
        try:
            m.model.load_state_dict(load_file(str(directory / f"{prefix}transformer.safetensors")))
        except RuntimeError as exc:
            raise ArtifactError(f"{directory}: weights do not match the config ({str(exc).splitlines()[0]})") from exc
        m.best_epoch = best_epoch
        return m


def _blend(linear_dec: np.ndarray, scale: float, neural_logits: np.ndarray, weight: float) -> np.ndarray:
    """``weight * log-softmax(neural logits) + (1 - weight) * log-softmax(scale * linear decision)``."""
    ln = np.log(_softmax(neural_logits) + 1e-9)
    ll = np.log(_softmax(scale * linear_dec) + 1e-9)
    return weight * ln + (1 - weight) * ll


class _TwoMemberEnsemble:
    """A linear member (``tfidf``: what ``cds.learned`` uses as a fast department prior) and a neural one, blended
    by :func:`_blend` with a weight picked on validation."""

    task = "case-classify"

    def __init__(self, linear: Any, neural: Any, weight: float):
        if linear.labels != neural.labels:
            raise InputError("ensemble members were trained on different label sets", "ensemble")
        self.tfidf, self.weight = linear, weight
        self.labels: tuple[int, ...] = linear.labels
        self.card: dict[str, Any] | None = None

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        raise NotImplementedError

    def predict(self, texts: Sequence[str]) -> list[int]:
        return [self.labels[i] for i in self.scores(texts).argmax(1)]


class EnsembleClassifier(_TwoMemberEnsemble):
    kind = "ensemble"

    def __init__(self, tfidf: TfidfClassifier, transformer: TransformerClassifier, weight: float = 0.5):
        super().__init__(tfidf, transformer, weight)
        self.transformer = transformer

    @staticmethod
    def combine(tfidf_dec: np.ndarray, trans_logits: np.ndarray, weight: float) -> np.ndarray:
        """weight * log-softmax(transformer) + (1 - weight) * log-softmax(3 * svm margin)."""
        return _blend(tfidf_dec, 3.0, trans_logits, weight)

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        return self.combine(self.tfidf.decision(texts), self.transformer.logits(texts), self.weight)

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


# ------------------------------------------------------------------------------------------------
# the patient's age, where a record states it (a strong department signal: 儿科 takes the children)

_NUM = r"(\d{1,3}|[一二两三四五六七八九十廿卅百]{1,4})"
_AGE_PATTERNS = (
    (re.compile(_NUM + r"(?:周岁|岁半?|龄)"), 1.0),  # 三岁, 12岁, 五龄
    (re.compile(r"(?:^|[，,。\s|：:])(?:年|年甫|年方|年仅|年已|年近|年逾|年约|甫|方)" + _NUM + r"(?![月日年旬])"), 1.0),
    (re.compile(_NUM + r"(?:个月|月婴|月大|月之婴|月孩)"), 1 / 12),  # 七月婴孩
    (re.compile(_NUM + r"旬"), 10.0),  # 年七旬
)
_YE_STYLE = re.compile(r"^[^，。|：:]{1,4}[，,]?([一二三四五六七八九])([一二三四五六七八九十])[，,。]")  # 伍，三二，
AGE_BUCKETS = ((1.0, "infant"), (6.0, "toddler"), (14.0, "child"), (18.0, "teen"), (45.0, "adult"), (1e9, "older"))


def case_age(text: str, head: int = 120) -> float | None:
    """The patient's age in years as the opening of a case record states it (三岁, 年十四, 七月婴孩, 年七旬,
    叶天士's 某，三二，), or None. Looked for in the first ``head`` characters, where records name the patient."""
    t = text[:head]
    ye = _YE_STYLE.match(t)
    if ye:
        tens, units = CN_DIGITS[ye.group(1)], CN_DIGITS.get(ye.group(2), 0)
        return float(tens * 10 + units)
    for pattern, scale in _AGE_PATTERNS:
        for found in pattern.finditer(t):
            v = cn_number(found.group(1))
            if v is not None and 0 < v <= 110:
                return v * scale
    return None


def age_bucket(age: float | None) -> int | None:
    """Index into :data:`AGE_BUCKETS` (infant ≤ 1, toddler ≤ 6, child ≤ 14, teen ≤ 18, adult ≤ 45, older)."""
    if age is None:
        return None
    return next(i for i, (hi, _) in enumerate(AGE_BUCKETS) if age <= hi)


# ------------------------------------------------------------------------------------------------
# NB-SVM over character n-grams (+ age)


class NBSVMClassifier:
    """Wang & Manning's NB-SVM, one-vs-rest, over three blocks of features: binary character n-grams of the
    whole text, the same n-grams of its first ``head_chars`` characters (where records name the patient: 某右,
    某童, 某女, the age; scaled by ``head_weight``) and the age bucket (scaled by ``age_weight``). Each class j
    multiplies them by its naive-Bayes log-count ratio r_j, L2-normalises, and fits a linear SVM w_j, so its
    decision is ``(b @ (r_j * w_j)) / ||b * r_j|| + c_j``. Defaults were picked on the published validation
    split (with 5-fold cross-validation on train as a tie-break)."""

    kind = "nbsvm"
    task = "case-classify"

    def __init__(
        self,
        ngram: tuple[int, int] = (1, 3),
        min_df: int = 2,
        alpha: float = 1.0,
        c: float = 3.0,
        head_chars: int = 20,
        head_weight: float = 1.5,
        age_weight: float = 1.0,
        scale: float = 1.0,
    ):
        self.ngram, self.min_df, self.alpha, self.c = ngram, min_df, alpha, c
        self.head_chars, self.head_weight, self.age_weight = head_chars, head_weight, age_weight
        self.scale = scale  # proba = softmax(scale * decision); fitted on validation by ``fit_scale``
        self.labels: tuple[int, ...] = ()
        self.vocabulary: dict[str, int] = {}
        self.head_vocabulary: dict[str, int] = {}
        self.ratios = np.zeros((0, 0))
        self.coef = np.zeros((0, 0))
        self.intercept = np.zeros(0)
        self.card: dict[str, Any] | None = None

    def _vectorizer(self, min_df: int) -> Any:
        """An unfitted counter that keeps the n-grams of at least ``min_df`` texts (fitting only; answering counts
        with :func:`models.ngrams.char_ngram_counts`)."""
        from sklearn.feature_extraction.text import CountVectorizer

        return CountVectorizer(analyzer="char", ngram_range=self.ngram, lowercase=False, binary=True, min_df=min_df)

    def _heads(self, texts: Sequence[str]) -> list[str]:
        return [t[: self.head_chars] for t in texts]

    def _age_block(self, texts: Sequence[str]) -> Any:
        from scipy import sparse

        rows, cols = [], []
        for i, t in enumerate(texts):
            b = age_bucket(case_age(t))
            if b is not None:
                rows.append(i)
                cols.append(b)
        vals = np.full(len(rows), float(self.age_weight))
        return sparse.csr_matrix((vals, (rows, cols)), shape=(len(texts), len(AGE_BUCKETS)))

    def _features(self, texts: Sequence[str], text_counts: Any = None, head_counts: Any = None) -> Any:
        from scipy import sparse

        if text_counts is None:
            text_counts = char_ngram_counts(texts, self.vocabulary, self.ngram, binary=True)
        blocks = [text_counts.astype(np.float64)]
        if self.head_chars > 0:
            if head_counts is None:
                head_counts = char_ngram_counts(self._heads(texts), self.head_vocabulary, self.ngram, binary=True)
            blocks.append(head_counts.astype(np.float64) * self.head_weight)
        blocks.append(self._age_block(texts))
        return sparse.hstack(blocks).tocsr()

    def fit(self, texts: Sequence[str], labels: Sequence[int]) -> NBSVMClassifier:
        from sklearn.preprocessing import normalize
        from sklearn.svm import LinearSVC

        y = np.asarray(labels)
        classes = sorted({int(v) for v in y})
        if len(classes) < 2:
            raise InputError("NB-SVM needs at least two labels in the training texts", "labels")
        min_df = min(self.min_df, max(1, len(texts) // 2))
        vec = self._vectorizer(min_df)
        text_counts = vec.fit_transform(texts)
        self.vocabulary = {k: int(v) for k, v in vec.vocabulary_.items()}
        head_counts = None
        if self.head_chars > 0:
            hvec = self._vectorizer(min_df)
            head_counts = hvec.fit_transform(self._heads(texts))
            self.head_vocabulary = {k: int(v) for k, v in hvec.vocabulary_.items()}
        x = self._features(texts, text_counts, head_counts)
        ratios, coef, intercept = [], [], []
        for lab in classes:
            p = self.alpha + np.asarray(x[y == lab].sum(0)).ravel()
            q = self.alpha + np.asarray(x[y != lab].sum(0)).ravel()
            r = np.log((p / p.sum()) / (q / q.sum()))
            svm = LinearSVC(C=self.c, max_iter=5000).fit(normalize(x.multiply(r).tocsr()), (y == lab).astype(int))
            ratios.append(r)
            coef.append(svm.coef_.ravel())
            intercept.append(float(svm.intercept_[0]))
        self.labels = tuple(classes)
        self.ratios, self.coef, self.intercept = np.array(ratios), np.array(coef), np.array(intercept)
        return self

    def decision(self, texts: Sequence[str]) -> np.ndarray:
        x = self._features(texts)
        p = getattr(self, "_products", None)
        if p is None or p[0] is not self.ratios or p[1] is not self.coef:  # r·w and r² over the vocabulary, kept
            rw, r2 = np.ascontiguousarray((self.ratios * self.coef).T), np.ascontiguousarray((self.ratios**2).T)
            p = self._products = (self.ratios, self.coef, rw, r2)
        rw, r2 = p[2], p[3]
        num = np.asarray(x @ rw)
        den = np.sqrt(np.asarray(x.multiply(x) @ r2))
        return num / np.maximum(den, 1e-12) + self.intercept

    def proba(self, texts: Sequence[str]) -> np.ndarray:
        return _softmax(self.decision(texts) * self.scale)

    def predict(self, texts: Sequence[str]) -> list[int]:
        return [self.labels[i] for i in self.decision(texts).argmax(1)]

    def fit_scale(self, texts: Sequence[str], labels: Sequence[int], grid: Sequence[float] = ()) -> float:
        """Pick the temperature of ``proba`` by log-loss on held-out texts (the validation split)."""
        self.scale = _fit_scale(self.decision(texts), labels, self.labels, grid)
        return self.scale

    @staticmethod
    def _terms(vocabulary: dict[str, int]) -> list[str]:
        terms = [""] * len(vocabulary)
        for t, i in vocabulary.items():
            terms[i] = t
        return terms

    def save(self, directory: Path, prefix: str = "") -> dict[str, Any]:
        for name, vocab in (("terms", self.vocabulary), ("head_terms", self.head_vocabulary)):
            (directory / f"{prefix}nbsvm_{name}.json").write_text(
                json.dumps(self._terms(vocab), ensure_ascii=False), encoding="utf-8"
            )
        np.save(directory / f"{prefix}nbsvm_ratios.npy", self.ratios, allow_pickle=False)
        np.save(directory / f"{prefix}nbsvm_coef.npy", self.coef, allow_pickle=False)
        np.save(directory / f"{prefix}nbsvm_intercept.npy", self.intercept, allow_pickle=False)
        return {
            "ngram": list(self.ngram),
            "min_df": self.min_df,
            "alpha": self.alpha,
            "C": self.c,
            "head_chars": self.head_chars,
            "head_weight": self.head_weight,
            "age_weight": self.age_weight,
            "age_buckets": [name for _, name in AGE_BUCKETS],
            "scale": self.scale,
            "labels": list(self.labels),
        }

    @classmethod
    def load(
        cls, directory: Path, card: dict[str, Any], prefix: str = "", config: dict[str, Any] | None = None
    ) -> NBSVMClassifier:
        conf = config or card["config"]
        if list(conf.get("age_buckets", [])) != [name for _, name in AGE_BUCKETS]:
            raise ArtifactError(f"{directory}: the NB-SVM was trained with other age buckets; retrain it")
        m = cls(
            tuple(conf["ngram"]),  # type: ignore[arg-type]
            int(conf["min_df"]),
            float(conf["alpha"]),
            float(conf["C"]),
            int(conf["head_chars"]),
            float(conf["head_weight"]),
            float(conf["age_weight"]),
            float(conf.get("scale", 1.0)),
        )
        terms = json.loads((directory / f"{prefix}nbsvm_terms.json").read_text(encoding="utf-8"))
        head_terms = json.loads((directory / f"{prefix}nbsvm_head_terms.json").read_text(encoding="utf-8"))
        m.vocabulary = {t: i for i, t in enumerate(terms)}
        m.head_vocabulary = {t: i for i, t in enumerate(head_terms)}
        m.ratios = np.load(directory / f"{prefix}nbsvm_ratios.npy", allow_pickle=False)
        m.coef = np.load(directory / f"{prefix}nbsvm_coef.npy", allow_pickle=False)
        m.intercept = np.load(directory / f"{prefix}nbsvm_intercept.npy", allow_pickle=False)
        m.labels = tuple(int(x) for x in conf["labels"])
        width = len(terms) + (len(head_terms) if m.head_chars > 0 else 0) + len(AGE_BUCKETS)
        shape = (len(m.labels), width)
        if m.ratios.shape != shape or m.coef.shape != shape or m.intercept.shape != (len(m.labels),):
            raise ArtifactError(f"{directory}: NB-SVM arrays do not match the vocabulary or labels")
        return m


def _fit_scale(dec: np.ndarray, labels: Sequence[int], classes: Sequence[int], grid: Sequence[float] = ()) -> float:
    pos = {c: i for i, c in enumerate(classes)}
    idx = np.array([pos[int(v)] for v in labels])
    best, best_nll = 1.0, np.inf
    for s in grid or np.geomspace(0.25, 32.0, 22):
        p = _softmax(dec * float(s))
        nll = float(-np.log(p[np.arange(len(idx)), idx] + 1e-12).mean())
        if nll < best_nll:
            best, best_nll = float(s), nll
    return round(best, 4)


# ------------------------------------------------------------------------------------------------
# character CNN


@dataclass(frozen=True, slots=True)
class CNNConfig:
    """A Kim-style CNN over characters: embeddings -> parallel 1-D convolutions (one width each) -> max over
    time -> dropout -> linear. ``members`` networks trained side by side, their logits averaged. Long texts
    keep their first ``head`` share of ``max_len`` characters and their last ones. Defaults were picked on the
    published validation split."""

    embed: int = 64
    filters: int = 96
    kernels: tuple[int, ...] = (1, 2, 3, 4, 5)
    max_len: int = 512
    head: float = 0.75
    dropout: float = 0.5
    min_char_count: int = 2
    members: int = 1
    epochs: int = 10
    lr: float = 2e-3
    weight_decay: float = 1e-4
    batch_size: int = 32
    patience: int = 4
    threads: int = 0  # torch threads (0 = torch's default)

    def __post_init__(self) -> None:
        if min(self.embed, self.filters, self.max_len, self.members, self.epochs, self.batch_size) < 1:
            raise InputError("cnn embed, filters, max_len, members, epochs and batch_size must be at least 1", "cnn")
        if not self.kernels or min(self.kernels) < 1 or not 0.0 <= self.head <= 1.0:
            raise InputError("cnn kernels must be positive widths and head a share in [0, 1]", "cnn")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CNNConfig:
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise InputError(f"unknown cnn config keys: {', '.join(unknown)}", "config")
        if "kernels" in d:
            d = {**d, "kernels": tuple(int(k) for k in d["kernels"])}
        return cls(**d)


def _cnn_net(cfg: CNNConfig, vocab_size: int, num_labels: int) -> Any:
    import torch
    from torch import nn

    class CharCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(vocab_size, cfg.embed, padding_idx=0)
            self.convs = nn.ModuleList(nn.Conv1d(cfg.embed, cfg.filters, k, padding=k // 2) for k in cfg.kernels)
            self.drop = nn.Dropout(cfg.dropout)
            self.out = nn.Linear(cfg.filters * len(cfg.kernels), num_labels)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            e = self.emb(ids).transpose(1, 2)
            pad = (ids == 0).unsqueeze(1)
            pooled = []
            for conv in self.convs:
                h = torch.relu(conv(e))[:, :, : ids.shape[1]].masked_fill(pad, 0.0)
                pooled.append(h.max(2).values)
            return self.out(self.drop(torch.cat(pooled, 1)))

    return nn.ModuleList(CharCNN() for _ in range(cfg.members))


def _cnn_shapes(cfg: CNNConfig, vocab_size: int, num_labels: int) -> dict[str, tuple[int, ...]]:
    """The state-dict shapes of :func:`_cnn_net` (checked at load time without importing torch)."""
    out: dict[str, tuple[int, ...]] = {}
    for m in range(cfg.members):
        out[f"{m}.emb.weight"] = (vocab_size, cfg.embed)
        for i, k in enumerate(cfg.kernels):
            out[f"{m}.convs.{i}.weight"] = (cfg.filters, cfg.embed, k)
            out[f"{m}.convs.{i}.bias"] = (cfg.filters,)
        out[f"{m}.out.weight"] = (num_labels, cfg.filters * len(cfg.kernels))
        out[f"{m}.out.bias"] = (num_labels,)
    return out


class CharCNNClassifier:
    """Character CNN (see :class:`CNNConfig`); ``fit`` keeps the epoch with the best validation score."""

    kind = "char-cnn"
    task = "case-classify"

    def __init__(self, config: CNNConfig, chars: Sequence[str], labels: Sequence[int]):
        self.config, self.labels = config, tuple(int(x) for x in labels)
        self.itos = ["[PAD]", "[UNK]", *(c for c in chars if c not in ("[PAD]", "[UNK]"))]
        self.stoi = {c: i for i, c in enumerate(self.itos)}
        self.best_epoch = 0
        self.card: dict[str, Any] | None = None
        self._net: Any = None
        self._state: dict[str, np.ndarray] | None = None  # weights read at load time; torch starts on first use

    @classmethod
    def build(cls, config: CNNConfig, texts: Sequence[str], labels: Sequence[int]) -> CharCNNClassifier:
        counts = Counter(ch for t in texts for ch in t)
        return cls(config, [c for c, n in counts.most_common() if n >= config.min_char_count], labels)

    @property
    def net(self) -> Any:
        if self._net is None:
            import torch

            self._net = _cnn_net(self.config, len(self.itos), len(self.labels))
            if self._state is not None:
                self._net.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in self._state.items()})
                self._state = None
        return self._net

    def encode(self, texts: Sequence[str]) -> Any:
        import torch

        n = self.config.max_len
        head = round(n * self.config.head)
        ids = torch.zeros((len(texts), n), dtype=torch.long)
        for i, t in enumerate(texts):
            if len(t) > n:
                t = t[:head] + (t[len(t) - (n - head) :] if n > head else "")
            row = [self.stoi.get(c, 1) for c in t]
            if row:
                ids[i, : len(row)] = torch.tensor(row)
        return ids

    def logits(self, texts: Sequence[str], batch: int = 128) -> np.ndarray:
        import torch

        net = self.net
        net.eval()
        out = []
        with torch.no_grad():
            for b in range(0, len(texts), batch):
                ids = self.encode(texts[b : b + batch])
                out.append(torch.stack([m(ids) for m in net]).mean(0).float().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.labels)))

    def proba(self, texts: Sequence[str]) -> np.ndarray:
        return _softmax(self.logits(texts))

    def predict(self, texts: Sequence[str]) -> list[int]:
        return [self.labels[i] for i in self.logits(texts).argmax(1)]

    def fit(
        self,
        texts: Sequence[str],
        labels: Sequence[int],
        validate: Callable[[CharCNNClassifier], float] | None = None,
        seed: int = 0,
        on_epoch: Callable[[int, float, float], None] | None = None,
        progress: bool = True,
    ) -> CharCNNClassifier:
        """Train all members on the same batches (AdamW, constant learning rate). After each epoch
        ``validate(self)`` (higher is better) is scored and the best epoch's weights are kept; training stops
        after ``patience`` epochs without improvement. Without ``validate`` the last epoch is kept."""
        import torch
        from tqdm import tqdm

        cfg = self.config
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(seed)
        self._state, self._net = None, None
        net = self.net
        pos = {c: i for i, c in enumerate(self.labels)}
        y = torch.tensor([pos[int(v)] for v in labels], dtype=torch.long)
        x = self.encode(texts)
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        gen = torch.Generator().manual_seed(seed)
        best, best_state, stale = -np.inf, None, 0
        for epoch in range(1, cfg.epochs + 1):
            net.train()
            perm = torch.randperm(len(y), generator=gen)
            total = 0.0
            bar = tqdm(
                range(0, len(y), cfg.batch_size), desc=f"char-cnn epoch {epoch}", leave=False, disable=not progress
            )
            for b in bar:
                idx = perm[b : b + cfg.batch_size]
                loss = torch.stack([torch.nn.functional.cross_entropy(m(x[idx]), y[idx]) for m in net]).sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() / len(net) * len(idx)
            metric = validate(self) if validate is not None else float(epoch)
            if on_epoch:
                on_epoch(epoch, total / max(len(y), 1), metric)
            if metric > best:
                best, self.best_epoch, stale = metric, epoch, 0
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            else:
                stale += 1
                if stale >= cfg.patience:
                    break
        if best_state is not None:
            net.load_state_dict(best_state)
        return self

    def save(self, directory: Path, prefix: str = "") -> dict[str, Any]:
        from safetensors.torch import save_file

        state = {k: v.contiguous() for k, v in self.net.state_dict().items()}
        save_file(state, str(directory / f"{prefix}cnn.safetensors"))
        (directory / f"{prefix}cnn_chars.json").write_text(json.dumps(self.itos, ensure_ascii=False), encoding="utf-8")
        conf = asdict(self.config)
        conf["kernels"] = list(self.config.kernels)
        return {**conf, "labels": list(self.labels), "vocab_size": len(self.itos), "best_epoch": self.best_epoch}

    @classmethod
    def load(
        cls, directory: Path, card: dict[str, Any], prefix: str = "", config: dict[str, Any] | None = None
    ) -> CharCNNClassifier:
        from safetensors.numpy import load_file

        conf, labels, best_epoch = _saved_config(config or card["config"])
        itos = _read_chars(directory, f"{prefix}cnn_chars.json", ("[PAD]", "[UNK]"))
        m = cls(CNNConfig.from_dict(conf), itos[2:], labels)
        state = load_file(str(directory / f"{prefix}cnn.safetensors"))
        want = _cnn_shapes(m.config, len(m.itos), len(m.labels))
        got = {k: tuple(v.shape) for k, v in state.items()}
        if got != want:
            raise ArtifactError(f"{directory}: CNN weights do not match the config and vocabulary")
        m._state, m.best_epoch = state, best_epoch
        return m


# ------------------------------------------------------------------------------------------------
# NB-SVM + CNN


class NBSVMCNNEnsemble(_TwoMemberEnsemble):
    """``weight * log-softmax(CNN logits) + (1 - weight) * log-softmax(scale * NB-SVM decision)``, the weight
    picked on validation. ``tfidf`` is the linear member (what ``cds.learned`` uses as a fast department prior);
    loading reads the CNN's weights but starts torch only when the CNN is first used."""

    kind = "nbsvm-cnn"

    def __init__(self, linear: NBSVMClassifier, cnn: CharCNNClassifier, weight: float = 0.5):
        super().__init__(linear, cnn, weight)
        self.cnn = cnn

    @property
    def nbsvm(self) -> NBSVMClassifier:
        return self.tfidf

    combine = staticmethod(_blend)

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        return self.combine(self.tfidf.decision(texts), self.tfidf.scale, self.cnn.logits(texts), self.weight)

    def proba(self, texts: Sequence[str]) -> np.ndarray:
        return _softmax(self.scores(texts))

    def save(self, directory: Path, prefix: str = "") -> dict[str, Any]:
        a = self.tfidf.save(directory, prefix + "nbsvm.")
        b = self.cnn.save(directory, prefix + "cnn.")
        return {"weight": self.weight, "nbsvm": a, "cnn": b, "labels": list(self.labels)}

    @classmethod
    def load(cls, directory: Path, card: dict[str, Any], prefix: str = "") -> NBSVMCNNEnsemble:
        conf = card["config"]
        a = NBSVMClassifier.load(directory, card, prefix + "nbsvm.", conf["nbsvm"])
        b = CharCNNClassifier.load(directory, card, prefix + "cnn.", conf["cnn"])
        return cls(a, b, float(conf["weight"]))
