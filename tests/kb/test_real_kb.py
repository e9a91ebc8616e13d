"""Content lint over the whole built-in knowledge base, and spot checks of well-known facts."""

from __future__ import annotations

import re

import pytest

import kb
from kb.base import KnowledgeBase


def test_loads_and_validates(real_kb: KnowledgeBase) -> None:
    assert real_kb.version.release and len(real_kb.version.content_hash) == 12


def test_issue_scale(real_kb: KnowledgeBase) -> None:
    c = real_kb.stats()["counts"]
    assert c["herbs"] >= 600 and c["forms"] >= 150
    assert c["formulas"] >= 400
    assert c["diseases"] >= 150 and c["syndromes"] >= 600
    assert c["symptoms"] >= 1000
    # at least 600 monographs with every field: pinyin, Latin name, nature, flavours, meridians, functions, dose
    assert real_kb.stats()["herb_monographs"]["complete"] >= 600
    # at least 400 formulas with a dose (grams or a count) and a role for every herb, functions, indications, cautions
    assert real_kb.stats()["formula_records"]["complete"] >= 400


def test_every_entry_cites_a_known_source(real_kb: KnowledgeBase) -> None:
    for table in (real_kb.herbs, real_kb.forms, real_kb.formulas, real_kb.diseases, real_kb.syndromes,
                  real_kb.symptoms, real_kb.rules):  # fmt: skip
        for e in table.values():
            assert e.source.ref in real_kb.sources, e.id


def test_every_syndrome_has_findings_principle_and_an_existing_formula(real_kb: KnowledgeBase) -> None:
    for sy in real_kb.syndromes.values():
        assert sy.key and sy.principle and sy.formula_ids, sy.id
        assert sy.secondary and sy.tongue and sy.pulse and sy.modifications, sy.id
        assert all(f in real_kb.formulas for f in sy.formula_ids)


def test_syndrome_findings_are_in_the_vocabulary(real_kb: KnowledgeBase) -> None:
    """Every finding a syndrome profile names resolves to the symptom vocabulary (or differentiation ignores it)."""
    missing = {
        f.term for sy in real_kb.syndromes.values() for f in (*sy.key, *sy.tongue, *sy.pulse) if not f.symptom_id
    }
    assert not missing, sorted(missing)[:50]


# Lists where two terms of the content resolve to one finding on purpose: the components of 五迟 are recognised as
# 五迟; 临厕努挣乏力 and 便后乏力 both read as 排便无力 in the vocabulary
SAME_FINDING_ON_PURPOSE = {("er-wuchi-wuruan.ganshen-kuisun", "key"), ("bianmi.qixu", "key")}


def test_no_syndrome_list_names_one_finding_twice(real_kb: KnowledgeBase) -> None:
    twice = []
    for sy in real_kb.syndromes.values():
        for field in ("key", "secondary", "tongue", "pulse", "contra"):
            ids = [f.symptom_id for f in getattr(sy, field) if f.symptom_id]
            if len(ids) != len(set(ids)) and (sy.id, field) not in SAME_FINDING_ON_PURPOSE:
                twice.append((sy.id, field, [f.term for f in getattr(sy, field)]))
    assert twice == []


def test_ids_are_ascii_slugs(real_kb: KnowledgeBase) -> None:
    pat = re.compile(r"^[a-z][a-z0-9]*([-_.][a-z0-9]+)*$")
    for table in (real_kb.herbs, real_kb.forms, real_kb.formulas, real_kb.syndromes, real_kb.symptoms):
        bad = [k for k in table if not pat.match(k)]
        assert not bad, bad[:10]


def test_dose_ranges_are_sane(real_kb: KnowledgeBase) -> None:
    for h in real_kb.herbs.values():
        if h.safety.dose_g:
            lo, hi = h.safety.dose_g
            assert 0 < lo <= hi <= 250, (h.name, lo, hi)


