"""A herb curators have withdrawn still resolves (old prescriptions must), and the review says it is withdrawn."""

from __future__ import annotations

from pathlib import Path

import kb
from cds.review import review

RX = {"items": [{"herb": "桂枝", "dose": "9g"}, {"herb": "白芍", "dose": "9g"}]}


def _withdraw(kb_copy: Path, extra: str) -> kb.KnowledgeBase:
    path = kb_copy / "herbs" / "all.yaml"
    text = path.read_text(encoding="utf-8")
    marker = "- {id: guizhi, name: 桂枝,"
    assert marker in text
    path.write_text(text.replace(marker, marker + f" deprecated: true,{extra}"), encoding="utf-8")
    return kb.load(kb_copy, cache=False)


def test_a_withdrawn_herb_is_flagged_with_its_replacement(kb_copy: Path) -> None:
    before = [f.kind for f in review(RX, kb.load(kb_copy, cache=False)).findings]
    assert "deprecated" not in before
    base = _withdraw(kb_copy, " replaced_by: rougui, deprecation_reason: 测试停用,")
    rv = review(RX, base)
    found = [f for f in rv.findings if f.kind == "deprecated"]
    assert len(found) == 1 and found[0].items == (0,) and found[0].severity.value == "warning"
    assert "知识库已停用桂枝（测试停用），由肉桂替代" in found[0].message_zh
    assert found[0].detail == {"entry": "herb:guizhi", "replaced_by": "rougui"}
    assert rv.resolution[0]["herb_id"] == "guizhi"  # still resolved and checked for everything else


def test_without_a_replacement_the_finding_says_so_plainly(kb_copy: Path) -> None:
    rv = review(RX, _withdraw(kb_copy, ""))
    (found,) = [f for f in rv.findings if f.kind == "deprecated"]
    assert found.message_en == "桂枝: 桂枝 is withdrawn from the knowledge base" and "replaced_by" not in found.detail
