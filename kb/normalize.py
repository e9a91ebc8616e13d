"""Text normalisation for names: full-width forms, stray whitespace and punctuation, traditional characters.

The traditional -> simplified table is built once from OpenCC's character dictionary (the
``opencc-python-reimplemented`` package ships it) and applied with ``str.translate``, so one normalisation costs a
few microseconds. Only one-to-one character mappings are used: a traditional character with several simplified
readings keeps its first (most common) one, which is what OpenCC itself does for single characters.
"""

from __future__ import annotations

import functools
import importlib.resources
import logging
import re
import unicodedata

logger = logging.getLogger(__name__)

# Characters that never belong to a name: whitespace of every kind, zero-width marks, and quoting punctuation.
_STRIP = re.compile(r"[\s\u200b\u200c\u200d\ufeff\u3000\"'“”‘’「」『』《》〈〉]+")
_EDGE_PUNCT = "，,。.；;：:、!！?？()（）[]【】-—_~·"

# Variant characters that OpenCC's table does not fold but that are written for herb names.
_EXTRA_VARIANTS = {
    "芪": "芪",
    "耆": "芪",  # 黄耆 -> 黄芪 (耆 is the classical spelling)
    "蔞": "蒌",
    "栝": "瓜",  # 栝楼 -> 瓜蒌 (with 樓/楼 -> 蒌 below)
    "樓": "蒌",
    "藶": "苈",
    "朮": "术",
    "薑": "姜",
    "麯": "曲",
    "鉤": "钩",
    "黃": "黄",
}


@functools.cache
def t2s_table() -> dict[int, str]:
    """The traditional -> simplified character table as a ``str.translate`` mapping."""
    table: dict[int, str] = {}
    try:
        files = importlib.resources.files("opencc") / "dictionary" / "TSCharacters.txt"
        text = files.read_text(encoding="utf-8")
    except (FileNotFoundError, ModuleNotFoundError, OSError):  # pragma: no cover - dependency missing
        logger.warning("OpenCC dictionary not found; traditional characters will not be folded")
        text = ""
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) != 2:
            continue
        trad, simp = parts[0], parts[1].split(" ")[0]
        if len(trad) == 1 and len(simp) == 1 and trad != simp:
            table[ord(trad)] = simp
    for trad, simp in _EXTRA_VARIANTS.items():
        if trad != simp:
            table[ord(trad)] = simp
    return table


def normalize(text: str) -> str:
    """NFKC (full-width -> ASCII), no whitespace or quotes, no edge punctuation, simplified characters.

    Latin-script names (pinyin, Latin pharmaceutical names) are lower-cased and lose their tone marks.
    """
    s = text if unicodedata.is_normalized("NFKC", text) else unicodedata.normalize("NFKC", text)
    s = _STRIP.sub("", s)
    s = s.strip(_EDGE_PUNCT)
    if s.isascii():
        return s.lower()
    if not has_cjk(s):
        return "".join(ch for ch in unicodedata.normalize("NFKD", s) if not unicodedata.combining(ch)).lower()
    return s.translate(t2s_table())


_CJK = re.compile(r"[\u3400-\u9fff]")


def has_cjk(text: str) -> bool:
    return _CJK.search(text) is not None


# Chinese numerals as clinical text writes them: ages (三岁, 二十五岁, 年七旬, 廿三), doses (三钱, 十五克, 半两) and dates.
CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
CN_NUMERALS = frozenset(CN_DIGITS) | frozenset("十百廿卅半")


def cn_number(text: str) -> float | None:
    """The value of a number written in digits ('12', '4.5', '4. 5', full-width '１２') or in Chinese numerals ('三',
    '十五', '二十', '一百零五', '廿三', '两', '半', '三半' = 3.5), else None. A range of two neighbouring digits reads
    as its upper end, as an age or a dose is meant (七八岁 -> 8, 十八九 -> 19, 二三十 -> 30); other digits in a row
    ('三二') are not one number and give None: callers that read 叶天士's '某，三二，' (32) do so themselves."""
    s = unicodedata.normalize("NFKC", text).replace(" ", "")
    if not s:
        return None
    if s[0].isdigit() or s[0] == ".":
        try:
            return float(s)
        except ValueError:
            return None
    total, cur, last_digit = 0.0, 0.0, False
    for i, ch in enumerate(s):
        if ch in CN_DIGITS:
            if last_digit and CN_DIGITS[ch] != cur + 1:
                return None
            cur, last_digit = float(CN_DIGITS[ch]), ch not in "零〇"
            continue
        last_digit = False
        if ch == "十":
            total, cur = total + (cur or 1) * 10, 0.0
        elif ch == "百":
            total, cur = total + (cur or 1) * 100, 0.0
        elif ch == "廿":
            total += 20
        elif ch == "卅":
            total += 30
        elif ch == "半" and i == len(s) - 1:
            return total + cur + 0.5
        else:
            return None
    return total + cur
