"""Case classification: the age reader, NB-SVM, the character CNN and their ensemble, as a user meets them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kb.errors import ArtifactError
from models.artifacts import save_artifact
from models.case_classify import (
    AGE_BUCKETS,
    CharCNNClassifier,
    CNNConfig,
    NBSVMClassifier,
    NBSVMCNNEnsemble,
    age_bucket,
    case_age,
)
from models.registry import load_model

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "research"
TEXTS = ["咳嗽痰黄，发热恶寒。", "经来腹痛，带下量多。", "小儿夜啼，乳食不化。"] * 6
LABELS = [0, 3, 6] * 6
TINY_CNN = CNNConfig(embed=8, filters=4, kernels=(1, 2), max_len=16, epochs=2, min_char_count=1)


@pytest.mark.parametrize(
    "text, age",
    [
        ("金男，三岁。幼孩手心热", 3),
        ("邸某某，男，24岁。患神经衰弱", 24),
        ("粤东范君之女，年五龄。自楼窗跌仆", 5),
        ("大宫通大工新藏之男，年十四，两足微肿", 14),
        ("顾姓七月婴孩，患暑秽食积", 7 / 12),
        ("北门内杨姓妇人，年七旬，禀赋甚厚", 70),
        ("伍，三二，发热浃旬，干咳不止", 32),
        ("曾治汪多才，年七十有六，患小便滴沥", 70),
        ("丁卯年八月患霍乱，针治后肢冷", None),
        ("某。酒性即升且热，醉酒太过", None),
    ],
)
def test_the_age_is_read_from_the_ways_records_state_it(text: str, age: float | None) -> None:
    got = case_age(text)
    assert got == pytest.approx(age) if age is not None else got is None


def test_age_buckets_separate_children_from_adults() -> None:
    names = [name for _, name in AGE_BUCKETS]
    assert names[age_bucket(3.0)] == "toddler" and names[age_bucket(12.0)] == "child"  # type: ignore[index]
    assert names[age_bucket(30.0)] == "adult" and age_bucket(None) is None  # type: ignore[index]


def test_nbsvm_reads_the_age_whatever_its_wording() -> None:
    # the same complaint in children (paediatrics, 6) and adults (internal medicine, 0); only the age differs
    body = "。咳嗽发热，咽痛，舌红苔薄黄，脉浮数。|桑叶菊花连翘薄荷桔梗甘草"
    kids = [f"{n}{body}" for n in ("某，三岁", "某，四岁", "某，十岁", "某，八岁")] * 3
    adults = [f"{n}{body}" for n in ("某，三十岁", "某，四十岁", "某，二十五岁", "某，三十二岁")] * 3
    m = NBSVMClassifier(min_df=1, head_chars=0, age_weight=3.0).fit(kids + adults, [6] * 12 + [0] * 12)
    assert m.predict([f"某童，年十二{body}", f"某翁，年三十五{body}"]) == [6, 0]


def test_nbsvm_probabilities_are_calibrated_on_held_out_texts() -> None:
    m = NBSVMClassifier(min_df=1, head_chars=4).fit(TEXTS, LABELS)
    assert m.predict(["经来腹痛，带下量多。", "小儿夜啼，乳食不化。"]) == [3, 6]
    held, y = ["经来腹痛。", "小儿夜啼。", "咳嗽发热。"], [3, 6, 0]

    def nll() -> float:
        p = m.proba(held)
        return float(-np.log(p[np.arange(3), [m.labels.index(v) for v in y]]).mean())

    m.scale = 1.0
    before = nll()
    assert m.fit_scale(held, y) != 1.0 and nll() < before
    np.testing.assert_allclose(m.proba(held).sum(1), 1.0)


def test_nbsvm_refuses_arrays_that_do_not_match_its_config(tmp_path: Path) -> None:
    m = NBSVMClassifier(min_df=1, head_chars=4).fit(TEXTS, LABELS)
    conf = m.save(tmp_path)
    with pytest.raises(ArtifactError, match="do not match"):
        NBSVMClassifier.load(tmp_path, {"config": {**conf, "head_chars": 0}})
    with pytest.raises(ArtifactError, match="age buckets"):
        NBSVMClassifier.load(tmp_path, {"config": {**conf, "age_buckets": ["child", "adult"]}})


def test_cnn_keeps_the_best_validation_epoch_and_stops_when_it_stalls() -> None:
    scores = iter([0.2, 0.9, 0.1, 0.3, 0.4, 0.5])
    seen: list[np.ndarray] = []
    epochs: list[int] = []

    def validate(clf: CharCNNClassifier) -> float:
        seen.append(clf.logits(TEXTS[:3]))
        return next(scores)

    cfg = CNNConfig(embed=8, filters=4, kernels=(1, 2), max_len=16, epochs=6, patience=2, min_char_count=1)
    m = CharCNNClassifier.build(cfg, TEXTS, [0, 3, 6])
    m.fit(TEXTS, LABELS, validate, on_epoch=lambda e, loss, s: epochs.append(e), progress=False)
    assert epochs == [1, 2, 3, 4] and m.best_epoch == 2
    np.testing.assert_allclose(m.logits(TEXTS[:3]), seen[1], rtol=1e-5, atol=1e-6)


def test_cnn_sees_the_start_and_the_end_of_a_long_record() -> None:
    cfg = CNNConfig(embed=8, filters=4, kernels=(1,), max_len=8, head=0.5, min_char_count=1)
    m = CharCNNClassifier.build(cfg, ["甲乙丙丁戊己庚辛壬癸"], [0, 1])
    ids = m.encode(["甲乙丙丁戊己庚辛壬癸"])[0].tolist()
    assert [m.itos[i] for i in ids] == list("甲乙丙丁") + list("庚辛壬癸")


def _ensemble_artifact(tmp_path: Path, weight: float) -> tuple[Any, Path]:
    nb = NBSVMClassifier(min_df=1, head_chars=4).fit(TEXTS, LABELS)
    cnn = CharCNNClassifier.build(TINY_CNN, TEXTS, [0, 3, 6]).fit(TEXTS, LABELS, progress=False)
    ens = NBSVMCNNEnsemble(nb, cnn, weight)
    return ens, save_artifact(ens, tmp_path / "models" / "case-classify", data={"name": "tiny"}, metrics={})


def test_loading_the_ensemble_starts_torch_only_when_the_cnn_is_used(tmp_path: Path) -> None:
    ens, out = _ensemble_artifact(tmp_path, 0.3)
    back = load_model(out, task="case-classify")
    assert back.cnn._net is None  # the department prior (cds) needs only the linear member
    np.testing.assert_allclose(back.tfidf.proba(TEXTS[:3]), ens.tfidf.proba(TEXTS[:3]))
    assert back.cnn._net is None
    np.testing.assert_allclose(back.scores(TEXTS[:3]), ens.scores(TEXTS[:3]), rtol=1e-5, atol=1e-6)


def test_a_zero_weight_ensemble_is_its_nbsvm(tmp_path: Path) -> None:
    ens, _ = _ensemble_artifact(tmp_path, 0.0)
    texts = ["经来腹痛", "小儿夜啼", "咳嗽发热", "乳食不化，带下"]
    assert ens.predict(texts) == ens.nbsvm.predict(texts)


@pytest.mark.parametrize("kind", ["nbsvm", "nbsvm-cnn"])
def test_the_department_prior_uses_the_nbsvm(kind: str, tmp_path: Path) -> None:
    from cds import learned

    if kind == "nbsvm":
        nb = NBSVMClassifier(min_df=1, head_chars=4).fit(TEXTS, LABELS)
        save_artifact(nb, tmp_path / "models" / "case-classify", data={"name": "tiny"}, metrics={})
    else:
        _ensemble_artifact(tmp_path, 0.3)
    got = learned.load(tmp_path)
    assert got.scorer is not None and got.scorer.name.startswith("case-classify:nbsvm@")
    assert got.scorer.clf.predict(["经来腹痛"]) == [3]


@pytest.mark.parametrize("kind", ["nbsvm", "nbsvm-cnn"])
def test_train_and_eval_on_the_fixture_data(kind: str, tmp_path: Path) -> None:
    from eval.evaluate import evaluate_case_classify
    from training.train import train

    cfg = {
        "model": kind,
        "nbsvm": {"ngram": [1, 2], "min_df": 1, "C_grid": [1.0, 3.0]},
        "cnn": {"embed": 8, "filters": 4, "kernels": [1, 2], "max_len": 32, "epochs": 2, "min_char_count": 1},
        "ensemble_grid": [0.0, 0.5],
    }
    res = train("case-classify", FIX, tmp_path / "cc", cfg, seed=0, allow_identifiers=True, progress=False)
    card = json.loads((tmp_path / "cc" / "model_card.json").read_text())
    assert card["kind"] == kind
    stage = next(r for r in card["training"]["epochs"] if r["stage"] == "nbsvm")
    assert stage["picked_C"] in (1.0, 3.0) and stage["scale"] > 0
    ev = evaluate_case_classify(tmp_path / "cc", FIX)
    want = {"nbsvm"} if kind == "nbsvm" else {"nbsvm", "char-cnn", "nbsvm-cnn"}
    assert set(ev["models"]) == want and set(res.validation["members"]) == want - {kind}
    assert ev["models"]["nbsvm"]["accuracy"] >= 0.6
    # the scikit-learn floor is trained and scored in the same run, its C picked on validation
    assert ev["floor"]["model"] == "tfidf-svm" and ev["floor"]["picked_C"] in (1.0, 3.0, 10.0, 30.0)
    assert ev["floor"]["test"]["n"] == ev["models"]["nbsvm"]["n"]


def test_unknown_nbsvm_or_cnn_config_keys_are_input_errors(tmp_path: Path) -> None:
    from kb.errors import InputError
    from training.train import train

    for cfg in ({"nbsvm": {"Cgrid": [1.0]}}, {"model": "char-cnn", "cnn": {"layers": 2}}):
        with pytest.raises(InputError, match=r"unknown (nbsvm|cnn) config keys"):
            train("case-classify", FIX, tmp_path / "cc", cfg, allow_identifiers=True, progress=False)


def test_nbsvm_is_refit_on_train_and_validation_after_selection(tmp_path: Path) -> None:
    from training.train import train

    cfg = {"model": "nbsvm", "nbsvm": {"ngram": [1, 2], "min_df": 1, "C_grid": [1.0, 3.0]}}
    train("case-classify", FIX, tmp_path / "on", cfg, seed=0, allow_identifiers=True, progress=False)
    no = {**cfg, "nbsvm": {**cfg["nbsvm"], "refit": False}}
    train("case-classify", FIX, tmp_path / "off", no, seed=0, allow_identifiers=True, progress=False)
    on, off = (json.loads((tmp_path / d / "model_card.json").read_text()) for d in ("on", "off"))
    refit = next(r for r in on["training"]["epochs"] if r["stage"] == "refit")
    picked = next(r for r in on["training"]["epochs"] if r["stage"] == "nbsvm")["picked_C"]
    assert refit["C"] == picked and refit["texts"] > on["metrics"]["validation"]["n"]
    assert not any(r["stage"] == "refit" for r in off["training"]["epochs"])
    # the card's validation metrics are those of the model fitted on train alone, not of one that saw them
    assert on["metrics"]["validation"] == off["metrics"]["validation"]
