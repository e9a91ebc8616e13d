"""Reading requests for the batch commands (`tcm check`, `tcm differentiate`, `tcm suggest`).

PATH is a ``.json`` file (one request -> one JSON answer), a ``.jsonl`` file (one request a line -> one answer a
line, same order; a bad line yields ``{"line": n, "error": ...}`` and the rest are still answered), or ``-`` for
standard input (one JSON object, or JSON Lines when it holds several lines of objects).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from kb.errors import InputError, TCMError


def _decode(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"malformed JSON in {what}: {exc.msg} at line {exc.lineno}, column {exc.colno}") from exc


def read_requests(path: str) -> tuple[str, Iterator[tuple[int, Any]]]:
    """('single' | 'lines', iterator of (line number, decoded object or InputError))."""
    if path == "-":
        text = sys.stdin.read()
        what = "standard input"
    else:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8-sig")
        except FileNotFoundError as exc:
            raise InputError(f"{path}: file not found") from exc
        except OSError as exc:
            raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}: not UTF-8 text") from exc
        what = path
        if p.suffix.lower() not in (".json", ".jsonl", ".ndjson"):
            raise InputError(f"{path}: expected a .json or .jsonl file (or - for standard input)")
        if p.suffix.lower() in (".jsonl", ".ndjson"):
            return "lines", _lines(text, what)
    stripped = text.strip()
    if not stripped:
        raise InputError(f"{what} is empty")
    if path == "-":
        try:
            return "single", iter([(1, json.loads(stripped))])
        except json.JSONDecodeError:
            if len([ln for ln in stripped.splitlines() if ln.strip()]) > 1:
                return "lines", _lines(text, what)
    return "single", iter([(1, _decode(stripped, what))])


def _lines(text: str, what: str) -> Iterator[tuple[int, Any]]:
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield n, json.loads(line)
        except json.JSONDecodeError as exc:
            yield n, InputError(f"malformed JSON on line {n} of {what}: {exc.msg} at column {exc.colno}")


def run_batch(path: str, answer: Callable[[Any], dict[str, Any]], emit: Callable[[Any], None]) -> list[dict[str, Any]]:
    """Answer every request; in single mode errors propagate (exit 2), in lines mode they become error objects."""
    mode, requests = read_requests(path)
    answers = []
    for n, req in requests:
        if mode == "single":
            if isinstance(req, Exception):
                raise req
            out = answer(req)
        else:
            try:
                if isinstance(req, Exception):
                    raise req
                out = answer(req)
            except TCMError as exc:
                out = {"line": n, "error": str(exc)}
        answers.append(out)
        emit(out)
    return answers
