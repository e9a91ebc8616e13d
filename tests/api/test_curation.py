"""Knowledge curation through the API: propose → validate → review → release → answers carry the new version →
restore; self-approval refused; stale edits get 412; invalid change requests cannot be approved."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.app_support import *  # noqa: F403
from tests.api.app_support import Env

SOURCE = {"work": "中华人民共和国药典", "edition": "2020年版 一部", "locator": "甘草"}


@pytest.fixture
def cur(make_env: Any) -> Env:
    return make_env()  # type: ignore[no-any-return]


def entity(env: Env, kind: str, ident: str, role: str = "curator") -> tuple[dict[str, Any], str]:
    r = env.client.get(f"/v1/curation/entities/{kind}/{ident}", headers=env.auth(role))
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == f'"{r.json()["etag"]}"'
    return r.json(), r.headers["etag"]


def propose_dose(env: Env, etag: str, dose: list[float], role: str = "curator") -> Any:
    return env.client.put(
        "/v1/curation/entities/herb/gancao",
        json={"title": "甘草用量", "reason": "按药典修订", "source": SOURCE, "data": {"dose_g": dose}},
        headers={**env.auth(role), "If-Match": etag},
    )


def test_whole_workflow_and_restore(cur: Env) -> None:
    before = cur.client.get("/v1/version", headers=cur.auth("emr")).json()["kb_version"]
    herb, etag = entity(cur, "herb", "gancao")
    assert herb["data"]["dose_g"] == [2, 10] and herb["pending"] == []
    assert {"kind": "form", "id": "zhigancao", "name": "炙甘草"} in herb["children"]

    r = propose_dose(cur, etag, [3, 9])
    assert r.status_code == 201, r.text
    cr = r.json()
    assert cr["status"] == "open" and cr["author"] == "client-curator" and cr["validation"]["ok"], cr
    assert cr["diff"] == [{"kind": "herb", "id": "gancao", "name": "甘草", "change": "updated",
                           "fields": [{"field": "dose_g", "before": [2, 10], "after": [3, 9]}]}]  # fmt: skip
    assert r.headers["location"] == f"/v1/curation/change-requests/{cr['id']}"
    assert entity(cur, "herb", "gancao")[0]["pending"] == [cr["id"]]

    queue = cur.client.get("/v1/curation/change-requests?status=open", headers=cur.auth("reviewer")).json()
    assert [c["id"] for c in queue["change_requests"]] == [cr["id"]]

    r = cur.client.post(f"/v1/curation/change-requests/{cr['id']}/review",
                        json={"decision": "approve", "comment": "核对无误"}, headers=cur.auth("reviewer"))  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "approved" and r.json()["review"]["reviewer"] == "client-reviewer"

    # nothing changes for the engine until the release
    assert cur.client.get("/v1/herbs/gancao", headers=cur.auth("emr")).json()["safety"]["dose_g"] == {
        "min": 2.0,
        "max": 10.0,
    }
    r = cur.client.post("/v1/curation/releases", json={"note": "药典修订"}, headers=cur.auth("reviewer"))
    assert r.status_code == 201, r.text
    rel = r.json()
    assert rel["kind"] == "release" and rel["current"] and rel["change_requests"] == [cr["id"]]
    assert rel["changelog"][0].startswith(f"#{cr['id']} 甘草用量")
    assert rel["diff"][0]["fields"] == [{"field": "dose_g", "before": [2, 10], "after": [3, 9]}]

    # the running engine serves the new release: new value, new version in every answer
    got = cur.client.get("/v1/herbs/gancao", headers=cur.auth("emr")).json()
    assert got["safety"]["dose_g"] == {"min": 3.0, "max": 9.0}
    assert got["kb_version"] == rel["version"] != before
    check = cur.client.post(
        "/v1/check", json={"items": [{"herb": "甘草", "dose_g": 10}]}, headers=cur.auth("emr")
    ).json()
    assert check["kb_version"] == rel["version"]
    assert any(f["kind"] == "dose" and f["rule_id"] == "dose.gancao" for f in check["findings"]), check["findings"]
    assert (
        cur.client.get(f"/v1/curation/change-requests/{cr['id']}", headers=cur.auth("curator")).json()["status"]
        == "released"
    )

    hist = cur.client.get("/v1/curation/releases", headers=cur.auth("curator")).json()["releases"]
    assert [h["kind"] for h in hist] == ["release", "seed"]
    seed = hist[1]["name"]
    d = cur.client.get(f"/v1/curation/diff?from={seed}&to={rel['name']}", headers=cur.auth("curator")).json()
    assert [(x["id"], x["change"]) for x in d["diff"]] == [("gancao", "updated")]

    r = cur.client.post(f"/v1/curation/releases/{seed}/restore", json={}, headers=cur.auth("reviewer"))
    assert r.status_code == 201, r.text
    restored = r.json()
    assert restored["kind"] == "restore" and restored["restored_from"] == seed
    assert restored["diff"][0]["fields"] == [{"field": "dose_g", "before": [3, 9], "after": [2, 10]}]
    got = cur.client.get("/v1/herbs/gancao", headers=cur.auth("emr")).json()
    assert got["safety"]["dose_g"] == {"min": 2.0, "max": 10.0} and got["kb_version"] == restored["version"]
    names = [h["name"] for h in cur.client.get("/v1/curation/releases", headers=cur.auth("curator")).json()["releases"]]
    assert len(names) == 3 and len(set(names)) == 3  # nothing was deleted


def test_self_approval_is_refused(cur: Env) -> None:
    _, etag = entity(cur, "herb", "gancao", "admin")
    cr = propose_dose(cur, etag, [3, 9], role="admin").json()
    r = cur.client.post(f"/v1/curation/change-requests/{cr['id']}/review", json={"decision": "approve"},
                        headers=cur.auth("admin"))  # fmt: skip
    assert r.status_code == 403 and "other than its author" in r.json()["detail"]
    assert (
        cur.client.get(f"/v1/curation/change-requests/{cr['id']}", headers=cur.auth("reviewer")).json()["status"]
        == "open"
    )


def test_stale_edit_gets_412_and_stores_nothing(cur: Env) -> None:
    _, etag = entity(cur, "herb", "gancao")
    first = propose_dose(cur, etag, [3, 9]).json()
    cur.client.post(
        f"/v1/curation/change-requests/{first['id']}/review", json={"decision": "approve"}, headers=cur.auth("reviewer")
    )
    assert cur.client.post("/v1/curation/releases", headers=cur.auth("reviewer")).status_code == 201
    n = len(cur.client.get("/v1/curation/change-requests", headers=cur.auth("curator")).json()["change_requests"])

    r = propose_dose(cur, etag, [1, 5])  # based on the version before the release
    assert r.status_code == 412, r.text
    body = r.json()
    _, now = entity(cur, "herb", "gancao")
    assert body["current_etag"] == now.strip('"') and r.headers["etag"] == now
    assert (
        len(cur.client.get("/v1/curation/change-requests", headers=cur.auth("curator")).json()["change_requests"]) == n
    )

    assert cur.client.put("/v1/curation/entities/herb/gancao", json={"title": "t", "reason": "r", "source": SOURCE,
                          "data": {"dose_g": [1, 5]}}, headers=cur.auth("curator")).status_code == 428  # fmt: skip
    assert propose_dose(cur, now, [1, 5]).status_code == 201


def test_two_edits_of_one_entity_the_second_released_conflicts(cur: Env) -> None:
    _, etag = entity(cur, "herb", "gancao")
    a = propose_dose(cur, etag, [3, 9]).json()
    b = propose_dose(cur, etag, [4, 8]).json()
    for cr in (a, b):
        r = cur.client.post(
            f"/v1/curation/change-requests/{cr['id']}/review",
            json={"decision": "approve"},
            headers=cur.auth("reviewer"),
        )
        assert r.status_code == 200, r.text
    rel = cur.client.post("/v1/curation/releases", headers=cur.auth("reviewer")).json()
    assert rel["change_requests"] == [a["id"]]
    assert any(line.startswith(f"#{b['id']} not released (conflict)") for line in rel["changelog"])
    lost = cur.client.get(f"/v1/curation/change-requests/{b['id']}", headers=cur.auth("curator")).json()
    assert lost["status"] == "conflict" and lost["edits"][0]["data"] == {"dose_g": [4, 8]}  # its edit is kept


def test_change_request_revision_if_match(cur: Env) -> None:
    _, etag = entity(cur, "herb", "gancao")
    cr = propose_dose(cur, etag, [3, 9]).json()
    body = {"title": "甘草用量（改）", "reason": "r", "source": SOURCE,
            "edits": [{"op": "update", "kind": "herb", "id": "gancao", "base_etag": etag.strip('"'), "data": {"dose_g": [3, 8]}}]}  # fmt: skip
    url = f"/v1/curation/change-requests/{cr['id']}"
    r = cur.client.put(url, json=body, headers={**cur.auth("curator"), "If-Match": '"1"'})
    assert r.status_code == 200 and r.json()["revision"] == 2 and r.headers["etag"] == '"2"'
    r = cur.client.put(url, json=body, headers={**cur.auth("curator"), "If-Match": '"1"'})
    assert r.status_code == 412 and r.json()["current_revision"] == 2
    r = cur.client.put(url, json=body, headers={**cur.auth("admin"), "If-Match": '"2"'})
    assert r.status_code == 200  # an admin may fix someone's change request
    other = cur.client.put(url, json=body, headers={**cur.auth("reviewer"), "If-Match": '"3"'})
    assert other.status_code == 403  # a reviewer is not a curator


def test_invalid_change_request_is_stored_but_cannot_be_approved(cur: Env) -> None:
    _, gz = entity(cur, "formula", "guizhi-tang")
    _, gc = entity(cur, "herb", "gancao")
    body = {"title": "错误示例", "reason": "r", "source": SOURCE, "edits": [
        {"op": "update", "kind": "herb", "id": "gancao", "base_etag": gc.strip('"'), "data": {"dose_g": [9, 3]}},
    ]}  # fmt: skip
    cr = cur.client.post("/v1/curation/change-requests", json=body, headers=cur.auth("curator")).json()
    assert not cr["validation"]["ok"] and any("min > max" in p for p in cr["validation"]["problems"])
    r = cur.client.post(
        f"/v1/curation/change-requests/{cr['id']}/review", json={"decision": "approve"}, headers=cur.auth("reviewer")
    )
    assert r.status_code == 409 and any("min > max" in p for p in r.json()["problems"])

    body["edits"] = [{"op": "add_relation", "kind": "formula", "id": "guizhi-tang", "base_etag": gz.strip('"'),
                      "relation": "composition", "value": {"herb": "不存在之药", "dose_g": 3}}]  # fmt: skip
    cr = cur.client.post("/v1/curation/change-requests", json=body, headers=cur.auth("curator")).json()
    assert any("不存在之药" in p and "does not resolve" in p for p in cr["validation"]["problems"]), cr["validation"]

    body["edits"] = [{"op": "deprecate", "kind": "formula", "id": "guizhi-tang", "base_etag": gz.strip('"'),
                      "data": {"replaced_by": "no-such-formula"}}]  # fmt: skip
    cr = cur.client.post("/v1/curation/change-requests", json=body, headers=cur.auth("curator")).json()
    assert not cr["validation"]["ok"] and "does not exist" in cr["validation"]["problems"][0]


def test_malformed_change_requests_are_refused_with_every_problem(cur: Env) -> None:
    r = cur.client.post(
        "/v1/curation/change-requests", json={"title": "", "edits": [{"op": "explode"}]}, headers=cur.auth("curator")
    )
    assert r.status_code == 422
    text = " ".join(r.json()["problems"])
    assert "title" in text and "reason" in text and "source" in text and "op" in text
    r = cur.client.post("/v1/curation/change-requests", json={"title": "t", "reason": "r", "source": SOURCE, "edits": [
        {"op": "update", "kind": "herb", "id": "gancao", "data": {"dosage": 3}}]}, headers=cur.auth("curator"))  # fmt: skip
    assert r.status_code == 422
    assert any("base_etag" in p for p in r.json()["problems"]) and any("dosage" in p for p in r.json()["problems"])


def test_create_and_deprecate_with_replacement(cur: Env) -> None:
    new = {"name": "测试新药", "pinyin": "ceshixinyao", "category": "补虚药", "dose_g": [3, 9],
           "source": {"ref": "chp2020", "loc": "测试"}}  # fmt: skip
    r = cur.client.put("/v1/curation/entities/herb/ceshixinyao", json={"title": "新增", "reason": "r", "source": SOURCE, "data": new},
                       headers={**cur.auth("curator"), "If-None-Match": "*"})  # fmt: skip
    assert r.status_code == 201 and r.json()["validation"]["ok"], r.text
    cr1 = r.json()
    _, gz = entity(cur, "formula", "guizhi-tang")
    deprecate = {"title": "停用", "reason": "r", "source": SOURCE, "edits": [
        {"op": "deprecate", "kind": "formula", "id": "guizhi-tang", "base_etag": gz.strip('"'),
         "data": {"replaced_by": "mahuang-tang", "reason": "测试"}}]}  # fmt: skip
    cr2 = cur.client.post("/v1/curation/change-requests", json=deprecate, headers=cur.auth("curator")).json()
    assert cr2["validation"]["ok"], cr2["validation"]
    for cr in (cr1, cr2):
        cur.client.post(
            f"/v1/curation/change-requests/{cr['id']}/review",
            json={"decision": "approve"},
            headers=cur.auth("reviewer"),
        )
    rel = cur.client.post("/v1/curation/releases", headers=cur.auth("reviewer")).json()
    assert sorted(rel["change_requests"]) == sorted([cr1["id"], cr2["id"]])
    assert {(d["id"], d["change"]) for d in rel["diff"]} == {("ceshixinyao", "created"), ("guizhi-tang", "deprecated")}
    f = cur.client.get("/v1/formulas/guizhi-tang", headers=cur.auth("emr")).json()
    assert f["deprecated"] and f["replaced_by"] == "mahuang-tang"  # still there, marked
    assert cur.client.get("/v1/herbs/测试新药", headers=cur.auth("emr")).json()["id"] == "ceshixinyao"


def test_release_with_nothing_approved_is_409(cur: Env) -> None:
    r = cur.client.post("/v1/curation/releases", headers=cur.auth("reviewer"))
    assert r.status_code == 409 and "nothing to release" in r.json()["detail"]


def test_roles(cur: Env) -> None:
    assert cur.client.get("/v1/curation/entities?q=甘草", headers=cur.auth("emr")).status_code == 403
    assert cur.client.post("/v1/curation/releases", headers=cur.auth("curator")).status_code == 403
    assert cur.client.post("/v1/curation/change-requests", json={}, headers=cur.auth("reviewer")).status_code == 403
    who = cur.client.get("/v1/curation/whoami", headers=cur.auth("reviewer")).json()
    assert who == {"client": "client-reviewer", "roles": ["reviewer"]}


def test_search_neighbourhood_schema_and_export(cur: Env) -> None:
    hits = cur.client.get("/v1/curation/entities?q=甘草", headers=cur.auth("curator")).json()["results"]
    assert hits[0] == {"kind": "herb", "id": "gancao", "name": "甘草", "deprecated": False}
    nb = cur.client.get("/v1/curation/entities/formula/guizhi-tang/neighbourhood", headers=cur.auth("curator")).json()
    herbs = {n["name"] for n in nb["nodes"] if n["kind"] == "herb"}
    assert {"桂枝", "甘草"} <= herbs or {"桂枝"} <= herbs
    assert any(e["rel"] == "contains" and e["label"].startswith("含") for e in nb["edges"])
    sch = cur.client.get("/v1/curation/schema", headers=cur.auth("curator")).json()["kinds"]
    fields = {f["name"]: f for f in sch["herb"]["fields"]}
    assert fields["dose_g"]["type"] == "range" and fields["toxicity"]["options"] == ["大毒", "有毒", "小毒"]
    assert {f["name"]: f for f in sch["formula"]["fields"]}["composition"]["type"] == "ingredients"
    assert "forms" not in fields

    _, etag = entity(cur, "herb", "gancao")
    cr = propose_dose(cur, etag, [3, 9]).json()
    cur.client.post(
        f"/v1/curation/change-requests/{cr['id']}/review", json={"decision": "approve"}, headers=cur.auth("reviewer")
    )
    rel = cur.client.post("/v1/curation/releases", headers=cur.auth("reviewer")).json()
    ttl = cur.client.get(f"/v1/curation/releases/{rel['name']}/export?format=ttl", headers=cur.auth("curator"))
    assert ttl.status_code == 200 and ttl.headers["content-type"].startswith("text/turtle")
    from rdflib import Graph, URIRef
    from rdflib.namespace import PROV

    g = Graph().parse(data=ttl.text, format="turtle")
    change = URIRef(f"https://tcm-cds.org/kb/change/{cr['id']}")
    assert (URIRef("https://tcm-cds.org/kb/herb/gancao"), PROV.wasInfluencedBy, change) in g
    assert (change, PROV.wasAssociatedWith, URIRef("https://tcm-cds.org/kb/agent/client-curator")) in g
    assert (change, PROV.wasAssociatedWith, URIRef("https://tcm-cds.org/kb/agent/client-reviewer")) in g


def test_the_page_is_served(cur: Env) -> None:
    r = cur.client.get("/curate")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert cur.client.get("/curate/static/../app.py").status_code == 404


def test_another_process_picks_up_the_release(make_env: Any) -> None:
    a = make_env()
    b = make_env(database_url=a.settings.database_url, kb_poll_s=0)  # a second server on the same database
    _, etag = entity(a, "herb", "gancao")
    cr = propose_dose(a, etag, [3, 9]).json()
    a.client.post(
        f"/v1/curation/change-requests/{cr['id']}/review", json={"decision": "approve"}, headers=a.auth("reviewer")
    )
    rel = a.client.post("/v1/curation/releases", headers=a.auth("reviewer")).json()
    assert b.client.get("/v1/version", headers=b.auth("emr")).json()["kb_version"] != rel["version"]
    assert b.app.state.tcm.refresh() is True and b.app.state.tcm.refresh() is False
    assert b.client.get("/v1/version", headers=b.auth("emr")).json()["kb_version"] == rel["version"]
    assert b.client.get("/v1/herbs/gancao", headers=b.auth("emr")).json()["safety"]["dose_g"] == {
        "min": 3.0,
        "max": 9.0,
    }


def test_a_change_request_that_changes_nothing_is_not_valid(cur: Env) -> None:
    herb, etag = entity(cur, "herb", "gancao")
    cr = propose_dose(cur, etag, herb["data"]["dose_g"]).json()
    assert cr["diff"] == [] and cr["validation"]["problems"] == [
        "the change request changes nothing in the current release"
    ]


def test_entity_names_its_parent_and_the_schema_labels_codes(cur: Env) -> None:
    form, _ = entity(cur, "form", "zhigancao")
    assert form["parent"] == "gancao" and form["parent_name"] == "甘草"
    fields = {
        f["name"]: f
        for f in cur.client.get("/v1/curation/schema", headers=cur.auth("curator")).json()["kinds"]["herb"]["fields"]
    }
    assert fields["verification"]["option_labels"]["unverified"] == "未核实"
    assert list(fields)[:2] == ["id", "name"] and list(fields)[-1] == "deprecation_reason"
    # the ICD-11 code field offers its half of chapter 26: disorders for a disease, patterns for a syndrome
    kinds = cur.client.get("/v1/curation/schema", headers=cur.auth("curator")).json()["kinds"]
    offered = {
        k: dict(next(f for f in kinds[k]["fields"] if f["name"] == "codes")["icd11_options"])
        for k in ("disease", "syndrome")
    }
    assert offered["disease"]["SA60"] == "Common cold disorder (TM1)" and "SF8C" not in offered["disease"]
    assert "SF8C" in offered["syndrome"] and "SA60" not in offered["syndrome"]


def test_a_changed_builtin_knowledge_base_is_reported(cur: Env, kb_copy: Any) -> None:
    from kb.curation import Curation

    c = cur.app.state.tcm.curation
    c.current()  # seeded from the fixture knowledge base
    assert c.seed_differs() is None
    (kb_copy / "release.yaml").write_text("name: '2099.01.01'\n", encoding="utf-8")
    other = Curation(c.engine, seed_dir=kb_copy)  # the engine upgraded, with new built-in content
    assert "differs from the one curation started from" in (other.seed_differs() or "")


def test_a_curator_records_a_substitution_and_withdraws_it(cur: Env) -> None:
    new = {"original": "人参", "substitute": "党参", "scope": "测试", "source": {"ref": "zhongyaoxue", "loc": "党参"}}
    bad = {**new, "except_formulas": ["麻黄汤"]}  # 麻黄汤 has no 人参: refused, naming the field
    r = cur.client.put("/v1/curation/entities/substitution/dangshen-for-renshen",
                       json={"title": "代用", "reason": "r", "source": SOURCE, "data": bad},
                       headers={**cur.auth("curator"), "If-None-Match": "*"})  # fmt: skip
    assert r.status_code == 201, r.text
    assert any("except_formulas[0]" in p and "does not contain 人参" in p for p in r.json()["validation"]["problems"])
    r = cur.client.put("/v1/curation/entities/substitution/dangshen-for-renshen2",
                       json={"title": "代用", "reason": "r", "source": SOURCE, "data": new},
                       headers={**cur.auth("curator"), "If-None-Match": "*"})  # fmt: skip
    assert r.status_code == 201 and r.json()["validation"]["ok"], r.text
    cur.client.post(f"/v1/curation/change-requests/{r.json()['id']}/review", json={"decision": "approve"},
                    headers=cur.auth("reviewer"))  # fmt: skip
    rel = cur.client.post("/v1/curation/releases", headers=cur.auth("reviewer")).json()
    assert {(d["id"], d["change"]) for d in rel["diff"]} == {("dangshen-for-renshen2", "created")}
    got, etag = entity(cur, "substitution", "dangshen-for-renshen2")
    assert got["data"]["substitute"] == "党参"
    withdraw = {"title": "撤回", "reason": "r", "source": SOURCE, "edits": [
        {"op": "deprecate", "kind": "substitution", "id": "dangshen-for-renshen2", "base_etag": etag.strip('"'),
         "data": {"reason": "测试"}}]}  # fmt: skip
    r2 = cur.client.post("/v1/curation/change-requests", json=withdraw, headers=cur.auth("curator")).json()
    assert r2["validation"]["ok"], r2["validation"]

    def ginseng_substitutes() -> list[dict[str, str]]:
        f = cur.client.get("/v1/formulas/sijunzi-tang", headers=cur.auth("emr")).json()
        return next(c["substitutes"] for c in f["composition"] if c["herb"] == "人参")  # type: ignore[no-any-return]

    assert ginseng_substitutes() == [{"herb": "党参", "substitution": "dangshen-for-renshen2"}]
    cur.client.post(f"/v1/curation/change-requests/{r2['id']}/review", json={"decision": "approve"},
                    headers=cur.auth("reviewer"))  # fmt: skip
    cur.client.post("/v1/curation/releases", headers=cur.auth("reviewer"))
    assert ginseng_substitutes() == []  # withdrawn: kept in the content, no longer applied
