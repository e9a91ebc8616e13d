"""ICD-11 chapter 26 (TM1) codes: the table, the disorder/pattern split, and the codes the knowledge base records."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import pytest

from kb import icd11
from kb.base import KnowledgeBase


def test_table_is_the_whole_chapter() -> None:
    t = icd11.table()
    assert len(t) == 474
    assert t["SA60"] == "Common cold disorder (TM1)"
    assert t["SF8C"] == "Wind-cold fettering the lung pattern (TM1)"
    assert t["SB06.Z"] == "Edema disorders (TM1), unspecified"


@pytest.mark.parametrize(
    ("code", "kind"),
    [("SA00", "disorder"), ("SE5Z", "disorder"), ("SB06.0", "disorder"), ("SE70", "pattern"), ("SJ3Z", "pattern"),
     ("SA6O", None), ("sa60", None), ("1A00", None), ("", None)],
)  # fmt: skip
def test_kind(code: str, kind: str | None) -> None:
    assert icd11.kind(code) == kind


def test_problem_names_what_is_wrong() -> None:
    assert icd11.problem("SA60", "disorder") is None
    assert "pattern code (Wind-cold fettering the lung pattern (TM1)); a disease needs a disorder code" in str(
        icd11.problem("SF8C", "disorder")
    )
    assert "look like SA60" in str(icd11.problem("感冒", "disorder"))


def test_coding_is_a_fhir_coding() -> None:
    assert icd11.coding("SA60") == {
        "system": "http://id.who.int/icd/release/11/mms", "code": "SA60", "display": "Common cold disorder (TM1)"
    }  # fmt: skip


# ---- the built-in knowledge base ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("discipline", "disease", "code"),
    [("内科", "感冒", "SA60"), ("儿科", "感冒", "SA60"), ("内科", "消渴", "SD71"), ("内科", "不寐", "SD84"),
     ("内科", "黄疸", "SA01"), ("妇科", "痛经", "SB96"), ("妇科", "崩漏", "SB93"), ("儿科", "疳证", "SE37"),
     ("皮肤科", "蛇串疮", "SB7A"), ("耳鼻咽喉科", "鼻鼽", "SC90")],
)  # fmt: skip
def test_disease_codes(real_kb: KnowledgeBase, discipline: str, disease: str, code: str) -> None:
    [d] = [d for d in real_kb.diseases.values() if d.name == disease and d.discipline == discipline]
    assert d.codes.get("icd11") == code


def _names_with_two_codes(entries: Iterable[Any]) -> dict[str, set[str | None]]:
    by_name: dict[str, set[str | None]] = defaultdict(set)
    for e in entries:
        by_name[e.name].add(e.codes.get("icd11"))
    return {n: c for n, c in by_name.items() if len(c) > 1}


def test_a_disease_named_alike_in_two_disciplines_has_one_code(real_kb: KnowledgeBase) -> None:
    assert _names_with_two_codes(real_kb.diseases.values()) == {}


def test_codes_are_counted(real_kb: KnowledgeBase) -> None:
    coded = real_kb.stats()["codes"]
    assert coded["diseases"]["icd11"] == sum(1 for d in real_kb.diseases.values() if "icd11" in d.codes) > 80


@pytest.mark.parametrize(
    ("disease", "syndrome", "code"),
    [("咳嗽", "风寒袭肺证", "SF8C"), ("不寐", "心脾两虚证", "SF6J"), ("眩晕", "肝阳上亢证", "SF52"),
     ("胃痛", "肝气犯胃证", "SF5K"), ("水肿", "脾阳虚衰证", "SF77")],
)  # fmt: skip
def test_syndrome_codes(real_kb: KnowledgeBase, disease: str, syndrome: str, code: str) -> None:
    [sy] = [
        s for s in real_kb.syndromes.values()
        if s.name == syndrome and (d := real_kb.diseases[s.disease_id]).name == disease and d.discipline == "内科"
    ]  # fmt: skip
    assert sy.codes.get("icd11") == code


def test_syndromes_named_alike_share_one_code(real_kb: KnowledgeBase) -> None:
    """A pattern code is the pattern's, not the disease's: the same syndrome name never carries two codes."""
    assert _names_with_two_codes(real_kb.syndromes.values()) == {}
