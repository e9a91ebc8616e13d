"""The engine's own values: frozen dataclasses built from validated content, with references resolved to ids.

Content files speak Chinese clinical terms (大毒, 禁用, 先煎); these objects keep those terms and expose the
contract's English codes (``high``, ``forbidden``) through the mapping tables below.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Any

from kb.normalize import normalize


class _Record:
    """Base of the frozen slotted records below: pickles as (class, field values), which unpickles ~10x faster
    than dataclasses' own __setstate__ (it calls ``fields()`` for every object)."""

    __slots__ = ()

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        fields: tuple[str, ...] = self.__slots__  # type: ignore[attr-defined]
        return (self.__class__, tuple(getattr(self, name) for name in fields))


class Severity(str, Enum):
    """The CDS Hooks card indicator values."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}

TOXICITY_CODE = {"大毒": "high", "有毒": "moderate", "小毒": "low"}
PREGNANCY_CODE = {"禁用": "forbidden", "忌用": "avoid", "慎用": "caution"}


DISCIPLINES = (
    "内科",
    "外科",
    "妇科",
    "儿科",
    "耳鼻咽喉科",
    "眼科",
    "骨伤科",
    "皮肤科",
)  # the order of kb.schema.Discipline


@dataclass(frozen=True, slots=True)
class Source(_Record):
    id: str
    work: str
    edition: str | None
    publisher: str | None
    year: int | None
    kind: str
    note: str | None


@dataclass(frozen=True, slots=True)
class SourceRef(_Record):
    ref: str
    loc: str | None
    work: str
    edition: str | None

    def label(self) -> str:
        parts = [self.work]
        if self.edition:
            parts.append(self.edition)
        if self.loc:
            parts.append(self.loc)
        return " · ".join(parts)

    def as_dict(self) -> dict[str, str | None]:
        return {"ref": self.ref, "work": self.work, "edition": self.edition, "section": self.loc}


@dataclass(frozen=True, slots=True)
class Safety(_Record):
    """Safety facts of a herb or of one of its forms (already merged with the herb's values)."""

    dose_g: tuple[float, float] | None
    toxicity: str | None  # 大毒 有毒 小毒
    pregnancy: str | None  # 禁用 忌用 慎用
    preparation: str | None
    internal_use: str  # allowed | processed_only | external_only | banned
    controlled: bool
    cautions: tuple[str, ...]
    populations: tuple[str, ...] = ()  # 儿童禁用, 哺乳期不宜 … (kb.schema.PopulationRestriction)

    def restriction(self, group: str) -> str | None:
        """The level (禁用 忌用 慎用 不宜) this herb carries for a population group (儿童, 哺乳期 …), if any."""
        return next((x[len(group) :] for x in self.populations if x.startswith(group)), None)

    @property
    def toxicity_code(self) -> str | None:
        return TOXICITY_CODE.get(self.toxicity) if self.toxicity else None

    @property
    def pregnancy_code(self) -> str | None:
        return PREGNANCY_CODE.get(self.pregnancy) if self.pregnancy else None

    def dose_dict(self) -> dict[str, float] | None:
        return {"min": self.dose_g[0], "max": self.dose_g[1]} if self.dose_g else None


@dataclass(frozen=True, slots=True)
class Form(_Record):
    id: str
    herb_id: str
    name: str
    aliases: tuple[str, ...]
    processing: str
    raw: bool
    safety: Safety
    own_fields: frozenset[str]  # safety fields the form sets itself (the rest are inherited)
    source: SourceRef
    verification: str


@dataclass(frozen=True, slots=True)
class Herb(_Record):
    id: str
    name: str
    pinyin: str
    latin: str | None
    aliases: tuple[str, ...]
    category: str
    nature: str | None
    flavours: tuple[str, ...]
    meridians: tuple[str, ...]
    functions: tuple[str, ...]
    indications: tuple[str, ...]
    safety: Safety
    form_ids: tuple[str, ...]
    source: SourceRef
    verification: str


@dataclass(frozen=True, slots=True)
class Ingredient(_Record):
    herb_id: str
    form_id: str | None
    written: str  # the name as the content wrote it
    dose_g: float | None
    amount: str | None
    role: str | None
    note: str | None
    dose_derived: bool = False  # dose_g computed from the original amount in proportion (kb.derive_doses)


@dataclass(frozen=True, slots=True)
class Substitution(_Record):
    """A documented modern substitute for a herb of the formulas (see ``kb.schema.Substitution``)."""

    id: str
    original_id: str  # herb ids
    substitute_id: str
    scope: str
    except_formula_ids: frozenset[str]
    note: str | None
    source: SourceRef
    verification: str


# An amount a physician writes today without grams: a count or a household measure (3片, 十二枚, 2~3枚, 荷梗5寸,
# 姜汁6匙), or grams written as a range (熟地黄9~30g). An original weight (一两, 等分) or volume (半升) is not one.
_MODERN_AMOUNT = re.compile(
    r"^(鲜者)?[\d一二三四五六七八九十两半]+([~～-][\d一二三四五六七八九十]+)?(枚|片|个|条|只|茎|根|粒|朵|节|寸|茶匙|匙|滴|g\b)"
)


# An ingredient the source names only in its method of preparation (姜枣 added to the decoction, honey for pills)
# carries this in its note (kb/data/FORMAT.md): it needs no dose of its own, and a list may name it or leave it out.
USAGE_MARK = "用法所加"


def named_in_usage(note: str | None) -> bool:
    return bool(note) and USAGE_MARK in (note or "")


def modern_amount(amount: str | None) -> bool:
    """Whether an ingredient's written amount is one a physician uses today (see ``_MODERN_AMOUNT``)."""
    return bool(amount) and _MODERN_AMOUNT.match(amount or "") is not None


VERSION_KINDS = {"药典": "pharmacopoeia", "原方": "original", "别本": "other"}


@dataclass(frozen=True, slots=True)
class FormulaVersion(_Record):
    """Another documented composition under a formula's name (see ``kb.schema.FormulaVersion``)."""

    kind: str  # contract code: pharmacopoeia | original | other
    name: str | None
    origin: str | None
    composition: tuple[Ingredient, ...]
    note: str | None
    source: SourceRef
    verification: str


@dataclass(frozen=True, slots=True)
class Formula(_Record):
    id: str
    name: str
    aliases: tuple[str, ...]
    origin: str | None
    category: str
    composition: tuple[Ingredient, ...]
    functions: tuple[str, ...]
    indications: tuple[str, ...]
    cautions: tuple[str, ...]
    usage: str | None
    source: SourceRef
    verification: str
    versions: tuple[FormulaVersion, ...] = ()

    def dispensed(self, written: str) -> list[tuple[Ingredient, bool]]:
        """What a pharmacy may dispense for the formula written by this name, each herb with whether it comes from
        a Pharmacopoeia 成药's list: that list alone when the name is the 成药's own (四君子丸, 藿香正气水); else the
        main composition plus the herbs of the 成药 that goes by the formula's name (either may be meant)."""
        chp = [v for v in self.versions if v.kind == "pharmacopoeia"]
        key = normalize(written)  # 四君子丸 in traditional characters or with stray spaces is the same name
        named = next((v for v in chp if v.name and normalize(v.name) == key), None)
        if named is not None:
            return [(i, True) for i in named.composition]
        out = [(i, False) for i in self.composition]
        have = {i.herb_id for i in self.composition}
        for v in chp:
            if v.name is None or v.name == self.name:
                out += [(i, True) for i in v.composition if i.herb_id not in have]
                have |= {i.herb_id for i in v.composition}
        return out


@dataclass(frozen=True, slots=True)
class Modification(_Record):
    when: tuple[str, ...]  # finding terms as written
    when_ids: tuple[str | None, ...]  # resolved symptom ids (None when the term is not in the vocabulary)
    add: tuple[Ingredient, ...]
    remove: tuple[str, ...]  # herb ids
    note: str | None


@dataclass(frozen=True, slots=True)
class Finding(_Record):
    """A finding term of a syndrome profile, as written, and the vocabulary entry it resolves to."""

    term: str
    symptom_id: str | None


@dataclass(frozen=True, slots=True)
class Syndrome(_Record):
    id: str
    disease_id: str
    name: str
    aliases: tuple[str, ...]
    codes: dict[str, str]
    key: tuple[Finding, ...]
    secondary: tuple[Finding, ...]
    tongue: tuple[Finding, ...]
    pulse: tuple[Finding, ...]
    contra: tuple[Finding, ...]
    principle: str
    formula_ids: tuple[str, ...]
    modifications: tuple[Modification, ...]
    source: SourceRef
    verification: str


@dataclass(frozen=True, slots=True)
class Disease(_Record):
    id: str
    name: str
    aliases: tuple[str, ...]
    discipline: str
    codes: dict[str, str]
    western: tuple[str, ...]
    syndrome_ids: tuple[str, ...]
    source: SourceRef
    verification: str


@dataclass(frozen=True, slots=True)
class Symptom(_Record):
    id: str
    name: str
    synonyms: tuple[str, ...]
    category: str
    negated: bool
    opposite: str | None
    broader: str | None
    source: SourceRef
    verification: str


@dataclass(frozen=True, slots=True)
class Member(_Record):
    """A rule member: a base herb (covers every form) or one specific form."""

    written: str
    herb_id: str
    form_id: str | None
    raw_only: bool = False  # a 生X member matches only raw forms of the herb


@dataclass(frozen=True, slots=True)
class Rule(_Record):
    id: str
    kind: str
    severity: Severity
    a: tuple[Member, ...]
    b: tuple[Member, ...]
    members: tuple[Member, ...]
    params: dict[str, object]
    message_zh: str
    message_en: str
    note: str | None
    ruleset_id: str
    source: SourceRef
    verification: str


@dataclass(frozen=True, slots=True)
class RuleSet(_Record):
    id: str
    name: str
    version: str
    edition: str
    rule_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Version(_Record):
    release: str
    content_hash: str

    def __str__(self) -> str:
        return f"{self.release}+{self.content_hash}"
