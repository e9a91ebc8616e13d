"""`tcm suggest` text output: what a physician reads beside each prescription (built-in knowledge base)."""

from __future__ import annotations

import json


def test_the_text_says_why_the_doses_differ_from_the_formula(tcm) -> None:  # type: ignore[no-untyped-def]
    req = {
        "text": "发热，微恶风寒，咽痛，口渴，咳嗽，舌边尖红，苔薄黄，脉浮数",
        "disease": "感冒",
        "patient": {"age_years": 2},
    }
    r = tcm("suggest", "-", "--no-models", stdin=json.dumps(req, ensure_ascii=False), kb_dir=None)
    assert r.code == 0, r.err
    assert "银翘散: 连翘" in r.out
    assert "按原方比例酌减（×" in r.out  # the original batch, reduced in proportion
    assert "幼儿用成人量的1/2（中医儿科学）" in r.out  # then the child's share
    assert "用法 usage: 散剂" in r.out  # 芦根 适量: the usage says how


def test_the_text_names_a_substitute_and_a_derived_dose(tcm) -> None:  # type: ignore[no-untyped-def]
    req = {"text": "大便溏薄，食少，腹胀，神疲乏力，面色萎黄，舌淡苔白，脉细弱", "disease": "泄泻"}
    r = tcm("suggest", "-", "--no-models", stdin=json.dumps(req, ensure_ascii=False), kb_dir=None)
    assert r.code == 0, r.err
    line = next(x for x in r.out.splitlines() if x.strip().startswith("参苓白术散:"))
    assert "人参" in line and "（可以党参代）" in line
    assert "剂量按原方比例折算（本库计算），请酌定" in r.out
