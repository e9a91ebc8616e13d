"""Syndrome differentiation and suggestion on the development vignettes (`eval/vignettes/*.jsonl`).

The vignettes are the project's own, written from textbook knowledge in the style of clinic notes (paraphrased,
noisy, incomplete). They are split by a hash of their id into a *tuning* half, on which the differentiation
parameters (``cds/params.json``) are fitted, and a *report* half that is only scored. Reported:

    top-1 / top-3 accuracy without the disease, and with the disease given (a syndrome counts only with its disease)
    top-1 among 10 candidates (the true syndrome and 9 others: its siblings first, then its discipline; seeded)
    safety: suggestions carrying a critical finding, over every vignette with the patient pregnant and not (must be 0)

With learned models (``--models DIR``, default ``$TCM_MODELS_DIR`` or ``artifacts/`` when present; see
``cds.learned``) both halves are scored with them, and the report half also with the knowledge base alone. The
safety count then covers the model- and case-based herbs offered beside each prescription too.

``python -m eval.syndromes [--fit] [--json] [--models DIR | --no-models]``; ``--fit`` refits the parameters on the
tuning half and writes them (the department prior's weight by log-loss, when the models include one).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

import kb as kbmod
from cds import differentiate as dmod
from cds.suggest import suggest

VIGNETTES = Path(__file__).resolve().parent / "vignettes"


def load_vignettes(folder: Path = VIGNETTES) -> list[dict[str, Any]]:
    rows = []
    for path in sorted(folder.glob("*.jsonl")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                row = json.loads(line)
                row["_where"] = f"{path.name}:{n}"
                rows.append(row)
    return rows


def split_of(row: dict[str, Any]) -> str:
    h = int(hashlib.sha256(row["id"].encode()).hexdigest(), 16)
    return "tune" if h % 2 == 0 else "report"


def gold_ids(base: kbmod.KnowledgeBase, row: dict[str, Any]) -> set[str]:
    """Syndrome ids matching the vignette's disease and syndrome names (a name may recur across disciplines)."""
    out = set()
    for d in base.diseases.values():
        if d.name == row["disease"] and (not row.get("discipline") or d.discipline == row["discipline"]):
            out |= {s for s in d.syndrome_ids if base.syndromes[s].name == row["syndrome"]}
    return out


def request(row: dict[str, Any], **extra: Any) -> dict[str, Any]:
    req: dict[str, Any] = {}
    if row.get("text"):
        req["text"] = row["text"]
    if row.get("symptoms"):
        req["symptoms"] = row["symptoms"]
    return {**req, **extra}


def candidates_for(base: kbmod.KnowledgeBase, gold: str, rng: random.Random, n: int = 10) -> list[str]:
    sy = base.syndromes[gold]
    disease = base.diseases[sy.disease_id]
    siblings = [s for s in disease.syndrome_ids if s != gold]
    same_disc = [s for s, x in base.syndromes.items() if base.diseases[x.disease_id].discipline == disease.discipline
                 and s != gold and s not in siblings]  # fmt: skip
    rng.shuffle(siblings)
    rng.shuffle(same_disc)
    others = (siblings + same_disc)[: n - 1]
    names = [base.syndromes[s].name for s in [gold, *others]]
    rng.shuffle(names)
    return names


