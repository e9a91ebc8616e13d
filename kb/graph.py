"""The knowledge graph as a networkx MultiDiGraph, and the queries callers need.

Nodes are ``"<kind>:<id>"`` (herb, form, formula, disease, syndrome, symptom, principle, rule) with a ``kind`` and
a ``name`` attribute. Edges carry a ``rel``:

    form     -form_of->      herb
    formula  -contains->     herb        (dose_g, role, form)
    formula  -version_contains-> herb    (version: its index, kind: pharmacopoeia | original | other, name, form)
    disease  -has_syndrome-> syndrome
    symptom  -indicates->    syndrome    (role: key | secondary | tongue | pulse)
    symptom  -argues_against-> syndrome
    syndrome -treated_by->   principle
    principle -realised_by-> formula     (syndrome: the syndrome this principle belongs to; rank 0 = main formula)
    herb     -incompatible|antagonism-> herb (rule)

Cases (the case base, ``link_cases``) join the same graph, so a suggestion can be explained by cases:

    case     -presents->     symptom
    case     -prescribes->   herb        (dose_g)
    case     -follows->      formula     (coverage: share of the formula's herbs; kb.formula_match)
    case     -labelled->     syndrome    (when the source names one)

Explanation paths follow symptom -> syndrome -> principle -> formula -> herb.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import networkx as nx

if TYPE_CHECKING:
    from kb.base import KnowledgeBase


def node(kind: str, ident: str) -> str:
    return f"{kind}:{ident}"


def build_graph(kb: KnowledgeBase) -> nx.MultiDiGraph:
    nodes: list[tuple[str, dict[str, Any]]] = []
    edges: list[tuple[str, str, dict[str, Any]]] = []
    nodes += [(f"herb:{h.id}", {"kind": "herb", "name": h.name}) for h in kb.herbs.values()]
    for f in kb.forms.values():
        nodes.append((f"form:{f.id}", {"kind": "form", "name": f.name}))
        edges.append((f"form:{f.id}", f"herb:{f.herb_id}", {"rel": "form_of"}))
    for fo in kb.formulas.values():
        fn = f"formula:{fo.id}"
        nodes.append((fn, {"kind": "formula", "name": fo.name}))
        edges += [(fn, f"herb:{i.herb_id}", {"rel": "contains", "dose_g": i.dose_g, "role": i.role, "form": i.form_id,
                                               "written": i.written}) for i in fo.composition]  # fmt: skip
        edges += [(fn, f"herb:{i.herb_id}", {"rel": "version_contains", "version": n, "kind": v.kind,
                                              "name": v.name or fo.name, "form": i.form_id, "written": i.written})
                  for n, v in enumerate(fo.versions) for i in v.composition]  # fmt: skip
    nodes += [(f"symptom:{s.id}", {"kind": "symptom", "name": s.name}) for s in kb.symptoms.values()]
    nodes += [(f"disease:{d.id}", {"kind": "disease", "name": d.name}) for d in kb.diseases.values()]
    for sy in kb.syndromes.values():
        sn = f"syndrome:{sy.id}"
        nodes.append((sn, {"kind": "syndrome", "name": sy.name, "disease": sy.disease_id}))
        edges.append((f"disease:{sy.disease_id}", sn, {"rel": "has_syndrome"}))
        for role, findings in (
            ("key", sy.key),
            ("secondary", sy.secondary),
            ("tongue", sy.tongue),
            ("pulse", sy.pulse),
        ):
            edges += [
                (f"symptom:{f.symptom_id}", sn, {"rel": "indicates", "role": role}) for f in findings if f.symptom_id
            ]
        edges += [(f"symptom:{f.symptom_id}", sn, {"rel": "argues_against"}) for f in sy.contra if f.symptom_id]
        pn = f"principle:{sy.principle}"
        nodes.append((pn, {"kind": "principle", "name": sy.principle}))
        edges.append((sn, pn, {"rel": "treated_by"}))
        edges += [(pn, f"formula:{fid}", {"rel": "realised_by", "syndrome": sy.id, "rank": rank})
                  for rank, fid in enumerate(sy.formula_ids)]  # fmt: skip
    for r in kb.rules.values():
        if r.kind in ("incompatibility", "antagonism"):
            for a in r.a:
                for b in r.b:
                    edges.append((f"herb:{a.herb_id}", f"herb:{b.herb_id}", {"rel": r.kind, "rule": r.id}))
                    edges.append((f"herb:{b.herb_id}", f"herb:{a.herb_id}", {"rel": r.kind, "rule": r.id}))
    g = nx.MultiDiGraph()
    g.add_nodes_from(nodes)
    g.add_edges_from(edges)
    return g


def case_links(kb: KnowledgeBase, case: Any) -> list[tuple[str, str, dict[str, Any]]]:
    """The edges that join one case to the graph. ``case`` has ``id``, ``symptoms`` (ids), ``herbs`` (each with
    ``herb_id`` and ``dose_g``) and ``syndrome_id`` (a ``models.casebase.Case``); unknown ids are left out."""
    from kb.formula_match import match_formulas

    cn = node("case", case.id)
    edges: list[tuple[str, str, dict[str, Any]]] = [
        (cn, node("symptom", s), {"rel": "presents"}) for s in case.symptoms if s in kb.symptoms
    ]
    edges += [(cn, node("herb", h.herb_id), {"rel": "prescribes", "dose_g": h.dose_g})
              for h in case.herbs if h.herb_id in kb.herbs]  # fmt: skip
    edges += [(cn, node("formula", m.formula_id), {"rel": "follows", "coverage": round(m.coverage, 3)})
              for m in match_formulas(kb, [h.herb_id for h in case.herbs], limit=1)]  # fmt: skip
    if case.syndrome_id and case.syndrome_id in kb.syndromes:
        edges.append((cn, node("syndrome", case.syndrome_id), {"rel": "labelled"}))
    return edges


def link_cases(g: nx.MultiDiGraph, kb: KnowledgeBase, cases: Any) -> dict[str, int]:
    """Add case nodes and their edges to ``g`` (a copy of ``kb.graph``: the cached one is shared). Counts by rel."""
    counts: dict[str, int] = {"cases": 0}
    for c in cases:
        g.add_node(node("case", c.id), kind="case", name=c.id, department=c.department)
        counts["cases"] += 1
        for u, v, d in case_links(kb, c):
            g.add_edge(u, v, **d)
            counts[d["rel"]] = counts.get(d["rel"], 0) + 1
    return counts


def cases_following(g: nx.MultiDiGraph, kb: KnowledgeBase, formula: str) -> list[tuple[str, float]]:
    """(case id, coverage) of the linked cases whose prescription follows the formula, best first."""
    fid = kb.get("formula", formula).id
    hits = [(_strip(u), d["coverage"]) for u, d in _in(g, node("formula", fid), "follows")]
    return sorted(hits, key=lambda x: (-x[1], x[0]))


def _out(g: nx.MultiDiGraph, n: str, rel: str) -> list[tuple[str, dict[str, Any]]]:
    if n not in g:
        return []
    return [(v, d) for _, v, d in g.out_edges(n, data=True) if d.get("rel") == rel]


def _in(g: nx.MultiDiGraph, n: str, rel: str) -> list[tuple[str, dict[str, Any]]]:
    if n not in g:
        return []
    return [(u, d) for u, _, d in g.in_edges(n, data=True) if d.get("rel") == rel]


def _strip(n: str) -> str:
    return n.split(":", 1)[1]


def formulas_containing(kb: KnowledgeBase, herb: str) -> list[str]:
    """Formula ids whose composition names the herb (any of its forms)."""
    hid = kb.herb(herb).id
    return sorted({_strip(u) for u, _ in _in(kb.graph, node("herb", hid), "contains")})


def patent_medicines_containing(kb: KnowledgeBase, herb: str) -> list[tuple[str, str]]:
    """(formula id, 成药 name) of the Pharmacopoeia 成药 whose list names the herb (any of its forms): 朱砂 ->
    天王补心丸, 柏子养心丸 … A formula's own composition does not count here (``formulas_containing``)."""
    hid = kb.herb(herb).id
    found = {(_strip(u), d["name"]) for u, d in _in(kb.graph, node("herb", hid), "version_contains")
             if d["kind"] == "pharmacopoeia"}  # fmt: skip
    return sorted(found, key=lambda x: (x[1], x[0]))


