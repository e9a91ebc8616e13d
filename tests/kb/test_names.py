"""Name resolution: each normalisation rule with a case it must resolve and one it must not."""

from __future__ import annotations

import pytest

import kb


def herb(base: kb.KnowledgeBase, text: str) -> tuple[str | None, str | None]:
    r = base.resolve_herb(text)
    return (r.name, r.form) if r.resolved else (None, None)


@pytest.mark.parametrize(
    ("text", "name", "form"),
    [
        ("甘草", "甘草", None),  # exact
        ("国老", "甘草", None),  # alias
        ("炙甘草", "甘草", "炙甘草"),  # a form the content defines
        ("黑顺片", "附子", "黑顺片"),
        ("姜半夏", "半夏", "姜半夏"),
        ("官桂", "肉桂", None),
        ("蜜甘草", "甘草", "炙甘草"),  # processing prefix -> the herb's own 蜜炙 form
        ("炒白术", "白术", "麸炒白术"),  # form alias
        ("酒当归", "当归", "酒当归"),  # processing prefix, form not described: generic form of the herb
        ("生半夏", "半夏", "生半夏"),  # raw prefix -> the raw form
        ("怀山药", "山药", None),  # regional prefix
        ("地榆炭", "地榆", "地榆炭"),  # processing suffix
        ("三七粉", "三七", "三七粉"),
        ("黃耆", "黄芪", None),  # traditional characters (and the classical 耆)
        ("當歸", "当归", None),
        ("國老", "甘草", None),
        ("大白芍", "白芍", None),  # a quality word before the name
        ("嫩党参", "党参", None),
        ("杏仁泥", "苦杏仁", None),  # a physical form after the name
        ("甘草梢", "甘草", None),
        (" 甘  草 ", "甘草", None),  # stray whitespace
        ("甘\u3000草", "甘草", None),  # full-width space
        ("「党参」", "党参", None),  # quotes
        ("ＧＡＮＣＡＯ", "甘草", None),  # full-width Latin letters, pinyin
        ("gāncǎo", "甘草", None),  # pinyin with tone marks
        ("Glycyrrhizae Radix et Rhizoma", "甘草", None),  # Latin pharmaceutical name
    ],
)
def test_resolves(fixture_kb: kb.KnowledgeBase, text: str, name: str, form: str | None) -> None:
    assert herb(fixture_kb, text) == (name, form)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("川芎", ("川芎", None)),  # a real herb is not 芎 with a 川 prefix
        ("生姜", ("生姜", None)),  # not 姜 with a 生 prefix
        ("芎", (None, None)),  # half a name is not a name
        ("广防己", (None, None)),  # a regional name for a different, banned drug
        ("川牛膝", (None, None)),  # a different herb from 牛膝 (and not in the fixture)
        ("熟地黄", (None, None)),  # its own monograph, not a form of 地黄
        ("制剂", (None, None)),  # a processing prefix on a non-herb
        ("木炭", (None, None)),  # a suffix on a non-herb
        ("黃連", (None, None)),  # traditional characters of a herb the fixture lacks
        ("甘", (None, None)),
        ("白附子", (None, None)),  # a different toxic drug, never 附子 with a prefix (and not in the fixture)
        ("甜杏仁", (None, None)),  # not 苦杏仁
        ("明党参", (None, None)),  # not 党参
        ("附子壳", (None, None)),  # 壳 names another part: not a form suffix
        ("炒蒲黄", ("蒲黄", "炒蒲黄")),  # plain stir-fried: a generic form, never the charred 蒲黄炭
        ("蒲黄炭", ("蒲黄", "蒲黄炭")),
        ("", (None, None)),
    ],
)
def test_does_not_resolve_wrongly(fixture_kb: kb.KnowledgeBase, text: str, expected: tuple) -> None:
    assert herb(fixture_kb, text) == expected


def test_unresolved_names_come_with_candidates(fixture_kb: kb.KnowledgeBase) -> None:
    r = fixture_kb.resolve_herb("甘早")
    assert not r.resolved
    assert "甘草" in r.candidates


def test_distinct_name_explains_itself(fixture_kb: kb.KnowledgeBase) -> None:
    r = fixture_kb.resolve_herb("广防己")
    assert not r.resolved and r.how == "distinct"
    assert "防己" in (r.note or "")


def test_raw_form_is_flagged(fixture_kb: kb.KnowledgeBase) -> None:
    assert fixture_kb.resolve_herb("生川乌").raw
    assert not fixture_kb.resolve_herb("制川乌").raw


@pytest.mark.parametrize(
    ("text", "name"),
    [("怕冷", "畏寒"), ("畏冷", "畏寒"), ("舌质红", "舌红"), ("舌苔薄白", "苔薄白"), ("脉象浮紧", "脉浮紧"),
     ("浮紧脉", "脉浮紧"), ("头 疼", "头痛")],
)  # fmt: skip
def test_symptom_synonyms_and_variants(fixture_kb: kb.KnowledgeBase, text: str, name: str) -> None:
    r = fixture_kb.resolve(text, "symptom")
    assert r.resolved and r.name == name


@pytest.mark.parametrize("text", ["冷", "舌", "脉紧浮浮"])
def test_symptom_nonsense_is_unresolved(fixture_kb: kb.KnowledgeBase, text: str) -> None:
    assert not fixture_kb.resolve(text, "symptom").resolved


def test_formula_and_syndrome_names(fixture_kb: kb.KnowledgeBase) -> None:
    assert fixture_kb.resolve("桂枝汤", "formula").id == "guizhi-tang"
    r = fixture_kb.resolve("桂枝汤加减", "formula")
    assert r.id == "guizhi-tang" and "加减" in (r.note or "")
    assert fixture_kb.resolve("感冒·风寒束表证", "syndrome").id == "ganmao.fenghan-shubiao"


def test_form_safety_inherits_unless_overridden(fixture_kb: kb.KnowledgeBase) -> None:
    zhi = fixture_kb.safety("chuanwu", "zhichuanwu")
    raw = fixture_kb.safety("chuanwu", "shengchuanwu")
    assert (zhi.toxicity, zhi.pregnancy, zhi.internal_use) == ("有毒", "慎用", "allowed")
    assert (raw.toxicity, raw.pregnancy, raw.controlled) == ("大毒", "禁用", True)  # inherited + own
    assert fixture_kb.safety("gancao", "zhigancao").dose_g == (2.0, 10.0)  # inherited from 甘草
