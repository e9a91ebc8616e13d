"""`tcm train`, `tcm eval`, `tcm deid` end to end on the fixtures; bad input exits 2 without a traceback."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "research"
TINY_CASE = {
    "model": "ensemble",
    "tfidf": {"ngram": [1, 2], "C_grid": [1.0], "sublinear_tf": False},
    "transformer": {"hidden": 16, "layers": 1, "heads": 2, "intermediate": 32, "max_len": 64,
                    "pretrain_epochs": 1, "epochs": 1, "batch_size": 8, "min_char_count": 1},
}  # fmt: skip
TINY_HERB = {"mlp": {"hidden": 32, "epochs": 3, "batch_size": 64}}


@pytest.fixture
def cfgs(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name, c in (("case", TINY_CASE), ("herb", TINY_HERB)):
        p = tmp_path / f"{name}.json"
        p.write_text(json.dumps(c))
        out[name] = p
    return out


def test_train_and_eval_herb_rec(tcm: Callable, tmp_path: Path, cfgs: dict[str, Path]) -> None:
    out = tmp_path / "hr"
    r = tcm(
        "train",
        "herb-rec",
        "--data",
        str(FIX),
        "--out",
        str(out),
        "--config",
        str(cfgs["herb"]),
        "--no-progress",
        "--json",
    )
    assert r.code == 0, r.err
    doc = r.json_lines()[0]
    assert set(doc["validation"]) == {"smgcn", "tcm-pd"}
    assert (out / "smgcn" / "model_card.json").is_file() and (out / "tcm-pd" / "train_log.jsonl").is_file()
    log = [json.loads(x) for x in (out / "smgcn" / "train_log.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in log] == [1, 2, 3] and all("val_score" in row for row in log)
    r = tcm("eval", "herb-rec", "--model", str(out), "--data", str(FIX), "--json")
    assert r.code == 0, r.err
    res = r.json_lines()[0]
    for name in ("smgcn", "tcm-pd"):
        d = res["datasets"][name]
        assert d["n_test"] == 60
        for who in ("model", "cooccurrence"):
            assert {f"{m}@{k}" for m in ("P", "R", "NDCG") for k in (5, 10, 20)} == set(d[who])
        assert d["model"]["P@5"] > 0.3  # the fixture's symptom -> herb structure is learnable
    r = tcm("eval", "herb-rec", "--model", str(out / "smgcn"), "--data", str(FIX))
    assert r.code == 0 and "smgcn test (60 prescriptions)" in r.out


def test_train_case_classify_refuses_identifiers_then_trains(
    tcm: Callable, tmp_path: Path, cfgs: dict[str, Path]
) -> None:
    out = tmp_path / "cc"
    r = tcm(
        "train",
        "case-classify",
        "--data",
        str(FIX),
        "--out",
        str(out),
        "--config",
        str(cfgs["case"]),
        "--no-progress",
    )
    assert r.code == 2 and "direct identifiers" in r.err and "Traceback" not in r.err
    assert not out.exists()
    r = tcm("train", "case-classify", "--data", str(FIX), "--out", str(out), "--config", str(cfgs["case"]),
            "--no-progress", "--allow-identifiers", "--json")  # fmt: skip
    assert r.code == 0, r.err
    card = json.loads((out / "model_card.json").read_text())
    assert card["kind"] == "ensemble" and card["data"]["identifiers_allowed"] is True
    assert card["data"]["identifiers_found"]["name"] > 0
    r = tcm("eval", "case-classify", "--model", str(out), "--data", str(FIX), "--json")
    assert r.code == 0, r.err
    res = r.json_lines()[0]
    assert set(res["models"]) == {"tfidf-svm", "transformer", "ensemble"}
    assert res["models"]["tfidf-svm"]["accuracy"] >= 0.6


@pytest.mark.parametrize(
    "args, message",
    [
        (("train", "herb-rec", "--data", "/nonexistent/dir", "--out", "{tmp}/o"), "does not exist"),
        (
            ("train", "herb-rec", "--data", str(FIX), "--out", "{tmp}/o", "--config", "{tmp}/missing.json"),
            "config file",
        ),
        (("eval", "herb-rec", "--model", "{tmp}/none", "--data", str(FIX)), "no herb-rec model artifact"),
        (("eval", "case-classify", "--model", "{tmp}/none", "--data", str(FIX)), "no model artifact"),
        (("deid", "{tmp}/missing.jsonl", "{tmp}/out.jsonl"), "does not exist"),
    ],
)
def test_bad_input_exits_2_without_traceback(
    tcm: Callable, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    r = tcm(*(a.replace("{tmp}", str(tmp_path)) for a in args))
    assert r.code == 2, (r.out, r.err)
    assert message in r.err and "Traceback" not in r.err


def test_bad_config_key(tcm: Callable, tmp_path: Path) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"epochz": 3}))
    r = tcm("train", "herb-rec", "--data", str(FIX), "--out", str(tmp_path / "o"), "--config", str(cfg))
    assert r.code == 2 and "unknown herb-rec config keys: epochz" in r.err


def test_corrupt_artifact_exits_2(tcm: Callable, tmp_path: Path, cfgs: dict[str, Path]) -> None:
    out = tmp_path / "hr"
    assert (
        tcm(
            "train",
            "herb-rec",
            "--data",
            str(FIX),
            "--out",
            str(out),
            "--config",
            str(cfgs["herb"]),
            "--no-progress",
        ).code
        == 0
    )
    (out / "smgcn" / "mlp.safetensors").write_bytes(b"garbage")
    r = tcm("eval", "herb-rec", "--model", str(out), "--data", str(FIX))
    assert r.code == 2 and "SHA-256" in r.err


def test_deid_command(tcm: Callable, tmp_path: Path) -> None:
    src = tmp_path / "in.tsv"
    src.write_text("3\t王女士，电话13812345678，2023年5月6日初诊。处方：王不留行10g。\n", encoding="utf-8")
    r = tcm(
        "deid",
        str(src),
        str(tmp_path / "out.tsv"),
        "--date-mode",
        "year",
        "--json",
        "--audit",
        str(tmp_path / "a.jsonl"),
    )
    assert r.code == 0, r.err
    assert r.json_lines()[0]["replaced"] == {"date": 1, "name": 1, "phone": 1}
    assert (tmp_path / "out.tsv").read_text(
        encoding="utf-8"
    ) == "3\t[姓名]，电话[电话]，2023年初诊。处方：王不留行10g。\n"
