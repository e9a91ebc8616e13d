"""Vector index benchmark: exact vs approximate faiss search at 10k, 100k and 1M vectors, same run.

Synthetic vectors at the encoder dimension (128): a mixture of Gaussian clusters, L2-normalised (embeddings of
real texts are clustered; i.i.d. noise would be the worst case for any approximate index and unlike them).
Queries are fresh draws from the same mixture. For each size: the index kind ``auto`` picks (flat, hnsw,
ivf), its build time, its memory (serialised size; RSS growth), single-query latency p50/p99 of the exact
flat index and of the approximate one, the speed-up, and recall@10 of the approximate index against exact.
Target at 1M: recall@10 >= 0.95 at >= 20x the exact speed.

With ``--like DIR`` (a built case base) the vectors follow the real encoder instead. The real cases are split in
two: queries (``--queries`` of them, never used to generate) and anchors. ``--like-mode anchored`` (default): each
vector is an anchor plus isotropic noise as large as the median distance between a real case and its nearest
other case (the local structure of real cases, repeated at scale). ``--like-mode gaussian``: draws from a Gaussian
with the anchors' mean and covariance (their spectrum and nothing else: no case has near neighbours, the worst
case for any approximate index, and unlike a real case base). Either way the queries are real cases.

Also (``--casebase DIR``): the end-to-end similar-case query on a built case base (encode + search +
hydrate from SQLite), p50/p99 over the stored cases' own findings as queries.

    .venv/bin/python -m bench.vectors [--sizes 10000,100000,1000000] [--dim 128] [--queries 200]
                                      [--like artifacts/cases] [--casebase artifacts/cases] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def mixture(n: int, dim: int, centres: np.ndarray, rng: np.random.Generator, spread: float = 0.35) -> np.ndarray:
    out = np.empty((n, dim), np.float32)
    for b in range(0, n, 100_000):
        m = min(100_000, n - b)
        pick = rng.integers(0, len(centres), m)
        x = centres[pick] + spread * rng.standard_normal((m, dim), dtype=np.float32) / np.sqrt(dim)
        out[b : b + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def real_like(n: int, anchors: np.ndarray, rng: np.random.Generator, mode: str = "anchored") -> np.ndarray:
    """``n`` L2-normalised vectors like ``anchors`` (rows): anchored (an anchor plus noise at the anchors' median
    nearest-neighbour distance) or gaussian (their mean and covariance)."""
    import faiss

    dim = anchors.shape[1]
    if mode == "anchored":
        flat = faiss.IndexFlatIP(dim)
        flat.add(anchors)
        sims, _ = flat.search(anchors, 2)
        scale = float(np.median(np.sqrt(np.maximum(0.0, 2.0 - 2.0 * sims[:, 1]))))
    else:
        mu = anchors.mean(0)
        chol = np.linalg.cholesky(np.cov(anchors, rowvar=False) + 1e-6 * np.eye(dim))
    out = np.empty((n, dim), np.float32)
    for b in range(0, n, 100_000):
        m = min(100_000, n - b)
        if mode == "anchored":
            noise = rng.standard_normal((m, dim)).astype(np.float32)
            noise *= scale / np.linalg.norm(noise, axis=1, keepdims=True)
            x = anchors[rng.integers(0, len(anchors), m)] + noise
        else:
            x = mu + rng.standard_normal((m, dim)) @ chol.T
        out[b : b + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def case_vectors(directory: str) -> np.ndarray:
    """The stored cases' findings, encoded by the case base's own encoder."""
    from models.casebase import CaseBase

    cb = CaseBase.open(directory)
    try:
        return np.asarray(cb.encoder.encode([c.findings for c in cb.store.cases()]), dtype=np.float32)
    finally:
        cb.close()


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def latencies(index: Any, q: np.ndarray, k: int) -> tuple[np.ndarray, list[float]]:
    out, times = [], []
    for row in q:
        t0 = time.perf_counter()
        _, ids = index.search(row[None, :], k)
        times.append((time.perf_counter() - t0) * 1000)
        out.append(ids[0])
    return np.array(out), times


def bench_size(
    n: int, dim: int, nq: int, k: int, seed: int, build_threads: int = 2, query_threads: int = 1, spread: float = 0.35,
    like: np.ndarray | None = None, like_mode: str = "anchored",
) -> dict[str, Any]:  # fmt: skip
    import faiss

    from models.vector_index import VectorIndex, choose_kind

    rng = np.random.default_rng(seed)
    if like is not None:
        dim = like.shape[1]
        order = rng.permutation(len(like))
        q, anchors = like[order[:nq]], like[order[nq:]]
        x = real_like(n, anchors, rng, like_mode)
    else:
        centres = rng.standard_normal((max(100, n // 1000), dim), dtype=np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        x = mixture(n, dim, centres, rng, spread)
        q = mixture(nq, dim, centres, rng, spread)
    ids = [str(i) for i in range(n)]
    kind = choose_kind(n)
    rss0 = rss_mb()
    faiss.omp_set_num_threads(build_threads)
    t0 = time.perf_counter()
    approx = VectorIndex.build(x, ids, "bench", "synthetic", kind=kind)
    build_s = time.perf_counter() - t0
    faiss.omp_set_num_threads(query_threads)
    mem_mb = len(faiss.serialize_index(approx.index)) / 2**20
    exact = faiss.IndexFlatIP(dim)
    t0 = time.perf_counter()
    exact.add(x)
    exact_build_s = time.perf_counter() - t0
    truth, t_exact = latencies(exact, q, k)
    dist = f"real-like, {like_mode}" if like is not None else f"mixture (spread {spread})"
    row: dict[str, Any] = {"n": n, "dim": dim, "kind": kind, "vectors": dist, "params": dict(approx.params),
                           "build_s": round(build_s, 2), "exact_build_s": round(exact_build_s, 2),
                           "index_mb": round(mem_mb, 1), "rss_growth_mb": round(rss_mb() - rss0, 1),
                           "exact_p50_ms": round(float(np.percentile(t_exact, 50)), 3),
                           "exact_p99_ms": round(float(np.percentile(t_exact, 99)), 3)}  # fmt: skip
    if kind == "flat":
        row.update(p50_ms=row["exact_p50_ms"], p99_ms=row["exact_p99_ms"], recall_at_10=1.0, speedup=1.0)
        return row
    got, t_approx = latencies(approx.index, q, k)
    recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(got, truth, strict=True)]))
    p50 = float(np.percentile(t_approx, 50))
    row.update(p50_ms=round(p50, 3), p99_ms=round(float(np.percentile(t_approx, 99)), 3),
               recall_at_10=round(recall, 4), speedup=round(row["exact_p50_ms"] / p50, 1))  # fmt: skip
    return row


def bench_casebase(directory: str, nq: int) -> dict[str, Any]:
    from models.casebase import CaseBase

    cb = CaseBase.open(directory)
    try:
        texts = [c.findings for c in cb.store.cases()][:nq]
        cb.similar(texts[0], 10)  # warm
        times = []
        for t in texts:
            t0 = time.perf_counter()
            cb.similar(t, 10)
            times.append((time.perf_counter() - t0) * 1000)
        return {"casebase": directory, "cases": len(cb.index), "encoder": cb.encoder.version,
                "index": cb.index.kind, "queries": len(times),
                "p50_ms": round(float(np.percentile(times, 50)), 2),
                "p99_ms": round(float(np.percentile(times, 99)), 2)}  # fmt: skip
    finally:
        cb.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.vectors", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--threads", type=int, default=1, help="faiss threads for queries (1: single-query latency)")
    p.add_argument("--build-threads", type=int, default=2, help="faiss threads for building")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--spread", type=float, default=0.35, help="cluster noise norm (larger = clusters overlap more)")
    p.add_argument("--like", help="a built case base: draw the vectors from its encoder's distribution (see above)")
    p.add_argument("--like-mode", choices=("anchored", "gaussian"), default="anchored")
    p.add_argument("--casebase", help="a built case base directory for the end-to-end query timing")
    p.add_argument("--json", help="write the results here as JSON")
    a = p.parse_args(argv)
    import faiss

    faiss.omp_set_num_threads(a.threads)
    like = case_vectors(a.like) if a.like else None
    if like is not None:
        print(f"vectors: {a.like_mode}, from the {len(like)} case vectors of {a.like}; {a.queries} of them held out "
              "as the queries")  # fmt: skip
    rows = []
    head = f"{'n':>9} {'kind':>5} {'build s':>8} {'MB':>7} {'exact p50':>10} {'p50 ms':>8} {'p99 ms':>8} {'recall@10':>9} {'speed-up':>8}"
    print(head)
    for n in (int(s) for s in a.sizes.split(",")):
        r = bench_size(n, a.dim, a.queries, a.k, a.seed, a.build_threads, a.threads, a.spread, like, a.like_mode)
        rows.append(r)
        print(f"{r['n']:>9} {r['kind']:>5} {r['build_s']:>8} {r['index_mb']:>7} {r['exact_p50_ms']:>10} "
              f"{r['p50_ms']:>8} {r['p99_ms']:>8} {r['recall_at_10']:>9} {r['speedup']:>7}x", flush=True)  # fmt: skip
    result: dict[str, Any] = {"sizes": rows, "query_threads": a.threads, "build_threads": a.build_threads,
                              "vectors": f"real-like, {a.like_mode} ({a.like})" if a.like else f"mixture (spread {a.spread})"}  # fmt: skip
    if a.casebase:
        e2e = bench_casebase(a.casebase, a.queries)
        result["end_to_end"] = e2e
        print(f"end-to-end similar-case query ({e2e['cases']} cases, {e2e['encoder']}, {e2e['index']}): "
              f"p50 {e2e['p50_ms']} ms, p99 {e2e['p99_ms']} ms")  # fmt: skip
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
