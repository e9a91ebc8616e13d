"""RDF: lossless export/import round trip, SHACL validation, SPARQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from rdflib import Graph, Literal
from rdflib.namespace import SKOS

import kb
from kb import rdf
from kb.errors import QueryError, RDFError


@pytest.mark.parametrize("fmt", ["ttl", "jsonld"])
def test_export_import_export_is_lossless(fixture_kb: kb.KnowledgeBase, tmp_path: Path, fmt: str) -> None:
    first = tmp_path / f"first.{fmt}"
    rdf.export(fixture_kb, fmt, first)
    reimported = rdf.import_file(first, tmp_path / "content")
    second = tmp_path / f"second.{fmt}"
    rdf.export(reimported, fmt, second)
    g1 = Graph().parse(first, format="json-ld" if fmt == "jsonld" else "turtle")
    g2 = Graph().parse(second, format="json-ld" if fmt == "jsonld" else "turtle")
    assert len(g1) > 1000 and set(g1) == set(g2)
    assert reimported.stats()["counts"] == fixture_kb.stats()["counts"]
    # the order that carries meaning survives: main formula first, composition order
    sy = reimported.syndromes["ganmao.fenghan-shubiao"]
    assert [reimported.formulas[f].name for f in sy.formula_ids] == ["麻黄汤", "桂枝汤"]
    assert next(i.written for i in reimported.formulas["guizhi-tang"].composition) == "桂枝"
    # inheritance survives: a form that did not set its dose still inherits
    assert "dose_g" not in reimported.forms["zhigancao"].own_fields


def test_formula_versions_round_trip(kb_copy: Path, tmp_path: Path) -> None:
    path = kb_copy / "formulas" / "all.yaml"
    text = path.read_text(encoding="utf-8")
    marker = "  source: {ref: fangjixue, loc: 麻黄汤}"
    other = """  versions:
    - kind: 别本
      origin: 《某书》
      composition: [{herb: 麻黄, dose_g: 6}, {herb: 桂枝, note: 去皮}, {herb: 炙甘草}]
      source: {ref: fangjixue, loc: 麻黄汤 按语}
