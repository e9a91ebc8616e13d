"""Coverage of the knowledge base against the shared data (eval/coverage.py), on small synthetic data.

The reader of case prescriptions (doses, instruction words, shared doses, shorthand, non-herbs) and the formula
comparison (aliases, compound names, ingredients named only in the method of preparation, verdicts).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import kb
from eval import coverage as cov


# ---- doses split the text into pieces ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        ("|桂枝三钱白芍钱半生姜三片，水煎", ["桂枝", "白芍", "生姜"]),  # the text after the last dose is no name
        ("|川连一钱半夏二钱", ["川连", "半夏"]),  # 一钱 then 半夏, never 一钱半 then 夏
        ("|白芍二钱半升麻一钱", ["白芍", "升麻"]),  # 二钱半 then 升麻 (升 is a unit only before other text)
        ("|参三七三分白芍一钱", ["参三七", "白芍"]),  # 三七三分 is 三七 + 三分, not a numeral 三七三
        ("|紫地丁钱五赤芍二钱", ["紫地丁", "赤芍"]),  # 钱五 = 一钱五分
        ("|一钱五味子一钱", ["五味子"]),  # ... but never the 五 of 五味子
        ("|芦根尺许郁金一钱", ["芦根", "郁金"]),
        ("|玫瑰花两朵月季花三朵", ["玫瑰花", "月季花"]),  # 两朵 then 月季花: 月 only ends a dose in 一个月
        ("|热退三分之二，黄芪三钱", ["黄芪"]),  # 三分之二 is not a dose
        ("|枳实（炒）三钱", ["枳实"]),  # a note in brackets goes
        ("|橘红、络各一钱", ["橘红络各"]),  # 橘红、络: the tail joins its head (橘红 + 橘络)
        ("|竹叶卅片白芍二钱", ["竹叶", "白芍"]),  # 卅 = 三十
    ],
)
def test_case_pieces(text: str, pieces: list[str]) -> None:
    assert cov.case_mentions(text) == pieces


# ---- the reader, on the fixture knowledge base --------------------------------------------------------------------
def read(base: kb.KnowledgeBase, piece: str, why: dict | None = None) -> list[tuple[str, str]]:
    return [(m.kind, m.name) for m in cov.CaseReader(base, why).parse(piece)]


@pytest.mark.parametrize(
    ("piece", "expected"),
    [
        ("酒炒白芍", [("herb", "酒炒白芍")]),
        ("桂枝白芍各", [("herb", "桂枝"), ("herb", "白芍")]),  # two names sharing one dose
        ("于前方内加白芍", [("herb", "白芍")]),  # the text before a connective is not a name
        ("研细白术", [("herb", "白术")]),  # an instruction word of the previous herb
        ("布包生石膏", [("herb", "生石膏")]),
        ("白术包", [("herb", "白术")]),
        ("勿见火白术", [("herb", "白术")]),  # only instruction characters before the name
        ("去桂枝加白术", [("herb", "白术")]),  # a herb taken out is not a dosed mention
        ("当归加至", [("herb", "当归")]),  # a dose change
        ("元精石甘草大枣", [("unresolved", "元精石甘草"), ("herb", "大枣")]),  # the unread text still counts
        ("广防己", [("unresolved", "广防己")]),  # never read off as 防己
        ("紫白术", [("unresolved", "紫白术")]),  # one unknown character before a name keeps the whole unread
        ("益元散", [("formula", "益元散")]),  # a formula or patent medicine: counted apart
        ("早晚各服", [("instruction", "早晚各服")]),
        ("据云已饮冷水", [("instruction", "据云已饮冷水")]),  # running prose a number made look like a name
        ("加至", [("instruction", "加至")]),  # only words around a name
        # names glued on before text no reading covers are read; the unread text still counts as one miss
        (
            "桂枝白芍元精石甘草大枣",
            [("herb", "桂枝"), ("herb", "白芍"), ("unresolved", "元精石甘草"), ("herb", "大枣")],
        ),
        ("桂枝嫩尖", [("unresolved", "桂枝嫩尖")]),  # ... but never a name before what may be its own suffix
        ("甘草叶捣汁", [("unresolved", "甘草叶捣汁")]),  # a part of the plant (叶, 根, 皮 …) after the name
        ("甘草汤炒当归", [("unresolved", "甘草汤炒当归")]),  # 甘草 is what 当归 is fried in: no mention of its own
        ("生姜汁每次冲", [("herb", "生姜汁"), ("instruction", "每次冲")]),
        ("改桂枝为肉桂", [("herb", "肉桂")]),  # 改 A 为 B: A is replaced
        ("改黄芪为", [("herb", "黄芪")]),  # ... while 改黄芪为 and a dose changes only the dose
        ("白术土炒", [("herb", "白术")]),  # processing written after the name
        ("附子制", [("herb", "附子")]),
        ("清热消烦白芍", [("herb", "白芍")]),  # what the drug is for, written before it
        ("迳投大白芍", [("herb", "大白芍")]),  # narrative before a name
        ("左足腿弯下又现痧筋", [("instruction", "左足腿弯下又现痧筋")]),
    ],
)
def test_reader(fixture_kb: kb.KnowledgeBase, piece: str, expected: list) -> None:
    assert read(fixture_kb, piece) == expected


def test_reader_uses_reviewed_verdicts(fixture_kb: kb.KnowledgeBase) -> None:
    why = {"童便": {"verdict": "not-herb", "detail": "a vehicle"}, "沙参": {"verdict": "ambiguous", "detail": "x"}}
    assert read(fixture_kb, "童便", why) == [("not_herb", "童便")]
    assert read(fixture_kb, "沙参", why) == [("unresolved", "沙参")]  # ambiguous is still a miss
    # a verdict never overrides a name the knowledge base resolves
    assert read(fixture_kb, "白术", {"白术": {"verdict": "not-herb", "detail": ""}}) == [("herb", "白术")]


# ---- end to end on a small data directory ------------------------------------------------------------------------
def _data(tmp: Path, formulae: list[dict]) -> Path:
    d = tmp / "data"
    (d / "tcm-pd").mkdir(parents=True)
    (d / "smgcn").mkdir()
    (d / "tcm-cases").mkdir()
    (d / "formulae").mkdir()
    (d / "tcm-pd" / "herbs_contains.txt").write_text("甘草\n桂枝\n桑\n", encoding="utf-8")
    (d / "tcm-pd" / "symptom_contains.txt").write_text("恶寒\n", encoding="utf-8")
    (d / "smgcn" / "herb_mapping.txt").write_text("甘草 0\n", encoding="utf-8")
    (d / "tcm-cases" / "test.tsv").write_text(
        "0\t病案|桂枝三钱白芍三钱益元散四钱童便一杯沙参二钱生姜三片\n", encoding="utf-8"
    )
    (d / "formulae" / "formulae.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in formulae), encoding="utf-8"
    )
    return d


def _row(name: str, herbs: str) -> dict:
    return {"category": "x", "formula": name, "text": f"{name}由{herbs}组成。"}


def test_formula_comparison(kb_copy: Path, tmp_path: Path) -> None:
    f = kb_copy / "formulas" / "all.yaml"
    f.write_text(
        f.read_text(encoding="utf-8").replace(
            "    - {herb: 生姜, dose_g: 9, role: 佐}\n    - {herb: 大枣, dose_g: 9, amount: 3枚, role: 佐}",
            "    - {herb: 生姜, dose_g: 9, role: 佐, note: 用法所加}\n    - {herb: 大枣, dose_g: 9, amount: 3枚, role: 佐}",
        )
        + """- id: mahuang-jia-zhu-tang
  name: 麻黄加术汤
  category: 解表剂
  composition:
    - {herb: 麻黄, dose_g: 9}
    - {herb: 桂枝, dose_g: 6}
    - {herb: 苦杏仁, dose_g: 6}
    - {herb: 炙甘草, dose_g: 3}
    - {herb: 白术, dose_g: 12}
  source: {ref: fangjixue, loc: 麻黄加术汤}
