"""``tcm differentiate PATH`` and ``tcm suggest PATH``: the same .json / .jsonl / - conventions as ``tcm check``."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    for verb, helptext in (
        ("differentiate", "rank syndromes (辨证) for findings (.json, .jsonl or - for standard input)"),
        ("suggest", "differentiate, then suggest safe formulas with doses and modifications"),
    ):
        p = sub.add_parser(verb, help=helptext)
        p.add_argument("path", metavar="PATH", help="a .json file (one request), a .jsonl file (one a line), or -")
        p.add_argument("--json", action="store_true", help="print JSON answers (one per line in .jsonl mode)")
        p.add_argument("--cases", metavar="DIR", help="a case base built by `tcm cases build` (default: the "
                       "models folder's cases/): similar cases become evidence")  # fmt: skip
        p.add_argument("--models", metavar="DIR", help="an artifacts folder with models/ and cases/ (default: "
                       "$TCM_MODELS_DIR, else artifacts/ when it exists); the answer names the models used")  # fmt: skip
        p.add_argument("--no-models", action="store_true", help="the knowledge base alone: no learned model, no cases")
        p.set_defaults(func=cmd_clinical, verb=verb)


def cmd_clinical(args: argparse.Namespace) -> int:
    import kb
    from api.cli import emit
    from api.cli_io import run_batch

    base = kb.default()
    if args.verb == "differentiate":
        from cds.differentiate import differentiate as fn
    else:
        from cds.suggest import suggest as fn

    models = _models(args)
    run_batch(args.path, lambda req: fn(req, base, models=models), emit if args.json else _print_human)
    return 0


def _models(args: argparse.Namespace) -> Any:
    """The models and case base to use: those named, else $TCM_MODELS_DIR / artifacts/ when present, else none."""
    from cds import learned

    if args.no_models:
        if args.models or args.cases:
            from api.cli import UsageError

            raise UsageError("--no-models and --models/--cases contradict each other")
        return learned.NONE
    directory = args.models if args.models else learned.models_dir_from_env()
    return learned.load(directory, cases=args.cases)


def _print_human(ans: dict[str, Any]) -> None:
    from cds.suggest import herb_text

    if "error" in ans:
        print(f"line {ans['line']}: ERROR {ans['error']}")
        return
    flag = "  (low confidence)" if ans.get("low_confidence") else ""
    print("findings: " + "、".join(r["finding"] for r in ans["recognised"]) + flag)
    for d in ans["differentials"]:
        score = f"{d['score']:.2f}" if d.get("score") is not None else " -  "
        codes = "/".join(c["code"] for c in d.get("codes", []))
        print(
            f"  {score}  {d.get('disease') or '?'}·{d['name']}  {d.get('treatment_principle') or ''}"
            + (f"  [ICD-11 {codes}]" if codes else "")
        )
    for s in ans.get("suggestions", []):
        if s.get("withheld"):
            print(f"  {s['syndrome']}: withheld — {s.get('reason')}")
            continue
        herbs = " ".join(herb_text(p) for p in s["prescription"])
        print(f"  {s['formula']['name']}: {herbs}")
        if s["formula"].get("usage") and any(p["dose_g"] is None and p["dose"] for p in s["prescription"]):
            print(f"    用法 usage: {s['formula']['usage']}")  # original amounts (等分, 一两): the usage gives the dose
        for a in s.get("adaptations", []):  # why the doses differ from the formula's: the whole formula rescaled
            if a["action"] in ("scaled", "child_dose"):
                print(f"    {a['reason'].split('/ ')[0].rstrip()}")
        if any(p.get("dose_derived") for p in s["prescription"]):
            print("    剂量按原方比例折算（本库计算），请酌定")
        extra = " ".join(f"{h['herb']}{h['dose']}" for h in s.get("herb_suggestions", []))
        if extra:
            print(f"    + consider: {extra}")
        for pm in s.get("patent_medicines", []):
            print(f"    成药 {pm['name']}" + ("" if pm["suitable"] else f" — not for this patient: {pm['reason']}"))
    for c in ans.get("similar_cases", [])[:3]:
        follows = "、".join(f["name"] for f in c["formulas"])
        print(
            f"  case {c['case_id']} ({c['similarity']:.2f}){' follows ' + follows if follows else ''}: {c['findings']}"
        )
    if ans.get("models_used"):
        print("  models: " + ", ".join(ans["models_used"]))
