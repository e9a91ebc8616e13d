from __future__ import annotations

import kb
from kb import graph


def test_formulas_containing_a_herb_include_its_forms(fixture_kb: kb.KnowledgeBase) -> None:
    # 桂枝汤 lists 炙甘草: a form of 甘草
    assert set(graph.formulas_containing(fixture_kb, "甘草")) == {"guizhi-tang", "sijunzi-tang", "mahuang-tang"}
    assert graph.formulas_containing(fixture_kb, "芍药") == ["guizhi-tang"]


def test_formulas_for_syndrome_main_first(fixture_kb: kb.KnowledgeBase) -> None:
    assert graph.formulas_for_syndrome(fixture_kb, "ganmao.fenghan-shubiao") == ["mahuang-tang", "guizhi-tang"]


def test_syndromes_and_symptoms(fixture_kb: kb.KnowledgeBase) -> None:
    assert set(graph.syndromes_of_disease(fixture_kb, "感冒")) == {"ganmao.fenghan-shubiao", "ganmao.qixu"}
    roles = dict(graph.symptoms_of_syndrome(fixture_kb, "ganmao.fenghan-shubiao"))
    assert roles["wu2han4"] == "key" and roles["mai4fu2jin3"] == "pulse"


def test_explanation_paths(fixture_kb: kb.KnowledgeBase) -> None:
    paths = graph.explanation_paths(fixture_kb, "无汗", herb="桂枝")
    assert ["无汗", "风寒束表证", "辛温解表", "麻黄汤", "桂枝"] in paths
    assert all(p[-1] == "桂枝" for p in paths)
    assert graph.explanation_paths(fixture_kb, "无汗", formula="四君子汤") == []
