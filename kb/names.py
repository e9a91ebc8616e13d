"""Name resolution: any string a physician may write -> the knowledge-base entry it names.

Herbs resolve to a herb and, where written, a processed form. The steps, in order (each step only runs when the
ones before it found nothing, so a name the knowledge base knows is never taken apart):

1. exact name, alias, form name, pinyin or Latin name, after normalisation (full-width, whitespace, quotes,
   traditional characters: ``kb.normalize``);
2. names listed as *distinct* (``kb/data/names/``) stop here: 广防己 is not 防己 with a regional prefix;
3. a processing prefix (生 炙 制 炒 焦 炭 酒 醋 盐 姜 蜜 煅 法 清 麸炒 …, and the way case records write them: 酒炒
   盐水炒 姜汁炒 米炒 鳖血炒 炒黑 水炙 …) on a herb name: the herb's own form with that processing when the content
   defines one, else a generic processed form of the herb. Prefixes stack (酒炒炒薏米, 盐水炒煅牡蛎: the inner name
   decides), and a prefix on a form's name gives that form (炒法半夏 = 法半夏, processed once more); a raw prefix
   on a processed name (生炙甘草) names nothing. A coating prefix (朱, 辰) gives the coated form only where the
   content defines it (朱茯神);
4. a regional prefix (川 浙 怀 杭 广 北 南 …) or a quality word (大 嫩 原 陈 光 润 …) on a herb name;
5. a processing suffix (炭, 灰, 粉) or a physical-form suffix (泥 块 末 梢 须 汁 肉 尾 …) on a herb name.

``NameIndex.split_combined`` reads the names that write two drugs at once (赤白芍 = 赤芍 + 白芍, 川象贝, 生熟地,
橘红络, 乳没, and 朱天冬 = 天冬 + its 朱砂 coating); ``resolve`` never does, since one name must give one entry.

Unresolvable names come back unresolved with the closest candidates, never silently dropped. Symptoms, tongue
and pulse terms resolve through names and synonyms, with the usual written variants (舌质红 = 舌红,
脉象浮紧 = 脉浮紧, 浮紧脉 = 脉浮紧).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any, NamedTuple

from kb.normalize import normalize

logger = logging.getLogger(__name__)

# Processing prefixes, longest first, with the words that identify a form's `processing` for each.
PROCESSING_PREFIXES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("麸炒", ("麸炒",)),
    ("麸", ("麸炒",)),  # 麸枳壳, 麸枳实: bran-fried
    ("土炒", ("土炒",)),
    ("蜜炙", ("蜜",)),
    ("酒炙", ("酒",)),
    ("醋炙", ("醋",)),
    ("盐炙", ("盐",)),
    ("姜炙", ("姜",)),
    ("炒焦", ("焦",)),
    ("炒炭", ("炭",)),
    # the way case records write the same processings: 酒炒白芍, 盐水炒杜仲, 姜汁炒竹茹, 米炒党参, 鳖血炒柴胡
    ("酒炒", ("酒",)),
    ("酒洗", ("酒",)),
    ("酒浸", ("酒",)),
    ("酒蒸", ("酒",)),
    ("酒制", ("酒",)),
    ("醋炒", ("醋",)),
    ("醋制", ("醋",)),
    ("醋煅", ("醋",)),
    ("醋煮", ("醋",)),
    ("盐水炒", ("盐",)),
    ("盐水炙", ("盐",)),
    ("盐水洗", ("盐",)),
    ("盐水", ("盐",)),
    ("盐炒", ("盐",)),
    ("盐煮", ("盐",)),
    ("姜汁炒", ("姜",)),
    ("姜汁炙", ("姜",)),
    ("姜汁", ("姜",)),
    ("姜炒", ("姜",)),
    ("蜜炒", ("蜜",)),
    ("米炒", ("米炒",)),
    ("米焙", ("米炒",)),
    ("鳖血炒", ("鳖血",)),
    ("鳖血拌", ("鳖血",)),
    ("蛤粉炒", ("蛤粉",)),
    ("清炙", ("清炒",)),  # stir-fried without an adjuvant, not honey-fried
    ("炒黑", ("炭",)),  # fried black: the charred form where the content defines one
    ("炒枯", ("炭",)),
    ("炙黑", ("炭",)),
    ("九制", ("制",)),  # 九制香附, 九制胆星, 四制香附: processed in several rounds
    ("七制", ("制",)),
    ("四制", ("制",)),
    ("炒香", ("炒",)),
    ("炒黄", ("炒",)),
    ("炒透", ("炒",)),
    ("炒熟", ("炒",)),
    ("微炒", ("炒",)),
    ("拌炒", ("炒",)),
    ("同炒", ("炒",)),
    ("生", ("生品",)),
    ("炙", ("蜜炙", "炙")),
    ("制", ("制",)),
    ("炒", ("炒",)),
    ("焦", ("焦",)),
    ("酒", ("酒",)),
    ("醋", ("醋",)),
    ("盐", ("盐",)),
    ("姜", ("姜",)),
    ("蜜", ("蜜",)),
    ("煅", ("煅",)),
    ("法", ("法",)),
    ("清", ("清",)),
    ("炮", ("炮", "砂烫")),
    ("煨", ("煨",)),
    ("烫", ("烫",)),
    ("蒸", ("蒸",)),
    ("鲜", ("鲜",)),
    ("净", ("净",)),
    ("焙", ("焙",)),
    ("漂", ("漂",)),
    ("淡", ("漂",)),  # 淡附片, 淡吴萸, 淡干姜: soaked to take the taste out (淡竹叶 and 淡豆豉 are names of their own)
    ("晒", ("晒",)),
    ("洗", ("洗",)),
    ("泡", ("泡",)),
    ("水炙", ("清炒",)),  # 水炙桑皮: moistened and fried without an adjuvant
    ("酥炙", ("酥",)),
    ("灼", ("炒",)),
    ("镑", ("镑",)),  # shaved (镑犀角, 镑羚羊)
    ("劈", ("劈",)),
    ("炒松", ("炒",)),  # lightly fried until loose
    ("麻油炒黄", ("油",)),
    ("麻油炒", ("油",)),
    ("糖炒", ("糖",)),
    ("藕粉炒", ("炒",)),
    ("麦炒", ("麸炒",)),
    ("炙酥", ("酥",)),
    ("酥", ("酥",)),
    ("熬", ("炒",)),  # the classical word for dry-frying (熬令黄)
    ("炼", ("炼",)),  # 炼蜜: refined
)
# Prefixes naming an adjuvant that stays in the piece (朱砂 coating, 青黛 coating, 砂仁 or 吴茱萸 it was fried with):
# where the content defines the coated form (朱茯神) that form is the answer; otherwise the name is the herb *and*
# the adjuvant (``NameIndex.split_combined``), never the plain herb, so that 朱砂 is not hidden from safety checks.
ADJUVANT_PREFIXES: tuple[tuple[str, str | None], ...] = (
    ("朱砂拌", "朱砂"), ("辰砂拌", "朱砂"), ("朱拌", "朱砂"), ("辰拌", "朱砂"), ("朱染", "朱砂"), ("辰染", "朱砂"), ("朱", "朱砂"),
    ("辰", "朱砂"), ("青黛拌", "青黛"), ("黛拌", "青黛"), ("黛", "青黛"), ("砂仁末拌", "砂仁"), ("砂仁拌", "砂仁"),
    ("砂仁炒", "砂仁"), ("吴萸水炒", "吴茱萸"), ("吴萸炒", "吴茱萸"), ("萸炒", "吴茱萸"), ("甘草水浸", "甘草"),
    ("甘草水炒", "甘草"), ("伏龙肝炒", "灶心土"),
)  # fmt: skip
# Two-drug shorthand that no prefix/suffix rule derives (乳没 = 乳香 + 没药). Shared stems (赤白芍, 橘红络) are
# derived by ``NameIndex.split_combined`` and need no entry here.
SHORTHAND: dict[str, tuple[str, ...]] = {
    "乳没": ("乳香", "没药"),
    "龙牡": ("龙骨", "牡蛎"),
    "枳桔": ("枳壳", "桔梗"),
    "二冬": ("天冬", "麦冬"),
    "二芽": ("谷芽", "麦芽"),
    "焦三仙": ("焦山楂", "焦神曲", "焦麦芽"),
    "苓神": ("茯苓", "茯神"),
    "银翘": ("金银花", "连翘"),
    "藿佩": ("藿香", "佩兰"),
    "羌独": ("羌活", "独活"),
    "腹皮子": ("大腹皮", "槟榔"),  # 大腹皮 and 大腹子 (槟榔)
    "桑菊": ("桑叶", "菊花"),
    "荆防": ("荆芥", "防风"),
    "姜枣": ("生姜", "大枣"),  # 加姜枣: the ginger and jujube added to the decoction
    "栀豉": ("栀子", "淡豆豉"),
}
PROCESSING_SUFFIXES: tuple[tuple[str, str], ...] = (("炭", "炒炭"), ("灰", "炒炭"), ("粉", "研粉"))
# Physical forms and portions written after a herb name that do not make it another drug (杏仁泥, 茯苓块, 降香末,
# 甘草梢, 归须, 鲜生地汁, 诃子肉). 壳, 皮, 心, 衣 and 梗 are left out on purpose: they often name another part with other actions.
PART_SUFFIXES: tuple[str, ...] = ("泥", "块", "末", "片", "节", "梢", "尖", "须", "屑", "汁", "肉", "尾")
# Quality words physicians put before a name (大白芍, 嫩前胡, 原麦冬, 陈阿胶, 上肉桂, 上上梅片, 厚牡蛎, 开口花椒): they
# describe the piece, not another drug. Only stripped when the whole name is unknown and what remains is a herb name
# of two or more characters, so 大黄, 小蓟, 白附子, 大青叶 are never taken apart.
# 白, 金, 苦, 甜, 淡 and 明 are left out: 白附子, 甜杏仁 and 明党参 are other drugs than 附子, 杏仁 and 党参.
QUALITY_PREFIXES: tuple[str, ...] = (
    "大", "小", "嫩", "原", "陈", "上", "真", "净", "正", "老", "细", "肥", "整", "粉", "光", "干", "左", "溏", "枯",
    "润", "原支", "原枝", "直", "统", "新", "整段", "块", "上上", "顶高", "厚", "原粒", "大块", "开口",
)  # fmt: skip
REGIONAL_PREFIXES: tuple[str, ...] = (
    "川", "浙", "怀", "淮", "杭", "广", "北", "南", "云", "建", "江", "关", "辽", "宁", "亳", "祁", "潞", "台",
    "藏", "苏", "宣", "茅", "西", "东", "贡", "密", "甘", "青", "京", "福", "潼",
)  # fmt: skip


class Target(NamedTuple):
    kind: str  # herb | formula | syndrome | disease | symptom
    id: str
    form_id: str | None = None


class Resolution(NamedTuple):
    """How one written name resolved. A NamedTuple: lookups build many of these, and it is cheap to make."""

    input: str
    resolved: bool
    kind: str | None = None
    id: str | None = None
    name: str | None = None  # canonical name of the entry
    form_id: str | None = None  # a processed form the content defines
    form: str | None = None  # processed form as written (defined or generic), None for the plain herb
    processing: str | None = None
    raw: bool = False  # the written form is a raw (生) form
    how: str = "exact"  # exact | normalized | processing | regional | suffix | variant | unresolved | distinct
    candidates: tuple[str, ...] = ()
    note: str | None = None
    others: tuple[Target, ...] = ()  # further entries the same name names (other kinds, or syndromes of other diseases)

    def as_dict(self) -> dict[str, Any]:
        return {
            "input": self.input,
            "resolved": self.resolved,
            "kind": self.kind,
            "id": self.id,
            "name": self.name,
            "form": self.form,
            "form_id": self.form_id,
            "processing": self.processing,
            "how": self.how,
            **({"candidates": list(self.candidates)} if not self.resolved else {}),
            **({"note": self.note} if self.note else {}),
        }


class NameIndex:
    """Normalised name -> targets, for every kind, plus the rules above for herbs and symptoms.

    Built once per knowledge base; lookups are pure and thread-safe (the memo dict only ever gains entries whose
    values are immutable, and a lost race just computes the same value twice).
    """

    def __init__(self, kb: Any):
        self._kb = kb
        self._names: dict[str, dict[str, str]] = {}  # kind -> id -> display name, filled by freeze()
        self._by_kind: dict[str, dict[str, list[Target]]] = {}  # kind -> key -> targets, filled by freeze()
        self.index: dict[str, list[Target]] = defaultdict(list)
        self.distinct: dict[str, str] = {}  # normalised name -> why it is not what it looks like
        self._memo: dict[tuple[str, str | None], Resolution] = {}
        self._quick: dict[tuple[str, str | None], Resolution] = {}  # unresolved, looked up without candidates
        self._char_index: dict[str, dict[str, set[str]]] | None = defaultdict(_char_bucket)
        self._display: dict[str, dict[str, str]] = defaultdict(dict)  # kind -> key -> display name

    # ---- building ------------------------------------------------------------------------------------
    def add(self, name: str, target: Target, display: str | None = None) -> str | None:
        """Index one name; returns a collision message when the key already names a different entry."""
        key = normalize(name)
        if not key:
            return f"name {name!r} is empty after normalisation"
        existing = self.index[key]
        clash = None
        for t in existing:
            if t == target:
                return None
            if t.kind == target.kind and target.kind in ("herb", "symptom", "formula"):
                clash = f"name {name!r} names two {target.kind} entries: {_tid(t)} and {_tid(target)}"
        existing.append(target)
        if self._char_index is not None:
            kind_chars = self._char_index[target.kind]
            for ch in set(key):
                kind_chars[ch].add(key)
        self._display[target.kind].setdefault(key, display or name)
        return clash

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_memo"] = {}
        state["_quick"] = {}
        state["_char_index"] = None  # rebuilt from the index on the first closest-name query
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("_quick", {})

    def _chars(self) -> dict[str, dict[str, set[str]]]:
        if self._char_index is None:
            idx: dict[str, dict[str, set[str]]] = defaultdict(_char_bucket)
            for key, targets in self.index.items():
                for kind in {t.kind for t in targets}:
                    for ch in set(key):
                        idx[kind][ch].add(key)
            self._char_index = idx
        return self._char_index

    def freeze(self) -> None:
        """Called once the knowledge base is built: caches display names and a per-kind index for fast lookups."""
        by_kind: dict[str, dict[str, list[Target]]] = defaultdict(dict)
        for key, targets in self.index.items():
            for t in targets:
                by_kind[t.kind].setdefault(key, []).append(t)
        self._by_kind = dict(by_kind)
        kb = self._kb
        self._names = {
            "herb": {k: v.name for k, v in kb.herbs.items()},
            "formula": {k: v.name for k, v in kb.formulas.items()},
            "syndrome": {k: v.name for k, v in kb.syndromes.items()},
            "disease": {k: v.name for k, v in kb.diseases.items()},
            "symptom": {k: v.name for k, v in kb.symptoms.items()},
        }

    def add_distinct(self, name: str, reason: str) -> None:
        self.distinct[normalize(name)] = reason

    # ---- lookups -------------------------------------------------------------------------------------
    def lookup(self, text: str, kind: str | None = None, candidates: bool = True) -> Resolution:
        """Resolve ``text``; ``candidates=False`` skips the closest-name search for a name that does not resolve
        (bulk readers that only ask *whether* a string is a name)."""
        memo_key = (text, kind)
        hit = self._memo.get(memo_key)
        if hit is not None:
            return hit
        if not candidates:
            hit = self._quick.get(memo_key)
            if hit is not None:
                return hit
        res = self._lookup(text, kind, candidates)
        if res.resolved or candidates:
            if len(self._memo) < 200_000:
                self._memo[memo_key] = res
        elif len(self._quick) < 500_000:
            self._quick[memo_key] = res
        return res

    def _lookup(self, text: str, kind: str | None, want_candidates: bool = True) -> Resolution:
        if kind is None:
            table: Any = self.index
        elif self._by_kind:
            table = self._by_kind.get(kind, {})
        else:  # while the knowledge base is being built
            table = _KindView(self.index, kind)
        raw = table.get(text) if isinstance(text, str) else None
        if raw:  # written exactly as the knowledge base writes it: no normalisation needed
            return self._make(text, raw, "exact")
        key = normalize(text) if isinstance(text, str) else ""
        if not key:
            return Resolution(input=text, resolved=False, how="unresolved", note="empty name")
        how = "exact" if key == text else "normalized"
        targets = table.get(key)
        if targets:
            return self._make(text, targets, how)
        if kind in (None, "herb"):
            if key in self.distinct:
                return Resolution(
                    input=text, resolved=False, how="distinct", note=self.distinct[key],
                    candidates=self.candidates(key, "herb") if want_candidates else (),
                )  # fmt: skip
            res = self._derive_herb(text, key)
            if res is not None:
                return res
        if kind in (None, "symptom"):
            res = self._symptom_variant(text, key)
            if res is not None:
                return res
        if kind in (None, "formula"):
            for suffix in ("加减", "化裁", "加味"):
                if key.endswith(suffix) and len(key) > len(suffix) + 1:
                    base = [t for t in self.index.get(key[: -len(suffix)], []) if t.kind == "formula"]
                    if base:
                        r = self._make(text, base, "variant")
                        return r._replace(note=f"{suffix}: the base formula, modified")
        if not want_candidates:
            return Resolution(input=text, resolved=False, how="unresolved")
        kinds = [kind] if kind else ["herb", "formula", "syndrome", "symptom", "disease"]
        cands: list[str] = []
        for k in kinds:
            cands += self.candidates(key, k, limit=5)
        return Resolution(input=text, resolved=False, how="unresolved", candidates=tuple(cands[:8]))

    def _make(self, text: str, targets: list[Target], how: str) -> Resolution:
        if len(targets) > 1:
            targets = sorted(targets, key=lambda t: (_KIND_ORDER.get(t.kind, 9), self._kb.rank(t)))
        t = targets[0]
        if t.kind == "herb" and t.form_id is None and len(targets) == 1:  # the common case, built directly
            return Resolution(text, True, "herb", t.id, self._names["herb"][t.id] if self._names else
                              self._kb.display_name("herb", t.id), None, None, None, False, how)  # fmt: skip
        name = self._names[t.kind][t.id] if t.kind in self._names else self._kb.display_name(t.kind, t.id)
        form = form_name = None
        processing = None
        raw = False
        if t.kind == "herb" and t.form_id:
            f = self._kb.forms[t.form_id]
            form, form_name, processing, raw = f.id, f.name, f.processing, f.raw
        return Resolution(
            input=text, resolved=True, kind=t.kind, id=t.id, name=name, form_id=form, form=form_name,
            processing=processing, raw=raw, how=how, others=tuple(targets[1:]),
        )  # fmt: skip

    def _herb_exact(self, key: str) -> Target | None:
        for t in self.index.get(key, ()):
            if t.kind == "herb":
                return t
        return None

    def _herb_base(self, key: str, allow_suffix: bool = True) -> tuple[Target, str] | None:
        """Resolve the herb part of a derived name: exact, or a regional prefix, or a suffix."""
        t = self._herb_exact(key)
        if t is not None:
            return t, "exact"
        if key in self.distinct:
            return None
        for p in REGIONAL_PREFIXES:
            if key.startswith(p) and len(key) - len(p) >= 2:
                t = self._herb_exact(key[len(p) :])
                if t is not None and t.form_id is None:
                    return t, "regional"
        for p in QUALITY_PREFIXES:
            if key.startswith(p) and len(key) - len(p) >= 2 and key not in self.distinct:
                t = self._herb_exact(key[len(p) :])
                if t is not None:
                    return t, "qualifier"
        if allow_suffix:
            for suf, _ in PROCESSING_SUFFIXES:
                if key.endswith(suf) and len(key) - len(suf) >= 2:
                    # 乌梅炭, and 乌梅肉炭 (a physical-form suffix before the processing one)
                    t = self._herb_exact(key[: -len(suf)])
                    if t is None:
                        part = self._herb_part(key[: -len(suf)])
                        t = part[0] if part else None
                    if t is None:  # 原麝香粉, 真猴枣粉: a quality or regional word before the name
                        qual = self._herb_base(key[: -len(suf)], allow_suffix=False)
                        t = qual[0] if qual else None
                    if t is not None and (t.form_id is None or suf == "炭"):  # 乌梅肉炭: the herb's 炭 form
                        return Target(t.kind, t.id), "suffix"
            for suf in PART_SUFFIXES:
                if key.endswith(suf) and len(key) - len(suf) >= 2:
                    base = self._herb_base(key[: -len(suf)], allow_suffix=False)
                    if base is not None:
                        return base[0], "part"
        return None

    def _herb_part(self, key: str) -> tuple[Target, str] | None:
        """A herb name with a physical-form suffix (滑石块, 甘草梢), for names that also carry a prefix (生滑石块)."""
        for suf in PART_SUFFIXES:
            if key.endswith(suf) and len(key) - len(suf) >= 2:
                base = self._herb_base(key[: -len(suf)], allow_suffix=False)
                if base is not None:
                    return base[0], "part"
        return None

    def _derive_herb(self, text: str, key: str, depth: int = 0) -> Resolution | None:
        # a powder or physical form of a form's own name (法半夏粉, 炙甘草片): that form, before any prefix is read
        for tail in _FORM_KEEPING_SUFFIXES:
            if key.endswith(tail) and len(key) - len(tail) >= 2:
                t = self._herb_exact(key[: -len(tail)])
                if t is not None and t.form_id is not None:
                    f = self._kb.forms[t.form_id]
                    return Resolution(
                        input=text, resolved=True, kind="herb", id=t.id, name=self._kb.herbs[t.id].name,
                        form_id=f.id, form=f.name, processing=f.processing, raw=f.raw, how="part",
                    )  # fmt: skip
        for prefix, words in _PREFIXES_BY_CHAR.get(key[:1], ()):
            if not key.startswith(prefix) or len(key) - len(prefix) < 2:
                continue
            rest = key[len(prefix) :]
            base = self._herb_base(rest, allow_suffix=False) or self._herb_part(rest)
            if base is None:
                # stacked processing words (酒炒炒薏米, 盐水炒煅牡蛎, 土炒制于术): the inner name decides the herb and
                # the form; a raw prefix on a processed name is a contradiction and is not taken apart
                if depth < 2 and prefix != "生" and rest not in self.distinct:
                    inner = self._derive_herb(text, rest, depth + 1)
                    if inner is not None and inner.resolved:
                        if inner.form_id:
                            return inner._replace(how="processing", note=f"{key}: {inner.form}, further processed "
                                                  f"({prefix}); the form's values apply")  # fmt: skip
                        return inner._replace(how="processing", form=key, processing=prefix + (inner.processing or ""))
                continue
            target, _ = base
            herb = self._kb.herbs[target.id]
            if target.form_id is not None:
                if prefix == "生":
                    continue  # 生 on a processed form's name (生炙甘草) names nothing
                # a prefix on a form's name (炒法半夏, 醋炒炙甘草): that form, processed once more
                f = self._kb.forms[target.form_id]
                return Resolution(
                    input=text, resolved=True, kind="herb", id=herb.id, name=herb.name, form_id=f.id, form=f.name,
                    processing=f.processing, raw=f.raw, how="processing",
                    note=f"{key}: {f.name}, further processed ({prefix}); the form's values apply",
                )  # fmt: skip
            form = self._pick_form(herb, prefix, words)
            if form is not None:
                return Resolution(
                    input=text, resolved=True, kind="herb", id=herb.id, name=herb.name, form_id=form.id,
                    form=form.name, processing=form.processing, raw=form.raw, how="processing",
                )  # fmt: skip
            raw = prefix == "生"
            return Resolution(
                input=text, resolved=True, kind="herb", id=herb.id, name=herb.name, form_id=None,
                form=key, processing="生品" if raw else prefix, raw=raw, how="processing",
                note=None if raw else f"{key}: a processed form of {herb.name} the knowledge base does not describe "
                "separately; the herb's values apply",
            )  # fmt: skip
        adj = self._adjuvant_form(text, key)
        if adj is not None:
            return adj
        base = self._herb_base(key)
        if base is None:
            return None
        target, how = base
        herb = self._kb.herbs[target.id]
        if how in ("qualifier", "part") and target.form_id:
            f = self._kb.forms[target.form_id]
            return Resolution(
                input=text, resolved=True, kind="herb", id=herb.id, name=herb.name, form_id=f.id, form=f.name,
                processing=f.processing, raw=f.raw, how=how,
            )  # fmt: skip
        if how == "suffix":
            suf = next(s for s in PROCESSING_SUFFIXES if key.endswith(s[0]))
            form = self._pick_form(herb, suf[0], ("炭",) if suf[0] == "灰" else (suf[0],))  # 地榆灰 = 地榆炭
            if form is not None:
                return Resolution(
                    input=text, resolved=True, kind="herb", id=herb.id, name=herb.name, form_id=form.id,
                    form=form.name, processing=form.processing, raw=form.raw, how="suffix",
                )  # fmt: skip
            return Resolution(
                input=text, resolved=True, kind="herb", id=herb.id, name=herb.name, form=key, processing=suf[1],
                how="suffix",
            )  # fmt: skip
        return Resolution(input=text, resolved=True, kind="herb", id=herb.id, name=herb.name, how=how)

    def _adjuvant_form(self, text: str, key: str) -> Resolution | None:
        """朱茯神-style names: the herb's own coated form, only where the content defines it."""
        for prefix, adjuvant in ADJUVANT_PREFIXES:
            if not adjuvant or not key.startswith(prefix) or len(key) - len(prefix) < 2:
                continue
            base = self._herb_base(key[len(prefix) :], allow_suffix=False)
            if base is None or base[0].form_id is not None:
                continue
            herb = self._kb.herbs[base[0].id]
            forms = [f for f in (self._kb.forms[i] for i in herb.form_ids) if (f.processing or "").startswith(adjuvant)]
            if len(forms) == 1:
                f = forms[0]
                return Resolution(
                    input=text, resolved=True, kind="herb", id=herb.id, name=herb.name, form_id=f.id, form=f.name,
                    processing=f.processing, raw=f.raw, how="processing",
                )  # fmt: skip
        return None

    def split_combined(self, text: str) -> tuple[Resolution, ...] | None:
        """A name that writes two (or three) drugs at once -> one resolution per drug; None when it is not one.

        Only for names that do not resolve as a whole and are not listed as distinct:

        * shorthand of ``SHORTHAND`` (乳没 = 乳香 + 没药), with a processing word applied to each (炙乳没);
        * two one-character heads on a shared stem: 赤白芍 = 赤芍 + 白芍, 川象贝 = 川贝 + 象贝, 生熟地 = 生地 + 熟地,
          南北沙参, 谷麦芽, 生熟谷麦芽 (stems nest once);
        * a shared head with two one-character tails: 橘红络 = 橘红 + 橘络, 冬瓜子皮, 桑叶皮, 苏子梗;
        * an adjuvant prefix (``ADJUVANT_PREFIXES``) on a herb without its own coated form: 朱天冬 = 天冬 + 朱砂.

        Every part must resolve as a herb on its own, so a name is only ever split into names the knowledge base knows.
        """
        key = normalize(text) if isinstance(text, str) else ""
        if len(key) < 2 or self.lookup(key, "herb", False).resolved:
            return None
        parts = self._split(key, 0)
        if parts is None:
            return None
        note = f"{key}: {' + '.join(p.name or p.input for p in parts)}"
        return tuple(p._replace(input=text, how="combined", note=note) for p in parts)

    def _part(self, name: str, depth: int) -> list[Resolution] | None:
        r = self.lookup(name, "herb", False)
        if r.resolved:
            return [r]
        if depth < 1 and name not in self.distinct:
            return self._split(name, depth + 1)
        return None

    def _split(self, key: str, depth: int) -> list[Resolution] | None:
        n = len(key)
        for abbr, names in SHORTHAND.items():
            if key.endswith(abbr):
                pre = key[: -len(abbr)]
                if pre and pre not in _ALL_PREFIXES:
                    continue
                rs = [self.lookup(pre + x, "herb", False) for x in names]
                if not all(r.resolved for r in rs):
                    rs = [self.lookup(x, "herb", False) for x in names]
                if all(r.resolved for r in rs):
                    return rs
        for prefix, adjuvant in ADJUVANT_PREFIXES:
            if key.startswith(prefix) and n - len(prefix) >= 2 and adjuvant:
                rest = self._part(key[len(prefix) :], depth)
                adj = self.lookup(adjuvant, "herb", False)
                if rest is not None and adj.resolved:
                    return [*rest, adj]
        if n < 3:
            return None
        options: list[tuple[int, int, list[Resolution]]] = []
        # shared stem: [prefix] x y stem, the prefix empty or a processing/regional/quality word
        for i in range(0, n - 2):
            pre, x, y, stem = key[:i], key[i], key[i + 1], key[i + 2 :]
            if pre and pre not in _ALL_PREFIXES:
                continue
            a, b = self._part(pre + x + stem, depth), self._part(pre + y + stem, depth)
            # 生熟赤芍: raw and prepared 赤芍 (熟 is no prefix of its own: 熟地黄 is another herb)
            if b is None and x + y == "生熟" and depth == 0:
                r = self.lookup(pre + stem, "herb", False)
                if r.resolved and r.form_id is None and pre + stem not in self.distinct:
                    b = [r._replace(form=f"熟{stem}", processing="熟")]
            if a is not None and b is not None:
                options.append((len(a) + len(b), -i, [*a, *b]))
        # shared head: head x y (乌梅肉炭 is 乌梅肉, charred: a suffix is never the second tail)
        head, x, y = key[:-2], key[-2], key[-1]
        ra, rb = self.lookup(head + x, "herb", False), self.lookup(head + y, "herb", False)
        if ra.resolved and rb.resolved and (ra.id, ra.form) != (rb.id, rb.form) and y not in _SUFFIX_CHARS:
            options.append((2, 0, [ra, rb]))
        # two readings of one drug (黄甘菊花 = 黄菊花 + 甘菊花, both 菊花) are a qualified name, not two drugs
        options = [o for o in options if len({(r.id, r.form) for r in o[2]}) > 1]
        if options:  # fewest parts, then the longest prefix shared by both (炒谷麦芽 = 炒谷芽 + 炒麦芽)
            return min(options, key=lambda o: (o[0], o[1]))[2]
        return None

    def _pick_form(self, herb: Any, prefix: str, words: tuple[str, ...]) -> Any:
        forms = [self._kb.forms[f] for f in herb.form_ids]
        if prefix == "生":
            raw = [f for f in forms if f.raw]
            return raw[0] if len(raw) == 1 else None
        named = [f for f in forms if f.name == prefix + herb.name]
        if len(named) == 1:
            return named[0]
        matching = [f for f in forms if not f.raw and any(w in f.processing for w in words)]
        # a prefix never lands on a charred (炭), scorched (焦) or differently assisted form it does not name: 炒蒲黄
        # is not 蒲黄炭, 炒松当归 is not 当归炭, 炒白术 is not 焦白术; only a prefix that says so does
        other = {"炭", "焦", "麸", "土", "盐", "醋", "酒", "蜜", "姜", "砂", "米", "血", "蛤", "油", "糖", "酥", "朱"}
        other -= set(prefix) | set("".join(words))
        matching = [f for f in matching if not (set(f.processing) & other)]
        return matching[0] if len(matching) == 1 else None

    def _symptom_variant(self, text: str, key: str) -> Resolution | None:
        variants = []
        inner = key.replace("：", "").replace(":", "").replace("，", "").replace(",", "").replace("、", "")
        variants.append(inner)
        v = inner.replace("舌质", "舌").replace("舌体", "舌").replace("脉象", "脉").replace("舌苔", "苔")
        variants.append(v)
        if v.startswith("苔"):
            variants.append("舌" + v)
        if v.endswith("脉") and not v.startswith("脉") and len(v) >= 2:
            variants.append("脉" + v[:-1])
        if v.startswith("脉") and len(v) >= 2:
            variants.append(v[1:] + "脉")
        for cand in variants:
            if cand == key:
                continue
            ts = [t for t in self.index.get(cand, ()) if t.kind == "symptom"]
            if ts:
                return self._make(text, ts, "variant")
        return None

    def candidates(self, key: str, kind: str, limit: int = 5) -> tuple[str, ...]:
        """Closest names of one kind: character overlap (Dice) with a bonus for a shared prefix."""
        chars = self._chars().get(kind)
        if not chars or not key:
            return ()
        pool: set[str] = set()
        for ch in set(key):
            pool |= chars.get(ch, set())
        kset = set(key)
        scored = []
        for name in pool:
            common = len(kset & set(name))
            score = 2 * common / (len(kset) + len(set(name)))
            if name[0] == key[0]:
                score += 0.1
            scored.append((score, name))
        scored.sort(key=lambda x: (-x[0], len(x[1]), x[1]))
        display = self._display[kind]
        out: list[str] = []
        for _, name in scored:
            shown = display.get(name, name)
            if shown not in out:
                out.append(shown)
            if len(out) >= limit:
                break
        return tuple(out)


