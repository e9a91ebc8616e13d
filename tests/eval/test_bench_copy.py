"""The bench's synthetic knowledge base (eval.bench.synthetic_copy): every copy of the content must load."""

from __future__ import annotations

from pathlib import Path

import kb
from eval.bench import synthetic_copy


def test_a_synthetic_copy_of_merged_symptoms_and_substitutions_loads(kb_copy: Path, tmp_path: Path) -> None:
    sym = kb_copy / "symptoms" / "all.yaml"
    text = sym.read_text(encoding="utf-8")
    # 发热 has absorbed an old entry (its id now in replaces); a substitution names two herbs
    sym.write_text(text.replace("synonyms: [身热], category: 全身,", "synonyms: [身热], category: 全身, replaces: [shen1re4],", 1), encoding="utf-8")  # fmt: skip
    (kb_copy / "substitutes").mkdir()
    (kb_copy / "substitutes" / "s.yaml").write_text(
        "- {id: dangshen-for-renshen, original: 人参, substitute: 党参, scope: s, source: {ref: zhongyaoxue}}\n",
        encoding="utf-8",
    )
    one = kb.load(kb_copy, cache=False)
    synthetic_copy(kb_copy, tmp_path / "big", factor=3)
    big = kb.load(tmp_path / "big", cache=False)
    assert big.stats()["counts"] == {k: v * 3 if k != "sources" else v for k, v in one.stats()["counts"].items()}
    assert len(big.substitutions) == 3 and len(big.merged_symptoms) == 3
