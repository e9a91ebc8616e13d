"""RDF for the knowledge base: Turtle and JSON-LD export and import, SHACL validation, SPARQL queries.

Vocabulary: SKOS for terms (``skos:prefLabel``/``skos:altLabel`` in ``@zh``, pinyin as ``@zh-Latn-pinyin``,
Latin names as ``@la``, ``skos:notation`` for standard codes), PROV-O for provenance (``prov:wasDerivedFrom`` the
cited work, ``prov:wasAttributedTo`` the project, ``prov:generatedAtTime`` on the release), and the project
namespace ``tcm:`` for everything else.

The mapping is generic over the content schema (``kb.schema``): every field an entry *sets* becomes a triple (so a
processed form that inherits a value stays inheriting after a round trip), nested entries (forms, syndromes,
ingredients, modifications) get deterministic IRIs under their parent, and references that the engine resolved
(ingredient -> herb, syndrome -> formula, rule -> herbs) are added as link triples for queries and SHACL. Import
reads the content triples back and ignores the derived links, so export -> import -> export gives the same graph.
"""

from __future__ import annotations

import json
import logging
import re
from collections import defaultdict
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_origin

from pydantic import BaseModel
from rdflib import RDF, XSD, BNode, Graph, Literal, Namespace, URIRef
from rdflib.namespace import PROV, SKOS

from kb import schema as s
from kb.errors import ContentError, QueryError, RDFError
from kb.loader import origin_map

if TYPE_CHECKING:
    from kb.base import KnowledgeBase

logger = logging.getLogger(__name__)

TCM = Namespace("https://tcm-cds.org/ns#")
KBN = Namespace("https://tcm-cds.org/kb/")
SHAPES_FILE = Path(__file__).resolve().parent / "shapes.ttl"

TOP_LEVEL: dict[str, tuple[type[BaseModel], URIRef, str]] = {
    # content folder -> (model, class, IRI segment)
    "herbs": (s.Herb, TCM.Herb, "herb"),
    "formulas": (s.Formula, TCM.Formula, "formula"),
    "diseases": (s.Disease, TCM.Disease, "disease"),
    "symptoms": (s.Symptom, TCM.Symptom, "symptom"),
    "names": (s.DistinctName, TCM.DistinctName, "distinct"),
    "substitutes": (s.Substitution, TCM.Substitution, "substitution"),
}
NESTED: dict[tuple[type[BaseModel], str], tuple[type[BaseModel], URIRef, str | None]] = {
    # (parent model, field) -> (child model, class, IRI segment when the child has its own id, else None)
    (s.Herb, "forms"): (s.ProcessedForm, TCM.ProcessedForm, "form"),
    (s.Formula, "composition"): (s.Ingredient, TCM.Ingredient, None),
    (s.Formula, "versions"): (s.FormulaVersion, TCM.FormulaVersion, None),
    (s.FormulaVersion, "composition"): (s.VersionIngredient, TCM.Ingredient, None),
    (s.Disease, "syndromes"): (s.Syndrome, TCM.Syndrome, "syndrome"),
    (s.Syndrome, "modifications"): (s.Modification, TCM.Modification, None),
    (s.Modification, "add"): (s.Ingredient, TCM.Ingredient, None),
}
LABEL_FIELDS = {"name": SKOS.prefLabel, "aliases": SKOS.altLabel, "synonyms": SKOS.altLabel}
CODE_FIELDS = {"gbt15657", "gbt16751", "icd11"}
PROJECT = URIRef("https://tcm-cds.org/")


def _pred(field: str) -> URIRef:
    head, *rest = field.split("_")
    return TCM[head + "".join(p.title() for p in rest)]


def _order_pred(field: str) -> URIRef:
    return URIRef(str(_pred(field)) + "Order")


def _lit(v: Any) -> Literal:
    if isinstance(v, Enum):
        v = v.value
    if isinstance(v, bool):
        return Literal(v)
    if isinstance(v, int):
        return Literal(v, datatype=XSD.integer)
    if isinstance(v, float):
        return Literal(repr(v), datatype=XSD.decimal)
    return Literal(str(v))