@pytest.mark.parametrize(
    ("name", "toxicity", "pregnancy", "dose"),
    [("附子", "moderate", "caution", (3, 15)), ("细辛", None, None, (1, 3)), ("麝香", None, "forbidden", None),
     ("马钱子", "high", "forbidden", (0.3, 0.6)), ("斑蝥", "high", "forbidden", (0.03, 0.06)),
     ("甘遂", "moderate", "forbidden", (0.5, 1.5)), ("朱砂", "moderate", "forbidden", (0.1, 0.5)),
     ("吴茱萸", "low", None, (2, 5)), ("甘草", None, None, (2, 10)), ("黄芪", None, None, (9, 30)),
     ("大皂角", "low", "avoid", (1, 1.5)), ("三棱", None, "forbidden", None), ("桃仁", None, "caution", None)],
)  # fmt: skip
def test_pharmacopoeia_facts(real_kb: KnowledgeBase, name: str, toxicity: str | None, pregnancy: str | None,
                             dose: tuple[float, float] | None) -> None:  # fmt: skip
    h = real_kb.herb(name)
    assert h.safety.toxicity_code == toxicity
    assert h.safety.pregnancy_code == pregnancy
    if dose:
        assert h.safety.dose_g == (float(dose[0]), float(dose[1]))


@pytest.mark.parametrize(
    ("name", "preparation"),
    [("石膏", "先煎"), ("附子", "先煎"), ("薄荷", "后下"), ("车前子", "包煎"), ("人参", "另煎"), ("阿胶", "烊化"),
     ("芒硝", "溶入"), ("钩藤", "后下"), ("蒲黄", "包煎")],
)  # fmt: skip
def test_preparation_facts(real_kb: KnowledgeBase, name: str, preparation: str) -> None:
    assert real_kb.herb(name).safety.preparation == preparation


def test_processed_forms(real_kb: KnowledgeBase) -> None:
    for form, herb in (("炙甘草", "甘草"), ("制川乌", "川乌"), ("法半夏", "半夏"), ("姜半夏", "半夏"), ("清半夏", "半夏"),
                       ("黑顺片", "附子"), ("炮姜", "干姜")):  # fmt: skip
        r = real_kb.resolve_herb(form)
        assert r.resolved and r.name == herb and r.form_id, form
    zhi = real_kb.resolve_herb("制川乌")
    assert real_kb.safety(zhi.id, zhi.form_id).toxicity == "有毒"
    assert real_kb.herb("川乌").safety.toxicity == "大毒"
    assert real_kb.resolve_herb("熟地黄").name == "熟地黄" and real_kb.resolve_herb("生地黄").name == "地黄"


def test_guizhi_tang(real_kb: KnowledgeBase) -> None:
    f = real_kb.get("formula", "桂枝汤")
    assert {real_kb.herbs[i.herb_id].name for i in f.composition} == {"桂枝", "白芍", "生姜", "大枣", "甘草"}
    assert any(i.written == "炙甘草" for i in f.composition)


def test_formula_versions(real_kb: KnowledgeBase) -> None:
    versions = [(f, v) for f in real_kb.formulas.values() for v in f.versions]
    assert len(versions) >= 20
    for f, v in versions:  # a 成药 cites the Pharmacopoeia; the others a classic
        assert (v.source.ref == "chp2020") == (v.kind == "pharmacopoeia"), (f.name, v.source.ref)
        assert real_kb.sources[v.source.ref].kind in ("pharmacopoeia", "classic"), f.name
    herbs = {f.name: {real_kb.herbs[i.herb_id].name for i in v.composition} for f, v in versions}
    assert "朱砂" in herbs["柏子养心丸"] and "熟地黄" not in herbs["柏子养心丸"]  # the 成药 is another formula
    assert herbs["犀角地黄汤"] == {"犀角", "地黄", "白芍", "牡丹皮"}  # 原方: 犀角, 芍药 (生地黄 is 地黄)
    assert real_kb.get("formula", "六君子丸").name == "六君子汤"  # a 成药's own name finds its formula


