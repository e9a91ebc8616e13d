"""Coverage of the knowledge base against the shared research data (`tcm kb coverage --data DIR --json`).

    herbs     the 811 names of tcm-pd/herbs_contains.txt and the 753 of smgcn/herb_mapping.txt (resolved / total), and
              the herb mentions in the prescriptions of tcm-cases: the text before each dose (黄芪30g, 半夏二钱,
              神曲炭钱半, 生姜三片) is read into names through the resolver (``CaseReader``): instruction words
              (研, 包, 先煎, 加 …), names sharing one dose (赤芍白芍各三钱), two-drug shorthand (赤白芍:
              ``NameIndex.split_combined``) and names glued on without a dose around an unknown one (茅术知母细地丹皮:
              the known names are read, the unknown text stays one miss) are read; formulas and patent medicines
              (益元散), non-drugs (童便, 甘澜水) and narrative text are counted apart (``not_counted``), not as herb
              mentions; every other miss is listed, with the reviewed verdict of eval/crosscheck/herbs.yaml or a hint
    symptoms  the 390 names of tcm-pd/symptom_contains.txt
    formulas  for every formula of formulae/formulae.jsonl that names one of ours (name or alias), whether the herb
              sets agree (compared at the herb level: 炙甘草 and 甘草 are one herb; see ``_formulas``); every
              disagreement is listed with the reviewed verdict of eval/crosscheck/formulae.yaml

The data is read, never copied: the report lists names, counts and differences, not the datasets' text.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from kb.base import KnowledgeBase
from kb.errors import InputError
from kb.model import Ingredient, named_in_usage

_CROSSCHECK = Path(__file__).resolve().parent / "crosscheck"

_UNIT = (
    r"(?:克|g|G|钱|錢|两|兩|分|厘|枚|片|个|只|条|粒|朵|尺|寸|张|把|握|撮|茶匙|汤匙|大匙|小匙|匙|大瓢|酒杯|茶杯|杯|盏|对|颗|茎|扎|瓣"
    r"|滴|支|具|段|斤|瓢|大片|小片|根|块|束|升(?!麻)|角(?![茴枫]))"
)
# a written numeral: digits, or a Chinese numeral that is a number (十二, 二十五, 一百, 两, 半) — never a run such as
# 三七三 (参三七三分 is 参三七, 三分)
_CN = r"(?:(?:[一二三四五六七八九两]?十|廿|卅|[一二三四五六七八九]百(?:[一二三四五六七八九]?十)?)[一二三四五六七八九]?|[一二三四五六七八九两半])"
_NUM = rf"(?:\d+(?:\s*\.\s*\d+)?|{_CN})"
# what follows a unit when the number was not a dose: 三分之二, 二个星期, 十分钟, 一个月
_NOT_DOSE_AFTER = r"(?!之|星期|钟|小时|月(?!季)|年|岁)"
# a trailing half or five (一钱半, 二两半, 钱五): never the first character of 半夏, 半枝莲, 半边莲, 五味子 …
_TAIL = r"(?:半(?![夏枝边硫贝])|五(?![味灵倍加谷指爪色])|许)"
# a dose: 9克, 4.5g, 二钱, 一钱五分, 一钱半, 钱半, 钱五 (= 一钱五分), 三片, 尺许, 少许 — names are the text between doses
_DOSE = re.compile(
    rf"(?:{_NUM}\s*{_UNIT}{_NOT_DOSE_AFTER}(?:\s*{_NUM}\s*{_UNIT}{_NOT_DOSE_AFTER})*{_TAIL}?|[钱两]半|少许|适量"
    r"|钱五(?![味灵倍加谷指爪色])分?|尺许)"
)
_NOTE = re.compile(r"[（(][^）)]{0,12}[）)]")
_SEP = re.compile(r"[，,、；;。|：:\s/\\■□【】\[\]《》“”\"'！!？?（）()·…\-—~0-9０-９.A-Za-z]")
_NAME = re.compile(r"[\u4e00-\u9fff]{2,8}$")
_NOT_HERB = re.compile(r"^(?:各|共|每|服|剂|日|次|煎|取|以上|上药|先服|先用|如|若|又|即)")
# Words written around herb names in prescriptions that name no drug: what the previous herb is to undergo (研, 打,
# 包, 先煎, 后下, 冲, 去心 …, and processing written after the name: 桑枝酒炒, 川附子制), how the piece is handled
# (囫囵, 剪细, 敲, 掰开), connectives (加, 去, 用, 引, 同, 改 … 为 …) and a bare unit (鲜茅根两蒲黄炭 = 鲜茅根 一两, 蒲黄炭).
_TOKENS: frozenset[str] = frozenset(
    """
