"""Durability of curation: SIGKILL a real ``tcm serve`` (two workers, one SQLite database) while curators stream
proposals and a reviewer approves and releases; after a restart every acknowledged proposal is there, every
release is whole (all its files stored, its change requests marked released in it, none marked for a release
that does not exist), and the engine serves the newest release. Loopback only; bounded in count and time."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import httpx

from api.auth import add_api_client
from tests.api.test_app_fault import _free_port, _start

SOURCE = {"work": "中医诊断学", "edition": "第5版", "locator": "测试"}


def _symptom(n: int, worker: int) -> dict:
    ident = f"ceshi-zheng-{worker}-{n}"
    return {
        "title": f"新增症状 {worker}-{n}",
        "reason": "耐久性测试",
        "source": SOURCE,
        "edits": [{"op": "create", "kind": "symptom", "id": ident,
                   "data": {"name": f"测试症{worker}之{n}", "category": "全身", "source": {"ref": "chp2020"}}}],
    }  # fmt: skip


def test_sigkill_during_proposals_and_releases(tmp_path: Path) -> None:
    tokens = tmp_path / "var" / "api-tokens.json"
    curator = add_api_client(tokens, "curator-a", ["curator"])
    reviewer = add_api_client(tokens, "reviewer-b", ["reviewer"])
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _start(tmp_path, port)
    acknowledged: list[tuple[int, str]] = []
    releases: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    started = time.monotonic()

    def propose(worker: int) -> None:
        with httpx.Client(base_url=base, timeout=10, headers={"Authorization": f"Bearer {curator}"}) as c:
            for n in range(500):
                if stop.is_set() or time.monotonic() - started > 40:
                    return
                body = _symptom(n, worker)
                try:
                    r = c.post("/v1/curation/change-requests", json=body)
                except httpx.HTTPError:
                    return
                if r.status_code == 201:
                    with lock:
                        acknowledged.append((r.json()["id"], body["title"]))

    def review_and_release() -> None:
        with httpx.Client(base_url=base, timeout=20, headers={"Authorization": f"Bearer {reviewer}"}) as c:
            while not stop.is_set() and time.monotonic() - started < 40:
                try:
                    queue = c.get("/v1/curation/change-requests", params={"status": "open", "limit": 3}).json()
                    for cr in queue["change_requests"]:
                        c.post(f"/v1/curation/change-requests/{cr['id']}/review", json={"decision": "approve"})
                    r = c.post("/v1/curation/releases", json={"note": "耐久性测试"})
                except httpx.HTTPError:
                    return
                if r.status_code == 201:
                    with lock:
                        releases.append(r.json()["name"])

    threads = [threading.Thread(target=propose, args=(w,)) for w in range(3)]
    threads.append(threading.Thread(target=review_and_release))
    for t in threads:
        t.start()
    while (len(acknowledged) < 40 or len(releases) < 2) and time.monotonic() - started < 30:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole server, mid-stream
    proc.wait(10)
    stop.set()
    for t in threads:
        t.join(20)
    assert len(acknowledged) >= 10 and releases, (len(acknowledged), releases)

    proc = _start(tmp_path, port)  # restart on the same database
    try:
        h = {"Authorization": f"Bearer {reviewer}"}
        stored = httpx.get(f"{base}/v1/curation/change-requests", params={"limit": 1000}, headers=h).json()
        by_id = {cr["id"]: cr for cr in stored["change_requests"]}
        missing = [(i, t) for i, t in acknowledged if i not in by_id or by_id[i]["title"] != t]
        assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged proposals are lost"
        history = httpx.get(f"{base}/v1/curation/releases", headers=h).json()["releases"]
        names = {r["name"] for r in history}
        assert set(releases) <= names
        version = httpx.get(f"{base}/v1/version", headers=h).json()["kb_version"]
        assert version == history[0]["version"], "the restarted engine serves the newest release"
        newest = httpx.get(f"{base}/v1/curation/releases/{history[0]['name']}", headers=h).json()
        created = [d["id"] for d in newest["diff"] if d["change"] == "created"]
        for ident in created:  # the newest release's entities are really there
            assert httpx.get(f"{base}/v1/curation/entities/symptom/{ident}", headers=h).status_code == 200
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)

    with sqlite3.connect(tmp_path / "var" / "tcm.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        blobs = {r[0] for r in conn.execute("SELECT sha256 FROM kb_blob")}
        rows = conn.execute("SELECT name, manifest, change_requests FROM kb_release").fetchall()
        for name, manifest, crs in rows:
            assert set(json.loads(manifest).values()) <= blobs, f"release {name} lacks content files"
            for cr_id in json.loads(crs):
                status, released_in = conn.execute(
                    "SELECT status, released_in FROM kb_change_request WHERE id = ?", (cr_id,)
                ).fetchone()
                assert (status, released_in) == ("released", name)
        release_names = {r[0] for r in rows}
        for status, released_in in conn.execute("SELECT status, released_in FROM kb_change_request"):
            assert (status == "released") == (released_in is not None)
            assert released_in is None or released_in in release_names
