"""Loaders: counts, bad rows reported with reasons, cards, seeded validation carving, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from kb.errors import InputError
from training.datasets import (
    load_case_jsonl,
    load_smgcn,
    load_tcm_cases,
    load_tcm_pd,
    resolve_data_dir,
)
from training.prescriptions import HerbLexicon, extract_prescriptions

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "research"


def test_tcm_pd_counts_bad_rows_and_card() -> None:
    ds = load_tcm_pd(FIX)
    assert len(ds.symptoms) == 12 and len(ds.herbs) == 20
    assert len(ds.split("train")) == 237 and len(ds.split("test")) == 60
    rep = ds.report
    assert rep.rows_read == 300 and rep.rows_kept == 297 and rep.skipped == 3
    reasons = dict(rep.skipped_by_reason)
    assert set(reasons) == {"symptom id out of range", "empty herb list", "non-integer symptom id"}
    assert {b.line for b in rep.examples} == {4, 11, 21}
    card = ds.card.to_dict()
    assert card["splits"] == {"train": 237, "test": 60}
    assert card["content_hash"].startswith("sha256:") and card["content_hash"] == load_tcm_pd(FIX).card.content_hash
    assert "research use only" in card["terms"]


def test_smgcn_mapping_with_crlf_and_bad_rows() -> None:
    ds = load_smgcn(FIX)
    assert len(ds.symptoms) == 12 and "咳嗽" in ds.symptoms and all(" " not in s for s in ds.symptoms)
    assert ds.report.skipped == 2
    assert dict(ds.report.skipped_by_reason) == {
        "expected 2 tab-separated fields": 1,
        "herb id out of range": 1,
    }


def test_validation_is_carved_from_train_seeded_and_disjoint() -> None:
    ds = load_smgcn(FIX)
    a, b = ds.with_validation(0.1, seed=3), ds.with_validation(0.1, seed=3)
    assert a.split("val") == b.split("val")
    assert len(a.split("val")) + len(a.split("train")) == len(ds.split("train"))
    assert a.split("test") == ds.split("test")
    assert a.card.seed == 3 and "seed 3" in a.card.split_note
    c = ds.with_validation(0.1, seed=4)
    assert c.split("val") != a.split("val")


def test_tcm_cases_labels_and_bad_rows() -> None:
    ds = load_tcm_cases(FIX)
    assert ds.labels == (0, 1, 3, 5, 6)
    assert ds.report.skipped == 3
    assert set(dict(ds.report.skipped_by_reason)) == {"unknown label", "no tab", "label is not an integer"}
    assert {c.label for c in ds.split("train")} <= set(ds.labels)
    assert len(ds.split("val")) == 10 and len(ds.split("test")) == 15


def test_missing_data_dir_and_files_are_input_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_smgcn(tmp_path / "nope")
    with pytest.raises(InputError, match="no smgcn/ folder"):
        load_smgcn(tmp_path)
    monkeypatch.setenv("TCM_DATA_DIR", str(FIX))
    assert resolve_data_dir(None) == FIX


def test_tcm_pd_misaligned_files_refused(tmp_path: Path) -> None:
    import shutil

    shutil.copytree(FIX / "tcm-pd", tmp_path / "tcm-pd")
    f = tmp_path / "tcm-pd" / "pre_herbs_test.txt"
    f.write_text("\n".join(f.read_text().splitlines()[:-5]) + "\n")
    with pytest.raises(InputError, match="line i of each must be the same prescription"):
        load_tcm_pd(tmp_path)


def test_case_jsonl_valid_and_invalid_lines() -> None:
    cf = load_case_jsonl(FIX / "cases.jsonl")
    assert [r.id for r in cf.records] == ["c-001", "c-002"]
    r = cf.records[0]
    assert r.herbs[0].name == "桑叶" and r.herbs[0].dose == 9 and r.syndrome == "风热犯肺"
    reasons = [b.reason for b in cf.report.examples]
    assert len(reasons) == 6
    assert any(x.startswith("invalid field: herbs.0.dose") for x in reasons)
    assert any("colour" in x for x in reasons)
    assert any(x.startswith("duplicate id") for x in reasons)
    assert any(x.startswith("invalid JSON") for x in reasons)
    assert any("herb listed twice" in x for x in reasons)
    assert any(x.startswith("invalid field: metadata") for x in reasons)


# ---- prescriptions -----------------------------------------------------------------------------

LEX = HerbLexicon(
    [
        "桂枝",
        "白芍",
        "甘草",
        "生姜",
        "大枣",
        "半夏",
        "神曲",
        "厚朴",
        "茯苓",
        "白术",
        "牡蛎",
        "龙骨",
        "瞿麦",
        "泽泻",
        "猪苓",
    ]
)


def test_modern_labelled_prescription_with_each() -> None:
    text = "王某，女。腹痛。|处方：瞿麦9克猪苓泽泻各6克白芍4. 5克|方解：略。"
    (rx,) = extract_prescriptions(text, LEX)
    got = {h.name: (h.dose, h.unit, h.dose_g) for h in rx.herbs}
    assert got == {"瞿麦": (9, "g", 9), "猪苓": (6, "g", 6), "泽泻": (6, "g", 6), "白芍": (4.5, "g", 4.5)}


def test_classical_doses_and_prefixes() -> None:
    text = "某。呕吐。|炒半夏二钱，神曲炭钱半，厚朴一钱五分，生姜三片，大枣七枚|"
    (rx,) = extract_prescriptions(text, LEX)
    got = {h.name: (h.dose, h.unit) for h in rx.herbs}
    assert got == {
        "半夏": (2, "钱"),
        "神曲": (1.5, "钱"),
        "厚朴": (1.5, "钱"),
        "生姜": (3, "片"),
        "大枣": (7, "枚"),
    }
    assert next(h for h in rx.herbs if h.name == "半夏").surface == "炒半夏"
    assert next(h for h in rx.herbs if h.name == "半夏").dose_g == 6


def test_bare_names_run_together_and_prose_is_not_a_prescription() -> None:
    text = "某右。新产郁冒。|生龙骨桂枝生牡蛎炙甘草|二诊：气从小腹上冲，议镇固之法，颇应。|"
    rx = extract_prescriptions(text, LEX)
    assert len(rx) == 1 and rx[0].segment == 1
    assert [h.name for h in rx[0].herbs] == ["龙骨", "桂枝", "牡蛎", "甘草"]
    assert all(h.dose is None for h in rx[0].herbs)
