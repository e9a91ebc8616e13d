"""FHIR R4 in: herbal ``MedicationRequest``s (contained or referenced ``Medication`` whose ingredients are the herbs,
strength in g) and ``Bundle``s of them, validated with ``fhir.resources`` (R4B models), then read.

A Bundle becomes one prescription holding the herbs of all its MedicationRequests, so that incompatibilities
across orders of one patient are found; a pregnancy-status Observation (LOINC 82810-3), a breastfeeding-status
Observation (LOINC 63895-7), an active Condition of hepatic or renal failure (``impairments_of``) and a Patient
resource in the Bundle fill in the patient.

Each resource is validated once: a Bundle with its entries in one pass, a lone MedicationRequest or Medication
on its own. The reading then walks the validated JSON (the models guarantee its shape), which costs a fraction
of walking the models. A caller that has validated the resources already (the CDS Hooks services validate
``draftOrders`` and the prefetch) passes ``validated=True``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from cds.prescription import MASS_UNITS, Item, Patient, Prescription
from kb.errors import InputError

PREGNANCY_LOINC = "82810-3"
PREGNANT_CODES = {"77386006": True, "60001007": False, "261665006": None}  # SNOMED: pregnant, not pregnant, unknown
BREASTFEEDING_LOINC = "63895-7"  # Breastfeeding status
# An active Condition that says the liver or the kidneys are failing: ICD-10 chapter prefixes, SNOMED CT concepts,
# or the Chinese diagnosis text an EMR writes
IMPAIRMENT = {
    "hepatic_impairment": (("K72",), {"59927004"}, ("肝功能不全", "肝衰竭", "肝功能衰竭")),
    "renal_impairment": (("N17", "N18", "N19"), {"709044004", "42399005"},
                         ("肾功能不全", "肾衰竭", "肾功能衰竭", "慢性肾脏病", "尿毒症")),
}  # fmt: skip


def impairments_of(condition: dict[str, Any]) -> dict[str, bool]:
    """The patient flags (``hepatic_impairment``, ``renal_impairment``) an active FHIR Condition sets."""
    status = {c.get("code") for f in ("clinicalStatus", "verificationStatus")
              for c in (condition.get(f) or {}).get("coding", [])}  # fmt: skip
    if status & {"inactive", "resolved", "remission", "refuted", "entered-in-error"}:
        return {}
    code = condition.get("code") or {}
    codes = [str(c.get("code") or "") for c in code.get("coding", [])]
    texts = [str(code.get("text") or ""), *(str(c.get("display") or "") for c in code.get("coding", []))]
    return {
        flag: True
        for flag, (icd10, snomed, words) in IMPAIRMENT.items()
        if any(c.upper().startswith(icd10) or c in snomed for c in codes) or any(w in t for w in words for t in texts)
    }


BREASTFEEDING_CODES = {"LA29252-6": True, "LA29253-4": False}  # LOINC answers: currently / not currently breastfeeding


def _validate(model: Any, raw: dict[str, Any], where: str) -> None:
    from pydantic import ValidationError

    try:
        model.model_validate(raw)
    except ValidationError as exc:
        parts = []
        for err in exc.errors()[:3]:
            loc = ".".join(str(x) for x in err["loc"])
            parts.append(f"{loc}: {err['msg']}" if loc else err["msg"])
        raise InputError(f"invalid FHIR {raw.get('resourceType')}: " + "; ".join(parts), where) from exc


def _text(cc: Any) -> str | None:
    if not isinstance(cc, dict):
        return None
    if cc.get("text"):
        return str(cc["text"])
    for c in cc.get("coding") or []:
        if isinstance(c, dict) and c.get("display"):
            return str(c["display"])
    return None


def _ingredients(med: dict[str, Any], where: str, start: int) -> list[Item]:
    items: list[Item] = []
    for j, ing in enumerate(med.get("ingredient") or []):
        w = f"{where}.ingredient[{j}]"
        name = _text(ing.get("itemCodeableConcept"))
        if not name:
            raise InputError("ingredient has no herb name (itemCodeableConcept.text or coding.display)", w)
        dose_g = None
        num = (ing.get("strength") or {}).get("numerator")
        if num is not None and num.get("value") is not None:
            unit = str(num.get("unit") or num.get("code") or "").strip()
            factor = MASS_UNITS.get(unit.lower() if unit.isascii() else unit)
            if factor is None:
                raise InputError(f"unknown strength unit {unit!r}; use g or mg", f"{w}.strength.numerator")
            value = float(num["value"])
            if value <= 0:
                raise InputError(f"strength must be positive, got {value:g}", f"{w}.strength.numerator")
            dose_g = value * factor
        items.append(Item(start + len(items), name, dose_g, None, None, None))
    return items


def _check(raw: dict[str, Any]) -> None:
    """Validate a Bundle (entries included) or a lone MedicationRequest / Medication."""
    from fhir.resources.R4B.bundle import Bundle
    from fhir.resources.R4B.medication import Medication
    from fhir.resources.R4B.medicationrequest import MedicationRequest

    kind = raw.get("resourceType")
    model = {"Bundle": Bundle, "MedicationRequest": MedicationRequest, "Medication": Medication}.get(str(kind))
    if model is not None:
        _validate(model, raw, "Bundle" if kind == "Bundle" else str(kind))


def prescription_from_fhir(raw: dict[str, Any], *, validated: bool = False) -> Prescription:
    """A FHIR MedicationRequest, Medication or Bundle -> Prescription; InputError names the place of a problem.

    ``validated=True``: every resource in ``raw`` has passed its R4B model already; it is not validated again.
    """
    if not validated:
        _check(raw)
    kind = raw.get("resourceType")
    resources: list[dict[str, Any]]
    if kind == "Bundle":
        resources = [e["resource"] for e in raw.get("entry") or [] if isinstance(e, dict) and e.get("resource")]
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
            contained = {f"#{c['id']}": c for c in r.get("contained") or [] if isinstance(c, dict) and c.get("id")}
            ref = (r.get("medicationReference") or {}).get("reference")
            if ref and ref in contained:
                med = contained[ref]
            elif ref and ref in meds:
                med = meds[ref]
            elif ref:
                raise InputError(f"medicationReference {ref!r} is neither contained nor in the Bundle", where)
            else:
                raise InputError("a herbal MedicationRequest needs a Medication with ingredients", where)
            items += _ingredients(med, f"{where}.medication", len(items))
            supply = (r.get("dispenseRequest") or {}).get("expectedSupplyDuration") or {}
            if supply.get("value") is not None:
                days = max(days or 0, int(float(supply["value"])))
        elif rt == "Medication" and kind != "Bundle":
            items += _ingredients(r, where, len(items))
        elif rt == "Observation":
            codes = {c.get("code") for c in r.get("code", {}).get("coding", [])}
            if PREGNANCY_LOINC in codes:
                value = {c.get("code") for c in r.get("valueCodeableConcept", {}).get("coding", [])}
                for code, flag in PREGNANT_CODES.items():
                    if code in value:
                        patient = replace(patient, pregnant=flag)
            elif BREASTFEEDING_LOINC in codes:
                value = {c.get("code") for c in r.get("valueCodeableConcept", {}).get("coding", [])}
                for code, flag in BREASTFEEDING_CODES.items():
                    if code in value:
                        patient = replace(patient, lactating=flag)
        elif rt == "Patient":
            sex = {"female": "female", "male": "male"}.get(r.get("gender", ""))
            patient = replace(patient, sex=sex)
        elif rt == "Condition" and (flags := impairments_of(r)):
            patient = replace(
                patient,
                hepatic_impairment=flags.get("hepatic_impairment", patient.hepatic_impairment),
                renal_impairment=flags.get("renal_impairment", patient.renal_impairment),
            )
    if not items:
        raise InputError("no herbal ingredients found in the FHIR input", kind or "resource")
    if kind == "Bundle" and not requests:
        raise InputError("the Bundle holds no MedicationRequest", "Bundle")
    return Prescription(tuple(items), patient, days, None, raw.get("id"))
