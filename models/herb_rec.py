"""Herb recommendation: a symptom set -> scores over the herb vocabulary (rank them for top-k).

``CooccurrenceRecommender`` is the floor every learned model must beat: score(h) = Σ_s P(h | s) over the
given symptoms, estimated from training co-occurrence counts. ``MLPRecommender`` is a small ensemble of
multi-label networks (summed symptom embeddings -> ReLU layers -> one logit per herb), trained side by side;
their softmax distributions are averaged, optionally blended with the co-occurrence score (epoch and blend
weight are picked on the validation split). The default loss treats every (prescription, herb) pair as one
draw of the softmax, so the output estimates P(h | symptom set), the quantity precision@k ranks by.
Both take and return plain integer ids; names belong to the vocabularies saved beside them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kb.errors import ArtifactError, InputError

logger = logging.getLogger(__name__)

SymptomSets = Sequence[Sequence[int]]


def _multi_hot(rows: SymptomSets, n: int) -> np.ndarray:
    x = np.zeros((len(rows), n), dtype=np.float32)
    for i, r in enumerate(rows):
        for j in r:
            if not 0 <= j < n:
                raise InputError(f"symptom id {j} outside the vocabulary (0..{n - 1})", f"symptoms[{i}]")
            x[i, j] = 1.0
    return x


def _write_vocab(directory: Path, prefix: str, symptoms: Sequence[str], herbs: Sequence[str]) -> None:
    (directory / f"{prefix}vocab.json").write_text(
        json.dumps({"symptoms": list(symptoms), "herbs": list(herbs)}, ensure_ascii=False), encoding="utf-8"
    )


def _read_vocab(directory: Path, prefix: str = "") -> tuple[tuple[str, ...], tuple[str, ...]]:
    v = json.loads((directory / f"{prefix}vocab.json").read_text(encoding="utf-8"))
    return tuple(v["symptoms"]), tuple(v["herbs"])


class CooccurrenceRecommender:
    kind = "cooccurrence"
    task = "herb-rec"

    def __init__(self, symptoms: Sequence[str], herbs: Sequence[str], cond: np.ndarray | None = None):
        self.symptoms, self.herbs = tuple(symptoms), tuple(herbs)
        self.cond = cond if cond is not None else np.zeros((len(symptoms), len(herbs)), np.float32)
        self.prior = np.zeros(len(herbs), np.float32)
        self.card: dict[str, Any] | None = None

    def fit(self, symptom_sets: SymptomSets, herb_sets: SymptomSets) -> CooccurrenceRecommender:
        x = _multi_hot(symptom_sets, len(self.symptoms))
        y = _multi_hot(herb_sets, len(self.herbs))
        counts = x.T @ y
        self.cond = (counts / np.maximum(x.sum(0)[:, None], 1.0)).astype(np.float32)  # P(h | s)
        self.prior = (y.mean(0)).astype(np.float32)
        return self

    def score(self, symptom_sets: SymptomSets) -> np.ndarray:
        x = _multi_hot(symptom_sets, len(self.symptoms))
        return x @ self.cond + 1e-6 * self.prior  # the prior only breaks ties (unseen symptoms)

    def save(self, directory: Path, prefix: str = "") -> dict[str, Any]:
        np.save(directory / f"{prefix}cooccurrence.npy", self.cond, allow_pickle=False)
        np.save(directory / f"{prefix}prior.npy", self.prior, allow_pickle=False)
        _write_vocab(directory, prefix, self.symptoms, self.herbs)
        return {"n_symptoms": len(self.symptoms), "n_herbs": len(self.herbs)}

    @classmethod
    def load(cls, directory: Path, card: dict[str, Any], prefix: str = "") -> CooccurrenceRecommender:
        symptoms, herbs = _read_vocab(directory, prefix)
        cond = np.load(directory / f"{prefix}cooccurrence.npy", allow_pickle=False)
        if cond.shape != (len(symptoms), len(herbs)):
            raise ArtifactError(f"{directory}: co-occurrence matrix {cond.shape} does not match the vocabulary")
        m = cls(symptoms, herbs, cond)
        m.prior = np.load(directory / f"{prefix}prior.npy", allow_pickle=False)
        return m


@dataclass(frozen=True, slots=True)
class MLPConfig:
    """Defaults were picked on seeded 10 % validation splits carved from the SMGCN and TCM-PD train splits
    (loss, members, lr, weight decay, initialisation); the test splits played no part."""

    hidden: int = 256
    layers: int = 2
    dropout: float = 0.3
    lr: float = 2e-3
    weight_decay: float = 0.01
    batch_size: int = 256
    epochs: int = 40
    patience: int = 8
    # "softmax-herb": every (prescription, herb) pair is one draw of a softmax over herbs, so the net estimates
    #     P(h | symptoms) up to a constant (what P@k rewards);
    # "softmax": each prescription's herbs share one unit of target mass (E[1[h ∈ H] / |H|], recall-weighted);
    # "bce": one independent sigmoid per herb.
    loss: str = "softmax-herb"
    members: int = 5  # independently initialised networks trained side by side; their softmaxes are averaged
    blend_grid: tuple[float, ...] = (0.0, 0.1, 0.25, 0.5, 1.0)

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise InputError(f"unknown mlp loss {self.loss!r} (known: {', '.join(LOSSES)})", "config.mlp.loss")
        if self.members < 1 or self.layers < 1 or self.hidden < 1 or self.epochs < 1 or self.batch_size < 1:
            raise InputError("mlp members, layers, hidden, epochs and batch_size must be at least 1", "config.mlp")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MLPConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(
                f"unknown mlp config keys: {', '.join(unknown)} (known: {', '.join(sorted(known))})", "config"
            )
        if "blend_grid" in d:
            d = {**d, "blend_grid": tuple(d["blend_grid"])}
        return cls(**d)


LOSSES = ("softmax-herb", "softmax", "bce")


def _build_net(n_sym: int, n_herb: int, cfg: MLPConfig) -> Any:
    """``cfg.members`` networks (an ``nn.ModuleList``); each: symptom embeddings summed over the set -> ReLU
    layers -> one logit per herb. Inputs are multi-hot rows, so the sum is ``x @ embed.weight``."""
    import torch
    from torch import nn

    class HerbNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(n_sym, cfg.hidden)
            bound = n_sym**-0.5  # as nn.Linear; N(0, 1) (nn.Embedding's default) validated worse
            nn.init.uniform_(self.embed.weight, -bound, bound)
            blocks: list[nn.Module] = []
            for _ in range(cfg.layers - 1):
                blocks += [nn.ReLU(), nn.Dropout(cfg.dropout), nn.Linear(cfg.hidden, cfg.hidden)]
            blocks += [nn.ReLU(), nn.Dropout(cfg.dropout), nn.Linear(cfg.hidden, n_herb)]
            self.head = nn.Sequential(*blocks)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(x @ self.embed.weight)

    return nn.ModuleList([HerbNet() for _ in range(cfg.members)])


def _linear_indexes(cfg: MLPConfig) -> list[int]:
    """Positions of the Linear layers in a member's ``head`` (each after a ReLU and a Dropout)."""
    return [3 * j + 2 for j in range(cfg.layers)]


