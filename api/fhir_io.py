"""FHIR R4 at the CDS Hooks edge: validation (``fhir.resources`` R4B), picking the herbal orders out of
``draftOrders``, the updated ``MedicationRequest`` a suggestion carries, a draft order for a suggested
formula, and prefetched Conditions / Observations / Patient turned into a findings request for
``cds.suggest``.

Conventions for findings (documented in the README): an Observation whose code names the tongue (舌, 舌象,
``tongue``) gives a tongue finding, one that names the pulse (脉, 脉象, ``pulse``) with a text value a pulse
finding, pregnancy status is LOINC 82810-3 (SNOMED 77386006 pregnant / 60001007 not pregnant), and any other
Observation is a symptom: its text value (``valueString`` or ``valueCodeableConcept``), or its code text when
it has no value (``valueBoolean: false`` denies it). A Condition whose code or name is a disease of the
knowledge base is the TCM diagnosis; other Conditions count as western diagnoses.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cds.fhir import impairments_of
from kb.errors import InputError

ICD_PREFIX = "http://id.who.int/icd"  # ICD-11 MMS code systems (release/11/mms and older spellings)

PREGNANCY_LOINC = "82810-3"
BREASTFEEDING_LOINC = "63895-7"  # answers LA29252-6 currently / LA29253-4 not currently breastfeeding
UCUM = "http://unitsofmeasure.org"
FINDING_SYSTEM = "https://tcm-cds.org/CodeSystem/finding"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
_INACTIVE_STATUS = {"entered-in-error", "cancelled"}


# ---- validation ----------------------------------------------------------------------------------------
def validate(resource: Any, where: str) -> None:
    """Validate one FHIR resource (a Bundle, its entries too); InputError names where the problem is."""
    from fhir.resources.R4B import get_fhir_model_class
    from pydantic import ValidationError

    if not isinstance(resource, dict):
        raise InputError(f"expected a FHIR resource (a JSON object), got {type(resource).__name__}", where)
    rt = resource.get("resourceType")
    if not isinstance(rt, str) or not rt:
        raise InputError("missing resourceType", where)
    try:
        model = get_fhir_model_class(rt)
    except (KeyError, ValueError, AttributeError, ImportError):
        raise InputError("unknown FHIR R4 resourceType", f"{where}.resourceType") from None
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        errs = exc.errors()
        first = errs[0] if errs else {"loc": (), "msg": "invalid"}
        loc = _fhir_path(first.get("loc", ()))
        more = f" (and {len(errs) - 1} more problem(s))" if len(errs) > 1 else ""
        raise InputError(f"invalid FHIR {rt}: {first.get('msg', 'invalid')}{more}", f"{where}{loc}") from None
    except (TypeError, ValueError) as exc:
        raise InputError(f"invalid FHIR {rt}: {type(exc).__name__}", where) from None


def _fhir_path(loc: Any) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def resources(value: Any) -> list[dict[str, Any]]:
    """A prefetch value -> its resources (a Bundle's entries, or the one resource; null -> none)."""
    if value is None:
        return []
    if isinstance(value, dict) and value.get("resourceType") == "Bundle":
        return [
            e["resource"]
            for e in value.get("entry") or []
            if isinstance(e, dict) and isinstance(e.get("resource"), dict)
        ]
    return [value] if isinstance(value, dict) else []


def _text(cc: Any) -> str | None:
    if not isinstance(cc, dict):
        return None
    if isinstance(cc.get("text"), str) and cc["text"].strip():
        return str(cc["text"]).strip()
    for c in cc.get("coding") or []:
        if isinstance(c, dict) and isinstance(c.get("display"), str) and c["display"].strip():
            return str(c["display"]).strip()
    return None


def _codes(cc: Any) -> set[str]:
    if not isinstance(cc, dict):
        return set()
    return {str(c.get("code")) for c in cc.get("coding") or [] if isinstance(c, dict) and c.get("code")}


# ---- herbal orders in draftOrders ----------------------------------------------------------------------
@dataclass
class HerbalOrders:
    """The herbal MedicationRequests of a draftOrders Bundle and where each review item came from."""

    bundle: dict[str, Any]  # a Bundle of the herbal orders (+ their Medications, patient, pregnancy status)
    origins: list[str]  # sub-bundle entry index -> where it was in the request
    items: list[tuple[int, str, int]]  # review item -> (order number, medication key, ingredient index)
    orders: list[dict[str, Any]]  # the herbal MedicationRequests as sent
    medications: dict[str, dict[str, Any]]  # "#id" (contained, per order) or "Medication/id" -> Medication


def _medication(mr: dict[str, Any], bundle_meds: dict[str, dict[str, Any]]) -> tuple[str | None, dict[str, Any] | None]:
    ref = (mr.get("medicationReference") or {}).get("reference")
    if not isinstance(ref, str):
        return None, None
    if ref.startswith("#"):
        for c in mr.get("contained") or []:
            if isinstance(c, dict) and c.get("resourceType") == "Medication" and f"#{c.get('id')}" == ref:
                return ref, c
        return ref, None
    return ref, bundle_meds.get(ref)


def herbal_orders(draft: dict[str, Any], extra: list[tuple[dict[str, Any], str]], where: str) -> HerbalOrders:
    """Pick the herbal MedicationRequests (a Medication with ingredients) out of a draftOrders Bundle."""
    entries = [e.get("resource") for e in draft.get("entry") or [] if isinstance(e, dict)]
    bundle_meds = {
        f"Medication/{r['id']}": r
        for r in entries
        if isinstance(r, dict) and r.get("resourceType") == "Medication" and r.get("id")
    }
    sub: list[dict[str, Any]] = []
    origins: list[str] = []
    items: list[tuple[int, str, int]] = []
    orders: list[dict[str, Any]] = []
    meds: dict[str, dict[str, Any]] = {}
    used_meds: set[str] = set()
    for i, r in enumerate(entries):
        if not isinstance(r, dict) or r.get("resourceType") != "MedicationRequest":
            continue
        if r.get("status") in _INACTIVE_STATUS:
            continue
        ref, med = _medication(r, bundle_meds)
        if med is None or not med.get("ingredient"):
            continue  # not a herbal order (a coded drug, or a Medication without ingredients)
        n = len(orders)
        orders.append(r)
        key = f"{n}{ref}" if ref and ref.startswith("#") else str(ref)
        meds[key] = med
        if ref and not ref.startswith("#"):
            used_meds.add(ref)
        sub.append({"resource": r})
        origins.append(f"{where}.entry[{i}]")
        for j, _ in enumerate(med["ingredient"]):
            items.append((n, key, j))
    for ref in sorted(used_meds):
        sub.append({"resource": bundle_meds[ref]})
        origins.append(f"{where}.entry[{entries.index(bundle_meds[ref])}]")
    for res, origin in extra:
        sub.append({"resource": res})
        origins.append(origin)
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "collection", "entry": sub}
    if isinstance(draft.get("id"), str):
        bundle["id"] = draft["id"]
    return HerbalOrders(bundle, origins, items, orders, meds)


