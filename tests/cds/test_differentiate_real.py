"""Findings extraction and differentiation on the real knowledge base: what a clinic note says, read the way a
physician reads it (the patient's age and sex, a pregnancy, an attribute that speaks of the subject before it)."""

from __future__ import annotations

import pytest

import kb
from cds import differentiate as dmod
from cds.differentiate import differentiate
from cds.extract import demographics, extract, subterms


def present(text: str, base: kb.KnowledgeBase) -> set[str]:
    return {t.name for t in extract(text, base).present}


@pytest.mark.parametrize(
    ("text", "age", "child", "sex", "pregnant"),
    [
        ("男，28岁，程序员。昨晚淋雨", 28.0, None, "male", None),
        ("女孩，4岁。发热2天", 4.0, True, "female", None),
        ("男婴，2个月。吐奶", pytest.approx(2 / 12), True, "male", None),
        ("7岁半男孩，上课走神", 7.5, True, "male", None),
        ("女，28岁，孕28周。脸肿", 28.0, None, "female", True),
        ("女，26岁。月经推迟，尿妊娠试验阴性", 26.0, None, "female", None),
        ("婚后5年未孕，月经后期", None, None, None, None),
        ("头痛，恶寒", None, None, None, None),
    ],
)  # fmt: skip
def test_demographics_from_the_note(text: str, age: object, child: object, sex: object, pregnant: object) -> None:
    d = demographics(text)
    assert (d.age_years, d.child, d.sex, d.pregnant) == (age, child, sex, pregnant)


def test_a_negation_cue_inside_a_term_negates_nothing_after_it(real_kb: kb.KnowledgeBase) -> None:
    ex = extract("口不渴或渴喜热饮", real_kb)
    assert {t.name for t in ex.present} >= {"口不渴", "渴喜热饮"} and not ex.negated


@pytest.mark.parametrize("text", ["不动也出汗", "稍微动一下就出汗"])
def test_negation_scope_stops_at_a_new_statement(real_kb: kb.KnowledgeBase, text: str) -> None:
    assert "汗出" in present(text, real_kb)


def test_no_cause_is_not_no_symptom(real_kb: kb.KnowledgeBase) -> None:
    ex = extract("无明显诱因出现头痛", real_kb)
    assert "头痛" in {t.name for t in ex.present} and not ex.negated


def test_an_attribute_speaks_of_the_subject_before_it(real_kb: kb.KnowledgeBase) -> None:
    got = present("月经推后10余天，量少，色淡，质稀", real_kb)
    assert {"月经后期", "月经过少", "经色淡"} <= got
    assert {"带下量多", "黄带", "带下臭秽"} <= present("白带多，色黄，有臭味", real_kb)


def test_words_in_between_and_everyday_words(real_kb: kb.KnowledgeBase) -> None:
    assert "腰膝酸软" in present("腰和膝盖酸软", real_kb)
    assert "小腹隐痛" in present("小肚子隐隐作痛", real_kb)
    assert "头痛" not in present("头不痛", real_kb)  # never across a negation


def test_a_measured_temperature_is_a_fever(real_kb: kb.KnowledgeBase) -> None:
    assert {"发热", "壮热"} <= present("体温39.3℃", real_kb)
    assert "壮热" not in present("体温37.6℃", real_kb) and "发热" in present("体温37.6℃", real_kb)
    assert not present("今早零下5度出门", real_kb)


def test_a_compound_finding_is_read_from_its_parts(real_kb: kb.KnowledgeBase) -> None:
    names = {real_kb.symptoms[sid].name for sid, _ in subterms("舌红苔薄黄", real_kb)}
    assert names == {"舌红", "苔薄黄"}
    assert subterms("不恶寒", real_kb) == ()  # not 恶寒
    out = differentiate({"symptoms": ["小腹冷痛", "疼痛拒按", "得温痛减", "经色紫暗", "有血块", "舌紫暗", "脉沉紧"],
                         "top_k": 5}, real_kb)  # fmt: skip
    # the profile's 经前或经期小腹冷痛拒按 is credited from 小腹冷痛 and 拒按
    top = next(d for d in out["differentials"] if d["syndrome_id"] == "fu-tongjing.hanning-xueyu")
    assert "经前或经期小腹冷痛拒按" in {s["matches"] for s in top["evidence"]["supporting"]}


