"""``tcm cases``: build the master-physician case base and search it for similar cases.

    tcm cases build --data DIR|FILE.jsonl --out DIR [--encoder tfidf|bert] [--kind auto|flat|hnsw|ivf]
                    [--splits train,val,test] [--svd-dim N] [--bert-budget S] [--bert-checkpoint DIR] [--json]
    tcm cases search --index DIR --text '...' [--k 10] [--json]

``--data`` is a data directory (its ``tcm-cases/`` and any ``*.jsonl`` case files in the project's format are
read) or one ``.jsonl`` case file. Building again into the same ``--out`` adds only new cases (ids are content
hashes) and rebuilds the encoder and index over the stored cases. The case base holds research data: keep it
under ``artifacts/`` (git-ignored), never commit it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from kb.errors import InputError


def register(sub: Any) -> None:
    p = sub.add_parser("cases", help="build and search the similar-case base")
    csub = p.add_subparsers(dest="cases_command", metavar="ACTION", parser_class=type(p))
    csub.required = True

    b = csub.add_parser("build", help="normalise cases, store them (incrementally), encode and index them")
    b.add_argument("--data", metavar="DIR", required=True, help="data directory (tcm-cases/, *.jsonl) or a .jsonl file")
    b.add_argument("--out", metavar="DIR", required=True, type=Path, help="case base directory (under artifacts/)")
    b.add_argument("--encoder", choices=["tfidf", "bert"], default="tfidf")
    b.add_argument("--kind", choices=["auto", "flat", "hnsw", "ivf"], default="auto", help="vector index kind")
    b.add_argument("--splits", default="train,val,test", help="tcm-cases splits to add (comma-separated)")
    b.add_argument("--limit", type=int, help="at most this many tcm-cases rows per split")
    b.add_argument("--svd-dim", type=int, default=128, help="tfidf: SVD dimension (0 = none)")
    b.add_argument("--bert-budget", type=float, default=300.0, help="bert: training seconds (MLM + contrastive)")
    b.add_argument("--bert-config", metavar="JSON", help="bert: config overrides, e.g. '{\"hidden\": 64}'")
    b.add_argument("--bert-checkpoint", metavar="DIR", help="bert: a local pretrained checkpoint instead of training")
    b.add_argument("--no-deid", action="store_true", help="do not de-identify findings text (already clean)")
    b.add_argument("--json", action="store_true", help="print the summary as JSON")
    b.set_defaults(func=cmd_build)

    s = csub.add_parser("search", help="the most similar stored cases to a findings text")
    s.add_argument("--index", metavar="DIR", required=True, type=Path, help="case base directory from `build`")
    s.add_argument("--text", required=True, help="the patient's findings")
    s.add_argument("--k", type=int, default=10)
    s.add_argument("--json", action="store_true", help="one JSON document")
    s.set_defaults(func=cmd_search)


def _load_cases(args: Any, base: Any) -> tuple[list[Any], list[dict[str, Any]]]:
    from eval.retrieval import cases_from_jsonl, cases_from_tcm_cases

    src = Path(args.data)
    deid = not args.no_deid
    cases: list[Any] = []
    cards: list[dict[str, Any]] = []
    if src.is_file():
        if src.suffix != ".jsonl":
            raise InputError(f"{src} is not a .jsonl case file; give a data directory or a .jsonl file", "data")
        got, card = cases_from_jsonl(src, base, deid)
        return got, [card]
    if not src.is_dir():
        raise InputError(f"data path {str(src)!r} does not exist", "data")
    if (src / "tcm-cases").is_dir():
        splits = [x.strip() for x in args.splits.split(",") if x.strip()]
        got, card = cases_from_tcm_cases(src, base, splits, args.limit, deid)
        cases += got
        cards.append(card)
    for f in sorted(src.glob("*.jsonl")):
        got, card = cases_from_jsonl(f, base, deid)
        cases += got
        cards.append(card)
    if not cards:
        raise InputError(f"{src} has neither a tcm-cases/ folder nor *.jsonl case files", "data")
    return cases, cards


def _encoder(args: Any, texts: list[str], herb_sets: list[frozenset[str]]) -> Any:
    import json

    from models.encoders import BertEncoder, BertEncoderConfig, TfidfEncoder

    if args.encoder == "tfidf":
        return TfidfEncoder(svd_dim=args.svd_dim or None).fit(texts)
    overrides = {}
    if args.bert_config:
        try:
            overrides = json.loads(args.bert_config)
        except ValueError as exc:
            raise InputError(f"--bert-config is not JSON: {exc}", "bert-config") from exc
    cfg = BertEncoderConfig.from_dict({"budget_s": args.bert_budget, **overrides})
    if args.bert_checkpoint:
        return BertEncoder.from_pretrained(args.bert_checkpoint, cfg)
    enc = BertEncoder.build(cfg, texts)
    enc.train(texts, herb_sets)
    return enc


def cmd_build(args: Any) -> int:
    import kb
    from api.cli import emit
    from kb.graph import case_links
    from models.casebase import STORE_FILE, CaseBase, CaseStore

    t0 = time.perf_counter()
    base = kb.default()
    cases, cards = _load_cases(args, base)
    before = 0
    if (args.out / STORE_FILE).is_file():
        with CaseStore(args.out / STORE_FILE) as st:
            before = st.count()
    # the encoder is fitted on everything that will be stored (earlier cases included)
    with CaseStore(args.out / STORE_FILE) as st:
        st.add(cases)
        stored = st.cases()
    if not stored:
        raise InputError("no cases found to build the case base from", "data")
    encoder = _encoder(args, [c.findings for c in stored], [c.herb_keys() for c in stored])
    cb = CaseBase.build(args.out, [], encoder, kind=args.kind)
    links: dict[str, int] = {}
    for c in stored:  # how the cases join the knowledge graph (kb.graph.case_links), by relation
        for _, _, d in case_links(base, c):
            links[d["rel"]] = links.get(d["rel"], 0) + 1
    summary: dict[str, Any] = {
        "out": str(args.out), "cases_read": len(cases), "added": len(stored) - before, "stored": len(stored),
        "indexed": len(cb.index), "with_prescription": sum(1 for c in stored if c.herbs),
        "graph_links": links, "following_a_formula": links.get("follows", 0),
        "encoder": {"name": encoder.name, "version": encoder.version, "dim": encoder.dim},
        "index": {"kind": cb.index.kind, "params": cb.index.params},
        "data": [{"name": c["name"], "content_hash": c["content_hash"]} for c in cards],
        "seconds": round(time.perf_counter() - t0, 1),
    }  # fmt: skip
    cb.close()
    if args.json:
        emit(summary)
    else:
        sys.stdout.write(
            f"case base {summary['out']}: {summary['stored']} cases ({summary['added']} new), "
            f"{summary['encoder']['name']} {summary['encoder']['version']} dim {summary['encoder']['dim']}, "
            f"{summary['index']['kind']} index, {summary['following_a_formula']} following a formula of the "
            f"knowledge base, {summary['seconds']}s\n"
        )
    return 0


def cmd_search(args: Any) -> int:
    import kb
    from api.cli import emit
    from kb.formula_match import match_formulas
    from models.casebase import CaseBase

    if not args.text.strip():
        raise InputError("the query text is empty; give the patient's findings", "--text")
    if args.k < 1:
        raise InputError(f"--k must be at least 1, got {args.k}", "--k")
    cb = CaseBase.open(args.index)
    try:
        t0 = time.perf_counter()
        hits = cb.similar(args.text, args.k)
        ms = (time.perf_counter() - t0) * 1000
    finally:
        cb.close()
    base = kb.default()
    results = []
    for h in hits:  # the formulas of the knowledge base each prescription follows (kb.formula_match)
        d = h.to_dict(60 if not args.json else 80)
        d["formulas"] = [m.as_dict() for m in match_formulas(base, [x.herb_id for x in h.case.herbs], limit=2)]
        results.append(d)
    if args.json:
        emit({"index": str(args.index), "encoder": {"name": cb.encoder.name, "version": cb.encoder.version},
              "kb_version": str(base.version), "k": args.k, "ms": round(ms, 2), "results": results})  # fmt: skip
        return 0
    for i, d in enumerate(results, 1):
        herbs = "、".join(x["name"] for x in d["herbs"][:12]) or "-"
        sys.stdout.write(f"{i:>2}. {d['case_id']}  {d['score']:.3f}  [{d['department'] or '-'}]  {d['findings']}\n")
        sys.stdout.write(f"    herbs: {herbs}\n")
        if d["formulas"]:
            sys.stdout.write(
                "    follows: " + "、".join(f"{m['name']} ({m['coverage']:.0%})" for m in d["formulas"]) + "\n"
            )
    return 0
