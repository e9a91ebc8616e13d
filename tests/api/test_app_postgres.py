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