研 打 杵 捣 碎 切 轧 轧细 研细 研末 研极细 研粉 捣细 捣碎 打碎 杵细 杵碎 生打 生杵 生捣 同打 同捣 同杵 同研 炒研 炒打 炒捣
包 布包 绢包 纱布包 同布包 同包 包煎 包先煎 布包先煎 打布包先煎 先煎 先入 后下 后入 另煎 另炖 另包 另冲 冲 冲服 分冲 另吞 吞
吞服 分吞 烊化 烊冲 烊入 兑入 兑服 磨 磨汁 磨冲 化服 调服 调入 去心 去皮 去皮尖 去毛 去刺 去节 去核 去油 去白 去尖 去芦 去须 去壳
去足 去头足 去翅足 去土 去净 去瓤 去子 去渣 去毛筋 去垢 去衣 去心衣 连心 连皮 带心 带皮 炒 煨 炙 焙 拌 拌炒 同炒 水炒 不炒
酒洗 醋炒 蜜炙 煅 入煎 煎 另煎兑 兑 增 更增 炖 炖化 刷净 切片 灌 浸 半生半炒 半生半炙 服 即 克 g 先用 晚服 早服 午服 另服
加为 加至 加到 减至 减为 改为 增至 用至 易为 生炒各半 研化 化 末 细末 研为细末 汤方 丸方 散方
加 再加 另加 又加 并加 加入 用 另用 再用 改用 引 引用 入 送 送服 送下 另 和 及 与 并 合 改 去 减 各 再 又 以 前方 原方 方中 上方
原方去 去掉 内 于 的 钱 两 分 为
同 至 洗 剪 剪细 剪碎 敲 敲碎 生敲 掰开 囫囵 切寸 不见火 不去心 酒炒 麸炒 土炒 盐水炒 盐炒 姜炒 水炙 制 炒黑 炒半黑 半黑 切细 打开 去梗 去蒂 飞
""".split()
)
# text made only of these characters, before a name, says what is done to the drug (勿见火, 酒润, 打泥, 带须, 去皮,
# 包蒸熟, 改为): it is read off like a connective, never as part of the name (two characters at least, so 土牛膝 and
# 白前胡 are never split)
_INSTRUCTION_CHARS = frozenset(
    "研打杵捣碎切包煎入冲吞化服去心皮尖毛刺节核油芦须壳足净瓤渣垢衣炒煨炙焙拌洗泡浸蒸煮润飞锉镑泥汁末火勿见另外带连煅"
    "加重改为熟敲拭刷用以和同先后再各水酒醋盐蜜麸炭焦微透晒烘绞取兑调磨漂"
)
# words after which a name written next is what the following drug is processed with (黑豆同蒸, 荷叶包, 蛤粉炒)
_ADJUVANT_TOKENS = frozenset(
    ("token", w) for w in "同 同炒 同打 同捣 同杵 同研 同包 同布包 拌 拌炒 炒 水炒 酒炒 醋炒 包 浸 煨 炙".split()
)
_ADJUVANT_AFTER = ("同", "拌", "伴", "炒", "包", "煎汁", "汁炒", "水炒", "汤", "煮", "染", "蒸", "炙", "浸")
# a name's part or size written after it (白菊花叶, 杜牛膝根, 扁豆大者): the text does not start a new name
_PART_CHARS = frozenset("叶根皮梗花子仁络心衣壳须芽尖节头蒂核茎枝藤米肉汁膏霜粉油炭灰末片瓣实穗蕊大小")
_DROP_AFTER = frozenset(
    {"去", "减", "去掉", "原方去"}
)  # herbs after these are taken out of the prescription, not dosed
# characters of running prose that no herb name contains (一剂用生石膏, 据云已饮冷水, 惟胸前有细碎): text a number
# in the narrative made look like a dosed name
_PROSE = re.compile(
    r"[有已之则尚亦惟而其此诊据犹欲乃若仍均俱或皆谓者也矣乎哉吾余尔您他她我你们是在着过了吗呢吧脉病症证痛汗溲觉粥饭针嘱"
    r"可计譬总烤烂靠穴得饮今吐经日深快剩强流外午脓盘达约所样时后每次共俾贴院街喉腿弯现畏误昼迳投嚼忌仅昨甚兹侵唯蠕疮"
    r"捻处出筛善能离裹作宰惜串杂且执蛔]"
)
# what a drug is given for, written before its name (清热消烦厚朴, 疏滞楂肉, 能清浮火川斛, 辛散苦降橘红): a verb of
# the treatment and its object, read off like an instruction (two characters at least, and only before a name that
# reads: 清半夏, 化橘红 and 补骨脂 are never split)
_EFFICACY = re.compile(
    r"[能善辛四去清消除疏退止宽利解和开补散降逐畅导理行润养滋安宁镇泻调健益渗敛固舒祛驱宣升]"
    r"[清消除疏退止宽利解和开补散降逐畅导理行润养滋安宁镇泻调健益渗敛固舒祛驱宣升热烦满肌邪渴胸阴浮火胃痰涎肺郁咽喉暑毒"
    r"脾带涩血气滞积中表里风寒湿燥水食痛肝肾心神肠结瘀络筋骨经逆呕咳喘嗽汗痢肿苦辛甘酸咸为君臣佐使以四味去]+"
)
_FORMULA_SUFFIX = re.compile(r"[\u3400-\u9fff]{1,8}(?:丸|散|丹|膏|锭|露)$")
_INSTRUCTION = re.compile(
    r"(?:服|送下|开水|早晚|每日|每次|每早|每晚|间日|吞下|化下|调下|分二次|分三次|为末|为丸|熬膏|收膏|煮|煎)"
)


def default_data_dir() -> Path | None:
    env = os.environ.get("TCM_DATA_DIR")
    if env:
        return Path(env)
    guess = Path(__file__).resolve().parents[2] / "shared" / "data"
    return guess if guess.is_dir() else None


def _names(path: Path, mapping: bool = False) -> list[str]:
    if not path.is_file():
        raise InputError(f"{path}: not found (is --data the shared data directory?)")
    out = []
    for line in path.read_text(encoding="utf-8-sig").splitlines():
        line = line.strip()
        if not line:
            continue
        out.append(line.rsplit(" ", 1)[0].strip() if mapping else line)
    return out


def explanations(path: Path | None = None) -> dict[str, dict[str, str]]:
    """The reviewed reasons for names that do not resolve (eval/crosscheck/herbs.yaml): name -> verdict, detail."""
    path = path or _CROSSCHECK / "herbs.yaml"
    if not path.is_file():
        return {}
    out: dict[str, dict[str, str]] = {}
    for row in yaml.safe_load(path.read_text(encoding="utf-8")) or []:
        for name in [row["name"], *row.get("also", [])]:
            out[name] = {"verdict": row["verdict"], "detail": row.get("detail", "")}
    return out


def _resolve_list(
    kb: KnowledgeBase, names: list[str], kind: str, why: dict[str, dict[str, str]] | None = None
) -> dict[str, Any]:
    why = why or {}
    unresolved = []
    for n in names:
        r = kb.resolve(n, kind)
        if not r.resolved:
            unresolved.append({
                "name": n, "candidates": list(r.candidates[:3]), **({"note": r.note} if r.note else {}),
                **({"verdict": why[n]["verdict"], "reason": why[n]["detail"]} if n in why else {"verdict": "unexplained"}),
            })  # fmt: skip
    total = len(names)
    return {
        "total": total,
        "resolved": total - len(unresolved),
        "coverage": round((total - len(unresolved)) / total, 4) if total else None,
        "unresolved_by_verdict": dict(Counter(u["verdict"] for u in unresolved).most_common()),
        "unresolved": unresolved,
    }


def case_mentions(text: str) -> list[str]:
    """The text written before each dose in a case's prescriptions (only the parts after '|' when present).

    Each piece ends where a dose begins and starts after the last separator before it; it may hold a name, several
    names sharing one dose (赤芍白芍各三钱), or words around a name (研, 包, 加 …): ``parse_mention`` reads it.
    """
    parts = text.split("|")
    segments = parts[1:] if len(parts) > 1 else parts
    out = []
    for seg in segments:
        pieces = _DOSE.split(_NOTE.sub("", seg))
        for piece in pieces[:-1]:  # the text after the last dose names no dosed herb
            chunks = _SEP.split(piece.strip()) if piece.strip() else [""]
            tail = chunks[-1]
            if len(tail.removesuffix("各")) == 1 and len(chunks) > 1 and piece.strip().endswith("、" + tail):
                tail = chunks[-2] + tail  # 橘红、络各一钱 = 橘红络: 橘红 and 橘络
            if len(tail) >= 2:
                out.append(tail[-24:])
    return out


def _hint(kb: KnowledgeBase, name: str, herb_keys: dict[int, list[str]]) -> str:
    """A first guess at why a miss that no one has reviewed yet does not resolve (for the curator, not a verdict)."""
    near = [k for k in herb_keys.get(len(name), ()) if sum(a != b for a, b in zip(k, name, strict=True)) == 1]
    if near and len(name) >= 3:
        return f"one character from {near[0]} (a miswriting, or another drug)"
    for i in range(1, len(name) - 1):
        r = kb.names.lookup(name[i:], "herb", False)
        if r.resolved:
            return f"{name[:i]} + {name[i:]} ({r.name}): a qualifier or text the reader does not know"
    return "a name the knowledge base does not know"


class Mention(NamedTuple):
    kind: str  # herb | combined | formula | not_herb | instruction | unresolved
    name: str  # the name as written (the piece itself when unresolved)


class CaseReader:
    """Reads the pieces ``case_mentions`` returns into herb names, through the knowledge base's resolver."""

    def __init__(self, kb: KnowledgeBase, why: dict[str, dict[str, str]] | None = None):
        self.kb = kb
        self.why = why or {}
        self._word: dict[str, str | None] = {}
        self._memo: dict[str, tuple[Mention, ...]] = {}

    def word(self, w: str) -> str | None:
        """What one word is: herb | combined | formula | not_herb | token, or None."""
        hit = self._word.get(w, "")
        if hit != "":
            return hit
        kind: str | None = None
        if w in _TOKENS:
            kind = "token"
        elif len(w) >= 2:
            verdict = self.why.get(w, {}).get("verdict")
            if self.kb.names.lookup(w, "herb", False).resolved:
                kind = "herb"
            elif verdict in ("not-herb", "formula"):
                kind = "not_herb" if verdict == "not-herb" else "formula"
            elif self.kb.names.split_combined(w) is not None:
                kind = "combined"
            elif self.kb.names.lookup(w, "formula", False).resolved:
                kind = "formula"
            elif len(w) >= 3 and _FORMULA_SUFFIX.match(w):
                kind = "formula?"  # looks like a formula: read so only where nothing else reads the text
        self._word[w] = kind
        return kind

    def parse(self, piece: str) -> tuple[Mention, ...]:
        hit = self._memo.get(piece)
        if hit is None:
            hit = self._memo[piece] = self._parse(piece)
        return hit

    def _parse(self, piece: str) -> tuple[Mention, ...]:
        p = piece.removesuffix("各")  # 赤芍白芍各三钱: the names share the dose
        n = len(p)
        if n < 2:
            return ()
        # best[i]: the reading of p[i:] with the fewest words that only look like a formula (丸/散/丹/膏 …, not a
        # formula of ours), then the fewest words (None: it cannot be read); 布包生石膏 is 布包 + 生石膏, not a 膏
        best: list[list[tuple[str, str]] | None] = [None] * (n + 1)
        cost: list[tuple[int, int]] = [(0, 0)] * (n + 1)
        best[n] = []
        for i in range(n - 1, -1, -1):
            for j in range(min(n, i + 12), i, -1):  # longest word first
                rest = best[j]
                if rest is None:
                    continue
                kind = self.word(p[i:j])
                if kind is None:
                    continue
                c = (cost[j][0] + (kind == "formula?"), cost[j][1] + 1)
                if best[i] is None or c < cost[i]:
                    best[i], cost[i] = [(kind, p[i:j]), *rest], c
        # 1. the reading of the whole piece, or of the longest tail that starts with a connective or instruction
        #    word (于前方内加艾叶 -> 艾叶; 草合欢皮加朱茯神 -> 朱茯神): the text before a connective is not a name
        # 2. else the longest readable tail whose left edge is the end of a readable word (元精石甘草鸡子黄 -> 鸡子黄,
        #    the text before it counted as one unresolved mention); a tail whose left edge is not a word end is never
        #    read off (广防己 is not 防己, 紫丹参 is not a 丹参, 南五加皮 is not 五加皮)
        if best[0] is not None and all(k == "token" for k, _ in best[0]):
            return (Mention("instruction", p),)  # 加至, 减至, 同布包: only words around a name, no name
        reading = None
        leftover = ""
        for i in range(n):
            r = best[i]
            if r and (i == 0 or r[0][0] == "token") and any(k != "token" for k, _ in r):
                reading = r
                break
        if reading is None:
            for i in range(2, n):
                r = best[i]
                if not r or not any(k != "token" for k, _ in r):
                    continue
                if all(ch in _INSTRUCTION_CHARS for ch in p[:i]):  # 勿见火白茯苓, 酒润艾叶, 打泥全瓜蒌
                    reading = r
                    break
                # 清热消烦厚朴, 迳投生大黄: what the drug is for, or the narrative around it, before its name
                narrative = (_PROSE.match(p[i - 1]) or p[i - 1] in _INSTRUCTION_CHARS) and _PROSE.search(p[:i])
                if r[0][0] != "token" and (_EFFICACY.fullmatch(p[:i]) or narrative):
                    reading = r
                    break
                if any(self.word(p[k:i]) for k in range(max(0, i - 12), i - 1)):
                    reading, leftover = r, p[:i]
                    break
        if reading is None:
            reading, leftover = [], p
        # 3. the text left unread may start with names of its own, glued on without a dose (茅术知母细地丹皮 before
        #    牛蒡黄柏地肤子 -> 茅术, 知母, then 细地丹皮 unread): the longest readable head is read off when what
        #    follows it is no suffix of it (three characters or more, or two after an instruction word: 薄荷纯梗,
        #    桂枝嫩尖 and 车前子叶 stay whole)
        head: list[tuple[str, str]] = []
        if len(leftover) >= 5 or (reading == [] and len(leftover) >= 4):
            head, leftover = self._head(leftover)
        items = [*head, *([("unread", leftover)] if len(leftover) >= 2 else []), *reading]
        out = []
        dropping = False
        for k, (kind, w) in enumerate(items):
            if (  # 改竹沥半夏为仙半夏: the first is replaced by the second (改黄芪为 then a dose changes only the dose)
                kind != "token" and 0 < k < len(items) - 2 and items[k - 1] == ("token", "改")
                and items[k + 1] == ("token", "为") and items[k + 2][0] not in ("token", "unread")
            ):  # fmt: skip
                continue
            if kind == "unread":
                out.append(self._unread(w))
                continue
            if kind == "token":
                dropping = w in _DROP_AFTER or (dropping and w not in ("加", "再加", "另加", "又加", "并加", "加入"))
                continue
            if not dropping:
                out.append(Mention("formula" if kind == "formula?" else kind, w))
        return tuple(out)

    def _head(self, p: str) -> tuple[list[tuple[str, str]], str]:
        """The longest readable head of text no tail reading covers, and the rest (see ``_parse``, step 3)."""
        n = len(p)
        fwd: list[list[tuple[str, str]] | None] = [None] * (n + 1)  # fwd[j]: the reading of p[:j] in fewest words
        fwd[0] = []
        for j in range(1, n + 1):
            for i in range(max(0, j - 12), j):
                prev = fwd[i]
                if prev is None:
                    continue
                kind = self.word(p[i:j])
                if kind is None or kind == "formula?":  # 迨外加石膏 is no formula
                    continue
                if fwd[j] is None or len(prev) + 1 < len(fwd[j] or ()):
                    fwd[j] = [*prev, (kind, p[i:j])]
        for j in range(n - 2, 1, -1):
            r, rest = fwd[j], p[j:]
            if not r or not any(k != "token" for k, _ in r):
                continue
            last = next(w for k, w in reversed(r) if k != "token")
            if any(self.word(last + rest[:k]) for k in range(1, min(len(rest), 6) + 1)):
                continue  # 小茴 + 香炒黑, 枇杷 + 叶水一碗煎: the boundary cuts a name
            if r[-1] in _ADJUVANT_TOKENS or rest[0] in _PART_CHARS or rest.startswith(_ADJUVANT_AFTER):
                continue  # 黑豆同蒸, 荷叶包, 蛤粉炒 (the head is what the next drug is processed with); 白菊花 + 叶
            if self._unread(rest).kind == "instruction":
                return r, rest  # 麦冬 + 不去心, 生姜汁 + 每次冲
            if rest[0] in _INSTRUCTION_CHARS or rest[0] == "汤":  # 红花汤炒全当归, 砂仁水炒透干地黄: what is done to
                continue  # the drug that follows, with the head as its adjuvant
            if len(rest) >= 3 or r[-1][0] == "token":
                return r, rest
        return [], p

    def _unread(self, p: str) -> Mention:
        """Text no reading covers: a listed non-herb, instruction text, or an unresolved name."""
        name = p[-10:]
        verdict = self.why.get(name, {}).get("verdict")
        if verdict in ("not-herb", "formula"):
            return Mention("not_herb" if verdict == "not-herb" else "formula", name)
        if name[-1] in "丸散丹锭露":  # the tail of a formula's name the text cut (益元散 -> 元散, 至宝丹 -> 宝丹)
            return Mention("formula", name)
        if (
            _INSTRUCTION.search(name)
            or _NOT_HERB.match(name)
            or _PROSE.search(name)
            or all(ch in _INSTRUCTION_CHARS for ch in name)
        ):
            return Mention("instruction", name)
        return Mention("unresolved", name)