def _py(lit: Any) -> Any:
    if not isinstance(lit, Literal):
        raise RDFError(f"expected a literal, got {lit!r}")
    if lit.datatype == XSD.decimal:
        return float(lit)
    if lit.datatype in (XSD.integer, XSD.boolean, XSD.double):
        return lit.toPython()
    return str(lit)


# ---- export --------------------------------------------------------------------------------------------
class TripleSet:
    """The triples of an export, kept in a plain set: all Turtle writing needs (``add``, ``bind``, ``namespaces``,
    iteration, ``len``). rdflib's in-memory store indexes every triple three ways as it is added, which is most of
    the time of a whole-knowledge-base export; a file export never queries, so it skips the store."""

    def __init__(self) -> None:
        self._triples: set[tuple[Any, Any, Any]] = set()
        self._ns: dict[str, URIRef] = dict(Graph().namespaces())  # rdflib's default bindings (rdf, xsd …)

    def bind(self, prefix: str, namespace: Any) -> None:
        self._ns[prefix] = URIRef(str(namespace))

    def namespaces(self) -> Iterator[tuple[str, URIRef]]:
        return iter(self._ns.items())

    def add(self, triple: tuple[Any, Any, Any]) -> None:
        self._triples.add(triple)

    def __iter__(self) -> Iterator[tuple[Any, Any, Any]]:
        return iter(self._triples)

    def __len__(self) -> int:
        return len(self._triples)


