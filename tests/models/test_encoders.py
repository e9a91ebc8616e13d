"""Encoders: a contract every registered encoder passes, plus TF-IDF and BERT specifics (tiny models, built here)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kb.errors import ArtifactError, InputError
from models.encoders import (
    ENCODERS,
    BertEncoder,
    BertEncoderConfig,
    TfidfEncoder,
    jaccard,
    load_encoder,
    save_encoder,
)

TEXTS = [
    "产后恶露不尽，小腹隐痛，舌淡苔白，脉细",
    "月经后期，量少色淡，头晕，舌淡，脉细弱",
    "疮疡红肿热痛，发热，舌红苔黄，脉数",
    "皮肤疖肿，红肿疼痛，口渴，舌红，脉数",
    "咳嗽痰多，胸闷，纳差，舌淡苔白腻，脉滑",
    "咽喉肿痛，发热，口渴，舌红，脉浮数",
    "咽痛声哑，咳嗽，舌红苔薄黄，脉浮数",
    "神疲乏力，食少便溏，舌淡苔白，脉弱",
]
HERBS = [
    frozenset({"当归", "熟地黄", "白芍", "川芎"}), frozenset({"当归", "白芍", "川芎", "香附"}),
    frozenset({"金银花", "连翘", "蒲公英"}), frozenset({"金银花", "连翘", "甘草"}),
    frozenset({"半夏", "陈皮", "茯苓"}), frozenset({"桔梗", "牛蒡子", "薄荷"}),
    frozenset({"桔梗", "牛蒡子", "蝉蜕"}), frozenset({"党参", "白术", "茯苓"}),
]  # fmt: skip
TINY = BertEncoderConfig(hidden=16, layers=1, heads=2, intermediate=32, max_len=48, min_char_count=1,
                         batch_size=4, budget_s=2.0, max_steps=3, dropout=0.0)  # fmt: skip


def make_tfidf() -> Any:
    return TfidfEncoder(svd_dim=4).fit(TEXTS)


def make_bert() -> Any:
    enc = BertEncoder.build(TINY, TEXTS)
    enc.train(TEXTS, HERBS)
    return enc


FACTORIES: dict[str, Callable[[], Any]] = {"tfidf": make_tfidf, "bert": make_bert}


def test_every_registered_encoder_has_a_contract_test() -> None:
    assert sorted(ENCODERS.names()) == sorted(FACTORIES)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_encoder_contract(name: str, tmp_path: Path) -> None:
    enc = FACTORIES[name]()
    assert enc.name == name and enc.version.startswith(name + "-")
    x = enc.encode(TEXTS)
    assert x.shape == (len(TEXTS), enc.dim) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-5)
    with pytest.raises(InputError, match="empty"):
        enc.encode(["  "])
    with pytest.raises(InputError, match="list of texts"):
        enc.encode("咳嗽")
    save_encoder(enc, tmp_path / "enc")
    again = load_encoder(tmp_path / "enc")
    assert (again.name, again.version, again.dim) == (enc.name, enc.version, enc.dim)
    np.testing.assert_allclose(again.encode(TEXTS), x, atol=1e-5)


def test_tfidf_puts_similar_findings_nearest() -> None:
    enc = TfidfEncoder(svd_dim=None).fit(TEXTS)
    x = enc.encode(TEXTS)
    q = enc.encode(["咽喉肿痛，声哑，舌红，脉浮数"])[0]
    assert int(np.argmax(x @ q)) in (5, 6)


def test_tfidf_refits_to_a_new_version() -> None:
    a = TfidfEncoder(svd_dim=None).fit(TEXTS)
    b = TfidfEncoder(svd_dim=None).fit(TEXTS[:-1])
    assert a.version != b.version
    assert TfidfEncoder(svd_dim=None).fit(TEXTS).version == a.version  # deterministic


def test_unfitted_and_missing_encoders_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="not fitted"):
        TfidfEncoder().encode(["咳嗽"])
    with pytest.raises(ArtifactError, match=r"encoder\.json is missing"):
        load_encoder(tmp_path)


def test_bert_training_runs_both_phases_and_changes_version() -> None:
    enc = BertEncoder.build(TINY, TEXTS)
    v0 = enc.version
    log = enc.train(TEXTS, HERBS)
    assert log.mlm_steps >= 1 and log.contrastive_steps >= 1 and log.positive_pairs > 0
    assert enc.version != v0


def test_bert_rejects_unknown_config_keys() -> None:
    with pytest.raises(InputError, match="unknown bert encoder config keys: nope"):
        BertEncoderConfig.from_dict({"nope": 1})


def test_bert_loads_a_local_pretrained_checkpoint(tmp_path: Path) -> None:
    from transformers import BertConfig, BertModel, BertTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted({c for t in TEXTS for c in t})]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab), encoding="utf-8")
    ckpt = tmp_path / "ckpt"
    BertTokenizer(str(tmp_path / "vocab.txt")).save_pretrained(str(ckpt))
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=64)).save_pretrained(str(ckpt))  # fmt: skip
    enc = BertEncoder.from_pretrained(ckpt)
    x = enc.encode(TEXTS)
    assert x.shape == (len(TEXTS), 16)
    save_encoder(enc, tmp_path / "saved")
    again = load_encoder(tmp_path / "saved")
    assert again.version == enc.version
    np.testing.assert_allclose(again.encode(TEXTS), x, atol=1e-5)
    with pytest.raises(ArtifactError, match="not a local transformers checkpoint"):
        BertEncoder.from_pretrained(tmp_path / "nowhere")


def test_jaccard() -> None:
    assert jaccard(HERBS[0], HERBS[1]) == pytest.approx(3 / 5)
    assert jaccard(frozenset(), HERBS[0]) == 0.0