def _cases(kb: KnowledgeBase, data: Path, why: dict[str, dict[str, str]] | None = None) -> dict[str, Any]:
    counts: Counter[Mention] = Counter()
    files = sorted((data / "tcm-cases").glob("*.tsv"))
    if not files:
        raise InputError(f"{data / 'tcm-cases'}: no .tsv files")
    reader = CaseReader(kb, why)
    for f in files:
        for line in f.read_text(encoding="utf-8").splitlines():
            _, _, text = line.partition("\t")
            for piece in case_mentions(text):
                counts.update(reader.parse(piece))
    why = why or {}
    by_kind: Counter[str] = Counter()
    for m, c in counts.items():
        by_kind[m.kind] += c
    herb = by_kind["herb"] + by_kind["combined"]
    mentions = herb + by_kind["unresolved"]
    distinct = {m.name for m in counts if m.kind in ("herb", "combined", "unresolved")}
    resolved_distinct = {m.name for m in counts if m.kind in ("herb", "combined")}

    herb_keys: dict[int, list[str]] = {}
    for key, targets in kb.names.index.items():
        if any(t.kind == "herb" for t in targets):
            herb_keys.setdefault(len(key), []).append(key)

    def listing(kind: str, limit: int) -> list[dict[str, Any]]:
        rows = []
        for m, c in counts.most_common():
            if m.kind != kind:
                continue
            row: dict[str, Any] = {"name": m.name, "mentions": c}
            if kind == "unresolved":
                row["candidates"] = list(kb.resolve_herb(m.name).candidates[:3])
                row["verdict"] = why.get(m.name, {}).get("verdict", "unexplained")
                if m.name in why:
                    row["reason"] = why[m.name]["detail"]
                else:
                    row["hint"] = _hint(kb, m.name, herb_keys)
            elif m.name in why:
                row["reason"] = why[m.name]["detail"]
            rows.append(row)
            if len(rows) >= limit:
                break
        return rows

    unresolved_by_verdict: Counter[str] = Counter()
    for m, c in counts.items():
        if m.kind == "unresolved":
            unresolved_by_verdict[why.get(m.name, {}).get("verdict", "unexplained")] += c
    return {
        "mentions": mentions, "resolved_mentions": herb, "coverage": round(herb / mentions, 4) if mentions else None,
        "distinct": len(distinct), "resolved_distinct": len(resolved_distinct),
        "distinct_coverage": round(len(resolved_distinct) / len(distinct), 4) if distinct else None,
        "combined_mentions": by_kind["combined"],
        "not_counted": {"formula": by_kind["formula"], "not_herb": by_kind["not_herb"],
                        "instruction": by_kind["instruction"]},
        "unresolved_by_verdict": dict(unresolved_by_verdict.most_common()),
        "unresolved_top": listing("unresolved", 1_000_000),  # every miss, most frequent first
        "formulas_top": listing("formula", 100),
        "not_herb_top": listing("not_herb", 100),
        "instruction_top": listing("instruction", 50),
    }  # fmt: skip


