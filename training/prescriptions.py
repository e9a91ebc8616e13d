"""Extract prescriptions (herbs and doses) from Chinese case text.

Case records write prescriptions in a few ways, usually as their own ``|``-separated segment:

    处方：瞿麦9克猪赤苓各6克泽泻6克 …             labelled, modern doses in 克 / g
    藿香梗二钱，半夏二钱，广皮炭一钱，神曲炭钱半 …    classical doses (钱, 两, 分; 钱半 = 1.5 钱; 一钱五分 = 1.5 钱)
    生龙骨桂枝生牡蛎淮小麦炙甘草南枣                 bare names run together, no doses

A segment counts as a prescription when it starts with a label (处方 / 方药 / 药用 / 方用 …) or when most of
its characters are herb names and doses. Names are matched greedily (longest first) against a lexicon of herb
names, optionally behind processing prefixes (炒, 炙, 生, 酒 …) and before suffixes (炭, 霜, 末 …); the
lexicon comes from the data directory's herb lists, so nothing clinical is written into this code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from kb.normalize import cn_number

# Processing and provenance words written before a herb's name (生 raw, 炒 stir-fried, 川 Sichuan …).
PREFIXES = tuple(
    sorted(
        {
            "生", "炒", "炙", "制", "焦", "煨", "酒", "醋", "盐", "姜", "蜜", "熟", "鲜", "干", "净",
            "嫩", "老", "川", "广", "淮", "怀", "杭", "西", "北", "南", "东", "左", "抱", "真", "上",
            "大", "小", "细", "粉",
            "土炒", "麸炒", "酒炒", "盐水炒", "醋炒", "姜汁炒", "蜜炙", "米炒", "炒黑", "炒焦",
            "清炙", "制川",
            "建", "云", "原", "霍", "光", "明", "整", "陈", "青", "赤", "白", "黑", "紫", "湘", "辰", "朱",
        },
        key=len,
        reverse=True,
    )
)  # fmt: skip
SUFFIXES = ("炭", "霜", "末", "粉", "汁", "片", "肉", "心", "皮", "身", "须", "尾", "梗", "仁")

UNITS = {
    "克": "g", "g": "g", "G": "g", "钱": "钱", "两": "两", "分": "分", "厘": "厘", "毫升": "ml", "ml": "ml",
    "枚": "枚", "片": "片", "粒": "粒", "只": "只", "个": "个", "条": "条", "支": "支", "茎": "茎",
    "根": "根",
    "朵": "朵", "匙": "匙", "杯": "杯", "盏": "盏",
}  # fmt: skip
GRAMS = {"g": 1.0, "钱": 3.0, "两": 30.0, "分": 0.3, "厘": 0.03}  # modern convention: 1 钱 ≈ 3 g
LABELS = ("处方", "方药", "药用", "方用", "药物", "方剂", "用药", "拟方", "方")

_NUM = r"(?:\d+(?:\s*\.\s*\d+)?|[零〇一二三四五六七八九十百两半]+)"
_UNIT = "|".join(sorted(map(re.escape, UNITS), key=len, reverse=True))
DOSE_RE = re.compile(
    rf"(?P<each>各)?\s*(?P<num>{_NUM})?\s*(?P<unit>{_UNIT})(?:\s*(?P<num2>{_NUM})\s*(?P<unit2>分|厘))?(?P<half>半)?"
)
LABEL_RE = re.compile(rf"^\s*(?:{'|'.join(LABELS)})\s*[：:]")


@dataclass(frozen=True, slots=True)
class ExtractedHerb:
    name: str  # the lexicon name
    surface: str  # as written, with prefixes/suffixes
    dose: float | None
    unit: str | None
    dose_g: float | None  # converted for weight units (1 钱 = 3 g, 1 两 = 30 g, 1 分 = 0.3 g)


@dataclass(frozen=True, slots=True)
class Prescription:
    segment: int  # index of the |-separated segment it came from
    herbs: tuple[ExtractedHerb, ...]


class HerbLexicon:
    """Herb names for greedy longest-match, with processing prefixes and suffixes."""

    def __init__(self, names: Iterable[str]):
        self.names = frozenset(n.strip() for n in names if len(n.strip()) >= 2)
        self.max_len = max((len(n) for n in self.names), default=0)
        self._prefixes = frozenset(n[:k] for n in self.names for k in range(1, len(n) + 1))

    @classmethod
    def from_data_dir(cls, root: Path) -> HerbLexicon:
        names: set[str] = set()
        f = root / "tcm-pd" / "herbs_contains.txt"
        if f.is_file():
            names.update(x.strip() for x in f.read_text(encoding="utf-8-sig").splitlines())
        f = root / "smgcn" / "herb_mapping.txt"
        if f.is_file():
            names.update(x.strip().rpartition(" ")[0] for x in f.read_text(encoding="utf-8-sig").splitlines())
        f = root / "tcm-pd" / "herb_notes.jsonl"
        if f.is_file():
            for line in f.read_text(encoding="utf-8").splitlines():
                try:
                    names.add(str(json.loads(line)["herb"]).strip())
                except (ValueError, KeyError, TypeError):
                    continue
        return cls(n for n in names if n)

    def match(self, text: str, i: int) -> tuple[str, int] | None:
        """The longest lexicon name starting at ``i``: (name, end)."""
        best = None
        for n in range(1, min(self.max_len, len(text) - i) + 1):
            cand = text[i : i + n]
            if cand not in self._prefixes:
                break
            if n >= 2 and cand in self.names:
                best = (cand, i + n)
        return best

    def match_with_affixes(self, text: str, i: int) -> tuple[str, int] | None:
        best = self.match(text, i)
        for p in PREFIXES:
            if text.startswith(p, i):
                m = self.match(text, i + len(p))
                if m and (best is None or m[1] > best[1]):
                    best = m
                break  # only the longest prefix
        if best is not None:
            name, end = best
            if end < len(text) and text[end] in SUFFIXES and self.match(text, end) is None:
                end += 1
            return name, end
        return None


def _dose(m: re.Match[str]) -> tuple[float | None, str]:
    unit = UNITS[m.group("unit")]
    num = cn_number(m.group("num") or "")
    if num is None:
        num = 1.0 if m.group("half") or m.group("num2") else None  # 钱半 = 1.5 钱
    if num is not None and m.group("num2") and m.group("unit2"):
        sub = cn_number(m.group("num2"))
        if sub is not None and unit in GRAMS:
            num += sub * GRAMS[UNITS[m.group("unit2")]] / GRAMS[unit]
    if num is not None and m.group("half"):
        num += 0.5
    return num, unit


def parse_segment(segment: str, lexicon: HerbLexicon) -> tuple[list[ExtractedHerb], float]:
    """Herbs (with doses) in one segment, and the share of its CJK characters explained by names and doses."""
    body = LABEL_RE.sub("", segment, count=1)
    herbs: list[tuple[str, str, float | None, str | None]] = []
    pending: list[int] = []  # herbs waiting for a dose (for 各 = "each")
    covered = 0
    i = 0
    n = len(body)
    while i < n:
        hit = lexicon.match_with_affixes(body, i)
        if hit:
            name, end = hit
            herbs.append((name, body[i:end], None, None))
            pending.append(len(herbs) - 1)
            covered += end - i
            i = end
            continue
        m = DOSE_RE.match(body, i)
        if m and m.end() > i and (m.group("num") or m.group("half")) and herbs:
            num, unit = _dose(m)
            targets = pending if m.group("each") else pending[-1:]
            for t in targets:
                nm, sf, _, _ = herbs[t]
                herbs[t] = (nm, sf, num, unit)
            pending = []
            covered += m.end() - i
            i = m.end()
            continue
        i += 1
    cjk = sum(1 for ch in body if "\u4e00" <= ch <= "\u9fff")
    out = []
    seen: set[str] = set()
    for name, surface, dose, unit in herbs:
        if name in seen:
            continue
        seen.add(name)
        grams = dose * GRAMS[unit] if dose is not None and unit in GRAMS else None
        out.append(ExtractedHerb(name, surface, dose, unit, round(grams, 3) if grams is not None else None))
    return out, (covered / cjk if cjk else 0.0)


def extract_prescriptions(text: str, lexicon: HerbLexicon, min_coverage: float = 0.6) -> list[Prescription]:
    """Every prescription segment of a case text (labelled, or mostly herb names and doses), in order."""
    found = []
    for idx, seg in enumerate(text.split("|")):
        if not seg.strip():
            continue
        labelled = bool(LABEL_RE.match(seg))
        herbs, coverage = parse_segment(seg, lexicon)
        if len(herbs) >= 2 and (labelled or coverage >= min_coverage):
            found.append(Prescription(idx, tuple(herbs)))
    return found
