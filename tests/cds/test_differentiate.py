"""Findings extraction, differentiation and suggestion on the fixture knowledge base."""

from __future__ import annotations

import pytest

import kb
from cds.differentiate import differentiate
from cds.extract import extract
from cds.suggest import suggest
from kb.errors import InputError

COLD = "恶寒重，发热轻，无汗，头痛，鼻塞，舌苔薄白，脉浮紧"


def names(ex) -> set[str]:  # type: ignore[no-untyped-def]
    return {t.name for t in ex.present}


def test_extraction_with_negation(fixture_kb: kb.KnowledgeBase) -> None:
    ex = extract("患者恶寒，无汗，头疼两天。否认发热、口渴。舌质红，脉象浮紧", fixture_kb)
    assert names(ex) >= {"恶寒", "无汗", "头痛", "舌红", "脉浮紧"}
    assert {t.name for t in ex.negated} == {"发热", "口渴"}  # 否认 negates the whole list
    assert "发热" not in names(ex)


def test_absence_terms_stay_findings(fixture_kb: kb.KnowledgeBase) -> None:
    ex = extract("无汗", fixture_kb)
    assert names(ex) == {"无汗"} and not ex.negated
    ex = extract("无发热", fixture_kb)
    assert not ex.present and {t.name for t in ex.negated} == {"发热"}


def test_negation_scope_ends_at_the_clause(fixture_kb: kb.KnowledgeBase) -> None:
    ex = extract("无发热，头痛", fixture_kb)
    assert names(ex) == {"头痛"} and {t.name for t in ex.negated} == {"发热"}


def test_unrecognised_spans_are_reported(fixture_kb: kb.KnowledgeBase) -> None:
    ex = extract("头痛，夜间磨牙", fixture_kb)
    assert "夜间磨牙" in ex.unrecognised


def test_differentiate_ranks_with_evidence(fixture_kb: kb.KnowledgeBase) -> None:
    out = differentiate({"text": COLD, "top_k": 1}, fixture_kb)
    (d,) = out["differentials"]
    assert d["name"] == "风寒束表证" and d["disease"] == "感冒" and d["treatment_principle"] == "辛温解表"
    assert 0 < d["score"] <= 1
    assert {s["finding"] for s in d["evidence"]["supporting"]} >= {"无汗", "脉浮紧"}
    assert d["evidence"]["paths"][0][1:] == ["风寒束表证", "辛温解表", "麻黄汤"]
    assert out["kb_version"] == str(fixture_kb.version)
    # the disease's ICD-11 TM1 code; the syndrome has none recorded, so none is shown
    assert [(c["of"], c["code"]) for c in d["codes"]] == [("disease", "SA60")]


def test_contradicting_findings_lower_the_score(fixture_kb: kb.KnowledgeBase) -> None:
    plain = differentiate({"text": "恶寒，头痛，鼻塞", "candidates": ["风寒束表证"]}, fixture_kb)
    assert plain["differentials"][0]["evidence"]["contradicting"] == []
    against = differentiate({"text": "恶寒，头痛，鼻塞，口渴", "candidates": ["风寒束表证", "气虚感冒证"]}, fixture_kb)
    fh = next(d for d in against["differentials"] if d["name"] == "风寒束表证")
    assert any(c["finding"] == "口渴" for c in fh["evidence"]["contradicting"])


def test_candidates_mode_returns_exactly_the_candidates(fixture_kb: kb.KnowledgeBase) -> None:
    out = differentiate({"text": COLD, "candidates": ["气虚感冒证", "风寒束表证", "完全不存在的证"]}, fixture_kb)
    got = [d["candidate"] for d in out["differentials"]]
    assert sorted(got) == sorted(["气虚感冒证", "风寒束表证", "完全不存在的证"])
    assert got[0] == "风寒束表证"
    unknown = next(d for d in out["differentials"] if d["candidate"] == "完全不存在的证")
    assert unknown["resolved"] is False and unknown["score"] is None
    assert any("完全不存在的证" in n for n in out["notes"])