class _Exporter:
    def __init__(self, kb: KnowledgeBase, sink: Any = None):
        self.kb = kb
        self.g: Any = Graph() if sink is None else sink
        for prefix, ns in (("tcm", TCM), ("kb", KBN), ("skos", SKOS), ("prov", PROV)):
            self.g.bind(prefix, ns)

    def entity(self, model: BaseModel, iri: URIRef, cls: URIRef) -> None:
        g = self.g
        g.add((iri, RDF.type, cls))
        g.add((iri, RDF.type, SKOS.Concept))
        for field in type(model).model_fields:
            if field not in model.model_fields_set:
                continue
            value = getattr(model, field)
            nested = NESTED.get((type(model), field))
            if nested is not None:
                _child_model, child_cls, seg = nested
                for i, child in enumerate(value):
                    child_iri = KBN[f"{seg}/{child.id}"] if seg else URIRef(f"{iri}/{field}/{i}")
                    g.add((iri, _pred(field), child_iri))
                    g.add((child_iri, TCM.position, Literal(i, datatype=XSD.integer)))
                    self.entity(child, child_iri, child_cls)
                continue
            self.field(iri, field, value)

    def field(self, iri: URIRef, field: str, value: Any) -> None:
        g = self.g
        if field == "id":
            g.add((iri, TCM.id, Literal(value)))
        elif field in LABEL_FIELDS:
            for v in value if isinstance(value, list) else [value]:
                g.add((iri, LABEL_FIELDS[field], Literal(v, lang="zh")))
            if isinstance(value, list) and len(value) > 1:
                g.add((iri, _order_pred(field), Literal(json.dumps(value, ensure_ascii=False), datatype=RDF.JSON)))
        elif field == "pinyin":
            g.add((iri, TCM.pinyin, Literal(value)))
            g.add((iri, SKOS.altLabel, Literal(value, lang="zh-Latn-pinyin")))
        elif field == "latin":
            if value:
                g.add((iri, TCM.latin, Literal(value)))
                g.add((iri, SKOS.altLabel, Literal(value, lang="la")))
        elif field == "source":
            g.add((iri, PROV.wasDerivedFrom, KBN[f"source/{value.ref}"]))
            if value.loc:
                g.add((iri, TCM.sourceLocator, Literal(value.loc)))
        elif field == "codes":
            for k, v in value.model_dump().items():
                if v and k in value.model_fields_set:
                    g.add((iri, _pred(k), Literal(v)))
                    g.add((iri, SKOS.notation, Literal(v)))
        elif field == "dose_g" and not isinstance(value, float):
            if value is not None:
                g.add((iri, TCM.doseMin, _lit(float(value[0]))))
                g.add((iri, TCM.doseMax, _lit(float(value[1]))))
            else:
                g.add((iri, TCM.doseUnknown, Literal(True)))
        elif field == "params":
            g.add((iri, TCM.params, Literal(json.dumps(value, ensure_ascii=False, sort_keys=True), datatype=RDF.JSON)))
        elif isinstance(value, list):
            for v in value:
                g.add((iri, _pred(field), _lit(v)))
            if len(value) > 1:  # the written order (main formula first …), for a lossless round trip
                g.add(
                    (
                        iri,
                        _order_pred(field),
                        Literal(json.dumps([_lit(v).toPython() for v in value], ensure_ascii=False), datatype=RDF.JSON),
                    )
                )
        elif value is None:
            g.add((iri, _pred(field), TCM.none))
        else:
            g.add((iri, _pred(field), _lit(value)))

    def links(self, only: set[tuple[str, str]] | None = None) -> None:
        """Derived, resolved references: for queries and SHACL; ignored on import. ``only``: the links of these
        ``(kind, id)`` entries (formula, syndrome, form, rule)."""
        g, kb = self.g, self.kb

        def wanted(kind: str, ident: str) -> bool:
            return only is None or (kind, ident) in only

        for f in kb.formulas.values():
            if not wanted("formula", f.id):
                continue
            fi = KBN[f"formula/{f.id}"]
            for i, ing in enumerate(f.composition):
                ii = URIRef(f"{fi}/composition/{i}")
                g.add((ii, TCM.herbRef, KBN[f"herb/{ing.herb_id}"]))
                g.add((fi, TCM.containsHerb, KBN[f"herb/{ing.herb_id}"]))
                if ing.form_id:
                    g.add((ii, TCM.formRef, KBN[f"form/{ing.form_id}"]))
            for n, v in enumerate(f.versions):
                for i, ing in enumerate(v.composition):
                    ii = URIRef(f"{fi}/versions/{n}/composition/{i}")
                    g.add((ii, TCM.herbRef, KBN[f"herb/{ing.herb_id}"]))
                    if ing.form_id:
                        g.add((ii, TCM.formRef, KBN[f"form/{ing.form_id}"]))
        for sy in kb.syndromes.values():
            if not wanted("syndrome", sy.id):
                continue
            si = KBN[f"syndrome/{sy.id}"]
            g.add((si, TCM.diseaseRef, KBN[f"disease/{sy.disease_id}"]))
            for rank, fid in enumerate(sy.formula_ids):
                g.add((si, TCM.mainFormulaRef if rank == 0 else TCM.formulaRef, KBN[f"formula/{fid}"]))
            for finding in (*sy.key, *sy.secondary, *sy.tongue, *sy.pulse):
                if finding.symptom_id:
                    g.add((si, TCM.hasFinding, KBN[f"symptom/{finding.symptom_id}"]))
            for i, mod in enumerate(sy.modifications):
                mi = URIRef(f"{si}/modifications/{i}")
                for j, ing in enumerate(mod.add):
                    g.add((URIRef(f"{mi}/add/{j}"), TCM.herbRef, KBN[f"herb/{ing.herb_id}"]))
        for form in kb.forms.values():
            if wanted("form", form.id):
                g.add((KBN[f"form/{form.id}"], TCM.formOf, KBN[f"herb/{form.herb_id}"]))
        for r in kb.rules.values():
            if not wanted("rule", r.id):
                continue
            ri = KBN[f"rule/{r.id}"]
            for mem in (*r.a, *r.b, *r.members):
                g.add((ri, TCM.involvesHerb, KBN[f"herb/{mem.herb_id}"]))
        if only is None:
            for sub in kb.substitutions.values():
                si = KBN[f"substitution/{sub.id}"]
                g.add((si, TCM.originalRef, KBN[f"herb/{sub.original_id}"]))
                g.add((si, TCM.substituteRef, KBN[f"herb/{sub.substitute_id}"]))
                for fid in sorted(sub.except_formula_ids):
                    g.add((si, TCM.exceptFormulaRef, KBN[f"formula/{fid}"]))

    def run(self) -> Any:
        """The content and link triples, in the sink it was given (an rdflib Graph by default)."""
        kb, g = self.kb, self.g
        c = kb.content
        release = KBN[f"release/{kb.version.release}"]
        g.add((release, RDF.type, TCM.Release))
        g.add((release, RDF.type, PROV.Entity))
        g.add((release, TCM.releaseName, Literal(kb.version.release)))
        if c.release and c.release.note:
            g.add((release, TCM.releaseNote, Literal(c.release.note)))
        g.add((release, PROV.wasAttributedTo, PROJECT))
        g.add((PROJECT, RDF.type, PROV.Agent))
        for src in c.sources:
            si = KBN[f"source/{src.id}"]
            g.add((si, RDF.type, TCM.Source))
            g.add((si, RDF.type, PROV.Entity))
            for field in type(src).model_fields:
                if field in src.model_fields_set:
                    self.field(si, field if field != "work" else "work", getattr(src, field))
        origin = origin_map(c)
        for folder, (_model_cls, cls, seg) in TOP_LEVEL.items():
            for entry in getattr(c, folder):
                iri = KBN[f"{seg}/{entry.id}"] if hasattr(entry, "id") else KBN[f"{seg}/{entry.name}"]
                self.entity(entry, iri, cls)
                where = origin.get(id(entry), "")
                file, _, rest = where.partition(" entry #")
                g.add((iri, TCM.contentFile, Literal(file)))
                g.add((iri, TCM.filePosition, Literal(int(rest.split(" ")[0]) if rest else 0)))
                g.add((iri, PROV.wasAttributedTo, PROJECT))
                g.add((iri, TCM.inRelease, release))
        for n, rf in enumerate(c.rulefiles):
            rs = KBN[f"ruleset/{rf.ruleset.id}"]
            g.add((rs, RDF.type, TCM.RuleSet))
            for field in type(rf.ruleset).model_fields:
                if field in rf.ruleset.model_fields_set:
                    self.field(rs, field, getattr(rf.ruleset, field))
            g.add((rs, TCM.contentFile, Literal(origin.get(id(rf), f"rules/{n}").split(" entry #")[0])))
            for i, rule in enumerate(rf.rules):
                ri = KBN[f"rule/{rule.id}"]
                g.add((rs, TCM.rule, ri))
                g.add((ri, TCM.position, Literal(i, datatype=XSD.integer)))
                self.entity(rule, ri, TCM.Rule)
        self.links()
        return g