def test_domain_herbs_present(real_kb: KnowledgeBase) -> None:
    """Every herb and form named in the safety rules of DOMAIN.md §3 resolves."""
    names = """甘草 炙甘草 海藻 京大戟 红大戟 甘遂 芫花 川乌 制川乌 草乌 制草乌 附子 半夏 瓜蒌 瓜蒌子 炒瓜蒌子 瓜蒌皮 天花粉
    川贝母 浙贝母 平贝母 伊贝母 湖北贝母 白蔹 白及 藜芦 人参 人参叶 红参 西洋参 党参 北沙参 南沙参 丹参 玄参 苦参 细辛 赤芍 白芍
    硫黄 芒硝 玄明粉 水银 砒霜 狼毒 密陀僧 巴豆 巴豆霜 牵牛子 丁香 母丁香 郁金 犀角 三棱 肉桂 官桂 赤石脂 五灵脂 丁公藤 两头尖
    全蝎 千金子 千金子霜 商陆 土鳖虫 天仙子 干漆 斑蝥 朱砂 水蛭 洋金花 猪牙皂 红粉 罂粟壳 莪术 蜈蚣 轻粉 闹羊花 阿魏 雄黄 马钱子
    马钱子粉 麝香 黑种草子 大皂角 天山雪莲 三七 乳香 没药 牛黄 冰片 凌霄花 天南星 制天南星 大黄 川牛膝 牛膝 常山 枳壳 枳实 桂枝
    桃仁 红花 西红花 漏芦 牡丹皮 王不留行 番泻叶 芦荟 白附子 益母草 瞿麦 赭石 苏木 蒲黄 薏苡仁 虎杖 蟾酥 通草 郁李仁 山豆根
    白果 苍耳子 苦杏仁 川楝子 艾叶 黄芪 石膏 砒石 生马钱子 生川乌 生草乌 生白附子 生附子 生半夏 生南星 生巴豆 青娘虫 红娘虫 生甘遂
    生狼毒 生藤黄 生千金子 生天仙子 雪上一枝蒿 红升丹 白降丹 牡蛎 龟甲 鳖甲 磁石 石决明 珍珠母 水牛角 薄荷 砂仁 豆蔻 钩藤 沉香 青蒿
    车前子 旋覆花 海金沙 葶苈子 辛夷 滑石粉 羚羊角 阿胶 鹿角胶 龟甲胶 三七粉""".split()
    missing = [n for n in names if not real_kb.resolve_herb(n).resolved]
    assert not missing, missing


def test_controlled_raw_forms_are_flagged(real_kb: KnowledgeBase) -> None:
    for name in ("生半夏", "生川乌", "生草乌", "生附子", "生马钱子", "斑蝥", "雄黄", "蟾酥"):
        r = real_kb.resolve_herb(name)
        assert r.resolved, name
    rule = real_kb.rules["controlled.28"]
    assert len(rule.members) == 28


def test_rules_edition_recorded(real_kb: KnowledgeBase) -> None:
    rs = real_kb.rulesets["chp2020-safety"]
    assert "2020" in rs.edition
    assert real_kb.ruleset_version.startswith("chp2020-safety@")


def test_shacl_on_the_real_export(real_kb: KnowledgeBase) -> None:
    from kb.rdf import to_graph, validate_shacl

    conforms, problems = validate_shacl(to_graph(real_kb))
    assert conforms, problems[:20]


def test_default_is_cached_per_process() -> None:
    assert kb.default() is kb.default()


def test_fast_yaml_parser_agrees_with_pyyaml() -> None:
    """The optional fast parser must read every shipped content file exactly as PyYAML does."""
    from kb import loader

    if loader._fast_yaml is None:
        pytest.skip("yaml-rs not installed: PyYAML is used")
    for path in loader.content_files(loader.DEFAULT_DATA_DIR):
        text = path.read_text(encoding="utf-8")
        assert loader._fast_yaml.loads(text) == loader.parse_pyyaml(text, path), path
