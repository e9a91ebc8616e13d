"""Written variants of herb names in prescriptions: each rule with a case it must resolve and one it must not.

Processing words (酒炒, 盐水炒, 姜汁炒, 米炒 …), stacked processing, prefixes on a form's name, physical-form
suffixes after a prefix, adjuvant coatings (朱/辰/黛), and two-drug shorthand (赤白芍, 川象贝, 乳没).
"""

from __future__ import annotations

import pytest

import kb


def herb(base: kb.KnowledgeBase, text: str) -> tuple[str | None, str | None]:
    r = base.resolve_herb(text)
    return (r.name, r.form) if r.resolved else (None, None)


def split(base: kb.KnowledgeBase, text: str) -> list[tuple[str | None, str | None]] | None:
    parts = base.names.split_combined(text)
    return None if parts is None else [(p.name, p.form) for p in parts]


# ---- processing words, on the fixture knowledge base ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "name", "form"),
    [
        ("酒炒白芍", "白芍", "酒炒白芍"),  # the case-record way of writing 酒白芍: generic form of the herb
        ("盐水炒当归", "当归", "盐水炒当归"),
        ("姜汁炒白术", "白术", "姜汁炒白术"),
        ("米炒党参", "党参", "米炒党参"),
        ("盐水炒大白芍", "白芍", "盐水炒大白芍"),  # processing + quality word
        ("米炒上党参", "党参", "米炒上党参"),
        ("炒法半夏", "半夏", "法半夏"),  # a prefix on a form's name: that form, not the raw herb
        ("醋炒炙甘草", "甘草", "炙甘草"),
        ("酒炒炒白术", "白术", "麸炒白术"),  # stacked processing words: the inner name decides the form
        ("生甘草梢", "甘草", "生甘草梢"),  # a raw prefix on a physical-form suffix
        ("水炙甘草", "甘草", "水炙甘草"),  # 水炙 is not honey-fried: not the 蜜炙 form
        ("洗茯苓", "茯苓", "洗茯苓"),
        ("法半夏粉", "半夏", "法半夏"),  # a powder of a form's name: that form, not a generic 半夏 powder
        ("生半夏末", "半夏", "生半夏"),  # ... so the raw, controlled form stays raw
        ("蒲黄灰", "蒲黄", "蒲黄炭"),  # 灰 = 炭
        ("麸白术", "白术", "麸炒白术"),  # 麸 = 麸炒
        ("上上肉桂", "肉桂", None),  # quality words: 上上 (the best grade), 厚 (thick pieces), 大块
        ("厚肉桂", "肉桂", None),
        ("原麝香粉", "麝香", "原麝香粉"),  # a quality word before a name with a processing suffix
    ],
)
def test_processing_words_resolve(fixture_kb: kb.KnowledgeBase, text: str, name: str, form: str) -> None:
    assert herb(fixture_kb, text) == (name, form)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("酒炒广防己", (None, None)),  # a processing word never unlocks a distinct name
        ("盐水炒川牛膝", (None, None)),  # 川牛膝 is not 牛膝 (and not in the fixture)
        ("生炙甘草", (None, None)),  # raw + honey-fried is a contradiction, not 甘草
        ("炒松蒲黄", ("蒲黄", "炒松蒲黄")),  # a plain-frying word never lands on the charred 蒲黄炭
        ("炒香白术", ("白术", "炒香白术")),  # nor on the bran-fried form
        ("炒黑蒲黄", ("蒲黄", "蒲黄炭")),  # 炒黑 says charred
        ("酒炒木", (None, None)),  # the rest must be a herb name of two characters or more
        ("淡竹叶", (None, None)),  # 淡 is a processing word, but 淡竹叶 is its own drug (not in the fixture)
        ("熟地黄", (None, None)),  # no 熟 prefix: 熟地黄 is its own herb
    ],
)
def test_processing_words_do_not_resolve_wrongly(fixture_kb: kb.KnowledgeBase, text: str, expected: tuple) -> None:
    assert herb(fixture_kb, text) == expected


def test_further_processed_form_says_so(fixture_kb: kb.KnowledgeBase) -> None:
    r = fixture_kb.resolve_herb("炒法半夏")
    assert r.form_id == "fabanxia" and not r.raw and "法半夏" in (r.note or "")
    assert fixture_kb.resolve_herb("醋炒生半夏").raw  # a prefix on the raw form keeps it raw (controlled)


# ---- two-drug shorthand and adjuvants, on the fixture ------------------------------------------------------------
def test_shorthand_on_the_fixture(fixture_kb: kb.KnowledgeBase) -> None:
    assert split(fixture_kb, "生熟姜") is None  # 熟姜 is no drug: a split needs every part to resolve
    assert split(fixture_kb, "干生姜") is None
    assert split(fixture_kb, "甘草") is None  # a name that resolves is never split
    assert split(fixture_kb, "桂枝白芍") is None  # two full names side by side are the reader's job, not shorthand
    assert split(fixture_kb, "朱茯苓") is None  # the fixture has no 朱砂 to name as the coating


