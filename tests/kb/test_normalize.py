"""Chinese numerals as clinical text writes them, read once for ages, doses and dates (kb.normalize.cn_number)."""

from __future__ import annotations

import pytest

from kb.normalize import cn_number


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("三", 3), ("十五", 15), ("二十", 20), ("二十五", 25), ("一百零五", 105), ("一百二十", 120), ("廿三", 23),
        ("卅", 30), ("两", 2), ("半", 0.5), ("三半", 3.5), ("零", 0),
        ("七八", 8), ("十八九", 19), ("二三十", 30),  # a range reads as its upper end
        ("12", 12), ("4.5", 4.5), ("4. 5", 4.5), ("１２", 12), (".5", 0.5),
    ],
)  # fmt: skip
def test_reads_digits_and_chinese_numerals(text: str, value: float) -> None:
    assert cn_number(text) == value


@pytest.mark.parametrize("text", ["", "三二", "半三", "克", "三克", "4..5", "abc"])
def test_what_is_not_one_number_is_none(text: str) -> None:
    assert cn_number(text) is None


def test_doses_ages_and_dates_use_it() -> None:
    from cds.extract import demographics
    from cds.prescription import parse_dose
    from training.deid import Deidentifier

    assert parse_dose("三十克", "items[0].dose") == (30.0, None)  # 三十 was refused before the parsers were merged
    assert parse_dose("半两", "items[0].dose")[0] == 15.0
    assert demographics("患者，女，二十五岁。").age_years == 25
    found = Deidentifier(salt=b"t").find("患者九十二岁，咳嗽。八十九岁者不计。")
    assert [(r.type, r.start) for r in found] == [("age", 2)]  # over 89 only
