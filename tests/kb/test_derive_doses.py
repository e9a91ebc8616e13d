"""Decoction doses derived from a formula's original proportion (kb.derive_doses), and the proportional reduction
of a formula listed as its original batch when it is suggested (cds.suggest)."""

from __future__ import annotations

from pathlib import Path

import pytest

import kb
from kb import derive_doses as dd


@pytest.mark.parametrize(
    ("amount", "qian"),
    [
        ("一两", 10), ("半两", 5), ("一两五钱", 15), ("七钱半", 7.5), ("二钱五分", 2.5), ("半斤", 80), ("一斤半", 240),
        ("十二两", 120), ("二十四两", 240), ("一两至二两", 15), ("四两（酒炙）", 40), ("赤白各一斤", 160),
        ("等分", None), ("3片", None), ("半升", None), ("适量", None), ("一钱匕（末）", None),
    ],
)  # fmt: skip
def test_an_original_amount_reads_as_qian(amount: str, qian: float | None) -> None:
    assert dd.weight_in_qian(amount) == qian


def test_fen_is_a_tenth_of_a_qian_or_a_quarter_of_a_liang() -> None:
    assert dd.weight_in_qian("五分") == 0.5 and dd.weight_in_qian("一分", fen=2.5) == 2.5


def test_the_factor_brings_the_doses_to_the_middle_of_their_ranges_on_average() -> None:
    assert dd.proportion_factor([10, 10], [(3, 12), (3, 12)]) == pytest.approx(0.6)  # the middle of 3-12 is 6
    assert dd.proportion_factor([10, 5], [(4, 16), (2, 8)]) == pytest.approx(0.8)  # 8 and 4 g: both middles
    assert dd.proportion_factor([10, 5], [(4, 16), (1, 4)]) == pytest.approx(0.4 * 2**0.5)  # between 0.8 and 0.4
    assert dd.settle(13.4, (3, 10)) == (10, True) and dd.settle(2.26, (1, 3)) == (2.5, False)
    assert dd.settle(4.5, None) == (4.5, False) and dd.settle(10.5, None) == (11, False)  # halves round up


FORMULA = """- id: shi-san
  name: 试验散
  category: 补益剂
  composition:
    - {{herb: 黄芪, amount: 二两, role: 君}}
    - {{herb: 白术, amount: 一两, role: 臣}}
    - {{herb: 炙甘草, amount: 半两, role: 使}}
    - {{herb: 生姜, amount: 3片, role: 佐}}
  usage: {usage}
  source: {{ref: fangjixue}}
"""


def _with(kb_copy: Path, usage: str) -> Path:
    (kb_copy / "formulas" / "derive.yaml").write_text(FORMULA.format(usage=usage), encoding="utf-8")
    return kb_copy


def test_a_decoction_gets_grams_in_proportion_inside_the_ranges_marked_derived(kb_copy: Path) -> None:
    root = _with(kb_copy, "为末，每服9g；亦可作汤剂，用量按原方比例酌定")
    base = kb.load(root, cache=False)
    assert base.stats()["formula_records"]["missing"]["doses"] == 1  # 一两 is not a modern dose
    derived, why = dd.derive(base, base.formulas["shi-san"])
    assert why is None and [(d.herb, d.dose_g) for d in derived] == [("黄芪", 17), ("白术", 8.5), ("炙甘草", 4.5)]
    assert all(d.range_g and d.range_g[0] <= d.dose_g <= d.range_g[1] for d in derived)
    assert dd.main(["--kb", str(root), "--write"]) == 0
    base = kb.load(root, cache=False)
    comp = base.formulas["shi-san"].composition
    assert [(i.written, i.dose_g, i.amount, i.dose_derived) for i in comp] == [
        ("黄芪", 17, "二两", True), ("白术", 8.5, "一两", True), ("炙甘草", 4.5, "半两", True), ("生姜", None, "3片", False)
    ]  # fmt: skip
    stats = base.stats()["formula_records"]
    assert stats["missing"]["doses"] == 0 and stats["doses_derived"] == 1
    assert dd.derive(base, base.formulas["shi-san"]) == ([], "no original weight to scale")  # a second run: nothing


def test_a_pill_taken_as_such_keeps_its_original_amounts(kb_copy: Path) -> None:
    base = kb.load(_with(kb_copy, "为末，炼蜜为丸，每服9g，温开水送下"), cache=False)
    assert dd.derive(base, base.formulas["shi-san"]) == (
        [],
        "a pill or powder taken as such (its usage gives no decoction)",
    )


def test_a_derived_dose_needs_the_amount_it_comes_from(kb_copy: Path) -> None:
    (kb_copy / "formulas" / "derive.yaml").write_text(
        FORMULA.format(usage="水煎服").replace("amount: 二两,", "dose_g: 9, derived: true,"), encoding="utf-8"
    )
    with pytest.raises(kb.ContentError) as exc:
        kb.load(kb_copy, cache=False)
    assert "a derived dose_g needs the original amount" in exc.value.problems[0]


def test_the_real_content_has_no_derived_dose_out_of_range(real_kb: kb.KnowledgeBase) -> None:
    derived = [(f.name, i) for f in real_kb.formulas.values() for i in f.composition if i.dose_derived]
    assert len({name for name, _ in derived}) >= 20
    for name, i in derived:
        rng = real_kb.safety(i.herb_id, i.form_id).dose_g
        assert i.amount and (rng is None or rng[0] <= i.dose_g <= rng[1]), (name, i.written)  # type: ignore[operator]


def test_a_formula_listed_as_its_original_batch_is_suggested_reduced_in_proportion(real_kb: kb.KnowledgeBase) -> None:
    from cds.suggest import suggest

    text = "发热，微恶风寒，咽痛，口渴，咳嗽，舌边尖红，苔薄黄，脉浮数"
    ans = suggest({"text": text, "disease": "感冒"}, real_kb)
    s = next(s for s in ans["suggestions"] if s["formula"]["name"] == "银翘散")
    assert not s["withheld"]  # it was withheld: ten doses over range were more than the one-a-round repair could fix
    (scaled,) = [a for a in s["adaptations"] if a["action"] == "scaled"]
    assert 0 < scaled["factor"] < 1
    dose = {p["herb"]: p["dose_g"] for p in s["prescription"]}
    assert dose["连翘"] == dose["金银花"]  # equal in the original, equal after the reduction
    assert all(f["kind"] != "dose" for f in s["review"]["findings"])


def test_a_suggestion_says_when_its_doses_were_derived(real_kb: kb.KnowledgeBase) -> None:
    from cds.suggest import DERIVED_NOTE, suggest

    text = "大便溏薄，食少，腹胀，神疲乏力，面色萎黄，舌淡苔白，脉细弱"
    ans = suggest({"text": text, "disease": "泄泻"}, real_kb)
    s = next(s for s in ans["suggestions"] if s["formula"]["name"] == "参苓白术散")
    assert DERIVED_NOTE in s["notes"] and s["formula"]["usage"]
    ginseng = next(p for p in s["prescription"] if p["herb"] == "人参")
    assert ginseng["dose_derived"] is True and ginseng["dose_g"] is not None
