"""``tcm check PATH``: the prescription safety review."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("check", help="safety-review prescriptions (.json, .jsonl or - for standard input)")
    p.add_argument("path", metavar="PATH", help="a .json file (one prescription), a .jsonl file (one a line), or -")
    p.add_argument("--json", action="store_true", help="print JSON reviews (one per line in .jsonl mode)")
    p.add_argument(
        "--fail-on", choices=["critical", "warning"], help="exit 1 when a finding of this severity or above exists"
    )
    p.add_argument("--cards", action="store_true", help="also render CDS Hooks cards in each review")
    p.set_defaults(func=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    import kb
    from api.cli import emit
    from api.cli_io import run_batch
    from cds import review

    base = kb.default()

    def answer(req: Any) -> dict[str, Any]:
        rv = review(req, base)
        out = rv.as_dict()
        if args.cards:
            from cds.cards import review_cards

            out["cards"] = review_cards(rv)
        return out

    printer = emit if args.json else _print_human
    answers = run_batch(args.path, answer, printer)
    if args.fail_on:
        floor = ("warning", "critical") if args.fail_on == "warning" else ("critical",)
        if any(f["severity"] in floor for a in answers for f in a.get("findings", [])):
            return 1
    return 0


def _print_human(review: dict[str, Any]) -> None:
    if "error" in review:
        print(f"line {review['line']}: ERROR {review['error']}")
        return
    s = review["summary"]
    head = f"review ({s['critical']} critical, {s['warning']} warning, {s['info']} info)"
    print(head + (f" [{review['id']}]" if review.get("id") else ""))
    for f in review["findings"]:
        print(f"  {f['severity'].upper():<8} {f['kind']:<15} {f['message_zh']}")
