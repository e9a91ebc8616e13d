"""Reading content files: YAML -> validated pydantic entries, with every problem named.

A broken entry fails with the file, the entry (index, name and id) and the field. All problems of a file are
collected before raising, so a curator fixes them in one pass.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from kb.errors import ContentError
from kb.schema import (
    ENTRY_MODELS,
    Disease,
    DistinctName,
    Formula,
    Herb,
    Release,
    RuleFile,
    Source,
    SourceFile,
    Substitution,
    Symptom,
)

logger = logging.getLogger(__name__)

try:  # the C loader is ~10x faster than the pure-Python one; fall back when libyaml is missing
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover
    _Loader = yaml.SafeLoader

try:  # yaml-rs (Rust) parses our content ~13x faster than PyYAML with identical results (a test checks this)
    import yaml_rs as _fast_yaml
except ImportError:  # pragma: no cover - optional accelerator
    _fast_yaml = None  # type: ignore[assignment]

DEFAULT_DATA_DIR = Path(__file__).resolve().parent / "data"


@dataclass
class Content:
    """Everything read from a data directory, validated entry by entry (cross-references not yet checked)."""

    sources: list[Source] = field(default_factory=list)
    herbs: list[Herb] = field(default_factory=list)
    formulas: list[Formula] = field(default_factory=list)
    diseases: list[Disease] = field(default_factory=list)
    symptoms: list[Symptom] = field(default_factory=list)
    names: list[DistinctName] = field(default_factory=list)
    substitutes: list[Substitution] = field(default_factory=list)
    release: Release | None = None
    rulefiles: list[RuleFile] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # relative path -> kind, for provenance
    labels: list[tuple[Any, str]] = field(default_factory=list)  # (entry, "file entry #n (name, id=…)")
    problems: list[str] = field(default_factory=list)  # entries left out because they are invalid


def _describe_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(entry)"


def _entry_label(raw: Any, index: int) -> str:
    if isinstance(raw, dict):
        name, ident = raw.get("name"), raw.get("id")
        bits = [str(b) for b in (name, f"id={ident}" if ident else None) if b]
        return f"entry #{index + 1} ({', '.join(bits)})" if bits else f"entry #{index + 1}"
    return f"entry #{index + 1}"


def _validation_problems(where: str, exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors(include_url=False):
        loc = _describe_loc(tuple(err["loc"]))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check its spelling against kb/schema.py)"
        out.append(f"{where}: field {loc}: {msg}")
    return out


def read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ContentError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ContentError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    return parse_yaml(text, path)


def parse_yaml(text: str, path: Path | str) -> Any:
    if _fast_yaml is not None:
        try:
            return _fast_yaml.loads(text)
        except Exception:  # anything it rejects goes through PyYAML, for PyYAML's semantics and error messages
            logger.debug("fast YAML parser rejected %s; using PyYAML", path)
    return parse_pyyaml(text, Path(path))


def parse_pyyaml(text: str, path: Path) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ContentError(f"{path}:{where}: YAML syntax error: {problem}") from exc


def kind_of(path: Path) -> str:
    if path.name == "sources.yaml":
        return "sources"
    if path.name == "release.yaml":
        return "release"
    kind = path.parent.name
    if kind == "rules" or kind in ENTRY_MODELS:
        return kind
    raise ContentError(
        f"{path}: cannot tell what this file holds; put it under one of "
        f"{', '.join(sorted([*ENTRY_MODELS, 'rules']))}/ or name it sources.yaml"
    )


def load_file(path: Path, kind: str | None = None, *, keep_going: bool = False) -> tuple[str, list[Any]]:
    """Read and validate one content file. Raises ContentError listing every problem in it.

    With ``keep_going`` the valid entries come back followed by one list of problem lines (possibly empty).
    """
    kind = kind or kind_of(path)
    return validate_entries(read_yaml(path), kind, str(path), keep_going=keep_going)


def validate_entries(raw: Any, kind: str, path: str, *, keep_going: bool = False) -> tuple[str, list[Any]]:
    """Validate the parsed content of one file of ``kind`` (``path`` names it in problems); as ``load_file``."""
    problems: list[str] = []
    entries: list[BaseModel] = []
    if kind == "sources":
        try:
            entries = list(SourceFile.model_validate(raw).sources)
        except ValidationError as exc:
            problems += _validation_problems(str(path), exc)
    elif kind == "release":
        try:
            entries = [Release.model_validate(raw)]
        except ValidationError as exc:
            problems += _validation_problems(str(path), exc)
    elif kind == "rules":
        try:
            entries = [RuleFile.model_validate(raw)]
        except ValidationError as exc:
            problems += _validation_problems(str(path), exc)
    else:
        model = ENTRY_MODELS[kind]
        if raw is None:
            raw = []
        if not isinstance(raw, list):
            msg = f"{path}: expected a list of {kind} entries at the top level, got {type(raw).__name__}"
            if keep_going:
                return kind, [[msg]]
            raise ContentError(msg)
        for i, item in enumerate(raw):
            where = f"{path}: {_entry_label(item, i)}"
            if not isinstance(item, dict):
                problems.append(f"{where}: expected a mapping of fields, got {type(item).__name__}")
                continue
            try:
                entries.append(model.model_validate(item))
            except ValidationError as exc:
                problems += _validation_problems(where, exc)
    if keep_going:
        return kind, [*entries, problems]
    if problems:
        raise ContentError(problems)
    return kind, entries


def content_files(data_dir: Path) -> list[Path]:
    from kb.base import content_files as files

    return files(data_dir)


def origin_map(content: Content) -> dict[int, str]:
    """id(entry) -> where it was written; rebuilt on demand because object ids do not survive pickling."""
    return {id(entry): where for entry, where in content.labels}


def _id_label(entry: BaseModel) -> str | None:
    ident = getattr(entry, "id", None)
    return f"id={ident}" if ident else None


def load_content(data_dir: Path | str = DEFAULT_DATA_DIR, *, keep_going: bool = False) -> Content:
    """Read every content file under ``data_dir``; raises ContentError with all problems of all files.

    With ``keep_going`` the valid entries are returned and the problems listed in ``Content.problems`` instead,
    so that cross-reference checks can run too and a curator sees everything in one pass.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ContentError(f"{data_dir}: knowledge-base directory not found")
    content = Content()
    problems: list[str] = []
    for path in content_files(data_dir):
        rel = str(path.relative_to(data_dir))
        try:
            kind, entries = load_file(path, keep_going=keep_going)
        except ContentError as exc:
            problems += exc.problems
            continue
        if keep_going and entries and isinstance(entries[-1], list):
            problems += entries.pop()  # type: ignore[arg-type]
        _add(content, rel, kind, entries)
    if problems and not keep_going:
        raise ContentError(problems)
    content.problems = problems
    logger.debug("loaded %d content files from %s", len(content.files), data_dir)
    return content


