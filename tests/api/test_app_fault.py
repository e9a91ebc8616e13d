"""Fault test: SIGKILL a real ``tcm serve`` (two workers sharing the SQLite database) in the middle of a
stream of audited calls; after a restart every call that was answered has its audit record and the database is
consistent. Traffic goes to 127.0.0.1 only; the stream is bounded in count and time."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from api.auth import add_api_client

ROOT = Path(__file__).resolve().parents[2]
FIXTURE_KB = ROOT / "tests" / "fixtures" / "kb"
RX = {"items": [{"herb": "甘草", "dose": "6g"}, {"herb": "甘遂", "dose_g": 1}, {"herb": "茯苓", "dose": "12g"}]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(tmp: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TCM_KB_DIR": str(FIXTURE_KB), "TCM_RATE_LIMIT": "0", "PYTHONPATH": str(ROOT)}
    log = tmp / f"server-{time.monotonic_ns()}.log"
    with log.open("wb") as fh:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "api.cli",
                "serve",
                "--port",
                str(port),
                "--workers",
                "2",
                "--log-level",
                "warning",
            ],
            cwd=tmp,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"tcm serve exited: {log.read_text()[-2000:]}"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError("tcm serve did not become ready")


def test_sigkill_mid_stream_loses_no_answered_audit_record(tmp_path: Path) -> None:
    token = add_api_client(tmp_path / "var" / "api-tokens.json", "emr-client", ["emr"])
    admin = add_api_client(tmp_path / "var" / "api-tokens.json", "ops", ["admin"])
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _start(tmp_path, port)
    answered: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    started = time.monotonic()

    def stream() -> None:
        with httpx.Client(base_url=base, timeout=5) as client:
            for _ in range(2000):  # bounded
                if stop.is_set() or time.monotonic() - started > 30:
                    return
                try:
                    r = client.post("/v1/check", json=RX, headers={"Authorization": f"Bearer {token}"})
                except httpx.HTTPError:
                    return
                if r.status_code == 200:
                    with lock:
                        answered.append(r.headers["x-request-id"])

    threads = [threading.Thread(target=stream) for _ in range(6)]
    for t in threads:
        t.start()
    while len(answered) < 150 and time.monotonic() - started < 20:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole server, mid-stream
    proc.wait(10)
    stop.set()
    for t in threads:
        t.join(10)
    assert len(answered) >= 50, "too few calls answered before the kill to say anything"

    db = tmp_path / "var" / "tcm.db"
    proc = _start(tmp_path, port)  # restart on the same database
    try:
        r = httpx.get(f"{base}/v1/audit", params={"limit": 1000}, headers={"Authorization": f"Bearer {admin}"})
        assert r.status_code == 200
        out = subprocess.run(
            [sys.executable, "-m", "api.cli", "audit", "export"],
            cwd=tmp_path,
            capture_output=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            check=True,
            timeout=60,
        )
        audited = {json.loads(line)["request_id"] for line in out.stdout.decode().splitlines() if line.strip()}
        missing = set(answered) - audited
        assert not missing, f"{len(missing)} of {len(answered)} answered calls have no audit record"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        orphans = conn.execute(
            "SELECT COUNT(*) FROM audit_card c LEFT JOIN audit_log a ON a.request_id = c.request_id WHERE a.id IS NULL"
        ).fetchone()[0]
        assert orphans == 0
        dupes = conn.execute("SELECT COUNT(*) - COUNT(DISTINCT request_id) FROM audit_log").fetchone()[0]
        assert dupes == 0
