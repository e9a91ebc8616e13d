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
    out = tmp_path / "reports"
    assert main(["--data", str(FIX), "--models", str(models), "--out", str(out)]) == 0
    text = (out / "report.md").read_text(encoding="utf-8")
    assert "SMGCN re-run" in text and "TCM-BERT" in text and "co-occurrence (this run)" in text
    assert "standard NDCG" in text
    for png in ("herb-rec-smgcn-curves.png", "herb-rec-tcm-pd-curves.png", "case-classify-confusion.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads((out / "results.json").read_text())
    assert results["herb-rec"]["datasets"]["smgcn"]["n_test"] == 60


def test_report_bad_data_dir_exits_2(tmp_path: Path) -> None:
    assert main(["--data", str(tmp_path / "none"), "--models", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