_PREFIXES_BY_CHAR: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
for _p in sorted(PROCESSING_PREFIXES, key=lambda p: -len(p[0])):  # longest first: 盐水炒 before 盐水 before 盐
    _PREFIXES_BY_CHAR.setdefault(_p[0][0], []).append(_p)
_FORM_KEEPING_SUFFIXES: tuple[str, ...] = ("粉", *PART_SUFFIXES)
_SUFFIX_CHARS: frozenset[str] = frozenset({s for s, _ in PROCESSING_SUFFIXES} | set(PART_SUFFIXES))
_ALL_PREFIXES: frozenset[str] = frozenset(
    {p for p, _ in PROCESSING_PREFIXES} | set(REGIONAL_PREFIXES) | set(QUALITY_PREFIXES)
)


class _KindView:
    """The index seen through one kind, for lookups made before ``freeze`` builds the per-kind tables."""

    def __init__(self, index: dict[str, list[Target]], kind: str):
        self.index, self.kind = index, kind

    def get(self, key: str) -> list[Target] | None:
        return [t for t in self.index.get(key, ()) if t.kind == self.kind] or None


_KIND_ORDER = {"herb": 0, "formula": 1, "syndrome": 2, "symptom": 3, "disease": 4}


def _char_bucket() -> defaultdict[str, set[str]]:
    return defaultdict(set)


def _tid(t: Target) -> str:
    return f"{t.kind} {t.id}" + (f" (form {t.form_id})" if t.form_id else "")
