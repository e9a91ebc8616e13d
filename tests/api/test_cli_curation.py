"""``tcm kb propose|review|release|diff|history|restore`` on a scratch database and the fixture knowledge base."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TCM_DATABASE_URL", f"sqlite:///{tmp_path / 'tcm.db'}")
    return tmp_path


def _cr(path: Path, etag: str, dose: list[float]) -> Path:
    path.write_text(
        "title: 甘草用量\nreason: 按药典修订\nsource: {work: 中华人民共和国药典, edition: 2020年版 一部, locator: 甘草}\n"
        f"edits:\n  - {{op: update, kind: herb, id: gancao, base_etag: '{etag}', data: {{dose_g: {json.dumps(dose)}}}}}\n",
        encoding="utf-8",
    )
    return path


def test_the_command_line_workflow(tcm: Any, db: Path) -> None:
    ent = tcm("kb", "entity", "herb", "gancao", "--json")
    assert ent.code == 0, ent.err
    etag = json.loads(ent.out)["etag"]

    r = tcm("kb", "propose", str(_cr(db / "cr.yaml", etag, [3, 9])), "--author", "alice", "--json")
    assert r.code == 0, r.err
    cr = json.loads(r.out)
    assert cr["status"] == "open" and cr["validation"]["ok"]

    r = tcm("kb", "review", str(cr["id"]), "--approve", "--reviewer", "alice")
    assert r.code == 1 and "other than its author" in r.err
    r = tcm("kb", "review", str(cr["id"]), "--approve", "--reviewer", "bob", "--comment", "好")
    assert r.code == 0 and "[approved]" in r.out

    r = tcm("kb", "release", "--by", "bob", "--note", "药典修订", "--json")
    assert r.code == 0, r.err
    rel = json.loads(r.out)
    assert rel["change_requests"] == [cr["id"]] and rel["current"]

    r = tcm("kb", "diff")
    assert r.code == 0 and "dose_g: [2, 10] -> [3, 9]" in r.out

    hist = json.loads(tcm("kb", "history", "--json").out)
    assert [h["kind"] for h in hist] == ["release", "seed"]

    stale = tcm("kb", "propose", str(_cr(db / "cr2.yaml", etag, [1, 5])), "--author", "carol")
    assert stale.code == 1 and "current_etag" in stale.err

    r = tcm("kb", "restore", hist[1]["name"], "--by", "bob", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["diff"][0]["fields"] == [{"field": "dose_g", "before": [3, 9], "after": [2, 10]}]


def test_invalid_proposal_is_stored_and_exits_1(tcm: Any, db: Path) -> None:
    etag = json.loads(tcm("kb", "entity", "herb", "gancao", "--json").out)["etag"]
    r = tcm("kb", "propose", str(_cr(db / "bad.yaml", etag, [9, 3])), "--author", "alice")
    assert r.code == 1 and "min > max" in r.out and "stored but fails validation" in r.err
    listed = json.loads(tcm("kb", "change-requests", "--json").out)
    assert len(listed) == 1 and not listed[0]["validation"]["ok"]


def test_bad_input_exits_2(tcm: Any, db: Path) -> None:
    (db / "x.yaml").write_text("title: t\nedits: []\n", encoding="utf-8")
    r = tcm("kb", "propose", str(db / "x.yaml"), "--author", "alice")
    assert r.code == 2 and "reason" in r.err and "source" in r.err
    assert tcm("kb", "propose", str(db / "missing.yaml"), "--author", "a").code == 2
    assert tcm("kb", "restore", "1999.01.01", "--by", "bob").code == 2
    assert tcm("kb", "review", "1").code == 2  # no decision, no reviewer
