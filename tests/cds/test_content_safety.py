"""Safety lint over the built-in content: what the knowledge base itself proposes must pass its own review."""

from __future__ import annotations

import pytest

from cds.review import review
from kb.base import KnowledgeBase


def _name(kb: KnowledgeBase, herb_id: str, form_id: str | None) -> str:
    return kb.forms[form_id].name if form_id else kb.herbs[herb_id].name


def test_no_modification_adds_a_critical_combination(real_kb: KnowledgeBase) -> None:
    """A modification (加减) never adds a herb that makes a critical finding (十八反, 十九畏, external-only or
    banned use) with the main formula's remaining herbs or with the other herbs it adds. Findings the main
    formula carries on its own (海藻玉壶汤 holds 海藻 and 甘草) are the formula's, reviewed when it is suggested."""
    bad = []
    for sy in real_kb.syndromes.values():
        formula = real_kb.formulas[sy.formula_ids[0]]
        for k, mod in enumerate(sy.modifications):
            added = {_name(real_kb, a.herb_id, a.form_id) for a in mod.add}
            items = [
                {"herb": _name(real_kb, i.herb_id, i.form_id)}
                for i in formula.composition
                if i.herb_id not in mod.remove
            ] + [{"herb": h} for h in sorted(added)]
            for f in review({"items": items}, real_kb).findings:
                if f.severity.value == "critical" and set(f.herbs) & added:
                    bad.append((sy.id, k, formula.name, f.kind, f.herbs))
    assert bad == []


PREGNANCY_DISEASES = ("妊娠恶阻", "妊娠腹痛", "胎漏·胎动不安", "滑胎", "子肿", "子晕", "子淋")


def test_diseases_of_pregnancy_propose_nothing_forbidden_in_pregnancy(real_kb: KnowledgeBase) -> None:
    """The formulas and modifications of the diseases of pregnancy hold no herb the Pharmacopoeia forbids (禁用)
    or says to avoid (忌用) in pregnancy; 慎用 (caution) stays possible, as in the textbooks (桂枝茯苓丸)."""
    diseases = [d for d in real_kb.diseases.values() if d.discipline == "妇科" and d.name in PREGNANCY_DISEASES]
    assert len(diseases) == len(PREGNANCY_DISEASES)
    bad = []
    for d in diseases:
        for sid in d.syndrome_ids:
            sy = real_kb.syndromes[sid]
            herbs = [i for fid in sy.formula_ids for i in real_kb.formulas[fid].composition]
            herbs += [a for mod in sy.modifications for a in mod.add]
            for i in herbs:
                if real_kb.safety(i.herb_id, i.form_id).pregnancy in ("禁用", "忌用"):
                    bad.append((sid, i.written))
    assert bad == []


def test_formulas_with_a_herb_forbidden_in_pregnancy_say_so(real_kb: KnowledgeBase) -> None:
    """A formula holding a herb the Pharmacopoeia forbids (禁用) or says to avoid (忌用) in pregnancy names
    pregnancy in its cautions (at the level its own monograph gives: 安宫牛黄丸 says 孕妇慎用). An ingredient that
    is removed before use (天台乌药散's 巴豆, fried with 川楝子 and discarded) does not count."""
    silent = []
    for f in real_kb.formulas.values():
        strict = [
            i.written
            for i in f.composition
            if real_kb.safety(i.herb_id, i.form_id).pregnancy in ("禁用", "忌用") and "不用" not in (i.note or "")
        ]
        if strict and not any("孕妇" in c for c in f.cautions):
            silent.append((f.name, strict))
    assert silent == []


def test_a_patent_medicine_is_reviewed_by_what_the_pharmacy_dispenses(real_kb: KnowledgeBase) -> None:
    # 柏子养心丸 in the Pharmacopoeia holds 朱砂 (the classical formula of the name does not)
    rv = review({"patient": {"pregnant": True}, "items": [{"herb": "柏子养心丸", "dose": "9g"}]}, real_kb)
    (f,) = [f for f in rv.findings if f.severity.value == "critical"]
    assert f.kind == "pregnancy" and "朱砂" in f.message_zh