def evaluate(
    base: kbmod.KnowledgeBase, rows: list[dict[str, Any]], seed: int = 13, models: Any = None
) -> dict[str, Any]:
    rng = random.Random(seed)
    n = top1 = top3 = top1_d = top3_d = cand1 = 0
    by_kind = {"symptom_list": [0, 0, 0, 0], "narrative": [0, 0, 0, 0]}  # n, top-1, top-3, top-1 of 10 candidates
    nll = 0.0
    skipped = []
    for row in rows:
        kind = by_kind["symptom_list" if row.get("symptoms") else "narrative"]
        gold = gold_ids(base, row)
        if not gold:
            skipped.append(row["id"])
            continue
        try:
            free = dmod.differentiate(request(row, top_k=10), base, models=models)
            given = dmod.differentiate(request(row, top_k=3, disease=row["disease"],
                                               patient={"age_years": 6} if row.get("discipline") == "儿科" else None),
                                       base, models=models)  # fmt: skip
        except Exception as exc:  # an unreadable vignette counts as a miss, reported
            skipped.append(f"{row['id']}: {exc}")
            n += 1
            kind[0] += 1
            continue
        n += 1
        kind[0] += 1
        ranked = [d["syndrome_id"] for d in free["differentials"]]
        hit1, hit3 = bool(ranked[:1]) and ranked[0] in gold, bool(set(ranked[:3]) & gold)
        top1 += hit1
        top3 += hit3
        kind[1] += hit1
        kind[2] += hit3
        p = next((d["score"] for d in free["differentials"] if d["syndrome_id"] in gold), 1e-4)
        nll -= math.log(max(p, 1e-4))
        ranked_d = [d["syndrome_id"] for d in given["differentials"]]
        top1_d += bool(ranked_d[:1]) and ranked_d[0] in gold
        top3_d += bool(set(ranked_d[:3]) & gold)
        g = sorted(gold)[0]
        cands = candidates_for(base, g, rng)
        cres = dmod.differentiate(request(row, candidates=cands), base, models=models)
        first = cres["differentials"][0]
        cand1 += first.get("syndrome_id") in gold
        kind[3] += first.get("syndrome_id") in gold
    pct = (lambda k: round(100.0 * k / n, 1)) if n else (lambda k: None)

    def share(k: int, of: int) -> float | None:
        return round(100.0 * k / of, 1) if of else None

    return {
        "vignettes": n, "top1": pct(top1), "top3": pct(top3), "top1_disease_given": pct(top1_d),
        "top3_disease_given": pct(top3_d), "top1_among_10_candidates": pct(cand1),
        # the two targets are per kind of input: top-3 for symptom lists, top-1 of 10 for narratives
        "by_kind": {k: {"vignettes": v[0], "top1": share(v[1], v[0]), "top3": share(v[2], v[0]),
                        "top1_among_10_candidates": share(v[3], v[0])} for k, v in by_kind.items()},
        "mean_nll": round(nll / n, 3) if n else None, "skipped": skipped,
    }  # fmt: skip


# Every vignette is suggested for each of these patients: the groups the review treats apart
SAFETY_PATIENTS: dict[str, dict[str, Any]] = {
    "pregnant": {"pregnant": True, "sex": "female", "age_years": 30},
    "not pregnant": {"pregnant": False, "sex": "female", "age_years": 30},
    "breastfeeding": {"pregnant": False, "lactating": True, "sex": "female", "age_years": 30},
    "child of 4": {"sex": "male", "age_years": 4},
    "elderly": {"sex": "male", "age_years": 75},
    "liver and kidney impairment": {"sex": "male", "age_years": 60, "hepatic_impairment": True,
                                    "renal_impairment": True},
}  # fmt: skip


def safety(base: kbmod.KnowledgeBase, rows: list[dict[str, Any]], models: Any = None) -> dict[str, Any]:
    """Suggestions (and herbs offered beside them) that carry a critical finding, for each patient of
    ``SAFETY_PATIENTS``: must be 0. An offered herb counts when the prescription with it added, at its suggested
    dose, has one. A 成药 listed as suitable counts when its own review for the patient, run again here, has one."""
    from cds.review import review

    total = critical = withheld = herbs = herbs_critical = patent = patent_unsuitable = patent_critical = 0
    failed: list[str] = []  # a vignette suggest cannot answer is reported, never skipped silently
    by_patient: dict[str, dict[str, int]] = {}
    for row in rows:
        for label, patient in SAFETY_PATIENTS.items():
            mine = by_patient.setdefault(label, {"suggestions": 0, "with_critical_finding": 0, "withheld": 0})
            try:
                out = suggest(request(row, patient=patient), base, models=models)
            except Exception as exc:
                failed.append(f"{row['id']} ({label}): {type(exc).__name__}: {exc}")
                continue
            for s in out["suggestions"]:
                total += 1
                mine["suggestions"] += 1
                mine["withheld"] += bool(s.get("withheld"))
                mine["with_critical_finding"] += bool(not s.get("withheld") and s["review"]["summary"]["critical"])
                for pm in s.get("patent_medicines", []):
                    patent += 1
                    if not pm["suitable"]:
                        patent_unsuitable += 1
                        continue
                    rv = review({"patient": patient, "items": [{"herb": pm["name"]}]}, base)
                    patent_critical += rv.summary["critical"] > 0
                if s.get("withheld"):
                    withheld += 1
                    continue
                if s["review"]["summary"]["critical"]:
                    critical += 1
                items = [{"herb": p["herb"], **({"dose_g": p["dose_g"]} if p["dose_g"] else {})}
                         for p in s["prescription"]]  # fmt: skip
                for h in s.get("herb_suggestions", []):
                    herbs += 1
                    extra = {"herb": h["herb"], **({"dose_g": h["dose_g"]} if h["dose_g"] else {})}
                    rv = review({"patient": patient, "items": [*items, extra]}, base)
                    herbs_critical += rv.summary["critical"] > 0
    return {"suggestions": total, "with_critical_finding": critical, "withheld": withheld,
            "herbs_offered": herbs, "herbs_with_critical_finding": herbs_critical,
            "patent_medicines_listed": patent, "patent_medicines_unsuitable": patent_unsuitable,
            "patent_medicines_suitable_with_critical_finding": patent_critical, "by_patient": by_patient,
            "failed": failed}  # fmt: skip


