"""Content validation: every broken entry fails the load with its file, entry and field named."""

from __future__ import annotations

from pathlib import Path

import pytest

import kb
from kb.errors import ContentError


def break_file(root: Path, rel: str, old: str, new: str) -> None:
    p = root / rel
    text = p.read_text(encoding="utf-8")
    assert old in text, f"fixture changed: {old!r} not in {rel}"
    p.write_text(text.replace(old, new, 1), encoding="utf-8")


def problems(root: Path) -> list[str]:
    with pytest.raises(ContentError) as exc:
        kb.load(root)
    return exc.value.problems


def test_fixture_is_valid(kb_copy: Path) -> None:
    assert kb.load(kb_copy).stats()["counts"]["herbs"] > 20


def test_dose_range_min_above_max(kb_copy: Path) -> None:
    break_file(kb_copy, "herbs/all.yaml", "dose_g: [2, 10]", "dose_g: [10, 2]")
    p = problems(kb_copy)[0]
    assert "herbs/all.yaml" in p and "甘草" in p and "dose_g" in p and "min > max" in p


def test_unknown_field(kb_copy: Path) -> None:
    break_file(kb_copy, "herbs/all.yaml", "nature: 平,", "natur: 平,")
    p = problems(kb_copy)[0]
    assert "entry #1 (甘草, id=gancao)" in p and "natur" in p and "unknown field" in p


def test_bad_enum_value(kb_copy: Path) -> None:
    break_file(kb_copy, "herbs/all.yaml", "toxicity: 有毒, pregnancy: 慎用", "toxicity: 剧毒, pregnancy: 慎用")
    p = problems(kb_copy)[0]
    assert "附子" in p and "toxicity" in p


def test_formula_herb_that_does_not_resolve(kb_copy: Path) -> None:
    break_file(kb_copy, "formulas/all.yaml", "{herb: 桂枝, dose_g: 9", "{herb: 桂技, dose_g: 9")
    p = problems(kb_copy)[0]
    assert "formulas/all.yaml entry #1" in p and "composition[0].herb" in p and "桂技" in p and "桂枝" in p


def test_syndrome_formula_that_does_not_exist(kb_copy: Path) -> None:
    break_file(kb_copy, "diseases/all.yaml", "formulas: [四君子汤]", "formulas: [六君子汤]")
    p = problems(kb_copy)[0]
    assert "diseases/all.yaml" in p and "ganmao.qixu" in p and "formulas[0]" in p and "六君子汤" in p


def test_duplicate_id(kb_copy: Path) -> None:
    break_file(kb_copy, "herbs/all.yaml", "id: haizao,", "id: gansui,")
    assert any("duplicate herb/form id 'gansui'" in p for p in problems(kb_copy))


def test_alias_pointing_to_two_herbs(kb_copy: Path) -> None:
    break_file(kb_copy, "herbs/all.yaml", "aliases: [红枣]", "aliases: [红枣, 国老]")
    p = problems(kb_copy)[0]
    assert "国老" in p and "two herb entries" in p and "herb gancao" in p and "herb dazao" in p


def test_rule_naming_an_unknown_herb(kb_copy: Path) -> None:
    break_file(kb_copy, "rules/test-rules.yaml", "b: [海藻, 甘遂, 芫花]", "b: [海藻, 大戟, 芫花]")
    p = problems(kb_copy)[0]
    assert "rules/test-rules.yaml" in p and "rules[0].b[1]" in p and "大戟" in p


def test_unknown_source(kb_copy: Path) -> None:
    break_file(kb_copy, "herbs/all.yaml", "source: {ref: chp2020, loc: 海藻}", "source: {ref: chp2099, loc: 海藻}")
    p = problems(kb_copy)[0]
    assert "海藻" in p and "source.ref" in p and "chp2099" in p


def test_missing_source(kb_copy: Path) -> None:
    break_file(kb_copy, "herbs/all.yaml", ", source: {ref: chp2020, loc: 海藻}", "")
    p = problems(kb_copy)[0]
    assert "海藻" in p and "source" in p and "Field required" in p


def test_yaml_syntax_error(kb_copy: Path) -> None:
    (kb_copy / "symptoms" / "broken.yaml").write_text("- {id: x1, name: [unclosed\n", encoding="utf-8")
    p = problems(kb_copy)[0]
    assert "symptoms/broken.yaml" in p and "line" in p


def test_all_problems_reported_at_once(kb_copy: Path) -> None:
    break_file(kb_copy, "herbs/all.yaml", "dose_g: [2, 10]", "dose_g: [10, 2]")
    break_file(kb_copy, "formulas/all.yaml", "{herb: 桂枝, dose_g: 9", "{herb: 桂技, dose_g: 9")
    assert len(problems(kb_copy)) >= 2


def test_unresolved_finding_is_a_warning_not_an_error(kb_copy: Path) -> None:
    break_file(kb_copy, "diseases/all.yaml", "key_symptoms: [恶寒, 乏力]", "key_symptoms: [恶寒, 乏力, 莫名其妙]")
    base = kb.load(kb_copy)
    assert any("莫名其妙" in w for w in base.warnings)


