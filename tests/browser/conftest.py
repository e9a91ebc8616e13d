"""Browser tests of the curator's page (/curate): a real ``tcm serve`` on a free loopback port with a temporary
database and token file, driven by Playwright (Python) through Debian's Chromium, headless.

They skip, saying why, when Playwright or Chromium is missing. Playwright's own browser download is never
used: ``executable_path`` points at the system Chromium (``TCM_CHROMIUM``, default ``/usr/bin/chromium``).
Screenshots of every page go to ``artifacts/screenshots/`` (``TCM_SCREENSHOT_DIR`` overrides).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.auth import add_api_client

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("TCM_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = Path(os.environ.get("TCM_SCREENSHOT_DIR", ROOT / "artifacts" / "screenshots"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# who logs in: name and roles of each REST client the tests create
CLIENTS = {
    "curator": ("alice", ["curator"]),
    "reviewer": ("bob", ["reviewer"]),
    "both": ("carol", ["curator", "reviewer"]),  # may review, but never her own change requests
    "emr": ("his-emr", ["emr"]),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    base: str
    tokens: dict[str, str]
    names: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] = field(repr=False)

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def call(self, method: str, path: str, who: str, **kw: Any) -> httpx.Response:
        headers = {**self.auth(who), **kw.pop("headers", {})}
        return httpx.request(method, self.base + path, headers=headers, timeout=120, **kw)


def _playwright() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright for Python is not installed (.venv/bin/pip install playwright)")
    return sync_playwright


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``tcm serve`` with the built-in knowledge base, a temporary SQLite database and its own token file."""
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set TCM_CHROMIUM)")
    _playwright()
    tmp = tmp_path_factory.mktemp("curate-server")
    tokens_file = tmp / "api-tokens.json"
    tokens = {who: add_api_client(tokens_file, name, roles) for who, (name, roles) in CLIENTS.items()}
    port = _free_port()
    env = {
        **os.environ,
        "TCM_DATABASE_URL": f"sqlite:///{tmp / 'tcm.db'}",
        "TCM_API_TOKENS_FILE": str(tokens_file),
        "TCM_CDS_CLIENTS_FILE": str(tmp / "cds-clients.json"),
        "TCM_RATE_LIMIT": "0",
        "TCM_SPARQL_WARMUP": "0",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("TCM_KB_DIR", None)  # the built-in knowledge base: the scenario edits 甘草 (gancao)
    log = tmp / "server.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "api.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            cwd=tmp,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, f"tcm serve exited:\n{log.read_text(errors='replace')[-3000:]}"
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (
                f"tcm serve did not become ready:\n{log.read_text(errors='replace')[-3000:]}"
            )
            time.sleep(0.3)
        yield Server(base, tokens, {who: name for who, (name, _) in CLIENTS.items()}, log, proc)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


@pytest.fixture(scope="module")
def browser(server: Server) -> Iterator[Any]:
    with _playwright()() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (its own sessionStorage) per test; uncaught page errors fail the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN", accept_downloads=True)
    context.set_default_timeout(180_000)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield pg
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
