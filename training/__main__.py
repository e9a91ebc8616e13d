"""``python -m training TASK --data DIR --out DIR [...]``: the same as ``tcm train``, as a module.

This is the entry point for distributed runs (DDP over gloo on CPU):

    torchrun --nproc_per_node 2 -m training case-classify --data DIR --out DIR --config tiny.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from kb.errors import TCMError


def main(argv: Sequence[str] | None = None) -> int:
    from training.train import TASKS, load_config, train

    p = argparse.ArgumentParser(prog="python -m training", description="train a model")
    p.add_argument("task", choices=TASKS)
    p.add_argument("--data", metavar="DIR")
    p.add_argument("--out", metavar="DIR", required=True)
    p.add_argument("--config", metavar="FILE")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--allow-identifiers", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        res = train(args.task, args.data, args.out, load_config(args.config), args.seed,
                    args.allow_identifiers, progress=not args.no_progress and sys.stderr.isatty())  # fmt: skip
    except TCMError as exc:
        sys.stderr.write(f"training: error: {exc}\n")
        return 2
    if res.artifacts:
        sys.stdout.write(
            json.dumps({"artifacts": [str(a) for a in res.artifacts], "validation": res.validation}) + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
