"""The safety review on the fixture knowledge base: each kind fires when it should and only then."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import kb
from cds import review
from cds.cards import review_cards


def rx(*items: tuple[str, Any], **extra: Any) -> dict[str, Any]:
    out: list[dict[str, Any]] = []
    for name, dose in items:
        out.append({"herb": name, **({"dose": dose} if isinstance(dose, str) else {"dose_g": dose} if dose else {})})
    return {"items": out, **extra}


def kinds(rv: Any, kind: str) -> list[Any]:
    return [f for f in rv.findings if f.kind == kind]


NOT_PREGNANT = {"pregnant": False, "sex": "female", "age_years": 30}


@pytest.mark.parametrize(
    ("a", "b", "kind"),
    [("甘草", "甘遂", "incompatibility"), ("国老", "芫花", "incompatibility"), ("炙甘草", "海藻", "incompatibility"),
     ("黑顺片", "姜半夏", "incompatibility"), ("制川乌", "法半夏", "incompatibility"), ("生川乌", "半夏", "incompatibility"),
     ("官桂", "赤石脂", "antagonism"), ("人参", "五灵脂", "antagonism")],
)  # fmt: skip
def test_pair_rules_fire_across_aliases_and_forms(fixture_kb: kb.KnowledgeBase, a: str, b: str, kind: str) -> None:
    rv = review(rx((a, 3), (b, 3), patient=NOT_PREGNANT), fixture_kb)
    (f,) = kinds(rv, kind)
    assert f.severity.value == "critical" and set(f.herbs) == {a, b}  # names as written
    assert f.source is not None and f.source.work and f.override_allowed


def test_no_pair_finding_without_the_partner(fixture_kb: kb.KnowledgeBase) -> None:
    rv = review(rx(("甘草", 6), ("白术", 9), ("附子", 9), ("茯苓", 9), patient=NOT_PREGNANT), fixture_kb)
    assert not kinds(rv, "incompatibility") and not kinds(rv, "antagonism")


def test_pregnancy(fixture_kb: kb.KnowledgeBase) -> None:
    pregnant = review(rx(("麝香", 0.05), ("桂枝", 6), patient={"pregnant": True}), fixture_kb)
    sev = {f.herbs[0]: f.severity.value for f in kinds(pregnant, "pregnancy")}
    assert sev == {"麝香": "critical", "桂枝": "warning"}
    unknown = review(rx(("麝香", 0.05), ("桂枝", 6), patient={"sex": "female", "age_years": 30}), fixture_kb)
    (f,) = kinds(unknown, "pregnancy")  # only the forbidden herb, as a confirm-pregnancy warning
    assert f.herbs == ("麝香",) and f.severity.value == "warning" and f.detail["confirm_pregnancy"]
    unknown_all = review(rx(("麝香", 0.05)), fixture_kb)  # nothing known about the patient
    assert len(kinds(unknown_all, "pregnancy")) == 1
    for patient in (NOT_PREGNANT, {"sex": "male"}, {"sex": "female", "age_years": 70}):
        assert not kinds(review(rx(("麝香", 0.05), ("桂枝", 6), patient=patient), fixture_kb), "pregnancy")


def test_dose(fixture_kb: kb.KnowledgeBase) -> None:
    p = {"patient": NOT_PREGNANT}
    toxic_high = kinds(review(rx(("附子", "20g"), **p), fixture_kb), "dose")
    assert [f.severity.value for f in toxic_high] == ["critical"]
    assert toxic_high[0].suggestions[0]["dose_g"] == 15.0
    assert [f.severity.value for f in kinds(review(rx(("黄芪", "2两"), **p), fixture_kb), "dose")] == ["warning"]
    assert [f.severity.value for f in kinds(review(rx(("黄芪", "3g"), **p), fixture_kb), "dose")] == ["info"]
    assert [f.severity.value for f in kinds(review(rx(("细辛", "6g"), **p), fixture_kb), "dose")] == ["warning"]
    assert not kinds(review(rx(("细辛", "3g"), ("附子", 15), ("大枣", "3枚"), **p), fixture_kb), "dose")
    # a form with its own range: 制川乌 1.5–3
    assert kinds(review(rx(("制川乌", 5), **p), fixture_kb), "dose")[0].severity.value == "critical"


def test_toxic_raw_controlled_and_banned(fixture_kb: kb.KnowledgeBase) -> None:
    rv = review(rx(("生半夏", 6), patient=NOT_PREGNANT), fixture_kb)
    toxic = {(f.rule_id, f.severity.value) for f in kinds(rv, "toxic")}
    assert ("controlled.test", "warning") in toxic and ("internal_use.shengbanxia", "critical") in toxic
    plain = kinds(review(rx(("川乌", 2), patient=NOT_PREGNANT), fixture_kb), "toxic")
    assert [f.severity.value for f in plain] == ["warning"]  # the ChP 川乌 monograph is raw: ask for the form
    assert not kinds(review(rx(("制川乌", 2), ("法半夏", 6), patient=NOT_PREGNANT), fixture_kb), "toxic")
    (banned,) = kinds(review(rx(("犀角", 3)), fixture_kb), "toxic")
    assert banned.severity.value == "critical" and not banned.override_allowed


def test_controlled_two_day_cap(fixture_kb: kb.KnowledgeBase) -> None:
    rv = review(rx(("生附子", 10), days=5, patient=NOT_PREGNANT), fixture_kb)
    f = next(f for f in kinds(rv, "toxic") if f.rule_id == "controlled.test")
    assert f.severity.value == "critical" and f.detail["total_g"] == 50.0


def test_duplicate(fixture_kb: kb.KnowledgeBase) -> None:
    (f,) = kinds(review(rx(("甘草", 6), ("炙甘草", 6)), fixture_kb), "duplicate")
    assert f.herbs == ("甘草", "炙甘草") and f.severity.value == "warning"
    (f,) = kinds(review(rx(("白术", 6), ("白术", 9)), fixture_kb), "duplicate")
    assert not kinds(review(rx(("生姜", 6), ("干姜", 6), ("炮姜", 3)), fixture_kb), "duplicate")[1:]


def test_preparation(fixture_kb: kb.KnowledgeBase) -> None:
    rv = review(
        {"items": [{"herb": "附子", "dose_g": 9}, {"herb": "石膏", "dose_g": 30, "preparation": "先煎"}]}, fixture_kb
    )
    (f,) = kinds(rv, "preparation")
    assert f.herbs == ("附子",) and f.severity.value == "info" and f.detail["required"] == "先煎"


def test_unresolved_is_reported_with_candidates(fixture_kb: kb.KnowledgeBase) -> None:
    rv = review(rx(("甘早", 6), ("白术", 9)), fixture_kb)
    (f,) = kinds(rv, "unresolved")
    assert f.herbs == ("甘早",) and "甘草" in f.detail["candidates"]
    assert rv.resolution[0]["resolved"] is False and rv.resolution[1]["resolved"] is True


def test_duration(fixture_kb: kb.KnowledgeBase) -> None:
    assert kinds(review(rx(("甘草", 6), days=10, setting="outpatient"), fixture_kb), "duration")
    assert not kinds(review(rx(("甘草", 6), days=7, setting="outpatient"), fixture_kb), "duration")
    assert not kinds(review(rx(("甘草", 6), days=10, setting="inpatient"), fixture_kb), "duration")


def test_population(fixture_kb: kb.KnowledgeBase) -> None:
    assert kinds(review(rx(("附子", 6), patient={"age_years": 8}), fixture_kb), "population")
    assert not kinds(review(rx(("附子", 6), patient={"age_years": 40}), fixture_kb), "population")


def test_classic_formula_is_clean(fixture_kb: kb.KnowledgeBase) -> None:
    rv = review(
        rx(("桂枝", 9), ("芍药", 9), ("生姜", 9), ("大枣", "3枚"), ("炙甘草", 6), patient=NOT_PREGNANT), fixture_kb
    )
    assert rv.findings == ()
    assert rv.summary == {"info": 0, "warning": 0, "critical": 0}


def test_review_carries_versions_and_resolution(fixture_kb: kb.KnowledgeBase) -> None:
    d = review(rx(("炙甘草", "6g")), fixture_kb).as_dict()
    assert d["kb_version"] == str(fixture_kb.version) and d["ruleset_version"] == fixture_kb.ruleset_version
    assert d["resolution"][0]["form"] == "炙甘草"


def test_cards(fixture_kb: kb.KnowledgeBase) -> None:
    rv = review(rx(("甘草", 6), ("甘遂", 1), ("附子", 30), patient=NOT_PREGNANT), fixture_kb)
    cards = review_cards(rv)
    assert {c["indicator"] for c in cards} >= {"critical"}
    for c in cards:
        assert len(c["summary"]) < 140 and c["source"]["label"] and c["uuid"]
        if "suggestions" in c:
            assert c["selectionBehavior"] == "at-most-one"
            assert all(a["type"] in ("create", "update", "delete") for s in c["suggestions"] for a in s["actions"])
    dose = next(c for c in cards if "附子 30 g" in c["summary"])
    assert dose["overrideReasons"] and dose["suggestions"][0]["actions"][0]["tcm"]["dose_g"] == 15.0
    assert review_cards(rv) == cards  # stable ids, for feedback


def test_fhir_medication_request(fixture_kb: kb.KnowledgeBase) -> None:
    mr = {
        "resourceType": "MedicationRequest", "status": "draft", "intent": "order", "subject": {"reference": "Patient/p1"},
        "contained": [{"resourceType": "Medication", "id": "m1", "ingredient": [
            {"itemCodeableConcept": {"text": "甘草"}, "strength": {"numerator": {"value": 6, "unit": "g"}, "denominator": {"value": 1}}},
            {"itemCodeableConcept": {"coding": [{"display": "芫花"}]}, "strength": {"numerator": {"value": 2, "unit": "g"}, "denominator": {"value": 1}}}]}],
        "medicationReference": {"reference": "#m1"},
    }  # fmt: skip
    rv = review(mr, fixture_kb)
    assert kinds(rv, "incompatibility") and rv.resolution[0]["dose_g"] == 6.0
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": mr},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": "http://loinc.org", "code": "82810-3"}]},
                      "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "77386006"}]}}}]}  # fmt: skip
    assert {f.herbs[0] for f in kinds(review(bundle, fixture_kb), "pregnancy")} == {"芫花"}


def test_fhir_invalid_resource_is_input_error(fixture_kb: kb.KnowledgeBase) -> None:
    from kb.errors import InputError

    with pytest.raises(InputError) as exc:
        review({"resourceType": "MedicationRequest", "status": "draft", "intent": "order",
                "subject": "Patient/1", "medicationReference": {"reference": "#m"}}, fixture_kb)  # fmt: skip
    assert "invalid FHIR MedicationRequest" in str(exc.value) and "subject" in str(exc.value)


def test_a_formula_written_as_one_item_is_checked_herb_by_herb(fixture_kb: kb.KnowledgeBase) -> None:
    rv = review(rx(("四君子汤", 30), ("五灵脂", 6), patient=NOT_PREGNANT), fixture_kb)
    (f,) = kinds(rv, "antagonism")  # 四君子汤 contains 人参: 人参 x 五灵脂
    assert set(f.herbs) == {"四君子汤", "五灵脂"}
    assert not kinds(rv, "unresolved")
    assert any(row["input"] == "四君子汤" and row["name"] == "人参" for row in rv.resolution)


def test_a_patent_medicine_is_checked_by_the_pharmacopoeia_list(fixture_kb: kb.KnowledgeBase) -> None:
    # the fixture records the Pharmacopoeia's 四君子丸 (党参, not 人参) as a version of 四君子汤
    rv = review(rx(("四君子丸", 9), ("五灵脂", 6), patient=NOT_PREGNANT), fixture_kb)
    assert not kinds(rv, "antagonism")  # 党参 is not 人参: 人参畏五灵脂 does not apply to the 成药
    rows = [row for row in rv.resolution if row["input"] == "四君子丸"]
    assert [row["name"] for row in rows] == ["党参", "白术", "茯苓", "甘草"]
    assert all("药典" in row["note"] for row in rows)
    rv = review(rx(("四君子丸 ", 9), patient=NOT_PREGNANT), fixture_kb)  # as written, with a stray space
    assert [row["name"] for row in rv.resolution] == ["党参", "白术", "茯苓", "甘草"]
    # 四君子汤 is the formula, not the 成药 that goes by another name: its own list
    rv = review(rx(("四君子汤", 30), ("五灵脂", 6), patient=NOT_PREGNANT), fixture_kb)
    rows = {row["name"]: row["note"] for row in rv.resolution if row["input"] == "四君子汤"}
    assert set(rows) == {"人参", "白术", "茯苓", "甘草"} and not any("药典" in n for n in rows.values())
    assert kinds(rv, "antagonism")


def test_a_name_shared_by_the_formula_and_its_patent_medicine_is_checked_by_both_lists(kb_copy: Path) -> None:
    path = kb_copy / "formulas" / "all.yaml"
    text = path.read_text(encoding="utf-8")
    assert "      name: 四君子丸\n" in text
    path.write_text(text.replace("      name: 四君子丸\n", ""), encoding="utf-8")  # the 成药 goes by 四君子汤
    rv = review(rx(("四君子汤", 30), ("五灵脂", 6), patient=NOT_PREGNANT), kb.load(kb_copy, cache=False))
    rows = {row["name"]: row["note"] for row in rv.resolution if row["input"] == "四君子汤"}
    assert set(rows) == {"人参", "白术", "茯苓", "甘草", "党参"}
    assert "药典" in rows["党参"] and "药典" not in rows["人参"]
    assert kinds(rv, "antagonism")  # the 人参 of the classical list still meets 五灵脂


# ---- deprecated: a herb curators have withdrawn still resolves (old prescriptions must), and is flagged ----
DEPRECATED_RX = {"items": [{"herb": "桂枝", "dose": "9g"}, {"herb": "白芍", "dose": "9g"}]}


def _withdraw(kb_copy: Path, extra: str) -> kb.KnowledgeBase:
    path = kb_copy / "herbs" / "all.yaml"
    text = path.read_text(encoding="utf-8")
    marker = "- {id: guizhi, name: 桂枝,"
    assert marker in text
    path.write_text(text.replace(marker, marker + f" deprecated: true,{extra}"), encoding="utf-8")
    return kb.load(kb_copy, cache=False)


def test_deprecated(kb_copy: Path) -> None:
    before = [f.kind for f in review(DEPRECATED_RX, kb.load(kb_copy, cache=False)).findings]
    assert "deprecated" not in before
    base = _withdraw(kb_copy, " replaced_by: rougui, deprecation_reason: 测试停用,")
    rv = review(DEPRECATED_RX, base)
    found = [f for f in rv.findings if f.kind == "deprecated"]
    assert len(found) == 1 and found[0].items == (0,) and found[0].severity.value == "warning"
    assert "知识库已停用桂枝（测试停用），由肉桂替代" in found[0].message_zh
    assert found[0].detail == {"entry": "herb:guizhi", "replaced_by": "rougui"}
    assert rv.resolution[0]["herb_id"] == "guizhi"  # still resolved and checked for everything else


def test_without_a_replacement_the_finding_says_so_plainly(kb_copy: Path) -> None:
    rv = review(DEPRECATED_RX, _withdraw(kb_copy, ""))
    (found,) = [f for f in rv.findings if f.kind == "deprecated"]
    assert found.message_en == "桂枝: 桂枝 is withdrawn from the knowledge base" and "replaced_by" not in found.detail
