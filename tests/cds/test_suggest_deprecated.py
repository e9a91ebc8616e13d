"""A deprecated formula is not suggested: its replacement is, or the next formula of the syndrome, with a note."""

from __future__ import annotations

from pathlib import Path

import kb
from cds.suggest import suggest

FINDINGS = {
    "text": "恶寒重，发热轻，无汗，头痛，鼻塞",
    "tongue": "苔薄白",
    "pulse": "脉浮紧",
    "candidates": ["风寒束表证"],
}


def _deprecate(kb_copy: Path, formula_id: str, extra: str) -> kb.KnowledgeBase:
    path = kb_copy / "formulas" / "all.yaml"
    text = path.read_text(encoding="utf-8")
    marker = f"- id: {formula_id}\n"
    assert marker in text
    path.write_text(text.replace(marker, marker + f"  deprecated: true\n{extra}"), encoding="utf-8")
    return kb.load(kb_copy, cache=False)


def test_a_deprecated_main_formula_gives_way_to_its_replacement(kb_copy: Path) -> None:
    base = _deprecate(kb_copy, "mahuang-tang", "  replaced_by: guizhi-tang\n  deprecation_reason: 测试\n")
    s = suggest(FINDINGS, base)["suggestions"][0]
    assert s["formula"]["id"] == "guizhi-tang"
    assert any("麻黄汤已停用，改用桂枝汤" in n for n in s["notes"])
    assert "麻黄汤" not in s["alternatives"]


def test_a_deprecated_formula_without_replacement_is_skipped(kb_copy: Path) -> None:
    base = _deprecate(kb_copy, "mahuang-tang", "")
    s = suggest(FINDINGS, base)["suggestions"][0]
    assert s["formula"]["id"] == "guizhi-tang" and any("麻黄汤已停用" in n for n in s["notes"])


def test_a_deprecated_syndrome_is_not_offered(kb_copy: Path) -> None:
    from cds.differentiate import differentiate

    path = kb_copy / "diseases" / "all.yaml"
    text = path.read_text(encoding="utf-8")
    marker = "    - id: ganmao.fenghan-shubiao\n"
    assert marker in text
    path.write_text(text.replace(marker, marker + "      deprecated: true\n"), encoding="utf-8")
    base = kb.load(kb_copy, cache=False)
    plain = {k: v for k, v in FINDINGS.items() if k != "candidates"}
    ranked = [d["syndrome_id"] for d in differentiate(plain, base)["differentials"]]
    assert ranked and "ganmao.fenghan-shubiao" not in ranked
    named = differentiate(FINDINGS, base)["differentials"]  # named by the physician: still ranked
    assert [d["syndrome_id"] for d in named] == ["ganmao.fenghan-shubiao"]