def formulas_for_syndrome(kb: KnowledgeBase, syndrome: str) -> list[str]:
    """Formula ids for a syndrome, main formula first."""
    sid = kb.get("syndrome", syndrome).id
    g = kb.graph
    out = []
    for p, _ in _out(g, node("syndrome", sid), "treated_by"):
        out += [(d["rank"], _strip(f)) for f, d in _out(g, p, "realised_by") if d.get("syndrome") == sid]
    return [f for _, f in sorted(out)]


def syndromes_of_disease(kb: KnowledgeBase, disease: str) -> list[str]:
    did = kb.get("disease", disease).id
    return [_strip(v) for v, _ in _out(kb.graph, node("disease", did), "has_syndrome")]


def symptoms_of_syndrome(kb: KnowledgeBase, syndrome: str) -> list[tuple[str, str]]:
    """(symptom id, role) pairs: role is key, secondary, tongue or pulse."""
    sid = kb.get("syndrome", syndrome).id
    return [(_strip(u), d["role"]) for u, d in _in(kb.graph, node("syndrome", sid), "indicates")]


def explanation_paths(
    kb: KnowledgeBase, symptom: str, *, formula: str | None = None, herb: str | None = None, limit: int = 20
) -> list[list[str]]:
    """Paths symptom -> syndrome -> principle -> formula -> herb, as lists of node names.

    Narrow them with ``formula`` and/or ``herb``. Each path follows one syndrome's own principle and formulas.
    """
    sym = kb.get("symptom", symptom)
    g = kb.graph
    fid = kb.get("formula", formula).id if formula else None
    hid = kb.herb(herb).id if herb else None
    paths: list[list[str]] = []
    for sn, _ in _out(g, node("symptom", sym.id), "indicates"):
        sid = _strip(sn)
        for pn, _ in _out(g, sn, "treated_by"):
            for fn, d in _out(g, pn, "realised_by"):
                if d.get("syndrome") != sid or (fid and _strip(fn) != fid):
                    continue
                for hn, _ in _out(g, fn, "contains"):
                    if hid and _strip(hn) != hid:
                        continue
                    paths.append([g.nodes[x]["name"] for x in (node("symptom", sym.id), sn, pn, fn, hn)])
                    if len(paths) >= limit:
                        return paths
    return paths
