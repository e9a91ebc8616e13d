"""The ``tcm`` command line.

Each command family lives in its own module (``api/cli_*.py``) with a ``register(subparsers)`` function; this
module builds the parser, maps the engine's errors to exit codes in one place, and never shows a traceback for
bad input:

    exit 0   success
    exit 1   the command ran and found what ``--fail-on`` asked to fail on (or a check failed)
    exit 2   bad input: unknown option, unreadable file, malformed request, invalid content, bad query
    exit 3   an internal error (a bug: the message says so, with the traceback only under ``--debug``)
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from kb.errors import TCMError

logger = logging.getLogger(__name__)

COMMAND_MODULES = (
    "api.cli_kb", "api.cli_check", "api.cli_clinical", "api.cli_research", "api.cli_serve", "api.cli_cases",
)  # fmt: skip


class UsageError(TCMError, ValueError):
    """Bad command-line usage found after parsing (e.g. an unreadable file)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def emit(obj: Any) -> None:
    """One JSON document on one line (JSON Lines friendly), UTF-8, no ASCII escaping."""
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str) + "\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tcm", description="TCM clinical decision support and knowledge engine")
    parser.add_argument("--kb", metavar="DIR", help="knowledge-base directory (default: built-in, or $TCM_KB_DIR)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (repeatable)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # a command family not built yet
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if args.kb:
        import os

        os.environ["TCM_KB_DIR"] = args.kb
    try:
        return int(args.func(args) or 0)
    except TCMError as exc:
        sys.stderr.write(f"tcm: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("tcm: interrupted\n")
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        if args.debug:
            raise
        sys.stderr.write(f"tcm: internal error ({type(exc).__name__}: {exc}); rerun with --debug and report it\n")
        return 3


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
