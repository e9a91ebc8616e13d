"""CDS Hooks 2.0: discovery, the prescription-safety services (order-select, order-sign), the differentiation
service (patient-view), feedback, prefetch rules, FHIR validation, and the JWT rules for CDS clients.

Request shapes follow the specification's examples (hookInstance, fhirServer + fhirAuthorization, context with
userId / patientId / encounterId, prefetch keyed as the discovery document says)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

import kb
from api.fhir_io import findings_request
from tests.api.app_support import *  # noqa: F403
from tests.api.app_support import (
    DIFF,
    ISSUER,
    SELECT,
    SIGN,
    Env,
    audit_rows,
    breastfeeding,
    bundle,
    fixture_kb,
    hook_request,
    med_request,
    observation,
    pregnancy,
    searchset,
)

SPEC_FHIR = {
    "fhirServer": "https://fhir.example.org",
    "fhirAuthorization": {
        "access_token": "some-opaque-fhir-access-token",
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "user/Patient.read user/Observation.read",
        "subject": "cds-service4",
    },
}


def call(env: Env, service: str, body: dict[str, Any], **jwt: Any) -> Any:
    return env.client.post(f"/cds-services/{service}", json=body, headers=env.cds(service, **jwt))


def validate_card(card: dict[str, Any]) -> None:
    """The CDS Hooks 2.0 card rules, and every resource in an action valid FHIR R4."""
    from fhir.resources.R4B import get_fhir_model_class

    assert isinstance(card["summary"], str) and 0 < len(card["summary"]) < 140
    assert card["indicator"] in ("info", "warning", "critical")
    assert card["source"]["label"]
    uuid.UUID(card["uuid"])
    if "topic" in card["source"]:
        assert {"system", "code"} <= set(card["source"]["topic"])
    if card.get("suggestions"):
        assert card["selectionBehavior"] in ("at-most-one", "any")
        for s in card["suggestions"]:
            assert s["label"] and uuid.UUID(s["uuid"])
            for a in s["actions"]:
                assert a["type"] in ("create", "update", "delete") and a["description"]
                assert set(a) <= {"type", "description", "resource", "resourceId", "extension"}
                if a["type"] == "delete":
                    assert a["resourceId"].startswith("MedicationRequest/")
                else:
                    get_fhir_model_class(a["resource"]["resourceType"]).model_validate(a["resource"])
    for reason in card.get("overrideReasons", []):
        assert reason["code"] and reason["system"] and reason["display"]
    for value in card.values():  # no null or empty values (spec: "JSON elements SHALL NOT be null or empty")
        assert value not in (None, "", [], {})


# ---- discovery -----------------------------------------------------------------------------------------
def test_discovery(env: Env) -> None:
    r = env.client.get("/cds-services", headers=env.cds(None))
    assert r.status_code == 200, r.text
    services = {s["id"]: s for s in r.json()["services"]}
    assert {SIGN, SELECT, DIFF} <= set(services)
    assert services[SIGN]["hook"] == "order-sign" and services[SELECT]["hook"] == "order-select"
    assert services[DIFF]["hook"] == "patient-view"
    for s in services.values():
        assert s["description"] and s["title"]
        for template in s.get("prefetch", {}).values():
            assert "{{context.patientId}}" in template
    assert services[DIFF]["prefetch"]["observations"].startswith("Observation?patient=")


def test_discovery_needs_a_jwt(env: Env) -> None:
    assert env.client.get("/cds-services").status_code == 401
    r = env.client.get("/cds-services", headers=env.auth("admin"))  # a REST token is not a CDS client JWT
    assert r.status_code == 401 and r.json()["resourceType"] == "OperationOutcome"


# ---- order-sign ----------------------------------------------------------------------------------------
def test_order_sign_spec_shape_with_incompatibility(env: Env) -> None:
    draft = bundle(med_request("mr-1", [("甘草", 6), ("茯苓", 12)]), med_request("mr-2", [("海藻", 9)]))
    body = {
        **hook_request("order-sign", draft, encounterId="89284"),
        **SPEC_FHIR,
        "prefetch": {
            "patient": {
                "resourceType": "Patient",
                "id": "p-1",
                "gender": "female",
                "birthDate": "1990-05-01",
            },
            "pregnancy": None,
        },
    }
    r = call(env, SIGN, body)
    assert r.status_code == 200, r.text
    cards = r.json()["cards"]
    assert cards
    for c in cards:
        validate_card(c)
    inc = next(c for c in cards if c["source"]["topic"]["code"] == "incompatibility")
    assert inc["indicator"] == "critical"
    assert {o["code"] for o in inc["overrideReasons"]} >= {"classical-combination"}
    actions = [a for s in inc["suggestions"] for a in s["actions"]]
    delete = [a for a in actions if a["type"] == "delete"]
    update = [a for a in actions if a["type"] == "update"]
    assert delete and delete[0]["resourceId"] == "MedicationRequest/mr-2"  # 海藻 was its only herb
    assert update and update[0]["resource"]["id"] == "mr-1"  # 甘草 removed from mr-1, 茯苓 left
    herbs = [i["itemCodeableConcept"]["text"] for i in update[0]["resource"]["contained"][0]["ingredient"]]
    assert herbs == ["茯苓"]


def test_order_sign_dose_suggestion_sets_the_dose(env: Env) -> None:
    draft = bundle(
        med_request("mr-9", [("甘草", 60), ("茯苓", 12)], contained=False),
        {
            "resourceType": "Medication",
            "id": "med-mr-9",
            "ingredient": [
                {
                    "itemCodeableConcept": {"text": "甘草"},
                    "strength": {
                        "numerator": {"value": 60, "unit": "g"},
                        "denominator": {"value": 1, "unit": "剂"},
                    },
                },
                {
                    "itemCodeableConcept": {"text": "茯苓"},
                    "strength": {
                        "numerator": {"value": 12, "unit": "g"},
                        "denominator": {"value": 1, "unit": "剂"},
                    },
                },
            ],
        },
    )
    r = call(env, SIGN, hook_request("order-sign", draft))
    assert r.status_code == 200, r.text
    dose = [c for c in r.json()["cards"] if c["source"]["topic"]["code"] == "dose"]
    assert dose
    validate_card(dose[0])
    upd = [a for s in dose[0]["suggestions"] for a in s["actions"] if a["type"] == "update"]
    assert upd
    res = upd[0]["resource"]
    assert res["medicationReference"]["reference"].startswith("#")  # the Bundle's Medication, now contained
    num = res["contained"][0]["ingredient"][0]["strength"]["numerator"]
    assert num["unit"] == "g" and num["value"] <= 10


def test_order_sign_pregnancy_from_prefetch(env: Env) -> None:
    draft = bundle(med_request("mr-1", [("甘遂", 1)]))
    body = hook_request("order-sign", draft, prefetch={"pregnancy": searchset(pregnancy(True))})
    cards = call(env, SIGN, body).json()["cards"]
    preg = [c for c in cards if c["source"]["topic"]["code"] == "pregnancy"]
    assert preg and preg[0]["indicator"] == "critical"
    body = hook_request("order-sign", draft, prefetch={"pregnancy": pregnancy(False)})
    cards = call(env, SIGN, body).json()["cards"]
    assert not [c for c in cards if c["source"]["topic"]["code"] == "pregnancy"]


def test_non_herbal_orders_are_ignored(env: Env) -> None:
    coded = {
        "resourceType": "MedicationRequest",
        "id": "mr-w",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": "Patient/p-1"},
        "medicationCodeableConcept": {
            "coding": [
                {
                    "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                    "code": "1049502",
                    "display": "Acetaminophen 325 MG",
                }
            ]
        },
    }
    sr = {
        "resourceType": "ServiceRequest",
        "id": "sr-1",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": "Patient/p-1"},
        "code": {"text": "CBC"},
    }
    r = call(env, SIGN, hook_request("order-sign", bundle(coded, sr)))
    assert r.status_code == 200 and r.json() == {"cards": []}


def test_card_ids_unique_per_hook_call(env: Env) -> None:
    draft = bundle(med_request("mr-1", [("甘草", 6), ("甘遂", 1)]))
    a = call(env, SIGN, hook_request("order-sign", draft)).json()["cards"]
    b = call(env, SIGN, hook_request("order-sign", draft)).json()["cards"]
    assert {c["uuid"] for c in a}.isdisjoint({c["uuid"] for c in b})


# ---- order-select --------------------------------------------------------------------------------------
def test_order_select_reports_on_the_selected_orders(env: Env) -> None:
    draft = bundle(
        med_request("mr-1", [("甘草", 6)]),
        med_request("mr-2", [("甘遂", 1)]),
        med_request("mr-3", [("茯苓", 60)]),
    )
    body = hook_request("order-select", draft, selections=["MedicationRequest/mr-2"])
    r = call(env, SELECT, body)
    assert r.status_code == 200, r.text
    cards = r.json()["cards"]
    topics = {c["source"]["topic"]["display"] for c in cards}
    assert "shibafan.gancao" in topics  # mr-2 against mr-1: across orders
    assert not any(c["source"]["topic"]["code"] == "dose" for c in cards)  # mr-3 is not selected
    for c in cards:
        validate_card(c)
    body = hook_request("order-select", draft)
    r = call(env, SELECT, body)
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["context.selections"]


# ---- patient-view: differentiation ---------------------------------------------------------------------
def _diff_prefetch(**over: Any) -> dict[str, Any]:
    pre: dict[str, Any] = {
        "patient": {"resourceType": "Patient", "id": "p-1", "gender": "male", "birthDate": "1980-01-01"},
        "conditions": searchset(
            {
                "resourceType": "Condition",
                "id": "c-1",
                "subject": {"reference": "Patient/p-1"},
                "clinicalStatus": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                            "code": "active",
                        }
                    ]
                },
                "code": {"text": "感冒"},
            }
        ),
        "observations": searchset(
            observation("症状", "恶寒重，发热轻，无汗"),
            observation("头痛", True),
            observation("口渴", False),
            observation("舌象", "苔薄白"),
            observation("脉象", "脉浮紧"),
            {
                "resourceType": "Observation",
                "id": "hr",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
                "valueQuantity": {"value": 88, "unit": "/min"},
            },
        ),
    }
    pre.update(over)
    return pre


def test_patient_view_differentiation(env: Env) -> None:
    body = {**hook_request("patient-view", encounterId="89284"), **SPEC_FHIR, "prefetch": _diff_prefetch()}
    r = call(env, DIFF, body)
    assert r.status_code == 200, r.text
    cards = r.json()["cards"]
    for c in cards:
        validate_card(c)
    assert "风寒束表证" in cards[0]["summary"] and cards[0]["indicator"] == "info"
    assert "| 风寒束表证 |" in cards[0]["detail"]
    # the differentiation card offers to record its top differentials as provisional diagnoses (valid FHIR Conditions)
    record = cards[0]["suggestions"][0]
    assert "风寒束表证" in record["label"] and cards[0]["selectionBehavior"] == "at-most-one"
    disease_c, syndrome_c = (a["resource"] for a in record["actions"])
    assert disease_c["code"] == {
        "text": "感冒",
        "coding": [
            {"system": "http://id.who.int/icd/release/11/mms", "code": "SA60", "display": "Common cold disorder (TM1)"}
        ],
    }
    assert syndrome_c["code"] == {"text": "感冒·风寒束表证"}  # no pattern code recorded: text, never a guess
    assert {c["verificationStatus"]["coding"][0]["code"] for c in (disease_c, syndrome_c)} == {"provisional"}
    assert disease_c["subject"] == {"reference": "Patient/p-1"}
    formula = [c for c in cards if c["source"]["topic"]["code"] == "formula-suggestion"]
    assert formula and "麻黄汤" in formula[0]["summary"]
    create = formula[0]["suggestions"][0]["actions"][0]
    assert create["type"] == "create" and create["resource"]["subject"]["reference"] == "Patient/p-1"
    assert create["resource"]["intent"] == "proposal" and create["resource"]["status"] == "draft"
    # the order names the diagnosis it treats: the disease with its ICD-11 TM1 code, the syndrome by name
    disease, syndrome = create["resource"]["reasonCode"]
    assert disease["text"] == "感冒" and disease["coding"] == [
        {"system": "http://id.who.int/icd/release/11/mms", "code": "SA60", "display": "Common cold disorder (TM1)"}
    ]
    assert syndrome == {"text": "风寒束表证"}  # no pattern code recorded for it: text only, never a guessed code


def test_formula_card_offers_the_patent_medicine_of_its_formula(env: Env) -> None:
    # 气虚感冒 -> 四君子汤, whose Pharmacopoeia 成药 (四君子丸 in the fixture) is offered as an order of its own
    obs = searchset(observation("症状", "恶寒，乏力"), observation("舌象", "舌淡"))
    body = {**hook_request("patient-view"), **SPEC_FHIR, "prefetch": _diff_prefetch(observations=obs)}
    r = call(env, DIFF, body)
    assert r.status_code == 200, r.text
    cards = r.json()["cards"]
    for c in cards:
        validate_card(c)
    (card,) = [c for c in cards if c["source"]["topic"].get("display") == "四君子汤"]
    assert "成药 / patent medicine: 四君子丸（党参、白术、茯苓、甘草）" in card["detail"]
    herbal, patent = card["suggestions"]
    assert "四君子汤" in herbal["label"] and "四君子丸" in patent["label"]
    order = patent["actions"][0]["resource"]
    assert order["medicationCodeableConcept"] == {"text": "四君子丸"} and order["intent"] == "proposal"
    assert order["subject"] == {"reference": "Patient/p-1"} and order["reasonCode"][0]["text"] == "感冒"


def test_a_patent_medicine_unsuitable_for_the_patient_is_not_offered(make_env: Any, kb_copy: Path) -> None:
    # a 成药 holding 麝香 (forbidden in pregnancy): for a pregnant patient the card says why and offers no order
    path = kb_copy / "formulas" / "all.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(
        text.replace("{herb: 茯苓}, {herb: 炙甘草}]", "{herb: 茯苓}, {herb: 炙甘草}, {herb: 麝香}]", 1), "utf-8"
    )
    e = make_env(knowledge=kb.load(kb_copy, cache=False))
    obs = searchset(observation("症状", "恶寒，乏力"), observation("舌象", "舌淡"))
    pre = _diff_prefetch(observations=obs, pregnancy=searchset(pregnancy(True)))
    pre["patient"]["gender"] = "female"
    r = call(e, DIFF, {**hook_request("patient-view"), **SPEC_FHIR, "prefetch": pre})
    assert r.status_code == 200, r.text
    (card,) = [c for c in r.json()["cards"] if c["source"]["topic"].get("display") == "四君子汤"]
    assert "不宜用于此患者" in card["detail"] and "麝香" in card["detail"]
    assert [s["label"] for s in card["suggestions"] if "四君子丸" in s["label"]] == []


@pytest.mark.parametrize(
    ("coding", "disease"),
    [
        ({"system": "http://id.who.int/icd/release/11/mms", "code": "SA60"}, "感冒"),
        ({"code": "SA60"}, "感冒"),  # no system: read as the code it is
        ({"system": "http://snomed.info/sct", "code": "SA60"}, None),  # another system's code is not ICD-11's
        ({"system": "http://id.who.int/icd/release/11/mms", "code": "SF8C"}, None),  # a pattern names no disease
    ],
)
def test_condition_coded_in_icd11_names_the_disease(coding: dict[str, str], disease: str | None) -> None:
    pre = _diff_prefetch()
    pre["conditions"]["entry"][0]["resource"]["code"] = {"coding": [coding]}
    assert findings_request(pre, fixture_kb()).get("disease") == disease


def test_patient_view_without_findings_has_no_cards(env: Env) -> None:
    body = hook_request("patient-view", prefetch=_diff_prefetch(observations=None, conditions=None))
    r = call(env, DIFF, body)
    assert r.status_code == 200 and r.json() == {"cards": []}


@pytest.mark.parametrize("missing", ["conditions", "observations"])
def test_missing_required_prefetch_is_412(env: Env, missing: str) -> None:
    pre = _diff_prefetch()
    del pre[missing]
    r = call(env, DIFF, {**hook_request("patient-view", prefetch=pre), **SPEC_FHIR})
    assert r.status_code == 412
    assert r.json()["resourceType"] == "OperationOutcome" and missing in r.json()["issue"][0]["diagnostics"]


# ---- invalid requests ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (
            lambda b: b["context"]["draftOrders"]["entry"][0]["resource"].pop("subject"),
            "context.draftOrders.entry[0].resource.subject",
        ),
        (
            lambda b: b["context"]["draftOrders"]["entry"][0]["resource"].update(status=7),
            "context.draftOrders.entry[0].resource.status",
        ),
        (lambda b: b["context"].update(draftOrders={"resourceType": "Patient"}), "context.draftOrders"),
        (lambda b: b["context"].pop("draftOrders"), "context.draftOrders"),
        (lambda b: b.update(hook="patient-view"), "hook"),
        (lambda b: b.pop("hookInstance"), "hookInstance"),
        (lambda b: b.update(fhirAuthorization=SPEC_FHIR["fhirAuthorization"]), "fhirServer"),
        (
            lambda b: b["context"]["draftOrders"]["entry"][0]["resource"]["contained"][0]["ingredient"][0]["strength"][
                "numerator"
            ].update(unit="spoon"),
            "context.draftOrders.entry[0].medication.ingredient[0].strength.numerator",
        ),
    ],
)
def test_invalid_fhir_or_request_is_400_operation_outcome(env: Env, mutate: Any, where: str) -> None:
    body = hook_request("order-sign", bundle(med_request("mr-1", [("甘草", 6)])))
    mutate(body)
    r = call(env, SIGN, body)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    oo = r.json()
    assert oo["resourceType"] == "OperationOutcome" and oo["issue"][0]["severity"] == "error"
    assert oo["issue"][0]["expression"] == [where]
    from fhir.resources.R4B.operationoutcome import OperationOutcome

    OperationOutcome.model_validate(oo)


def test_invalid_prefetch_resource_is_400(env: Env) -> None:
    pre = _diff_prefetch(patient={"resourceType": "Patient", "birthDate": "yesterday"})
    r = call(env, DIFF, hook_request("patient-view", prefetch=pre))
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["prefetch.patient.birthDate"]


def test_unknown_service_is_404(env: Env) -> None:
    r = call(env, "no-such-service", hook_request("order-sign", bundle()))
    assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"


# ---- feedback ------------------------------------------------------------------------------------------
def test_feedback_is_stored_and_linked_to_its_card(env: Env) -> None:
    body = hook_request("order-sign", bundle(med_request("mr-1", [("甘草", 6), ("甘遂", 1)])))
    cards = call(env, SIGN, body).json()["cards"]
    overridden, accepted = cards[0], next(c for c in cards if c.get("suggestions"))
    fb = {
        "feedback": [
            {
                "card": overridden["uuid"],
                "outcome": "overridden",
                "outcomeTimestamp": "2026-01-05T08:00:00Z",
                "overrideReason": {"reason": overridden["overrideReasons"][0], "userComment": "经典配伍"},
            },
            {
                "card": accepted["uuid"],
                "outcome": "accepted",
                "outcomeTimestamp": "2026-01-05T08:00:01Z",
                "acceptedSuggestions": [{"id": accepted["suggestions"][0]["uuid"]}],
            },
        ]
    }
    r = env.client.post(f"/cds-services/{SIGN}/feedback", json=fb, headers=env.cds(SIGN, feedback=True))
    assert r.status_code == 200, r.text
    rows = audit_rows(env)
    issued = next(x for x in rows if x["hook_instance"] == body["hookInstance"])
    by_card = {c["uuid"]: c for c in issued["cards"]}
    ov = by_card[overridden["uuid"]]["feedback"][0]
    assert ov["outcome"] == "overridden" and ov["override_reason"]["code"] == overridden["overrideReasons"][0]["code"]
    ac = by_card[accepted["uuid"]]["feedback"]
    assert any(f["accepted_suggestions"] == [accepted["suggestions"][0]["uuid"]] for f in ac)
    listed = env.client.get("/v1/feedback", headers=env.auth("reviewer")).json()["feedback"]
    assert any(f["card"] == overridden["uuid"] and f["card_topic"] for f in listed)
    # the aud may also be the service URL itself
    r = env.client.post(f"/cds-services/{SIGN}/feedback", json=fb, headers=env.cds(SIGN))
    assert r.status_code == 200


def test_feedback_errors(env: Env) -> None:
    h = lambda: env.cds(SIGN, feedback=True)  # noqa: E731
    url = f"/cds-services/{SIGN}/feedback"
    unknown = {
        "feedback": [{"card": str(uuid.uuid4()), "outcome": "overridden", "outcomeTimestamp": "2026-01-05T08:00:00Z"}]
    }
    assert env.client.post(url, json=unknown, headers=h()).status_code == 404
    bad = {"feedback": [{"card": "x", "outcome": "ignored", "outcomeTimestamp": "2026-01-05T08:00:00Z"}]}
    assert env.client.post(url, json=bad, headers=h()).status_code == 400
    no_sugg = {"feedback": [{"card": "x", "outcome": "accepted", "outcomeTimestamp": "2026-01-05T08:00:00Z"}]}
    r = env.client.post(url, json=no_sugg, headers=h())
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["feedback[0].acceptedSuggestions"]


# ---- JWT rules -----------------------------------------------------------------------------------------
def _ok_body() -> dict[str, Any]:
    return hook_request("order-sign", bundle(med_request("mr-1", [("甘草", 6)])))


def test_rs384_and_es384_accepted(env: Env) -> None:
    assert call(env, SIGN, _ok_body(), alg="RS384").status_code == 200
    assert call(env, SIGN, _ok_body(), alg="ES384").status_code == 200


def _unsigned(claims: dict[str, Any], alg: str) -> str:
    import base64

    def b64(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': alg, 'typ': 'JWT', 'kid': 'es-1'})}.{b64(claims)}."


def test_alg_none_and_hmac_are_refused(env: Env) -> None:
    from joserfc import jwt
    from joserfc.jwk import OctKey

    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": f"http://testserver/cds-services/{SIGN}",
        "iat": now,
        "exp": now + 60,
        "jti": str(uuid.uuid4()),
    }
    none = _unsigned(claims, "none")
    r = env.client.post(f"/cds-services/{SIGN}", json=_ok_body(), headers={"Authorization": f"Bearer {none}"})
    assert r.status_code == 401 and "alg" in r.json()["issue"][0]["diagnostics"]
    # HS384 keyed with the issuer's public key bytes: the classic algorithm-confusion attack
    pub = json.dumps(env.keys.es.as_dict(private=False)).encode()
    hs = jwt.encode({"alg": "HS384", "kid": "es-1"}, claims, OctKey.import_key(pub), algorithms=["HS384"])
    r = env.client.post(f"/cds-services/{SIGN}", json=_ok_body(), headers={"Authorization": f"Bearer {hs}"})
    assert r.status_code == 401
    for alg in ("ES256", "RS256", "HS256", "PS384", "NONE"):
        forged = _unsigned(claims, alg) + "c2lnbmF0dXJl"
        r = env.client.post(f"/cds-services/{SIGN}", json=_ok_body(), headers={"Authorization": f"Bearer {forged}"})
        assert r.status_code == 401 and "alg" in r.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize(
    "claims",
    [
        {"iss": "https://evil.example.org"},
        {"aud": "https://other.example.org/cds-services/" + SIGN},
        {"aud": f"http://testserver/cds-services/{DIFF}"},
        {"exp": int(time.time()) - 3600},
        {"iat": int(time.time()) + 3600},
        {"iat": int(time.time()) - 7200},
        {"jti": None},
        {"exp": None},
        {"iat": None},
    ],
)
def test_bad_claims_are_refused(env: Env, claims: dict[str, Any]) -> None:
    token = env.jwt(service=SIGN, **claims)
    r = env.client.post(f"/cds-services/{SIGN}", json=_ok_body(), headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401, r.text
    assert r.json()["issue"][0]["code"] == "login"


def test_aud_as_array_and_tampered_signature(env: Env) -> None:
    aud = [f"http://testserver/cds-services/{SIGN}"]
    assert call(env, SIGN, _ok_body(), aud=aud).status_code == 200
    token = env.jwt(service=SIGN)
    head, payload, sig = token.split(".")
    tampered = f"{head}.{payload[:-2]}AA.{sig}"
    r = env.client.post(f"/cds-services/{SIGN}", json=_ok_body(), headers={"Authorization": f"Bearer {tampered}"})
    assert r.status_code == 401


def test_jti_replay_is_refused(env: Env) -> None:
    token = env.jwt(service=SIGN)
    h = {"Authorization": f"Bearer {token}"}
    assert env.client.post(f"/cds-services/{SIGN}", json=_ok_body(), headers=h).status_code == 200
    r = env.client.post(f"/cds-services/{SIGN}", json=_ok_body(), headers=h)
    assert r.status_code == 401 and "replay" in r.json()["issue"][0]["diagnostics"]


def test_jku_only_from_the_allow_list(make_env) -> None:  # type: ignore[no-untyped-def]
    from joserfc.jwk import ECKey

    other = ECKey.generate_key("P-384", parameters={"kid": "jku-1", "alg": "ES384"})
    jku = "https://ehr2.example.org/.well-known/jwks.json"
    fetched: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        fetched.append(str(request.url))
        return httpx.Response(200, json={"keys": [other.as_dict(private=False)]})

    e = make_env(
        jwks_transport=httpx.MockTransport(handler),
        issuers=[{"iss": "https://ehr2.example.org", "jku": [jku], "name": "EHR 2"}],
    )
    from joserfc import jwt

    def token(hdr_jku: str) -> str:
        now = int(time.time())
        claims = {
            "iss": "https://ehr2.example.org",
            "aud": f"http://testserver/cds-services/{SIGN}",
            "iat": now,
            "exp": now + 60,
            "jti": str(uuid.uuid4()),
        }
        return jwt.encode({"alg": "ES384", "kid": "jku-1", "jku": hdr_jku}, claims, other, algorithms=["ES384"])

    ok = e.client.post(f"/cds-services/{SIGN}", json=_ok_body(), headers={"Authorization": f"Bearer {token(jku)}"})
    assert ok.status_code == 200, ok.text
    bad = e.client.post(
        f"/cds-services/{SIGN}",
        json=_ok_body(),
        headers={"Authorization": f"Bearer {token('https://attacker.example/jwks.json')}"},
    )
    assert bad.status_code == 401
    assert fetched == [jku]  # the attacker's URL was never fetched


def test_cds_call_is_audited_with_hook_instance_and_cards(env: Env) -> None:
    body = hook_request("order-sign", bundle(med_request("mr-1", [("甘草", 6), ("甘遂", 1)])))
    cards = call(env, SIGN, body).json()["cards"]
    rec = next(x for x in audit_rows(env) if x["hook_instance"] == body["hookInstance"])
    assert rec["client"] == "Example EHR" and rec["role"] == "cds-client" and rec["hook"] == "order-sign"
    assert rec["card_ids"] == [c["uuid"] for c in cards]
    assert rec["versions"]["kb"] == str(env.app.state.tcm.kb.version) and rec["versions"]["ruleset"]
    assert rec["input_sha256"] and len(rec["input_sha256"]) == 64
    assert "甘草" not in json.dumps(rec, ensure_ascii=False)  # no prescription text in the audit trail


def test_fhir_resources_are_validated_once_per_call(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    from fhir.resources.R4B.bundle import Bundle
    from fhir.resources.R4B.patient import Patient

    seen: list[str] = []

    def counting(model: Any) -> Any:
        original = model.model_validate

        def validate(cls: Any, obj: Any, *args: Any, **kwargs: Any) -> Any:
            seen.append(cls.__name__)
            return original.__func__(cls, obj, *args, **kwargs)

        return classmethod(validate)

    monkeypatch.setattr(Bundle, "model_validate", counting(Bundle))
    monkeypatch.setattr(Patient, "model_validate", counting(Patient))
    patient = {"resourceType": "Patient", "id": "p-1", "gender": "female", "birthDate": "1990-01-01"}
    body = hook_request(
        "order-sign",
        bundle(med_request("mr-1", [("甘草", 6), ("甘遂", 1)]), med_request("mr-2", [("大枣", 6)], contained=False)),
        prefetch={"patient": patient, "pregnancy": None},
    )
    body["context"]["draftOrders"]["entry"].append(
        {
            "resource": {
                "resourceType": "Medication",
                "id": "med-mr-2",
                "ingredient": [{"itemCodeableConcept": {"text": "大枣"}}],
            }
        }
    )
    r = call(env, SIGN, body)
    assert r.status_code == 200 and any(c["indicator"] == "critical" for c in r.json()["cards"])
    assert sorted(seen) == ["Bundle", "Patient"]  # draftOrders once (its entries with it), the prefetched Patient once


def test_breastfeeding_status_reaches_the_review(env: Env) -> None:
    from cds.fhir import prescription_from_fhir
    from cds.review import review

    r = env.client.get("/cds-services", headers=env.cds(None))
    services = {s["id"]: s for s in r.json()["services"]}
    assert "63895-7" in services[SIGN]["prefetch"]["lactation"]
    real = kb.load(None)
    for status, expected in ((True, ["炒麦芽：哺乳期不宜"]), (False, [])):
        rx = prescription_from_fhir(bundle(med_request("mr-1", [("炒麦芽", 30), ("陈皮", 6)]), breastfeeding(status)))
        assert rx.patient.lactating is status
        assert [f.message_zh for f in review(rx, real).findings if f.kind == "population"] == expected
    # the differentiation service reads it from its own prefetch too
    req = findings_request({"observations": searchset(observation("舌象", "舌淡")), "lactation": breastfeeding(True)},
                           fixture_kb())  # fmt: skip
    assert req is not None and req["patient"]["lactating"] is True


def test_the_formula_card_says_how_the_doses_were_adapted(make_env: Any, kb_copy: Path) -> None:
    import datetime as dt

    (kb_copy / "substitutes").mkdir()
    (kb_copy / "substitutes" / "s.yaml").write_text(
        "- {id: dangshen-for-renshen, original: 人参, substitute: 党参, scope: s, source: {ref: zhongyaoxue}}\n",
        encoding="utf-8",
    )
    e = make_env(knowledge=kb.load(kb_copy, cache=False))
    obs = searchset(observation("症状", "恶寒，乏力"), observation("舌象", "舌淡"))
    pre = _diff_prefetch(observations=obs)
    pre["patient"]["birthDate"] = (dt.date.today() - dt.timedelta(days=2 * 365 + 30)).isoformat()  # two years old
    r = call(e, DIFF, {**hook_request("patient-view"), **SPEC_FHIR, "prefetch": pre})
    assert r.status_code == 200, r.text
    (card,) = [c for c in r.json()["cards"] if c["source"]["topic"].get("display") == "四君子汤"]
    assert "人参4.5g（可以党参代）" in card["detail"]  # 9 g for an adult, half for a child of two
    assert "调整 / adapted: child_dose — 幼儿用成人量的1/2" in card["detail"] and "None" not in card["detail"]


def _condition(code: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p-1"}, "code": code, **extra}


def test_an_active_condition_of_organ_failure_reaches_the_review(env: Env) -> None:
    from cds.fhir import impairments_of, prescription_from_fhir
    from cds.review import review

    ckd = _condition({"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "N18.4"}], "text": "CKD 4"})
    assert impairments_of(ckd) == {"renal_impairment": True}
    assert impairments_of(_condition({"coding": [{"system": "http://snomed.info/sct", "code": "59927004"}]})) == {
        "hepatic_impairment": True
    }
    assert impairments_of(_condition({"text": "慢性肾功能不全"})) == {"renal_impairment": True}
    resolved = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "resolved"}]}
    assert impairments_of(_condition({"text": "急性肾衰竭"}, clinicalStatus=resolved)) == {}
    assert impairments_of(_condition({"text": "高血压"})) == {}
    rx = prescription_from_fhir(bundle(med_request("mr-1", [("朱砂", 0.3), ("茯苓", 12)]), ckd))
    assert rx.patient.renal_impairment is True and rx.patient.hepatic_impairment is None
    assert [f.message_zh for f in review(rx, kb.load(None)).findings if f.kind == "population"] == [
        "朱砂：肾功能不全禁用"
    ]
    # the safety services ask for the active Conditions and accept them in the prefetch
    services = {s["id"]: s for s in env.client.get("/cds-services", headers=env.cds(None)).json()["services"]}
    assert services[SIGN]["prefetch"]["conditions"].startswith("Condition?patient=")
    draft = bundle(med_request("mr-1", [("甘草", 6)]))
    r = call(env, SIGN, hook_request("order-sign", draft, prefetch={"conditions": searchset(ckd)}))
    assert r.status_code == 200, r.text
    # and the differentiation service's suggestions are reviewed for it
    req = findings_request({"conditions": searchset(ckd), "observations": searchset(observation("舌象", "舌淡"))},
                           fixture_kb())  # fmt: skip
    assert req is not None and req["patient"]["renal_impairment"] is True