_ENTRY = re.compile(r"^entry\[(\d+)\]")


def relocate(exc: InputError, origins: list[str]) -> InputError:
    """An InputError about the herbal sub-bundle, re-addressed to where the data was in the request."""
    where = exc.where or ""
    m = _ENTRY.match(where)
    new: str | None
    if m and int(m.group(1)) < len(origins):
        new = origins[int(m.group(1))] + where[m.end() :]
    elif where == "Bundle":
        new = origins[0].rsplit(".entry[", 1)[0] if origins else "context.draftOrders"
    else:
        new = where or None
    text = str(exc)
    if exc.where and text.startswith(exc.where + ": "):
        text = text[len(exc.where) + 2 :]
    return InputError(text, new)


def _strength(dose_g: float, like: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"numerator": {"value": round(dose_g, 3), "unit": "g", "system": UCUM, "code": "g"}}
    if like and isinstance(like.get("denominator"), dict):
        out["denominator"] = like["denominator"]
    return out


def updated_order(orders: HerbalOrders, item: int, action: str, dose_g: float | None) -> dict[str, Any] | None:
    """The MedicationRequest after removing an ingredient or setting its dose; None when none is left."""
    if not 0 <= item < len(orders.items):
        return None
    n, key, j = orders.items[item]
    mr = copy.deepcopy(orders.orders[n])
    med = copy.deepcopy(orders.medications[key])
    ingredients = list(med.get("ingredient") or [])
    if action == "remove":
        del ingredients[j]
        if not ingredients:
            return None
    elif action == "set_dose" and dose_g is not None:
        ing = dict(ingredients[j])
        ing["strength"] = _strength(dose_g, ing.get("strength"))
        ingredients[j] = ing
    else:
        return None
    med["ingredient"] = ingredients
    ref = (mr.get("medicationReference") or {}).get("reference", "")
    if ref.startswith("#"):
        mr["contained"] = [
            med if (isinstance(c, dict) and f"#{c.get('id')}" == ref) else c for c in mr.get("contained") or []
        ]
    else:  # a Medication elsewhere in the Bundle: the updated order carries its own (contained) copy
        med_id = str(med.get("id") or "medication")
        med["id"] = med_id
        med.pop("meta", None)
        mr["contained"] = [c for c in mr.get("contained") or [] if not (isinstance(c, dict) and c.get("id") == med_id)]
        mr["contained"].append(med)
        mr["medicationReference"] = {**mr.get("medicationReference", {}), "reference": f"#{med_id}"}
    return mr


