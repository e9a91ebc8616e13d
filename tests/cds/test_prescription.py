"""Parsing prescriptions: doses with units, counts, and a clear error naming the item and field."""

from __future__ import annotations

import pytest

from cds.prescription import parse, parse_dose
from kb.errors import InputError


@pytest.mark.parametrize(
    ("text", "grams", "count"),
    [("6g", 6.0, None), ("6 g", 6.0, None), ("6克", 6.0, None), ("500mg", 0.5, None), ("3钱", 9.0, None),
     ("1两", 30.0, None), ("5分", 1.5, None), ("0.3G", 0.3, None), ("６ｇ", 6.0, None), ("三钱", 9.0, None),
     ("3枚", None, "3枚"), ("3片", None, "3片"), ("1个", None, "1个"), ("30ml", None, "30ml"), ("10 mL", None, "10 mL"),
     ("10毫升", None, "10毫升"), ("8丸", None, "8丸"), ("1袋", None, "1袋")],
)  # fmt: skip
def test_parse_dose(text: str, grams: float | None, count: str | None) -> None:
    assert parse_dose(text, "x") == (grams, count)


@pytest.mark.parametrize(
    ("dose", "message"),
    [("-3g", "negative"), ("abc", "cannot read"), ("3斗", "unknown unit"), ("3", "no unit"), ("", "empty"),
     ("0g", "zero"), (6, "string")],
)  # fmt: skip
def test_bad_dose_names_item_and_field(dose: object, message: str) -> None:
    with pytest.raises(InputError) as exc:
        parse({"items": [{"herb": "甘草", "dose": "6g"}, {"herb": "白术", "dose": dose}]})
    assert "items[1].dose" in str(exc.value) and message in str(exc.value)


@pytest.mark.parametrize(
    ("rx", "where"),
    [({}, "items"), ({"items": "oops"}, "items"), ({"items": []}, "items"), ({"items": [{"dose": "3g"}]}, "items[0].herb"),
     ({"items": [{"herb": "  ", "dose": "3g"}]}, "items[0].herb"), ({"items": [{"herb": "甘草", "dose_g": -1}]}, "items[0].dose_g"),
     ({"items": [{"herb": "甘草", "dose_g": "6"}]}, "items[0].dose_g"), ({"items": [{"herb": "甘草", "dose_g": 6, "dose": "9g"}]}, "items[0].dose"),
     ({"items": [{"herb": "甘草"}], "days": 0}, "days"), ({"items": [{"herb": "甘草"}], "setting": "moon"}, "setting"),
     ({"items": [{"herb": "甘草"}], "patient": {"pregnant": "yes"}}, "patient.pregnant"),
     ({"items": [{"herb": "甘草"}], "patient": {"pregnant": True, "sex": "male"}}, "patient"),
     ({"items": [{"herb": "甘草"}], "patient": {"age_years": -2}}, "patient.age_years"), ([], "")],
)  # fmt: skip
def test_bad_prescription(rx: object, where: str) -> None:
    with pytest.raises(InputError) as exc:
        parse(rx)
    assert where in str(exc.value)


def test_missing_patient_fields_are_unknown() -> None:
    rx = parse({"items": [{"herb": "甘草", "dose": "6g"}], "patient": {"sex": "female", "pregnant": None}})
    assert rx.patient.pregnant is None and rx.patient.may_be_pregnant()
    assert not parse({"items": [{"herb": "甘草"}], "patient": {"sex": "male"}}).patient.may_be_pregnant()
    assert not parse(
        {"items": [{"herb": "甘草"}], "patient": {"sex": "female", "age_years": 70}}
    ).patient.may_be_pregnant()