def to_graph(kb: KnowledgeBase) -> Graph:
    """The knowledge base as an rdflib Graph (content triples plus derived link triples)."""
    g: Graph = _Exporter(kb).run()
    return g


def to_subgraph(kb: KnowledgeBase, keys: set[tuple[str, str]]) -> tuple[Graph, list[URIRef]]:
    """The triples of some entries, ``(kind, id)`` with kind herb, form, formula, disease, syndrome, symptom or
    rule, with their derived links and the type of everything they link to; and the focus nodes (the entries
    and their nested parts) for SHACL. Enough to check those entries without exporting the whole knowledge base
    (a form or a syndrome is exported with its parent)."""
    ex = _Exporter(kb)
    g = ex.g
    c = kb.content
    forms = {k for kind, k in keys if kind == "form" and k in kb.forms}
    syndromes = {k for kind, k in keys if kind == "syndrome" and k in kb.syndromes}
    wanted = {
        "herbs": {k for kind, k in keys if kind == "herb"} | {kb.forms[k].herb_id for k in forms},
        "formulas": {k for kind, k in keys if kind == "formula"},
        "diseases": {k for kind, k in keys if kind == "disease"} | {kb.syndromes[k].disease_id for k in syndromes},
        "symptoms": {k for kind, k in keys if kind == "symptom"},
    }
    linked: set[tuple[str, str]] = {("formula", k) for k in wanted["formulas"]}
    for folder, ids in wanted.items():
        _model, cls, seg = TOP_LEVEL[folder]
        for entry in getattr(c, folder):
            if entry.id in ids:
                ex.entity(entry, KBN[f"{seg}/{entry.id}"], cls)
                if folder == "herbs":
                    linked |= {("form", f.id) for f in entry.forms}
                elif folder == "diseases":
                    linked |= {("syndrome", x.id) for x in entry.syndromes}
    rule_ids = {k for kind, k in keys if kind == "rule"}
    for rf in c.rulefiles:
        for i, rule in enumerate(rf.rules):
            if rule.id in rule_ids:
                ri = KBN[f"rule/{rule.id}"]
                g.add((ri, TCM.position, Literal(i, datatype=XSD.integer)))
                ex.entity(rule, ri, TCM.Rule)
                linked.add(("rule", rule.id))
    focus = sorted({x for x in g.subjects() if isinstance(x, URIRef)})
    ex.links(linked)
    # what the entries point to exists (the knowledge base checked that): give it its type, for sh:class
    kinds: dict[str, tuple[dict[str, Any], URIRef]] = {"herb": (kb.herbs, TCM.Herb), "form": (kb.forms, TCM.ProcessedForm), "formula": (kb.formulas, TCM.Formula),
             "disease": (kb.diseases, TCM.Disease), "source": (kb.sources, TCM.Source)}  # fmt: skip
    base = str(KBN)
    for o in set(g.objects()):
        if isinstance(o, URIRef) and str(o).startswith(base) and (o, RDF.type, None) not in g:
            seg, _, ident = str(o)[len(base) :].partition("/")
            table_cls = kinds.get(seg)
            if table_cls and ident in table_cls[0]:
                g.add((o, RDF.type, table_cls[1]))
    return g, focus