def order_ref(orders: HerbalOrders, item: int) -> str | None:
    if not 0 <= item < len(orders.items):
        return None
    mr = orders.orders[orders.items[item][0]]
    return f"MedicationRequest/{mr['id']}" if mr.get("id") else None


def draft_order(
    patient_id: str | None,
    formula: str,
    prescription: list[dict[str, Any]],
    note: str,
    reasons: Sequence[tuple[str, list[dict[str, str]]]] = (),
) -> dict[str, Any]:
    """A draft MedicationRequest (intent proposal) for a suggested formula, herbs as its ingredients.

    ``reasons`` are the diagnosis it treats, each a name and its FHIR Codings (ICD-11 TM1 disorder and pattern
    codes where the knowledge base records them, see :func:`codings_of`); they become the order's ``reasonCode``.
    """
    ingredients = []
    counts = []
    for p in prescription:
        ing: dict[str, Any] = {"itemCodeableConcept": {"text": p["herb"]}}
        if p.get("dose_g") is not None:
            ing["strength"] = _strength(float(p["dose_g"]), {"denominator": {"value": 1, "unit": "剂"}})
        elif p.get("dose"):
            counts.append(f"{p['herb']} {p['dose']}")
        ingredients.append(ing)
    mr: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "status": "draft",
        "intent": "proposal",
        "contained": [
            {
                "resourceType": "Medication",
                "id": "formula",
                "code": {"text": formula},
                "ingredient": ingredients,
            }
        ],
        "medicationReference": {"reference": "#formula", "display": formula},
        "subject": {"reference": f"Patient/{patient_id}" if patient_id else "Patient/unknown"},
        "note": [{"text": note + ("；" + "，".join(counts) if counts else "")}],
    }
    if reason_codes := _reason_codes(reasons):
        mr["reasonCode"] = reason_codes
    return mr


def draft_patent_order(
    patient_id: str | None, name: str, note: str, reasons: Sequence[tuple[str, list[dict[str, str]]]] = ()
) -> dict[str, Any]:
    """A draft MedicationRequest (intent proposal) for a Pharmacopoeia 成药, named by its own name: the pharmacy
    dispenses the product, so there are no ingredients to list and the dose is the physician's to write."""
    mr: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "status": "draft",
        "intent": "proposal",
        "medicationCodeableConcept": {"text": name},
        "subject": {"reference": f"Patient/{patient_id}" if patient_id else "Patient/unknown"},
        "note": [{"text": note}],
    }
    if reason_codes := _reason_codes(reasons):
        mr["reasonCode"] = reason_codes
    return mr


