"""The `tcm cases` contract: build (JSON summary, incremental), search (JSON hits), and clear errors (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cases"


@pytest.fixture
def built(tcm, tmp_path: Path) -> Path:
    out = tmp_path / "cb"
    r = tcm("cases", "build", "--data", str(FIXTURES), "--out", str(out), "--json")
    assert r.code == 0, r.err
    s = r.json_lines()[0]
    assert s["stored"] == 20 and s["added"] == 20 and s["indexed"] == 20  # 18 tcm-cases rows + 2 jsonl records
    assert s["encoder"]["name"] == "tfidf" and s["encoder"]["version"].startswith("tfidf-")
    assert s["index"]["kind"] == "flat" and s["with_prescription"] == 20
    return out


def test_build_again_adds_nothing(tcm, built: Path) -> None:
    r = tcm("cases", "build", "--data", str(FIXTURES), "--out", str(built), "--json")
    assert r.code == 0, r.err
    s = r.json_lines()[0]
    assert s["added"] == 0 and s["stored"] == 20


def test_search_json_contract(tcm, built: Path) -> None:
    r = tcm("cases", "search", "--index", str(built), "--text", "咽喉肿痛，声音嘶哑，舌红，脉数", "--k", "3", "--json")
    assert r.code == 0, r.err
    doc = r.json_lines()[0]
    assert doc["k"] == 3 and doc["encoder"]["name"] == "tfidf"
    hits = doc["results"]
    assert len(hits) == 3 and hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]
    first = hits[0]
    assert set(first) >= {"case_id", "score", "findings", "department", "syndrome", "formula", "herbs"}
    assert first["case_id"].startswith("case-") and first["herbs"] and "name" in first["herbs"][0]
    assert "咽" in first["findings"]


def test_search_text_output(tcm, built: Path) -> None:
    r = tcm("cases", "search", "--index", str(built), "--text", "产后恶露不尽", "--k", "2")
    assert r.code == 0 and r.out.startswith(" 1. case-") and "herbs:" in r.out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--text", "   "), "query text is empty"),
        (("--text", "咳嗽", "--k", "0"), "--k must be at least 1"),
    ],
)
def test_bad_queries_exit_2(tcm, built: Path, args: tuple[str, ...], message: str) -> None:
    r = tcm("cases", "search", "--index", str(built), *args)
    assert r.code == 2 and message in r.err and "Traceback" not in r.err


def test_missing_index_and_data_exit_2(tcm, tmp_path: Path) -> None:
    r = tcm("cases", "search", "--index", str(tmp_path), "--text", "咳嗽")
    assert r.code == 2 and "not a case base" in r.err
    r = tcm("cases", "build", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "cb"))
    assert r.code == 2 and "does not exist" in r.err
    r = tcm("cases", "build", "--data", str(tmp_path), "--out", str(tmp_path / "cb"))
    assert r.code == 2 and "neither a tcm-cases/ folder" in r.err


def test_build_from_one_jsonl_file(tcm, tmp_path: Path) -> None:
    r = tcm("cases", "build", "--data", str(FIXTURES / "cases.jsonl"), "--out", str(tmp_path / "cb"), "--json")
    assert r.code == 0, r.err
    assert r.json_lines()[0]["stored"] == 2


def test_differentiate_uses_the_case_base_and_says_so(tcm, built: Path, tmp_path: Path) -> None:
    req = tmp_path / "q.json"
    req.write_text('{"text": "咽喉肿痛，声音嘶哑，发热，舌红，脉数"}', encoding="utf-8")
    r = tcm("differentiate", str(req), "--cases", str(built), "--json")
    assert r.code == 0, r.err
    doc = r.json_lines()[0]
    assert any(m.startswith("cases:tfidf") for m in doc["models_used"])
    r = tcm("differentiate", str(req), "--cases", str(tmp_path / "missing"), "--json")
    assert r.code == 2 and "no case base" in r.err


def test_differentiate_no_models_and_contradictory_flags(tcm, built: Path, tmp_path: Path) -> None:
    req = tmp_path / "q.json"
    req.write_text('{"text": "咽喉肿痛，声音嘶哑，发热，舌红，脉数"}', encoding="utf-8")
    r = tcm("differentiate", str(req), "--no-models", "--json")
    assert r.code == 0, r.err
    assert r.json_lines()[0]["models_used"] == [] and r.json_lines()[0]["similar_cases"] == []
    r = tcm("suggest", str(req), "--no-models", "--cases", str(built), "--json")
    assert r.code == 2 and "contradict" in r.err
    r = tcm("suggest", str(req), "--models", str(tmp_path / "nowhere"), "--json")
    assert r.code == 2 and "no artifacts folder" in r.err


def test_differentiate_prints_the_icd11_codes(tcm, tmp_path: Path) -> None:
    req = tmp_path / "q.json"
    req.write_text('{"text": "恶寒重，发热轻，无汗，头痛，苔薄白，脉浮紧"}', encoding="utf-8")
    r = tcm("differentiate", str(req), "--no-models")
    assert r.code == 0, r.err
    top = r.out.splitlines()[1]
    assert "感冒·风寒束表证" in top and top.endswith("[ICD-11 SA60]")  # the disease's code; the syndrome has none