def cached_graph(kb: KnowledgeBase) -> Graph:
    """``to_graph(kb)``, kept on disk by content hash (building it takes seconds)."""
    from kb.base import _code_hash, _read_pickle, _write_pickle, cache_dir

    path = cache_dir() / f"kb-{kb.version.content_hash}-{_code_hash()}.rdf-graph.pickle"
    g = _read_pickle(path)
    if isinstance(g, Graph):
        return g
    g = to_graph(kb)
    _write_pickle(path, g)
    return g


def export(kb: KnowledgeBase, fmt: str, out: Path) -> int:
    """Write the graph as Turtle (``ttl``) or JSON-LD (``jsonld``); returns the triple count. Atomic write.
    Turtle is written from the plain triples (:class:`TripleSet`), the same ones ``to_graph`` holds."""
    if FORMATS.get(fmt) == "turtle":
        triples = _Exporter(kb, TripleSet()).run()
        _atomic_write(out, turtle(triples).encode("utf-8"))
        return len(triples)
    g = to_graph(kb)
    _atomic_write(out, serialize(g, fmt))
    return len(g)


FORMATS = {"ttl": "turtle", "turtle": "turtle", "jsonld": "json-ld", "json-ld": "json-ld"}


def serialize(g: Graph, fmt: str) -> bytes:
    """The graph as Turtle (our writer, :func:`turtle`) or JSON-LD (rdflib's, compacted)."""
    if fmt not in FORMATS:
        raise RDFError(f"unknown RDF format {fmt!r}; use one of: ttl, jsonld")
    if FORMATS[fmt] == "turtle":
        return turtle(g).encode("utf-8")
    data = g.serialize(format="json-ld", auto_compact=True)
    return data.encode("utf-8") if isinstance(data, str) else data


_PN_LOCAL = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")  # a safe subset of Turtle's PN_LOCAL: no escapes needed
_BNODE_LABEL = re.compile(r"[A-Za-z0-9_]+")
_STRING_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}


def _quote(text: str) -> str:
    out = []
    for ch in text:
        esc = _STRING_ESCAPES.get(ch)
        out.append(esc if esc is not None else (f"\\u{ord(ch):04X}" if ord(ch) < 0x20 or ch == "\x7f" else ch))
    return '"' + "".join(out) + '"'


def _iri(iri: str) -> str:
    return "<" + "".join(f"\\u{ord(ch):04X}" if ch in '<>"{}|^`\\' or ord(ch) <= 0x20 else ch for ch in iri) + ">"


