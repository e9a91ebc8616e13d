"""The same audit trail on PostgreSQL: set ``TCM_TEST_DATABASE_URL`` (e.g.
``postgresql+psycopg://postgres@127.0.0.1:5432/tcm_test``, a throwaway database) to run these; skipped otherwise."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from tests.api.app_support import SIGN, audit_rows, build, bundle, close, hook_request, med_request

URL = os.environ.get("TCM_TEST_DATABASE_URL")
pytestmark = pytest.mark.skipif(not URL, reason="set TCM_TEST_DATABASE_URL to a throwaway PostgreSQL database")


def test_audit_feedback_and_replay_on_postgres(tmp_path: Path) -> None:
    pytest.importorskip("psycopg")
    e = build(tmp_path, database_url=URL)
    try:
        assert e.app.state.tcm.writer.inline is False  # a network database: the writer thread commits
        r = e.client.post("/v1/check", json={"items": [{"herb": "甘草", "dose": "6g"}]}, headers=e.auth("emr"))
        assert r.status_code == 200
        body = hook_request("order-sign", bundle(med_request("mr-1", [("甘草", 6), ("甘遂", 1)])))
        token = e.jwt(service=SIGN)
        h = {"Authorization": f"Bearer {token}"}
        cards = e.client.post(f"/cds-services/{SIGN}", json=body, headers=h).json()["cards"]
        assert e.client.post(f"/cds-services/{SIGN}", json=body, headers=h).status_code == 401  # replay
        fb = {
            "feedback": [
                {"card": cards[0]["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-01-05T08:00:00Z"}
            ]
        }
        assert (
            e.client.post(f"/cds-services/{SIGN}/feedback", json=fb, headers=e.cds(SIGN, feedback=True)).status_code
            == 200
        )
        rows = {x["request_id"]: x for x in audit_rows(e)}
        assert r.headers["x-request-id"] in rows
        call = next(x for x in rows.values() if x["hook_instance"] == body["hookInstance"])
        assert call["cards"][0]["feedback"][0]["outcome"] == "overridden"
        assert e.client.get("/readyz").json()["checks"]["database"] is True
    finally:
        close(e)


def test_schema_creation_is_idempotent_on_postgres() -> None:
    from api.audit import create_schema, make_engine

    engine = make_engine(URL or "")
    create_schema(engine)
    create_schema(engine)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM audit_log").scalar() is not None
    engine.dispose()
    assert uuid.uuid4()


def test_curation_workflow_on_postgres(tmp_path: Path) -> None:
    pytest.importorskip("psycopg")
    from api.audit import make_engine
    from kb import curation

    engine = make_engine(URL or "")
    curation.metadata.drop_all(engine)  # a throwaway database: start the curation tables afresh
    engine.dispose()
    e = build(tmp_path, database_url=URL)
    try:
        source = {"work": "中华人民共和国药典", "edition": "2020年版 一部", "locator": "甘草"}
        r = e.client.get("/v1/curation/entities/herb/gancao", headers=e.auth("curator"))
        put = {"title": "甘草用量", "reason": "r", "source": source, "data": {"dose_g": [3, 9]}}
        cr = e.client.put("/v1/curation/entities/herb/gancao", json=put,
                          headers={**e.auth("curator"), "If-Match": r.headers["etag"]}).json()  # fmt: skip
        assert cr["validation"]["ok"], cr
        assert e.client.put("/v1/curation/entities/herb/gancao", json=put, headers={**e.auth("curator"),
                            "If-Match": '"0000"'}).status_code == 412  # fmt: skip
        assert e.client.post(f"/v1/curation/change-requests/{cr['id']}/review", json={"decision": "approve"},
                             headers=e.auth("reviewer")).status_code == 200  # fmt: skip
        rel = e.client.post("/v1/curation/releases", headers=e.auth("reviewer")).json()
        got = e.client.get("/v1/herbs/gancao", headers=e.auth("emr")).json()
        assert got["kb_version"] == rel["version"] and got["safety"]["dose_g"] == {"min": 3.0, "max": 9.0}
        seed = e.client.get("/v1/curation/releases", headers=e.auth("curator")).json()["releases"][-1]["name"]
        assert e.client.post(f"/v1/curation/releases/{seed}/restore", headers=e.auth("reviewer")).status_code == 201
    finally:
        close(e)
