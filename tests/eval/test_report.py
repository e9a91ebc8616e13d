"""`python -m eval.report` on the fixtures with tiny pre-trained artifacts: Markdown, plots, anchors."""

from __future__ import annotations

import json
from pathlib import Path

from eval.report import main
from training.train import train

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "research"


def test_report_writes_markdown_and_plots(tmp_path: Path) -> None:
    models = tmp_path / "models"
    train("herb-rec", FIX, models / "herb-rec", {"mlp": {"hidden": 16, "epochs": 2}}, progress=False)
    tfidf = {"model": "tfidf-svm", "tfidf": {"ngram": [1, 2], "C_grid": [1.0], "sublinear_tf": False}}
    train("case-classify", FIX, models / "case-classify", tfidf, allow_identifiers=True, progress=False)
    cnn = {"model": "char-cnn", "cnn": {"embed": 8, "filters": 4, "kernels": [1, 2], "max_len": 32, "epochs": 1}}
    train("case-classify", FIX, models / "case-classify-char-cnn", cnn, allow_identifiers=True, progress=False)
    out = tmp_path / "reports"
    assert main(["--data", str(FIX), "--models", str(models), "--out", str(out)]) == 0
    text = (out / "report.md").read_text(encoding="utf-8")
    # the pytorch model beside the default one, and the scikit-learn floor trained in this run, with wall times
    assert "| char-cnn (`case-classify-char-cnn`) |" in text
    assert "| TF-IDF + SVM (this run, C " in text and "Training wall time: tfidf " in text
    assert "cnn " in text.split("Training wall time:")[1].split("\n")[0]
    assert "SMGCN re-run" in text and "TCM-BERT" in text and "co-occurrence (this run)" in text
    assert "standard NDCG" in text
    for png in ("herb-rec-smgcn-curves.png", "herb-rec-tcm-pd-curves.png", "case-classify-confusion.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads((out / "results.json").read_text())
    assert results["herb-rec"]["datasets"]["smgcn"]["n_test"] == 60
    assert "_Not run: `retrieval.json` is missing" in text  # the other results are said to be absent, not hidden
    # the built-in knowledge base: its size and completeness; coverage needs the full data, and says why it is absent
    assert "## Knowledge base (" in text and "Complete herb monographs " in text and "ICD-11 TM1 codes on " in text
    assert "_Coverage not computed: " in text and "formulae.jsonl" in text

    # with the result files that make eval writes first, their sections carry their numbers
    split = {"vignettes": 10, "top1": 70.0, "top3": 90.0, "top1_disease_given": 95.0, "top3_disease_given": 99.0,
             "top1_among_10_candidates": 88.0, "by_kind": {"symptom_list": {"top3": 91.0},
                                                          "narrative": {"top1_among_10_candidates": 87.5}}}  # fmt: skip
    (out / "syndromes.json").write_text(json.dumps({
        "models": [{"role": "herb-rec", "name": "herb-rec:mlp:tiny"}], "tune": split, "report": split,
        "safety": {"suggestions": 40, "with_critical_finding": 0, "withheld": 3, "herbs_offered": 120,
                   "herbs_with_critical_finding": 0, "patent_medicines_listed": 9, "patent_medicines_unsuitable": 2,
                   "patent_medicines_suitable_with_critical_finding": 0}}))  # fmt: skip
    metrics = {"P@5": 0.35, "R@5": 0.22, "P@10": 0.27, "R@10": 0.34, "R@20": 0.47, "label_accuracy": 0.69,
               "label_macro_f1": 0.66}  # fmt: skip
    (out / "retrieval.json").write_text(json.dumps({"k": 10, "results": [
        {"encoder": "random-neighbours", "test": {**metrics, "P@5": 0.14}},
        {"encoder": "bert", "test": metrics, "training": {"mlm_steps": 242, "contrastive_steps": 144, "seconds": 901}},
    ]}))  # fmt: skip
    (out / "vectors.json").write_text(json.dumps({"vectors": "real-like, anchored", "query_threads": 1, "sizes": [
        {"n": 1000000, "kind": "ivf", "build_s": 103.5, "index_mb": 497.9, "exact_p50_ms": 42.9, "p50_ms": 0.77,
         "p99_ms": 1.42, "recall_at_10": 0.977, "speedup": 55.4}],
        "end_to_end": {"cases": 7029, "index": "flat", "p50_ms": 4.39, "p99_ms": 16.62}}))  # fmt: skip
    assert main(["--data", str(FIX), "--models", str(models), "--out", str(out)]) == 0
    text = (out / "report.md").read_text(encoding="utf-8")
    assert "Models used: `herb-rec:mlp:tiny`" in text and "| report half | 10 | 70.0 % | 90.0 %" in text
    assert "0 of 40 suggestions carry a critical finding" in text
    assert "0 of 7 成药 listed as suitable (2 marked unsuitable for the patient)" in text
    assert "| random-neighbours | test | 0.1400 |" in text and "242 MLM + 144 contrastive steps" in text
    assert "| 1,000,000 | ivf |" in text and "0.977 | 55.4× |" in text and "p50 4.39 ms" in text
    (out / "vectors.json").write_text("{not json")
    assert main(["--data", str(FIX), "--models", str(models), "--out", str(out)]) == 2


def test_report_bad_data_dir_exits_2(tmp_path: Path) -> None:
    assert main(["--data", str(tmp_path / "none"), "--models", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
