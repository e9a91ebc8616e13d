"""Two drugs written as one name (川象贝, 乳没, 朱天冬) are reviewed as their parts, not reported unresolved."""

from __future__ import annotations

import kb
from cds.review import review


def test_a_coated_name_shows_its_coating_to_the_pregnancy_check(real_kb: kb.KnowledgeBase) -> None:
    r = review({"patient": {"pregnant": True}, "items": [{"herb": "朱天冬", "dose_g": 9}]}, real_kb).as_dict()
    assert [x["herb_id"] for x in r["resolution"]] == ["tiandong", "zhusha"]
    assert any(f["kind"] == "pregnancy" and f["severity"] == "critical" for f in r["findings"])
    assert not any(f["kind"] == "unresolved" for f in r["findings"])


def test_shorthand_pairs_resolve_to_both_drugs(real_kb: kb.KnowledgeBase) -> None:
    r = review({"items": [{"herb": "川象贝", "dose_g": 9}, {"herb": "乳没", "dose_g": 6}]}, real_kb).as_dict()
    assert [x["name"] for x in r["resolution"]] == ["川贝母", "浙贝母", "乳香", "没药"]
    assert all(x["dose_g"] is None for x in r["resolution"])  # one dose for two drugs is not either drug's dose


def test_a_distinct_name_is_not_split(real_kb: kb.KnowledgeBase) -> None:
    r = review({"items": [{"herb": "广防己", "dose_g": 9}]}, real_kb).as_dict()
    assert len(r["resolution"]) == 1 and r["resolution"][0]["herb_id"] != "fangji"
