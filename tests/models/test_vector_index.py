"""The faiss vector index: persistence, encoder checks, empty bases, bad queries, idempotent adds, kinds."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from kb.errors import ArtifactError, InputError
from models.vector_index import HNSW_FROM, IVF_FROM, VectorIndex, choose_kind


def unit(n: int, d: int = 16, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def ids(n: int) -> list[str]:
    return [f"case-{i:04d}" for i in range(n)]


ENC = SimpleNamespace(name="tfidf", version="tfidf-aaaa")


def test_exact_search_finds_the_vector_itself() -> None:
    x = unit(50)
    idx = VectorIndex.build(x, ids(50), ENC.name, ENC.version)
    assert idx.kind == "flat"
    hits = idx.search(x[7], k=3)[0]
    assert hits[0][0] == "case-0007" and hits[0][1] == pytest.approx(1.0, abs=1e-5)
    assert len(hits) == 3 and hits[0][1] >= hits[1][1] >= hits[2][1]
    assert len(idx.search(x[:2], k=500)[0]) == 50  # k larger than the base: everything, once


def test_persistence_and_reload_give_the_same_answers(tmp_path: Path) -> None:
    x = unit(40)
    idx = VectorIndex.build(x, ids(40), ENC.name, ENC.version)
    idx.save(tmp_path / "index")
    again = VectorIndex.load(tmp_path / "index", encoder=ENC)
    assert again.ids == idx.ids and again.kind == "flat"
    assert again.search(x[:5], 4) == idx.search(x[:5], 4)
    idx.save(tmp_path / "index")  # overwrite in place (atomic replace)
    assert not list(tmp_path.glob(".index*"))


def test_an_index_refuses_another_encoder(tmp_path: Path) -> None:
    VectorIndex.build(unit(10), ids(10), ENC.name, ENC.version).save(tmp_path / "index")
    other = SimpleNamespace(name="tfidf", version="tfidf-bbbb")
    with pytest.raises(ArtifactError, match=r"built with encoder tfidf tfidf-aaaa.*tfidf-bbbb.*rebuild the index"):
        VectorIndex.load(tmp_path / "index", encoder=other)
    with pytest.raises(ArtifactError, match="built with encoder tfidf"):
        VectorIndex.load(tmp_path / "index", encoder=SimpleNamespace(name="bert", version="tfidf-aaaa"))


def test_missing_and_corrupt_indexes_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"index\.json is missing"):
        VectorIndex.load(tmp_path)
    VectorIndex.build(unit(10), ids(10), ENC.name, ENC.version).save(tmp_path / "index")
    (tmp_path / "index" / "ids.json").write_text('["only-one"]', encoding="utf-8")
    with pytest.raises(ArtifactError, match="id map has 1 ids"):
        VectorIndex.load(tmp_path / "index")


def test_empty_index_and_bad_queries() -> None:
    idx = VectorIndex(16, ENC.name, ENC.version)
    with pytest.raises(ArtifactError, match="the case index is empty"):
        idx.search(unit(1), 5)
    idx.add(unit(5), ids(5))
    with pytest.raises(InputError, match="k must be a positive integer"):
        idx.search(unit(1), 0)
    with pytest.raises(InputError, match="dimension 8, the index 16"):
        idx.search(unit(1, d=8), 3)
    with pytest.raises(InputError, match="NaN"):
        idx.search(np.full((1, 16), np.nan, np.float32), 3)
    with pytest.raises(InputError, match="kind must be one of"):
        VectorIndex(16, ENC.name, ENC.version, kind="lsh")


def test_adding_the_same_ids_again_is_a_no_op() -> None:
    x = unit(20)
    idx = VectorIndex.build(x, ids(20), ENC.name, ENC.version)
    assert idx.add(x, ids(20)) == 0 and len(idx) == 20 and idx.index.ntotal == 20
    assert idx.add(unit(3, seed=1), ["new-1", "new-2", "new-1"]) == 2 and len(idx) == 22


@pytest.mark.parametrize(("kind", "params"), [("hnsw", {}), ("ivf", {"nlist": 8, "nprobe": 8})])
def test_approximate_kinds_search_and_persist(kind: str, params: dict, tmp_path: Path) -> None:
    x = unit(600)
    idx = VectorIndex.build(x, ids(600), ENC.name, ENC.version, kind=kind, **params)
    assert idx.kind == kind
    assert idx.search(x[3], 1)[0][0][0] == "case-0003"
    idx.save(tmp_path / kind)
    again = VectorIndex.load(tmp_path / kind, encoder=ENC)
    assert again.kind == kind and again.search(x[:10], 5) == idx.search(x[:10], 5)
    key = "ef_search" if kind == "hnsw" else "nprobe"
    again.set_search_params(**{key: 4})
    assert again.params[key] == 4


def test_kind_is_chosen_by_size() -> None:
    assert choose_kind(10) == "flat"
    assert choose_kind(HNSW_FROM) == "hnsw"
    assert choose_kind(IVF_FROM) == "ivf"
