"""Text encoders for similar-case retrieval: case findings text -> L2-normalised float32 vectors.

    tfidf   character n-gram TF-IDF (scikit-learn's ``CountVectorizer`` vocabulary, sublinear tf, smoothed idf),
            L2-normalised, optionally reduced with ``TruncatedSVD`` to a fixed dimension (then re-normalised)
    bert    a BERT-style transformer (``transformers.BertModel``) over characters, mean-pooled. Either built
            from a config and trained from scratch (masked-LM pretraining, then contrastive fine-tuning that
            pulls together cases whose prescriptions overlap, by Jaccard of herb sets) within a CPU time
            budget, or loaded from a local pretrained checkpoint directory a user supplies. Nothing is
            ever downloaded.

Every encoder has ``name`` and ``version``. The version is a hash of the fitted state (vocabulary, weights),
so an index built with one fitted encoder refuses to load against another (see :mod:`models.vector_index`).
Encoders are registered in :data:`ENCODERS` (the one registry pattern), lazily, so torch loads only for bert.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from kb.errors import ArtifactError, InputError
from kb.registry import Registry
from models.ngrams import char_ngram_counts, l2_rows

logger = logging.getLogger(__name__)

ENCODER_FILE = "encoder.json"


class Encoder(Protocol):
    name: str
    version: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...

    def save(self, directory: Path) -> dict[str, Any]: ...


ENCODERS: Registry[Any] = Registry("case encoder")
ENCODERS.register("tfidf", "models.encoders:TfidfEncoder")
ENCODERS.register("bert", "models.encoders:BertEncoder")


def _l2(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(x / norms, dtype=np.float32)


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise InputError("encode() takes a list of texts, not one string", "texts")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str) or not t.strip():
            raise InputError("text is empty; give the case's findings as text", f"texts[{i}]")
    return out


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
        h.update(b"\0")
    return h.hexdigest()[:16]


def save_encoder(encoder: Any, directory: str | Path) -> Path:
    """Write an encoder's files and ``encoder.json`` (name, version, dim, config) into ``directory``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    config = encoder.save(d)
    meta = {"name": encoder.name, "version": encoder.version, "dim": encoder.dim, "config": config}
    (d / ENCODER_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")
    return d


def load_encoder(directory: str | Path) -> Any:
    d = Path(directory)
    f = d / ENCODER_FILE
    if not f.is_file():
        raise ArtifactError(f"{d} holds no encoder ({ENCODER_FILE} is missing); rebuild with `tcm cases build`")
    try:
        meta = json.loads(f.read_text(encoding="utf-8"))
        name = meta["name"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{f} is corrupt ({exc}); rebuild with `tcm cases build`") from exc
    if name not in ENCODERS:
        raise ArtifactError(f"{f}: unknown encoder {name!r} (known: {', '.join(ENCODERS.names())})")
    enc = ENCODERS.get(name).load(d, meta)
    if enc.version != meta.get("version"):
        raise ArtifactError(
            f"{f}: the encoder files give version {enc.version}, the metadata says {meta.get('version')}; "
            "the artifact is altered or corrupt; rebuild it"
        )
    return enc


# ------------------------------------------------------------------------------------------------
# TF-IDF


class TfidfEncoder:
    name = "tfidf"

    def __init__(
        self, ngram: tuple[int, int] = (1, 3), max_features: int | None = 200_000, svd_dim: int | None = 128,
        min_df: int = 2, seed: int = 0,
    ):  # fmt: skip
        self.ngram = (int(ngram[0]), int(ngram[1]))
        self.max_features, self.svd_dim, self.min_df, self.seed = max_features, svd_dim, min_df, seed
        self.vocabulary: dict[str, int] = {}
        self.idf: np.ndarray | None = None
        self.components: np.ndarray | None = None  # (svd_dim, vocab) when reduced
        self.version = "unfitted"

    @property
    def dim(self) -> int:
        if self.components is not None:
            return int(self.components.shape[0])
        return len(self.vocabulary)

    def _sparse(self, texts: list[str]) -> Any:
        x = char_ngram_counts(texts, self.vocabulary, self.ngram).astype(np.float32)
        x.data = 1.0 + np.log(x.data)  # sublinear tf
        return l2_rows(x.multiply(self.idf).tocsr())

    def fit(self, texts: Sequence[str]) -> TfidfEncoder:
        from sklearn.feature_extraction.text import CountVectorizer

        texts = _check_texts(texts)
        min_df = self.min_df if len(texts) >= 10 * self.min_df else 1
        cv = CountVectorizer(
            analyzer="char", ngram_range=self.ngram, lowercase=False, min_df=min_df, max_features=self.max_features
        )
        counts = cv.fit_transform(texts)
        self.vocabulary = {t: int(i) for t, i in cv.vocabulary_.items()}
        df = np.bincount(counts.indices, minlength=counts.shape[1]).astype(np.float64)
        n = counts.shape[0]
        self.idf = (np.log((1 + n) / (1 + df)) + 1.0).astype(np.float32)
        self.components = None
        if self.svd_dim:
            from sklearn.decomposition import TruncatedSVD

            x = self._sparse(texts)
            k = min(self.svd_dim, x.shape[1] - 1, x.shape[0] - 1)
            if k < 1:
                raise InputError(f"too few texts ({len(texts)}) to reduce TF-IDF to {self.svd_dim} dimensions")
            svd = TruncatedSVD(n_components=k, random_state=self.seed, algorithm="randomized", n_iter=5)
            svd.fit(x)
            self.components = svd.components_.astype(np.float32)
        self.version = self._fingerprint()
        logger.info("fitted tfidf encoder %s: %d n-grams, dim %d", self.version, len(self.vocabulary), self.dim)
        return self

    def _fingerprint(self) -> str:
        terms = json.dumps(sorted(self.vocabulary.items()), ensure_ascii=False).encode()
        comp = self.components.tobytes() if self.components is not None else b""
        assert self.idf is not None
        conf = json.dumps([self.ngram, self.svd_dim]).encode()
        return f"{self.name}-{_digest(conf, terms, self.idf.tobytes(), comp)}"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if self.idf is None:
            raise ArtifactError("the tfidf encoder is not fitted; fit it or load a saved one")
        texts = _check_texts(texts)
        x = self._sparse(texts)
        if self.components is None:
            return _l2(x.toarray())
        if x.shape[0] <= 64:  # a query: gather the columns of its n-grams (scipy would copy the transposed matrix)
            out = np.zeros((x.shape[0], self.components.shape[0]), dtype=np.float32)
            for i in range(x.shape[0]):
                lo, hi = x.indptr[i], x.indptr[i + 1]
                out[i] = self.components[:, x.indices[lo:hi]] @ x.data[lo:hi]
            return _l2(out)
        return _l2(x @ self.components.T)

    def save(self, directory: Path) -> dict[str, Any]:
        assert self.idf is not None
        terms = [""] * len(self.vocabulary)
        for t, i in self.vocabulary.items():
            terms[i] = t
        (directory / "tfidf_terms.json").write_text(json.dumps(terms, ensure_ascii=False), encoding="utf-8")
        arrays: dict[str, Any] = {"idf": self.idf}
        if self.components is not None:
            arrays["components"] = self.components
        np.savez(directory / "tfidf.npz", **arrays)  # type: ignore[arg-type]
        return {"ngram": list(self.ngram), "max_features": self.max_features, "svd_dim": self.svd_dim,
                "min_df": self.min_df, "seed": self.seed}  # fmt: skip

    @classmethod
    def load(cls, directory: Path, meta: dict[str, Any]) -> TfidfEncoder:
        c = meta.get("config", {})
        enc = cls(tuple(c.get("ngram", (1, 3))), c.get("max_features"), c.get("svd_dim"), c.get("min_df", 2))  # type: ignore[arg-type]
        try:
            terms = json.loads((directory / "tfidf_terms.json").read_text(encoding="utf-8"))
            with np.load(directory / "tfidf.npz", allow_pickle=False) as z:
                enc.idf = z["idf"].astype(np.float32)
                enc.components = z["components"].astype(np.float32) if "components" in z.files else None
        except (OSError, ValueError, KeyError) as exc:
            raise ArtifactError(f"{directory}: the tfidf encoder files are missing or corrupt ({exc})") from exc
        enc.vocabulary = {t: i for i, t in enumerate(terms)}
        if len(enc.idf) != len(terms) or (enc.components is not None and enc.components.shape[1] != len(terms)):
            raise ArtifactError(f"{directory}: tfidf arrays do not match the vocabulary; rebuild the encoder")
        enc.version = enc._fingerprint()
        return enc


# ------------------------------------------------------------------------------------------------
# BERT-style transformer


@dataclass(frozen=True, slots=True)
class BertEncoderConfig:
    hidden: int = 128
    layers: int = 2
    heads: int = 4
    intermediate: int = 512
    max_len: int = 160
    dropout: float = 0.1
    min_char_count: int = 2
    batch_size: int = 32
    mlm_lr: float = 5e-4
    mask_prob: float = 0.15
    contrastive_lr: float = 2e-4
    temperature: float = 0.05
    positive_jaccard: float = 0.3  # a pair of cases counts as similar when their herb sets overlap this much
    mlm_share: float = 0.4  # share of the time budget spent on masked-LM pretraining
    budget_s: float = 300.0
    max_steps: int = 100_000
    threads: int = 0
    seed: int = 0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BertEncoderConfig:
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise InputError(f"unknown bert encoder config keys: {', '.join(unknown)}", "config")
        return cls(**d)


def jaccard(a: frozenset[str] | set[str], b: frozenset[str] | set[str]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


@dataclass
class TrainLog:
    mlm_steps: int = 0
    mlm_loss: list[float] = field(default_factory=list)
    contrastive_steps: int = 0
    contrastive_loss: list[float] = field(default_factory=list)
    positive_pairs: int = 0
    seconds: float = 0.0


class BertEncoder:
    """Mean-pooled BERT over characters. ``BertEncoder.build(config, texts)`` then ``train(...)``, or
    ``BertEncoder.from_pretrained(path)`` for a local checkpoint (a folder with ``config.json``, weights and a
    tokenizer, as ``save_pretrained`` writes them)."""

    name = "bert"

    def __init__(self, model: Any, tokenizer: Any, config: BertEncoderConfig, pretrained: str | None = None):
        self.model, self.tokenizer, self.config, self.pretrained = model, tokenizer, config, pretrained
        self.log = TrainLog()
        self.version = self._fingerprint()

    # ---- construction ----------------------------------------------------------------------------
    @classmethod
    def build(cls, config: BertEncoderConfig, texts: Sequence[str]) -> BertEncoder:
        import torch
        from transformers import BertConfig, BertForMaskedLM

        from models.case_classify import CharTokenizer

        torch.manual_seed(config.seed)
        tok = CharTokenizer.build(_check_texts(texts), min_count=config.min_char_count)
        bc = BertConfig(
            vocab_size=len(tok), hidden_size=config.hidden, num_hidden_layers=config.layers,
            num_attention_heads=config.heads, intermediate_size=config.intermediate,
            max_position_embeddings=config.max_len, hidden_dropout_prob=config.dropout,
            attention_probs_dropout_prob=config.dropout, pad_token_id=0,
        )  # fmt: skip
        return cls(BertForMaskedLM(bc), tok, config)

    @classmethod
    def from_pretrained(cls, path: str | Path, config: BertEncoderConfig | None = None) -> BertEncoder:
        from transformers import AutoModel, AutoTokenizer

        p = Path(path)
        if not (p / "config.json").is_file():
            raise ArtifactError(f"{p} is not a local transformers checkpoint (no config.json); give a folder path")
        try:
            tok = AutoTokenizer.from_pretrained(str(p), local_files_only=True)
            model = AutoModel.from_pretrained(str(p), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"cannot load the checkpoint at {p}: {exc}") from exc
        conf = config or BertEncoderConfig(max_len=min(512, int(getattr(model.config, "max_position_embeddings", 512))))
        return cls(model, _HFTokenizer(tok), conf, pretrained=str(p))

    # ---- state -----------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def _encoder_module(self) -> Any:
        return getattr(self.model, "bert", self.model)

    def _fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(json.dumps(asdict(self.config), sort_keys=True).encode())
        h.update(json.dumps(self.tokenizer.itos, ensure_ascii=False).encode())
        for k, v in sorted(self._encoder_module().state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().numpy().tobytes())
        return f"{self.name}-{h.hexdigest()[:16]}"

    # ---- encoding --------------------------------------------------------------------------------
    def _mlm_loss(self, inp: Any, mask: Any, labels: Any) -> Any:
        """Masked-LM loss with the prediction head applied at the masked positions only: over a character
        vocabulary of thousands the head at every position costs more than the encoder (~6x fewer FLOPs here);
        the same loss as ``BertForMaskedLM(labels=...)``."""
        import torch

        hidden = self.model.bert(input_ids=inp, attention_mask=mask).last_hidden_state
        picked = labels != -100
        if not bool(picked.any()):
            return hidden.sum() * 0.0
        logits = self.model.cls(hidden[picked])
        return torch.nn.functional.cross_entropy(logits, labels[picked])

    def _pool(self, ids: Any, mask: Any) -> Any:
        out = self._encoder_module()(input_ids=ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).to(out.dtype)
        return (out * m).sum(1) / m.sum(1).clamp(min=1.0)

    def encode(self, texts: Sequence[str], batch: int = 64) -> np.ndarray:
        import torch

        texts = _check_texts(texts)
        self.model.eval()
        parts = []
        with torch.inference_mode():
            for b in range(0, len(texts), batch):
                ids, mask = self.tokenizer.batch(texts[b : b + batch], self.config.max_len)
                parts.append(self._pool(ids, mask).float().numpy())
        return _l2(np.concatenate(parts) if parts else np.zeros((0, self.dim), np.float32))

    # ---- training --------------------------------------------------------------------------------
    def train(
        self, texts: Sequence[str], herb_sets: Sequence[frozenset[str]], budget_s: float | None = None
    ) -> TrainLog:
        """Masked-LM pretraining then contrastive fine-tuning, together within ``budget_s`` seconds of CPU."""
        import torch

        texts = _check_texts(texts)
        if len(herb_sets) != len(texts):
            raise InputError(f"{len(texts)} texts but {len(herb_sets)} herb sets", "herb_sets")
        cfg = self.config
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        budget = cfg.budget_s if budget_s is None else budget_s
        t0 = time.monotonic()
        rng = random.Random(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        log = TrainLog()
        # 1. masked-LM
        if hasattr(self.model, "cls"):
            opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.mlm_lr, weight_decay=0.01)
            self.model.train()
            order: list[int] = []
            while time.monotonic() - t0 < budget * cfg.mlm_share and log.mlm_steps < cfg.max_steps:
                if not order:
                    order = list(range(len(texts)))
                    rng.shuffle(order)
                idx, order = order[: cfg.batch_size], order[cfg.batch_size :]
                ids, mask = self.tokenizer.batch([texts[i] for i in idx], cfg.max_len)
                inp, labels = _mask(ids, len(self.tokenizer), self.tokenizer.mask, cfg.mask_prob, gen)
                loss = self._mlm_loss(inp, mask, labels)
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
                opt.step()
                log.mlm_steps += 1
                log.mlm_loss.append(float(loss.detach()))
        # 2. contrastive: each anchor's positive is a case whose herb set overlaps it most (Jaccard)
        pos = _positives(herb_sets, cfg.positive_jaccard)
        log.positive_pairs = len(pos)
        anchors = list(pos)
        if anchors:
            enc = self._encoder_module()
            opt = torch.optim.AdamW(enc.parameters(), lr=cfg.contrastive_lr, weight_decay=0.01)
            enc.train()
            order = []
            while time.monotonic() - t0 < budget and log.contrastive_steps < cfg.max_steps:
                if len(order) < cfg.batch_size:
                    order = anchors[:]
                    rng.shuffle(order)
                batch, order = order[: cfg.batch_size], order[cfg.batch_size :]
                partners = [rng.choice(pos[a]) for a in batch]
                ids_a, m_a = self.tokenizer.batch([texts[i] for i in batch], cfg.max_len)
                ids_b, m_b = self.tokenizer.batch([texts[i] for i in partners], cfg.max_len)
                za = torch.nn.functional.normalize(self._pool(ids_a, m_a), dim=-1)
                zb = torch.nn.functional.normalize(self._pool(ids_b, m_b), dim=-1)
                logits = za @ zb.T / cfg.temperature
                # in-batch negatives, except rows whose partner's herbs are as close as the positive's
                sets_a = [herb_sets[i] for i in batch]
                sets_b = [herb_sets[i] for i in partners]
                same = torch.tensor(
                    [[i != j and jaccard(sa, sb) >= cfg.positive_jaccard for j, sb in enumerate(sets_b)]
                     for i, sa in enumerate(sets_a)]
                )  # fmt: skip
                logits = logits.masked_fill(same, -1e4)
                target = torch.arange(len(batch))
                loss = (torch.nn.functional.cross_entropy(logits, target)
                        + torch.nn.functional.cross_entropy(logits.T, target)) / 2  # fmt: skip
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(enc.parameters(), 1.0)
                opt.step()
                log.contrastive_steps += 1
                log.contrastive_loss.append(float(loss.detach()))
        self.model.eval()
        log.seconds = round(time.monotonic() - t0, 1)
        self.log = log
        self.version = self._fingerprint()
        logger.info(
            "trained bert encoder %s: %d MLM + %d contrastive steps (%d anchors) in %.0fs",
            self.version, log.mlm_steps, log.contrastive_steps, len(anchors), log.seconds,
        )  # fmt: skip
        return log

    # ---- persistence -----------------------------------------------------------------------------
    def save(self, directory: Path) -> dict[str, Any]:
        from safetensors.torch import save_file

        enc = self._encoder_module()
        save_file({k: v.contiguous() for k, v in enc.state_dict().items()}, str(directory / "bert.safetensors"))
        (directory / "bert_config.json").write_text(enc.config.to_json_string(), encoding="utf-8")
        (directory / "chars.json").write_text(json.dumps(self.tokenizer.itos, ensure_ascii=False), encoding="utf-8")
        return {"encoder": asdict(self.config), "pretrained": self.pretrained,
                "training": {"mlm_steps": self.log.mlm_steps, "contrastive_steps": self.log.contrastive_steps,
                             "positive_anchors": self.log.positive_pairs, "seconds": self.log.seconds}}  # fmt: skip

    @classmethod
    def load(cls, directory: Path, meta: dict[str, Any]) -> BertEncoder:
        from safetensors.torch import load_file
        from transformers import AutoConfig, AutoModel

        from models.case_classify import CharTokenizer

        c = meta.get("config", {})
        pretrained = c.get("pretrained")
        try:
            conf = BertEncoderConfig.from_dict(c.get("encoder", {}))
            conf_dict = json.loads((directory / "bert_config.json").read_text(encoding="utf-8"))
            model_type = conf_dict.pop("model_type", "bert")
            mc = AutoConfig.for_model(model_type, **conf_dict)
            chars = json.loads((directory / "chars.json").read_text(encoding="utf-8"))
            state = load_file(str(directory / "bert.safetensors"))
        except (OSError, ValueError, InputError) as exc:
            raise ArtifactError(f"{directory}: the bert encoder files are missing or corrupt ({exc})") from exc
        kwargs = {"add_pooling_layer": any(k.startswith("pooler.") for k in state)} if model_type == "bert" else {}
        model = AutoModel.from_config(mc, **kwargs)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ArtifactError(f"{directory}: encoder weights do not match its config (missing {missing[:3]})")
        model.eval()
        tok: Any
        if pretrained:  # the checkpoint's own tokenizer, read again from the user's local folder
            from transformers import AutoTokenizer

            try:
                tok = _HFTokenizer(AutoTokenizer.from_pretrained(pretrained, local_files_only=True))
            except (OSError, ValueError) as exc:
                raise ArtifactError(
                    f"{directory}: the tokenizer of checkpoint {pretrained} cannot be read ({exc})"
                ) from exc
        else:
            tok = CharTokenizer(chars[5:])
        if tok.itos != chars:
            raise ArtifactError(f"{directory}: the saved vocabulary does not match the tokenizer; rebuild the index")
        return cls(model, tok, conf, pretrained=pretrained)


class _HFTokenizer:
    """Adapts a transformers tokenizer to the ``batch(texts, max_len) -> (ids, mask)`` interface."""

    def __init__(self, tok: Any):
        self.tok = tok
        vocab = tok.get_vocab()
        self.itos = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]

    def batch(self, texts: Sequence[str], max_len: int) -> tuple[Any, Any]:
        enc = self.tok(list(texts), padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        return enc["input_ids"], enc["attention_mask"]


def _mask(ids: Any, vocab_size: int, mask_id: int, prob: float, gen: Any) -> tuple[Any, Any]:
    """BERT masking: of the picked non-special tokens, 80 % [MASK], 10 % a random token, 10 % unchanged."""
    import torch

    labels = ids.clone()
    pick = (torch.rand(ids.shape, generator=gen) < prob) & (ids >= 5)  # ids < 5 are the special tokens
    labels[~pick] = -100
    inputs = ids.clone()
    r = torch.rand(ids.shape, generator=gen)
    inputs[pick & (r < 0.8)] = mask_id
    swap = pick & (r >= 0.8) & (r < 0.9)
    inputs[swap] = torch.randint(5, vocab_size, ids.shape, generator=gen)[swap]
    return inputs, labels


def _positives(herb_sets: Sequence[frozenset[str]], threshold: float) -> dict[int, list[int]]:
    """Anchor index -> the other cases whose herb sets overlap it at least ``threshold`` (inverted index)."""
    by_herb: dict[str, list[int]] = {}
    for i, s in enumerate(herb_sets):
        for h in s:
            by_herb.setdefault(h, []).append(i)
    out: dict[int, list[int]] = {}
    for i, s in enumerate(herb_sets):
        if not s:
            continue
        shared: dict[int, int] = {}
        for h in s:
            for j in by_herb[h]:
                if j != i:
                    shared[j] = shared.get(j, 0) + 1
        good = [j for j, n in shared.items() if n / (len(s) + len(herb_sets[j]) - n) >= threshold]
        if good:
            out[i] = good
    return out