def _reason_codes(reasons: Sequence[tuple[str, list[dict[str, str]]]]) -> list[dict[str, Any]]:
    out = []
    for text, codings in reasons:
        cc: dict[str, Any] = {"text": text}
        if codings:
            cc["coding"] = codings
        out.append(cc)
    return out


def codings_of(codes: Sequence[dict[str, str]], of: str) -> list[dict[str, str]]:
    """The FHIR Codings, from an answer's ``codes``, of the disease or of the syndrome (``of``)."""
    return [{k: c[k] for k in ("system", "code", "display") if k in c} for c in codes if c.get("of") == of]


def draft_diagnosis(
    patient_id: str | None, disease: str, syndrome: str, codes: Sequence[dict[str, str]], note: str
) -> list[dict[str, Any]]:
    """Two provisional Conditions for a TCM diagnosis: the disease (ICD-11 TM1 disorder code where known) and the
    syndrome (TM1 pattern code where known), each named in ``code.text`` so a side without a code still reads.

    ICD-11 codes a TM1 diagnosis as one disorder plus one pattern; they are different concepts, so they go in two
    Conditions rather than as two codings of one CodeableConcept (which FHIR reads as synonyms).
    """
    out = []
    for of, text in (("disease", disease), ("syndrome", f"{disease}·{syndrome}")):
        concept: dict[str, Any] = {"text": text}
        codings = codings_of(codes, of)
        if codings:
            concept["coding"] = codings
        out.append(
            {
                "resourceType": "Condition",
                "clinicalStatus": {"coding": [{"system": CONDITION_CLINICAL, "code": "active"}]},
                "verificationStatus": {"coding": [{"system": CONDITION_VERIFICATION, "code": "provisional"}]},
                "category": [{"coding": [{"system": CONDITION_CATEGORY, "code": "encounter-diagnosis"}]}],
                "code": concept,
                "subject": {"reference": f"Patient/{patient_id}" if patient_id else "Patient/unknown"},
                "note": [{"text": note}],
            }
        )
    return out


# ---- prefetch -> findings request ----------------------------------------------------------------------
def _value_text(obs: dict[str, Any]) -> str | None:
    v = obs.get("valueString")
    if isinstance(v, str) and v.strip():
        return v.strip()
    return _text(obs.get("valueCodeableConcept"))


def pregnancy_of(obs: dict[str, Any]) -> bool | None:
    codes = _codes(obs.get("valueCodeableConcept"))
    if "77386006" in codes:
        return True
    if "60001007" in codes:
        return False
    return None


def is_pregnancy_status(obs: dict[str, Any]) -> bool:
    return obs.get("resourceType") == "Observation" and PREGNANCY_LOINC in _codes(obs.get("code"))


def is_breastfeeding_status(obs: dict[str, Any]) -> bool:
    return obs.get("resourceType") == "Observation" and BREASTFEEDING_LOINC in _codes(obs.get("code"))


def breastfeeding_of(obs: dict[str, Any]) -> bool | None:
    codes = _codes(obs.get("valueCodeableConcept"))
    return True if "LA29252-6" in codes else False if "LA29253-4" in codes else None


def _age(birth: Any, today: dt.date) -> float | None:
    if not isinstance(birth, str) or len(birth) < 4:
        return None
    try:
        y = int(birth[:4])
        m = int(birth[5:7]) if len(birth) >= 7 else 7
        d = int(birth[8:10]) if len(birth) >= 10 else 1
        born = dt.date(y, m, d)
    except ValueError:
        return None
    years = (today - born).days / 365.25
    return round(years, 1) if 0 <= years <= 130 else None