def test_a_raw_toxic_drug_inside_a_patent_medicine_is_not_a_decoction_piece(real_kb: KnowledgeBase) -> None:
    # 藿香正气水 holds 生半夏 by the Pharmacopoeia's own method: no "must be processed" alarm, an info naming it
    rv = review({"items": [{"herb": "藿香正气水", "dose": "10ml"}]}, real_kb)
    assert [(f.kind, f.severity.value) for f in rv.findings] == [("toxic", "info")]
    assert "生半夏" in rv.findings[0].message_zh and rv.findings[0].detail["patent_medicine"]
    # the same drug written as a decoction piece is still refused
    rv = review({"items": [{"herb": "生半夏", "dose": "9g"}]}, real_kb)
    assert any(f.kind == "toxic" and f.severity.value == "critical" for f in rv.findings)


def test_a_suggestion_names_the_patent_medicines_and_which_suit_the_patient(real_kb: KnowledgeBase) -> None:
    from cds.suggest import suggest

    text = "心悸，心烦，失眠，多梦，健忘，口干咽燥，手足心热，盗汗，舌红少苔，脉细数"
    for pregnant, suitable in ((False, True), (True, False)):  # 天王补心丸 holds 朱砂: forbidden in pregnancy
        patient = {"pregnant": pregnant, "sex": "female", "age_years": 35}
        out = suggest({"text": text, "patient": patient}, real_kb)
        s = next(s for s in out["suggestions"] if s.get("formula", {}).get("name") == "天王补心丹")
        (pm,) = s["patent_medicines"]
        assert pm["name"] == "天王补心丸" and "朱砂" in pm["composition"] and pm["suitable"] is suitable
        assert ("朱砂" in pm["reason"]) if not suitable else "reason" not in pm


def test_processed_pinellia_over_the_range_is_a_dose_warning_and_still_clashes_with_aconite(
    real_kb: KnowledgeBase,
) -> None:
    rv = review(
        {"patient": {"age_years": 6}, "items": [{"herb": "法半夏", "dose": "15g"}, {"herb": "陈皮", "dose": "6g"}]},
        real_kb,
    )
    assert [(f.kind, f.severity.value) for f in rv.findings] == [("dose", "warning")]
    rv = review({"items": [{"herb": "生半夏", "dose": "15g"}]}, real_kb)
    assert any(f.kind == "dose" and f.severity.value == "critical" for f in rv.findings)
    rv = review({"items": [{"herb": "姜半夏", "dose": "9g"}, {"herb": "黑顺片", "dose": "9g"}]}, real_kb)
    assert any(f.severity.value == "critical" and "半夏" in f.message_zh for f in rv.findings)


def _population_findings(real_kb: KnowledgeBase, patient: dict, *items: str) -> list[tuple[str, str, str]]:
    rv = review({"patient": patient, "items": [{"herb": h, "dose": "6g"} for h in items]}, real_kb)
    return [(f.severity.value, f.rule_id, f.message_zh) for f in rv.findings if f.kind == "population"]


def test_a_herb_restricted_for_the_patients_group_is_reported(real_kb: KnowledgeBase) -> None:
    # 罂粟壳 儿童禁用: critical, and it replaces the generic "toxic herb for a child" reminder
    assert _population_findings(real_kb, {"age_years": 6}, "罂粟壳") == [
        ("critical", "population.yingsuqiao.儿童", "罂粟壳：儿童禁用")
    ]
    # an elderly patient: no restriction recorded, so the reminder for a toxic herb
    assert [r for _, r, _ in _population_findings(real_kb, {"age_years": 70}, "罂粟壳")] == ["population.age-toxic"]
    # 马兜铃: 婴幼儿禁用 outranks 儿童慎用 for a two-year-old; a six-year-old gets the 慎用
    assert _population_findings(real_kb, {"age_years": 2}, "马兜铃")[0][2] == "马兜铃：婴幼儿禁用"
    assert _population_findings(real_kb, {"age_years": 6}, "马兜铃")[0][:1] == ("warning",)


def test_a_breastfeeding_patient_is_told_about_herbs_that_stop_lactation(real_kb: KnowledgeBase) -> None:
    lactating = {"age_years": 30, "sex": "female", "pregnant": False, "lactating": True}
    assert _population_findings(real_kb, lactating, "炒麦芽", "陈皮") == [
        ("warning", "population.maiya.哺乳期", "炒麦芽：哺乳期不宜")  # the form inherits the herb's restriction
    ]
    assert _population_findings(real_kb, {**lactating, "lactating": False}, "炒麦芽") == []
    assert _population_findings(real_kb, {**lactating, "lactating": None}, "炒麦芽") == []


