"""Herb recommendation MLP: what its loss ranks by, the member ensemble, seeding, and old artifacts."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kb.errors import InputError
from models.artifacts import CARD, _sha256, save_artifact
from models.herb_rec import MLPConfig, MLPRecommender
from models.registry import load_model

SYMS = ("腹痛", "失眠")
HERBS = ("白芍", "甘草", "当归", "川芎", "延胡索", "酸枣仁", "远志")
# 腹痛: six four-herb prescriptions (白芍 甘草 当归 川芎) and four single-herb ones (延胡索).
# So 白芍 is in 60 % of its prescriptions (precision ranks it first), while 延胡索 is the whole of 40 % of
# them (per-prescription recall, E[1[h in H] / |H|] = 0.4 against 0.15, ranks it first).
X = [(0,)] * 10 + [(1,)] * 4
Y = [(0, 1, 2, 3)] * 6 + [(4,)] * 4 + [(5, 6)] * 4


def _fit(**cfg: Any) -> MLPRecommender:
    conf = {"hidden": 16, "dropout": 0.0, "lr": 0.02, "epochs": 60, "batch_size": 14, "members": 2,
            "blend_grid": (0.0,), **cfg}  # fmt: skip
    m = MLPRecommender(SYMS, HERBS, MLPConfig(**conf))
    latest = itertools.count()  # always keep the latest epoch
    return m.fit(X, Y, validate=lambda s: float(next(latest)), val_sets=[(0,)], progress=False)


def _top(m: MLPRecommender, symptoms: tuple[int, ...]) -> str:
    return HERBS[int(np.argmax(m.score([symptoms])[0]))]


def test_default_loss_ranks_the_most_often_prescribed_herb_first() -> None:
    assert MLPConfig().loss == "softmax-herb"
    m = _fit()
    assert _top(m, (0,)) in {"白芍", "甘草", "当归", "川芎"}
    assert _top(m, (1,)) in {"酸枣仁", "远志"}
    # the per-prescription (recall-weighted) loss puts the single-herb prescription's herb first instead
    assert _top(_fit(loss="softmax"), (0,)) == "延胡索"


def test_members_are_independent_and_averaged() -> None:
    m = _fit(members=3, epochs=2)
    each = m.member_scores([(0,), (1,), (0, 1)])
    assert each.shape == (3, 3, len(HERBS))
    np.testing.assert_allclose(each.sum(2), 1.0, rtol=1e-5)
    assert not np.allclose(each[0], each[1])  # each member has its own initialisation
    np.testing.assert_allclose(m.net_scores([(0,), (1,), (0, 1)]), each.mean(0), rtol=1e-6)


def test_same_seed_same_model() -> None:
    a, b = _fit(epochs=3), _fit(epochs=3)
    np.testing.assert_array_equal(a.score([(0,), (1,)]), b.score([(0,), (1,)]))


def test_bad_config_is_refused() -> None:
    with pytest.raises(InputError, match="unknown mlp loss 'hinge'"):
        MLPConfig.from_dict({"loss": "hinge"})
    with pytest.raises(InputError, match="at least 1"):
        MLPConfig(members=0)
    with pytest.raises(InputError, match="a symptom set is empty"):
        _fit(epochs=1).score([()])


def test_ensemble_round_trip_and_single_network_artifacts_still_load(tmp_path: Path) -> None:
    m = _fit(members=3, epochs=2)
    out = save_artifact(m, tmp_path / "ens", data={}, metrics={})
    back = load_model(out, task="herb-rec")
    assert back.config.members == 3
    np.testing.assert_allclose(back.score(X[:3]), m.score(X[:3]), rtol=1e-6)

    # an artifact written before ensembles: one network, unprefixed weight names, no "members" in the card
    from safetensors.torch import load_file, save_file

    one = _fit(members=1, epochs=2)
    old = save_artifact(one, tmp_path / "old", data={}, metrics={})
    weights = old / "mlp.safetensors"
    save_file({k.removeprefix("0."): v for k, v in load_file(str(weights)).items()}, str(weights))
    card = json.loads((old / CARD).read_text())
    del card["config"]["members"]
    card["files"]["mlp.safetensors"] = _sha256(weights)
    (old / CARD).write_text(json.dumps(card))
    back = load_model(old, task="herb-rec")
    assert back.config.members == 1
    np.testing.assert_allclose(back.score(X[:3]), one.score(X[:3]), rtol=1e-6)


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_a_loaded_model_answers_in_numpy_as_torch_does(layers: int, tmp_path: Path) -> None:
    from models.herb_rec import _weight_shapes

    m = _fit(members=2, epochs=2, layers=layers)
    torch_shapes = {k: tuple(v.shape) for k, v in m.net.state_dict().items()}
    assert _weight_shapes(len(SYMS), len(HERBS), m.config) == torch_shapes
    back = load_model(save_artifact(m, tmp_path / "m", data={}, metrics={}), task="herb-rec")
    assert back._net is None  # answered without building the torch networks
    np.testing.assert_allclose(back.member_scores(X[:3] + X[-2:]), m.member_scores(X[:3] + X[-2:]), rtol=1e-5)
    # saved again from the loaded weights: the same model
    again = load_model(save_artifact(back, tmp_path / "again", data={}, metrics={}), task="herb-rec")
    np.testing.assert_allclose(again.score(X[:3]), m.score(X[:3]), rtol=1e-5)


def test_answering_does_not_import_torch(tmp_path: Path) -> None:
    import subprocess
    import sys

    out = save_artifact(_fit(epochs=1), tmp_path / "m", data={}, metrics={})
    code = (
        "import sys; from models.registry import load_model; "
        f"m = load_model({str(out)!r}, task='herb-rec'); m.score([(0,), (1,)]); "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


def test_weights_that_do_not_match_the_config_are_an_artifact_error(tmp_path: Path) -> None:
    from kb.errors import ArtifactError

    out = save_artifact(_fit(epochs=1), tmp_path / "m", data={}, metrics={})
    card = json.loads((out / CARD).read_text())
    card["config"]["hidden"] = 8
    (out / CARD).write_text(json.dumps(card))
    with pytest.raises(
        ArtifactError, match=r"weights do not match the config \(0\.embed\.weight: \(2, 16\), config: \(2, 8\)\)"
    ):
        load_model(out, task="herb-rec")