def turtle(g: Graph | TripleSet) -> str:
    """The graph as Turtle, written directly: rdflib's serializer spends most of its time (20 of 26 s for the
    whole knowledge base) computing prefixed names. Subjects, predicates and objects are sorted, so the same graph
    gives the same text. IRIs under a bound namespace are written as prefixed names when the rest of the IRI
    needs no escaping, else in full; literals keep their language tag or datatype (``xsd:string`` is implied)."""
    prefixes = sorted(((str(ns), p) for p, ns in g.namespaces() if p), key=lambda x: -len(x[0]))
    used: set[str] = set()
    names: dict[Any, str] = {}

    def term(t: Any) -> str:
        hit = names.get(t)
        if hit is not None:
            return hit
        if isinstance(t, URIRef):
            s = str(t)
            out = None
            for ns, p in prefixes:
                if s.startswith(ns) and _PN_LOCAL.fullmatch(s[len(ns) :]):
                    out = f"{p}:{s[len(ns) :]}"
                    used.add(p)
                    break
            out = out or _iri(s)
        elif isinstance(t, BNode):
            label = str(t)
            out = "_:" + (label if _BNODE_LABEL.fullmatch(label) else f"b{len(names)}")
        else:
            lit = t
            out = _quote(str(lit))
            if lit.language:
                out += "@" + lit.language
            elif lit.datatype is not None and lit.datatype != XSD.string:
                out += "^^" + term(lit.datatype)
        names[t] = out
        return out

    by_subject: dict[Any, dict[Any, list[Any]]] = {}
    for s_, p_, o_ in g:
        by_subject.setdefault(s_, {}).setdefault(p_, []).append(o_)
    body = []
    for subject in sorted(by_subject, key=lambda x: (isinstance(x, BNode), str(x))):
        preds = by_subject[subject]
        lines = []
        for pred in sorted(preds, key=lambda x: (x != RDF.type, str(x))):
            objs = " , ".join(sorted(term(o) for o in preds[pred]))
            lines.append(f"    {'a' if pred == RDF.type else term(pred)} {objs}")
        body.append(term(subject) + "\n" + " ;\n".join(lines) + " .\n")
    head = [f"@prefix {p}: {_iri(ns)} ." for ns, p in sorted(prefixes, key=lambda x: x[1]) if p in used]
    return "\n".join(head) + "\n\n" + "\n".join(body)


def _atomic_write(path: Path, data: bytes) -> None:
    import os
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---- import --------------------------------------------------------------------------------------------
def parse(path: Path) -> Graph:
    fmt = "json-ld" if path.suffix in (".jsonld", ".json") else "turtle"
    g = Graph()
    try:
        g.parse(path, format=fmt)
    except FileNotFoundError as exc:
        raise RDFError(f"{path}: file not found") from exc
    except Exception as exc:  # rdflib raises many parser-specific types
        raise RDFError(f"{path}: not valid {fmt}: {exc}") from exc
    return g


def _list_field(model: type[BaseModel], field: str) -> bool:
    ann = model.model_fields[field].annotation
    return get_origin(ann) is list