def findings_request(prefetch: dict[str, Any], kb: Any, today: dt.date | None = None) -> dict[str, Any] | None:
    """Prefetched Patient, Conditions and Observations -> a findings request (None: nothing to use)."""
    today = today or dt.date.today()
    text: list[str] = []
    symptoms: list[str] = []
    tongue: list[str] = []
    pulse: list[str] = []
    patient: dict[str, Any] = {}
    p = prefetch.get("patient")
    if isinstance(p, dict) and p.get("resourceType") == "Patient":
        if p.get("gender") in ("female", "male"):
            patient["sex"] = p["gender"]
        age = _age(p.get("birthDate"), today)
        if age is not None:
            patient["age_years"] = age
    observations = [*resources(prefetch.get("observations")), *resources(prefetch.get("pregnancy")),
                    *resources(prefetch.get("lactation"))]  # fmt: skip
    for obs in observations:
        if obs.get("resourceType") != "Observation" or obs.get("status") in _INACTIVE_STATUS:
            continue
        if is_pregnancy_status(obs):
            preg = pregnancy_of(obs)
            if preg is not None:
                patient["pregnant"] = preg
            continue
        if is_breastfeeding_status(obs):
            feeding = breastfeeding_of(obs)
            if feeding is not None:
                patient["lactating"] = feeding
            continue
        label = _text(obs.get("code")) or ""
        codes = _codes(obs.get("code"))
        value = _value_text(obs)
        low = label.lower()
        if "tongue" in codes or "舌" in label or "tongue" in low:
            if value:
                tongue.append(value)
        elif "pulse" in codes or "脉" in label or "pulse" in low:
            if value:
                pulse.append(value)
        elif value:
            text.append(value)
        elif label and obs.get("valueBoolean") is False:
            text.append(f"无{label}")
        elif label and not any(k.startswith("value") for k in obs):
            symptoms.append(label)
        elif label and obs.get("valueBoolean") is True:
            symptoms.append(label)
    disease: str | None = None
    western: list[str] = []
    code_index = _code_index(kb)
    for cond in resources(prefetch.get("conditions")):
        if cond.get("resourceType") != "Condition":
            continue
        patient.update(impairments_of(cond))
        clinical = _codes(cond.get("clinicalStatus"))
        verification = _codes(cond.get("verificationStatus"))
        if clinical & {"inactive", "resolved", "remission"} or verification & {"refuted", "entered-in-error"}:
            continue
        name = _text(cond.get("code"))
        hit = next((code_index[c] for c in _icd_codes(cond.get("code")) if c in code_index), None)
        if hit is None and name:
            r = kb.resolve(name, "disease")
            if r.resolved and r.id:
                hit = kb.diseases[r.id].name
            else:
                rs = kb.resolve(name, "syndrome")
                if rs.resolved and rs.id:
                    hit = kb.diseases[kb.syndromes[rs.id].disease_id].name
        if hit is not None:
            disease = disease or hit
        elif name:
            western.append(name)
    req: dict[str, Any] = {}
    if text:
        req["text"] = "。".join(text)
    if symptoms:
        req["symptoms"] = symptoms
    if tongue:
        req["tongue"] = tongue
    if pulse:
        req["pulse"] = pulse
    if disease:
        req["disease"] = disease
    if western:
        req["western_diagnoses"] = western
    if not (text or symptoms or tongue or pulse):
        return None
    if patient:
        req["patient"] = patient
    return req


def _code_index(kb: Any) -> dict[str, str]:
    """ICD-11 TM1 disorder codes -> the disease name, for codes that name one disease.

    A code several differently named diseases share (SC93 for 乳蛾, 急乳蛾 and 慢乳蛾) is left out, so the
    Condition's text decides; pattern codes (a syndrome's) name no disease and are not indexed.
    """
    names: dict[str, set[str]] = {}
    for d in kb.diseases.values():
        if "icd11" in d.codes:
            names.setdefault(str(d.codes["icd11"]), set()).add(d.name)
    return {code: next(iter(n)) for code, n in names.items() if len(n) == 1}


def _icd_codes(cc: Any) -> list[str]:
    """The codes of a CodeableConcept's ICD-11 codings (or of codings that name no system)."""
    if not isinstance(cc, dict):
        return []
    return [
        str(c["code"])
        for c in cc.get("coding") or []
        if isinstance(c, dict) and c.get("code") and str(c.get("system") or ICD_PREFIX).startswith(ICD_PREFIX)
    ]