def _composition(text: str) -> tuple[list[str], int | None] | None:
    """The herb names a record lists, and the count it declares when it cuts the list short ("由A、B等25味药物组成":
    25), else None."""
    m = re.search(r"由(.+?)(?:等(\d+)味药物|等药物|等药|等)?组成", text)
    if not m:
        return None
    body = re.sub(r"(?<=[\u4e00-\u9fff])[和连]皮", "", m.group(1))  # 生姜和皮: the ginger with its skin, not 皮
    return [x.strip() for x in re.split(r"[、，,及和]", body) if x.strip()], int(m.group(2)) if m.group(2) else None


# An ingredient the source names only in its method of preparation (姜枣 added in the 煎服法, honey to make the pills,
# the wine the decoction is boiled in): our entries list it with kb.model.USAGE_MARK in its note. Lists that leave
# such ingredients out (or name only some of them) are the same prescription: see ``_formulas``.


def formula_verdicts(path: Path | None = None) -> dict[str, dict[str, Any]]:
    """The reviewed reasons for formula disagreements (eval/crosscheck/formulae.yaml): formula id -> entry."""
    path = path or _CROSSCHECK / "formulae.yaml"
    if not path.is_file():
        return {}
    return {row["id"]: row for row in yaml.safe_load(path.read_text(encoding="utf-8")) or []}


