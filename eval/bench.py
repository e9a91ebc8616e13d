"""Benchmarks (`make bench`): numbers and ratios against a baseline measured in the same run.

    knowledge base   cold load + graph build of the shipped content, in a fresh process; the same for a
                     synthetic 10x copy of it (every entry replicated under new names, references kept)
    name resolution  lookups/s single-threaded on a mixed list (exact, alias, processed, traditional, regional,
                     unknown), uncached and with the memo warm
    safety review    reviews/s in-process for a typical 12-herb prescription, beside a plain dictionary-lookup
                     loop doing the same number of lookups; a 1,000-prescription batch through the `tcm` CLI

Results print as a table and are written to ``artifacts/bench/bench.json``. Timings are medians of repeats.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "artifacts" / "bench"


def _median_time(fn: Callable[[], Any], repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def cold_load(data_dir: Path, repeats: int = 3) -> dict[str, float]:
    """Load + graph build in a fresh process: the first time (parse, validate, compile) and then from the
    compiled cache (median of ``repeats``), each with Python start-up and imports included."""
    code = (
        "import time,sys; t=time.perf_counter(); import kb; b=kb.load(sys.argv[1]); t1=time.perf_counter(); "
        "b.graph; print(t1-t, time.perf_counter()-t)"
    )
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "TCM_CACHE_DIR": cache}
        runs = []
        for _ in range(repeats + 1):
            out = subprocess.run([sys.executable, "-c", code, str(data_dir)], capture_output=True, text=True,
                                 check=True, env=env)  # fmt: skip
            load, total = map(float, out.stdout.split())
            runs.append((load, total))
    return {
        "first_load_s": runs[0][0], "first_total_s": runs[0][1],
        "cached_load_s": statistics.median(r[0] for r in runs[1:]),
        "cached_total_s": statistics.median(r[1] for r in runs[1:]),
    }  # fmt: skip


# ---- a synthetic 10x knowledge base --------------------------------------------------------------------
NAME_KEYS = {
    "name", "aliases", "synonyms", "herb", "remove", "formulas", "key_symptoms", "secondary_symptoms", "tongue",
    "pulse", "contra_symptoms", "when", "a", "b", "members", "unlike", "opposite", "broader", "pinyin", "latin",
    "original", "substitute", "except_formulas",
}  # fmt: skip
ID_KEYS = {"id", "replaces", "replaced_by"}  # an entry's id and the ids it names: suffixed in each copy


def _protected() -> set[str]:
    """Characters name resolution gives a meaning to (prefixes, suffixes, variants): kept as they are."""
    from kb import names

    chars = set("".join(p for p, _ in names.PROCESSING_PREFIXES)) | set("".join(names.REGIONAL_PREFIXES))
    chars |= set("".join(names.QUALITY_PREFIXES)) | set("".join(s for s, _ in names.PROCESSING_SUFFIXES))
    chars |= set("".join(names.PART_SUFFIXES)) | set("舌质体苔脉象证加减化裁味·")
    return chars


class _Cipher:
    """Copy k of the content: every other CJK character replaced, one to one, by a character the content never
    uses (and that normalisation leaves alone), so names stay unique and every derivation rule still applies."""

    def __init__(self, used: set[str], copies: int):
        import unicodedata

        from kb.normalize import t2s_table

        table = t2s_table()
        folded = set(table.values())
        keep = _protected()
        self.movable = sorted(c for c in used if c not in keep)
        pool = [chr(i) for i in [*range(0x4E00, 0xA000), *range(0x3400, 0x4DC0), *range(0x20000, 0x2A6E0)]
                if chr(i) not in used and i not in table and chr(i) not in folded
                and unicodedata.is_normalized("NFKC", chr(i))]  # fmt: skip
        n = len(self.movable)
        if n * (copies - 1) > len(pool):
            raise RuntimeError("not enough unused characters for the synthetic copies")
        self.maps = [{} if k == 0 else {ord(c): pool[(k - 1) * n + i] for i, c in enumerate(self.movable)}
                     for k in range(copies)]  # fmt: skip
        # a name made only of meaningful characters (生姜, 煨姜) gets one marker character so it stays unique
        self.markers = pool[(copies - 1) * n : (copies - 1) * n + copies]

    @staticmethod
    def _ids(v: Any, k: int) -> Any:
        if isinstance(v, list):
            return [f"{x}-x{k}" for x in v]
        return f"{v}-x{k}" if isinstance(v, str) else v

    def apply(self, obj: Any, k: int, key: str | None = None) -> Any:
        if isinstance(obj, list):
            return [self.apply(x, k, key) for x in obj]
        if isinstance(obj, dict):
            return {kk: (self._ids(v, k) if kk in ID_KEYS else self.apply(v, k, kk)) for kk, v in obj.items()}
        if isinstance(obj, str) and key in NAME_KEYS and k:
            if key in ("pinyin", "latin"):
                return f"{obj} {k}"
            out = obj.translate(self.maps[k])
            return out if out != obj else out + self.markers[k]
        return obj


def synthetic_copy(src: Path, dst: Path, factor: int = 10) -> dict[str, int]:
    """Write a knowledge base ``factor`` times the size of ``src`` into ``dst``."""
    from kb.loader import content_files, kind_of, read_yaml

    files = [(p, kind_of(p), read_yaml(p)) for p in content_files(src)]
    used: set[str] = set()

    def collect(obj: Any) -> None:
        if isinstance(obj, str):
            used.update(ch for ch in obj if ord(ch) > 0x2E80)
        elif isinstance(obj, list):
            for x in obj:
                collect(x)
        elif isinstance(obj, dict):
            for x in obj.values():
                collect(x)

    for _, _, data in files:
        collect(data)
    cipher = _Cipher(used, factor)
    counts: dict[str, int] = {}
    for path, kind, data in files:
        target = dst / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        if kind in ("sources", "release"):
            out: Any = data
        elif kind == "rules":
            out = {
                "ruleset": data["ruleset"],
                "rules": [cipher.apply(r, k) for k in range(factor) for r in data["rules"]],
            }
        else:
            out = [cipher.apply(e, k) for k in range(factor) for e in data or []]
            counts[kind] = counts.get(kind, 0) + len(out)
        target.write_text(yaml.safe_dump(out, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return counts


# ---- name resolution -------------------------------------------------------------------------------------
def mixed_names(base: Any, n: int = 20_000) -> list[str]:
    from kb.normalize import t2s_table

    rev = {v: chr(k) for k, v in t2s_table().items()}  # simplified -> one traditional form
    pool: list[str] = []
    for h in base.herbs.values():
        pool.append(h.name)
        pool += list(h.aliases[:1])
        pool.append("炒" + h.name)  # processed, often derived
        pool.append("".join(rev.get(ch, ch) for ch in h.name))  # traditional
        pool.append(" " + h.name + " ")  # stray whitespace
    for f in base.forms.values():
        pool.append(f.name)
    pool += ["怀山药", "杭白芍", "川黄连", "不存在的药", "甘早", "广防己"]
    return [pool[i % len(pool)] for i in range(n)]


def bench_names(base: Any) -> dict[str, Any]:
    from kb.names import NameIndex

    names = mixed_names(base)
    idx: NameIndex = base.names

    def uncached() -> None:
        for s in names:
            idx._lookup(s, "herb")

    def cached() -> None:
        for s in names:
            idx.lookup(s, "herb")

    cached()  # warm the memo
    t_un = _median_time(uncached, 3)
    t_ca = _median_time(cached, 5)
    unresolved = sum(1 for s in set(names) if not idx.lookup(s, "herb").resolved)
    return {
        "lookups": len(names), "distinct": len(set(names)), "unresolved_distinct": unresolved,
        "uncached_per_s": len(names) / t_un, "cached_per_s": len(names) / t_ca,
    }  # fmt: skip


# ---- safety review ---------------------------------------------------------------------------------------
TYPICAL = [("黄芪", "30g"), ("党参", "15g"), ("炒白术", "12g"), ("茯苓", "15g"), ("当归", "10g"), ("川芎", "9g"),
           ("白芍", "12g"), ("熟地黄", "15g"), ("陈皮", "6g"), ("法半夏", "9g"), ("大枣", "3枚"), ("炙甘草", "6g")]  # fmt: skip


def typical_rx() -> dict[str, Any]:
    return {"patient": {"pregnant": False, "sex": "female", "age_years": 45},
            "items": [{"herb": h, "dose": d} for h, d in TYPICAL], "days": 7, "setting": "outpatient"}  # fmt: skip


def bench_review(base: Any, n: int = 5000) -> dict[str, Any]:
    from cds import parse, review

    rx = typical_rx()
    parsed = parse(rx)
    review(parsed, base)

    def run_reviews() -> None:
        for _ in range(n):
            review(rx, base)

    table = {h: i for i, (h, _) in enumerate(TYPICAL)}
    keys = [h for h, _ in TYPICAL]

    def run_dict() -> None:  # the machine's baseline: the same number of plain dict lookups per "review"
        for _ in range(n):
            for k in keys:
                table.get(k)

    t_rev = _median_time(run_reviews, 3)
    t_dict = _median_time(run_dict, 3)
    findings = review(rx, base).summary
    return {
        "reviews": n, "herbs_per_review": len(TYPICAL), "reviews_per_s": n / t_rev,
        "dict_lookup_loops_per_s": n / t_dict, "review_cost_vs_dict_loop": t_rev / t_dict, "findings": findings,
    }  # fmt: skip


def bench_clinical(base: Any, n: int = 120, models: Any = None) -> dict[str, Any]:
    """Latency of differentiate + suggest in-process on the development vignettes (p50/p99 over n requests), with
    the knowledge base alone and, when ``models`` (``cds.learned.Models``) has any, with them too."""
    from cds.differentiate import differentiate
    from cds.suggest import suggest
    from eval.syndromes import load_vignettes, request

    rows = load_vignettes()[:n]
    reqs = [request(r, patient={"pregnant": False, "sex": "female", "age_years": 40}) for r in rows]

    def measure(ms: Any) -> dict[str, Any]:
        differentiate(reqs[0], base, models=ms)  # build the per-knowledge-base indexes once, as a service has
        suggest(reqs[0], base, models=ms)
        times = []
        for req in reqs:
            t = time.perf_counter()
            differentiate(req, base, models=ms)
            suggest(req, base, models=ms)
            times.append((time.perf_counter() - t) * 1000)
        times.sort()
        return {"requests": len(times), "p50_ms": times[len(times) // 2],
                "p99_ms": times[min(len(times) - 1, int(len(times) * 0.99))]}  # fmt: skip

    out = measure(None)
    if models is not None and models.names:
        out["with_models"] = {**measure(models), "models": models.names}
    return out


def bench_cli_batch(n: int = 1000) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "batch.jsonl"
        path.write_text(
            "".join(json.dumps(typical_rx(), ensure_ascii=False) + "\n" for _ in range(n)), encoding="utf-8"
        )
        tcm = str(Path(sys.executable).with_name("tcm"))
        t = time.perf_counter()
        out = subprocess.run([tcm, "check", str(path), "--json"], capture_output=True, text=True, check=True)
        wall = time.perf_counter() - t
        lines = sum(1 for ln in out.stdout.splitlines() if ln.strip())
        t = time.perf_counter()
        subprocess.run([tcm, "kb", "stats", "--json"], capture_output=True, text=True, check=True)
        startup = time.perf_counter() - t
    return {"prescriptions": n, "answered": lines, "wall_s": wall, "per_s": n / wall, "cli_startup_s": startup}


def bench_curation(data_dir: Path, rounds: int = 5) -> dict[str, Any]:
    """Validate and release a one-edit change request against the full knowledge base (scratch database and
    cache). Baseline in the same run: loading the knowledge base from its files without any cache."""
    import statistics

    from sqlalchemy import create_engine

    import kb
    from kb.curation import Curation

    herbs = ["gancao", "huangqi", "dangshen", "baizhu", "fuling", "danggui", "chuanxiong", "baishao"]
    old_cache = os.environ.get("TCM_CACHE_DIR")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TCM_CACHE_DIR"] = str(Path(tmp) / "cache")
        try:
            t = time.perf_counter()
            kb.load(data_dir, cache=False)
            baseline = time.perf_counter() - t
            c = Curation(create_engine(f"sqlite:///{tmp}/bench.db"), seed_dir=data_dir)
            timings: dict[str, list[float]] = {"propose_validate_s": [], "approve_validate_s": [], "release_s": []}
            first: dict[str, float] = {}
            for i in range(rounds + 1):
                ident = herbs[i % len(herbs)]
                ent = c.entity("herb", ident)
                lo, hi = ent["data"].get("dose_g") or [3, 10]
                body = {"title": f"bench {i}", "reason": "bench", "source": {"work": "bench"}, "edits": [
                    {"op": "update", "kind": "herb", "id": ident, "base_etag": ent["etag"], "data": {"dose_g": [lo, hi + 1]}}]}  # fmt: skip
                t0 = time.perf_counter()
                cr = c.propose("bench-curator", body)
                t1 = time.perf_counter()
                c.review(cr["id"], "bench-reviewer", "approve", None)
                t2 = time.perf_counter()
                c.release("bench-reviewer")
                t3 = time.perf_counter()
                step = {"propose_validate_s": t1 - t0, "approve_validate_s": t2 - t1, "release_s": t3 - t2}
                if i == 0:
                    first = step  # caches cold: the first curation call of a process
                    continue
                for k, v in step.items():
                    timings[k].append(v)
            c.wait_compiled()
        finally:
            if old_cache is None:
                os.environ.pop("TCM_CACHE_DIR", None)
            else:
                os.environ["TCM_CACHE_DIR"] = old_cache
    med = {k: statistics.median(v) for k, v in timings.items()}
    total = med["propose_validate_s"] + med["release_s"]
    return {
        "rounds": rounds,
        **med,
        "validate_and_release_s": total,
        "validate_approve_release_s": total + med["approve_validate_s"],
        "first_call": first,
        "baseline_load_uncached_s": baseline,
        "ratio_to_uncached_load": total / baseline,
    }


def main() -> int:
    import kb

    results: dict[str, Any] = {"python": sys.version.split()[0], "cpus": os.cpu_count()}
    data_dir = kb.base.default_data_dir()
    base = kb.load(data_dir)
    results["kb_version"] = str(base.version)
    results["kb_counts"] = base.stats()["counts"]
    results["kb_cold_load_s"] = cold_load(data_dir)
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "kb10x"
        synthetic_copy(data_dir, big, 10)
        results["kb10x_counts"] = kb.load(big).stats()["counts"]
        results["kb10x_cold_load_s"] = cold_load(big)
    results["names"] = bench_names(base)
    results["review"] = bench_review(base)
    from cds import learned

    models_dir = learned.models_dir_from_env()
    results["clinical"] = bench_clinical(base, models=learned.load(models_dir) if models_dir else None)
    results["cli_batch"] = bench_cli_batch()
    results["curation"] = bench_curation(data_dir)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "bench.json").write_text(json.dumps(results, ensure_ascii=False, indent=2), encoding="utf-8")
    n, r, c = results["names"], results["review"], results["cli_batch"]
    k1, k10 = results["kb_cold_load_s"], results["kb10x_cold_load_s"]
    rows = [
        ("kb cold start, compiled (load+graph)", f"{k1['cached_total_s']:.3f} s", f"load alone {k1['cached_load_s']:.3f} s; target < 1 s"),
        ("kb first load: parse+validate+compile", f"{k1['first_total_s']:.3f} s", f"load alone {k1['first_load_s']:.3f} s"),
        ("10x kb cold start, compiled", f"{k10['cached_total_s']:.3f} s", f"load alone {k10['cached_load_s']:.3f} s; target < 3 s"),
        ("10x kb first load", f"{k10['first_total_s']:.3f} s", f"load alone {k10['first_load_s']:.3f} s"),
        ("name resolution, uncached", f"{n['uncached_per_s']:,.0f} lookups/s", "target ≥ 100,000/s"),
        ("name resolution, memo warm", f"{n['cached_per_s']:,.0f} lookups/s", ""),
        ("safety review, 12 herbs, in-process", f"{r['reviews_per_s']:,.0f} reviews/s", "target ≥ 20,000/s"),
        ("dict-lookup loop, same lookups", f"{r['dict_lookup_loops_per_s']:,.0f} loops/s",
         f"review costs {r['review_cost_vs_dict_loop']:.0f}x the loop"),
        ("differentiate + suggest, p50 / p99", f"{results['clinical']['p50_ms']:.1f} / {results['clinical']['p99_ms']:.1f} ms",
         "target p50 ≤ 50 ms; the knowledge base alone"),
        *([("  with models and case base", f"{cm['p50_ms']:.1f} / {cm['p99_ms']:.1f} ms", ", ".join(cm["models"]))]
          if (cm := results["clinical"].get("with_models")) else []),
        ("CLI batch of 1,000 (incl. start-up)", f"{c['per_s']:,.0f} reviews/s", f"start-up {c['cli_startup_s']:.2f} s"),
        ("curation: validate + release, 1 edit", f"{results['curation']['validate_and_release_s']:.2f} s",
         f"target < 2 s; {results['curation']['ratio_to_uncached_load']:.2f}x an uncached kb load "
         f"({results['curation']['baseline_load_uncached_s']:.2f} s); with approval's re-validation "
         f"{results['curation']['validate_approve_release_s']:.2f} s"),
    ]  # fmt: skip
    print(f"knowledge base {results['kb_version']}: {results['kb_counts']}")
    for name, value, note in rows:
        print(f"{name:<40} {value:>22}   {note}")
    print(f"written to {OUT / 'bench.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
