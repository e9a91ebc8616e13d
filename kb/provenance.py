"""PROV-O provenance of curated releases: who changed what, why, on what authority, approved by whom.

Added to a release's RDF export (``kb.rdf``):

    kb:release/N        a prov:Entity, tcm:Release; prov:wasRevisionOf its parent; prov:wasGeneratedBy kb:activity/release/N
    kb:activity/release/N  a prov:Activity; prov:wasAssociatedWith the releasing agent; prov:wasInformedBy each change
    kb:change/ID        a prov:Activity, tcm:ChangeRequest; rdfs:label its title; tcm:reason; prov:used its citation;
                        prov:qualifiedAssociation of the author (tcm:author) and the reviewer (tcm:reviewer)
    kb:change/ID/source a prov:Entity, tcm:Citation; tcm:work, tcm:edition, tcm:locator
    kb:change/ID/edit/i a tcm:Edit; tcm:op; tcm:target the entity; tcm:data (JSON)
    the entity          prov:wasGeneratedBy the change (create) or prov:wasInfluencedBy it (any other edit)
    kb:agent/NAME       a prov:Agent
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from rdflib import RDF, RDFS, XSD, Graph, Literal, URIRef
from rdflib.namespace import PROV

from kb.rdf import KBN, TCM, cached_graph

SEGMENT = {"herb": "herb", "form": "form", "formula": "formula", "disease": "disease", "syndrome": "syndrome",
           "symptom": "symptom", "rule": "rule", "source": "source"}  # fmt: skip


def _time(t: Any) -> Literal | None:
    if t is None:
        return None
    return Literal(t.isoformat() + "Z", datatype=XSD.dateTime)


def _agent(g: Graph, name: str) -> URIRef:
    a = KBN[f"agent/{quote(name, safe='')}"]
    g.add((a, RDF.type, PROV.Agent))
    g.add((a, RDFS.label, Literal(name)))
    return a


def _qualified(g: Graph, activity: URIRef, agent: URIRef, role: URIRef, key: str) -> None:
    assoc = URIRef(f"{activity}/association/{key}")
    g.add((activity, PROV.wasAssociatedWith, agent))
    g.add((activity, PROV.qualifiedAssociation, assoc))
    g.add((assoc, RDF.type, PROV.Association))
    g.add((assoc, PROV.agent, agent))
    g.add((assoc, PROV.hadRole, role))


def release_graph(kb: Any, lineage: list[dict[str, Any]], crs: list[dict[str, Any]]) -> Graph:
    """The release's content graph plus the provenance of its lineage (newest release first)."""
    base = cached_graph(kb)
    g = Graph()
    for prefix, ns in base.namespaces():
        g.bind(prefix, ns, override=True)
    g += base
    g.bind("prov", PROV)
    names = {r["id"]: r["name"] for r in lineage}
    released_in = {}
    for r in lineage:
        rel = KBN[f"release/{r['name']}"]
        act = KBN[f"activity/release/{r['name']}"]
        g.add((rel, RDF.type, PROV.Entity))
        g.add((rel, RDF.type, TCM.Release))
        g.add((rel, TCM.releaseName, Literal(r["name"])))
        g.add((rel, TCM.contentHash, Literal(r["content_hash"])))
        g.add((rel, TCM.releaseKind, Literal(r["kind"])))
        g.add((rel, PROV.wasGeneratedBy, act))
        g.add((act, RDF.type, PROV.Activity))
        if (t := _time(r["created_at"])) is not None:
            g.add((rel, PROV.generatedAtTime, t))
            g.add((act, PROV.endedAtTime, t))
        g.add((act, PROV.wasAssociatedWith, _agent(g, r["created_by"])))
        if r["note"]:
            g.add((rel, RDFS.comment, Literal(r["note"])))
        if r["parent_id"] and r["parent_id"] in names:
            g.add((rel, PROV.wasRevisionOf, KBN[f"release/{names[r['parent_id']]}"]))
        if r["restored_from"]:
            g.add((rel, TCM.restoredFrom, KBN[f"release/{r['restored_from']}"]))
        for cr_id in json.loads(r["change_requests"]):
            g.add((act, PROV.wasInformedBy, KBN[f"change/{cr_id}"]))
            released_in[cr_id] = r["name"]
    for cr in crs:
        ch = KBN[f"change/{cr['id']}"]
        g.add((ch, RDF.type, PROV.Activity))
        g.add((ch, RDF.type, TCM.ChangeRequest))
        g.add((ch, RDFS.label, Literal(cr["title"], lang="zh")))
        g.add((ch, TCM.reason, Literal(cr["reason"], lang="zh")))
        if (t := _time(cr["created_at"])) is not None:
            g.add((ch, PROV.startedAtTime, t))
        if (t := _time(cr["reviewed_at"])) is not None:
            g.add((ch, PROV.endedAtTime, t))
        _qualified(g, ch, _agent(g, cr["author"]), TCM.author, "author")
        if cr["reviewer"]:
            _qualified(g, ch, _agent(g, cr["reviewer"]), TCM.reviewer, "reviewer")
        src = json.loads(cr["source"])
        cite = URIRef(f"{ch}/source")
        g.add((ch, PROV.used, cite))
        g.add((cite, RDF.type, PROV.Entity))
        g.add((cite, RDF.type, TCM.Citation))
        for key in ("work", "edition", "locator"):
            if src.get(key):
                g.add((cite, TCM[key], Literal(src[key])))
        for i, e in enumerate(json.loads(cr["edits"])):
            target = KBN[f"{SEGMENT[e['kind']]}/{e['id']}"]
            edit = URIRef(f"{ch}/edit/{i}")
            g.add((ch, TCM.edit, edit))
            g.add((edit, RDF.type, TCM.Edit))
            g.add((edit, TCM.op, Literal(e["op"])))
            g.add((edit, TCM.target, target))
            payload = {k: e[k] for k in ("data", "unset", "relation", "value", "parent") if k in e}
            if payload:
                g.add(
                    (
                        edit,
                        TCM.data,
                        Literal(json.dumps(payload, ensure_ascii=False, sort_keys=True), datatype=RDF.JSON),
                    )
                )
            g.add((target, PROV.wasGeneratedBy if e["op"] == "create" else PROV.wasInfluencedBy, ch))
    return g