""",
        encoding="utf-8",
    )
    base = kb.load(kb_copy)
    data = _data(
        tmp_path,
        [
            _row(
                "桂枝汤", "桂枝、芍药、大枣、甘草"
            ),  # 芍药 = 白芍, 甘草 = 炙甘草's herb; 生姜 is named in the usage only
            _row("麻黄加术汤", "麻黄汤、白术"),  # a compound name stands for its formula
            _row("四君子汤", "人参、白术、茯苓、甘草、山药、水"),  # 山药 more: a real difference; water is set aside
            _row("麻黄汤", "麻黄、桂枝、甘草"),  # 苦杏仁 missing there
        ],
    )
    verdicts = {"sijunzi-tang": {"id": "sijunzi-tang", "verdict": "variant", "detail": "加山药"}}
    why = {"水": {"verdict": "not-herb", "detail": "water"}}
    rep = cov._formulas(base, data, verdicts, why)
    assert (rep["compared"], rep["agree"], rep["agree_exact"]) == (4, 2, 1)
    assert rep["agree_usage"] == [{"formula": "桂枝汤", "id": "guizhi-tang", "named_in_usage_only_ours": ["生姜"]}]
    assert rep["components_expanded"] == [{"formula": "麻黄加术汤", "component": "麻黄汤", "as": "麻黄汤"}]
    dis = {d["formula"]: d for d in rep["disagreements"]}
    assert dis["四君子汤"]["only_ours"] == [] and dis["四君子汤"]["only_theirs"] == ["山药"]
    assert dis["四君子汤"]["verdict"] == "variant" and dis["四君子汤"]["theirs_not_herb"] == ["水"]
    assert dis["麻黄汤"]["only_ours"] == ["苦杏仁"] and dis["麻黄汤"]["verdict"] == "unexplained"
    assert rep["disagreements_by_verdict"] == {"variant": 1, "unexplained": 1}


def test_a_list_equal_to_a_recorded_version_agrees_and_is_counted_apart(
    fixture_kb: kb.KnowledgeBase, tmp_path: Path
) -> None:
    # the fixture records the Pharmacopoeia's 四君子丸 (党参 for 人参) as a version of 四君子汤
    data = _data(tmp_path, [_row("四君子汤", "党参、白术、茯苓、甘草"), _row("桂枝汤", "桂枝、芍药、生姜、大枣、甘草")])
    rep = cov._formulas(fixture_kb, data, {}, {})
    assert (rep["compared"], rep["agree"], rep["agree_main"], rep["agree_exact"]) == (2, 2, 1, 1)
    assert (rep["agreement"], rep["agreement_main"]) == (1.0, 0.5)
    (v,) = rep["agree_version"]
    assert (v["formula"], v["kind"], v["name"]) == ("四君子汤", "pharmacopoeia", "四君子丸")
    assert (v["only_main"], v["only_version"]) == (["人参"], ["党参"]) and "药典" in v["source"]
    # a list that matches neither the main composition nor a version stays a disagreement
    rep = cov._formulas(fixture_kb, _data(tmp_path / "b", [_row("四君子汤", "党参、白术、茯苓")]), {}, {})
    assert rep["agree"] == 0 and rep["agree_version"] == [] and rep["disagreements"][0]["only_ours"] == ["人参", "甘草"]


def test_usage_mark_does_not_excuse_a_missing_core_herb(kb_copy: Path, tmp_path: Path) -> None:
    base = kb.load(kb_copy)  # the fixture marks nothing: 生姜 and 大枣 are core ingredients there
    data = _data(tmp_path, [_row("桂枝汤", "桂枝、芍药、大枣、甘草")])
    rep = cov._formulas(base, data, {}, {})
    assert rep["agree"] == 0 and rep["disagreements"][0]["only_ours"] == ["生姜"]


@pytest.mark.parametrize(
    ("listed", "declared", "agrees"),
    [("桂枝、芍药", 5, True),  # cut short, every herb named is ours, and ours has the 5 the record declares
     ("桂枝、芍药", 6, False),  # declares a herb more than ours has
     ("桂枝、麻黄", 5, False),  # names a herb that is not ours
     ("桂枝、芍药、生姜、大枣、甘草、麻黄", 5, False)],  # the list is not short: compared as it is
)  # fmt: skip
def test_a_list_cut_short_is_compared_by_what_it_names_and_declares(
    fixture_kb: kb.KnowledgeBase, tmp_path: Path, listed: str, declared: int, agrees: bool
) -> None:
    row = {"category": "x", "formula": "桂枝汤", "text": f"桂枝汤由{listed}等{declared}味药物组成。"}
    rep = cov._formulas(fixture_kb, _data(tmp_path, [row]), {}, {})
    assert (rep["compared"], rep["agree"]) == (1, int(agrees))
    assert [x["formula"] for x in rep["agree_truncated"]] == (["桂枝汤"] if agrees else [])


def test_coverage_report(fixture_kb: kb.KnowledgeBase, tmp_path: Path) -> None:
    data = _data(tmp_path, [_row("桂枝汤", "桂枝、芍药、生姜、大枣、甘草")])
    rep = cov.coverage(fixture_kb, data)
    pd = rep["herbs"]["tcm-pd"]
    assert (pd["resolved"], pd["total"]) == (2, 3)
    assert pd["unresolved"][0]["name"] == "桑" and pd["unresolved"][0]["verdict"] == "ambiguous"  # from herbs.yaml
    cases = rep["herbs"]["tcm-cases"]
    # 桂枝, 白芍, 生姜 resolve; 沙参 is an (ambiguous) miss; 益元散 (a formula) and 童便 (a vehicle) are counted apart
    assert (cases["resolved_mentions"], cases["mentions"]) == (3, 4)
    assert cases["not_counted"] == {"formula": 1, "not_herb": 1, "instruction": 0}
    assert cases["unresolved_by_verdict"] == {"ambiguous": 1}
    assert rep["formulas"]["agree"] == 1 and rep["symptoms"]["tcm-pd"]["coverage"] == 1.0


def test_reviewed_files_are_well_formed() -> None:
    why = cov.explanations()
    assert why and all(v["verdict"] in {"not-herb", "formula", "ambiguous", "too-rare", "error-there", "error-here"}
                       for v in why.values())  # fmt: skip
    for fid, v in cov.formula_verdicts().items():
        assert v["verdict"] in {"error-here", "variant", "error-there", "matching"} and v["detail"], fid