WIND_HEAT_COLD = "发热，咳嗽，鼻塞流涕，咽痛，舌红，苔薄黄，脉浮数"


def test_a_child_is_read_as_a_child(real_kb: kb.KnowledgeBase) -> None:
    child = differentiate({"text": "男孩，5岁。" + WIND_HEAT_COLD, "top_k": 3}, real_kb)
    adult = differentiate({"text": "男，45岁。" + WIND_HEAT_COLD, "top_k": 3}, real_kb)
    assert child["differentials"][0]["discipline"] == "儿科"
    assert all(d["discipline"] != "儿科" for d in adult["differentials"])
    given = differentiate({"text": WIND_HEAT_COLD, "patient": {"age_years": 5}, "top_k": 1}, real_kb)
    assert given["differentials"][0]["discipline"] == "儿科"  # the patient object says it too


def test_a_man_is_never_given_a_gynaecological_syndrome(real_kb: kb.KnowledgeBase) -> None:
    text = "小腹冷痛，得温痛减，畏寒肢冷，面色青白，舌紫暗，苔白，脉沉紧"
    out = differentiate({"text": "男，35岁。" + text, "top_k": 5}, real_kb)
    assert all(d["discipline"] != "妇科" for d in out["differentials"])


def test_pregnancy_diseases_need_a_pregnancy(real_kb: kb.KnowledgeBase) -> None:
    text = "尿频尿急，尿道灼痛，小便黄赤，口苦，舌红，苔黄腻，脉滑数"
    plain = differentiate({"text": "女，31岁。" + text, "top_k": 3}, real_kb)
    assert all(d["disease"] != "子淋" for d in plain["differentials"])
    pregnant = differentiate({"text": "女，31岁，孕24周。" + text, "top_k": 3}, real_kb)
    assert pregnant["differentials"][0]["disease"] == "子淋"


def test_a_shared_candidate_name_is_read_in_the_disease_of_the_others(real_kb: kb.KnowledgeBase) -> None:
    # 阴虚火旺证 is a syndrome of several diseases; the other candidates are syndromes of 汗证
    cands = ["阴虚火旺证", "肺卫不固证", "邪热郁蒸证", "心血不足证"]
    out = differentiate({"text": "盗汗，五心烦热，午后潮热，两颧色红，口渴，舌红少苔，脉细数", "candidates": cands},
                        real_kb)  # fmt: skip
    first = out["differentials"][0]
    assert first["name"] == "阴虚火旺证" and first["disease"] == "汗证"
    assert sorted(d["candidate"] for d in out["differentials"]) == sorted(cands)


def test_the_fast_ranking_gives_the_scores_of_the_shown_evidence(real_kb: kb.KnowledgeBase) -> None:
    idx, p = dmod.index_for(real_kb), dmod.params()
    for text in (
        "女孩，4岁。" + WIND_HEAT_COLD,
        "恶寒发热，无汗，头项强痛，舌苔薄白而润，脉浮紧",
        "孕10周，恶心呕吐，不欲饮食",
    ):
        f = dmod.read_findings({"text": text}, real_kb)
        pt = dmod.patient_side(idx, f)
        logits, _ = dmod._logits(idx, f, p, pt)
        for sid in idx.rows[::37]:
            full = dmod.score(idx, real_kb.syndromes[sid], f, p, pt)
            assert full.logit == pytest.approx(logits[idx.row_of[sid]])


def test_a_life_stage_long_past_is_history(real_kb: kb.KnowledgeBase) -> None:
    assert "产后" in present("产后3周，哺乳期", real_kb)
    assert "产后" not in present("女，27岁，产后1年", real_kb)


def test_clinic_note_shorthand(real_kb: kb.KnowledgeBase) -> None:
    got = present("纳差，寐欠安，尿黄便结，舌质紫暗，有瘀斑，脉涩", real_kb)
    assert {"食欲不振", "失眠", "小便黄", "大便干结", "舌紫暗", "舌有瘀斑", "脉涩"} <= got
