"""Findings from a clinic note: symptom, tongue and pulse terms, with negation.

Dictionary recognition: the knowledge base's symptom vocabulary (names and synonyms) matched longest-first over
the normalised text, everyday words for body parts read as the written ones (小肚子 = 小腹, 嗓子 = 咽), and a term
written with a few words in between (腰和膝盖酸软 = 腰膝酸软) where the exact matches leave characters unread. A
clause that only states an attribute (量少, 色淡, 有臭味) speaks of the subject named before it in the sentence
(月经, 带下, 痰 …), and a measured body temperature states a fever by the grading in ``cds/params.json``.
Negation: a cue (无, 否认, 未, 没有, 不伴, 未见 …) negates the terms after it up to the end of its clause (，。；) or
a new statement (不动也出汗, 无明显诱因出现头痛), so 否认发热、咳嗽 negates both. A term that is itself an absence
(无汗, 口不渴, 不欲饮) is matched as a whole before negation is considered, so it stays a finding of its own, and
its cue negates nothing after it. Clauses with no recognised term are reported back as unrecognised. The
patient's age, sex and a pregnancy are read from the note too (``demographics``).
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import kb as kbmod
from kb.normalize import cn_number, normalize, t2s_table

PARAMS_FILE = Path(__file__).resolve().parent / "params.json"

NEGATION_CUES = ("否认", "没有", "未见", "未闻", "未有", "不伴", "并无", "无明显", "无", "未", "不", "非")
_SINGLE = ("咳", "喘", "呕", "痒", "麻")
CLAUSE = re.compile(r"[，,。；;！!？?\n\r|]+")
SPLIT_FINDINGS = re.compile(r"[、/和及与]+")
_VARIANTS = (("舌质", "舌"), ("舌体", "舌"), ("脉象", "脉"), ("舌苔", "苔"),
             # everyday words for body parts, read as the written ones (applied to the vocabulary too)
             ("小肚子", "小腹"), ("肚子", "腹"), ("嗓子", "咽"), ("喉咙", "咽喉"), ("嘴唇", "唇"), ("口唇", "唇"),
             ("嘴里", "口中"), ("嘴巴", "口"), ("嘴", "口"), ("脸色", "面色"), ("脸", "面"), ("眼皮", "眼睑"),
             ("手心脚心", "手足心"), ("手脚心", "手足心"), ("手脚", "手足"), ("身上", "身"), ("后背", "背"),
             ("胸口", "胸"), ("舌头", "舌"), ("耳朵", "耳"), ("鼻子", "鼻"))  # fmt: skip
_SCOPE_BREAK = re.compile(r"[但而却仍也就则便才即后]|诱因|出现|引起|导致|之下")
_FILLER = re.compile(
    r"^[\d\s.一二三四五六七八九十半余多个月天日年周次岁前后伴有见并且又时常偶感觉自诉患者主诉病史现症男女孩婴儿童性士]+$"
)


@dataclass(frozen=True, slots=True)
class Term:
    symptom_id: str
    name: str
    written: str
    start: int
    negated: bool


@dataclass(frozen=True, slots=True)
class Extraction:
    present: tuple[Term, ...]
    negated: tuple[Term, ...]
    unrecognised: tuple[str, ...]

    def ids(self) -> set[str]:
        return {t.symptom_id for t in self.present}


class Vocabulary:
    """Normalised term -> symptom id, longest terms first."""

    def __init__(self, kb: kbmod.KnowledgeBase):
        self.terms: dict[str, str] = {}
        for s in kb.symptoms.values():
            for name in (s.name, *s.synonyms):
                key = _norm_text(normalize(name))
                if len(key) >= 1:
                    self.terms.setdefault(key, s.id)
        self.max_len = max((len(k) for k in self.terms), default=1)
        # for matching with a few words written in between (腰和膝盖酸软 -> 腰膝酸软): terms of 3+ characters by first one
        self.by_first: dict[str, list[tuple[str, str, frozenset[str]]]] = {}
        for key, sid in sorted(self.terms.items(), key=lambda kv: -len(kv[0])):
            if len(key) >= 3:
                self.by_first.setdefault(key[0], []).append((key, sid, frozenset(key)))
        self.names = {s.id: s.name for s in kb.symptoms.values()}
        self.negated_terms = {sid for sid, s in ((s.id, s) for s in kb.symptoms.values()) if s.negated}
        self.context_terms = {s.id for s in kb.symptoms.values() if s.category == "病史情境"}
        # diseases named in the text hint at the disease (咳嗽 is both a finding and a disease)
        self.diseases: dict[str, list[str]] = {}
        for d in kb.diseases.values():
            for name in (d.name, *d.aliases):
                self.diseases.setdefault(normalize(name), []).append(d.id)


@functools.lru_cache(maxsize=8)
def vocabulary(kb: kbmod.KnowledgeBase) -> Vocabulary:
    return Vocabulary(kb)


def lookup(term: str, kb: kbmod.KnowledgeBase) -> str | None:
    """The finding a term names exactly (a name or synonym, as the vocabulary reads it), or None."""
    return vocabulary(kb).terms.get(_norm_text(normalize(term)))


def _norm_text(text: str) -> str:
    s = unicodedata.normalize("NFKC", text).translate(t2s_table())
    for a, b in _VARIANTS:
        s = s.replace(a, b)
    return s


_TEMPERATURE = re.compile(r"(?<![\d.])(\d{2}(?:\.\d{1,2})?)\s*(?:°C|℃|度)")


@functools.lru_cache(maxsize=1)
def _temperature_rules() -> tuple[tuple[float, float | None, str], ...]:
    """(lowest, highest or None, finding name) for a measured body temperature, from ``cds/params.json``."""
    if not PARAMS_FILE.is_file():
        return ()
    rules = json.loads(PARAMS_FILE.read_text(encoding="utf-8")).get("measurements", {}).get("body_temperature_c", [])
    return tuple((float(lo), None if hi is None else float(hi), str(name)) for lo, hi, name in rules)


def _measured(clause: str, voc: Vocabulary) -> list[tuple[int, str, str]]:
    """Findings a measured body temperature states (体温39.3°C -> 发热, 壮热)."""
    out = []
    for m in _TEMPERATURE.finditer(clause):
        t = float(m.group(1))
        for lo, hi, name in _temperature_rules():
            sid = voc.terms.get(_norm_text(normalize(name)))
            if sid is not None and t >= lo and (hi is None or t <= hi):
                out.append((m.start(), m.group(0), sid))
    return out


def _negated_at(clause: str, pos: int) -> bool:
    """Is position ``pos`` of the clause inside the scope of a negation cue?"""
    head = clause[:pos]
    for cue in NEGATION_CUES:
        i = head.rfind(cue)
        if i >= 0:
            between = head[i + len(cue) :]
            # scope runs over a list of findings (、 和 及) but not across a new statement: 不动也出汗, 无诱因出现头痛
            if len(between) <= 12 and not _SCOPE_BREAK.search(between):
                return True
    return False


def _scan(clause: str, voc: Vocabulary) -> list[tuple[int, str, str]]:
    """Longest-first dictionary matches over a clause: (position, text, finding id)."""
    out = []
    i, n = 0, len(clause)
    while i < n:
        hit = None
        for length in range(min(voc.max_len, n - i), 0, -1):
            piece = clause[i : i + length]
            sid = voc.terms.get(piece)
            if sid is not None and (length >= 2 or piece in _SINGLE):
                hit = (piece, sid)
                break
        if hit is None:
            i += 1
            continue
        out.append((i, *hit))
        i += len(hit[0])
    return out


_GAP_NEGATION = frozenset("不无没未非否别勿")


def _gap(length: int) -> int:
    """How many characters may be written in between the characters of a term of this length."""
    return 1 if length == 3 else 2 if length <= 5 else 3


def _fuzzy(clause: str, hits: list[tuple[int, str, str]], voc: Vocabulary) -> list[tuple[int, str, str]]:
    """Add terms written with a few words in between (腰和膝盖酸软, 小腹隐隐作痛) where the exact matches leave
    characters unread; an exact match inside such a term gives way to it. Never across a negation (头不痛)."""
    n = len(clause)
    covered = [False] * n
    for i, piece, _ in hits:
        for k in range(max(i, 0), min(i + len(piece), n)):
            covered[k] = True
    if all(covered):
        return hits
    added: list[tuple[int, int, str, str]] = []  # (start, end, text, id)
    i = 0
    while i < n:
        if covered[i] or clause[i] not in voc.by_first:
            i += 1
            continue
        found = None
        for key, sid, chars in voc.by_first[clause[i]]:
            length = len(key)
            window = clause[i : i + length + _gap(length)]
            if len(window) < length or not chars <= set(window):
                continue
            pos, k = [0], 1
            for j in range(1, len(window)):
                if k < length and window[j] == key[k]:
                    pos.append(j)
                    k += 1
            if k < length:
                continue
            span = window[: pos[-1] + 1]
            if any(c in _GAP_NEGATION for j, c in enumerate(span) if j not in pos):
                continue
            found = (i, i + pos[-1] + 1, span, sid)
            break
        if found is None:
            i += 1
            continue
        added.append(found)
        for k in range(found[0], found[1]):
            covered[k] = True
        i = found[1]
    if not added:
        return hits
    kept = [h for h in hits if not any(a <= h[0] and h[0] + len(h[1]) <= b for a, b, _, _ in added)]
    return sorted(kept + [(a, text, sid) for a, _b, text, sid in added])


# A clause that only describes an attribute (量少, 色淡红, 质稠, 有臭味) speaks of the last thing named before it in the
# sentence (月经, 带下, 恶露, 痰 …): it is read with that subject written in front (月经量少 -> 月经过少).
_TOPICS = (
    (re.compile(r"月经|经血|经量|经色|经期|行经|来经|经水"), ("月经", "经")),
    (re.compile(r"白带|带下|黄带"), ("带下", "白带")),
    (re.compile(r"恶露"), ("恶露",)),
    (re.compile(r"鼻涕|流涕"), ("涕", "鼻涕")),
    (re.compile(r"痰"), ("痰",)),
    (re.compile(r"脓"), ("脓", "脓液")),
    (re.compile(r"出血|便血|尿血|衄|下血"), ("出血", "血")),
    (re.compile(r"大便|粪"), ("大便",)),
    (re.compile(r"小便|尿"), ("小便", "尿")),
    (re.compile(r"舌"), ("舌",)),
)
_ATTRIBUTE = re.compile(r"^(?:有点|有些|偏|较|稍|略|很|特别|比较|但)?(?:量|色|颜色|质|质地|气味|味|有.{0,3}味|臭|腥|稀|稠|黏|夹|带|混|淋漓"
                        r"|有瘀|边有|尖有|有齿|有裂|尖红|边红)")  # fmt: skip
_YEARS_AGO = re.compile(r"\s*(?:\d+|[一二两三四五六七八九十几多数]+)\s*(?:余|多)?\s*年")
_SENTENCE = re.compile(r"[。；;！!？?\n\r|]+")
_COMMA = re.compile(r"[，,]+")


def extract(text: str, kb: kbmod.KnowledgeBase) -> Extraction:
    voc = vocabulary(kb)
    present: list[Term] = []
    negated: list[Term] = []
    unrecognised: list[str] = []
    norm = _norm_text(text)
    offset = 0
    for sentence in _SENTENCE.split(norm):
        topic: tuple[str, ...] = ()
        for clause in _COMMA.split(sentence):
            hits = _fuzzy(clause, _scan(clause, voc), voc)
            measured = _measured(clause, voc)
            if topic and _ATTRIBUTE.match(clause):
                for prefix in topic:
                    alt = [(i - len(prefix), piece, sid) for i, piece, sid in _scan(prefix + clause, voc)
                           if i + len(piece) > len(prefix)]  # fmt: skip
                    if sum(len(x[1]) for x in alt) > sum(len(x[1]) for x in hits):
                        hits = alt
                        break
            for pattern, prefixes in _TOPICS:
                if pattern.search(clause):
                    topic = prefixes
                    break
            # a life stage long past is history, not the patient's state (产后1年, 产后多年)
            hits = [h for h in hits if not (h[2] in voc.context_terms and _YEARS_AGO.match(clause, h[0] + len(h[1])))]
            masked = clause  # a cue inside a term read before (口不渴) negates nothing after it
            for i, piece, sid in hits:
                neg = sid not in voc.negated_terms and _negated_at(masked, max(i, 0))
                if i >= 0:
                    masked = masked[:i] + "＿" * len(piece) + masked[i + len(piece) :]
                term = Term(sid, voc.names[sid], piece, offset + max(i, 0), neg)
                (negated if neg else present).append(term)
            present += [Term(sid, voc.names[sid], text, offset + i, False) for i, text, sid in measured]
            if not hits and not measured:
                stripped = clause.strip(" 　")
                if stripped and not _FILLER.match(stripped) and not any(d in stripped for d in voc.diseases):
                    unrecognised.append(stripped)
            offset += len(clause) + 1
    present = _dedupe(present)
    negated = [t for t in _dedupe(negated) if t.symptom_id not in {p.symptom_id for p in present}]
    return Extraction(tuple(present), tuple(negated), tuple(unrecognised))


def _dedupe(terms: list[Term]) -> list[Term]:
    seen: set[str] = set()
    out = []
    for t in terms:
        if t.symptom_id not in seen:
            seen.add(t.symptom_id)
            out.append(t)
    return out


def diseases_mentioned(text: str, kb: kbmod.KnowledgeBase) -> list[str]:
    """Disease ids whose name or alias appears in the text (longest names first, no overlaps)."""
    voc = vocabulary(kb)
    norm = _norm_text(text)
    out: list[str] = []
    for name in sorted(voc.diseases, key=len, reverse=True):
        if len(name) >= 2 and name in norm:
            out += [d for d in voc.diseases[name] if d not in out]
            norm = norm.replace(name, "　")
    return out


# ---- who the patient is, as a clinic note says it ------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Demographics:
    """Age, sex and pregnancy as written in a note (男，28岁 / 女孩，4岁 / 男婴，2个月 / 孕28周)."""

    age_years: float | None = None
    child: bool | None = None  # a child by the words used (男孩, 患儿, 婴儿) when no age is written
    sex: str | None = None  # "female" | "male"
    pregnant: bool | None = None


_AGE_YEARS = re.compile(r"(\d{1,3}|[一二两三四五六七八九十]{1,3})\s*(?:周岁|岁)(半)?")
_AGE_MONTHS = re.compile(r"(\d{1,2}|[一二两三四五六七八九十]{1,2})\s*(?:个月|月龄)(?!前|后|来|余|内|以来)")
_AGE_DAYS = re.compile(r"(?:出生|生后|新生儿)[^，。；]{0,4}?(\d{1,2})\s*(?:天|日)")
_CHILD_WORDS = re.compile(r"男孩|女孩|男童|女童|患儿|小儿|婴儿|男婴|女婴|幼儿|宝宝|新生儿|儿童|早产儿")
_FEMALE = re.compile(r"(?:^|[，,。\s\d岁])女(?=[，,。\s\d性孩童婴士患])|女性|女孩|女童|女婴|女士|女患者|\d+\s*岁女")
_MALE = re.compile(r"(?:^|[，,。\s\d岁])男(?=[，,。\s\d性孩童婴士患])|男性|男孩|男童|男婴|先生|男患者|\d+\s*岁男")
_PREGNANT = re.compile(
    r"(?<![未不非])(?:怀孕|孕\s*\d+\s*[周月+]|孕期|孕早期|孕中期|孕晚期|早孕|妊娠\s*\d+|妊娠期|妊娠第|妊娠[早中晚]期)"
)


def demographics(text: str) -> Demographics:
    """Age, sex and pregnancy from the words of a note; None where the note does not say."""
    if not text:
        return Demographics()
    s = unicodedata.normalize("NFKC", text)
    head = s[:40]  # the patient is introduced at the start of a note
    age: float | None = None
    if (m := _AGE_YEARS.search(head)) and (n := cn_number(m.group(1))) is not None:
        age = n + (0.5 if m.group(2) else 0.0)
    elif (m := _AGE_MONTHS.search(head)) and _CHILD_WORDS.search(head) and (n := cn_number(m.group(1))) is not None:
        age = n / 12.0
    elif (m := _AGE_DAYS.search(head)) and (n := cn_number(m.group(1))) is not None:
        age = n / 365.0
    child = True if _CHILD_WORDS.search(head) else None
    female, male = bool(_FEMALE.search(head)), bool(_MALE.search(head))
    sex = "female" if female and not male else "male" if male and not female else None
    pregnant = True if _PREGNANT.search(s) else None
    return Demographics(age, child, sex, pregnant)


def subterms(name: str, kb: kbmod.KnowledgeBase) -> tuple[tuple[str, float], ...]:
    """The findings a compound finding is written from, each with its share of the name's characters.

    舌红苔薄黄 -> 舌红 (0.4), 苔薄黄 (0.6); 小腹冷痛拒按 -> 小腹冷痛, 拒按. The segmentation that covers most of the
    name with the fewest terms, never the whole name or a synonym of it, and never a term right after a negation
    (不恶寒 does not contain 恶寒).
    """
    voc = vocabulary(kb)
    key = _norm_text(normalize(name))
    n = len(key)
    whole = voc.terms.get(key)
    # best[i] = (characters covered, -pieces, pieces) over key[:i]
    best: list[tuple[int, int, tuple[tuple[str, int], ...]]] = [(0, 0, ())] * (n + 1)
    for i in range(n):
        cov, neg, pieces = best[i]
        if (cov, neg) > best[i + 1][:2]:
            best[i + 1] = (cov, neg, pieces)  # skip one character
        if i > 0 and key[i - 1] in "不无未没非":
            continue
        for length in range(2, min(voc.max_len, n - i) + 1):
            piece = key[i : i + length]
            sid = voc.terms.get(piece)
            if sid is None or length == n or sid == whole:
                continue
            cand = (cov + length, neg - 1, (*pieces, (sid, length)))
            if cand[:2] > best[i + length][:2]:
                best[i + length] = cand
        if key[i] in _SINGLE and (sid := voc.terms.get(key[i])) is not None and sid != whole:
            cand = (cov + 1, neg - 1, (*pieces, (sid, 1)))
            if cand[:2] > best[i + 1][:2]:
                best[i + 1] = cand
    out: dict[str, float] = {}
    for sid, length in best[n][2]:
        out[sid] = out.get(sid, 0.0) + length / n
    return tuple(out.items())
