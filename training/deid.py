"""De-identification of Chinese clinical text and structured case fields (after GB/T 37964-2019's process).

What is found, and what replaces it:

    name            surname + 某/某某, honorifics (王女士, 张先生, 朱女, 钱右, 李翁), 患者/姓名 cues,
                    X令正 / X之妻 forms, bare 某某                                          -> [姓名]
    id_number       18-digit resident ID numbers whose check digit (ISO 7064 MOD 11-2) and birth date are
                    valid                                                                   -> [身份证号]
    long_number     any other run of 15+ digits (an ID with a wrong check digit, a card number) -> [号码]
    phone           mobile (1[3-9]x, optional +86) and landline (0xx(x)-xxxxxxx(x), or after 电话/Tel)
                                                                                             -> [电话]
    record_number   the value after 病历号 / 住院号 / 门诊号 / 病案号 / 医保号 / 社保卡号 / 就诊卡号 / 床号 …
                                                                                             -> [病历号]
    address         a chain of administrative parts below province level (市/区/县/镇/村/路/街/号/室 …),
                    or anything after 住址/地址/家住 up to punctuation; the province is kept   -> [地址]
    date            exact dates (2023年5月6日, 2023-05-06, 5月6日, 七月十一日): shifted by a per-patient
                    offset (``date_mode="shift"``) or reduced to the year (``"year"``); a bare year is kept
    age             ages over 89 (92岁, 九十二岁)                                             -> [90岁以上]
    email, url, ip                                                                          -> [邮箱] [网址] [IP]

Each call returns the cleaned text and a list of :class:`Replacement` (type, span in the *original* text,
replacement) so the result can be audited; the original value is never logged or returned in the report.
Clinical words stay: herb names that start with a surname (王不留行, 徐长卿, 刘寄奴, 白术 …) are not names,
because a name needs a cue (某, an honorific, a context word) at a word boundary; herb names of an optional
``protect`` lexicon are never touched. Limits: a bare personal name without any cue is not found (that needs
a trained NER model), and a bare city name without an administrative suffix is not treated as an address.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import hmac
import io
import json
import logging
import os
import re
import secrets
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from kb.errors import InputError
from kb.normalize import CN_DIGITS, cn_number

logger = logging.getLogger(__name__)

DateMode = Literal["shift", "year"]
SALT_ENV = "TCM_DEID_SALT"

PLACEHOLDER = {
    "name": "[姓名]",
    "id_number": "[身份证号]",
    "long_number": "[号码]",
    "phone": "[电话]",
    "record_number": "[病历号]",
    "address": "[地址]",
    "date": "[日期]",
    "age": "[90岁以上]",
    "email": "[邮箱]",
    "url": "[网址]",
    "ip": "[IP]",
}
# direct identifiers: training refuses text that still contains these (dates and ages are quasi-identifiers)
DIRECT = frozenset({"name", "id_number", "long_number", "phone", "record_number", "address", "email", "url", "ip"})

# The common single-character surnames (百家姓 order, abridged) and the two-character ones.
SURNAMES_1 = set(
    "赵钱孙李周吴郑王冯陈褚卫蒋沈韩杨朱秦尤许何吕施张孔曹严华金魏陶姜戚谢邹喻柏水窦章云苏潘葛奚范彭郎鲁韦昌马"
    "苗凤花方俞任袁柳酆鲍史唐费廉岑薛雷贺倪汤滕殷罗毕郝邬安常乐于时傅皮卞齐康伍余元卜顾孟平黄和穆萧尹姚邵湛汪"
    "祁毛禹狄米贝明臧计伏成戴谈宋茅庞熊纪舒屈项祝董梁杜阮蓝闵席季麻强贾路娄危江童颜郭梅盛林刁钟徐邱骆高夏蔡田"
    "樊胡凌霍虞万支柯昝管卢莫经房裘缪干解应宗丁宣贲邓郁单杭洪包诸左石崔吉钮龚程嵇邢滑裴陆荣翁荀羊於惠甄曲家封"
    "芮羿储靳汲邴糜松井段富巫乌焦巴弓牧隗山谷车侯宓蓬全郗班仰秋仲伊宫宁仇栾暴甘钭厉戎祖武符刘景詹束龙叶幸司韶"
    "郜黎蓟薄印宿白怀蒲邰从鄂索咸籍赖卓蔺屠蒙池乔阴郁胥能苍双闻莘党翟谭贡劳逄姬申扶堵冉宰郦雍却璩桑桂濮牛寿通"
    "边扈燕冀郏浦尚农温别庄晏柴瞿阎充慕连茹习宦艾鱼容向古易慎戈廖庾终暨居衡步都耿满弘匡国文寇广禄阙东欧殳沃利"
    "蔚越夔隆师巩厍聂晁勾敖融冷訾辛阚那简饶空曾毋沙乜养鞠须丰巢关蒯相查后荆红游竺权逯盖益桓公佘覃"
)
SURNAMES_2 = (
    "欧阳", "司马", "上官", "诸葛", "东方", "皇甫", "尉迟", "公孙", "慕容", "长孙",
    "宇文", "司徒", "夏侯", "令狐", "端木", "轩辕", "西门", "南宫", "独孤", "呼延",
    "澹台", "公冶", "宗政", "濮阳", "太史", "申屠", "钟离", "闾丘",
)  # fmt: skip
_SUR = "(?:" + "|".join(SURNAMES_2) + "|[" + "".join(sorted(SURNAMES_1)) + "])"
_CJK = "[\u4e00-\u9fff]"
_BOUND_L = r"(?:(?<=^)|(?<=[\s，,。.；;：:、|（(“\"「『】\]])|(?<=患者)|(?<=病人)|(?<=病者)|(?<=姓名)|(?<=治))"
_BOUND_R = r"(?=$|[\s，,。.；;：:、|）)”\"」』【\[！!？?0-9０-９])"

NAME_PATTERNS = [
    # 王女士, 张先生, X令正, 王某之妻: a surname (+ up to 2 given-name characters) + a 2-character honorific
    re.compile(
        rf"{_SUR}{_CJK}{{0,2}}?(?:女士|先生|小姐|太太|夫人|同志|老师|师傅|大夫|令正|令郎|令爱|之妻|之子|之女|之母)"
    ),
    # 李某, 王某某, 患者王某某
    re.compile(rf"{_SUR}某某?"),
    # 朱女。 钱右, 金男， 陈氏。 李翁。 宗嫂。 : surname + one-character form, at word boundaries
    re.compile(rf"{_BOUND_L}{_SUR}(?:女|男|右|左|氏|翁|媪|妪|嫂|叟|姓|君|童|孩|姑|婆|妇|媳)(?:某+)?{_BOUND_R}"),
    # 姓名：王小明 / 患者：王小明 / 病人王小明，男
    re.compile(rf"(?<=姓名)[：:\s]*{_SUR}{_CJK}{{1,2}}(?={_BOUND_R[3:]}"),
    re.compile(rf"(?<=患者)[：:\s]*{_SUR}{_CJK}{{1,2}}(?=[，,、\s]*[男女])"),
    # a record that opens with a name and the patient's sex or age: 孟，女，二十一岁 / 伍，三二， / 张三，男，45岁
    # (a number without 岁 only after a bare surname: 何首乌，十五， is a herb and its dose)
    re.compile(
        rf"^(?:{_SUR}{_CJK}{{0,2}}?(?=[，,]\s*(?:[男女](?:[，,。\s]|$)|[\d一二三四五六七八九十廿卅两]{{1,4}}岁))"
        rf"|{_SUR}(?=[，,]\s*[一二三四五六七八九十廿卅两]{{2,4}}[，,。]))"
    ),
    # bare placeholder 某某 (a name already pseudonymised, still a name slot)
    re.compile(r"某某"),
]

ID_RE = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")
LONG_NUMBER_RE = re.compile(r"(?<![0-9A-Za-z])\d{15,}(?![0-9A-Za-z])")
MOBILE_RE = re.compile(r"(?<![0-9])(?:(?:\+|00)?86[-\s]?)?1[3-9]\d(?:[-\s]?\d{4}){2}(?![0-9])")
LANDLINE_RE = re.compile(
    r"(?<![0-9])(?:[(（]0\d{2,3}[)）]\s*|0\d{2,3}[-\s])\d{7,8}(?:-\d{1,5})?(?![0-9])"
    r"|(?<=电话)[：:\s]*\d{7,8}(?![0-9])|(?<=Tel)[：:.\s]*\d{7,8}(?![0-9])"
)
EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
URL_RE = re.compile(r"(?:https?://|ftp://|www\.)[^\s，。；、）)\"”]+", re.IGNORECASE)
IP_RE = re.compile(
    r"(?<![0-9.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![0-9.])"
)
IPV6_RE = re.compile(r"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}(?![0-9A-Fa-f:])")
RECORD_RE = re.compile(
    r"(?:病历号|病案号|住院号|门诊号|就诊号|就诊卡号|登记号|档案号|医保号|医保卡号|社保卡号|社保号|医疗保险号|保险号|"
    r"床号|住院编号|病历编号|ID号|MRN|HIS号)\s*[：:#]?\s*(?P<v>[A-Za-z0-9][A-Za-z0-9\-]{1,29})"
)
_ADDR_SUFFIX = "自治州|自治县|街道|胡同|大道|社区|小区|新村|花园|市|州|盟|县|区|旗|镇|乡|村|路|街|巷|弄|里"
_ADDR_NUMBERED = "号楼|号院|号|栋|幢|单元|室|层|楼|组"
_ADDR_NUM = "[0-9０-９一二三四五六七八九十]{1,5}"
_ADDR_PART = rf"(?:[\u4e00-\u9fff]{{2,8}}?(?:{_ADDR_SUFFIX})|{_ADDR_NUM}(?:{_ADDR_NUMBERED}))"
ADDRESS_LEAD_RE = re.compile(r".{0,3}?(?:住址|地址|家住|现住|住在|居住于|户籍地|籍贯|住)[：:\s]*")
ADDRESS_CHAIN_RE = re.compile(rf"(?:{_ADDR_PART}){{2,}}")
ADDRESS_CUE_RE = re.compile(r"(?:住址|地址|家住|现住|住在|居住于|户籍地|籍贯)[：:\s]*(?P<v>[^，,。；;\s|]{2,40})")
PROVINCE_RE = re.compile(
    r"(?:[\u4e00-\u9fff]{2,3}省|内蒙古自治区|广西壮族自治区|西藏自治区|宁夏回族自治区|新疆维吾尔自治区|北京市|天津市|上海市|重庆市)"
)
_CN = "[零〇一二三四五六七八九十]"
DATE_RES = [
    re.compile(r"(?<!\d)(?P<y>(?:19|20)\d{2})\s*(?:[-/.]\s*(?P<m>\d{1,2})\s*[-/.]\s*(?P<d>\d{1,2})(?!\d)|年\s*(?P<m2>\d{1,2})\s*月\s*(?P<d2>\d{1,2})\s*[日号])"),
    re.compile(rf"(?P<yc>[零〇一二三四五六七八九]{{4}})年(?P<mc>{_CN}{{1,3}})月(?P<dc>{_CN}{{1,3}})[日号]"),
    re.compile(r"(?<![\d年])(?P<m3>\d{1,2})\s*月\s*(?P<d3>\d{1,2})\s*[日号]"),
    re.compile(rf"(?<![年{_CN[1:-1]}])(?P<mc3>[正{_CN[1:-1]}]{{1,3}})月(?P<dc3>(?:初|廿|卅)?{_CN}{{1,3}})[日号]"),
]  # fmt: skip
AGE_RE = re.compile(rf"(?P<n>\d{{2,3}}|{_CN}{{2,4}}|百[零〇一二三四五六七八九十]*)\s*(?:周岁|岁)")


def _cn_int(s: str) -> int | None:
    v = cn_number(s)
    return int(v) if v is not None and v.is_integer() else None


def _cn_year(s: str) -> int | None:
    if len(s) == 4 and all(c in "零〇一二三四五六七八九" for c in s):
        return int("".join(str(CN_DIGITS[c]) for c in s))
    return None


def id_check_digit_ok(number: str) -> bool:
    """ISO 7064 MOD 11-2 check digit and a valid birth date of an 18-character resident ID number."""
    if len(number) != 18 or not number[:17].isdigit():
        return False
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    check = "10X98765432"[sum(int(c) * w for c, w in zip(number[:17], weights, strict=True)) % 11]
    if number[17].upper() != check:
        return False
    try:
        born = dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    return dt.date(1880, 1, 1) <= born <= dt.date.today()


@dataclass(frozen=True, slots=True)
class Replacement:
    """One replaced span: its type, its position in the original text, and what now stands there."""

    type: str
    start: int
    end: int
    replacement: str
    field: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "type": self.type,
            "start": self.start,
            "end": self.end,
            "replacement": self.replacement,
        }
        if self.field is not None:
            d["field"] = self.field
        return d


@dataclass(frozen=True, slots=True)
class DeidResult:
    text: str
    replacements: tuple[Replacement, ...]

    def counts(self) -> dict[str, int]:
        return dict(Counter(r.type for r in self.replacements))


@dataclass
class Deidentifier:
    """Find and replace identifiers. ``date_mode`` "shift" moves exact dates by a per-patient offset of
    ``±max_shift_days`` drawn from an HMAC of the patient key (``salt``: argument, ``$TCM_DEID_SALT``, else a
    random one for this run, so shifts are consistent within a run); "year" keeps only the year."""

    date_mode: DateMode = "shift"
    salt: bytes | None = None
    max_shift_days: int = 180
    protect: frozenset[str] = frozenset()
    _salt: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.date_mode not in ("shift", "year"):
            raise InputError(f"date mode must be 'shift' or 'year', got {self.date_mode!r}", "date_mode")
        env = os.environ.get(SALT_ENV)
        self._salt = self.salt or (env.encode() if env else secrets.token_bytes(16))
        self._protect_re = (
            re.compile("|".join(sorted(map(re.escape, self.protect), key=len, reverse=True))) if self.protect else None
        )

    # ---- offsets --------------------------------------------------------------------------------
    def shift_days(self, patient_key: str) -> int:
        digest = hmac.new(self._salt, patient_key.encode("utf-8"), hashlib.sha256).digest()
        span = 2 * self.max_shift_days + 1
        days = int.from_bytes(digest[:4], "big") % span - self.max_shift_days
        return days or 1  # never a zero shift

    # ---- detection ------------------------------------------------------------------------------
    def find(self, text: str, patient_key: str | None = None) -> list[Replacement]:
        """Every identifier span in ``text`` (non-overlapping, earliest and longest first)."""
        cands: list[tuple[int, int, str, str]] = []  # start, end, type, replacement

        def add(s: int, e: int, kind: str, rep: str | None = None) -> None:
            if e > s:
                cands.append((s, e, kind, PLACEHOLDER[kind] if rep is None else rep))

        for m in EMAIL_RE.finditer(text):
            add(m.start(), m.end(), "email")
        for m in URL_RE.finditer(text):
            add(m.start(), m.end(), "url")
        for m in IP_RE.finditer(text):
            add(m.start(), m.end(), "ip")
        for m in IPV6_RE.finditer(text):
            add(m.start(), m.end(), "ip")
        for m in ID_RE.finditer(text):
            add(m.start(), m.end(), "id_number" if id_check_digit_ok(m.group()) else "long_number")
        for m in LONG_NUMBER_RE.finditer(text):
            add(m.start(), m.end(), "long_number")
        for m in RECORD_RE.finditer(text):
            add(m.start("v"), m.end("v"), "record_number")
        for m in MOBILE_RE.finditer(text):
            add(m.start(), m.end(), "phone")
        for m in LANDLINE_RE.finditer(text):
            s = m.start() + len(m.group()) - len(m.group().lstrip("：:. \t"))
            add(s, m.end(), "phone")
        for m in ADDRESS_CUE_RE.finditer(text):
            self._add_address(text, m.start("v"), m.end("v"), add)
        for m in ADDRESS_CHAIN_RE.finditer(text):
            self._add_address(text, m.start(), m.end(), add)
        for pat in NAME_PATTERNS:
            for m in pat.finditer(text):
                s, e = m.start(), m.end()
                while s < e and text[s] in "：: \t":
                    s += 1
                add(s, e, "name")
        for m in AGE_RE.finditer(text):
            n = _cn_int(m.group("n"))
            if n is not None and 89 < n < 150:
                add(m.start(), m.end(), "age")
        for pat in DATE_RES:
            for m in pat.finditer(text):
                rep = self._date_replacement(m, patient_key)
                if rep is not None:
                    add(m.start(), m.end(), "date", rep)
        return self._resolve(text, cands)

    def _add_address(self, text: str, s: int, e: int, add: Any) -> None:
        cue = ADDRESS_LEAD_RE.match(text, s, e)
        if cue:
            s = cue.end()
        prov = PROVINCE_RE.match(text, s, e)
        if prov:
            s = prov.end()  # the province stays
        if e - s >= 2:
            add(s, e, "address")

    def _resolve(self, text: str, cands: list[tuple[int, int, str, str]]) -> list[Replacement]:
        protected: list[tuple[int, int]] = []
        if self._protect_re is not None:
            protected = [(m.start(), m.end()) for m in self._protect_re.finditer(text)]
        priority = {
            "email": 0,
            "url": 0,
            "id_number": 1,
            "record_number": 2,
            "phone": 3,
            "long_number": 4,
            "ip": 5,
        }
        cands.sort(key=lambda c: (c[0], -(c[1] - c[0]), priority.get(c[2], 9)))
        out: list[Replacement] = []
        last_end = 0
        for s, e, kind, rep in cands:
            if s < last_end:
                continue
            if kind == "name" and any(ps < e and s < pe for ps, pe in protected):
                continue
            out.append(Replacement(kind, s, e, rep))
            last_end = e
        return out

    def _date_replacement(self, m: re.Match[str], patient_key: str | None) -> str | None:
        g = m.groupdict()
        year: int | None = None
        month: int | None = None
        day: int | None = None
        if g.get("y"):
            year = int(g["y"])
            month = int(g.get("m") or g.get("m2") or 0)
            day = int(g.get("d") or g.get("d2") or 0)
        elif g.get("yc"):
            year, month, day = _cn_year(g["yc"]), _cn_int(g["mc"]), _cn_int(g["dc"])
        elif g.get("m3"):
            month, day = int(g["m3"]), int(g["d3"])
        elif g.get("mc3"):  # classical/lunar month-day: 七月十一日, 正月初三日
            mc = g["mc3"].replace("正", "一")
            dc = g["dc3"].replace("初", "").replace("廿", "二十").replace("卅", "三十")
            month, day = _cn_int(mc), _cn_int(dc)
        if not month or not day or not (1 <= month <= 12 and 1 <= day <= 31):
            return None
        if year is None:
            return PLACEHOLDER["date"]  # an exact day without a year cannot be shifted or reduced
        if self.date_mode == "year":
            return f"{year}年"
        try:
            d = dt.date(year, month, day)
        except ValueError:
            return f"{year}年"
        shifted = d + dt.timedelta(days=self.shift_days(patient_key or "_"))
        return shifted.isoformat()

    # ---- application ----------------------------------------------------------------------------
    def deidentify(self, text: str, patient_key: str | None = None, field: str | None = None) -> DeidResult:
        reps = self.find(text, patient_key)
        parts: list[str] = []
        pos = 0
        for r in reps:
            parts.append(text[pos : r.start])
            parts.append(r.replacement)
            pos = r.end
        parts.append(text[pos:])
        if field is not None:
            reps = [Replacement(r.type, r.start, r.end, r.replacement, field) for r in reps]
        return DeidResult("".join(parts), tuple(reps))

    def deidentify_record(
        self, record: dict[str, Any], patient_key: str | None = None
    ) -> tuple[dict[str, Any], list[Replacement]]:
        """A JSON object: identifier-named fields are replaced whole; other strings are cleaned as text."""
        key = patient_key or _patient_key(record)
        report: list[Replacement] = []
        cleaned = self._walk(record, "", key, report)
        return cleaned, report

    def _walk(self, value: Any, path: str, key: str, report: list[Replacement]) -> Any:
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                sub = f"{path}.{k}" if path else str(k)
                kind = FIELD_TYPES.get(str(k).lower())
                if kind is not None and v not in (None, ""):
                    out[k] = self._field(kind, v, sub, key, report)
                else:
                    out[k] = self._walk(v, sub, key, report)
            return out
        if isinstance(value, list):
            return [self._walk(v, f"{path}[{i}]", key, report) for i, v in enumerate(value)]
        if isinstance(value, str):
            res = self.deidentify(value, key, path)
            report.extend(res.replacements)
            return res.text
        return value

    def _field(self, kind: str, value: Any, path: str, key: str, report: list[Replacement]) -> Any:
        text = str(value)
        if kind == "age":
            n = _cn_int(text.rstrip("岁").strip()) if isinstance(value, str) else value
            if isinstance(n, int | float) and n > 89:
                report.append(Replacement("age", 0, len(text), "90+", path))
                return "90+"
            return value
        if kind == "date":
            res = self.deidentify(text, key, path)
            if res.replacements:
                report.extend(res.replacements)
                return res.text
            m = re.match(r"^\s*((?:19|20)\d{2})", text)
            rep = f"{m.group(1)}" if m else PLACEHOLDER["date"]
            if rep != text:
                report.append(Replacement("date", 0, len(text), rep, path))
            return rep
        report.append(Replacement(kind, 0, len(text), PLACEHOLDER[kind], path))
        return PLACEHOLDER[kind]

    def scan(self, texts: Iterable[str]) -> Counter[str]:
        """Counts of direct identifiers per type over many texts (nothing is changed)."""
        counts: Counter[str] = Counter()
        for t in texts:
            for r in self.find(t):
                if r.type in DIRECT:
                    counts[r.type] += 1
        return counts


FIELD_TYPES: dict[str, str] = {
    **dict.fromkeys(["name", "patient_name", "姓名", "患者姓名", "full_name", "doctor_name"], "name"),
    **dict.fromkeys(["id_number", "id_card", "身份证", "身份证号", "national_id"], "id_number"),
    **dict.fromkeys(["phone", "mobile", "tel", "telephone", "电话", "手机", "联系电话"], "phone"),
    **dict.fromkeys(["address", "addr", "住址", "地址", "home_address"], "address"),
    **dict.fromkeys(
        [
            "mrn",
            "record_number",
            "medical_record_number",
            "admission_number",
            "insurance_number",
            "病历号",
            "住院号",
            "门诊号",
            "医保号",
            "patient_id",
        ],
        "record_number",
    ),
    **dict.fromkeys(["email", "邮箱"], "email"),
    **dict.fromkeys(["birth_date", "dob", "birthday", "出生日期", "visit_date", "admission_date", "date"], "date"),
    **dict.fromkeys(["age", "年龄"], "age"),
    **dict.fromkeys(["ip", "ip_address"], "ip"),
}


def _patient_key(record: dict[str, Any]) -> str:
    for k in ("patient_id", "mrn", "record_number", "id_number", "name", "patient_name", "id"):
        v = record.get(k) if isinstance(record, dict) else None
        if v not in (None, ""):
            return f"{k}:{v}"
        meta = record.get("metadata") if isinstance(record, dict) else None
        if isinstance(meta, dict) and meta.get(k) not in (None, ""):
            return f"{k}:{meta[k]}"
    return json.dumps(record, sort_keys=True, ensure_ascii=False)[:200]


# ------------------------------------------------------------------------------------------------
# files


@dataclass(frozen=True, slots=True)
class FileReport:
    rows: int
    rows_changed: int
    counts: dict[str, int]
    format: str
    date_mode: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "rows_changed": self.rows_changed,
            "replaced": self.counts,
            "format": self.format,
            "date_mode": self.date_mode,
        }


def _rows_jsonl(text: str, src: Path) -> Iterator[tuple[int, Any]]:
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield i, json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{src.name} line {i}: invalid JSON ({exc.msg}, column {exc.colno})", "IN") from exc


def deidentify_file(
    src: Path,
    dst: Path,
    deid: Deidentifier,
    audit: Path | None = None,
    fmt: str | None = None,
) -> FileReport:
    """De-identify a JSONL or TSV file into ``dst`` atomically (temp file + rename; no half-written output).
    ``audit`` (optional) receives one JSON line per replacement: row, field, type, span, replacement."""
    if not src.is_file():
        raise InputError(f"input file {str(src)!r} does not exist", "IN")
    if dst.exists() and dst.resolve() == src.resolve():
        raise InputError("output must differ from input", "OUT")
    if not dst.parent.is_dir():
        raise InputError(f"output folder {str(dst.parent)!r} does not exist", "OUT")
    fmt = fmt or ("jsonl" if src.suffix.lower() in (".jsonl", ".json", ".ndjson") else "tsv")
    if fmt not in ("jsonl", "tsv"):
        raise InputError(f"format must be jsonl or tsv, got {fmt!r}", "format")
    try:
        text = src.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{src.name} is not UTF-8 text", "IN") from exc
    counts: Counter[str] = Counter()
    rows = changed = 0
    out = io.StringIO()
    audit_lines: list[str] = []
    if fmt == "jsonl":
        for i, obj in _rows_jsonl(text, src):
            rows += 1
            if isinstance(obj, dict):
                clean, reps = deid.deidentify_record(obj)
            elif isinstance(obj, str):
                res = deid.deidentify(obj, f"row:{i}")
                clean, reps = res.text, list(res.replacements)
            else:
                clean, reps = obj, []
            changed += bool(reps)
            counts.update(r.type for r in reps)
            audit_lines += [json.dumps({"row": i, **r.to_dict()}, ensure_ascii=False) for r in reps]
            out.write(json.dumps(clean, ensure_ascii=False) + "\n")
    else:
        reader = csv.reader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE)
        writer = csv.writer(out, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\", lineterminator="\n")
        for i, cells in enumerate(reader, start=1):
            rows += 1
            new_cells, row_reps = [], []
            for j, cell in enumerate(cells):
                res = deid.deidentify(cell, f"row:{i}", f"col{j}")
                new_cells.append(res.text)
                row_reps += res.replacements
            changed += bool(row_reps)
            counts.update(r.type for r in row_reps)
            audit_lines += [json.dumps({"row": i, **r.to_dict()}, ensure_ascii=False) for r in row_reps]
            writer.writerow(new_cells)
    _atomic_write(dst, out.getvalue())
    if audit is not None:
        _atomic_write(audit, "".join(line + "\n" for line in audit_lines))
    logger.info("de-identified %d rows (%d changed): %s", rows, changed, dict(counts))
    return FileReport(rows, changed, dict(sorted(counts.items())), fmt, deid.date_mode)


def _atomic_write(path: Path, content: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def require_no_identifiers(texts: Iterable[str], allow: bool = False, what: str = "training data") -> dict[str, int]:
    """Scan ``texts`` for direct identifiers; raise unless ``allow``. Returns the counts (for the card)."""
    counts = dict(Deidentifier(date_mode="year").scan(texts))
    if counts and not allow:
        found = ", ".join(f"{k} ({v})" for k, v in sorted(counts.items()))
        raise InputError(
            f"{what} still contains direct identifiers: {found}. De-identify it first (`tcm deid IN OUT`), "
            "or pass --allow-identifiers for a published research corpus whose terms permit it",
            "data",
        )
    if counts:
        logger.warning("training on text with direct identifiers (allowed): %s", counts)
    return counts
