"""FHIR R4 in: herbal ``MedicationRequest``s (contained or referenced ``Medication`` whose ingredients are the herbs,
strength in g) and ``Bundle``s of them, read and validated with ``fhir.resources`` (R4B models).

A Bundle becomes one prescription holding the herbs of all its MedicationRequests, so that incompatibilities
across orders of one patient are found; a pregnancy-status Observation (LOINC 82810-3) and a Patient resource
in the Bundle fill in the patient.
"""

from __future__ import annotations

from typing import Any

from cds.prescription import MASS_UNITS, Item, Patient, Prescription
from kb.errors import InputError

PREGNANCY_LOINC = "82810-3"
PREGNANT_CODES = {"77386006": True, "60001007": False, "261665006": None}  # SNOMED: pregnant, not pregnant, unknown


def _validate(model: Any, raw: dict[str, Any], where: str) -> Any:
    from pydantic import ValidationError

    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        parts = []
        for err in exc.errors()[:3]:
            loc = ".".join(str(x) for x in err["loc"])
            parts.append(f"{loc}: {err['msg']}" if loc else err["msg"])
        raise InputError(f"invalid FHIR {raw.get('resourceType')}: " + "; ".join(parts), where) from exc


def _text(cc: Any) -> str | None:
    if cc is None:
        return None
    if cc.text:
        return str(cc.text)
    for c in cc.coding or []:
        if c.display:
            return str(c.display)
    return None


def _ingredients(med: Any, where: str, start: int) -> list[Item]:
    items: list[Item] = []
    for j, ing in enumerate(med.ingredient or []):
        w = f"{where}.ingredient[{j}]"
        name = _text(getattr(ing, "itemCodeableConcept", None))
        if not name:
            raise InputError("ingredient has no herb name (itemCodeableConcept.text or coding.display)", w)
        dose_g = None
        num = ing.strength.numerator if ing.strength is not None else None
        if num is not None and num.value is not None:
            unit = (num.unit or num.code or "").strip()
            factor = MASS_UNITS.get(unit.lower() if unit.isascii() else unit)
            if factor is None:
                raise InputError(f"unknown strength unit {unit!r}; use g or mg", f"{w}.strength.numerator")
            value = float(num.value)
            if value <= 0:
                raise InputError(f"strength must be positive, got {value:g}", f"{w}.strength.numerator")
            dose_g = value * factor
        items.append(Item(start + len(items), name, dose_g, None, None, None))
    return items


def prescription_from_fhir(raw: dict[str, Any]) -> Prescription:
    from fhir.resources.R4B.bundle import Bundle
    from fhir.resources.R4B.medication import Medication
    from fhir.resources.R4B.medicationrequest import MedicationRequest

    kind = raw.get("resourceType")
    resources: list[dict[str, Any]]
    if kind == "Bundle":
        bundle = _validate(Bundle, raw, "Bundle")
        resources = [e.resource.model_dump(mode="json", exclude_none=True) for e in bundle.entry or [] if e.resource]
    else:
        resources = [raw]
    meds = {f"Medication/{r['id']}": r for r in resources if r.get("resourceType") == "Medication" and r.get("id")}
    items: list[Item] = []
    patient = Patient()
    days: int | None = None
    requests = 0
    for n, r in enumerate(resources):
        where = f"entry[{n}]" if kind == "Bundle" else r.get("resourceType", "resource")
        rt = r.get("resourceType")
        if rt == "MedicationRequest":
            requests += 1
            mr = _validate(MedicationRequest, r, where)
            contained = {f"#{c.id}": c for c in mr.contained or [] if getattr(c, "id", None)}
            ref = mr.medicationReference.reference if mr.medicationReference else None
            if ref and ref in contained:
                med = contained[ref]
            elif ref and ref in meds:
                med = _validate(Medication, meds[ref], f"{where}.medicationReference")
            elif ref:
                raise InputError(f"medicationReference {ref!r} is neither contained nor in the Bundle", where)
            else:
                raise InputError("a herbal MedicationRequest needs a Medication with ingredients", where)
            items += _ingredients(med, f"{where}.medication", len(items))
            supply = mr.dispenseRequest.expectedSupplyDuration if mr.dispenseRequest else None
            if supply is not None and supply.value is not None:
                days = max(days or 0, int(supply.value))
        elif rt == "Medication" and kind != "Bundle":
            items += _ingredients(_validate(Medication, r, where), where, len(items))
        elif rt == "Observation":
            codes = {c.get("code") for c in r.get("code", {}).get("coding", [])}
            if PREGNANCY_LOINC in codes:
                value = {c.get("code") for c in r.get("valueCodeableConcept", {}).get("coding", [])}
                for code, flag in PREGNANT_CODES.items():
                    if code in value:
                        patient = Patient(flag, patient.lactating, patient.age_years, patient.sex)
        elif rt == "Patient":
            sex = {"female": "female", "male": "male"}.get(r.get("gender", ""))
            patient = Patient(patient.pregnant, patient.lactating, patient.age_years, sex)
    if not items:
        raise InputError("no herbal ingredients found in the FHIR input", kind or "resource")
    if kind == "Bundle" and not requests:
        raise InputError("the Bundle holds no MedicationRequest", "Bundle")
    return Prescription(tuple(items), patient, days, None, raw.get("id"))