class _Importer:
    def __init__(self, g: Graph):
        self.g = g

    def objects(self, iri: Any, pred: URIRef) -> list[Any]:
        return list(self.g.objects(iri, pred))

    def one(self, iri: Any, pred: URIRef) -> Any:
        vals = self.objects(iri, pred)
        if len(vals) > 1:
            raise RDFError(f"{iri}: expected one {pred}, found {len(vals)}")
        return vals[0] if vals else None

    def entity(self, iri: Any, model: type[BaseModel]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for field in model.model_fields:
            nested = NESTED.get((model, field))
            if nested is not None:
                child_model, _, _ = nested
                kids = self.objects(iri, _pred(field))
                if kids:
                    kids.sort(key=lambda k: int(self.one(k, TCM.position) or 0))
                    out[field] = [self.entity(k, child_model) for k in kids]
                continue
            value = self.field(iri, model, field)
            if value is not _MISSING:
                out[field] = value
        return out

    def field(self, iri: Any, model: type[BaseModel], field: str) -> Any:
        if field == "id":
            v = self.one(iri, TCM.id)
            return str(v) if v is not None else _MISSING
        if field in LABEL_FIELDS:
            vals = [str(v) for v in self.objects(iri, LABEL_FIELDS[field]) if getattr(v, "language", None) == "zh"]
            if field == "name":
                if not vals and not model.model_fields[field].is_required():
                    return _MISSING  # a formula version that goes by the formula's own name
                if len(vals) != 1:
                    raise RDFError(f"{iri}: expected one skos:prefLabel@zh, found {len(vals)}")
                return vals[0]
            order = self.one(iri, _order_pred(field))
            if order is not None:
                return list(json.loads(str(order)))
            return sorted(vals) if vals else _MISSING
        if field == "source":
            src = self.one(iri, PROV.wasDerivedFrom)
            if src is None:
                return _MISSING
            loc = self.one(iri, TCM.sourceLocator)
            out = {"ref": str(src).rsplit("/", 1)[-1]}
            if loc is not None:
                out["loc"] = str(loc)
            return out
        if field == "codes":
            codes = {k: str(v) for k in sorted(CODE_FIELDS) if (v := self.one(iri, _pred(k))) is not None}
            return codes if codes else _MISSING
        if field == "dose_g" and model not in (s.Ingredient, s.VersionIngredient):
            lo, hi = self.one(iri, TCM.doseMin), self.one(iri, TCM.doseMax)
            if lo is not None and hi is not None:
                return [_py(lo), _py(hi)]
            return None if self.one(iri, TCM.doseUnknown) is not None else _MISSING
        if field == "params":
            v = self.one(iri, TCM.params)
            return json.loads(str(v)) if v is not None else _MISSING
        vals = self.objects(iri, _pred(field))
        if _list_field(model, field):
            if not vals:
                return _MISSING
            items = [_py(v) for v in vals]
            order = self.one(iri, _order_pred(field))
            if order is not None:
                ordered = json.loads(str(order))
                if sorted(map(str, ordered)) != sorted(map(str, items)):
                    raise RDFError(f"{iri}: {field} values disagree with their recorded order")
                return ordered
            return sorted(items, key=str)
        if not vals:
            return _MISSING
        if len(vals) > 1:
            raise RDFError(f"{iri}: field {field} has {len(vals)} values, expected one")
        return None if vals[0] == TCM.none else _py(vals[0])

    def run(self) -> dict[str, Any]:
        """Content files: relative path -> YAML-ready data."""
        g = self.g
        files: dict[str, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
        for _folder, (model, cls, _) in TOP_LEVEL.items():
            for iri in g.subjects(RDF.type, cls):
                file = self.one(iri, TCM.contentFile)
                if file is None:
                    continue  # nested entity of the same class (none today) or foreign data
                pos = self.one(iri, TCM.filePosition)
                files[str(file)].append((int(pos or 0), self.entity(iri, model)))
        out: dict[str, Any] = {p: [e for _, e in sorted(v, key=lambda x: x[0])] for p, v in files.items()}
        sources = []
        for iri in g.subjects(RDF.type, TCM.Source):
            sources.append(self.entity(iri, s.Source))
        if sources:
            out["sources.yaml"] = {"sources": sorted(sources, key=lambda x: x["id"])}
        for rs in g.subjects(RDF.type, TCM.RuleSet):
            meta = self.entity(rs, s.RuleSetMeta)
            rules = sorted(self.objects(rs, TCM.rule), key=lambda r: int(self.one(r, TCM.position) or 0))
            file = str(self.one(rs, TCM.contentFile) or f"rules/{meta['id']}.yaml")
            out[file] = {"ruleset": meta, "rules": [self.entity(r, s.Rule) for r in rules]}
        for rel in g.subjects(RDF.type, TCM.Release):
            name = self.one(rel, TCM.releaseName)
            note = self.one(rel, TCM.releaseNote)
            if name is not None:
                out["release.yaml"] = {"name": str(name), **({"note": str(note)} if note is not None else {})}
        if not any(k.startswith("herbs/") for k in out):
            raise RDFError("the RDF holds no tcm:Herb entries with a tcm:contentFile: not a knowledge-base export")
        return out


_MISSING = object()


def import_graph(g: Graph) -> dict[str, Any]:
    return _Importer(g).run()


def write_content(files: dict[str, Any], out_dir: Path) -> None:
    """Write content files into an empty or new directory, all or nothing."""
    import shutil
    import tempfile

    import yaml

    if out_dir.exists() and any(out_dir.iterdir()):
        raise RDFError(f"{out_dir}: directory is not empty; choose a new directory")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for rel, data in files.items():
            if ".." in Path(rel).parts or Path(rel).is_absolute() or not re.fullmatch(r"[\w./-]+\.yaml", rel):
                raise RDFError(f"refusing to write content file {rel!r}")
            p = tmp / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=120), encoding="utf-8")
        if out_dir.exists():
            out_dir.rmdir()
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def import_file(path: Path, out_dir: Path | None = None) -> KnowledgeBase:
    """Read an export back, validate it as a knowledge base, and (with ``out_dir``) write its content files."""
    import tempfile

    from kb.base import load

    files = import_graph(parse(path))
    if out_dir is not None:
        write_content(files, out_dir)
        return load(out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "kb"
        write_content(files, target)
        try:
            return load(target)
        except ContentError as exc:
            raise ContentError([f"imported from {path}: {p}" for p in exc.problems]) from exc


# ---- SHACL ---------------------------------------------------------------------------------------------
_SHAPES: Graph | None = None


def validate_shacl(g: Graph, focus_nodes: list[URIRef] | None = None) -> tuple[bool, list[str]]:
    """Validate a graph against ``kb/shapes.ttl`` (only ``focus_nodes`` when given); returns (conforms, one line
    per violation)."""
    from pyshacl import validate

    global _SHAPES
    if _SHAPES is None:
        _SHAPES = Graph().parse(SHAPES_FILE, format="turtle")
    conforms, report, _ = validate(
        g,
        shacl_graph=_SHAPES,
        inference="none",
        advanced=True,
        focus_nodes=list(focus_nodes or []) or None,  # type: ignore[arg-type]
    )
    problems = []
    SH = Namespace("http://www.w3.org/ns/shacl#")
    for res in report.subjects(RDF.type, SH.ValidationResult):
        focus = report.value(res, SH.focusNode)
        path = report.value(res, SH.resultPath)
        msg = report.value(res, SH.resultMessage)
        short = str(path).replace(str(TCM), "tcm:").replace(str(SKOS), "skos:").replace(str(PROV), "prov:")
        problems.append(f"{str(focus).replace(str(KBN), 'kb:')}: {short}: {msg}")
    return bool(conforms), sorted(problems)


# ---- SPARQL --------------------------------------------------------------------------------------------
_UPDATE = re.compile(r"\b(INSERT|DELETE|LOAD|CLEAR|CREATE|DROP|COPY|MOVE|ADD)\b", re.I)


def prepare(query: str) -> Any:
    from rdflib.plugins.sparql import prepareQuery

    if not query or not query.strip():
        raise QueryError("empty SPARQL query")
    try:
        return prepareQuery(query, initNs={"tcm": TCM, "kb": KBN, "skos": SKOS, "prov": PROV, "rdf": RDF})
    except Exception as exc:
        kind = "an update (this endpoint is read-only)" if _UPDATE.search(query) else "malformed"
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise QueryError(f"SPARQL query is {kind}: {first}") from exc


def query(g: Graph, text: str, limit: int = 10_000) -> dict[str, Any]:
    """Run a read-only query; returns SPARQL 1.1 JSON results (SELECT/ASK) or N-Triples lines (CONSTRUCT)."""
    q = prepare(text)
    try:
        res = g.query(q)
    except Exception as exc:
        raise QueryError(f"SPARQL query failed: {exc}") from exc
    if res.type == "ASK":
        return {"head": {}, "boolean": bool(res.askAnswer)}
    if res.type in ("CONSTRUCT", "DESCRIBE"):
        triples = list(res.graph or [])[:limit]
        return {"triples": [[_term(x) for x in t] for t in triples], "truncated": len(res.graph or []) > limit}
    vars_ = [str(v) for v in res.vars or []]
    bindings = []
    for i, row in enumerate(res):
        if i >= limit:
            break
        bindings.append({v: _binding(row[j]) for j, v in enumerate(vars_) if row[j] is not None})  # type: ignore[index]
    return {"head": {"vars": vars_}, "results": {"bindings": bindings}}


def _term(x: Any) -> str:
    return x.n3() if hasattr(x, "n3") else str(x)


def _binding(x: Any) -> dict[str, str]:
    if isinstance(x, URIRef):
        return {"type": "uri", "value": str(x)}
    if isinstance(x, BNode):
        return {"type": "bnode", "value": str(x)}
    out = {"type": "literal", "value": str(x)}
    if getattr(x, "language", None):
        out["xml:lang"] = x.language
    elif getattr(x, "datatype", None):
        out["datatype"] = str(x.datatype)
    return out


__all__ = ["KBN", "TCM", "export", "import_file", "prepare", "query", "to_graph", "validate_shacl"]
