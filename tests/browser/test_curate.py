"""The curator's web page in a real browser: a curator edits 甘草's dose range and submits it with a title,
reason and source; a reviewer approves and releases it; the REST API then answers with the new range and the
new knowledge-base version; restoring the earlier release brings the old value back. A curator cannot approve
their own change request, and an edit of a version someone else changed meanwhile (412) keeps the draft.

Every page is saved as a screenshot under artifacts/screenshots/.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import Server

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

SOURCE = {"work": "中华人民共和国药典", "edition": "2020年版 一部", "locator": "p. 88"}


# ---- helpers --------------------------------------------------------------------------------------------
def wait_view(page: Any, route: str) -> None:
    """Wait until the page for ``route`` (e.g. ``/entity/herb/gancao``, or a prefix such as ``/cr/``) is drawn."""
    page.wait_for_selector(f'.page[data-ready="1"][data-route^="{route}"]')
    problems = page.locator('.page[data-ready="1"] > .error-box[data-testid="error"]')
    assert problems.count() == 0, problems.first.inner_text()


def go(page: Any, server: Server, route: str) -> None:
    page.goto(f"{server.base}/curate#{route}")
    wait_view(page, route.split("?")[0])


def shot(page: Any, directory: Path, name: str) -> None:
    page.screenshot(path=str(directory / f"{name}.png"), full_page=True)


def login(page: Any, server: Server, who: str) -> None:
    page.goto(f"{server.base}/curate#/login")
    wait_view(page, "/login")
    page.fill("#login-token", server.tokens[who])
    page.click("#btn-login")
    page.wait_for_selector(f'[data-testid="whoami-client"]:text-is("{server.names[who]}")')
    wait_view(page, "/search")


def logout(page: Any) -> None:
    page.click('[data-testid="logout"]')
    wait_view(page, "/login")
    assert page.evaluate("sessionStorage.length") == 0


def fill_change_request(page: Any, title: str, reason: str) -> None:
    page.fill("#cr-title", title)
    page.fill("#cr-reason", reason)
    page.fill("#cr-work", SOURCE["work"])
    page.fill("#cr-edition", SOURCE["edition"])
    page.fill("#cr-locator", SOURCE["locator"])


def cr_id_from_url(page: Any) -> int:
    m = re.search(r"#/cr/(\d+)$", page.url)
    assert m, page.url
    return int(m.group(1))


def current_release(server: Server) -> dict[str, Any]:
    r = server.call("GET", "/v1/curation/releases", "reviewer")
    assert r.status_code == 200, r.text
    return next(x for x in r.json()["releases"] if x["current"])


def herb_via_rest(server: Server, ident: str) -> dict[str, Any]:
    r = server.call("GET", f"/v1/herbs/{ident}", "emr")
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def propose_via_rest(server: Server, who: str, kind: str, ident: str, data: dict[str, Any], title: str) -> int:
    got = server.call("GET", f"/v1/curation/entities/{kind}/{ident}", who)
    assert got.status_code == 200, got.text
    r = server.call(
        "PUT",
        f"/v1/curation/entities/{kind}/{ident}",
        who,
        json={"title": title, "reason": "测试", "source": SOURCE, "data": data},
        headers={"If-Match": got.headers["etag"]},
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


# ---- the whole workflow ---------------------------------------------------------------------------------
def test_curator_edits_reviewer_approves_and_releases(server: Server, page: Any, screenshot_dir: Path) -> None:
    before = herb_via_rest(server, "gancao")
    assert before["safety"]["dose_g"] == {"min": 2.0, "max": 10.0}

    # log in as the curator
    page.goto(f"{server.base}/curate")
    wait_view(page, "/login")
    shot(page, screenshot_dir, "01-login")
    login(page, server, "curator")
    assert page.locator('#whoami .role[data-role="curator"]').count() == 1

    # search, open 甘草 with its graph neighbourhood
    page.fill("#search-q", "甘草")
    page.click('[data-testid="search-submit"]')
    wait_view(page, "/search")
    hit = page.locator('[data-testid="search-result"][data-kind="herb"][data-id="gancao"]')
    hit.wait_for()
    shot(page, screenshot_dir, "02-search")
    hit.locator("a.name").click()
    wait_view(page, "/entity/herb/gancao")
    assert page.inner_text('[data-testid="entity-name"]') == "甘草"
    assert page.inner_text('[data-testid="value-dose_g"]') == "2–10 克"
    assert page.locator('[data-testid="graph-node"]').count() > 1
    assert page.locator('[data-testid="graph-node"][data-key="form:zhigancao"]').count() == 1
    assert page.locator('[data-testid="children"] a:text-is("炙甘草")').count() == 1
    shot(page, screenshot_dir, "03-entity-graph")

    # the graph's nodes are links: 炙甘草 opens, and back
    page.click('[data-testid="graph-node"][data-key="form:zhigancao"]')
    wait_view(page, "/entity/form/zhigancao")
    assert page.inner_text('[data-testid="entity-name"]') == "炙甘草"
    page.go_back()
    wait_view(page, "/entity/herb/gancao")

    # edit the dose range, submit with title, reason and source
    page.click('[data-testid="btn-edit"]')
    wait_view(page, "/edit/herb/gancao")
    assert page.input_value('[data-testid="field-dose_g-min"]') == "2"
    assert page.input_value('[data-testid="field-dose_g-max"]') == "10"
    page.fill('[data-testid="field-dose_g-min"]', "3")
    page.fill('[data-testid="field-dose_g-max"]', "9")
    page.locator('#f-dose_g-label [data-testid="changed-mark"]').wait_for()
    fill_change_request(page, "甘草用量按药典2020修订", "药典2020年版一部规定甘草用量为3～9克。")
    shot(page, screenshot_dir, "04-edit-form")
    page.click('[data-testid="btn-submit"]')
    wait_view(page, "/cr/")
    cr_id = cr_id_from_url(page)
    assert page.get_attribute('[data-testid="cr-status"]', "data-status") == "open"
    assert page.get_attribute('[data-testid="validation"]', "data-ok") == "true"
    row = page.locator('[data-testid="diff-table"] tr[data-field="dose_g"]')
    assert row.locator('[data-testid="diff-before"]').inner_text() == "2–10 克"
    assert row.locator('[data-testid="diff-after"]').inner_text() == "3–9 克"
    # the author has no approve button, and is told why
    assert page.locator('[data-testid="btn-approve"]').count() == 0
    assert page.locator('[data-testid="self-review-note"]').is_visible()
    shot(page, screenshot_dir, "05-change-request-author")

    cr = server.call("GET", f"/v1/curation/change-requests/{cr_id}", "reviewer").json()
    assert cr["author"] == server.names["curator"] and cr["source"] == SOURCE
    assert cr["edits"] == [{"op": "update", "kind": "herb", "id": "gancao", "base_etag": cr["edits"][0]["base_etag"],
                            "data": {"dose_g": [3, 9]}}]  # fmt: skip

    # log in as the reviewer: the queue, the change request with its diff, approve
    logout(page)
    login(page, server, "reviewer")
    page.click('[data-testid="nav-queue"]')
    wait_view(page, "/queue")
    page.locator(f'[data-testid="queue-row"][data-id="{cr_id}"]').wait_for()
    shot(page, screenshot_dir, "06-queue")
    page.click(f'[data-testid="cr-link-{cr_id}"]')
    wait_view(page, f"/cr/{cr_id}")
    assert page.locator('[data-testid="diff-table"] tr[data-field="dose_g"]').count() == 1
    assert page.is_enabled('[data-testid="btn-approve"]')
    shot(page, screenshot_dir, "07-change-request-diff")
    page.fill("#review-comment", "已核对药典原文，同意。")
    page.click('[data-testid="btn-approve"]')
    page.wait_for_selector('[data-testid="cr-status"][data-status="approved"]')
    wait_view(page, f"/cr/{cr_id}")
    assert "已核对药典原文" in page.inner_text('[data-testid="cr-review"]')

    # release it
    page.click('[data-testid="nav-releases"]')
    wait_view(page, "/releases")
    assert page.locator(f'[data-testid="approved-list"] a[href="#/cr/{cr_id}"]').count() == 1
    page.fill("#release-note", "甘草用量修订")
    page.click('[data-testid="btn-release"]')
    page.wait_for_selector('[data-testid="flash-ok"]:has-text("已发布新版本")')
    wait_view(page, "/releases")
    current = page.locator('[data-testid="release-row"][data-current="true"]')
    assert current.count() == 1
    current.locator('[data-testid="btn-release-detail"]').click()
    detail = page.locator('[data-testid="release-detail"]')
    detail.wait_for()
    assert f"#{cr_id} 甘草用量按药典2020修订" in detail.locator('[data-testid="changelog"]').inner_text()
    assert (
        detail.locator('[data-testid="release-diff"] tr[data-field="dose_g"] [data-testid="diff-after"]').inner_text()
        == "3–9 克"
    )
    shot(page, screenshot_dir, "08-releases")

    # the engine answers with the new value and the new version at once
    rel = current_release(server)
    assert rel["change_requests"] == [cr_id]
    after = herb_via_rest(server, "gancao")
    assert after["safety"]["dose_g"] == {"min": 3.0, "max": 9.0}
    assert after["kb_version"] == rel["version"] != before["kb_version"]
    assert server.call("GET", f"/v1/curation/change-requests/{cr_id}", "curator").json()["status"] == "released"

    # export links for the release as RDF (not followed here: exporting the whole graph takes a while)
    name = rel["name"]
    for fmt in ("ttl", "jsonld"):
        href = current.locator(f'[data-testid="export-{fmt}"]').get_attribute("href")
        assert href == f"/v1/curation/releases/{name}/export?format={fmt}"

    # restore the release before it (with a confirmation): the old value is back, under a new version
    parent = rel["parent"]
    row = page.locator(f'[data-testid="release-row"][data-name="{parent}"]')
    row.locator('[data-testid="btn-restore"]').click()
    page.locator('[data-testid="restore-confirm"]').wait_for()
    shot(page, screenshot_dir, "09-restore-confirm")
    page.click('[data-testid="btn-restore-confirm"]')
    page.wait_for_selector('[data-testid="flash-ok"]:has-text("已恢复")')
    wait_view(page, "/releases")
    restored = current_release(server)
    assert restored["kind"] == "restore" and restored["restored_from"] == parent
    again = herb_via_rest(server, "gancao")
    assert again["safety"]["dose_g"] == {"min": 2.0, "max": 10.0}
    assert again["kb_version"] == restored["version"] not in (rel["version"], before["kb_version"])


# ---- nobody approves their own change request ---------------------------------------------------------
def test_self_approval_is_refused_in_the_page(server: Server, page: Any, screenshot_dir: Path) -> None:
    cr_id = propose_via_rest(server, "both", "herb", "dangshen", {"dose_g": [6, 15]}, "党参用量")

    # carol may review, but not her own change request: the buttons are off and the page says why
    login(page, server, "both")
    go(page, server, f"/cr/{cr_id}")
    assert page.locator('[data-testid="self-review-note"]').is_visible()
    assert page.is_disabled('[data-testid="btn-approve"]')
    assert page.is_disabled('[data-testid="btn-reject"]')
    shot(page, screenshot_dir, "10-self-approval-refused")

    # and were the button forced on, the server's refusal (403) is shown, nothing changes
    page.evaluate("document.querySelector('[data-testid=btn-approve]').disabled = false")
    page.click('[data-testid="btn-approve"]')
    err = page.locator('[data-testid="action-error"]')
    err.wait_for()
    assert err.get_attribute("data-status") == "403"
    assert server.call("GET", f"/v1/curation/change-requests/{cr_id}", "reviewer").json()["status"] == "open"
    r = server.call("POST", f"/v1/curation/change-requests/{cr_id}/review", "both", json={"decision": "approve"})
    assert r.status_code == 403, r.text

    # a curator without the reviewer role sees no review buttons at all
    logout(page)
    login(page, server, "curator")
    go(page, server, f"/cr/{cr_id}")
    assert page.locator('[data-testid="btn-approve"]').count() == 0

    # another reviewer may: the author withdraws it instead, so the later tests start clean
    r = server.call("POST", f"/v1/curation/change-requests/{cr_id}/withdraw", "both")
    assert r.status_code == 200 and r.json()["status"] == "withdrawn", r.text


# ---- 412: someone else changed the entity meanwhile; the draft stays --------------------------------------
def test_conflicting_edit_keeps_the_draft(server: Server, page: Any, screenshot_dir: Path) -> None:
    login(page, server, "curator")
    go(page, server, "/edit/herb/renshen")
    page.fill('[data-testid="field-dose_g-min"]', "2")
    page.fill('[data-testid="field-dose_g-max"]', "8")
    fill_change_request(page, "人参用量修订", "按药典修订人参用量。")

    # leaving the page with unsaved input asks first; staying keeps it
    asked: list[str] = []
    page.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))
    page.click('[data-testid="nav-queue"]')
    page.wait_for_function("location.hash === '#/edit/herb/renshen'")
    assert asked and "未提交的修改" in asked[0]
    assert page.input_value('[data-testid="field-dose_g-max"]') == "8"

    # meanwhile another curator's change to the same herb is approved and released
    other = propose_via_rest(
        server, "both", "herb", "renshen", {"latin": "Ginseng Radix et Rhizoma (Panax ginseng)"}, "人参拉丁名"
    )
    r = server.call("POST", f"/v1/curation/change-requests/{other}/review", "reviewer", json={"decision": "approve"})
    assert r.status_code == 200, r.text
    r = server.call("POST", "/v1/curation/releases", "reviewer", json={"note": "人参拉丁名"})
    assert r.status_code == 201, r.text

    # submitting the draft based on the old version: 412, shown as such, and nothing typed is lost
    page.click('[data-testid="btn-submit"]')
    page.locator('[data-testid="conflict"]').wait_for()
    assert page.url.endswith("#/edit/herb/renshen")
    assert page.input_value('[data-testid="field-dose_g-min"]') == "2"
    assert page.input_value('[data-testid="field-dose_g-max"]') == "8"
    assert page.input_value("#cr-title") == "人参用量修订"

    # the current version beside the draft: their change and mine
    page.click('[data-testid="btn-load-current"]')
    table = page.locator('[data-testid="conflict-table"]')
    table.wait_for()
    assert "Panax ginseng" in table.locator('tr[data-field="latin"] [data-testid="current-value"]').inner_text()
    assert table.locator('tr[data-field="dose_g"] [data-testid="draft-value"]').inner_text().startswith("2–8 克")
    shot(page, screenshot_dir, "11-conflict-412")

    # keep my change on top of the current version and submit again: only my field is edited
    page.click('[data-testid="btn-rebase"]')
    page.locator('[data-testid="rebased"]').wait_for()
    assert page.input_value('[data-testid="field-dose_g-min"]') == "2"
    assert "Panax ginseng" in page.input_value('[data-testid="field-latin"]')
    page.click('[data-testid="btn-submit"]')
    wait_view(page, "/cr/")
    cr = server.call("GET", f"/v1/curation/change-requests/{cr_id_from_url(page)}", "reviewer").json()
    assert cr["validation"]["ok"], cr["validation"]
    assert [e["data"] for e in cr["edits"]] == [{"dose_g": [2, 8]}]


# ---- the create and deprecate forms; withdrawing ------------------------------------------------------------
def test_create_and_deprecate_forms(server: Server, page: Any, screenshot_dir: Path) -> None:
    login(page, server, "curator")

    # 新建: a symptom, from the form generated from the schema
    page.click('[data-testid="nav-new"]')
    wait_view(page, "/new")
    page.click('[data-testid="new-kind-symptom"]')
    wait_view(page, "/new/symptom")
    page.fill("#new-id", "zuogen-yintong")
    page.fill('[data-testid="field-name"]', "左足跟隐痛")
    page.fill('[data-testid="field-synonyms"]', "左脚跟隐痛\n左足跟隐隐作痛")
    page.select_option('[data-testid="field-category"]', "肢体")
    page.fill('[data-testid="field-source-ref"]', "zhongyaoxue")
    page.fill('[data-testid="field-source-loc"]', "第三章")
    fill_change_request(page, "新增症状：左足跟隐痛", "门诊记录常见，需与足跟痛区分。")
    shot(page, screenshot_dir, "12-new-form")
    page.click('[data-testid="btn-submit"]')
    wait_view(page, "/cr/")
    created = cr_id_from_url(page)
    cr = server.call("GET", f"/v1/curation/change-requests/{created}", "reviewer").json()
    assert cr["edits"] == [{"op": "create", "kind": "symptom", "id": "zuogen-yintong", "data": {
        "name": "左足跟隐痛", "synonyms": ["左脚跟隐痛", "左足跟隐隐作痛"], "category": "肢体",
        "source": {"ref": "zhongyaoxue", "loc": "第三章"}}}]  # fmt: skip
    assert cr["validation"]["ok"], cr["validation"]
    assert page.get_attribute('[data-testid="validation"]', "data-ok") == "true"

    # 撤回: the author withdraws it, after a confirmation
    page.click('[data-testid="btn-withdraw"]')
    page.click('[data-testid="btn-withdraw-confirm"]')
    page.wait_for_selector('[data-testid="cr-status"][data-status="withdrawn"]')

    # 停用: with a replacement and a reason
    go(page, server, "/entity/herb/renshenye")
    page.click('[data-testid="btn-deprecate"]')
    wait_view(page, "/deprecate/herb/renshenye")
    page.fill("#dep-replaced-by", "renshen")
    page.fill("#dep-reason", "测试停用表单。")
    fill_change_request(page, "停用人参叶（测试）", "测试停用表单。")
    shot(page, screenshot_dir, "13-deprecate-form")
    page.click('[data-testid="btn-submit"]')
    wait_view(page, "/cr/")
    dep = cr_id_from_url(page)
    cr = server.call("GET", f"/v1/curation/change-requests/{dep}", "reviewer").json()
    (edit,) = cr["edits"]
    assert edit["op"] == "deprecate" and edit["id"] == "renshenye" and edit["base_etag"]
    assert edit["data"] == {"replaced_by": "renshen", "reason": "测试停用表单。"}
    assert cr["validation"]["ok"], cr["validation"]
    assert page.get_attribute('[data-testid="validation"]', "data-ok") == "true"

    # once released, the entity page marks it deprecated and links its replacement
    r = server.call("POST", f"/v1/curation/change-requests/{dep}/review", "reviewer", json={"decision": "approve"})
    assert r.status_code == 200, r.text
    r = server.call("POST", "/v1/curation/releases", "reviewer", json={"note": "停用人参叶"})
    assert r.status_code == 201, r.text
    go(page, server, "/entity/herb/renshenye")
    assert page.locator('[data-testid="deprecated"]').is_visible()
    page.wait_for_selector('[data-testid="replaced-by"]:has-text("人参（renshen）")')
    assert page.locator('[data-testid="btn-deprecate"]').count() == 0
    shot(page, screenshot_dir, "14-deprecated-entity")
    page.click('[data-testid="replaced-by"]')
    wait_view(page, "/entity/herb/renshen")


# ---- standard codes: the ICD-11 field offers its half of chapter 26 ------------------------------------------
def test_icd11_field_offers_the_right_half_of_chapter_26(server: Server, page: Any, screenshot_dir: Path) -> None:
    login(page, server, "curator")
    go(page, server, "/edit/syndrome/kesou.fenghan-xifei")
    field = page.locator('[data-testid="field-codes-icd11"]')
    assert field.input_value() == "SF8C"  # the code the entry has
    options = page.eval_on_selector(
        '[data-testid="field-codes-icd11"]', "el => [...el.list.options].map(o => [o.value, o.label])"
    )
    codes = dict(options)
    assert codes["SF8C"] == "Wind-cold fettering the lung pattern (TM1)"
    assert "SA60" not in codes and all(c >= "SE70" for c in codes)  # a syndrome takes pattern codes only
    go(page, server, "/edit/disease/ganmao")
    assert page.locator('[data-testid="field-codes-icd11"]').input_value() == "SA60"
    codes = dict(
        page.eval_on_selector(
            '[data-testid="field-codes-icd11"]', "el => [...el.list.options].map(o => [o.value, o.label])"
        )
    )
    assert "SA60" in codes and "SF8C" not in codes
    shot(page, screenshot_dir, "15-icd11-codes")
