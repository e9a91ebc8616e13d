"""De-identification: every identifier type is found; clinical text survives; files are atomic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kb.errors import InputError
from training.deid import Deidentifier, deidentify_file, id_check_digit_ok, require_no_identifiers

VALID_ID = "11010519491231002X"  # a made-up number with a valid check digit and birth date
BAD_CHECK_ID = "110105194912310021"


@pytest.fixture
def deid() -> Deidentifier:
    return Deidentifier(date_mode="shift", salt=b"test-salt")


def kinds(d: Deidentifier, text: str) -> list[str]:
    return [r.type for r in d.find(text)]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("患者王某某，女，45岁。", "name"),
        ("李某，男。", "name"),
        ("王女士来诊。", "name"),
        ("张先生诉头痛。", "name"),
        ("朱女。多产体力暗耗。", "name"),
        ("钱右，新产气血大亏。", "name"),
        ("某某来诊。", "name"),
        ("孟，女，二十一岁。三月。上海。", "name"),
        ("伍，三二，发热浃旬，干咳不止。", "name"),
        ("张小明，男，45岁，咳嗽。", "name"),
        ("姓名：陈小明，性别男。", "name"),
        ("吴书彝令正，患小便不通。", "name"),
        (f"身份证号{VALID_ID}。", "id_number"),
        (f"号码{BAD_CHECK_ID}。", "long_number"),
        ("手机13812345678。", "phone"),
        ("手机 +86 138-1234-5678。", "phone"),
        ("电话010-62345678。", "phone"),
        ("电话（0571）87654321。", "phone"),
        ("住院号ZY20230506，", "record_number"),
        ("病历号：123456。", "record_number"),
        ("医保卡号A1234567890。", "record_number"),
        ("家住浙江省杭州市西湖区文三路123号。", "address"),
        ("邮箱 zhang.san@example.com 。", "email"),
        ("见 https://example.org/case?id=7 。", "url"),
        ("来自 192.168.10.20 。", "ip"),
        ("2023年5月6日初诊。", "date"),
        ("2023-05-06 初诊。", "date"),
        ("二〇二三年五月六日初诊。", "date"),
        ("七月十一日复诊。", "date"),
        ("患者92岁。", "age"),
        ("年已九十五岁。", "age"),
    ],
)
def test_each_identifier_type_is_found(deid: Deidentifier, text: str, expected: str) -> None:
    res = deid.deidentify(text, "p1")
    assert expected in [r.type for r in res.replacements], (text, res.replacements)
    for r in res.replacements:  # the report never carries the original value
        assert set(r.to_dict()) <= {"type", "start", "end", "replacement", "field"}
        assert r.replacement in res.text


def test_check_digit() -> None:
    assert id_check_digit_ok(VALID_ID)
    assert not id_check_digit_ok(BAD_CHECK_ID)
    assert not id_check_digit_ok("110105194913310028")  # month 13


@pytest.mark.parametrize(
    "text",
    [
        "处方：生地黄15g，王不留行10g，徐长卿12g，刘寄奴9g，使君子3钱，白术三钱，黄芪30g。",
        "生地黄女贞子白芍钱半，马钱子0.3g，何首乌15克，高良姜6克，金银花9克，石斛12克。",
        "咳嗽三日，痰黄，咽痛，舌红苔黄，脉浮数，小便不利，腹痛拒按。",
        "2019年采收的黄芪，三钱；患者45岁。上方服三剂。",
        "先与和阳明之阳，以为坐镇中州之计。",
        "黄芪，十五克。陈皮，三钱，半夏，二钱。",
        "高热，三日不退。白术，土炒。",
        "何首乌，十五，水煎服。",
    ],
)
def test_clinical_text_survives(deid: Deidentifier, text: str) -> None:
    res = deid.deidentify(text)
    assert res.text == text, res.replacements


def test_province_kept_and_below_replaced(deid: Deidentifier) -> None:
    res = deid.deidentify("家住浙江省杭州市西湖区文三路123号。")
    assert res.text == "家住浙江省[地址]。"


def test_date_shift_is_consistent_per_patient_and_year_mode(deid: Deidentifier) -> None:
    a1 = deid.deidentify("2023年5月6日初诊，2023年5月9日复诊。", "patient-A").text
    assert "2023年5月6日" not in a1 and "[日期]" not in a1
    import datetime as dt

    d1, d2 = (dt.date.fromisoformat(x[:10]) for x in a1.replace("初诊，", "|").replace("复诊。", "").split("|"))
    assert (d2 - d1).days == 3  # intervals survive a consistent shift
    assert deid.deidentify("2023年5月6日", "patient-A").text == deid.deidentify("2023年5月6日", "patient-A").text
    year = Deidentifier(date_mode="year").deidentify("2023年5月6日初诊。").text
    assert year == "2023年初诊。"


def test_structured_record(deid: Deidentifier) -> None:
    rec = {
        "id": "r1",
        "name": "王小明",
        "age": 93,
        "phone": "13812345678",
        "birth_date": "1930-02-03",
        "metadata": {"mrn": "MR-99812", "source": "invented"},
        "text": "王女士主诉头痛。处方：徐长卿12g。",
    }
    clean, report = deid.deidentify_record(rec)
    assert clean["name"] == "[姓名]" and clean["age"] == "90+" and clean["phone"] == "[电话]"
    assert clean["metadata"]["mrn"] == "[病历号]" and clean["metadata"]["source"] == "invented"
    assert clean["text"] == "[姓名]主诉头痛。处方：徐长卿12g。"
    assert clean["birth_date"] != "1930-02-03"
    fields = {r.field for r in report}
    assert {"name", "age", "phone", "metadata.mrn", "text", "birth_date"} <= fields
    dumped = json.dumps([r.to_dict() for r in report], ensure_ascii=False)
    for secret in ("王小明", "13812345678", "MR-99812"):
        assert secret not in dumped


def test_protect_lexicon(deid: Deidentifier) -> None:
    d = Deidentifier(protect=frozenset({"陈氏"}))
    assert d.deidentify("。陈氏。").text == "。陈氏。"


def test_deid_file_jsonl_and_tsv(tmp_path: Path, deid: Deidentifier) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": "1", "name": "李四", "text": "电话13912345678"}, ensure_ascii=False) + "\n")
    dst, audit = tmp_path / "out.jsonl", tmp_path / "audit.jsonl"
    rep = deidentify_file(src, dst, deid, audit)
    assert rep.rows == 1 and rep.rows_changed == 1 and rep.counts == {"name": 1, "phone": 1}
    out = json.loads(dst.read_text())
    assert out == {"id": "1", "name": "[姓名]", "text": "电话[电话]"}
    assert "13912345678" not in audit.read_text() and "李四" not in audit.read_text()
    tsv = tmp_path / "in.tsv"
    tsv.write_text("3\t朱女。月经不调，处方：当归9克。\n0\t咳嗽。\n", encoding="utf-8")
    rep = deidentify_file(tsv, tmp_path / "out.tsv", deid)
    assert (tmp_path / "out.tsv").read_text(encoding="utf-8") == "3\t[姓名]。月经不调，处方：当归9克。\n0\t咳嗽。\n"
    assert rep.rows == 2 and rep.rows_changed == 1


def test_deid_file_is_atomic_on_bad_input(tmp_path: Path, deid: Deidentifier) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "王女士"}\n{broken\n', encoding="utf-8")
    dst = tmp_path / "out.jsonl"
    with pytest.raises(InputError, match="line 2: invalid JSON"):
        deidentify_file(src, dst, deid)
    assert not dst.exists()
    assert list(tmp_path.iterdir()) == [src]  # no temp file left behind


def test_training_refuses_identifiers_unless_allowed() -> None:
    texts = ["咳嗽三日。", "患者王某某，电话13812345678。"]
    with pytest.raises(InputError, match=r"name \(1\), phone \(1\).*--allow-identifiers"):
        require_no_identifiers(texts)
    assert require_no_identifiers(texts, allow=True) == {"name": 1, "phone": 1}
    assert require_no_identifiers(["咳嗽三日。", "处方：徐长卿12g。"]) == {}