def test_a_young_childs_dose_is_read_against_the_paediatric_share_of_the_adult_range(real_kb: KnowledgeBase) -> None:
    def dose_findings(age: float | None, *items: tuple[str, str]) -> list[tuple[str, str]]:
        rv = review({"patient": {"age_years": age}, "items": [{"herb": h, "dose": d} for h, d in items]}, real_kb)
        return [(f.severity.value, f.message_zh) for f in rv.findings if f.kind == "dose"]

    # 甘草 2-10 g for an adult; a child of 2 (幼儿) takes half: 1-5 g
    assert dose_findings(2, ("甘草", "6g")) == [("info", "甘草 6 g 超过幼儿参考用量（成人量的1/2：1–5 g）")]
    assert dose_findings(2, ("甘草", "1.5g")) == []  # below the adult range is what a child's dose is
    assert dose_findings(30, ("甘草", "1.5g"))[0][0] == "info"  # ... for an adult it is below the usual range
    assert dose_findings(8, ("甘草", "6g")) == []  # school age: the adult dose
    assert dose_findings(2, ("甘草", "12g"))[0][0] == "warning"  # over the adult maximum: as for anyone


def test_a_suggestion_for_a_young_child_takes_the_paediatric_share(real_kb: KnowledgeBase) -> None:
    from cds.suggest import suggest

    text = "发热，恶寒，无汗，鼻塞，流清涕，咳嗽，舌淡红苔薄白，脉浮紧"
    s = suggest({"text": text, "patient": {"age_years": 4}}, real_kb)["suggestions"][0]
    assert any(a["action"] == "child_dose" and a["share"] == "2/3" for a in s["adaptations"])
    grown = {i.written: i.dose_g for i in real_kb.formulas[s["formula"]["id"]].composition}
    reduced = [(p["dose_g"], grown[p["herb"]]) for p in s["prescription"] if grown.get(p["herb"]) and p["dose_g"]]
    assert len(reduced) >= 5 and all(d < adult for d, adult in reduced)  # every herb of the formula, for the child


def test_hepatic_and_renal_impairment_are_read_from_the_patient(real_kb: KnowledgeBase) -> None:
    both = {"age_years": 50, "sex": "male", "hepatic_impairment": True, "renal_impairment": True}
    assert _population_findings(real_kb, both, "朱砂", "苦楝皮") == [
        ("critical", "population.zhusha.肝功能不全", "朱砂：肝功能不全、肾功能不全禁用"),
        ("warning", "population.kulianpi.肝功能不全", "苦楝皮：肝功能不全、肾功能不全慎用"),
    ]
    kidney = {"age_years": 50, "sex": "male", "renal_impairment": True}
    assert _population_findings(real_kb, kidney, "马兜铃", "黄药子") == [
        ("critical", "population.madouling.肾功能不全", "马兜铃：肾功能不全禁用")
    ]  # 黄药子 is restricted for the liver only
    assert _population_findings(real_kb, {"age_years": 50, "sex": "male"}, "朱砂") == []


def test_an_impairment_flag_that_is_not_a_boolean_is_refused() -> None:
    from cds.prescription import parse
    from kb.errors import InputError

    with pytest.raises(InputError) as exc:
        parse({"patient": {"renal_impairment": "yes"}, "items": [{"herb": "甘草", "dose": "6g"}]})
    assert "patient.renal_impairment" in str(exc.value)


def test_a_paediatric_syndromes_modifications_shrink_only_for_a_child_under_3(real_kb: KnowledgeBase) -> None:
    from cds.suggest import suggest

    text = "发热，恶寒，无汗，鼻塞，流清涕，咳嗽，舌淡红苔薄白，指纹浮红"

    def shares(age: float) -> set[float]:
        """The share each changed dose got, to the nearest of 1/2, 2/3 and 3/4 (doses are rounded after scaling)."""
        s = suggest({"text": text, "patient": {"age_years": age}}, real_kb)["suggestions"][0]
        assert real_kb.diseases[real_kb.syndromes[s["syndrome_id"]].disease_id].discipline == "儿科"
        (a,) = [a for a in s["adaptations"] if a["action"] == "child_dose"]
        return {min((0.5, 2 / 3, 0.75), key=lambda x: abs(x - d["to_g"] / d["from_g"])) for d in a["doses"]}

    assert shares(1.5) == {0.5, 0.75}  # the formula's adult doses halved; the modifications (written for 3-7) x 3/4
    assert shares(5) == {2 / 3}  # 2/3 of the formula's doses; the modifications as written
