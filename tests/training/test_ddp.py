"""The transformer trainer under torchrun: two processes, DDP over gloo on CPU, a tiny config."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures" / "research"


@pytest.mark.slow
def test_torchrun_two_processes(tmp_path: Path) -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun not installed")
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps({
        "model": "transformer",
        "transformer": {"hidden": 16, "layers": 1, "heads": 2, "intermediate": 32, "max_len": 64,
                        "pretrain_epochs": 1, "epochs": 2, "batch_size": 4, "min_char_count": 1,
                        "threads": 1},
    }))  # fmt: skip
    out = tmp_path / "model"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    res = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "training", "case-classify",
         "--data", str(FIX), "--out", str(out), "--config", str(cfg), "--allow-identifiers", "--no-progress"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    card = json.loads((out / "model_card.json").read_text())
    assert card["training"]["world_size"] == 2
    assert [row["epoch"] for row in card["training"]["epochs"] if row["stage"] == "transformer"] == [1, 2]
    from models.registry import load_model

    assert load_model(out, task="case-classify").kind == "transformer"
