"""FHIR R4 in (``cds/fhir.py``): what a MedicationRequest / Medication / Bundle becomes, where a problem is
reported, and that a caller who validated the resources already gets the same prescription without a second
validation."""

from __future__ import annotations

from typing import Any

import pytest

from cds.fhir import prescription_from_fhir
from kb.errors import InputError


def ingredient(name: str, value: float | None, unit: str = "g", coded: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"itemCodeableConcept": {"coding": [{"display": name}]} if coded else {"text": name}}
    if value is not None:
        out["strength"] = {"numerator": {"value": value, "unit": unit}, "denominator": {"value": 1}}
    return out


def order(rid: str, ingredients: list[dict[str, Any]] | None, **extra: Any) -> dict[str, Any]:
    mr: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": "draft",
        "intent": "order",
        "subject": {"reference": "Patient/p-1"},
        **extra,
    }
    if ingredients is not None:
        mr["contained"] = [{"resourceType": "Medication", "id": f"m-{rid}", "ingredient": ingredients}]
        mr["medicationReference"] = {"reference": f"#m-{rid}"}
    return mr


def bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


PREGNANT = {
    "resourceType": "Observation",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "82810-3"}]},
    "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "77386006"}]},
}


def test_a_bundle_becomes_one_prescription() -> None:
    referenced = order("b", None, medicationReference={"reference": "Medication/med-b"})
    med = {
        "resourceType": "Medication",
        "id": "med-b",
        "ingredient": [
            ingredient("人参", 500, "mg"),
            ingredient("大枣", None),
            ingredient("生姜", 1, "钱", coded=True),
        ],
    }
    raw = bundle(
        order("a", [ingredient("甘草", 6)], dispenseRequest={"expectedSupplyDuration": {"value": 7, "unit": "d"}}),
        referenced,
        med,
        PREGNANT,
        {"resourceType": "Patient", "id": "p-1", "gender": "female"},
    )
    rx = prescription_from_fhir(raw)
    assert [(i.pos, i.herb, i.dose_g) for i in rx.items] == [
        (0, "甘草", 6.0),
        (1, "人参", 0.5),
        (2, "大枣", None),
        (3, "生姜", 3.0),
    ]
    assert rx.days == 7 and rx.patient.pregnant is True and rx.patient.sex == "female"
    assert prescription_from_fhir(raw, validated=True) == rx


def test_a_lone_medication_request_or_medication() -> None:
    mr = order("a", [ingredient("甘草", 6), ingredient("芫花", 2)])
    assert [i.herb for i in prescription_from_fhir(mr).items] == ["甘草", "芫花"]
    med = {"resourceType": "Medication", "id": "m", "ingredient": [ingredient("甘草", 6000, "mg")]}
    assert [i.dose_g for i in prescription_from_fhir(med).items] == [6.0]


@pytest.mark.parametrize(
    ("raw", "where", "text"),
    [
        (bundle({**order("a", [ingredient("甘草", 6)]), "status": 7}), "Bundle", "invalid FHIR Bundle"),
        ({**order("a", [ingredient("甘草", 6)]), "subject": "Patient/1"}, "MedicationRequest", "subject"),
        (
            bundle(order("a", [ingredient("甘草", 6, "ml")])),
            "entry[0].medication.ingredient[0].strength.numerator",
            "ml",
        ),
        (
            bundle(order("a", [ingredient("甘草", 0)])),
            "entry[0].medication.ingredient[0].strength.numerator",
            "positive",
        ),
        (bundle(order("a", None, medicationReference={"reference": "Medication/x"})), "entry[0]", "neither contained"),
        (
            bundle({"resourceType": "Medication", "id": "m", "ingredient": [ingredient("甘草", 6)]}),
            "Bundle",
            "no herbal",
        ),
    ],
)
def test_problems_name_their_place(raw: dict[str, Any], where: str, text: str) -> None:
    with pytest.raises(InputError) as exc:
        prescription_from_fhir(raw)
    assert exc.value.where == where and text in str(exc.value)


def test_validated_input_is_not_validated_again(monkeypatch: pytest.MonkeyPatch) -> None:
    from fhir.resources.R4B.bundle import Bundle

    calls: list[Any] = []
    original = Bundle.model_validate

    def counting(cls: Any, obj: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(obj)
        return original.__func__(cls, obj, *args, **kwargs)  # type: ignore[attr-defined]

    monkeypatch.setattr(Bundle, "model_validate", classmethod(counting))
    raw = bundle(order("a", [ingredient("甘草", 6)]))
    assert prescription_from_fhir(raw) == prescription_from_fhir(raw, validated=True)
    assert len(calls) == 1