def fit_prior(base: kbmod.KnowledgeBase, rows: list[dict[str, Any]], scorer: Any) -> float:
    """The department prior's weight that minimises log-loss on the tuning half."""
    best_w, best_nll = 0.0, float("inf")
    for w in (0.0, 0.1, 0.25, 0.5, 1.0):
        _set({"department_prior": w})
        nll = evaluate_fast(base, rows, scorer)["nll"]
        if nll < best_nll - 1e-9:
            best_w, best_nll = w, nll
    return best_w


# Ranking depends only on the ratios of the weights, so alpha stays fixed and the temperature is fitted last. The
# role weights (w_*) are relative to a secondary finding's; changing them rebuilds the profile index.
GRID = {
    "alpha": [12.0],
    "w_key": [1.0, 2.0],
    "w_tongue": [1.0, 1.5],
    "w_pulse": [1.0, 1.5],
    "beta": [1.0, 2.0],
    "gamma": [0.5, 1.5],
    "miss": [0.0, 0.5],
    "paed": [1.0, 2.0],
    "hallmark": [0.5, 1.0],
    "context": [8.0],
}


def _set(p: dict[str, float]) -> None:
    rebuild = any(k.startswith("w_") and dmod.params().get(k) != v for k, v in p.items())
    dmod.OVERRIDES.update(p)
    dmod.params.cache_clear()
    if rebuild:
        dmod.index_for.cache_clear()


def fit(base: kbmod.KnowledgeBase, rows: list[dict[str, Any]]) -> dict[str, float]:
    """Grid search on the tuning half: maximise top-3 then top-1; then the temperature that minimises NLL."""
    best: tuple[float, float, dict[str, float]] | None = None
    for values in itertools.product(*GRID.values()):
        p = dict(zip(GRID, values, strict=True))
        _set(p)
        r = evaluate_fast(base, rows)
        key = (r["top3"], r["top1"])
        if best is None or key > best[:2]:
            best = (*key, dict(p))
    assert best is not None
    _set(best[2])
    best_t, best_nll = 1.0, float("inf")
    for t in (0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0):
        _set({"temperature": t})
        nll = evaluate_fast(base, rows)["nll"]
        if nll < best_nll:
            best_t, best_nll = t, nll
    return {**best[2], "temperature": best_t}


_FINDINGS: dict[str, Any] = {}


