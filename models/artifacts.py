"""Model artifacts: a directory of files plus ``model_card.json``.

The card records the task, the model kind, the data it was trained on (dataset card with content hash), the
config, the metrics (validation, and test where reported), library versions, the git commit and the date, and
the SHA-256 of every file in the directory. Loading re-hashes the files and refuses (``ArtifactError``) an
artifact that is incomplete, altered, built for another task, or written by a newer card format.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from kb.errors import ArtifactError

logger = logging.getLogger(__name__)

CARD = "model_card.json"
FORMAT = "tcm-model/1"
_REPO = Path(__file__).resolve().parents[1]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("numpy", "scipy", "scikit-learn", "torch", "transformers", "safetensors", "tcm-cds"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            continue
    return out


def git_commit() -> str | None:
    try:
        res = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=_REPO, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if res.returncode != 0:
        return None
    commit = res.stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=_REPO,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return commit + ("+dirty" if dirty else "")


def save_artifact(
    model: Any,
    directory: str | Path,
    *,
    data: dict[str, Any],
    metrics: dict[str, Any],
    training: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` and its card into ``directory`` atomically (a temp dir renamed into place)."""
    out = Path(directory)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        config = model.save(tmp)
        files = {p.name: _sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        card = {
            "format": FORMAT,
            "task": model.task,
            "kind": model.kind,
            "config": config,
            "data": data,
            "metrics": metrics,
            "training": training or {},
            "libraries": library_versions(),
            "git_commit": git_commit(),
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "files": files,
        }
        (tmp / CARD).write_text(json.dumps(card, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("saved %s %s model to %s", model.task, model.kind, out)
    return out


def read_card(directory: Path) -> dict[str, Any]:
    card_path = directory / CARD
    if not card_path.is_file():
        raise ArtifactError(f"{directory} is not a model artifact: {CARD} is missing")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{card_path} is corrupt (not JSON: {exc}); retrain the model") from exc
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise ArtifactError(
            f"{card_path}: unknown card format {card.get('format') if isinstance(card, dict) else None!r} "
            f"(this version reads {FORMAT!r})"
        )
    for key in ("task", "kind", "config", "files"):
        if key not in card:
            raise ArtifactError(f"{card_path}: the card has no {key!r} field; the artifact is incomplete")
    return card


def verify_files(directory: Path, card: dict[str, Any]) -> None:
    for name, digest in card["files"].items():
        p = directory / name
        if not p.is_file():
            raise ArtifactError(f"{directory}: file {name} named by the model card is missing")
        if _sha256(p) != digest:
            raise ArtifactError(
                f"{directory}: file {name} does not match the SHA-256 in the model card "
                "(corrupt or altered); retrain or restore the artifact"
            )


def resolve_artifact(name_or_path: str | Path, root: Path) -> Path:
    p = Path(name_or_path)
    if p.is_dir():
        return p
    cand = root / str(name_or_path)
    if cand.is_dir():
        return cand
    known = sorted(d.name for d in root.iterdir() if (d / CARD).is_file()) if root.is_dir() else []
    hint = f"; known models under {root}: {', '.join(known)}" if known else ""
    raise ArtifactError(f"no model artifact at {str(name_or_path)!r}{hint}")


def load_artifact(name_or_path: str | Path, task: str | None = None, root: Path | None = None) -> Any:
    from models.registry import DEFAULT_MODEL_ROOT, model_class

    directory = resolve_artifact(name_or_path, root or DEFAULT_MODEL_ROOT)
    card = read_card(directory)
    if task is not None and card["task"] != task:
        raise ArtifactError(f"{directory} holds a {card['task']!r} model, not a {task!r} model")
    verify_files(directory, card)
    cls = model_class(card["task"], card["kind"])
    try:
        model = cls.load(directory, card)
    except ArtifactError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ArtifactError(f"{directory}: cannot load the {card['kind']} model ({type(exc).__name__}: {exc})") from exc
    model.card = card
    return model
