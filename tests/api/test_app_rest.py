"""REST under /v1: every endpoint, every role, every error path — with the TestClient on the fixture KB."""

from __future__ import annotations

import logging
import time

import pytest

from api.auth import ROLES
from tests.api.app_support import *  # noqa: F403
from tests.api.app_support import Env, bundle, med_request

RX = {
    "patient": {"pregnant": True, "sex": "female", "age_years": 30},
    "items": [
        {"herb": "甘草", "dose": "6g"},
        {"herb": "甘遂", "dose_g": 1},
        {"herb": "炙甘草", "dose": "3钱"},
    ],
}
FINDINGS = {"text": "恶寒重，发热轻，无汗，头痛，鼻塞", "tongue": "苔薄白", "pulse": "脉浮紧"}


# ---- clinical ------------------------------------------------------------------------------------------
def test_check_reviews_a_prescription_like_the_cli(env: Env) -> None:
    r = env.client.post("/v1/check", json=RX, headers=env.auth("emr"))
    assert r.status_code == 200, r.text
    body = r.json()
    kinds = {f["kind"] for f in body["findings"]}
    assert {"incompatibility", "pregnancy"} <= kinds
    assert body["summary"]["critical"] >= 1
    assert body["kb_version"] == str(env.app.state.tcm.kb.version)
    assert body["ruleset_version"] == env.app.state.tcm.kb.ruleset_version
    assert [x["input"] for x in body["resolution"]] == ["甘草", "甘遂", "炙甘草"]
    assert r.headers["x-request-id"]
    assert "cards" not in body


def test_check_same_answer_as_the_cli(env: Env, tcm) -> None:  # type: ignore[no-untyped-def]
    import json

    r = env.client.post("/v1/check", json=RX, headers=env.auth("emr"))
    cli = tcm("check", "-", "--json", stdin=json.dumps(RX, ensure_ascii=False))
    assert cli.code == 0
    assert r.json() == cli.json_lines()[0]


def test_check_with_cards_and_fhir_input(env: Env) -> None:
    r = env.client.post("/v1/check?cards=true", json=RX, headers=env.auth("emr"))
    cards = r.json()["cards"]
    assert cards and all(len(c["summary"]) < 140 for c in cards)
    fhir = bundle(med_request("mr-1", [("甘草", 6), ("海藻", 9)]))
    r = env.client.post("/v1/check", json=fhir, headers=env.auth("emr"))
    assert r.status_code == 200, r.text
    assert any(f["kind"] == "incompatibility" for f in r.json()["findings"])


def test_differentiate_and_suggest(env: Env) -> None:
    r = env.client.post("/v1/differentiate", json=FINDINGS, headers=env.auth("emr"))
    assert r.status_code == 200, r.text
    top = r.json()["differentials"][0]
    assert top["name"] == "风寒束表证"
    r = env.client.post("/v1/suggest", json=FINDINGS, headers=env.auth("emr"))
    assert r.status_code == 200
    sug = r.json()["suggestions"][0]
    assert sug["formula"]["name"] == "麻黄汤"
    assert any(p["herb"] == "川芎" for p in sug["prescription"])  # the 头痛 modification


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"items": [{"herb": "甘草", "dose": "6 spoons"}]}, "items[0].dose"),
        ({"items": []}, "items"),
        ({"items": [{"herb": "甘草", "dose": "6g"}], "patient": {"pregnant": "yes"}}, "patient.pregnant"),
        (["not", "an", "object"], None),
    ],
)
def test_check_invalid_input_is_422_naming_the_field(env: Env, body: object, where: str | None) -> None:
    r = env.client.post("/v1/check", json=body, headers=env.auth("emr"))
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    p = r.json()
    assert p["status"] == 422 and p["type"].endswith("/invalid-input")
    assert p.get("where") == where
    assert "spoons" not in r.text and "yes" not in p["detail"]  # the caller's text is withheld


