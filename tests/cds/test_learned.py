"""Learned models and the case base inside differentiation and suggestion (cds.learned), on the real knowledge
base with tiny models built here: what they change in an answer, that the answer names them, and that nothing
they propose escapes the safety review."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import kb
from cds import learned
from cds.differentiate import differentiate
from cds.suggest import suggest
from kb.errors import ArtifactError
from kb.formula_match import match_formulas
from models.casebase import Case, CaseHerb, Hit

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

CHAIHU_SHUGAN = ["柴胡", "香附", "川芎", "陈皮", "枳壳", "白芍", "甘草"]
NOTE = {"text": "胁肋胀痛，走窜不定，情志抑郁，善太息，嗳气，舌淡红苔薄白，脉弦。", "top_k": 5}


def ids(base: kb.KnowledgeBase, names: list[str]) -> list[str]:
    return [base.resolve_herb(n).id for n in names]


# ---- which formula a prescription follows ---------------------------------------------------------------
def test_a_prescription_built_on_a_formula_matches_it(real_kb: kb.KnowledgeBase) -> None:
    rx = ids(real_kb, [*CHAIHU_SHUGAN, "郁金", "川楝子"])
    top = match_formulas(real_kb, rx)[0]
    assert top.name == "柴胡疏肝散" and top.coverage == 1.0 and top.shared == 7
    # one herb of seven left out still matches; the principal herb (柴胡) left out does not
    assert match_formulas(real_kb, ids(real_kb, [h for h in CHAIHU_SHUGAN if h != "陈皮"]))[0].name == "柴胡疏肝散"
    assert all(m.name != "柴胡疏肝散" for m in match_formulas(real_kb, ids(real_kb, CHAIHU_SHUGAN[1:])))


def test_a_two_herb_formula_inside_a_large_prescription_is_not_a_match(real_kb: kb.KnowledgeBase) -> None:
    big = ids(real_kb, ["白芍", "甘草", "当归", "熟地黄", "川芎", "黄芪", "党参", "茯苓"])
    assert all(m.name != "芍药甘草汤" for m in match_formulas(real_kb, big))
    assert match_formulas(real_kb, ids(real_kb, ["白芍", "甘草"]))[0].name == "芍药甘草汤"
    assert match_formulas(real_kb, [None, None]) == []


# ---- the department model as a prior --------------------------------------------------------------------
@pytest.fixture(scope="module")
def department_model() -> object:
    from models.case_classify import TfidfClassifier

    texts = ["月经后期，经行腹痛，带下量多", "经前乳房胀痛，月经量少", "产后恶露不绝，小腹痛", "痛经，经血有块",
             "咳嗽，发热，咽痛", "胃脘胀痛，嗳气", "头痛，眩晕，失眠", "胁肋胀痛，口苦"]  # fmt: skip
    return TfidfClassifier(ngram=(1, 2), c=1.0).fit(texts, [3, 3, 3, 3, 0, 0, 0, 0])


def test_the_department_prior_moves_syndromes_of_that_department_and_is_named(
    real_kb: kb.KnowledgeBase, department_model: object
) -> None:
    prior = learned.DepartmentPrior(department_model)
    req = {"text": "经前乳房胀痛，胁肋胀痛，月经量少，善太息，脉弦", "top_k": 30}
    plain = differentiate(req, real_kb)
    with_prior = differentiate(req, real_kb, scorer=prior)
    assert prior.name in with_prior["models_used"] and prior.name in with_prior["method"]

    def gyn_mass(ans: dict) -> float:
        return sum(d["score"] for d in ans["differentials"] if d["discipline"] == "妇科")

    assert gyn_mass(with_prior) > gyn_mass(plain)
    opinion = prior(learned_findings(real_kb, req), real_kb)
    gyn = [p for sid, p in opinion.items() if real_kb.diseases[real_kb.syndromes[sid].disease_id].discipline == "妇科"]
    internal = [p for sid, p in opinion.items()
                if real_kb.diseases[real_kb.syndromes[sid].disease_id].discipline == "内科"]  # fmt: skip
    assert max(gyn) > max(internal)  # per syndrome, the department's probability shared among its syndromes
    assert abs(sum(opinion.values()) - 1.0) < 1e-6


def learned_findings(base: kb.KnowledgeBase, req: dict) -> object:
    from cds.differentiate import read_findings

    return read_findings(req, base)


# ---- the herb model and the safety review ---------------------------------------------------------------
@pytest.fixture(scope="module")
def herb_model() -> learned.HerbModel:
    from models.herb_rec import CooccurrenceRecommender

    symptoms = ["胁痛", "善太息", "咳嗽"]
    herbs = ["三棱", "郁金", "川楝子", "杏仁", "不是药名"]
    rows = [([0, 1], [0, 1, 2]), ([0], [0, 1]), ([1], [0, 2]), ([2], [3])] * 3
    model = CooccurrenceRecommender(symptoms, herbs).fit([r[0] for r in rows], [r[1] for r in rows])
    return learned.HerbModel(model, "tiny")


def test_model_herbs_come_with_doses_inside_their_range_and_the_reason(
    real_kb: kb.KnowledgeBase, herb_model: learned.HerbModel
) -> None:
    ans = suggest(NOTE, real_kb, models=learned.Models(herbs=herb_model))
    assert herb_model.name in ans["models_used"]
    top = ans["suggestions"][0]
    offered = {h["herb"]: h for h in top["herb_suggestions"]}
    assert {"三棱", "郁金", "川楝子"} <= set(offered)  # what the model ranks first for 胁痛 and 善太息
    assert "杏仁" not in offered  # a herb for cough, a finding the patient does not have
    for h in offered.values():
        lo, hi = h["dose_range_g"]
        assert lo <= h["dose_g"] <= hi and h["dose_from"] == "middle of the herb's dose range"
        assert "herb-rec" in h["why"] and h["sources"]["model"]["findings"]
    prescribed = {p["herb"] for p in top["prescription"]}
    assert not prescribed & set(offered)


def test_a_model_herb_forbidden_in_pregnancy_is_withheld_with_the_reason(
    real_kb: kb.KnowledgeBase, herb_model: learned.HerbModel
) -> None:
    pregnant = {**NOTE, "patient": {"sex": "female", "age_years": 30, "pregnant": True}}
    ans = suggest(pregnant, real_kb, models=learned.Models(herbs=herb_model))
    checked = [s for s in ans["suggestions"] if not s["withheld"]]
    assert checked
    for s in checked:
        assert "三棱" not in {h["herb"] for h in s["herb_suggestions"]}
        withheld = {h["herb"]: h["reason"] for h in s.get("herb_suggestions_withheld", [])}
        assert "三棱" in withheld and "孕" in withheld["三棱"]
        assert all(f["severity"] != "critical" for f in s["review"]["findings"])


def test_the_model_knows_findings_through_their_broader_terms(
    real_kb: kb.KnowledgeBase, herb_model: learned.HerbModel
) -> None:
    f = learned_findings(real_kb, {"text": "胁肋胀痛"})
    recs, used = herb_model.recommend(real_kb, [t.symptom_id for t in f.present])  # type: ignore[attr-defined]
    assert [real_kb.symptoms[s].name for s in used] == ["胁痛"]
    assert recs and recs[0].score == 1.0
    recs, used = herb_model.recommend(real_kb, [real_kb.resolve("失眠", "symptom").id])
    assert recs == [] and used == []  # nothing the model knows: no model herbs, rather than its prior


# ---- similar cases --------------------------------------------------------------------------------------
class FakeCaseBase:
    name = "cases:fake:1"

    def __init__(self, base: kb.KnowledgeBase) -> None:
        def case(cid: str, herbs: list[tuple[str, float]], dept: str) -> Case:
            return Case(id=cid, findings="胁痛，善太息，" + cid, symptoms=(), source="invented",
                        herbs=tuple(CaseHerb(n, base.resolve_herb(n).id, d, "g", d) for n, d in herbs),
                        department=dept)  # fmt: skip

        self.hits = [
            Hit(case("case-a", [(h, 9.0) for h in CHAIHU_SHUGAN] + [("郁金", 12.0)], "internal medicine (内科)"), 0.8),
            Hit(case("case-b", [("郁金", 10.0), ("当归", 9.0), ("茯苓", 12.0)], "internal medicine (内科)"), 0.6),
            Hit(case("case-c", [("郁金", 30.0), ("丹参", 15.0)], "internal medicine (内科)"), 0.4),
        ]
        self.queries: list[str] = []

    def similar(self, text: str, k: int) -> list[Hit]:
        self.queries.append(text)
        return self.hits[:k]


def test_similar_cases_are_evidence_for_the_syndrome_whose_formula_they_follow(real_kb: kb.KnowledgeBase) -> None:
    cases = learned.CaseEvidence(FakeCaseBase(real_kb))
    ans = differentiate(NOTE, real_kb, models=learned.Models(cases=cases))
    assert "cases:fake:1" in ans["models_used"]
    assert [c["case_id"] for c in ans["similar_cases"]] == ["case-a", "case-b", "case-c"]
    assert ans["similar_cases"][0]["formulas"][0]["name"] == "柴胡疏肝散"
    for d in ans["differentials"]:
        via = {c["case_id"]: c["via"] for c in d["evidence"]["similar_cases"]}
        follows = "柴胡疏肝散" in d["formulas"]
        assert (via == {"case-a": "formula 柴胡疏肝散"}) == follows, d["name"]
    assert any("柴胡疏肝散" in d["formulas"] for d in ans["differentials"])


def test_case_herbs_take_the_cases_median_dose_clipped_to_the_range(real_kb: kb.KnowledgeBase) -> None:
    fake = FakeCaseBase(real_kb)
    ans = suggest(NOTE, real_kb, models=learned.Models(cases=learned.CaseEvidence(fake)))
    assert fake.queries == [NOTE["text"]]  # the case base is searched once per answer
    s = next(x for x in ans["suggestions"] if not x["withheld"])
    yujin = next(h for h in s["herb_suggestions"] if h["herb"] == "郁金")
    lo, hi = yujin["dose_range_g"]
    assert yujin["dose_g"] == min(max(12.0, lo), hi)  # median of 12, 10, 30 g, within the range
    assert yujin["sources"]["cases"]["case_ids"] == ["case-a", "case-b", "case-c"]
    assert yujin["score"] == pytest.approx(1.0)  # in every similar case
    assert "3则相似医案" in yujin["why"]


def test_without_models_the_answer_says_none_were_used(real_kb: kb.KnowledgeBase) -> None:
    ans = suggest(NOTE, real_kb, models=learned.NONE)
    assert ans["models_used"] == [] and ans["similar_cases"] == [] and ans["method"] == "kb-profile-cosine"
    assert all("herb_suggestions" not in s for s in ans["suggestions"])


# ---- loading --------------------------------------------------------------------------------------------
def test_load_skips_what_is_absent_and_refuses_what_is_broken(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="no artifacts folder"):
        learned.load(tmp_path / "missing")
    empty = learned.load(tmp_path)
    assert empty.names == [] and set(empty.skipped) == {"similar-cases", "syndrome-prior", "herb-rec"}
    with pytest.raises(ArtifactError, match="no case base"):
        learned.load(tmp_path, cases=tmp_path / "nowhere")
    broken = tmp_path / "models" / "herb-rec" / "tcm-pd"
    broken.mkdir(parents=True)
    (broken / "model_card.json").write_text(json.dumps({"task": "herb-rec"}), encoding="utf-8")
    with pytest.raises(ArtifactError):
        learned.load(tmp_path)


def test_load_opens_a_saved_herb_model(tmp_path: Path, herb_model: learned.HerbModel) -> None:
    from models.artifacts import save_artifact

    save_artifact(herb_model.model, tmp_path / "models" / "herb-rec" / "smgcn", data={"name": "tiny"}, metrics={})
    got = learned.load(tmp_path)
    assert got.herbs is not None and got.herbs.name.startswith("herb-rec:cooccurrence:smgcn@")
    assert got.describe() == [{"role": "herb-rec", "name": got.herbs.name}]


def test_models_dir_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TCM_MODELS_DIR", "none")
    assert learned.models_dir_from_env() is None
    monkeypatch.setenv("TCM_MODELS_DIR", str(tmp_path))
    assert learned.models_dir_from_env() == tmp_path


def test_load_takes_an_ensembles_linear_member_and_checks_its_files(tmp_path: Path) -> None:
    from models import case_classify as cc
    from models.artifacts import save_artifact

    texts, labels = ["咳嗽痰黄，发热恶寒", "经来腹痛，带下量多", "小儿夜啼，乳食不化"] * 4, [0, 3, 6] * 4
    cfg = cc.TransformerConfig(hidden=16, layers=1, heads=2, intermediate=32, max_len=32, epochs=1, pretrain_epochs=0)
    member = cc.TransformerClassifier(cfg, cc.CharTokenizer.build(texts, 1), [0, 3, 6])
    ens = cc.EnsembleClassifier(cc.TfidfClassifier().fit(texts, labels), member, 0.3)
    target = tmp_path / "models" / "case-classify"
    save_artifact(ens, target, data={"name": "tiny"}, metrics={})
    got = learned.load(tmp_path)
    assert got.scorer is not None and got.scorer.name.startswith("case-classify:tfidf-svm@")
    assert got.scorer.clf.predict(["经来腹痛"]) == [3]
    (target / "tfidf.svm_coef.npy").write_bytes(b"altered")
    with pytest.raises(ArtifactError, match="does not match the SHA-256"):
        learned.load(tmp_path)


def test_herbs_dosed_in_fractions_of_a_gram_get_a_dose_inside_their_range(real_kb: kb.KnowledgeBase) -> None:
    from models.herb_rec import CooccurrenceRecommender

    herbs = ["麝香", "蟾酥", "冰片", "砒石"]  # ranges 0.03-0.1, 0.015-0.03, 0.15-0.3, 0.002-0.004 g
    model = CooccurrenceRecommender(["胁痛"], herbs).fit([[0]] * 4, [[0, 1, 2, 3]] * 4)
    ans = suggest({**NOTE, "patient": {"sex": "male", "age_years": 50}}, real_kb,
                  models=learned.Models(herbs=learned.HerbModel(model, "tiny")))  # fmt: skip
    s = next(x for x in ans["suggestions"] if not x["withheld"])
    offered = {h["herb"]: h for h in s["herb_suggestions"]}
    withheld = {h["herb"] for h in s.get("herb_suggestions_withheld", [])}
    assert set(herbs) <= set(offered) | withheld  # each one offered or withheld with a reason, none lost
    for h in offered.values():
        lo, hi = h["dose_range_g"]
        assert 0 < lo <= h["dose_g"] <= hi, h


def test_model_herbs_for_a_young_child_take_the_paediatric_share(
    real_kb: kb.KnowledgeBase, herb_model: learned.HerbModel
) -> None:
    adult = suggest(NOTE, real_kb, models=learned.Models(herbs=herb_model))["suggestions"][0]
    child = suggest({**NOTE, "patient": {"age_years": 2}}, real_kb, models=learned.Models(herbs=herb_model))
    child = child["suggestions"][0]
    grown = {h["herb"]: h["dose_g"] for h in adult["herb_suggestions"]}
    small = {h["herb"]: h for h in child["herb_suggestions"] if h["herb"] in grown}
    assert small and all(h["dose_g"] == pytest.approx(grown[n] / 2, abs=0.5) for n, h in small.items())
    assert all("for a child" in h["dose_from"] for h in small.values())