# ---- the built-in knowledge base --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("川象贝", [("川贝母", None), ("浙贝母", None)]),
        ("赤白芍", [("赤芍", None), ("白芍", None)]),
        ("生熟地", [("地黄", None), ("熟地黄", None)]),
        ("青陈皮", [("青皮", None), ("陈皮", None)]),
        ("南北沙参", [("南沙参", None), ("北沙参", None)]),
        ("炒谷麦芽", [("谷芽", "炒谷芽"), ("麦芽", "炒麦芽")]),  # the processing word applies to both
        ("橘红络", [("橘红", None), ("橘络", None)]),  # shared head
        ("冬瓜子皮", [("冬瓜子", None), ("冬瓜皮", None)]),
        ("茯苓神", [("茯苓", None), ("茯神", None)]),  # the two-part reading wins over 茯神 + 苓神
        ("炙乳没", [("乳香", "醋乳香"), ("没药", "醋没药")]),  # 乳没: listed shorthand
        ("桑海螵蛸", [("桑螵蛸", None), ("海螵蛸", None)]),
        ("朱天冬", [("天冬", None), ("朱砂", None)]),  # the 朱砂 coating is named, never hidden
        ("砂仁拌丹参", [("丹参", None), ("砂仁", None)]),
        ("生熟赤芍", [("赤芍", "生赤芍"), ("赤芍", "熟赤芍")]),  # raw and prepared: 熟 is read only after 生
    ],
)
def test_shorthand_splits(real_kb: kb.KnowledgeBase, text: str, parts: list) -> None:
    assert split(real_kb, text) == parts


def test_a_suffix_is_not_a_second_tail(real_kb: kb.KnowledgeBase) -> None:
    assert real_kb.names.split_combined("乌梅肉炭") is None  # not 乌梅肉 + 乌梅炭: it is 乌梅肉, charred
    assert real_kb.resolve_herb("乌梅肉炭").form == "乌梅炭"
    assert real_kb.names.split_combined("黄甘菊花") is None  # 黄菊花 and 甘菊花 are one drug: no two-drug split


@pytest.mark.parametrize(
    "text", ["莲子心", "胡黄连", "白头翁", "金银花", "广防己", "川牛膝", "南五味子", "苦甘草", "生熟谷麦芽"]
)
def test_shorthand_does_not_split_wrongly(real_kb: kb.KnowledgeBase, text: str) -> None:
    # a known drug is never taken apart (莲子心 is not 莲子 + 莲心); a distinct or unknown name stays whole
    parts = split(real_kb, text)
    r = real_kb.resolve_herb(text)
    assert parts is None
    assert r.resolved == (text in ("莲子心", "胡黄连", "白头翁", "金银花", "川牛膝", "南五味子"))


def test_coated_form_where_the_content_defines_one(real_kb: kb.KnowledgeBase) -> None:
    r = real_kb.resolve_herb("朱染茯神")  # 朱染 + 茯神 -> the content's own 朱茯神 form (朱砂拌)
    assert r.resolved and r.form == "朱茯神"
    assert real_kb.names.split_combined("朱染茯神") is None


@pytest.mark.parametrize(
    ("text", "name"),
    [("牡丹", "牡丹皮"), ("牛蒡", "牛蒡子"), ("女贞", "女贞子"), ("车前", "车前子"), ("元参心", "玄参"),
     ("竹叶卷心", "竹叶"), ("霍石斛", "石斛"), ("汉防己", "防己"), ("水萍", "浮萍"), ("荷叶梗", "荷梗"),
     ("丁头代赭石", "赭石"), ("胡麻仁", "黑芝麻"), ("晋矾", "白矾"), ("瓜蒌实", "瓜蒌"), ("只壳", "枳壳"),
     ("焦术", "白术"), ("水牛角浓缩粉", "水牛角")],
)  # fmt: skip
def test_written_variants_are_aliases(real_kb: kb.KnowledgeBase, text: str, name: str) -> None:
    assert real_kb.resolve_herb(text).name == name


@pytest.mark.parametrize(
    ("text", "name"),
    [("广军", "大黄"), ("生湘军", "大黄"), ("土炒秦归身", "当归"), ("川楝皮", "苦楝皮"), ("樗根白皮", "椿皮"),
     ("琐阳", "锁阳"), ("黄蘖", "黄柏"), ("芎穷", "川芎"), ("鸡距子", "枳椇子"), ("晚蚕矢", "蚕沙"), ("草龙胆", "龙胆"),
     ("桔红", "橘红"), ("福桔核", "橘核"), ("生晒术", "白术"), ("藘茹", "茜草"), ("乌贼鱼骨", "海螵蛸"),
     ("夏枯草穗", "夏枯草"), ("上上落水沉香末", "沉香"), ("明雄精", "雄黄"), ("香稻芽", "稻芽")],
)  # fmt: skip
def test_case_record_names_are_aliases(real_kb: kb.KnowledgeBase, text: str, name: str) -> None:
    # trade and regional names (广军, 湘军 = 大黄), variant characters (琐阳, 黄蘖, 芎穷, 桔红), classical names
    # (藘茹, 蚕矢, 草龙胆), and Pharmacopoeia drugs under their source-plant names (川楝皮 = 苦楝皮, 樗根白皮 = 椿皮)
    assert real_kb.resolve_herb(text).name == name


@pytest.mark.parametrize(
    ("text", "parts"), [("荆防", ["荆芥", "防风"]), ("姜枣", ["生姜", "大枣"]), ("栀豉", ["栀子", "淡豆豉"])]
)
def test_listed_shorthand(real_kb: kb.KnowledgeBase, text: str, parts: list) -> None:
    assert [p[0] for p in split(real_kb, text) or []] == parts


@pytest.mark.parametrize("text", ["沙参", "贝母", "桑", "杏", "功劳叶", "胡麻", "木防己", "苦楝子"])
def test_ambiguous_or_distinct_names_stay_unresolved(real_kb: kb.KnowledgeBase, text: str) -> None:
    assert not real_kb.resolve_herb(text).resolved


def test_concentrated_powder_does_not_inherit_the_decoction_values(real_kb: kb.KnowledgeBase) -> None:
    r = real_kb.resolve_herb("水牛角浓缩粉")
    s = real_kb.safety(r.id, r.form_id)
    assert r.form == "水牛角浓缩粉" and s.preparation is None and s.dose_g is None
