"""Keep the layer arrows pointing down: kb and cds load without torch, faiss or fastapi; nothing imports api."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def loaded_after(stmt: str) -> set[str]:
    code = f"import sys; {stmt}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_kb_and_cds_do_not_load_heavy_or_upper_layers() -> None:
    mods = loaded_after("import kb, cds; kb.load('tests/fixtures/kb')")
    for heavy in ("torch", "faiss", "fastapi", "transformers", "sklearn", "api"):
        assert heavy not in mods, f"{heavy} loaded by kb/cds"
    assert not any(m.startswith(("models", "training", "eval")) for m in mods)


def test_nothing_below_api_imports_api() -> None:
    for pkg in ("kb", "models", "cds", "training", "eval"):
        for path in (ROOT / pkg).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            assert "from api" not in text and "import api" not in text, f"{path} imports api"
    for path in (ROOT / "kb").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for upper in ("cds", "models", "training", "eval"):
            assert f"from {upper}" not in text and f"import {upper}" not in text, f"{path} imports {upper}"