"""  # no name of its own: it goes by 麻黄汤
    path.write_text(text.replace(marker, other + marker), encoding="utf-8")
    base = kb.load(kb_copy, cache=False)
    first = tmp_path / "first.ttl"
    rdf.export(base, "ttl", first)
    back = rdf.import_file(first, tmp_path / "content")
    for fid in ("mahuang-tang", "sijunzi-tang"):
        assert back.formulas[fid].versions == base.formulas[fid].versions
    (v,) = back.formulas["mahuang-tang"].versions
    assert (v.kind, v.name, v.origin) == ("other", None, "《某书》")
    assert [(i.written, i.dose_g, i.note) for i in v.composition] == [("麻黄", 6.0, None), ("桂枝", None, "去皮"),
                                                                      ("炙甘草", None, None)]  # fmt: skip
    ok, problems = rdf.validate_shacl(rdf.to_graph(base))
    assert ok, problems  # the versions' ingredients name herbs of the knowledge base; each version cites a source


def test_export_uses_skos_and_prov(fixture_kb: kb.KnowledgeBase) -> None:
    g = rdf.to_graph(fixture_kb)
    gancao = rdf.KBN["herb/gancao"]
    assert (gancao, SKOS.prefLabel, Literal("甘草", lang="zh")) in g
    assert (gancao, SKOS.altLabel, Literal("国老", lang="zh")) in g
    assert (gancao, SKOS.altLabel, Literal("Glycyrrhizae Radix et Rhizoma", lang="la")) in g
    prov = rdf.PROV.wasDerivedFrom
    assert (gancao, prov, rdf.KBN["source/chp2020"]) in g


def test_shacl_accepts_the_export(fixture_kb: kb.KnowledgeBase) -> None:
    conforms, problems = rdf.validate_shacl(rdf.to_graph(fixture_kb))
    assert conforms, problems


def test_shacl_rejects_a_broken_graph(fixture_kb: kb.KnowledgeBase) -> None:
    g = rdf.to_graph(fixture_kb)
    gancao = rdf.KBN["herb/gancao"]
    g.remove((gancao, SKOS.prefLabel, None))  # no preferred label
    g.set((gancao, rdf.TCM.doseMin, Literal("20.0", datatype=rdf.XSD.decimal)))  # min above max
    g.remove((rdf.KBN["formula/guizhi-tang/composition/0"], rdf.TCM.herbRef, None))  # dangling ingredient
    conforms, problems = rdf.validate_shacl(g)
    assert not conforms
    text = "\n".join(problems)
    assert "kb:herb/gancao: skos:prefLabel" in text
    assert "doseMin" in text
    assert "guizhi-tang/composition/0: tcm:herbRef" in text


def test_sparql_select(fixture_kb: kb.KnowledgeBase) -> None:
    g = rdf.to_graph(fixture_kb)
    res = rdf.query(
        g,
        """SELECT ?name WHERE { ?f a tcm:Formula ; skos:prefLabel ?name ; tcm:containsHerb ?h .
                                              ?h skos:prefLabel "甘草"@zh } ORDER BY ?name""",
    )
    assert [b["name"]["value"] for b in res["results"]["bindings"]] == ["四君子汤", "桂枝汤", "麻黄汤"]


@pytest.mark.parametrize("text", ["SELEC nothing", "", "INSERT DATA { <a:b> <a:c> <a:d> }"])
def test_sparql_rejects_malformed_and_updates(fixture_kb: kb.KnowledgeBase, text: str) -> None:
    with pytest.raises(QueryError):
        rdf.query(rdf.to_graph(fixture_kb), text)


def test_import_refuses_non_kb_rdf(tmp_path: Path) -> None:
    p = tmp_path / "x.ttl"
    p.write_text("<urn:a> <urn:b> <urn:c> .\n", encoding="utf-8")
    with pytest.raises(RDFError):
        rdf.import_file(p)


def test_import_refuses_non_empty_output(fixture_kb: kb.KnowledgeBase, tmp_path: Path) -> None:
    out = tmp_path / "x.ttl"
    rdf.export(fixture_kb, "ttl", out)
    target = tmp_path / "busy"
    target.mkdir()
    (target / "keep.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(RDFError):
        rdf.import_file(out, target)
    assert (target / "keep.txt").read_text(encoding="utf-8") == "mine"


def test_turtle_writer_round_trips_what_rdflib_reads() -> None:
    from rdflib import RDF, XSD, BNode, Namespace, URIRef
    from rdflib.compare import isomorphic

    ex = Namespace("https://example.org/ns#")
    g = Graph()
    g.bind("ex", ex)
    s, node = URIRef("https://example.org/kb/herb/guizhi"), BNode()
    for o in (
        Literal('引号"反斜杠\\ 换行\n回车\r制表\t 控制\x01 结束'),
        Literal("甘草", lang="zh"),
        Literal("Glycyrrhizae Radix", lang="la"),
        Literal(3, datatype=XSD.integer),
        Literal("1.5", datatype=XSD.decimal),
        Literal(True),
        Literal('["a", "b"]', datatype=RDF.JSON),
        Literal(""),
        node,
        ex["plain"],
        ex["has/slash"],
    ):
        g.add((s, ex.p, o))
    g.add((s, RDF.type, ex.Herb))
    g.add((node, ex["label-1"], Literal("blank")))
    text = rdf.turtle(g)
    back = Graph().parse(data=text, format="turtle")
    assert isomorphic(back, g)
    assert "ex:plain" in text and "<https://example.org/ns#has/slash>" in text and "\n    a ex:Herb ;" in text
    assert rdf.turtle(g) == text  # the same graph, the same text


def test_turtle_export_of_the_fixture_knowledge_base_parses_back_to_the_same_triples(
    fixture_kb: kb.KnowledgeBase, tmp_path: Path
) -> None:
    out = tmp_path / "kb.ttl"
    n = rdf.export(fixture_kb, "ttl", out)
    back = Graph().parse(out, format="turtle")
    assert len(back) == n and set(back) == set(rdf.to_graph(fixture_kb))
    # written from the plain triples, without building the store: the same text as from the rdflib graph
    assert out.read_text(encoding="utf-8") == rdf.turtle(rdf.to_graph(fixture_kb))


def test_population_restrictions_round_trip(kb_copy: Path, tmp_path: Path) -> None:
    path = kb_copy / "herbs" / "all.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("dose_g: [2, 10]", "dose_g: [2, 10], populations: [哺乳期慎用, 儿童不宜]", 1), encoding="utf-8")  # fmt: skip
    base = kb.load(kb_copy, cache=False)
    first = tmp_path / "first.ttl"
    rdf.export(base, "ttl", first)
    back = rdf.import_file(first, tmp_path / "content")
    assert back.herbs["gancao"].safety.populations == ("哺乳期慎用", "儿童不宜")  # the order as written
    assert (
        back.forms["zhigancao"].safety.restriction("哺乳期") == "慎用"
        and "populations" not in back.forms["zhigancao"].own_fields
    )
