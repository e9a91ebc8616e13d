"""`tcm check`: .json, .jsonl and standard input; --fail-on; bad input."""

from __future__ import annotations

import json
from pathlib import Path

RX1 = {"patient": {"pregnant": False, "sex": "male", "age_years": 40},
       "items": [{"herb": "甘草", "dose": "6g"}, {"herb": "甘遂", "dose_g": 1}]}  # fmt: skip
RX2 = {"items": [{"herb": "党参", "dose": "3钱"}, {"herb": "白术", "dose_g": 9}, {"herb": "大枣", "dose": "3枚"}]}


def write(tmp_path: Path, name: str, *docs: object, raw: str | None = None) -> str:
    p = tmp_path / name
    p.write_text(
        raw if raw is not None else "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8"
    )
    return str(p)


def test_jsonl_one_review_per_line_in_order(tcm, tmp_path: Path) -> None:
    r = tcm("check", write(tmp_path, "rx.jsonl", RX1, RX2), "--json")
    assert r.code == 0
    first, second = r.json_lines()
    for key in ("findings", "kb_version", "ruleset_version", "summary", "resolution"):
        assert key in first
    (f,) = first["findings"]
    assert f["kind"] == "incompatibility" and f["severity"] == "critical" and set(f["herbs"]) == {"甘草", "甘遂"}
    for key in ("rule_id", "kind", "severity", "herbs", "message", "source", "override_allowed"):
        assert key in f
    assert not [x for x in second["findings"] if x["severity"] == "critical"]


def test_json_file_and_stdin(tcm, tmp_path: Path) -> None:
    r = tcm("check", write(tmp_path, "rx.json", RX1), "--json")
    assert r.code == 0 and "findings" in json.loads(r.out)
    r = tcm("check", "-", "--json", stdin=json.dumps(RX1, ensure_ascii=False))
    assert r.code == 0 and json.loads(r.out)["summary"]["critical"] == 1


def test_fail_on(tcm, tmp_path: Path) -> None:
    path = write(tmp_path, "rx.json", RX1)
    assert tcm("check", path, "--json", "--fail-on", "critical").code == 1
    assert tcm("check", write(tmp_path, "ok.json", RX2), "--json", "--fail-on", "warning").code == 0


def test_bad_line_yields_error_object_and_the_rest_is_reviewed(tcm, tmp_path: Path) -> None:
    path = write(
        tmp_path, "rx.jsonl", raw='{"items": "oops"}\n{not json\n' + json.dumps(RX2, ensure_ascii=False) + "\n"
    )
    r = tcm("check", path, "--json")
    rows = r.json_lines()
    assert len(rows) == 3 and r.code == 0
    assert rows[0]["line"] == 1 and "items" in rows[0]["error"]
    assert rows[1]["line"] == 2 and "malformed JSON" in rows[1]["error"]
    assert "findings" in rows[2]


def test_bad_input_exits_2_naming_the_field(tcm, tmp_path: Path) -> None:
    cases = {
        "neg.json": ({"items": [{"herb": "甘草", "dose": "-3g"}]}, "items[0].dose"),
        "unit.json": ({"items": [{"herb": "甘草", "dose": "3斗"}]}, "unknown unit"),
        "empty.json": ({"items": [{"herb": "", "dose": "3g"}]}, "items[0].herb"),
        "noitems.json": ({"patient": {}}, "items"),
    }
    for name, (doc, text) in cases.items():
        r = tcm("check", write(tmp_path, name, doc), "--json")
        assert r.code == 2 and text in r.err and "Traceback" not in r.err, (name, r)
    r = tcm("check", write(tmp_path, "bad.json", raw="{oops"), "--json")
    assert r.code == 2 and "malformed JSON" in r.err
    r = tcm("check", str(tmp_path / "missing.json"))
    assert r.code == 2 and "not found" in r.err


def test_cards_flag(tcm, tmp_path: Path) -> None:
    r = tcm("check", write(tmp_path, "rx.json", RX1), "--json", "--cards")
    cards = json.loads(r.out)["cards"]
    assert cards and cards[0]["indicator"] == "critical"
