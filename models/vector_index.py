"""A faiss vector index over L2-normalised vectors (inner product = cosine), persisted beside its id map.

    flat    exact ``IndexFlatIP``                       up to ``HNSW_FROM`` vectors
    hnsw    approximate ``IndexHNSWFlat`` (inner product) up to ``IVF_FROM`` vectors
    ivf     approximate ``IndexIVFFlat`` (inner product) for very large bases

``kind="auto"`` picks by size. A saved index is a directory: ``index.faiss``, ``ids.json`` and ``index.json``
(kind, dimension, count, search parameters and the encoder's name and version). It is written into a temporary
directory and renamed into place, so a reader never sees half an index. ``VectorIndex.load(dir, encoder=...)``
refuses (``ArtifactError``) an index built by another encoder or encoder version.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kb.errors import ArtifactError, InputError

logger = logging.getLogger(__name__)

FORMAT = "tcm-vector-index/1"
HNSW_FROM = 50_000
IVF_FROM = 500_000
KINDS = ("auto", "flat", "hnsw", "ivf")


def choose_kind(n: int) -> str:
    if n < HNSW_FROM:
        return "flat"
    if n < IVF_FROM:
        return "hnsw"
    return "ivf"


class VectorIndex:
    def __init__(self, dim: int, encoder_name: str, encoder_version: str, kind: str = "flat", **params: Any):
        import faiss

        if kind not in KINDS or kind == "auto":
            raise InputError(f"index kind must be one of flat, hnsw, ivf; got {kind!r}", "kind")
        self.dim, self.kind = int(dim), kind
        self.encoder_name, self.encoder_version = encoder_name, encoder_version
        self.params: dict[str, Any] = dict(params)
        self.ids: list[str] = []
        self.index: Any
        if kind == "flat":
            self.index = faiss.IndexFlatIP(self.dim)
        elif kind == "hnsw":
            m = int(self.params.setdefault("M", 32))
            self.index = faiss.IndexHNSWFlat(self.dim, m, faiss.METRIC_INNER_PRODUCT)
            self.index.hnsw.efConstruction = int(self.params.setdefault("ef_construction", 80))
            self.index.hnsw.efSearch = int(self.params.setdefault("ef_search", 64))
        else:
            nlist = int(self.params.setdefault("nlist", 1024))
            self.quantizer = faiss.IndexFlatIP(self.dim)
            self.index = faiss.IndexIVFFlat(self.quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
            self.index.nprobe = int(self.params.setdefault("nprobe", 32))

    # ---- building --------------------------------------------------------------------------------
    @classmethod
    def build(
        cls, vectors: np.ndarray, ids: Sequence[str], encoder_name: str, encoder_version: str,
        kind: str = "auto", **params: Any,
    ) -> VectorIndex:  # fmt: skip
        x = _as_matrix(vectors)
        k = choose_kind(len(x)) if kind == "auto" else kind
        if k == "ivf" and "nlist" not in params:
            # 4·sqrt(n) lists, nprobe 32: recall@10 0.98 at ~50x the exact speed at 1M on vectors shaped like real
            # case vectors (python -m bench.vectors --like; sqrt(n) lists, nprobe 16 gave 0.94)
            params["nlist"] = max(1, min(4096, int(4 * math.sqrt(max(len(x), 1)))))
        idx = cls(x.shape[1], encoder_name, encoder_version, k, **params)
        idx.add(x, ids)
        return idx

    def add(self, vectors: np.ndarray, ids: Sequence[str]) -> int:
        """Add vectors under ids; ids already in the index are skipped (adding is idempotent). Returns the count added."""
        x = _as_matrix(vectors)
        if x.shape[1] != self.dim:
            raise InputError(f"vectors have dimension {x.shape[1]}, the index {self.dim}", "vectors")
        if len(ids) != len(x):
            raise InputError(f"{len(x)} vectors but {len(ids)} ids", "ids")
        known = set(self.ids)
        keep = []
        for i, cid in enumerate(ids):
            if cid not in known:
                known.add(cid)
                keep.append(i)
        if not keep:
            return 0
        x = x[keep]
        if self.kind == "ivf" and not self.index.is_trained:
            train = x
            cap = int(self.params.get("train_max", 64 * self.index.nlist))
            if len(train) > cap:
                train = x[np.random.default_rng(0).choice(len(x), cap, replace=False)]
            if len(train) < self.index.nlist:
                raise InputError(f"an IVF index with {self.index.nlist} lists needs at least that many vectors")
            self.index.train(train)
        self.index.add(x)
        self.ids.extend(ids[i] for i in keep)
        return len(keep)

    def __len__(self) -> int:
        return len(self.ids)

    # ---- searching -------------------------------------------------------------------------------
    def search(self, query: np.ndarray, k: int = 10) -> list[list[tuple[str, float]]]:
        """For each query row, up to ``k`` (id, cosine similarity) pairs, best first."""
        if len(self.ids) == 0:
            raise ArtifactError("the case index is empty: add cases (`tcm cases build`) before searching")
        if not isinstance(k, int) or k < 1:
            raise InputError(f"k must be a positive integer, got {k!r}", "k")
        q = _as_matrix(query)
        if q.shape[1] != self.dim:
            raise InputError(f"query has dimension {q.shape[1]}, the index {self.dim}", "query")
        scores, rows = self.index.search(q, min(k, len(self.ids)))
        return [
            [(self.ids[r], float(s)) for s, r in zip(srow, rrow, strict=True) if r >= 0]
            for srow, rrow in zip(scores, rows, strict=True)
        ]

    # ---- persistence -----------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "kind": self.kind, "dim": self.dim, "count": len(self.ids), "params": self.params,
            "encoder": {"name": self.encoder_name, "version": self.encoder_version},
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }  # fmt: skip

    def save(self, directory: str | Path) -> Path:
        import faiss

        out = Path(directory)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            faiss.write_index(self.index, str(tmp / "index.faiss"))
            (tmp / "ids.json").write_text(json.dumps(self.ids, ensure_ascii=False), encoding="utf-8")
            (tmp / "index.json").write_text(json.dumps(self.meta(), ensure_ascii=False, indent=2), encoding="utf-8")
            if out.exists():
                old = out.with_name(f".{out.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(out, old)
                os.replace(tmp, out)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        logger.info("saved %s index of %d vectors to %s", self.kind, len(self.ids), out)
        return out

    @classmethod
    def load(cls, directory: str | Path, encoder: Any | None = None) -> VectorIndex:
        """Load a saved index; with ``encoder`` given, refuse one built by another encoder or version."""
        import faiss

        d = Path(directory)
        mf = d / "index.json"
        if not mf.is_file():
            raise ArtifactError(f"{d} is not a vector index (index.json is missing); build one with `tcm cases build`")
        try:
            meta = json.loads(mf.read_text(encoding="utf-8"))
            ids = json.loads((d / "ids.json").read_text(encoding="utf-8"))
            enc = meta["encoder"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(f"{d}: the index metadata or id map is missing or corrupt ({exc}); rebuild it") from exc
        if meta.get("format") != FORMAT:
            raise ArtifactError(f"{mf}: unknown index format {meta.get('format')!r} (this version reads {FORMAT!r})")
        if encoder is not None and (enc.get("name"), enc.get("version")) != (encoder.name, encoder.version):
            raise ArtifactError(
                f"{d} was built with encoder {enc.get('name')} {enc.get('version')}, but the encoder given is "
                f"{encoder.name} {encoder.version}; vectors from different encoders are not comparable: "
                "rebuild the index with this encoder (`tcm cases build`) or use the encoder it was built with"
            )
        try:
            index = faiss.read_index(str(d / "index.faiss"))
        except (RuntimeError, OSError) as exc:
            raise ArtifactError(f"{d}: index.faiss is missing or corrupt ({exc}); rebuild it") from exc
        if index.ntotal != len(ids) or index.d != meta.get("dim"):
            raise ArtifactError(
                f"{d}: index.faiss holds {index.ntotal} vectors of dimension {index.d}, but the id map has "
                f"{len(ids)} ids and the metadata dimension {meta.get('dim')}; rebuild it"
            )
        obj = cls.__new__(cls)
        obj.dim, obj.kind, obj.params = int(meta["dim"]), meta["kind"], dict(meta.get("params", {}))
        obj.encoder_name, obj.encoder_version = enc.get("name"), enc.get("version")
        obj.index, obj.ids = index, list(ids)
        if obj.kind == "hnsw":
            faiss.downcast_index(index).hnsw.efSearch = int(obj.params.get("ef_search", 64))  # type: ignore[attr-defined]
        elif obj.kind == "ivf":
            faiss.extract_index_ivf(index).nprobe = int(obj.params.get("nprobe", 32))
        return obj

    def set_search_params(self, **params: Any) -> None:
        """Change ``ef_search`` (hnsw) or ``nprobe`` (ivf) on a built index; recorded when saved."""
        import faiss

        for key, value in params.items():
            if self.kind == "hnsw" and key == "ef_search":
                faiss.downcast_index(self.index).hnsw.efSearch = int(value)  # type: ignore[attr-defined]
            elif self.kind == "ivf" and key == "nprobe":
                faiss.extract_index_ivf(self.index).nprobe = int(value)
            else:
                raise InputError(f"a {self.kind} index has no search parameter {key!r}", key)
            self.params[key] = int(value)


def _as_matrix(vectors: np.ndarray) -> np.ndarray:
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise InputError(f"vectors must be a 2-D array, got shape {x.shape}", "vectors")
    if not np.isfinite(x).all():
        raise InputError("vectors contain NaN or infinity", "vectors")
    return np.ascontiguousarray(x)
