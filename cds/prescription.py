"""Prescriptions in: the JSON form, doses with units, and the patient.

    {"patient": {"pregnant": true, "lactating": false, "age_years": 31, "sex": "female"},
     "items": [{"herb": "炙甘草", "dose": "6g"}, {"herb": "附子", "dose_g": 15, "preparation": "先煎"}],
     "days": 7, "setting": "outpatient"}

``dose`` is a string with a unit (g, 克, mg, 钱 = 3 g, 两 = 30 g, 分 = 0.3 g) or a count (3枚, 3片, 1个: accepted and
not dose-checked); ``dose_g`` a number of grams. Every malformed field raises ``InputError`` naming the item and
field, e.g. ``items[2].dose: negative dose '-3g'``.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, NamedTuple

from kb.errors import InputError
from kb.normalize import CN_NUMERALS, cn_number

# grams per unit; modern conversions used in Chinese practice (1 钱 ≈ 3 g, 1 两 ≈ 30 g, 1 分 ≈ 0.3 g)
MASS_UNITS: dict[str, float] = {
    "g": 1.0, "克": 1.0, "gram": 1.0, "grams": 1.0, "mg": 0.001, "毫克": 0.001, "kg": 1000.0, "千克": 1000.0,
    "钱": 3.0, "錢": 3.0, "两": 30.0, "兩": 30.0, "分": 0.3, "斤": 500.0,
}  # fmt: skip
COUNT_UNITS = frozenset("枚片个個只条條朵粒根节節张張对對头頭具丸袋支包")  # 丸袋支包: patent medicines
# a volume is kept as written, like a count: 鲜竹沥 30ml, 生姜汁 10ml, 藿香正气水 10ml are not grams
VOLUME_UNITS = frozenset({"ml", "毫升"})
SETTINGS = ("outpatient", "emergency", "inpatient", "discharge")
_NUM = r"(?P<num>[-+]?\d+(?:\.\d+)?|[-+]?\.\d+)"
_DOSE = re.compile(rf"^\s*{_NUM}\s*(?P<unit>[A-Za-z\u4e00-\u9fff]*)\s*$")


@dataclass(frozen=True, slots=True)
class Patient:
    pregnant: bool | None = None
    lactating: bool | None = None
    age_years: float | None = None
    sex: str | None = None  # female | male | None (unknown)
    hepatic_impairment: bool | None = None  # 肝功能不全
    renal_impairment: bool | None = None  # 肾功能不全

    def may_be_pregnant(self) -> bool:
        """Unknown pregnancy in someone who could be pregnant: not male, age 12–55 or unknown."""
        if self.pregnant is not None or self.sex == "male":
            return False
        return self.age_years is None or 12 <= self.age_years <= 55


class Item(NamedTuple):  # a NamedTuple: built once per item on the hot path, cheaper than a frozen dataclass
    pos: int  # the item's place in the prescription
    herb: str  # as written
    dose_g: float | None
    count_text: str | None  # a count dose as written (3枚), not dose-checked
    dose_text: str | None
    preparation: str | None


@dataclass(frozen=True, slots=True)
class Prescription:
    items: tuple[Item, ...]
    patient: Patient
    days: int | None
    setting: str | None
    id: str | None = None


_DOSE_MEMO: dict[str, tuple[float | None, str | None]] = {}


def parse_dose(text: Any, where: str) -> tuple[float | None, str | None]:
    """A dose string -> (grams, None) or (None, count text). Raises InputError for anything else."""
    hit = _DOSE_MEMO.get(text) if isinstance(text, str) else None
    if hit is not None:
        return hit
    out = _parse_dose(text, where)
    if len(_DOSE_MEMO) < 50_000:
        _DOSE_MEMO[text] = out
    return out


def _parse_dose(text: Any, where: str) -> tuple[float | None, str | None]:
    if not isinstance(text, str):
        raise InputError(f"dose must be a string with a unit such as '6g', got {text!r}", where)
    s = unicodedata.normalize("NFKC", text).strip().replace("，", "").replace(" ", "")
    if not s:
        raise InputError("empty dose", where)
    m = _DOSE.match(s)
    if m is None:
        if s[0] in CN_NUMERALS and len(s) >= 2 and s[-1] in COUNT_UNITS | set(MASS_UNITS):
            num, unit = _cn_number(s[:-1], where), s[-1]
        else:
            raise InputError(
                f"cannot read dose {text!r}: expected a number and a unit (g, 克, mg, 钱, 两, 分, 枚, 片)", where
            )
    else:
        num, unit = float(m.group("num")), m.group("unit")
    if not math.isfinite(num):
        raise InputError(f"dose {text!r} is not a finite number", where)
    if num < 0:
        raise InputError(f"negative dose {text!r}", where)
    if num == 0:
        raise InputError(f"zero dose {text!r}", where)
    if unit == "":
        raise InputError(f"dose {text!r} has no unit; write e.g. '{m.group('num') if m else s}g'", where)
    key = unit.lower() if unit.isascii() else unit
    if key in MASS_UNITS:
        return round(num * MASS_UNITS[key], 6), None
    if (len(unit) == 1 and unit in COUNT_UNITS) or key in VOLUME_UNITS:
        return None, text.strip()
    raise InputError(
        f"unknown unit {unit!r} in dose {text!r}; use g, 克, mg, 钱, 两, 分, a volume (ml) or a count (枚, 片, 个, 丸, 袋)",
        where,
    )


def _cn_number(s: str, where: str) -> float:
    v = cn_number(s)
    if v is None:
        raise InputError(f"cannot read the number {s!r}", where)
    return v


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"expected a number of grams, got {value!r}", where)
    v = float(value)
    if not math.isfinite(v):
        raise InputError(f"expected a finite number, got {value!r}", where)
    if v <= 0:
        raise InputError(f"dose must be positive, got {value!r}", where)
    return v


_PATIENT_MEMO: dict[tuple[Any, ...], Patient] = {}


def _patient(raw: Any) -> Patient:
    if raw is None:
        return Patient()
    if type(raw) is dict and len(raw) <= 4:
        key = tuple(sorted((k, v) for k, v in raw.items() if type(v) in (bool, int, float, str, type(None))))
        if len(key) == len(raw):
            hit = _PATIENT_MEMO.get(key)
            if hit is None:
                hit = _parse_patient(raw)
                if len(_PATIENT_MEMO) < 10_000:
                    _PATIENT_MEMO[key] = hit
            return hit
    return _parse_patient(raw)


def _parse_patient(raw: Any) -> Patient:
    if not isinstance(raw, dict):
        raise InputError(f"expected an object, got {type(raw).__name__}", "patient")
    out: dict[str, Any] = {}
    for key in ("pregnant", "lactating", "hepatic_impairment", "renal_impairment"):
        v = raw.get(key)
        if v is not None and not isinstance(v, bool):
            raise InputError(f"expected true, false or null, got {v!r}", f"patient.{key}")
        out[key] = v
    age = raw.get("age_years")
    if age is not None:
        if isinstance(age, bool) or not isinstance(age, (int, float)) or not math.isfinite(age) or not 0 <= age <= 130:
            raise InputError(f"expected an age in years between 0 and 130, got {age!r}", "patient.age_years")
        out["age_years"] = float(age)
    sex = raw.get("sex")
    if sex is not None:
        if not isinstance(sex, str):
            raise InputError(f"expected 'female', 'male' or null, got {sex!r}", "patient.sex")
        norm = {"female": "female", "f": "female", "女": "female", "male": "male", "m": "male", "男": "male"}
        norm.update({"other": None, "unknown": None})  # type: ignore[dict-item]
        if sex.strip().lower() not in norm:
            raise InputError(f"expected 'female', 'male' or null, got {sex!r}", "patient.sex")
        out["sex"] = norm[sex.strip().lower()]
    p = Patient(**out)
    if p.pregnant and p.sex == "male":
        raise InputError("contradictory patient data: pregnant is true but sex is male", "patient")
    return p


def parse(raw: Any) -> Prescription:
    """A JSON prescription (already decoded) -> Prescription. Raises InputError naming item and field."""
    if not isinstance(raw, dict):
        raise InputError(f"a prescription is a JSON object with `items`, got {type(raw).__name__}")
    if raw.get("resourceType") in ("MedicationRequest", "Bundle", "Medication"):
        from cds.fhir import prescription_from_fhir

        return prescription_from_fhir(raw)
    items_raw = raw.get("items")
    if items_raw is None:
        raise InputError("missing `items` (a list of {herb, dose} objects)", "items")
    if not isinstance(items_raw, list):
        raise InputError(f"`items` must be a list, got {type(items_raw).__name__}", "items")
    if not items_raw:
        raise InputError("`items` is empty: nothing to review", "items")
    items = []
    for i, it in enumerate(items_raw):
        # fast path for the common item shapes ({herb, dose} / {herb, dose_g}), memoised by their values
        key = None
        if type(it) is dict and len(it) == 2:
            herb, dose = it.get("herb"), it.get("dose", _NO)
            if type(herb) is str:
                key = (herb, dose) if dose is not _NO else (herb, "g", it.get("dose_g", _NO))
                hit = _ITEM_MEMO.get(key)
                if hit is not None:
                    items.append(tuple.__new__(Item, (i, *hit[1:])))
                    continue
        item = _parse_item(i, it)
        if key is not None and len(_ITEM_MEMO) < 50_000:
            _ITEM_MEMO[key] = item
        items.append(item)
    days = raw.get("days")
    if days is not None and (isinstance(days, bool) or not isinstance(days, int) or days <= 0):
        raise InputError(f"expected a positive whole number of days, got {days!r}", "days")
    setting = raw.get("setting")
    if setting is not None and setting not in SETTINGS:
        raise InputError(f"expected one of {', '.join(SETTINGS)}, got {setting!r}", "setting")
    rid = raw.get("id")
    return Prescription(
        tuple(items), _patient(raw.get("patient")), days, setting, str(rid) if rid is not None else None
    )


_NO = object()
_ITEM_MEMO: dict[tuple[Any, ...], Item] = {}


def _parse_item(i: int, it: Any) -> Item:
    """One item, validated; raises InputError naming the item and field."""
    where = f"items[{i}]"
    if not isinstance(it, dict):
        raise InputError(f"expected an object with `herb` and `dose`, got {type(it).__name__}", where)
    herb = it.get("herb")
    if not isinstance(herb, str) or not herb.strip():
        raise InputError("empty or missing herb name", f"{where}.herb")
    dose_g = count = None
    dose_text = it.get("dose")
    if it.get("dose_g") is not None:
        dose_g = _number(it["dose_g"], f"{where}.dose_g")
        if dose_text is not None:
            g, _ = parse_dose(dose_text, f"{where}.dose")
            if g is not None and abs(g - dose_g) > 1e-6:
                raise InputError(f"dose {dose_text!r} disagrees with dose_g {dose_g:g}", f"{where}.dose")
    elif dose_text is not None:
        dose_g, count = parse_dose(dose_text, f"{where}.dose")
    prep = it.get("preparation")
    if prep is not None and not isinstance(prep, str):
        raise InputError(f"expected a string such as '先煎', got {prep!r}", f"{where}.preparation")
    return Item(i, herb, dose_g, count, dose_text, prep.strip() if prep else None)
