"""The safety core of the knowledge base agrees with the project's domain notes (shared/DOMAIN.md §3, compiled from
the Chinese Pharmacopoeia 2020 一部): pregnancy classes, toxicity classes and dose ranges, preparation flags."""

from __future__ import annotations

import pytest

from kb.base import KnowledgeBase

FORBIDDEN = """丁公藤 三棱 两头尖 京大戟 全蝎 千金子 千金子霜 商陆 土鳖虫 天仙子 川乌 草乌 巴豆 巴豆霜 干漆 斑蝥 朱砂 水蛭
洋金花 牵牛子 猪牙皂 甘遂 红粉 罂粟壳 芫花 莪术 蜈蚣 轻粉 闹羊花 阿魏 雄黄 马钱子 马钱子粉 麝香 黑种草子""".split()
AVOID = ["大皂角"]
CAUTION = """三七 乳香 没药 牛黄 冰片 凌霄花 天南星 制天南星 制川乌 制草乌 附子 大黄 天花粉 川牛膝 牛膝 常山 枳壳 枳实 桂枝
肉桂 桃仁 红花 西红花 漏芦 牡丹皮 玄明粉 芒硝 王不留行 番泻叶 芦荟 白附子 益母草 瞿麦 硫黄 赭石 苏木 蒲黄 薏苡仁 虎杖 蟾酥
通草 郁李仁""".split()
TOXIC = {  # name: (class, min g, max g) — None where DOMAIN.md gives no range
    "马钱子": ("high", 0.3, 0.6), "斑蝥": ("high", 0.03, 0.06), "巴豆霜": ("high", 0.1, 0.3), "天仙子": ("high", 0.06, 0.6),
    "闹羊花": ("high", 0.6, 1.5), "川乌": ("high", None, None), "草乌": ("high", None, None),
    "附子": ("moderate", 3, 15), "制川乌": ("moderate", 1.5, 3), "制草乌": ("moderate", 1.5, 3), "朱砂": ("moderate", 0.1, 0.5),
    "雄黄": ("moderate", 0.05, 0.1), "甘遂": ("moderate", 0.5, 1.5), "京大戟": ("moderate", 1.5, 3), "芫花": ("moderate", 1.5, 3),
    "牵牛子": ("moderate", 3, 6), "半夏": ("moderate", 3, 9), "全蝎": ("moderate", 3, 6), "蜈蚣": ("moderate", 3, 5),
    "罂粟壳": ("moderate", 3, 6), "山豆根": ("moderate", 3, 6), "白果": ("moderate", 5, 10), "苍耳子": ("moderate", 3, 10),
    "蟾酥": ("moderate", 0.015, 0.03), "洋金花": ("moderate", 0.3, 0.6),
    "吴茱萸": ("low", 2, 5), "苦杏仁": ("low", 5, 10), "水蛭": ("low", 1, 3), "川楝子": ("low", 5, 10), "艾叶": ("low", 3, 9),
}  # fmt: skip
RANGES = {"细辛": (1, 3), "甘草": (2, 10), "黄芪": (9, 30), "石膏": (15, 60)}
PREPARATION = {
    "先煎": "附子 制川乌 石膏 牡蛎 龟甲 鳖甲 磁石 赭石 石决明 珍珠母 水牛角".split(),
    "后下": "薄荷 砂仁 豆蔻 钩藤 沉香 青蒿 番泻叶".split(),
    "包煎": "车前子 旋覆花 蒲黄 海金沙 葶苈子 辛夷 滑石粉".split(),
    "另煎": "人参 西洋参 羚羊角".split(),
    "烊化": "阿胶 鹿角胶 龟甲胶".split(),
    "冲服": ["三七粉"],
    "溶入": ["芒硝"],
}


def facts(kb: KnowledgeBase, name: str):  # type: ignore[no-untyped-def]
    r = kb.resolve_herb(name)
    assert r.resolved, f"{name} is not in the knowledge base"
    return kb.safety(r.id, r.form_id)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", FORBIDDEN)
def test_forbidden_in_pregnancy(real_kb: KnowledgeBase, name: str) -> None:
    assert facts(real_kb, name).pregnancy_code == "forbidden"


@pytest.mark.parametrize("name", AVOID)
def test_avoid_in_pregnancy(real_kb: KnowledgeBase, name: str) -> None:
    assert facts(real_kb, name).pregnancy_code == "avoid"


@pytest.mark.parametrize("name", CAUTION)
def test_caution_in_pregnancy(real_kb: KnowledgeBase, name: str) -> None:
    assert facts(real_kb, name).pregnancy_code == "caution"


@pytest.mark.parametrize(("name", "expected"), TOXIC.items())
def test_toxicity_and_dose(real_kb: KnowledgeBase, name: str, expected: tuple) -> None:
    cls, lo, hi = expected
    f = facts(real_kb, name)
    assert f.toxicity_code == cls
    if lo is not None:
        assert f.dose_g == (float(lo), float(hi))


@pytest.mark.parametrize(("name", "expected"), RANGES.items())
def test_dose_ranges(real_kb: KnowledgeBase, name: str, expected: tuple) -> None:
    assert facts(real_kb, name).dose_g == (float(expected[0]), float(expected[1]))


@pytest.mark.parametrize(("prep", "name"), [(p, n) for p, ns in PREPARATION.items() for n in ns])
def test_preparation(real_kb: KnowledgeBase, prep: str, name: str) -> None:
    assert facts(real_kb, name).preparation == prep


@pytest.mark.parametrize("name", ["川乌", "草乌"])
def test_raw_aconite_is_processed_before_internal_use(real_kb: KnowledgeBase, name: str) -> None:
    assert facts(real_kb, name).internal_use == "processed_only"


@pytest.mark.parametrize("name", ["巴豆", "红粉"])
def test_external_only(real_kb: KnowledgeBase, name: str) -> None:
    assert facts(real_kb, name).internal_use == "external_only"


@pytest.mark.parametrize("name", ["法半夏", "姜半夏", "清半夏"])
def test_processed_pinellia_keeps_the_dose_and_the_incompatibility_but_not_the_toxic_label(
    real_kb: KnowledgeBase, name: str
) -> None:
    # The Pharmacopoeia gives these their own monographs (辛，温, no 有毒); the 有毒 of 半夏 is the raw drug's
    f = facts(real_kb, name)
    assert f.toxicity is None and f.dose_g == (3.0, 9.0)
    assert any("附子" in c for c in f.cautions)
    assert facts(real_kb, "生半夏").toxicity == "有毒" and facts(real_kb, "生半夏").controlled
