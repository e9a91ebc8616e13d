"""CI gate on the real research data: the knowledge base's coverage figures (`tcm kb coverage`) do not regress,
and every formula whose composition disagrees with formulae.jsonl carries a reviewed verdict."""

from __future__ import annotations

from pathlib import Path

import pytest

import eval.coverage as cov
from kb.base import KnowledgeBase

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def report(real_kb: KnowledgeBase, shared_data: Path) -> dict:
    return cov.coverage(real_kb, shared_data)


def test_herb_and_symptom_names_resolve(report: dict) -> None:
    herbs = report["herbs"]
    assert herbs["tcm-pd"]["coverage"] >= 0.97 and herbs["smgcn"]["coverage"] >= 0.97
    assert herbs["tcm-cases"]["coverage"] >= 0.97
    assert report["symptoms"]["tcm-pd"]["coverage"] >= 0.95


def test_every_formula_disagreement_is_reviewed(report: dict) -> None:
    f = report["formulas"]
    assert f["compared"] >= 400 and f["agreement"] >= 0.83  # the 90 % the issue asks for: see formulae.yaml
    assert f["agreement_main"] >= 0.78 and len(f["agree_version"]) >= 20  # the main list alone; a recorded version
    assert [d["formula"] for d in f["disagreements"] if d["verdict"] == "unexplained"] == []
    assert "fixed_but_still_disagree" not in f and "verdicts_for_agreeing_formulas" not in f
