"""The compiled-knowledge-base cache: a hit is the same knowledge base; any content change rebuilds it."""

from __future__ import annotations

from pathlib import Path

import pytest

import kb
from kb.base import cache_dir
from kb.errors import ContentError


def test_cache_hit_is_equivalent(kb_copy: Path) -> None:
    built = kb.load(kb_copy)
    cached = kb.load(kb_copy)
    assert list(cache_dir().glob(f"kb-{built.version.content_hash}-*.pickle"))
    assert cached is not built and cached.version == built.version
    assert cached.stats() == built.stats()
    assert cached.resolve_herb("蜜甘草").form == "炙甘草"
    assert cached.graph.number_of_nodes() == built.graph.number_of_nodes()


def test_content_change_rebuilds_and_still_validates(kb_copy: Path) -> None:
    first = kb.load(kb_copy)
    p = kb_copy / "herbs" / "all.yaml"
    p.write_text(p.read_text(encoding="utf-8").replace("dose_g: [2, 10]", "dose_g: [10, 2]", 1), encoding="utf-8")
    with pytest.raises(ContentError):
        kb.load(kb_copy)  # the old compiled copy must not be served for changed content
    p.write_text(p.read_text(encoding="utf-8").replace("dose_g: [10, 2]", "dose_g: [2, 12]", 1), encoding="utf-8")
    second = kb.load(kb_copy)
    assert second.version != first.version and second.herbs["gancao"].safety.dose_g == (2.0, 12.0)


def test_corrupt_cache_file_is_rebuilt(kb_copy: Path) -> None:
    built = kb.load(kb_copy)
    for f in cache_dir().glob(f"kb-{built.version.content_hash}-*.pickle"):
        f.write_bytes(b"not a pickle")
    assert kb.load(kb_copy).stats() == built.stats()
