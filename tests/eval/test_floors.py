"""CI gate: tiny configurations trained on small slices of the real data must stay above eval/floors.json.

The floors were set a little under what these exact tiny runs reach (seed 0, CPU); a drop below one means a
loader, metric or model regressed. Full-size numbers come from `python -m eval.report` (`make eval`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from eval.evaluate import evaluate_case_classify, evaluate_herb_rec
from training.train import train

FLOORS = json.loads((Path(__file__).resolve().parents[2] / "eval" / "floors.json").read_text(encoding="utf-8"))

pytestmark = pytest.mark.shared_data


def _check(measured: dict[str, float], floors: dict[str, float], what: str) -> None:
    low = {k: (round(measured[k], 4), v) for k, v in floors.items() if measured[k] < v}
    assert not low, f"{what} fell below its floor (measured, floor): {low}"


@pytest.fixture(scope="module")
def herb_rec(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("floors") / "herb-rec"
    cfg = FLOORS["herb-rec"]["config"]
    train("herb-rec", shared_data, out, cfg, seed=0, progress=False)
    return evaluate_herb_rec(out, shared_data)


@pytest.fixture(scope="module")
def case_classify(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("floors") / "case-classify"
    cfg = FLOORS["case-classify"]["config"]
    train("case-classify", shared_data, out, cfg, seed=0, allow_identifiers=True, progress=False)
    return evaluate_case_classify(out, shared_data, floor=False)


def test_herb_rec_tiny_run_stays_above_floor(herb_rec: dict[str, Any]) -> None:
    for name, floors in FLOORS["herb-rec"]["floors"].items():
        r = herb_rec["datasets"][name]
        _check(r["model"], floors["model"], f"herb-rec {name} model")
        _check(r["cooccurrence"], floors["cooccurrence"], f"herb-rec {name} co-occurrence")


def test_case_classify_tiny_run_stays_above_floor(case_classify: dict[str, Any]) -> None:
    for who, floors in FLOORS["case-classify"]["floors"].items():
        _check(case_classify["models"][who], floors, f"case-classify {who}")
