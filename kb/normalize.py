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