def _same_herbs(theirs: set[str], comp: tuple[Ingredient, ...], listed: tuple[int | None, int]) -> str | None:
    """Whether a list agrees with one composition of ours: ``"exact"``; ``"usage"`` when it differs only in what
    ours marks as named in the method of preparation (``kb.model.USAGE_MARK``); ``"truncated"`` when it cuts its list short
    with a declared count ("等25味") and every herb it names is ours and ours has that many; else None."""
    ours = {i.herb_id for i in comp}
    declared, n_listed = listed
    if declared is not None and declared > n_listed:
        return "truncated" if theirs <= ours and len(comp) == declared else None
    if theirs == ours:
        return "exact"
    core = ours - {i.herb_id for i in comp if named_in_usage(i.note)}
    return "usage" if core <= theirs <= ours else None


def _substituted(kb: KnowledgeBase, fid: str, theirs: set[str]) -> tuple[set[str], list[dict[str, str]]]:
    """Their herb set read through the recorded substitutes (kb/data/substitutes/): their 党参 as our 人参 where the
    formula takes 党参 for 人参, their 犀角 as our 水牛角 where our entry already writes the substitute."""
    ours = {i.herb_id for i in kb.formulas[fid].composition}
    out, used = set(theirs), []
    pairs = [(x.substitute_id, o, x) for o, xs in kb.substitutes_in(fid).items() for x in xs]  # theirs S, ours O
    pairs += [(x.original_id, x.substitute_id, x) for x in kb.substitutions.values() if x.substitute_id in ours]
    for their, our, x in pairs:
        if their in out and their not in ours and our not in out:
            out = (out - {their}) | {our}
            used.append({"theirs": kb.herbs[their].name, "ours": kb.herbs[our].name, "substitution": x.id,
                         "source": x.source.label()})  # fmt: skip
    return out, used


