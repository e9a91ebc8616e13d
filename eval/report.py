"""``python -m eval.report``: evaluate the trained artifacts (training them first when absent) and write a
Markdown report with PNG plots under ``artifacts/reports/``.

    python -m eval.report [--data DIR] [--models DIR] [--out DIR] [--retrain]

The report puts our test numbers beside the published anchors and the floors computed in the same run, says
how models and epochs were selected (validation carved from train), and that NDCG is the standard one.

It also shows, when their result files are in the output folder (``make eval`` writes them first):
``syndromes.json`` (``python -m eval.syndromes --json``), ``retrieval.json`` (``python -m eval.retrieval --out``)
and ``vectors.json`` (``python -m bench.vectors --like artifacts/cases --json``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eval.evaluate import ANCHORS, TARGETS, evaluate_case_classify, evaluate_herb_rec
from eval.metrics import ranking_metrics
from kb.errors import ArtifactError, TCMError

logger = logging.getLogger(__name__)

CURVE_KS = tuple(range(1, 21))


def _ensure(task: str, path: Path, data: str | None, retrain: bool, config: dict[str, Any]) -> float | None:
    from training.train import train

    exists = (path / "model_card.json").is_file() or (
        task == "herb-rec" and path.is_dir() and any(path.glob("*/model_card.json"))
    )
    if exists and not retrain:
        return None
    logger.warning("training %s into %s (not found or --retrain)", task, path)
    t0 = time.time()
    train(task, data, path, config, seed=0, allow_identifiers=True, progress=True)
    return time.time() - t0


def _plot_curves(curves: dict[str, dict[str, dict[str, float]]], dataset: str, out: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, metric in zip(axes, ("P", "R", "NDCG"), strict=True):
        for who, m in curves.items():
            ax.plot(CURVE_KS, [m[f"{metric}@{k}"] for k in CURVE_KS], marker=".", label=who)
        ax.set_xlabel("k")
        ax.set_title(f"{metric}@k")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"herb recommendation, {dataset} test")
    fig.tight_layout()
    name = f"herb-rec-{dataset}-curves.png"
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return name


def _plot_confusion(cm: list[list[int]], labels: list[str], title: str, out: Path, name: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    a = np.array(cm)
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    ax.imshow(a, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            ax.text(
                j,
                i,
                str(a[i, j]),
                ha="center",
                va="center",
                color="white" if a[i, j] > a.max() / 2 else "black",
            )
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return name


def _row(cells: Sequence[Any]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _f(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else ("—" if v is None else str(v))


def _model_line(r: dict[str, Any]) -> str:
    c, secs = r.get("config", {}), r.get("train_seconds")
    took = f"; trained in {secs:.0f} s" if isinstance(secs, int | float) else ""
    if r["kind"] != "mlp":
        return f"Model: `{r['kind']}`{took}."
    return (
        f"Model: `mlp`, {c.get('members', 1)} member network(s) of {c.get('layers')} × {c.get('hidden')} units, "
        f"loss `{c.get('loss')}`, epoch {c.get('best_epoch')} and co-occurrence blend {c.get('blend')} picked on "
        f"validation{took}."
    )


def _support_lines(b: dict[str, Any]) -> list[str]:
    """What the training data allow: the rows whose exact symptom set is frequent in train, scored by its herbs."""
    f, r = b.get("frequent"), b.get("rare")
    if not f:
        return []
    text = (
        f"What the symptom set allows: {f['n']} of {b['n_test']} test prescriptions ({f['n'] / b['n_test']:.0%}) have "
        f"a symptom set that occurs at least {b['threshold']} times in train. On them, that set's herb frequencies "
        f"in train give P@5 {f['exact_set_frequency']['P@5']:.4f} / R@20 {f['exact_set_frequency']['R@20']:.4f}, "
        f"close to the best any recommender that sees only the symptom set can do; ours gives "
        f"{f['model']['P@5']:.4f} / {f['model']['R@20']:.4f}."
    )
    if r:
        text += f" On the other {r['n']}, ours gives P@5 {r['model']['P@5']:.4f} / R@20 {r['model']['R@20']:.4f}."
    if "rare_P@5_needed" in b:
        text += f" For P@5 {b['target_P@5']:.2f} on the whole split, those would need P@5 {b['rare_P@5_needed']:.4f}."
    return [text, ""]


def build_report(data: str | None, models: Path, out: Path, retrain: bool = False) -> Path:
    from models.herb_rec import CooccurrenceRecommender
    from models.registry import load_model
    from training.datasets import HERB_REC_LOADERS

    out.mkdir(parents=True, exist_ok=True)
    herb_dir, case_dir = models / "herb-rec", models / "case-classify"
    trained = {
        "herb-rec": _ensure("herb-rec", herb_dir, data, retrain, {}),
        "case-classify": _ensure("case-classify", case_dir, data, retrain, {}),
    }
    lines = [
        "# Evaluation report",
        "",
        f"Generated {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')} by `python -m eval.report`. "
        "Models and epochs were selected on validation splits only (herb-rec: a seeded 10 % of the published "
        "train split; case-classify: the published validation split); the test splits were read only here. "
        "NDCG is standard NDCG (binary gains, ideal ordering of the true herbs). "
        "Floors are computed in this run.",
        "",
    ]
    results: dict[str, Any] = {"trained_seconds": trained}

    # ---- herb-rec -------------------------------------------------------------------------------
    hr = evaluate_herb_rec(herb_dir, data)
    results["herb-rec"] = hr
    lines += ["## Herb recommendation (symptom set → herbs)", ""]
    for name, r in hr["datasets"].items():
        lines += [f"### {name} test ({r['n_test']} prescriptions; model `{r['kind']}`)", ""]
        keys = [f"{m}@{k}" for m in ("P", "R", "NDCG") for k in (5, 10, 20)]
        lines.append(_row(["", *keys]))
        lines.append(_row(["---"] * (len(keys) + 1)))
        lines.append(_row(["**ours**", *(_f(r["model"][k]) for k in keys)]))
        lines.append(_row(["co-occurrence (this run)", *(_f(r["cooccurrence"][k]) for k in keys)]))
        for who, a in r["anchors"].items():
            lines.append(_row([who, *(_f(a.get(k)) for k in keys)]))
        if r["targets"]:
            lines.append(_row(["target", *(_f(r["targets"].get(k)) for k in keys)]))
        lines.append("")
        lines.append(f"Validation (selection split): {', '.join(f'{k} {v:.4f}' for k, v in r['validation'].items())}")
        lines.append("")
        if r.get("validation_cooccurrence"):
            vc = r["validation_cooccurrence"]
            lines.append(f"Validation, co-occurrence floor: {', '.join(f'{k} {v:.4f}' for k, v in vc.items())}")
            lines.append("")
        lines += [_model_line(r), ""]
        lines += _support_lines(r.get("by_support", {}))
        m = load_model(r["artifact"], task="herb-rec")
        ds = HERB_REC_LOADERS[name](data)
        test, tr = ds.split("test"), ds.split("train")
        xs, ys = [e.symptoms for e in test], [e.herbs for e in test]
        floor = CooccurrenceRecommender(ds.symptoms, ds.herbs).fit([e.symptoms for e in tr], [e.herbs for e in tr])
        curves = {
            "ours": ranking_metrics(m.score(xs), ys, CURVE_KS),
            "co-occurrence": ranking_metrics(floor.score(xs), ys, CURVE_KS),
        }
        png = _plot_curves(curves, name, out)
        lines += [f"![{name} per-k curves]({png})", ""]

    # ---- case-classify --------------------------------------------------------------------------
    cc = evaluate_case_classify(case_dir, data)
    results["case-classify"] = cc
    # other case-classify artifacts beside the default one (make eval trains the pytorch char-CNN there)
    others = [
        evaluate_case_classify(d, data, floor=False)
        for d in sorted(models.glob("case-classify-*"))
        if (d / "model_card.json").is_file()
    ]
    results["case-classify-others"] = others
    lines += [f"## Case classification (text → department; tcm-cases test, {cc['n_test']} cases)", ""]
    lines.append(_row(["model", "accuracy", "macro-F1"]))
    lines.append(_row(["---", "---", "---"]))
    for who, m in cc["models"].items():
        lines.append(_row([f"**{who}**" if who == cc["kind"] else who, _f(m["accuracy"]), _f(m["macro_f1"])]))
    for extra in others:
        for who, m in extra["models"].items():
            lines.append(_row([f"{who} (`{Path(extra['artifact']).name}`)", _f(m["accuracy"]), _f(m["macro_f1"])]))
    if cc.get("floor"):
        fl = cc["floor"]
        lines.append(_row([f"TF-IDF + SVM (this run, C {fl['picked_C']:g} picked on validation)",
                           _f(fl["test"]["accuracy"]), _f(fl["test"]["macro_f1"])]))  # fmt: skip
    for who, a in ANCHORS["tcm-cases"].items():
        lines.append(_row([who, _f(a["accuracy"]), _f(a["macro_f1"])]))
    t = TARGETS["tcm-cases"]
    lines.append(_row(["target", _f(t["accuracy"]), _f(t["macro_f1"])]))
    lines.append("")
    val = cc["validation"].get("validation", {})
    if val:
        lines.append(f"Validation (selection split): accuracy {val['accuracy']:.4f}, macro-F1 {val['macro_f1']:.4f}")
        lines.append("")
    took = [
        f"{k.removesuffix('_seconds')} {v:.0f} s" + (f" (`{Path(r['artifact']).name}`)" if r is not cc else "")
        for r in (cc, *others)
        for k, v in r.get("training_seconds", {}).items()
    ]
    if cc.get("floor"):
        took.append(f"TF-IDF + SVM floor (C grid, trained and scored here) {cc['floor']['seconds']:.0f} s")
    if took:
        lines += ["Training wall time: " + "; ".join(took) + ".", ""]
    names = [
        cc["label_names"].get(str(label), str(label)).split(" (")[0] for label in cc["models"][cc["kind"]]["labels"]
    ]
    png = _plot_confusion(
        cc["models"][cc["kind"]]["confusion"],
        names,
        f"{cc['kind']} — tcm-cases test",
        out,
        "case-classify-confusion.png",
    )
    lines += [f"![confusion matrix]({png})", ""]
    lines += ["Labels: " + ", ".join(f"{k} = {v}" for k, v in cc["label_names"].items()), ""]

    lines += _kb_section(data)
    lines += _syndromes_section(out / "syndromes.json")
    lines += _retrieval_section(out / "retrieval.json")
    lines += _vectors_section(out / "vectors.json")

    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out / "results.json").write_text(json.dumps(results, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    return report


def _read(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: unreadable result file ({exc}); rerun the command that writes it") from exc


def _head(title: str, intro: str, columns: list[str]) -> list[str]:
    return [f"## {title}", "", intro, "", _row(columns), _row(["---"] * len(columns))]


def _missing(title: str, path: Path) -> list[str]:
    return [f"## {title}", "", f"_Not run: `{path.name}` is missing (`make eval` writes it)._", ""]


def _kb_section(data: str | None) -> list[str]:
    """The built-in knowledge base: size, completeness, standard codes, verification, coverage of the data."""
    import kb as kbmod
    from eval.coverage import coverage
    from kb.errors import TCMError

    base = kbmod.default()
    st = base.stats()
    c, mono, rec, codes = st["counts"], st["herb_monographs"], st["formula_records"], st["codes"]
    lines = [
        f"## Knowledge base ({st['version']}, `tcm kb stats`, `tcm kb coverage`)",
        "",
        ", ".join(f"{v:,} {k}" for k, v in c.items()) + ".",
        "",
        f"Complete herb monographs {mono['complete']} of {c['herbs']}; complete formula records {rec['complete']} of "
        f"{c['formulas']}; ICD-11 TM1 codes on {codes['diseases']['icd11']} diseases and "
        f"{codes['syndromes']['icd11']} syndromes. Verification: "
        + "; ".join(f"{k} " + ", ".join(f"{n} {s}" for s, n in v.items()) for k, v in st["verification"].items())
        + ".",
        "",
    ]
    try:
        cov = coverage(base, Path(data) if data else None)
    except (TCMError, OSError) as exc:
        return [*lines, f"_Coverage not computed: {exc}_", ""]
    herbs, f = cov["herbs"], cov["formulas"]
    lines += [
        f"Coverage of the research data: herb names TCM-PD {herbs['tcm-pd']['coverage']:.1%}, SMGCN "
        f"{herbs['smgcn']['coverage']:.1%}, tcm-cases mentions {herbs['tcm-cases']['coverage']:.2%}; TCM-PD "
        f"symptom names {cov['symptoms']['tcm-pd']['coverage']:.1%}; formula compositions agree with one we record "
        f"for {f['agree']} of {f['compared']} ({f['agreement']:.1%}: the main composition {f['agree_main']}, "
        f"{f['agreement_main']:.1%}; a recorded 药典/原方/别本 version {len(f['agree_version'])}; every "
        "disagreement classified in `eval/crosscheck/formulae.yaml`).",
        "",
    ]
    return lines


def _syndromes_section(path: Path) -> list[str]:
    r = _read(path)
    if r is None:
        return _missing("Syndrome differentiation", path)
    used = ", ".join(f"`{m['name']}`" for m in r.get("models", [])) or "none (the knowledge base alone)"
    lines = _head("Syndrome differentiation (development vignettes, `python -m eval.syndromes`)",
                  f"Models used: {used}. Parameters fitted on the tuning half; the report half is only scored.",
                  ["split", "n", "top-1", "top-3", "top-1, disease given", "top-3, disease given",
                   "top-1 of 10 candidates", "symptom lists top-3", "narratives top-1 of 10"])  # fmt: skip
    for split, label in (("tune", "tuning half"), ("report", "report half"), ("report_kb_only", "report, KB alone")):
        e = r.get(split)
        if e:
            lines.append(_row([label, e["vignettes"], *(f"{e[k]} %" for k in ("top1", "top3", "top1_disease_given",
                               "top3_disease_given", "top1_among_10_candidates")),
                               f"{e['by_kind']['symptom_list']['top3']} %",
                               f"{e['by_kind']['narrative']['top1_among_10_candidates']} %"]))  # fmt: skip
    lines.append("")
    s = r.get("safety")
    if s:
        lines += [f"Safety: {s['with_critical_finding']} of {s['suggestions']} suggestions carry a critical finding "
                  f"({s['withheld']} withheld), pregnant and not; {s.get('herbs_with_critical_finding', 0)} of "
                  f"{s.get('herbs_offered', 0)} herbs offered beside them; "
                  f"{s.get('patent_medicines_suitable_with_critical_finding', 0)} of "
                  f"{s.get('patent_medicines_listed', 0) - s.get('patent_medicines_unsuitable', 0)} 成药 listed as "
                  f"suitable ({s.get('patent_medicines_unsuitable', 0)} marked unsuitable for the patient).", ""]  # fmt: skip
    return lines


def _retrieval_section(path: Path) -> list[str]:
    r = _read(path)
    if r is None:
        return _missing("Similar-case retrieval", path)
    lines = _head("Similar-case retrieval (tcm-cases, `python -m eval.retrieval`)",
                  f"Held-out cases query the train split's cases by their findings; the herbs of the {r['k']} nearest "
                  "predict the held-out prescription (similarity-weighted) and their departments its label.",
                  ["encoder", "split", "P@5", "R@5", "P@10", "R@10", "R@20", "label accuracy", "label macro-F1"])  # fmt: skip
    for e in r["results"]:
        name = e["encoder"]
        if e.get("training"):
            t = e["training"]
            name += (
                f" ({t.get('mlm_steps')} MLM + {t.get('contrastive_steps')} contrastive steps in {t.get('seconds')} s)"
            )
        for split in ("val", "test"):
            m = e.get(split)
            if m:
                lines.append(_row([name, split, *(_f(m[k]) for k in ("P@5", "R@5", "P@10", "R@10", "R@20",
                                                                      "label_accuracy", "label_macro_f1"))]))  # fmt: skip
    return [*lines, ""]


def _vectors_section(path: Path) -> list[str]:
    r = _read(path)
    if r is None:
        return _missing("Vector index scale", path)
    lines = _head("Vector index scale (`python -m bench.vectors`)",
                  f"Vectors: {r.get('vectors', 'synthetic')}; single-query latency, {r['query_threads']} query "
                  "thread(s). Target at 1M: recall@10 ≥ 0.95 at ≥ 20× the exact speed.",
                  ["vectors", "index", "build s", "MB", "exact p50 ms", "p50 ms", "p99 ms", "recall@10", "speed-up"])  # fmt: skip
    for s in r["sizes"]:
        lines.append(_row([f"{s['n']:,}", s["kind"], s["build_s"], s["index_mb"], s["exact_p50_ms"], s["p50_ms"],
                           s["p99_ms"], s["recall_at_10"], f"{s['speedup']}×"]))  # fmt: skip
    e = r.get("end_to_end")
    if e:
        lines += ["", f"End-to-end similar-case query on the real case base ({e['cases']} cases, {e['index']}): "
                  f"p50 {e['p50_ms']} ms, p99 {e['p99_ms']} ms."]  # fmt: skip
    return [*lines, ""]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.report", description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument("--data", metavar="DIR", help="data directory (default: $TCM_DATA_DIR, else ../shared/data)")
    p.add_argument("--models", metavar="DIR", type=Path, default=Path("artifacts/models"))
    p.add_argument("--out", metavar="DIR", type=Path, default=Path("artifacts/reports"))
    p.add_argument("--retrain", action="store_true", help="train again even where artifacts exist")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        path = build_report(args.data, args.models, args.out, args.retrain)
    except (TCMError, ArtifactError) as exc:
        sys.stderr.write(f"eval.report: error: {exc}\n")
        return 2
    sys.stdout.write(f"wrote {path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
