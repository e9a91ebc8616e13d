"""``tcm kb …``: statistics, name lookup, validation, RDF export/import and SPARQL over the knowledge base."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from kb.errors import ContentError, InputError


def register(sub: Any) -> None:
    p = sub.add_parser("kb", help="the knowledge base: stats, lookup, validate, export, import, query, curation")
    kb_sub = p.add_subparsers(dest="kb_command", metavar="KB_COMMAND", parser_class=type(p))
    kb_sub.required = True

    s = kb_sub.add_parser("stats", help="counts per entity type, rules per kind, version")
    s.add_argument("--json", action="store_true", help="print one JSON document")
    s.set_defaults(func=cmd_stats)

    s = kb_sub.add_parser("lookup", help="resolve names (herbs, forms, symptoms, formulas, syndromes)")
    s.add_argument("names", nargs="*", metavar="NAME")
    s.add_argument("--file", type=Path, help="a text file with one name a line")
    s.add_argument("--kind", choices=["herb", "symptom", "formula", "syndrome", "disease"], help="only this kind")
    s.add_argument("--json", action="store_true", help="JSON Lines: one object per name, in order")
    s.set_defaults(func=cmd_lookup)

    s = kb_sub.add_parser("validate", help="validate content, cross-references and (with --shacl) the RDF shapes")
    s.add_argument("--shacl", action="store_true", help="also export to RDF and validate it with the SHACL shapes")
    s.add_argument("--strict", action="store_true", help="treat warnings (unresolved findings) as errors")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_validate)

    s = kb_sub.add_parser("export", help="export the knowledge base as Turtle or JSON-LD")
    s.add_argument("--format", choices=["ttl", "jsonld"], default="ttl")
    s.add_argument("--out", type=Path, required=True, metavar="FILE")
    s.set_defaults(func=cmd_export)

    s = kb_sub.add_parser("import", help="read an export back; validate it; with --out write its content files")
    s.add_argument("file", type=Path, metavar="FILE")
    s.add_argument("--out", type=Path, metavar="DIR", help="write the content files into this new directory")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_import)

    s = kb_sub.add_parser("query", help="run a read-only SPARQL query over the knowledge base")
    s.add_argument("sparql", metavar="SPARQL", help="the query text, or @FILE to read it from a file")
    s.add_argument("--limit", type=int, default=10_000, help="at most this many result rows")
    s.add_argument("--json", action="store_true", help="SPARQL 1.1 JSON results")
    s.set_defaults(func=cmd_query)

    s = kb_sub.add_parser("coverage", help="coverage of herb, symptom and formula names against the shared data")
    s.add_argument(
        "--data", type=Path, metavar="DIR", help="the shared data directory (default: $TCM_DATA_DIR or ../shared/data)"
    )
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_coverage)

    s = kb_sub.add_parser("graph", help="graph queries: formulas of a herb, syndromes of a disease, paths")
    s.add_argument("what", choices=["formulas-of-herb", "patent-medicines-of-herb", "formulas-of-syndrome",
                                    "syndromes-of-disease", "symptoms-of-syndrome", "paths"])  # fmt: skip
    s.add_argument("name", metavar="NAME")
    s.add_argument("--formula", help="paths: only through this formula")
    s.add_argument("--herb", help="paths: only to this herb")
    s.set_defaults(func=cmd_graph)

    from api.cli_curation import register as register_curation

    register_curation(kb_sub)


def _kb() -> Any:
    import kb

    return kb.default()


def cmd_stats(args: argparse.Namespace) -> int:
    from api.cli import emit

    stats = _kb().stats()
    if args.json:
        emit(stats)
    else:
        print(f"knowledge base {stats['version']}  (rule set {stats['ruleset_version']})")
        for k, v in stats["counts"].items():
            print(f"  {k:<10} {v:>6}")
        print("  rules per kind: " + ", ".join(f"{k} {v}" for k, v in stats["rules_per_kind"].items()))
        mono = stats["herb_monographs"]
        print(
            f"  herb monographs with every field: {mono['complete']} of {stats['counts']['herbs']} (lacking: "
            + ", ".join(f"{k} {v}" for k, v in mono["missing"].items() if v)
            + ")"
        )
        rec = stats["formula_records"]
        print(
            f"  formulas with every field: {rec['complete']} of {stats['counts']['formulas']} (lacking: "
            + ", ".join(f"{k} {v}" for k, v in rec["missing"].items() if v)
            + ")"
        )
        if versions := stats.get("formula_versions"):
            print("  formula versions recorded: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
        if subs := stats.get("substitutions"):
            print("  substitutes recognised in formulas: " + ", ".join(subs))
        coded = stats["codes"]
        print(
            f"  ICD-11 TM1 codes: {coded['diseases']['icd11']} of {stats['counts']['diseases']} diseases, "
            f"{coded['syndromes']['icd11']} of {stats['counts']['syndromes']} syndromes"
        )
    return 0


def lookup_row(kb: Any, name: str, kind: str | None = None) -> dict[str, Any]:
    """The contract row for one name (``tcm kb lookup --json``)."""
    r = kb.resolve(name, kind)
    row = r.as_dict()
    if r.resolved and r.kind == "herb":
        herb = kb.herbs[r.id]
        facts = kb.safety(r.id, r.form_id)
        row.update(
            toxicity=facts.toxicity_code,
            pregnancy=facts.pregnancy_code,
            dose_g=facts.dose_dict(),
            preparation=facts.preparation,
            internal_use=facts.internal_use,
            controlled=facts.controlled or (r.raw and _raw_controlled(kb, r)),
            raw=r.raw,
            pinyin=herb.pinyin,
            latin=herb.latin,
            category=herb.category,
            incompatible_with=kb.incompatible_with(r.id),
            populations=list(facts.populations),
            cautions=list(facts.cautions),
            verification=(kb.forms[r.form_id].verification if r.form_id else herb.verification),
            source=(kb.forms[r.form_id].source if r.form_id else herb.source).as_dict(),
        )
    elif not r.resolved:
        row.update(toxicity=None, pregnancy=None, dose_g=None, preparation=None)
    elif r.kind == "symptom":
        s = kb.symptoms[r.id]
        row.update(category=s.category, negated=s.negated, synonyms=list(s.synonyms))
    elif r.kind == "formula":
        f = kb.formulas[r.id]
        subs = kb.substitutes_in(f.id)
        row.update(
            origin=f.origin, category=f.category,
            composition=[{"herb": kb.herbs[i.herb_id].name, "written": i.written, "dose_g": i.dose_g,
                          "dose_derived": i.dose_derived, "amount": i.amount, "role": i.role,
                          "substitutes": [kb.herbs[x.substitute_id].name for x in subs.get(i.herb_id, ())]}
                         for i in f.composition],
            versions=[{"kind": v.kind, "name": v.name, "origin": v.origin,
                       "composition": [kb.herbs[i.herb_id].name for i in v.composition], "note": v.note,
                       "source": v.source.as_dict()} for v in f.versions],
        )  # fmt: skip
    elif r.kind == "syndrome":
        sy = kb.syndromes[r.id]
        row.update(disease=kb.diseases[sy.disease_id].name, principle=sy.principle,
                   also=[t.id for t in r.others if t.kind == "syndrome"], codes=dict(sy.codes))  # fmt: skip
    elif r.kind == "disease":
        d = kb.diseases[r.id]
        row.update(discipline=d.discipline, codes=dict(d.codes), also=[t.id for t in r.others if t.kind == "disease"])
    return row


def _raw_controlled(kb: Any, r: Any) -> bool:
    """A generic 生X is controlled when a controlled-drug rule names 生X for this herb."""
    return any(m.herb_id == r.id and m.raw_only for rule in kb.iter_rules("controlled") for m in rule.members)


def cmd_lookup(args: argparse.Namespace) -> int:
    from api.cli import UsageError, emit

    names = list(args.names)
    if args.file is not None:
        try:
            text = args.file.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read {args.file}: {exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:
            raise UsageError(f"{args.file} is not UTF-8 text") from exc
        names += [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise InputError("give at least one NAME or --file")
    kb = _kb()
    for name in names:
        row = lookup_row(kb, name, args.kind)
        if args.json:
            emit(row)
        elif row["resolved"]:
            form = f" [{row['form']}]" if row.get("form") else ""
            extra = ""
            if row["kind"] == "herb":
                dose = row["dose_g"]
                bits = [f"{dose['min']:g}–{dose['max']:g} g" if dose else None, row["toxicity"], row["pregnancy"],
                        row["preparation"], *row.get("populations", [])]  # fmt: skip
                extra = "  " + ", ".join(str(b) for b in bits if b)
            print(f"{name}\t{row['kind']} {row['id']} {row['name']}{form}{extra}")
        else:
            print(f"{name}\tUNRESOLVED  candidates: {', '.join(row.get('candidates', [])) or '-'}"
                  + (f"  ({row['note']})" if row.get("note") else ""))  # fmt: skip
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    import kb as kbmod
    from api.cli import emit

    try:
        base = kbmod.load(None)
    except ContentError as exc:
        if args.json:
            emit({"valid": False, "errors": exc.problems, "warnings": []})
        else:
            sys.stderr.write(str(exc) + "\n")
        return 2
    report: dict[str, Any] = {"valid": True, "version": str(base.version), "errors": [], "warnings": base.warnings}
    if args.shacl:
        from kb.rdf import to_graph, validate_shacl

        conforms, problems = validate_shacl(to_graph(base))
        report["shacl"] = {"conforms": conforms, "violations": problems}
        if not conforms:
            report["valid"] = False
    if args.strict and base.warnings:
        report["valid"] = False
    if args.json:
        emit(report)
    else:
        for w in base.warnings:
            print(f"warning: {w}")
        for p in report.get("shacl", {}).get("violations", []):
            print(f"shacl: {p}")
        c = base.stats()["counts"]
        status = "valid" if report["valid"] else "INVALID"
        print(f"{status}: knowledge base {base.version}: " + ", ".join(f"{v} {k}" for k, v in c.items())
              + f"; {len(base.warnings)} warning(s)")  # fmt: skip
    return 0 if report["valid"] else 2


def cmd_export(args: argparse.Namespace) -> int:
    from kb.rdf import export

    n = export(_kb(), args.format, args.out)
    print(f"wrote {n} triples to {args.out}", file=sys.stderr)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from api.cli import emit
    from kb.rdf import import_file

    base = import_file(args.file, args.out)
    stats = base.stats()
    if args.json:
        emit({"imported": str(args.file), "out": str(args.out) if args.out else None, **stats})
    else:
        where = f" into {args.out}" if args.out else " (validated; use --out DIR to write content files)"
        print(f"imported {args.file}{where}: " + ", ".join(f"{v} {k}" for k, v in stats["counts"].items()))
    return 0


def _graph_cached(base: Any) -> Any:
    """The RDF graph of a knowledge base, cached on disk by version (building it takes seconds)."""
    import pickle

    from kb.rdf import to_graph

    cache_dir = Path(__file__).resolve().parent.parent / ".cache"
    path = cache_dir / f"kb-{base.version.content_hash}.rdf.pickle"
    if path.exists():
        try:
            with path.open("rb") as fh:
                return pickle.load(fh)
        except Exception:  # a stale or partial cache is rebuilt
            path.unlink(missing_ok=True)
    g = to_graph(base)
    try:
        cache_dir.mkdir(exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as fh:
            pickle.dump(g, fh)
        tmp.replace(path)
    except OSError:
        pass
    return g


def cmd_query(args: argparse.Namespace) -> int:
    from api.cli import UsageError, emit
    from kb.rdf import prepare, query

    text = args.sparql
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read {text[1:]}: {exc.strerror or exc}") from exc
    prepare(text)  # fail fast on a malformed query, before building the graph
    result = query(_graph_cached(_kb()), text, limit=args.limit)
    if args.json:
        emit(result)
    elif "boolean" in result:
        print("true" if result["boolean"] else "false")
    elif "triples" in result:
        for t in result["triples"]:
            print(" ".join(t) + " .")
    else:
        vars_ = result["head"]["vars"]
        print("\t".join(vars_))
        for b in result["results"]["bindings"]:
            print("\t".join(b.get(v, {}).get("value", "") for v in vars_))
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    from api.cli import emit
    from kb import graph

    base = _kb()
    if args.what == "formulas-of-herb":
        out: Any = [base.formulas[f].name for f in graph.formulas_containing(base, args.name)]
    elif args.what == "patent-medicines-of-herb":
        out = [{"name": name, "formula": base.formulas[f].name, "formula_id": f}
               for f, name in graph.patent_medicines_containing(base, args.name)]  # fmt: skip
    elif args.what == "formulas-of-syndrome":
        out = [base.formulas[f].name for f in graph.formulas_for_syndrome(base, args.name)]
    elif args.what == "syndromes-of-disease":
        out = [base.syndromes[s].name for s in graph.syndromes_of_disease(base, args.name)]
    elif args.what == "symptoms-of-syndrome":
        out = [{"symptom": base.symptoms[s].name, "role": r} for s, r in graph.symptoms_of_syndrome(base, args.name)]
    else:
        out = graph.explanation_paths(base, args.name, formula=args.formula, herb=args.herb)
    emit(out)
    return 0


def cmd_coverage(args: argparse.Namespace) -> int:
    from api.cli import emit
    from eval.coverage import coverage

    rep = coverage(_kb(), args.data)
    if args.json:
        emit(rep)
        return 0
    h, sy, fo = rep["herbs"], rep["symptoms"]["tcm-pd"], rep["formulas"]
    print(f"knowledge base {rep['kb_version']} against {rep['data']}")
    for name in ("tcm-pd", "smgcn"):
        print(f"  herbs {name:<9} {h[name]['resolved']}/{h[name]['total']} = {h[name]['coverage']:.1%}")
    c = h["tcm-cases"]
    print(
        f"  herb mentions in tcm-cases  {c['resolved_mentions']}/{c['mentions']} = {c['coverage']:.1%}"
        f"  (distinct names {c['resolved_distinct']}/{c['distinct']})"
    )
    print(f"  symptoms tcm-pd  {sy['resolved']}/{sy['total']} = {sy['coverage']:.1%}")
    if fo["compared"]:
        print(
            f"  formulas: {fo['agree']}/{fo['compared']} agree with a composition we record = {fo['agreement']:.1%}"
            f" (main composition {fo['agree_main']} = {fo['agreement_main']:.1%};"
            f" a recorded version {len(fo['agree_version'])})"
        )
        by = ", ".join(f"{k} {v}" for k, v in fo["disagreements_by_verdict"].items())
        print(
            f"  formula disagreements: {by}; {fo['disagreements_by_substitute_only']} differ only by a recorded"
            " substitute"
        )
    return 0
