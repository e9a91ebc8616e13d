"""Shared fixtures: the small fixture knowledge base, the real built-in one, and a CLI runner."""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

import kb

FIXTURE_KB = Path(__file__).parent / "fixtures" / "kb"


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Compiled knowledge bases go to a per-session folder, never the user's cache; and no answer uses the
    models a developer has trained under artifacts/ unless a test hands it some (answers stay reproducible)."""
    old = {k: os.environ.get(k) for k in ("TCM_CACHE_DIR", "TCM_MODELS_DIR")}
    os.environ["TCM_CACHE_DIR"] = str(tmp_path_factory.mktemp("tcm-cache"))
    os.environ["TCM_MODELS_DIR"] = "none"
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


SHARED_DATA = Path(os.environ.get("TCM_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="session")
def fixture_kb() -> kb.KnowledgeBase:
    return kb.load(FIXTURE_KB)


@pytest.fixture(scope="session")
def real_kb() -> kb.KnowledgeBase:
    return kb.load(None)


@pytest.fixture
def kb_copy(tmp_path: Path) -> Path:
    """A writable copy of the fixture knowledge base, for tests that break it on purpose."""
    dst = tmp_path / "kb"
    shutil.copytree(FIXTURE_KB, dst)
    return dst


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json_lines(self) -> list[dict]:
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]


@pytest.fixture
def tcm(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """Run the `tcm` CLI in-process against the fixture knowledge base (pass kb=None for the built-in one)."""
    from api.cli import main

    def run(*args: str, stdin: str | None = None, kb_dir: Path | None = FIXTURE_KB) -> Result:
        if kb_dir is not None:
            monkeypatch.setenv("TCM_KB_DIR", str(kb_dir))
        else:
            monkeypatch.delenv("TCM_KB_DIR", raising=False)
        out, err = io.StringIO(), io.StringIO()
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:
                code = int(exc.code or 0)
        return Result(code, out.getvalue(), err.getvalue())

    return run


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if SHARED_DATA.is_dir():
        return
    skip = pytest.mark.skip(reason=f"shared research data not found at {SHARED_DATA} (set TCM_DATA_DIR)")
    for item in items:
        if "shared_data" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data() -> Iterator[Path]:
    yield SHARED_DATA