def test_candidate_closest_match(fixture_kb: kb.KnowledgeBase) -> None:
    out = differentiate({"text": COLD, "candidates": ["风寒束表", "气虚感冒证"]}, fixture_kb)
    d = next(x for x in out["differentials"] if x["candidate"] == "风寒束表")
    assert d["syndrome_id"] == "ganmao.fenghan-shubiao" and "closest" in d["matched_by"]


@pytest.mark.parametrize(
    ("req", "field"),
    [({}, "no findings"), ({"text": ""}, "no findings"), ({"text": "今天天气很好"}, "no finding was recognised"),
     ({"text": COLD, "top_k": 0}, "top_k"), ({"text": COLD, "candidates": []}, "candidates"),
     ({"symptoms": "头痛"}, "symptoms"), ({"text": COLD, "patient": {"pregnant": True, "sex": "male"}}, "contradictory"),
     ([], "JSON object")],
)  # fmt: skip
def test_bad_input(fixture_kb: kb.KnowledgeBase, req: object, field: str) -> None:
    with pytest.raises(InputError) as exc:
        differentiate(req, fixture_kb)
    assert field in str(exc.value)


def test_unknown_disease_is_a_note_not_a_guess(fixture_kb: kb.KnowledgeBase) -> None:
    out = differentiate({"text": COLD, "disease": "不存在病"}, fixture_kb)
    assert any("不存在病" in n for n in out["notes"]) and out["differentials"]


def test_low_confidence_is_flagged(fixture_kb: kb.KnowledgeBase) -> None:
    assert differentiate({"text": "头痛"}, fixture_kb)["low_confidence"] is True


def test_suggest_explains_and_applies_modifications(fixture_kb: kb.KnowledgeBase) -> None:
    out = suggest({"text": COLD, "patient": {"pregnant": False, "sex": "male", "age_years": 30}}, fixture_kb)
    s = out["suggestions"][0]
    assert s["formula"]["name"] == "麻黄汤" and not s["withheld"]
    herbs = {p["herb"]: p for p in s["prescription"]}
    assert {"麻黄", "桂枝", "苦杏仁", "炙甘草"} <= set(herbs)
    assert "川芎" in herbs and "头痛" in herbs["川芎"]["why"]  # 加减 for 头痛
    assert s["review"]["summary"]["critical"] == 0


def test_suggestion_for_a_pregnant_patient_never_carries_a_critical_finding(fixture_kb: kb.KnowledgeBase) -> None:
    out = suggest({"text": COLD, "patient": {"pregnant": True, "sex": "female", "age_years": 30}}, fixture_kb)
    for s in out["suggestions"]:
        if s["withheld"]:
            assert s["reason"]
            continue
        assert s["review"]["summary"]["critical"] == 0
    top = out["suggestions"][0]
    # 桂枝 (慎用) stays with a warning; nothing forbidden is suggested
    assert all(f["severity"] != "critical" for f in top["review"]["findings"])


class FakeScorer:
    """A learned model that favours one syndrome (the Scorer protocol)."""

    name = "fake-scorer-1"

    def __init__(self, favour: str, against: str) -> None:
        self.favour, self.against = favour, against

    def __call__(self, findings: object, base: object) -> dict[str, float]:
        return {self.favour: 0.95, self.against: 0.05}


def test_a_learned_model_moves_the_ranking_and_is_named(fixture_kb: kb.KnowledgeBase) -> None:
    req = {"text": "恶寒，头痛，鼻塞，乏力", "top_k": 5}  # 气虚感冒证 ahead
    plain = {d["syndrome_id"]: d["score"] for d in differentiate(req, fixture_kb)["differentials"]}
    out = differentiate(req, fixture_kb, scorer=FakeScorer("ganmao.fenghan-shubiao", "ganmao.qixu"))
    with_model = {d["syndrome_id"]: d["score"] for d in out["differentials"]}
    assert with_model["ganmao.fenghan-shubiao"] > plain["ganmao.fenghan-shubiao"]
    assert with_model["ganmao.qixu"] < plain["ganmao.qixu"]
    assert "fake-scorer-1" in out["models_used"] and "fake-scorer-1" in out["method"]