def test_malformed_json_and_wrong_content_type_are_400(env: Env) -> None:
    h = {**env.auth("emr"), "Content-Type": "application/json"}
    r = env.client.post("/v1/check", content=b'{"items": [', headers=h)
    assert r.status_code == 400 and r.json()["type"].endswith("/bad-request")
    r = env.client.post("/v1/check", content=b"items=1", headers={**env.auth("emr"), "Content-Type": "text/plain"})
    assert r.status_code == 400
    r = env.client.post("/v1/check", content=b"", headers=h)
    assert r.status_code == 400


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"items": [', "malformed JSON at line 1, column 12"),
        (b'{"items": []}\n{', "malformed JSON at line 2"),
        ('{"items": [{"herb": "甘草"}]}'.encode("gb18030"), "not UTF-8"),
        (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
        (b'{"items": [{"herb": "\xe7\x94\x98\xe8\x8d\x89", "dose_g": NaN}]}', "malformed JSON"),
    ],
)
def test_an_unreadable_body_is_400_saying_what_is_wrong(env: Env, body: bytes, says: str) -> None:
    r = env.client.post("/v1/check", content=body, headers={**env.auth("emr"), "Content-Type": "application/json"})
    assert r.status_code == 400 and says in r.json()["detail"], r.text


def test_findings_with_no_known_term_are_422_without_echoing_them(env: Env) -> None:
    r = env.client.post("/v1/differentiate", json={"text": "患者张三自述xyzzy"}, headers=env.auth("emr"))
    assert r.status_code == 422
    assert "张三" not in r.text and "xyzzy" not in r.text


