"""The audit trail (every call, errors included; no patient text), ``tcm audit export``, and the client
registries on the command line (``tcm token``, ``tcm cds-client``, ``tcm serve --dev``)."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.api.app_support import *  # noqa: F403
from tests.api.app_support import SIGN, audit_rows, bundle, hook_request, med_request

RX = {"patient": {"pregnant": True}, "items": [{"herb": "甘草", "dose": "6g"}, {"herb": "甘遂", "dose_g": 1}]}


def test_every_call_is_audited_errors_included(make_env) -> None:  # type: ignore[no-untyped-def]
    e = make_env(max_body_bytes=4096, rate_limit_per_min=60, rate_burst=8)
    raw = json.dumps(RX, ensure_ascii=False).encode()
    calls = [
        e.client.post("/v1/check", content=raw, headers={**e.auth("emr"), "Content-Type": "application/json"}),
        e.client.post("/v1/check", json=RX),  # 401
        e.client.post("/v1/check", json=RX, headers=e.auth("curator")),  # 403
        e.client.get("/v1/herbs/nothing-like-this", headers=e.auth("emr")),  # 404
        e.client.post(
            "/v1/check", json={"items": [{"herb": "甘草", "dose": "6g"}] * 300}, headers=e.auth("emr")
        ),  # 413
        e.client.post("/v1/check", json={"items": []}, headers=e.auth("emr")),  # 422
    ]
    while calls[-1].status_code != 429:
        calls.append(e.client.get("/v1/version", headers=e.auth("researcher")))
        calls.append(e.client.get("/v1/herbs/gancao", headers=e.auth("researcher")))
    e.client.get("/healthz")  # probes are not audited
    rows = {r["request_id"]: r for r in audit_rows(e)}
    for resp in calls:
        rid = resp.headers["x-request-id"]
        assert rid in rows, (resp.status_code, resp.request.url)
        assert rows[rid]["status"] == resp.status_code
    ok = rows[calls[0].headers["x-request-id"]]
    assert ok["input_sha256"] == hashlib.sha256(raw).hexdigest()
    assert ok["client"] == "client-emr" and ok["role"] == "emr" and ok["route"] == "/v1/check"
    assert ok["versions"]["kb"] and ok["versions"]["ruleset"] and ok["versions"]["engine"]
    assert ok["outcome"].startswith("findings:") and ok["latency_ms"] > 0
    assert rows[calls[2].headers["x-request-id"]]["client"] == "client-curator"
    assert rows[calls[4].headers["x-request-id"]]["status"] == 413
    assert all(r["route"] != "/healthz" for r in rows.values())
    text = json.dumps(list(rows.values()), ensure_ascii=False)
    assert "甘遂" not in text and "pregnant" not in text


def test_audit_store_down_means_503_not_an_unaudited_answer(make_env, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    e = make_env()
    services = e.app.state.tcm

    def broken(ops: Any) -> Any:
        return [(False, RuntimeError("disk full")) for _ in ops]

    monkeypatch.setattr(services.writer, "_execute", broken)
    r = e.client.post("/v1/check", json=RX, headers=e.auth("emr"))
    assert r.status_code == 503 and "findings" not in r.text


def _cli_env(monkeypatch: pytest.MonkeyPatch, tmp: Path) -> None:
    monkeypatch.setenv("TCM_DATABASE_URL", f"sqlite:///{tmp / 'audit.db'}")
    monkeypatch.setenv("TCM_API_TOKENS_FILE", str(tmp / "api-tokens.json"))
    monkeypatch.setenv("TCM_CDS_CLIENTS_FILE", str(tmp / "cds-clients.json"))


def test_tcm_audit_export(make_env, tcm, monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    e = make_env()
    body = hook_request("order-sign", bundle(med_request("mr-1", [("甘草", 6), ("甘遂", 1)])))
    cards = e.client.post(f"/cds-services/{SIGN}", json=body, headers=e.cds(SIGN)).json()["cards"]
    fb = {
        "feedback": [
            {
                "card": cards[0]["uuid"],
                "outcome": "overridden",
                "outcomeTimestamp": "2026-01-05T08:00:00Z",
                "overrideReason": {"reason": cards[0]["overrideReasons"][1]},
            }
        ]
    }
    assert (
        e.client.post(f"/cds-services/{SIGN}/feedback", json=fb, headers=e.cds(SIGN, feedback=True)).status_code == 200
    )
    monkeypatch.setenv("TCM_DATABASE_URL", e.settings.database_url)
    out = tmp_path / "audit.jsonl"
    res = tcm("audit", "export", "--out", str(out))
    assert res.code == 0, res.err
    lines = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    call = next(x for x in lines if x["hook_instance"] == body["hookInstance"])
    assert call["card_ids"] == [c["uuid"] for c in cards]
    assert call["cards"][0]["feedback"][0]["override_reason"]["code"] == cards[0]["overrideReasons"][1]["code"]
    assert any(x["route"] == "/cds-services/{service_id}/feedback" for x in lines)
    stdout = tcm("audit", "export", "--since", "2999-01-01T00:00:00Z")
    assert stdout.code == 0 and stdout.out == ""
    assert tcm("audit", "export", "--since", "2000-01-01").json_lines()
    assert tcm("audit", "export", "--since", "last tuesday").code == 2


def test_tcm_token_commands(tcm, monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _cli_env(monkeypatch, tmp_path)
    r = tcm("token", "create", "his-prod", "--role", "emr", "--role", "reviewer")
    assert r.code == 0 and r.out.startswith("tcm_") and "shown once" in r.err
    token = r.out.strip()
    stored = (tmp_path / "api-tokens.json").read_text()
    assert token not in stored and hashlib.sha256(token.encode()).hexdigest() in stored
    assert (tmp_path / "api-tokens.json").stat().st_mode & 0o077 == 0
    assert "his-prod\temr,reviewer" in tcm("token", "list").out
    assert tcm("token", "create", "his-prod", "--role", "emr").code == 2  # exists
    assert tcm("token", "create", "x", "--role", "root").code == 2  # unknown role
    assert tcm("token", "revoke", "his-prod").code == 0
    assert tcm("token", "revoke", "his-prod").code == 2


def test_tcm_cds_client_commands_and_jwt(tcm, monkeypatch, tmp_path, make_env) -> None:  # type: ignore[no-untyped-def]
    from joserfc.jwk import ECKey

    _cli_env(monkeypatch, tmp_path)
    key = ECKey.generate_key("P-384", parameters={"kid": "k-9", "alg": "ES384"})
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    (tmp_path / "private.json").write_text(json.dumps(key.as_dict(private=True)))
    assert (
        tcm(
            "cds-client",
            "add",
            "https://his.example.org",
            "--jwks",
            str(tmp_path / "jwks.json"),
            "--name",
            "HIS",
        ).code
        == 0
    )
    assert "https://his.example.org\tHIS\tkeys=1" in tcm("cds-client", "list").out
    assert '"d"' not in (tmp_path / "cds-clients.json").read_text()  # only public parts are kept
    assert tcm("cds-client", "add", "https://x.example.org").code == 2  # no keys given
    r = tcm(
        "cds-client",
        "jwt",
        "--key",
        str(tmp_path / "private.json"),
        "--iss",
        "https://his.example.org",
        "--service",
        SIGN,
        "--base-url",
        "http://testserver",
    )
    assert r.code == 0
    e = make_env()
    e.app.state.tcm.cds_clients.path = tmp_path / "cds-clients.json"
    e.app.state.tcm.cds_clients._checked = 0.0
    body = hook_request("order-sign", bundle(med_request("mr-1", [("甘草", 6)])))
    resp = e.client.post(f"/cds-services/{SIGN}", json=body, headers={"Authorization": f"Bearer {r.out.strip()}"})
    assert resp.status_code == 200, resp.text


def test_dev_setup_prints_the_token_once(monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import io

    from api import cli_serve
    from api.settings import Settings

    monkeypatch.chdir(tmp_path)
    _cli_env(monkeypatch, tmp_path)
    settings = Settings.from_env()
    first, second = io.StringIO(), io.StringIO()
    cli_serve.dev_setup(settings, "http://127.0.0.1:8000", first)
    cli_serve.dev_setup(settings, "http://127.0.0.1:8000", second)
    assert "tcm_" in first.getvalue() and "tcm_" not in second.getvalue()
    assert cli_serve.DEV_KEY.is_file() and cli_serve.DEV_KEY.stat().st_mode & 0o077 == 0
    token = next(w for w in first.getvalue().split() if w.startswith("tcm_"))
    from api.auth import TokenStore

    ident = TokenStore(settings.api_tokens_file).lookup(token)
    assert ident is not None and "admin" in ident.roles
    store = TokenStore(settings.api_tokens_file)  # and one curator and one reviewer, for the curation page
    roles = [store.lookup(w.strip("'")).roles for w in first.getvalue().split() if w.startswith("tcm_")]  # type: ignore[union-attr]
    assert frozenset({"curator"}) in roles and frozenset({"reviewer"}) in roles
    issuers = json.loads(settings.cds_clients_file.read_text())["issuers"]
    assert issuers[0]["iss"] == cli_serve.DEV_ISSUER


def test_serve_refuses_dev_mode_off_loopback(tcm) -> None:  # type: ignore[no-untyped-def]
    r = tcm("serve", "--dev", "--host", "0.0.0.0")
    assert r.code == 2 and "loopback" in r.err
    assert tcm("serve", "--workers", "0").code == 2


def test_jti_store_forgets_expired_ids(make_env) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import func, select

    from api.audit import cds_jti, jti_op

    e = make_env()
    services = e.app.state.tcm
    now = int(time.time()) // 64 * 64
    assert services.writer.submit(jti_op("iss", "old", now - 7200, now - 1)).result() is True
    assert services.writer.submit(jti_op("iss", "old", now - 7200, now - 1)).result() is False
    assert services.writer.submit(jti_op("iss", "new", now + 60, now)).result() is True
    with services.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(cds_jti)).scalar() == 1
