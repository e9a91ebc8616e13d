"""The case base: normalisation of fixture cases, the SQLite store (idempotent), build/open/search."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import kb
from cds.differentiate import CaseIndex
from eval.retrieval import cases_from_jsonl, cases_from_tcm_cases, random_floor, score_neighbours, split_case_text
from kb.errors import ArtifactError, InputError
from models.casebase import CaseBase, CaseStore, Normaliser, case_id
from models.encoders import TfidfEncoder

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cases"


@pytest.fixture(scope="module")
def cases(fixture_kb: kb.KnowledgeBase) -> list:
    got, card = cases_from_tcm_cases(FIXTURES, fixture_kb)
    assert card["name"] == "tcm-cases"
    return got


def test_tcm_cases_are_normalised(cases: list) -> None:
    assert len(cases) == 18
    c = next(c for c in cases if c.split == "train" and c.label == 3)
    assert "处方" not in c.findings and "恶露" in c.findings  # findings only, the prescription split off
    assert [h.name for h in c.herbs] == ["当归", "熟地黄", "白芍", "川芎"]
    assert c.herbs[0].dose == 10 and c.herbs[0].unit == "g" and c.herbs[0].dose_g == 10
    assert c.department == "gynaecology (妇科)" and c.source == "tcm-cases/train.tsv"
    assert c.id.startswith("case-") and len(c.id) == 21
    assert isinstance(c.deid, dict)


def test_herbs_and_symptoms_resolve_through_the_knowledge_base(cases: list, fixture_kb: kb.KnowledgeBase) -> None:
    resolved = {h.name: h.herb_id for c in cases for h in c.herbs}
    for name, hid in resolved.items():
        r = fixture_kb.resolve_herb(name)
        assert hid == (r.id if r.resolved else None)
    assert any(c.symptoms for c in cases) or not fixture_kb.symptoms


def test_jsonl_cases(fixture_kb: kb.KnowledgeBase) -> None:
    got, _ = cases_from_jsonl(FIXTURES / "cases.jsonl", fixture_kb)
    assert len(got) == 2
    assert got[0].formula == "桑菊饮" and "咳嗽" in got[0].findings and got[0].department == "internal"
    assert got[1].herbs[0].dose_g == 9.0  # 3 钱


def test_case_ids_are_stable_content_hashes() -> None:
    a = case_id("src", "咳嗽", [("桑叶", 9.0, "g")])
    assert a == case_id("src", " 咳嗽 ", [("桑叶", 9.0, "g")])
    assert a != case_id("src", "咳嗽", [("桑叶", 6.0, "g")])
    with pytest.raises(InputError, match="findings"):
        Normaliser().case("  ", [], "src")


def test_split_case_text_without_prescription() -> None:
    from training.prescriptions import HerbLexicon

    findings, herbs = split_case_text("咳嗽三日|二诊：好转", HerbLexicon(["桑叶", "菊花"]))
    assert findings == "咳嗽三日。二诊：好转" and herbs == []


def test_store_adding_is_idempotent(cases: list, tmp_path: Path) -> None:
    with CaseStore(tmp_path / "cases.sqlite") as st:
        assert st.add(cases) == len(cases)
        assert st.add(cases) == 0
        assert st.add(cases[:3]) == 0
    with CaseStore(tmp_path / "cases.sqlite") as st:  # persisted
        assert st.count() == len(cases) and st.count("val") == 2
        got = st.get([cases[0].id, "case-unknown"])
        assert got == {cases[0].id: cases[0]}
        assert [c.id for c in st.cases(["test"])] == [c.id for c in cases if c.split == "test"]


def test_case_base_build_open_search(cases: list, tmp_path: Path) -> None:
    train = [c for c in cases if c.split == "train"]
    enc = TfidfEncoder(svd_dim=None).fit([c.findings for c in train])
    cb = CaseBase.build(tmp_path / "cb", cases, enc, splits=["train"])
    assert len(cb.index) == len(train) and cb.store.count() == len(cases)
    cb.close()
    cb = CaseBase.open(tmp_path / "cb")
    as_protocol: CaseIndex = cb  # the cds protocol (checked by mypy; not runtime_checkable)
    assert isinstance(as_protocol.name, str) and as_protocol.name.startswith("cases:tfidf:")
    hits = cb.similar("咽喉肿痛，发热，舌红，脉数", 3)
    assert hits[0].case.label == 5 and hits[0].score >= hits[1].score
    d = hits[0].to_dict()
    assert {"case_id", "score", "findings", "department", "syndrome", "formula", "herbs"} <= set(d)
    triples = cb.search("咽喉肿痛", 2)
    assert len(triples) == 2 and isinstance(triples[0][1], float) and triples[0][2] is None
    with pytest.raises(InputError, match="query text is empty"):
        cb.search("   ", 3)
    cb.close()


def test_open_refuses_an_index_from_another_encoder(cases: list, tmp_path: Path) -> None:
    train = [c for c in cases if c.split == "train"]
    CaseBase.build(tmp_path / "a", cases, TfidfEncoder(svd_dim=None).fit([c.findings for c in train])).close()
    CaseBase.build(tmp_path / "b", cases, TfidfEncoder(svd_dim=None).fit([c.findings for c in train[:8]])).close()
    shutil.rmtree(tmp_path / "a" / "encoder")
    shutil.copytree(tmp_path / "b" / "encoder", tmp_path / "a" / "encoder")
    with pytest.raises(ArtifactError, match="was built with encoder tfidf"):
        CaseBase.open(tmp_path / "a")
    with pytest.raises(ArtifactError, match="not a case base"):
        CaseBase.open(tmp_path / "nothing")


def test_empty_case_base_is_a_clear_error(tmp_path: Path) -> None:
    enc = TfidfEncoder(svd_dim=None).fit(["咳嗽痰多", "咽喉肿痛"])
    with pytest.raises(InputError, match="the case base is empty"):
        CaseBase.build(tmp_path / "cb", [], enc)


def test_retrieval_metrics_on_fixtures(cases: list) -> None:
    train = [c for c in cases if c.split == "train"]
    held = {"val": [c for c in cases if c.split == "val"]}
    own = score_neighbours(train, [[(c, 1.0)] for c in train])  # each case's neighbour is itself
    assert own["P@5"] is not None and own["R@5"] == 1.0 and own["label_accuracy"] == 1.0
    floor = random_floor(train, held, 3)
    assert floor["val"]["queries"] == 2