def _add(content: Content, rel: str, kind: str, entries: list[Any]) -> None:
    content.files[rel] = kind
    for i, entry in enumerate(entries):
        label = ", ".join(str(x) for x in (getattr(entry, "name", None), _id_label(entry)) if x)
        content.labels.append((entry, f"{rel} entry #{i + 1}" + (f" ({label})" if label else "")))
    if kind == "sources":
        content.sources += entries
    elif kind == "rules":
        content.rulefiles += entries
    elif kind == "release":
        content.release = entries[0]
    else:
        getattr(content, kind).extend(entries)


_TEXT_MEMO: dict[tuple[str, str], tuple[str, list[Any], list[str]]] = {}
_TEXT_MEMO_MAX = 1024


def content_from_texts(texts: dict[str, str]) -> Content:
    """Content from file texts keyed by relative path (``herbs/jiebiao.yaml``), as ``load_content(keep_going=True)``
    would read them from a directory. Files already seen with the same text are not parsed or validated again
    (entries are immutable), so validating a change to one file of the knowledge base costs one file."""
    import hashlib

    content = Content()
    problems: list[str] = []
    for rel in sorted(texts):
        text = texts[rel]
        key = (rel, hashlib.sha256(text.encode("utf-8")).hexdigest())
        hit = _TEXT_MEMO.get(key)
        if hit is None:
            try:
                kind = kind_of(Path(rel))
                kind, entries = validate_entries(parse_yaml(text, rel), kind, rel, keep_going=True)
                file_problems: list[str] = entries.pop()  # type: ignore[assignment]
            except ContentError as exc:
                kind, entries, file_problems = "", [], list(exc.problems)
            hit = (kind, entries, file_problems)
            if len(_TEXT_MEMO) >= _TEXT_MEMO_MAX:
                _TEXT_MEMO.pop(next(iter(_TEXT_MEMO)))
            _TEXT_MEMO[key] = hit
        kind, entries, file_problems = hit
        problems += file_problems
        if kind:
            _add(content, rel, kind, list(entries))
    content.problems = problems
    return content
