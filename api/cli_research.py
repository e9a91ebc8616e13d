"""``tcm train``, ``tcm eval`` and ``tcm deid``: training, evaluation and de-identification.

    tcm train TASK --data DIR --out DIR [--config FILE] [--seed N] [--allow-identifiers]
    tcm eval TASK --model DIR [--data DIR] [--json]
    tcm deid IN OUT [--date-mode shift|year] [--audit FILE] [--format jsonl|tsv]

Progress bars go to stderr; results to stdout. Bad input (a missing directory, a corrupt artifact, a malformed
file) is an ``InputError`` / ``ArtifactError``: exit 2 with one line, no traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

TASKS = ("herb-rec", "case-classify")


def register(sub: Any) -> None:
    p = sub.add_parser("train", help="train a model (herb-rec or case-classify) on a data directory")
    p.add_argument("task", choices=TASKS)
    p.add_argument("--data", metavar="DIR", help="data directory (default: $TCM_DATA_DIR, else ../shared/data)")
    p.add_argument("--out", metavar="DIR", required=True, type=Path, help="write the model artifact(s) here")
    p.add_argument("--config", metavar="FILE", help="JSON or YAML config (keys: see training/train.py)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--allow-identifiers", action="store_true", help="train on text that still has direct identifiers")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (off when stderr is no terminal)")
    p.add_argument("--json", action="store_true", help="print the validation metrics as one JSON document")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a trained model on the test split(s), with the floor beside it")
    p.add_argument("task", choices=TASKS)
    p.add_argument("--model", metavar="DIR", required=True, help="artifact directory (or name under artifacts/models)")
    p.add_argument("--data", metavar="DIR", help="data directory (default: $TCM_DATA_DIR, else ../shared/data)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("deid", help="de-identify a JSONL or TSV file (atomic write)")
    p.add_argument("input", metavar="IN", type=Path)
    p.add_argument("output", metavar="OUT", type=Path)
    p.add_argument(
        "--date-mode",
        choices=["shift", "year"],
        default="shift",
        help="shift dates per patient, or keep the year",
    )
    p.add_argument("--format", choices=["jsonl", "tsv"], help="default: from the input's extension")
    p.add_argument(
        "--audit", type=Path, metavar="FILE", help="write one JSON line per replacement (no original values)"
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_deid)


def cmd_train(args: argparse.Namespace) -> int:
    import logging

    from api.cli import emit
    from training.train import load_config, train

    if args.verbose == 0:  # per-epoch validation metrics are part of the command's output (stderr)
        logging.getLogger("training").setLevel(logging.INFO)
    cfg = load_config(args.config)
    res = train(
        args.task, args.data, args.out, cfg, seed=args.seed,
        allow_identifiers=args.allow_identifiers, progress=not args.no_progress and sys.stderr.isatty(),
    )  # fmt: skip
    if not res.artifacts:  # a non-zero rank under torchrun
        return 0
    if args.json:
        emit({"task": res.task, "artifacts": [str(a) for a in res.artifacts], "validation": res.validation,
              "seconds": round(res.seconds, 1)})  # fmt: skip
    else:
        for a in res.artifacts:
            print(f"saved {a}")
        print(f"trained in {res.seconds:.0f} s")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from api.cli import emit
    from eval.evaluate import evaluate

    result = evaluate(args.task, args.model, args.data)
    if args.json:
        emit(result)
        return 0
    if args.task == "herb-rec":
        for name, r in result["datasets"].items():
            print(f"{name} test ({r['n_test']} prescriptions)")
            for who in ("model", "cooccurrence"):
                m = r[who]
                print(f"  {who:<13}" + "  ".join(f"{k} {m[k]:.4f}" for k in m))
    else:
        for who, m in result["models"].items():
            print(f"{who:<12} accuracy {m['accuracy']:.4f}  macro-F1 {m['macro_f1']:.4f}  (n={m['n']})")
    return 0


def cmd_deid(args: argparse.Namespace) -> int:
    from api.cli import emit
    from training.deid import Deidentifier, deidentify_file

    rep = deidentify_file(args.input, args.output, Deidentifier(date_mode=args.date_mode), args.audit, args.format)
    if args.json:
        emit(rep.to_dict())
    else:
        found = ", ".join(f"{k} {v}" for k, v in rep.counts.items()) or "nothing"
        sys.stdout.write(f"{rep.rows} rows, {rep.rows_changed} changed; replaced: {found}\n")
    return 0
