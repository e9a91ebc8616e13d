"""Documented modern substitutes (kb/data/substitutes/): 党参 for 人参 in formula recognition, the formula
cross-check and the formula views; their validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import kb
from eval import coverage as cov
from kb.errors import ContentError
from kb.formula_match import match_formulas

DANGSHEN = """- id: dangshen-for-renshen
  original: 人参
  substitute: 党参
  scope: 古方中治脾肺气虚轻证之人参
  except_formulas: {excepted}
  source: {{ref: zhongyaoxue, loc: 党参}}
"""


def with_substitutes(root: Path, text: str) -> kb.KnowledgeBase:
    (root / "substitutes").mkdir(exist_ok=True)
    (root / "substitutes" / "s.yaml").write_text(text, encoding="utf-8")
    return kb.load(root)


def ids(base: kb.KnowledgeBase, names: str) -> list[str | None]:
    return [base.resolve_herb(n).id for n in names.split()]


def test_a_prescription_with_the_substitute_is_still_the_formula(kb_copy: Path) -> None:
    rx = "党参 白术 茯苓 炙甘草 黄芪"
    assert match_formulas(kb.load(kb_copy), ids(kb.load(kb_copy), rx)) == []  # 君 人参 missing: not 四君子汤
    base = with_substitutes(kb_copy, DANGSHEN.format(excepted="[]"))
    (m,) = match_formulas(base, ids(base, rx))
    assert (m.name, m.coverage, m.missing) == ("四君子汤", 1.0, ())
    assert m.as_dict()["substituted"] == [{"herb_id": "renshen", "by": "dangshen"}]
    # with 人参 itself there is nothing to substitute
    (m,) = match_formulas(base, ids(base, "人参 党参 白术 茯苓 甘草"))
    assert m.substituted == () and "substituted" not in m.as_dict()


def test_a_formula_the_substitution_excepts_keeps_its_herb(kb_copy: Path) -> None:
    base = with_substitutes(kb_copy, DANGSHEN.format(excepted="[四君子汤]"))
    assert match_formulas(base, ids(base, "党参 白术 茯苓 炙甘草")) == []
    assert base.substitutes_in("sijunzi-tang") == {}


def test_the_formula_views_name_the_substitute(kb_copy: Path, tcm) -> None:  # type: ignore[no-untyped-def]
    base = with_substitutes(kb_copy, DANGSHEN.format(excepted="[]"))
    assert [x.id for x in base.substitutes_in("sijunzi-tang")["renshen"]] == ["dangshen-for-renshen"]
    (row,) = tcm("kb", "lookup", "四君子汤", "--json", kb_dir=kb_copy).json_lines()
    assert [(c["herb"], c["substitutes"]) for c in row["composition"]] == [
        ("人参", ["党参"]),
        ("白术", []),
        ("茯苓", []),
        ("甘草", []),
    ]
    stats = tcm("kb", "stats", "--json", kb_dir=kb_copy).json_lines()[0]
    assert stats["substitutions"] == ["党参 for 人参"] and stats["verification"]["substitutions"] == {"unverified": 1}


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"original": "不存在药"}, "original", "not in the knowledge base"),
        ({"substitute": "炙甘草"}, "substitute", "processed form"),
        ({"substitute": "人参"}, "substitute", "same herb"),
        ({"except_formulas": ["麻黄汤"]}, "except_formulas[0]", "does not contain 人参"),
        ({"except_formulas": ["不存在汤"]}, "except_formulas[0]", "not in the knowledge base"),
    ],
)
def test_a_broken_substitution_is_refused_naming_the_field(kb_copy: Path, change: dict, field: str, words: str) -> None:
    entry = {"id": "x-sub", "original": "人参", "substitute": "党参", "scope": "s", "source": {"ref": "zhongyaoxue"}}
    with pytest.raises(ContentError) as exc:
        with_substitutes(kb_copy, json.dumps([{**entry, **change}], ensure_ascii=False))
    (p,) = exc.value.problems
    assert "substitutes/s.yaml" in p and f"field {field}:" in p and words in p


def test_one_substitution_is_recorded_once(kb_copy: Path) -> None:
    one = DANGSHEN.format(excepted="[]")
    with pytest.raises(ContentError) as exc:
        with_substitutes(kb_copy, one + one.replace("id: dangshen-for-renshen", "id: again"))
    assert "党参 for 人参 is already recorded" in exc.value.problems[0]


def append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write(text)


def _rows(tmp: Path, rows: list[tuple[str, str]]) -> Path:
    (tmp / "formulae").mkdir(parents=True)
    text = "".join(json.dumps({"formula": n, "text": f"{n}由{h}组成。"}, ensure_ascii=False) + "\n" for n, h in rows)
    (tmp / "formulae" / "formulae.jsonl").write_text(text, encoding="utf-8")
    return tmp


def test_the_cross_check_names_a_difference_that_is_only_a_recorded_substitute(kb_copy: Path, tmp_path: Path) -> None:
    f = kb_copy / "formulas" / "all.yaml"
    text = f.read_text(encoding="utf-8")
    start, end = (
        text.index("  versions:\n", text.index("四君子汤")),
        text.index("  source: {ref: fangjixue, loc: 四君子汤}"),
    )
    f.write_text(text[:start] + text[end:], encoding="utf-8")  # no 四君子丸 version: only the substitute explains it
    append(
        kb_copy / "herbs" / "all.yaml",
        "- {id: shuiniujiao, name: 水牛角, pinyin: shuǐniújiǎo, category: 清热药, source: {ref: chp2020, loc: 水牛角}}\n",
    )
    append(
        f,
        "- {id: liangxue, name: 凉血试方, category: 清热剂, source: {ref: fangjixue},\n"
        "   composition: [{herb: 水牛角, dose_g: 30}, {herb: 白芍, dose_g: 9}, {herb: 当归, dose_g: 9}]}\n",
    )
    base = with_substitutes(
        kb_copy,
        DANGSHEN.format(excepted="[]")
        + "- {id: sniujiao, original: 犀角, substitute: 水牛角, scope: s, source: {ref: zhongyaoxue}}\n",
    )
    data = _rows(
        tmp_path, [("四君子汤", "党参、白术、茯苓、甘草"), ("凉血试方", "犀角、芍药、当归"), ("麻黄汤", "麻黄、桂枝")]
    )
    rep = cov._formulas(base, data, {}, {})
    assert rep["agree"] == 0 and rep["disagreements_by_substitute_only"] == 2  # still differences, named as such
    dis = {d["formula"]: d for d in rep["disagreements"]}
    assert [(s["theirs"], s["ours"]) for s in dis["四君子汤"]["substitution"]] == [("党参", "人参")]
    assert [(s["theirs"], s["ours"]) for s in dis["凉血试方"]["substitution"]] == [("犀角", "水牛角")]
    assert "substitution" not in dis["麻黄汤"]


def test_a_suggested_formula_names_the_substitute_the_textbook_allows(real_kb: kb.KnowledgeBase) -> None:
    from cds.suggest import suggest

    ans = suggest(
        {"text": "心悸，失眠，多梦，健忘，面色萎黄，食少，神疲乏力，舌淡，脉细弱", "disease": "不寐"}, real_kb
    )
    s = next(s for s in ans["suggestions"] if s["formula"]["name"] == "归脾汤")
    (ginseng,) = [p for p in s["prescription"] if p["herb"] == "人参"]
    assert ginseng["substitutes"] == ["党参"]
    assert all("substitutes" not in p for p in s["prescription"] if p["herb"] != "人参")
    assert real_kb.substitutes_in(real_kb.resolve("独参汤", "formula").id) == {}  # collapse: 人参 only


def test_substitutions_round_trip_through_rdf_and_pass_the_shapes(kb_copy: Path, tmp_path: Path) -> None:
    from kb import rdf

    base = with_substitutes(kb_copy, DANGSHEN.format(excepted="[四君子汤]"))
    first = tmp_path / "first.ttl"
    rdf.export(base, "ttl", first)
    back = rdf.import_file(first, tmp_path / "content")
    assert back.substitutions == base.substitutions
    g = rdf.to_graph(base)
    ok, problems = rdf.validate_shacl(g)
    assert ok, problems
    g.remove((rdf.KBN["substitution/dangshen-for-renshen"], rdf.TCM.substituteRef, None))
    ok, problems = rdf.validate_shacl(g)
    assert not ok and any("substituteRef" in p for p in problems)


def test_the_rest_formula_names_the_substitute(kb_copy: Path) -> None:
    from api.rest import render_entity  # what GET /v1/formulas/{id} answers

    base = with_substitutes(kb_copy, DANGSHEN.format(excepted="[]"))
    f = render_entity(base, "formula", base.formulas["sijunzi-tang"])
    assert f["composition"][0]["substitutes"] == [{"herb": "党参", "substitution": "dangshen-for-renshen"}]
    assert all(c["substitutes"] == [] for c in f["composition"][1:])
