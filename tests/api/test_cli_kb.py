"""The `tcm kb` command-line contract (JSON field names, exit codes, no tracebacks)."""

from __future__ import annotations

import json
from pathlib import Path


def test_stats_json(tcm) -> None:
    r = tcm("kb", "stats", "--json")
    assert r.code == 0
    doc = json.loads(r.out)
    assert doc["counts"]["herbs"] > 20 and doc["rules_per_kind"]["incompatibility"] >= 1
    assert doc["version"].startswith("2026.01.01+")


def test_lookup_file_json_lines_in_order(tcm, tmp_path: Path) -> None:
    names = tmp_path / "names.txt"
    names.write_text("甘草\n炙甘草\n不存在的药\n\n怕冷\n桂枝汤\n", encoding="utf-8")
    r = tcm("kb", "lookup", "--file", str(names), "--json")
    assert r.code == 0
    rows = r.json_lines()
    assert [x["input"] for x in rows] == ["甘草", "炙甘草", "不存在的药", "怕冷", "桂枝汤"]
    g, z, unknown, sym, formula = rows
    assert g["resolved"] and g["kind"] == "herb" and g["form"] is None
    assert z["id"] == g["id"] and z["form"] == "炙甘草"
    for key in ("toxicity", "pregnancy", "dose_g", "preparation"):
        assert key in g
    assert g["dose_g"] == {"min": 2.0, "max": 10.0}
    assert not unknown["resolved"] and isinstance(unknown["candidates"], list)
    assert sym["kind"] == "symptom" and sym["name"] == "畏寒"
    assert formula["kind"] == "formula" and next(c["herb"] for c in formula["composition"]) == "桂枝"


def test_lookup_herb_codes(tcm) -> None:
    (row,) = tcm("kb", "lookup", "附子", "--json").json_lines()
    assert (row["toxicity"], row["pregnancy"], row["preparation"]) == ("moderate", "caution", "先煎")
    (raw,) = tcm("kb", "lookup", "生川乌", "--json").json_lines()
    assert raw["toxicity"] == "high" and raw["pregnancy"] == "forbidden" and raw["controlled"] is True


def test_lookup_lists_incompatible_partners(tcm) -> None:
    (row,) = tcm("kb", "lookup", "国老", "--json").json_lines()
    assert {"海藻", "甘遂", "芫花"} <= set(row["incompatible_with"][0]["herbs"])


def test_bad_input_is_a_clear_error_without_traceback(tcm, tmp_path: Path) -> None:
    cases = [
        tcm("kb", "lookup", "--file", str(tmp_path / "missing.txt")),
        tcm("kb", "query", "SELEC nothing"),
        tcm("kb", "stats", "--no-such-option"),
        tcm("kb", "import", str(tmp_path / "missing.ttl")),
        tcm("kb", "lookup"),
    ]
    for r in cases:
        assert r.code == 2, r
        assert "Traceback" not in r.out + r.err and r.err.strip()


def test_invalid_content_fails_validate(tcm, kb_copy: Path) -> None:
    p = kb_copy / "herbs" / "all.yaml"
    p.write_text(p.read_text(encoding="utf-8").replace("dose_g: [2, 10]", "dose_g: [10, 2]", 1), encoding="utf-8")
    r = tcm("kb", "validate", kb_dir=kb_copy)
    assert r.code == 2 and "min > max" in r.err
    r = tcm("kb", "stats", "--json", kb_dir=kb_copy)
    assert r.code == 2 and "Traceback" not in r.err


def test_validate_with_shacl(tcm) -> None:
    r = tcm("kb", "validate", "--shacl", "--json")
    doc = json.loads(r.out)
    assert r.code == 0 and doc["valid"] and doc["shacl"]["conforms"]


def test_query_json(tcm) -> None:
    r = tcm("kb", "query", 'ASK { ?h skos:prefLabel "甘草"@zh }', "--json")
    assert r.code == 0 and json.loads(r.out)["boolean"] is True


def test_export_import_round_trip_cli(tcm, tmp_path: Path) -> None:
    out = tmp_path / "kb.jsonld"
    assert tcm("kb", "export", "--format", "jsonld", "--out", str(out)).code == 0
    r = tcm("kb", "import", str(out), "--out", str(tmp_path / "content"), "--json")
    assert r.code == 0 and json.loads(r.out)["counts"]["herbs"] > 20
    assert (tmp_path / "content" / "herbs" / "all.yaml").exists()


def test_graph_command(tcm) -> None:
    r = tcm("kb", "graph", "formulas-of-herb", "芍药")
    assert r.code == 0 and json.loads(r.out) == ["桂枝汤"]


def test_lookup_shows_the_groups_a_herb_is_restricted_for(tcm) -> None:  # type: ignore[no-untyped-def]
    (row,) = tcm("kb", "lookup", "炒麦芽", "--json", kb_dir=None).json_lines()
    assert row["populations"] == ["哺乳期不宜"]  # the form inherits its herb's restriction
    out = tcm("kb", "lookup", "朱砂", kb_dir=None).out
    assert "肝功能不全禁用" in out and "肾功能不全禁用" in out