def test_disease_icd11_code_must_be_a_tm1_disorder(kb_copy: Path) -> None:
    break_file(kb_copy, "diseases/all.yaml", "codes: {icd11: SA60}", "codes: {icd11: SF8C}")
    p = problems(kb_copy)[0]
    assert "diseases/all.yaml" in p and "codes.icd11" in p and "'SF8C'" in p and "pattern code" in p


def test_syndrome_icd11_code_must_be_a_tm1_pattern(kb_copy: Path) -> None:
    break_file(
        kb_copy, "diseases/all.yaml", "      name: 风寒束表证\n", "      name: 风寒束表证\n      codes: {icd11: SA60}\n"
    )
    p = problems(kb_copy)[0]
    assert "syndromes[ganmao.fenghan-shubiao].codes.icd11" in p and "'SA60'" in p and "disorder code" in p


def test_unknown_icd11_code(kb_copy: Path) -> None:
    break_file(kb_copy, "diseases/all.yaml", "codes: {icd11: SA60}", "codes: {icd11: SA6O}")
    p = problems(kb_copy)[0]
    assert "'SA6O' is not an ICD-11 chapter 26 (TM1) code" in p


def test_icd11_codes_load_and_show_in_stats(kb_copy: Path) -> None:
    base = kb.load(kb_copy)
    assert base.diseases["ganmao"].codes == {"icd11": "SA60"}
    assert base.stats()["codes"]["diseases"]["icd11"] == 1


def test_a_merged_symptom_id_keeps_answering(kb_copy: Path) -> None:
    """Merging two symptom entries deletes nothing: the kept entry lists the old id in ``replaces``, and the old id
    still finds the entry and reads as deprecated, replaced by it."""
    break_file(
        kb_copy, "symptoms/all.yaml", "{id: fa1re4, name: 发热,", "{id: fa1re4, replaces: [fa1re4-old], name: 发热,"
    )
    base = kb.load(kb_copy)
    assert base.get("symptom", "fa1re4-old").name == "发热"
    assert base.deprecation("symptom", "fa1re4-old") == {"replaced_by": "fa1re4", "reason": "merged into fa1re4"}


def test_replaces_must_name_an_id_that_is_gone(kb_copy: Path) -> None:
    break_file(
        kb_copy, "symptoms/all.yaml", "{id: fa1re4, name: 发热,", "{id: fa1re4, replaces: [fa1re4-qing1], name: 发热,"
    )
    assert any("'fa1re4-qing1' is still a symptom of its own" in p for p in problems(kb_copy))


VERSION = "      composition: [{herb: 党参}, {herb: 炒白术}, {herb: 茯苓}, {herb: 炙甘草}]"


def test_formula_version_herb_that_does_not_resolve(kb_copy: Path) -> None:
    break_file(kb_copy, "formulas/all.yaml", VERSION, VERSION.replace("{herb: 茯苓}", "{herb: 茯令}"))
    (p,) = problems(kb_copy)
    assert "四君子汤" in p and "versions[0].composition[2].herb" in p and "茯令" in p


def test_formula_version_that_repeats_the_main_composition(kb_copy: Path) -> None:
    break_file(kb_copy, "formulas/all.yaml", VERSION, VERSION.replace("党参", "人参").replace("炒白术", "白术"))
    (p,) = problems(kb_copy)
    assert "四君子汤" in p and "versions[0]" in p and "same herbs as composition" in p


def test_formula_version_kind_must_be_known(kb_copy: Path) -> None:
    break_file(kb_copy, "formulas/all.yaml", "    - kind: 药典\n", "    - kind: 成药\n")
    assert any("versions" in p and "kind" in p for p in problems(kb_copy))


def test_two_pharmacopoeia_lists_under_one_name(kb_copy: Path) -> None:
    path = kb_copy / "formulas" / "all.yaml"
    text = path.read_text(encoding="utf-8")
    block = text[text.index("    - kind: 药典") : text.index("  source: {ref: fangjixue, loc: 四君子汤}")]
    second = block.replace("{herb: 茯苓}", "{herb: 茯苓}, {herb: 山药}")
    path.write_text(text.replace(block, block + second, 1), encoding="utf-8")
    assert any("two versions of kind 药典 under the name 四君子丸" in p for p in problems(kb_copy))
    path.write_text(text.replace(block, block + second.replace("四君子丸", "四君子颗粒"), 1), encoding="utf-8")
    assert kb.load(kb_copy, cache=False).formulas["sijunzi-tang"].versions[1].name == "四君子颗粒"  # its own name


@pytest.mark.parametrize(
    ("value", "words"),
    [("[孕妇禁用]", "should match pattern"), ("[儿童禁用, 儿童慎用]", "儿童 appears more than once")],
)
def test_population_restrictions_are_group_and_level(kb_copy: Path, value: str, words: str) -> None:
    break_file(kb_copy, "herbs/all.yaml", "dose_g: [2, 10]", f"dose_g: [2, 10], populations: {value}")
    p = problems(kb_copy)[0]
    assert "甘草" in p and "populations" in p and words in p
