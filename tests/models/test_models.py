"""Model contract (fit, score, save, load round trip) for every registered kind; artifact checks; registry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kb.errors import ArtifactError, InputError, UnknownEntityError
from models.artifacts import CARD, save_artifact
from models.registry import CASE_CLASSIFIERS, HERB_RECOMMENDERS, REGISTRIES, load_model, model_class

SYMS = ("发热", "咳嗽", "腹痛", "失眠")
HERBS = ("桑叶", "杏仁", "白芍", "甘草", "酸枣仁", "远志")
X = [(0,), (1,), (0, 1), (2,), (3,), (2, 3)] * 10
Y = [(0, 1), (1, 3), (0, 1, 3), (2, 3), (4, 5), (2, 4, 5)] * 10
TEXTS = ["咳嗽痰黄，发热恶寒。", "经来腹痛，带下量多。", "小儿夜啼，乳食不化。"] * 6
LABELS = [0, 3, 6] * 6


def _mlp() -> Any:
    from models.herb_rec import MLPConfig, MLPRecommender

    m = MLPRecommender(SYMS, HERBS, MLPConfig(hidden=16, epochs=3, batch_size=8))
    return m.fit(X, Y, validate=lambda s: float(s[:, 0].mean()), val_sets=X[:6], progress=False)


def _cooc() -> Any:
    from models.herb_rec import CooccurrenceRecommender

    return CooccurrenceRecommender(SYMS, HERBS).fit(X, Y)


def _tfidf() -> Any:
    from models.case_classify import TfidfClassifier

    return TfidfClassifier(c=1.0).fit(TEXTS, LABELS)


def _transformer() -> Any:
    from models.case_classify import CharTokenizer, TransformerClassifier, TransformerConfig

    cfg = TransformerConfig(hidden=16, layers=1, heads=2, intermediate=32, max_len=32, epochs=1, pretrain_epochs=0)
    return TransformerClassifier(cfg, CharTokenizer.build(TEXTS, 1), [0, 3, 6])


def _ensemble() -> Any:
    from models.case_classify import EnsembleClassifier

    return EnsembleClassifier(_tfidf(), _transformer(), 0.3)


def _nbsvm() -> Any:
    from models.case_classify import NBSVMClassifier

    return NBSVMClassifier(min_df=1, head_chars=4).fit(TEXTS, LABELS)


def _cnn() -> Any:
    from models.case_classify import CharCNNClassifier, CNNConfig

    cfg = CNNConfig(embed=8, filters=4, kernels=(1, 2), max_len=16, epochs=1, min_char_count=1)
    return CharCNNClassifier.build(cfg, TEXTS, [0, 3, 6]).fit(TEXTS, LABELS, progress=False)


def _nbsvm_cnn() -> Any:
    from models.case_classify import NBSVMCNNEnsemble

    return NBSVMCNNEnsemble(_nbsvm(), _cnn(), 0.3)


BUILDERS = {
    ("herb-rec", "cooccurrence"): _cooc,
    ("herb-rec", "mlp"): _mlp,
    ("case-classify", "tfidf-svm"): _tfidf,
    ("case-classify", "transformer"): _transformer,
    ("case-classify", "ensemble"): _ensemble,
    ("case-classify", "nbsvm"): _nbsvm,
    ("case-classify", "char-cnn"): _cnn,
    ("case-classify", "nbsvm-cnn"): _nbsvm_cnn,
}


def test_every_registered_model_has_a_contract_test() -> None:
    registered = {(task, kind) for task, reg in REGISTRIES.items() for kind in reg}
    assert registered == set(BUILDERS), "register a builder in BUILDERS for every model kind"


def _outputs(m: Any) -> np.ndarray:
    if m.task == "herb-rec":
        return np.asarray(m.score(X[:6]))
    return np.asarray(m.predict(TEXTS[:3]))


@pytest.mark.parametrize("key", sorted(BUILDERS))
def test_save_load_round_trip(key: tuple[str, str], tmp_path: Path) -> None:
    task, kind = key
    m = BUILDERS[key]()
    assert (m.task, m.kind) == key
    out = save_artifact(
        m, tmp_path / "a", data={"name": "fixture", "content_hash": "sha256:x"}, metrics={"validation": {}}
    )
    card = json.loads((out / CARD).read_text())
    assert card["task"] == task and card["kind"] == kind
    assert {"libraries", "git_commit", "created", "config", "data", "metrics", "files"} <= set(card)
    assert card["libraries"]["numpy"]
    back = load_model(out, task=task)
    np.testing.assert_allclose(_outputs(back), _outputs(m), rtol=1e-5, atol=1e-6)


def test_herb_rec_behaviour() -> None:
    m = _cooc()
    s = m.score([(3,)])
    assert set(np.argsort(-s[0])[:2]) == {4, 5}
    with pytest.raises(InputError, match="outside the vocabulary"):
        m.score([(9,)])
    mlp = _mlp()
    assert mlp.blend in mlp.config.blend_grid and mlp.best_epoch >= 1


def test_corrupt_or_mismatched_artifacts_are_refused(tmp_path: Path) -> None:
    out = save_artifact(_cooc(), tmp_path / "m", data={}, metrics={})
    with pytest.raises(ArtifactError, match=r"holds a 'herb-rec' model, not a 'case-classify' model"):
        load_model(out, task="case-classify")
    arr = out / "cooccurrence.npy"
    arr.write_bytes(arr.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(ArtifactError, match="does not match the SHA-256"):
        load_model(out)
    (out / "prior.npy").unlink()
    with pytest.raises(ArtifactError):
        load_model(out)
    (out / CARD).write_text("{not json")
    with pytest.raises(ArtifactError, match="corrupt"):
        load_model(out)
    with pytest.raises(ArtifactError, match="no model artifact"):
        load_model(tmp_path / "nothing-here")
    (tmp_path / "x").mkdir()
    with pytest.raises(ArtifactError, match=r"model_card\.json is missing"):
        load_model(tmp_path / "x")


def test_unknown_kind_in_card_is_an_artifact_error(tmp_path: Path) -> None:
    out = save_artifact(_cooc(), tmp_path / "m", data={}, metrics={})
    card = json.loads((out / CARD).read_text())
    card["kind"] = "gnn-from-the-future"
    (out / CARD).write_text(json.dumps(card))
    with pytest.raises(ArtifactError, match="does not know"):
        load_model(out)


def test_registry_behaviour() -> None:
    with pytest.raises(UnknownEntityError, match="did you mean"):
        HERB_RECOMMENDERS.get("gcn")
    with pytest.raises(ValueError, match="already registered"):
        CASE_CLASSIFIERS.register("tfidf-svm", "x:y")
    assert model_class("herb-rec", "cooccurrence").kind == "cooccurrence"


def test_load_by_name_under_root(tmp_path: Path) -> None:
    save_artifact(_cooc(), tmp_path / "herbs-small", data={}, metrics={})
    assert load_model("herbs-small", root=tmp_path).kind == "cooccurrence"
    with pytest.raises(ArtifactError, match=r"known models under .*herbs-small"):
        load_model("other", root=tmp_path)