def _weight_shapes(n_sym: int, n_herb: int, cfg: MLPConfig) -> dict[str, tuple[int, ...]]:
    """The saved tensors of ``_build_net`` and their shapes, known without torch."""
    out: dict[str, tuple[int, ...]] = {}
    for k in range(cfg.members):
        out[f"{k}.embed.weight"] = (n_sym, cfg.hidden)
        idx = _linear_indexes(cfg)
        for i in idx:
            rows = n_herb if i == idx[-1] else cfg.hidden
            out[f"{k}.head.{i}.weight"], out[f"{k}.head.{i}.bias"] = (rows, cfg.hidden), (rows,)
    return out


def _loss(logits: Any, target: Any, kind: str) -> Any:
    import torch

    if kind == "bce":
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    logp = torch.log_softmax(logits, 1)
    if kind == "softmax":
        return -(logp * (target / target.sum(1, keepdim=True))).sum(1).mean()
    return -(logp * target).sum() / target.sum()  # softmax-herb


class MLPRecommender:
    kind = "mlp"
    task = "herb-rec"

    def __init__(self, symptoms: Sequence[str], herbs: Sequence[str], config: MLPConfig | None = None):
        self.symptoms, self.herbs = tuple(symptoms), tuple(herbs)
        self.config = config or MLPConfig()
        self._net: Any = None  # the torch networks, built when training (or asked for)
        self._weights: dict[str, np.ndarray] | None = None  # loaded weights: answering runs them in numpy
        self.cooc = CooccurrenceRecommender(self.symptoms, self.herbs)
        self.blend = 0.0
        self.best_epoch = 0
        self.card: dict[str, Any] | None = None

    @property
    def net(self) -> Any:
        """The members as torch modules; a loaded model builds them from its weights on first use."""
        if self._net is None:
            import torch

            self._net = _build_net(len(self.symptoms), len(self.herbs), self.config)
            if self._weights is not None:
                self._net.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in self._weights.items()})
        return self._net

    @net.setter
    def net(self, value: Any) -> None:
        self._net, self._weights = value, None

    # -- scoring ---------------------------------------------------------------------------------------------
    def member_scores(self, symptom_sets: SymptomSets, batch: int = 4096) -> np.ndarray:
        """Each member's herb distribution: shape (members, len(symptom_sets), n_herbs); rows sum to 1."""
        for i, r in enumerate(symptom_sets):
            if not r:
                raise InputError("a symptom set is empty", f"symptoms[{i}]")
        if self._net is None and self._weights is not None:
            return self._numpy_scores(_multi_hot(symptom_sets, len(self.symptoms)))
        import torch

        x = torch.from_numpy(_multi_hot(symptom_sets, len(self.symptoms)))
        self.net.eval()
        with torch.no_grad():
            outs = [
                np.concatenate([torch.softmax(m(x[b : b + batch]), dim=1).numpy() for b in range(0, len(x), batch)])
                if len(x)
                else np.zeros((0, len(self.herbs)), np.float32)
                for m in self.net
            ]
        return np.stack(outs)

    def _numpy_scores(self, x: np.ndarray) -> np.ndarray:
        """The members' forward pass in numpy (ReLU; dropout is off when answering), as ``member_scores``: a loaded
        model answers without importing torch."""
        assert self._weights is not None
        w, outs = self._weights, []
        for k in range(self.config.members):
            h = x @ w[f"{k}.embed.weight"]
            for i in _linear_indexes(self.config):
                h = np.maximum(h, 0) @ w[f"{k}.head.{i}.weight"].T + w[f"{k}.head.{i}.bias"]
            h = h - h.max(1, keepdims=True)
            e = np.exp(h)
            outs.append(e / e.sum(1, keepdims=True))
        return np.stack(outs) if outs else np.zeros((0, len(x), len(self.herbs)), np.float32)

    def net_scores(self, symptom_sets: SymptomSets) -> np.ndarray:
        """The members' average herb distribution (rows sum to 1)."""
        return self.member_scores(symptom_sets).mean(0)

    def _combine(self, net: np.ndarray, cooc: np.ndarray, blend: float) -> np.ndarray:
        if blend == 0:
            return net
        c = cooc / np.maximum(cooc.sum(1, keepdims=True), 1e-9)
        return (1 - blend) * net + blend * c

    def score(self, symptom_sets: SymptomSets) -> np.ndarray:
        return self._combine(self.net_scores(symptom_sets), self.cooc.score(symptom_sets), self.blend)

    # -- training --------------------------------------------------------------------------------------------
    def fit(
        self,
        symptom_sets: SymptomSets,
        herb_sets: SymptomSets,
        validate: Callable[[np.ndarray], float],
        val_sets: SymptomSets,
        seed: int = 0,
        on_epoch: Callable[[int, float, float], None] | None = None,
        progress: bool = True,
    ) -> MLPRecommender:
        """Train all members on the same batches; after each epoch score ``val_sets`` with their average and
        keep the epoch with the best ``validate(scores)`` (higher is better). Stops after ``patience`` epochs
        without improvement. Then picks the co-occurrence blend weight on the same validation split."""
        import torch
        from tqdm import tqdm

        cfg = self.config
        torch.manual_seed(seed)
        self.net = _build_net(len(self.symptoms), len(self.herbs), cfg)  # seeded initialisation
        rng = np.random.default_rng(seed)
        self.cooc.fit(symptom_sets, herb_sets)
        x = torch.from_numpy(_multi_hot(symptom_sets, len(self.symptoms)))
        y = torch.from_numpy(_multi_hot(herb_sets, len(self.herbs)))
        opt = torch.optim.AdamW(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        best, best_state, stale = -1.0, None, 0
        n = len(symptom_sets)
        for epoch in range(1, cfg.epochs + 1):
            self.net.train()
            perm = torch.from_numpy(rng.permutation(n))
            total = 0.0
            batches = range(0, n, cfg.batch_size)
            for b in tqdm(batches, desc=f"herb-rec mlp epoch {epoch}", leave=False, disable=not progress):
                idx = perm[b : b + cfg.batch_size]
                xb, target = x[idx], y[idx]
                loss = torch.stack([_loss(m(xb), target, cfg.loss) for m in self.net]).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
            metric = validate(self.net_scores(val_sets))
            if on_epoch:
                on_epoch(epoch, total / n, metric)
            if metric > best:
                best, stale, self.best_epoch = metric, 0, epoch
                best_state = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
            else:
                stale += 1
                if stale >= cfg.patience:
                    break
        if best_state is not None:
            self.net.load_state_dict(best_state)
        net_val, cooc_val = self.net_scores(val_sets), self.cooc.score(val_sets)
        results = {w: validate(self._combine(net_val, cooc_val, w)) for w in cfg.blend_grid}
        self.blend = max(results, key=lambda w: (results[w], -w))
        logger.info("best epoch %d; blend weights on validation: %s -> %.2f", self.best_epoch, results, self.blend)
        return self

    # -- persistence -----------------------------------------------------------------------------------------
    def save(self, directory: Path, prefix: str = "") -> dict[str, Any]:
        from safetensors.torch import save_file

        save_file(
            {k: v.contiguous() for k, v in self.net.state_dict().items()},
            str(directory / f"{prefix}mlp.safetensors"),
        )
        self.cooc.save(directory, prefix)
        return {**asdict(self.config), "blend": self.blend, "best_epoch": self.best_epoch,
                "n_symptoms": len(self.symptoms), "n_herbs": len(self.herbs)}  # fmt: skip

    @classmethod
    def load(cls, directory: Path, card: dict[str, Any], prefix: str = "") -> MLPRecommender:
        from safetensors.numpy import load_file

        conf = dict(card["config"])
        blend, best_epoch = float(conf.pop("blend", 0.0)), int(conf.pop("best_epoch", 0))
        conf.pop("n_symptoms", None)
        conf.pop("n_herbs", None)
        conf.setdefault("members", 1)  # cards written before ensembles held one network
        symptoms, herbs = _read_vocab(directory, prefix)
        m = cls(symptoms, herbs, MLPConfig.from_dict(conf))
        state = load_file(str(directory / f"{prefix}mlp.safetensors"))
        if state and not any(k.split(".", 1)[0].isdigit() for k in state):
            state = {f"0.{k}": v for k, v in state.items()}  # a single network saved before ensembles
        want = _weight_shapes(len(symptoms), len(herbs), m.config)
        wrong = sorted(set(want) ^ set(state)) or [k for k in want if tuple(state[k].shape) != want[k]]
        if wrong:
            k = wrong[0]
            got = tuple(state[k].shape) if k in state else "missing"
            raise ArtifactError(
                f"{directory}: weights do not match the config ({k}: {got}, config: {want.get(k, 'none')})"
            )
        m._weights = {k: v.astype(np.float32, copy=False) for k, v in state.items()}
        m.cooc = CooccurrenceRecommender.load(directory, card, prefix)
        m.blend, m.best_epoch = blend, best_epoch
        return m