def evaluate_fast(base: kbmod.KnowledgeBase, rows: list[dict[str, Any]], scorer: Any = None) -> dict[str, float]:
    """Top-1, top-3 and NLL without the disease; the extracted findings are computed once per vignette."""
    top1 = top3 = 0
    nll = 0.0
    for row in rows:
        gold = gold_ids(base, row)
        try:
            if row["id"] not in _FINDINGS:
                _FINDINGS[row["id"]] = dmod.read_findings(request(row, top_k=200), base)
            out = dmod._differentiate(base, _FINDINGS[row["id"]], scorer, None)
        except Exception:
            continue
        ranked = [d["syndrome_id"] for d in out["differentials"]]
        top1 += bool(ranked) and ranked[0] in gold
        top3 += bool(set(ranked[:3]) & gold)
        p = next((d["score"] for d in out["differentials"] if d["syndrome_id"] in gold), 1e-4)
        nll -= math.log(max(p, 1e-4))
    n = max(len(rows), 1)
    return {"top1": top1 / n, "top3": top3 / n, "nll": nll / n}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m eval.syndromes")
    ap.add_argument("--fit", action="store_true", help="refit cds/params.json on the tuning half")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-safety", action="store_true")
    ap.add_argument("--models", metavar="DIR", help="artifacts folder (default: $TCM_MODELS_DIR, else artifacts/)")
    ap.add_argument("--no-models", action="store_true", help="the knowledge base alone")
    args = ap.parse_args(argv)
    from cds import learned

    models = learned.NONE if args.no_models else learned.load(args.models or learned.models_dir_from_env())
    base = kbmod.default()
    rows = load_vignettes()
    tune = [r for r in rows if split_of(r) == "tune"]
    report = [r for r in rows if split_of(r) == "report"]
    if args.fit:
        t = time.perf_counter()
        params = fit(base, tune)
        if models.scorer is not None:
            params["department_prior"] = fit_prior(base, tune, models.scorer)
        dmod.OVERRIDES.clear()
        old = json.loads(dmod.PARAMS_FILE.read_text(encoding="utf-8")) if dmod.PARAMS_FILE.is_file() else {}
        dmod.PARAMS_FILE.write_text(json.dumps({
            **old, "fitted_on": f"eval/vignettes tuning half ({len(tune)} vignettes, split by id hash)",
            "kb_version": str(base.version), "params": {**old.get("params", {}), **params}},
            ensure_ascii=False, indent=2) + "\n", encoding="utf-8")  # fmt: skip
        dmod.params.cache_clear()
        dmod.index_for.cache_clear()
        print(f"fitted {params} in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    out: dict[str, Any] = {
        "kb_version": str(base.version),
        "params": dmod.params(),
        "models": models.describe(),
        "tune": evaluate(base, tune, models=models),
        "report": evaluate(base, report, models=models),
    }
    if models.names:
        out["report_kb_only"] = evaluate(base, report)
    if not args.no_safety:
        out["safety"] = safety(base, rows, models)
    if args.json:
        print(json.dumps(out, ensure_ascii=False, indent=2))
    else:
        print("models: " + (", ".join(m["name"] for m in out["models"]) or "none (the knowledge base alone)"))
        for split in [s for s in ("tune", "report", "report_kb_only") if s in out]:
            r = out[split]
            print(
                f"{split:<7} n={r['vignettes']:<4} top1 {r['top1']}%  top3 {r['top3']}%  | disease given: top1 "
                f"{r['top1_disease_given']}%  top3 {r['top3_disease_given']}%  | top1 of 10 candidates "
                f"{r['top1_among_10_candidates']}%"
            )
            sl, nv = r["by_kind"]["symptom_list"], r["by_kind"]["narrative"]
            print(
                f"{'':<7} symptom lists (n={sl['vignettes']}) top3 {sl['top3']}%  | narratives (n={nv['vignettes']}) "
                f"top1 of 10 candidates {nv['top1_among_10_candidates']}%"
            )
        if "safety" in out:
            s = out["safety"]
            print(
                f"safety: {s['with_critical_finding']} of {s['suggestions']} suggestions carry a critical finding "
                f"({s['withheld']} withheld); {s['herbs_with_critical_finding']} of {s['herbs_offered']} herbs "
                f"offered beside them; {s['patent_medicines_suitable_with_critical_finding']} of "
                f"{s['patent_medicines_listed'] - s['patent_medicines_unsuitable']} 成药 listed as suitable "
                f"({s['patent_medicines_unsuitable']} marked unsuitable)"
            )
            if s.get("by_patient"):
                print("safety, per patient: " + "; ".join(
                    f"{k} {v['with_critical_finding']}/{v['suggestions']} ({v['withheld']} withheld)"
                    for k, v in s["by_patient"].items()))  # fmt: skip
            for x in s["failed"]:
                print(f"safety: NOT ANSWERED {x}")
    return 0 if not out.get("safety", {}).get("failed") else 1


if __name__ == "__main__":
    sys.exit(main())
