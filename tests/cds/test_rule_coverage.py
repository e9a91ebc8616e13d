"""Every rule of the built-in rule set, and every per-herb safety fact, fires on a positive case and stays quiet
on a negative one; a meta-test fails when a rule or a registered check kind has no test."""

from __future__ import annotations

from typing import Any

import pytest

import kb
from cds import CHECKS, review
from kb.base import KnowledgeBase

NEUTRAL = "茯苓"  # a herb no safety rule names
ADULT = {"pregnant": False, "sex": "male", "age_years": 40}


def _rules(kind: str) -> list[Any]:
    return sorted((r for r in kb.default().rules.values() if r.kind == kind), key=lambda r: r.id)


def fired(rv: Any, rule_id: str) -> bool:
    return any(f.rule_id == rule_id for f in rv.findings)


@pytest.mark.parametrize("rule", _rules("incompatibility") + _rules("antagonism"), ids=lambda r: r.id)
def test_pair_rule(real_kb: KnowledgeBase, rule: Any) -> None:
    for a in rule.a:
        for b in rule.b:
            rv = review({"patient": ADULT, "items": [{"herb": a.written}, {"herb": b.written}]}, real_kb)
            assert fired(rv, rule.id), (a.written, b.written)
    for mem in (*rule.a, *rule.b):
        rv = review({"patient": ADULT, "items": [{"herb": mem.written}, {"herb": NEUTRAL}]}, real_kb)
        assert not fired(rv, rule.id), mem.written


@pytest.mark.parametrize("rule", _rules("controlled") + _rules("banned") + _rules("herb_duration"), ids=lambda r: r.id)
def test_member_rule(real_kb: KnowledgeBase, rule: Any) -> None:
    days = int(rule.params.get("max_days", 3)) + 1
    for mem in rule.members:
        rv = review({"patient": ADULT, "items": [{"herb": mem.written}, {"herb": NEUTRAL}], "days": days}, real_kb)
        assert fired(rv, rule.id), mem.written
    rv = review({"patient": ADULT, "items": [{"herb": NEUTRAL}, {"herb": "甘草"}], "days": days}, real_kb)
    assert not fired(rv, rule.id)
    if rule.kind == "controlled":  # the processed form of a controlled raw drug is not controlled
        rv = review({"patient": ADULT, "items": [{"herb": "法半夏"}]}, real_kb)
        assert not fired(rv, rule.id)


@pytest.mark.parametrize("rule", _rules("duration"), ids=lambda r: r.id)
def test_duration_rule(real_kb: KnowledgeBase, rule: Any) -> None:
    limit, setting = int(rule.params["max_days"]), rule.params["setting"]
    base = {"patient": ADULT, "items": [{"herb": NEUTRAL}], "setting": setting}
    assert fired(review({**base, "days": limit + 1}, real_kb), rule.id)
    assert not fired(review({**base, "days": limit}, real_kb), rule.id)


def _facts(kind: str) -> list[tuple[str, str]]:
    """(name, rule id) for every herb and form that carries its own fact of this kind."""
    base = kb.default()
    out = []
    for h in base.herbs.values():
        if getattr(h.safety, kind):
            out.append((h.name, h.id))
    field = "dose_g" if kind == "dose_g" else kind
    for f in base.forms.values():
        if field in f.own_fields and getattr(f.safety, kind):
            out.append((f.name, f.id))
    return out


@pytest.mark.parametrize(("name", "ident"), _facts("pregnancy"))
def test_pregnancy_fact(real_kb: KnowledgeBase, name: str, ident: str) -> None:
    rid = f"pregnancy.{ident}"
    pregnant = review({"patient": {"pregnant": True, "sex": "female"}, "items": [{"herb": name}]}, real_kb)
    assert fired(pregnant, rid)
    assert not fired(review({"patient": {"pregnant": False}, "items": [{"herb": name}]}, real_kb), rid)


@pytest.mark.parametrize(("name", "ident"), _facts("dose_g"))
def test_dose_fact(real_kb: KnowledgeBase, name: str, ident: str) -> None:
    rid = f"dose.{ident}"
    r = real_kb.resolve_herb(name)
    lo, hi = real_kb.safety(r.id, r.form_id).dose_g  # type: ignore[arg-type, misc]
    over = review({"patient": ADULT, "items": [{"herb": name, "dose_g": hi * 2 + 0.01}]}, real_kb)
    assert fired(over, rid)
    inside = review({"patient": ADULT, "items": [{"herb": name, "dose_g": (lo + hi) / 2}]}, real_kb)
    assert not fired(inside, rid)


@pytest.mark.parametrize(("name", "ident"), _facts("preparation"))
def test_preparation_fact(real_kb: KnowledgeBase, name: str, ident: str) -> None:
    rid = f"preparation.{ident}"
    need = real_kb.safety(real_kb.resolve_herb(name).id, real_kb.resolve_herb(name).form_id).preparation  # type: ignore[arg-type]
    assert fired(review({"items": [{"herb": name}]}, real_kb), rid)
    assert not fired(review({"items": [{"herb": name, "preparation": need}]}, real_kb), rid)


# The test of each registered check kind (tests/cds/test_review.py exercises them on the fixture).
KIND_TESTS = {
    "unresolved": "test_unresolved_is_reported_with_candidates", "incompatibility": "test_pair_rules_fire_across_aliases_and_forms",
    "antagonism": "test_pair_rules_fire_across_aliases_and_forms", "pregnancy": "test_pregnancy", "dose": "test_dose",
    "toxic": "test_toxic_raw_controlled_and_banned", "duplicate": "test_duplicate", "preparation": "test_preparation",
    "duration": "test_duration", "population": "test_population", "deprecated": "test_deprecated",
}  # fmt: skip


def test_meta_every_check_kind_has_a_test() -> None:
    from tests.cds import test_review

    missing = [k for k in CHECKS if k not in KIND_TESTS or not hasattr(test_review, KIND_TESTS[k])]
    assert not missing, f"check kinds without a test: {missing}"


# rule kinds -> the test above that gives each rule of that kind a positive and a negative case
RULE_KIND_TESTS = {
    "incompatibility": test_pair_rule, "antagonism": test_pair_rule, "controlled": test_member_rule,
    "banned": test_member_rule, "herb_duration": test_member_rule, "duration": test_duration_rule,
}  # fmt: skip


def test_meta_every_rule_has_a_positive_and_a_negative_test(real_kb: KnowledgeBase) -> None:
    untested = sorted(r.id for r in real_kb.rules.values() if r.kind not in RULE_KIND_TESTS)
    assert not untested, f"rules of a kind with no positive/negative test: {untested}"
    parametrized = {r.id for k in RULE_KIND_TESTS for r in _rules(k)}
    assert parametrized == set(real_kb.rules)