# ---- knowledge base ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/v1/herbs/gancao", "甘草"),
        ("/v1/herbs/炙甘草", "甘草"),
        ("/v1/herbs/国老", "甘草"),
        ("/v1/formulas/麻黄汤", "麻黄汤"),
        ("/v1/syndromes/ganmao.fenghan-shubiao", "风寒束表证"),
    ],
)
def test_kb_entities_by_id_or_name(env: Env, path: str, name: str) -> None:
    r = env.client.get(path, headers=env.auth("researcher"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["name"] == name and body["kb_version"]
    assert body["source"] is not None


def test_herb_carries_safety_and_partners(env: Env) -> None:
    h = env.client.get("/v1/herbs/gancao", headers=env.auth("emr")).json()
    assert h["safety"]["dose_g"] == {"min": 2.0, "max": 10.0}
    assert any("甘遂" in x["herbs"] for x in h["incompatible_with"])
    s = env.client.get("/v1/syndromes/风寒束表证", headers=env.auth("emr")).json()
    assert s["disease"]["name"] == "感冒" and {"name": "麻黄汤", "id": "mahuang-tang"} in s["formulas"]


def test_formula_carries_its_versions(env: Env) -> None:
    f = env.client.get("/v1/formulas/四君子丸", headers=env.auth("emr")).json()  # the 成药's name finds the formula
    assert f["id"] == "sijunzi-tang" and f["composition"][0]["herb"] == "人参"
    (v,) = f["versions"]
    assert (v["kind"], v["name"], v["source"]["ref"]) == ("pharmacopoeia", "四君子丸", "chp2020")
    assert [i["herb"] for i in v["composition"]] == ["党参", "白术", "茯苓", "甘草"]
    assert v["composition"][1]["written"] == "炒白术" and v["composition"][1]["dose_g"] is None


def test_unknown_entity_is_404_with_candidates(env: Env) -> None:
    r = env.client.get("/v1/herbs/甘草草草", headers=env.auth("emr"))
    assert r.status_code == 404
    assert r.json()["type"].endswith("/unknown-entity") and "甘草" in r.json()["candidates"]


def test_search_by_name_and_alias(env: Env) -> None:
    r = env.client.get("/v1/herbs", params={"q": "国老"}, headers=env.auth("curator"))
    assert r.status_code == 200
    assert r.json()["results"][0]["id"] == "gancao"
    ids = [x["id"] for x in env.client.get("/v1/herbs", params={"q": "甘"}, headers=env.auth("emr")).json()["results"]]
    assert {"gancao", "gansui"} <= set(ids)
    r = env.client.get("/v1/formulas", params={"q": "麻黄"}, headers=env.auth("emr"))
    assert "mahuang-tang" in [x["id"] for x in r.json()["results"]]
    assert env.client.get("/v1/syndromes", headers=env.auth("emr")).status_code == 422  # q is required


# ---- SPARQL --------------------------------------------------------------------------------------------
SELECT_Q = 'SELECT ?f WHERE { ?f tcm:containsHerb ?h . ?h skos:prefLabel "甘草"@zh }'


def test_sparql_select_get_and_post(env: Env) -> None:
    r = env.client.get("/v1/sparql", params={"query": SELECT_Q}, headers=env.auth("researcher"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/sparql-results+json")
    assert r.json()["results"]["bindings"]
    r = env.client.post(
        "/v1/sparql",
        content=SELECT_Q.encode(),
        headers={**env.auth("curator"), "Content-Type": "application/sparql-query"},
    )
    assert r.status_code == 200 and r.json()["results"]["bindings"]
    r = env.client.post("/v1/sparql", data={"query": "ASK { ?s ?p ?o }"}, headers=env.auth("curator"))
    assert r.json()["boolean"] is True


def test_sparql_row_limit(env: Env) -> None:
    r = env.client.get(
        "/v1/sparql",
        params={"query": "SELECT ?s ?p ?o WHERE { ?s ?p ?o }", "limit": 5},
        headers=env.auth("researcher"),
    )
    assert len(r.json()["results"]["bindings"]) == 5 and r.json()["truncated"] is True


@pytest.mark.parametrize(
    "query",
    [
        "INSERT DATA { <urn:a> <urn:b> <urn:c> }",
        "DELETE WHERE { ?s ?p ?o }",
        "SELECT * WHERE { SERVICE <http://example.org/sparql> { ?s ?p ?o } }",
        "SELECT * FROM <http://example.org/g> WHERE { ?s ?p ?o }",
        "SELECT WHERE {",
    ],
)
def test_sparql_refuses_updates_federation_and_garbage(env: Env, query: str) -> None:
    r = env.client.get("/v1/sparql", params={"query": query}, headers=env.auth("researcher"))
    assert r.status_code == 400, r.text
    assert r.json()["type"].endswith("/bad-query")
    r = env.client.post("/v1/sparql", data={"update": query}, headers=env.auth("researcher"))
    assert r.status_code in (400, 422)


def test_sparql_time_limit(make_env) -> None:  # type: ignore[no-untyped-def]
    e = make_env(sparql_timeout_s=0.3)
    slow = "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i }"
    t0 = time.monotonic()
    r = e.client.get("/v1/sparql", params={"query": slow}, headers=e.auth("researcher"))
    assert r.status_code == 400 and "time limit" in r.json()["detail"]
    assert time.monotonic() - t0 < 10
    r = e.client.get("/v1/sparql", params={"query": "ASK { ?s ?p ?o }"}, headers=e.auth("researcher"))
    assert r.status_code == 200  # the service goes on


# ---- service routes ------------------------------------------------------------------------------------
def test_version_health_ready_metrics(env: Env) -> None:
    v = env.client.get("/v1/version").json()
    assert v["kb_version"] == str(env.app.state.tcm.kb.version) and v["engine"] and v["cds_hooks"] == "2.0"
    assert env.client.get("/healthz").json() == {"status": "ok"}
    ready = env.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["database"] is True
    env.client.post("/v1/check", json=RX, headers=env.auth("emr"))
    m = env.client.get("/metrics", headers=env.auth("monitor"))
    assert m.status_code == 200 and 'tcm_http_requests_total{method="POST",route="/v1/check",status="200"}' in m.text
    assert env.client.get("/metrics", headers=env.auth("emr")).status_code == 403
    assert env.client.get("/v1/ping", headers=env.auth("reviewer")).json() == {"ok": True}


def test_readyz_reports_a_broken_knowledge_base(make_env, kb_copy) -> None:  # type: ignore[no-untyped-def]
    import kb

    (kb_copy / "herbs" / "all.yaml").write_text("- {id: broken}\n", encoding="utf-8")
    e = make_env(knowledge=None)
    e.app.state.tcm._kb = None
    e.app.state.tcm._seed_dir = None  # load from $TCM_KB_DIR, as a server started without a given knowledge base
    import os

    old = os.environ.get("TCM_KB_DIR")
    os.environ["TCM_KB_DIR"] = str(kb_copy)
    try:
        kb.base._cached.cache_clear()
        r = e.client.get("/readyz")
        assert r.status_code == 503 and r.json()["checks"]["knowledge_base"] is False
        r = e.client.post("/v1/check", json=RX, headers=e.auth("emr"))
        assert r.status_code == 500
        assert r.json()["type"].endswith("/engine-content") and "herbs/all.yaml" not in r.text
    finally:
        if old is None:
            os.environ.pop("TCM_KB_DIR", None)
        else:
            os.environ["TCM_KB_DIR"] = old


def test_audit_and_feedback_listing(env: Env) -> None:
    env.client.post("/v1/check", json=RX, headers=env.auth("emr"))
    r = env.client.get("/v1/audit", params={"limit": 1000}, headers=env.auth("admin"))
    assert r.status_code == 200
    assert any(x["route"] == "/v1/check" and x["status"] == 200 for x in r.json()["records"])
    assert env.client.get("/v1/audit", params={"since": "yesterday"}, headers=env.auth("admin")).status_code == 422
    assert env.client.get("/v1/feedback", headers=env.auth("reviewer")).status_code == 200
    assert env.client.get("/v1/audit", headers=env.auth("reviewer")).status_code == 403


# ---- roles ---------------------------------------------------------------------------------------------
ROUTE_ROLES = [
    ("POST", "/v1/check", {"emr"}),
    ("POST", "/v1/differentiate", {"emr"}),
    ("POST", "/v1/suggest", {"emr"}),
    ("GET", "/v1/herbs/gancao", {"emr", "curator", "reviewer", "researcher"}),
    ("GET", "/v1/formulas?q=麻黄", {"emr", "curator", "reviewer", "researcher"}),
    ("GET", "/v1/sparql?query=ASK%20%7B%20%3Fs%20%3Fp%20%3Fo%20%7D", {"curator", "researcher"}),
    ("GET", "/v1/audit", set()),
    ("GET", "/v1/feedback", {"reviewer"}),
    ("GET", "/metrics", {"monitor"}),
    ("GET", "/v1/ping", set(ROLES)),
]


@pytest.mark.parametrize(("method", "path", "allowed"), ROUTE_ROLES)
def test_role_matrix(env: Env, method: str, path: str, allowed: set[str]) -> None:
    body = RX if path == "/v1/check" else FINDINGS
    for role in ROLES:
        r = env.client.request(method, path, headers=env.auth(role), json=body if method == "POST" else None)
        expect_ok = role in allowed or role == "admin"
        assert (r.status_code == 200) == expect_ok, (role, r.status_code, r.text[:200])
        if not expect_ok:
            assert r.status_code == 403 and r.json()["type"].endswith("/forbidden")


@pytest.mark.parametrize("header", [None, "Bearer nope", "Basic dXNlcjpwYXNz", "Bearer "])
def test_missing_or_bad_token_is_401(env: Env, header: str | None) -> None:
    h = {"Authorization": header} if header is not None else {}
    r = env.client.post("/v1/check", json=RX, headers=h)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_revoked_token_is_refused(make_env) -> None:  # type: ignore[no-untyped-def]
    from api.auth import revoke_api_client

    e = make_env()
    assert e.client.get("/v1/ping", headers=e.auth("emr")).status_code == 200
    revoke_api_client(e.settings.api_tokens_file, "client-emr")
    e.app.state.tcm.tokens._checked = 0.0  # the file is re-read at most once a second
    assert e.client.get("/v1/ping", headers=e.auth("emr")).status_code == 401


# ---- limits --------------------------------------------------------------------------------------------
def test_request_size_cap_is_413(make_env) -> None:  # type: ignore[no-untyped-def]
    e = make_env(max_body_bytes=2048)
    big = {"items": [{"herb": "甘草", "dose": "6g"}] * 200}
    r = e.client.post("/v1/check", json=big, headers=e.auth("emr"))
    assert r.status_code == 413 and r.json()["type"].endswith("/too-large")

    def chunks():  # no Content-Length: the cap holds while streaming
        for _ in range(10):
            yield b" " * 1024

    r = e.client.post("/v1/check", content=chunks(), headers={**e.auth("emr"), "Content-Type": "application/json"})
    assert r.status_code == 413


def test_rate_limit_is_429_with_retry_after(make_env) -> None:  # type: ignore[no-untyped-def]
    e = make_env(rate_limit_per_min=60, rate_burst=3)
    codes = [e.client.get("/v1/ping", headers=e.auth("emr")).status_code for _ in range(5)]
    assert codes[:3] == [200, 200, 200] and codes[-1] == 429
    r = e.client.get("/v1/ping", headers=e.auth("emr"))
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert e.client.get("/v1/ping", headers=e.auth("curator")).status_code == 200  # per client


def test_engine_timeout_is_503(make_env, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import importlib

    review_mod = importlib.import_module("cds.review")
    e = make_env(request_timeout_s=0.2, inline_max_bytes=0)  # every body goes to a worker thread
    real = review_mod.review

    def slow(*a, **kw):  # type: ignore[no-untyped-def]
        time.sleep(1.0)
        return real(*a, **kw)

    monkeypatch.setattr(review_mod, "review", slow)
    r = e.client.post("/v1/check", json=RX, headers=e.auth("emr"))
    assert r.status_code == 503 and r.json()["type"].endswith("/unavailable")
    e2 = make_env(request_timeout_s=0.2, inline_max_bytes=64)  # a large body goes to a thread anyway
    big = {**RX, "note": "x" * 200}
    assert e2.client.post("/v1/check", json=big, headers=e2.auth("emr")).status_code == 503


def test_unexpected_error_is_500_without_trace_or_patient_text(make_env, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    import importlib

    review_mod = importlib.import_module("cds.review")
    e = make_env()

    def boom(*a, **kw):  # type: ignore[no-untyped-def]
        raise KeyError("患者李四 secret")

    monkeypatch.setattr(review_mod, "review", boom)
    with caplog.at_level(logging.INFO):
        r = e.client.post("/v1/check", json={**RX, "note": "患者李四"}, headers=e.auth("emr"))
    assert r.status_code == 500
    assert r.json()["request_id"] == r.headers["x-request-id"]
    for text in (r.text, caplog.text):
        assert "李四" not in text and "Traceback" not in text and "secret" not in text
    assert "KeyError" in caplog.text  # the log names the type and place


def test_unknown_route_and_method(env: Env) -> None:
    assert env.client.get("/v2/nothing").status_code == 404
    r = env.client.get("/v1/check", headers=env.auth("emr"))
    assert r.status_code == 405 and r.headers["content-type"].startswith("application/problem+json")


def test_cors_off_by_default_and_configurable(env: Env, make_env) -> None:  # type: ignore[no-untyped-def]
    h = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    r = env.client.options("/v1/check", headers=h)
    assert "access-control-allow-origin" not in r.headers
    e = make_env(cors_origins=("https://his.example",))
    r = e.client.options("/v1/check", headers={**h, "Origin": "https://his.example"})
    assert r.headers.get("access-control-allow-origin") == "https://his.example"


def test_the_service_uses_the_models_in_its_models_dir_and_says_so(make_env, tmp_path) -> None:
    from models.artifacts import save_artifact
    from models.herb_rec import CooccurrenceRecommender

    model = CooccurrenceRecommender(["头痛", "鼻塞"], ["白芷", "甘遂", "党参"])
    model.fit([[0], [1], [0, 1]], [[0, 1], [0], [0, 1]])
    save_artifact(model, tmp_path / "art" / "models" / "herb-rec" / "tcm-pd", data={"name": "tiny"}, metrics={})
    e = make_env(models_dir=tmp_path / "art")
    version = e.client.get("/v1/version").json()
    assert [m["role"] for m in version["models"]] == ["herb-rec"]
    name = version["models"][0]["name"]
    body = e.client.post("/v1/suggest", json=FINDINGS, headers=e.auth("emr")).json()
    assert name in body["models_used"]
    offered = {h["herb"] for h in body["suggestions"][0]["herb_suggestions"]}
    assert "甘遂" in offered or "党参" in offered  # herbs the fixture knows; 白芷 it does not, so none is offered
    assert "白芷" not in offered
    row = [r for r in audit_rows(e) if r["route"] == "/v1/suggest"][-1]  # noqa: F405
    assert row["versions"]["models"] == [name]  # the audit trail names the models the answer used
    plain = e.client.post("/v1/differentiate", json=FINDINGS, headers=e.auth("emr")).json()
    assert plain["models_used"] == []  # differentiation uses no herb model


def test_a_broken_models_dir_leaves_the_knowledge_base_answering(make_env, tmp_path) -> None:
    e = make_env(models_dir=tmp_path / "missing")
    assert e.client.get("/v1/version").json()["models"] == []
    r = e.client.post("/v1/suggest", json=FINDINGS, headers=e.auth("emr"))
    assert r.status_code == 200 and r.json()["models_used"] == []


def test_check_reads_the_patients_groups(make_env, real_kb) -> None:  # type: ignore[no-untyped-def]
    e = make_env(knowledge=real_kb)
    rx = {
        "patient": {"age_years": 60, "sex": "male", "renal_impairment": True},
        "items": [{"herb": "朱砂", "dose": "0.3g"}],
    }
    r = e.client.post("/v1/check", json=rx, headers=e.auth("emr"))
    assert r.status_code == 200, r.text
    assert [
        (f["severity"], f["message"].split(" / ")[0]) for f in r.json()["findings"] if f["kind"] == "population"
    ] == [("critical", "朱砂：肾功能不全禁用")]
    bad = {**rx, "patient": {"renal_impairment": "yes"}}
    r = e.client.post("/v1/check", json=bad, headers=e.auth("emr"))
    assert r.status_code == 422 and "renal_impairment" in r.text
