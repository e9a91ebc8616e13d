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


def test_cases_join_the_graph_and_explain_a_formula(fixture_kb: kb.KnowledgeBase) -> None:
    from types import SimpleNamespace as NS

    def case(cid: str, herbs: list[str], symptoms: list[str]) -> NS:
        return NS(id=cid, department=None, syndrome_id=None,
                  symptoms=[fixture_kb.resolve(s, "symptom").id for s in symptoms],
                  herbs=[NS(herb_id=fixture_kb.resolve_herb(h).id if fixture_kb.resolve_herb(h).resolved else None,
                            dose_g=6.0) for h in herbs])  # fmt: skip

    g = fixture_kb.graph.copy()
    counts = graph.link_cases(g, fixture_kb, [
        case("c1", ["麻黄", "桂枝", "苦杏仁", "甘草", "不存在的药"], ["恶寒重", "无汗"]),  # 麻黄汤, herbs as written
        case("c2", ["桂枝", "甘草"], ["头痛"]),  # two herbs of 麻黄汤 and of 桂枝汤: follows neither
    ])  # fmt: skip
    assert counts == {"cases": 2, "presents": 3, "prescribes": 6, "follows": 1}
    assert graph.cases_following(g, fixture_kb, "麻黄汤") == [("c1", 1.0)]
    assert graph.cases_following(g, fixture_kb, "桂枝汤") == []
    assert "case:c1" not in fixture_kb.graph  # the shared graph is left as it was


def test_patent_medicines_containing_a_herb(fixture_kb: kb.KnowledgeBase) -> None:
    # the fixture's 四君子丸 (a Pharmacopoeia version of 四君子汤) holds 党参; 四君子汤 itself does not
    assert graph.patent_medicines_containing(fixture_kb, "党参") == [("sijunzi-tang", "四君子丸")]
    assert "sijunzi-tang" not in graph.formulas_containing(fixture_kb, "党参")
    assert graph.patent_medicines_containing(fixture_kb, "麸炒白术") == [("sijunzi-tang", "四君子丸")]  # any form
    assert graph.patent_medicines_containing(fixture_kb, "麻黄") == []
