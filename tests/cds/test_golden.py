"""Golden prescriptions (tests/golden/prescriptions.yaml) and every formula of the knowledge base."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from cds import review
from kb.base import KnowledgeBase

GOLDEN = yaml.safe_load((Path(__file__).parents[1] / "golden" / "prescriptions.yaml").read_text(encoding="utf-8"))
# Formulas whose classical composition contains a combination the rules flag, reported with the source, as the
# engine should: the physician overrides with a reason.
CONTESTED = {"海藻玉壶汤", "附子粳米汤", "甘遂半夏汤", "十香返魂丹", "赤丸", "大黄䗪虫丸", "真方白丸子", "回阳救急汤"}


@pytest.mark.parametrize("case", GOLDEN, ids=[c["name"] for c in GOLDEN])
def test_golden(real_kb: KnowledgeBase, case: dict[str, Any]) -> None:
    rv = review(case["rx"], real_kb)
    got = [(f.kind, f.severity.value, list(f.herbs)) for f in rv.findings]
    if case.get("clean"):
        assert not [g for g in got if g[1] != "info"], got
    for want in case.get("expect", []):
        assert any(k == want["kind"] and s == want["severity"] and set(want["herbs"]) <= set(h)
                   for k, s, h in got), (want, got)  # fmt: skip


def test_every_formula_is_free_of_critical_findings_for_a_non_pregnant_adult(real_kb: KnowledgeBase) -> None:
    bad = {}
    for f in real_kb.formulas.values():
        if f.name in CONTESTED or (f.usage and "外用" in f.usage):
            continue
        items = [{"herb": i.written, **({"dose_g": i.dose_g} if i.dose_g else {})} for i in f.composition]
        rv = review({"patient": {"pregnant": False, "sex": "male", "age_years": 40}, "items": items}, real_kb)
        crit = [x.message_zh for x in rv.findings if x.severity.value == "critical" and x.kind not in ("dose", "toxic")]
        if crit:
            bad[f.name] = crit
    assert not bad, bad
