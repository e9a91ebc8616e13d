"""Safety lint over the built-in content: what the knowledge base itself proposes must pass its own review."""

from __future__ import annotations

from cds.review import review
from kb.base import KnowledgeBase


def _name(kb: KnowledgeBase, herb_id: str, form_id: str | None) -> str:
    return kb.forms[form_id].name if form_id else kb.herbs[herb_id].name


def test_no_modification_adds_a_critical_combination(real_kb: KnowledgeBase) -> None:
    """A modification (加减) never adds a herb that makes a critical finding (十八反, 十九畏, external-only or
    banned use) with the main formula's remaining herbs or with the other herbs it adds. Findings the main
    formula carries on its own (海藻玉壶汤 holds 海藻 and 甘草) are the formula's, reviewed when it is suggested."""
    bad = []
    for sy in real_kb.syndromes.values():
        formula = real_kb.formulas[sy.formula_ids[0]]
        for k, mod in enumerate(sy.modifications):
            added = {_name(real_kb, a.herb_id, a.form_id) for a in mod.add}
            items = [
                {"herb": _name(real_kb, i.herb_id, i.form_id)}
                for i in formula.composition
                if i.herb_id not in mod.remove
            ] + [{"herb": h} for h in sorted(added)]
            for f in review({"items": items}, real_kb).findings:
                if f.severity.value == "critical" and set(f.herbs) & added:
                    bad.append((sy.id, k, formula.name, f.kind, f.herbs))
    assert bad == []