def _formulas(
    kb: KnowledgeBase,
    data: Path,
    verdicts: dict[str, dict[str, Any]] | None = None,
    why: dict[str, dict[str, str]] | None = None,
) -> dict[str, Any]:
    """Compare the herb sets of the formulas both sides name.

    Their list is read through our resolver (names, aliases, forms: 炙甘草 and 甘草 are one herb); a component that
    is itself a formula of ours (碧玉散 in 蒿芩清胆汤, 五苓散 in 茵陈五苓散) stands for that formula's herbs; a generic
    name (贝母) matches the species of ours that carries it. The sets *agree* when they are equal, or when they
    differ only in ingredients our entry marks as named in the method of preparation (``kb.model.USAGE_MARK``): those rows
    are counted and listed apart (``agree_usage``). Every other difference is a disagreement, listed with the
    reviewed verdict of eval/crosscheck/formulae.yaml, or ``unexplained``.
    """
    verdicts = verdicts if verdicts is not None else formula_verdicts()
    why = why if why is not None else explanations()
    path = data / "formulae" / "formulae.jsonl"
    if not path.is_file():
        raise InputError(f"{path}: not found")
    compared, agree, disagreements, no_composition = 0, 0, [], 0
    agree_usage: list[dict[str, Any]] = []
    agree_truncated: list[dict[str, Any]] = []
    agree_version: list[dict[str, Any]] = []
    expanded: list[dict[str, Any]] = []
    matched_names = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        r = kb.resolve(row["formula"], "formula")
        if not r.resolved or r.how == "variant" or r.id is None:
            continue
        matched_names += 1
        parsed = _composition(row.get("text", ""))
        if not parsed or not parsed[0]:
            no_composition += 1
            continue
        theirs, declared = parsed
        compared += 1
        ours_f = kb.formulas[r.id]
        ours = {i.herb_id for i in ours_f.composition}
        known = ours.union(*({i.herb_id for i in v.composition} for v in ours_f.versions))
        their_ids, their_unresolved, their_not_herb = set(), [], []
        for name in theirs:
            name = _NOTE.sub("", name)  # 枳实（炒） -> 枳实: a processing note, not another herb
            if why.get(name, {}).get("verdict") == "not-herb" and not kb.resolve_herb(name).resolved:
                their_not_herb.append(name)  # the water or rice their list also names
                continue
            if "或" in name:  # 犀牛屑或水牛角浓缩粉: either drug; the one we have, else the first
                alts = [a for a in name.split("或") if a]
                hits = [a for a in alts if (ra := kb.resolve_herb(a)).resolved and ra.id in known]
                name = hits[0] if hits else alts[0]
            rr = kb.resolve_herb(name)
            if rr.resolved and rr.id:
                their_ids.add(rr.id)
                continue
            fr = kb.resolve(name, "formula")
            if fr.resolved and fr.how != "variant" and fr.id is not None and fr.id != r.id:
                their_ids |= {i.herb_id for i in kb.formulas[fr.id].composition}
                expanded.append({"formula": ours_f.name, "component": name, "as": kb.formulas[fr.id].name})
                continue
            # a generic name (贝母, 沙参) matches the species of ours that carries it
            species = sorted(h for h in known if name in kb.herbs[h].name and len(name) >= 2)
            if species:
                their_ids.add(species[0])
            else:
                their_unresolved.append(name)
        if not their_unresolved:
            listed = (declared, len(theirs))
            how = _same_herbs(their_ids, ours_f.composition, listed)
            if how is not None:
                agree += 1
                if how == "truncated":
                    agree_truncated.append({"formula": ours_f.name, "id": ours_f.id, "listed": len(theirs),
                                            "declared": declared})  # fmt: skip
                elif how == "usage":
                    agree_usage.append({"formula": ours_f.name, "id": ours_f.id,
                                        "named_in_usage_only_ours": sorted(kb.herbs[h].name for h in ours - their_ids)})  # fmt: skip
                continue
            hit = next(((n, v) for n, v in enumerate(ours_f.versions)
                        if _same_herbs(their_ids, v.composition, listed) is not None), None)  # fmt: skip
            if hit is not None:
                n, v = hit
                agree += 1
                agree_version.append({"formula": ours_f.name, "id": ours_f.id, "version": n, "kind": v.kind,
                                      **({"name": v.name} if v.name else {}), "source": v.source.label(),
                                      "only_main": sorted(kb.herbs[h].name for h in ours - their_ids),
                                      "only_version": sorted(kb.herbs[h].name for h in their_ids - ours)})  # fmt: skip
                continue
        substitution: list[dict[str, str]] = []
        if not their_unresolved:
            mapped, used = _substituted(kb, ours_f.id, their_ids)
            if used and _same_herbs(mapped, ours_f.composition, (declared, len(theirs))) is not None:
                substitution = used  # the same formula with a documented modern substitute: still a difference
        v = verdicts.get(ours_f.id, {})
        disagreements.append({
            "formula": ours_f.name, "id": ours_f.id, "their_name": row["formula"],
            "only_ours": sorted(kb.herbs[h].name for h in ours - their_ids),
            "only_theirs": sorted(kb.herbs[h].name for h in their_ids - ours),
            "theirs_unresolved": their_unresolved, **({"theirs_not_herb": their_not_herb} if their_not_herb else {}),
            "verdict": v.get("verdict", "unexplained"), **({"reason": v["detail"]} if v.get("detail") else {}),
            **({"substitution": substitution} if substitution else {}),
        })  # fmt: skip
    by_verdict = Counter(d["verdict"] for d in disagreements)
    disagreeing = {d["id"] for d in disagreements}
    stale = sorted(i for i, v in verdicts.items() if v.get("fixed") and i in disagreeing)
    # reviewed entries for formulas that now agree (kept only as a record of a fix): anything else is out of date
    outdated = sorted(i for i, v in verdicts.items() if i not in disagreeing and not v.get("fixed"))
    return {
        "in_both": matched_names, "compared": compared, "without_composition": no_composition, "agree": agree,
        "agreement": round(agree / compared, 4) if compared else None,
        "agree_main": agree - len(agree_version),
        "agreement_main": round((agree - len(agree_version)) / compared, 4) if compared else None,
        "agree_exact": agree - len(agree_usage) - len(agree_truncated) - len(agree_version),
        "agree_usage": agree_usage, "agree_truncated": agree_truncated, "agree_version": agree_version,
        "components_expanded": expanded,
        "disagreements_by_verdict": dict(by_verdict.most_common()),
        "disagreements_by_substitute_only": sum(1 for d in disagreements if "substitution" in d),
        **({"fixed_but_still_disagree": stale} if stale else {}),
        **({"verdicts_for_agreeing_formulas": outdated} if outdated else {}),
        "disagreements": disagreements,
    }  # fmt: skip


def coverage(kb: KnowledgeBase, data: Path | None = None) -> dict[str, Any]:
    data = data or default_data_dir()
    if data is None or not data.is_dir():
        raise InputError(f"shared data directory not found: {data} (pass --data DIR or set TCM_DATA_DIR)")
    why = explanations()
    return {
        "kb_version": str(kb.version),
        "data": str(data),
        "herbs": {
            "tcm-pd": _resolve_list(kb, _names(data / "tcm-pd" / "herbs_contains.txt"), "herb", why),
            "smgcn": _resolve_list(kb, _names(data / "smgcn" / "herb_mapping.txt", mapping=True), "herb", why),
            "tcm-cases": _cases(kb, data, why),
        },
        "symptoms": {"tcm-pd": _resolve_list(kb, _names(data / "tcm-pd" / "symptom_contains.txt"), "symptom")},
        "formulas": _formulas(kb, data, why=why),
    }
