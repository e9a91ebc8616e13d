"""Content schema: the shape of every file under ``kb/data/``.

These pydantic models validate the reviewed YAML content files when they load. They are the edge of the
knowledge base: inside the engine the content becomes frozen dataclasses (``kb.model``).

Layout of ``kb/data/``::

    sources.yaml           works we cite: id -> work, edition, publisher, year
    herbs/*.yaml           list of Herb (each with its processed forms)
    formulas/*.yaml        list of Formula
    diseases/*.yaml        list of Disease, each with its disease-specific syndromes
    symptoms/*.yaml        list of Symptom (symptoms, tongue and pulse terms)
    rules/*.yaml           rule sets: {ruleset: RuleSetMeta, rules: [Rule]}
    names/*.yaml           DistinctName: names that must not be derived from a herb name (广防己 ≠ 防己)
    substitutes/*.yaml     Substitution: a documented modern substitute for a herb of the formulas (党参 for 人参)
    release.yaml           the release name of this content (the version is release + content hash)

Clinical values are written the way curators speak them (Chinese terms: 大毒/有毒/小毒, 禁用/忌用/慎用, 先煎…);
the engine maps them to the contract's English codes.

``python -m kb.schema FILE...`` validates files on their own (no cross-references); ``tcm kb validate``
validates the whole knowledge base including references.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

ID_PATTERN = r"^[a-z][a-z0-9]*(?:[-_.][a-z0-9]+)*$"
Id = Annotated[str, Field(pattern=ID_PATTERN, min_length=2, max_length=80)]
Text = Annotated[str, Field(min_length=1)]


class Toxicity(str, Enum):
    HIGH = "大毒"
    MODERATE = "有毒"
    LOW = "小毒"


class Pregnancy(str, Enum):
    FORBIDDEN = "禁用"
    AVOID = "忌用"
    CAUTION = "慎用"


# A population restriction as the sources write it: group + level (儿童禁用, 哺乳期不宜, 肾功能不全禁用). 婴幼儿: under
# 3 years; 儿童: under 14; 老年人: 65 and over; 哺乳期: a breastfeeding patient; 肝功能不全, 肾功能不全: hepatic or
# renal impairment.
POPULATION_GROUPS = ("婴幼儿", "儿童", "老年人", "哺乳期", "肝功能不全", "肾功能不全")
POPULATION_LEVELS = ("禁用", "忌用", "慎用", "不宜")
PopulationRestriction = Annotated[
    str, StringConstraints(pattern=f"^({'|'.join(POPULATION_GROUPS)})({'|'.join(POPULATION_LEVELS)})$")
]


class Preparation(str, Enum):
    XIANJIAN = "先煎"
    HOUXIA = "后下"
    BAOJIAN = "包煎"
    LINGJIAN = "另煎"
    YANGHUA = "烊化"
    CHONGFU = "冲服"
    RONGRU = "溶入"
    SHENGZHI = "生汁兑服"
    RUWANSAN = "入丸散"  # not decocted: pills and powders only


class InternalUse(str, Enum):
    ALLOWED = "allowed"
    PROCESSED_ONLY = "processed_only"  # raw herb: processed before internal use
    EXTERNAL_ONLY = "external_only"
    BANNED = "banned"  # no longer used (e.g. 犀角); listed so rules and lookups can name it


class Verification(str, Enum):
    VERIFIED = "verified"  # checked against the cited primary source, entry by entry
    SECONDARY = "secondary"  # taken from a secondary compilation of the source (not the printed text)
    UNVERIFIED = "unverified"  # written from general knowledge; must be checked before clinical use


class Role(str, Enum):
    JUN = "君"
    CHEN = "臣"
    ZUO = "佐"
    SHI = "使"
    ZUOSHI = "佐使"


class VersionKind(str, Enum):
    PHARMACOPOEIA = "药典"  # the Pharmacopoeia's 成方制剂 under this name: what a pharmacy dispenses for it
    ORIGINAL = "原方"  # the classical text's own list, where the main entry uses a modern substitute (犀角, 虎骨)
    OTHER = "别本"  # another book or edition under the same name (同名异方, 宋本 against 林亿's collation)


class Discipline(str, Enum):
    INTERNAL = "内科"
    EXTERNAL = "外科"
    GYNAECOLOGY = "妇科"
    PAEDIATRICS = "儿科"
    ENT = "耳鼻咽喉科"
    OPHTHALMOLOGY = "眼科"
    ORTHOPAEDICS = "骨伤科"
    DERMATOLOGY = "皮肤科"


class SymptomCategory(str, Enum):
    GENERAL = "全身"  # fever, chills, sweating, fatigue, weight
    HEAD_FACE = "头面"  # head, face, eyes, ears, nose, throat, mouth
    CHEST = "胸胁"  # chest, hypochondrium, heart, breathing, cough
    ABDOMEN = "脘腹"  # stomach, abdomen, appetite, nausea
    LIMBS = "肢体"  # limbs, joints, back, skin of limbs
    SKIN = "皮肤"
    STOOL = "大便"
    URINE = "小便"
    SLEEP = "睡眠"
    EMOTION = "情志"
    THIRST = "口渴饮食"
    GYNAECOLOGY = "妇科"  # menses, leucorrhoea, pregnancy, breast
    MALE = "男科"
    PAEDIATRIC = "儿科"
    TONGUE_BODY = "舌质"
    TONGUE_COATING = "舌苔"
    PULSE = "脉象"
    COMPLEXION = "面色"
    VOICE = "声音气味"
    SIGN = "体征"  # masses, swelling, rash, discharge (external medicine)
    CONTEXT = "病史情境"  # history and context that bear on the differentiation: 妊娠期, 外伤史, 夏秋季发病, 骨折早期


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class SourceRef(Strict):
    """Where an entry comes from: ``ref`` names a work in sources.yaml, ``loc`` the section/page."""

    ref: Id
    loc: str | None = None


class Sourced(Strict):
    source: SourceRef
    verification: Verification = Verification.UNVERIFIED
    # nothing is deleted: a curator deprecates an entry (it still resolves) and names its replacement
    deprecated: bool = False
    replaced_by: Id | None = None  # the id of the entry of the same kind that replaces it
    deprecation_reason: str | None = None

    @model_validator(mode="after")
    def _deprecation(self) -> Sourced:
        if (self.replaced_by or self.deprecation_reason) and not self.deprecated:
            raise ValueError("replaced_by and deprecation_reason belong to a deprecated entry (deprecated: true)")
        return self


def _range(v: Any) -> Any:
    if v is None:
        return v
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (float(v), float(v))
    if isinstance(v, (list, tuple)) and len(v) == 2:
        return (float(v[0]), float(v[1]))
    raise ValueError(f"a dose range is [min, max] in grams, got {v!r}")


def _check_range(v: tuple[float, float] | None) -> tuple[float, float] | None:
    if v is None:
        return v
    lo, hi = v
    if lo < 0 or hi < 0:
        raise ValueError(f"dose range must be non-negative, got [{lo}, {hi}]")
    if lo > hi:
        raise ValueError(f"dose range has min > max: [{lo}, {hi}]")
    return v


DoseRange = tuple[float, float]


class SafetyFields(Strict):
    """Fields a processed form may override; absent on a form means 'same as the herb'."""

    dose_g: DoseRange | None = None
    toxicity: Toxicity | None = None
    pregnancy: Pregnancy | None = None
    preparation: Preparation | None = None
    internal_use: InternalUse = InternalUse.ALLOWED
    controlled: bool = False  # one of the 28 controlled toxic drugs (医疗用毒性药品管理办法)
    # who must not (禁用/忌用) or should not (慎用/不宜) take it, from the source's cautions: [儿童禁用, 哺乳期不宜]
    populations: list[PopulationRestriction] = Field(default_factory=list)
    cautions: list[Text] = Field(default_factory=list)

    @field_validator("dose_g", mode="before")
    @classmethod
    def _dose_before(cls, v: Any) -> Any:
        return _range(v)

    @field_validator("dose_g")
    @classmethod
    def _dose_after(cls, v: DoseRange | None) -> DoseRange | None:
        return _check_range(v)

    @field_validator("populations")
    @classmethod
    def _one_level_per_group(cls, v: list[str]) -> list[str]:
        groups = [x[:-2] for x in v]
        if dup := sorted({g for g in groups if groups.count(g) > 1}):
            raise ValueError(f"one level per group: {'、'.join(dup)} appears more than once")
        return v


class ProcessedForm(SafetyFields, Sourced):
    id: Id
    name: Text
    aliases: list[Text] = Field(default_factory=list)
    processing: Text  # 蜜炙, 麸炒, 炒炭, 姜制, 生品 …
    raw: bool = False  # the unprocessed form (生半夏, 生川乌) when the herb itself is the processed drug


class Herb(SafetyFields, Sourced):
    id: Id
    name: Text
    pinyin: Text
    latin: str | None = None
    aliases: list[Text] = Field(default_factory=list)
    category: Text
    nature: str | None = None  # 寒 热 温 凉 平, with 微/大
    flavours: list[Text] = Field(default_factory=list)
    meridians: list[Text] = Field(default_factory=list)
    functions: list[Text] = Field(default_factory=list)
    indications: list[Text] = Field(default_factory=list)
    forms: list[ProcessedForm] = Field(default_factory=list)


class Ingredient(Strict):
    herb: Text
    dose_g: float | None = Field(default=None, gt=0)
    amount: str | None = None  # a count as written in the source: 12枚, 3片
    role: Role | None = None
    note: str | None = None  # 先煎, 后下, 冲服 …
    # dose_g was computed by this project from the original amount (``amount``) in proportion, scaled into the
    # Pharmacopoeia ranges (kb.derive_doses), where the source gives only the original batch
    derived: bool = False

    @model_validator(mode="after")
    def _dose_or_amount(self) -> Ingredient:
        if self.dose_g is None and not self.amount:
            raise ValueError(f"ingredient {self.herb}: give dose_g (grams) or amount (e.g. '12枚')")
        if self.derived and (self.dose_g is None or not self.amount):
            raise ValueError(f"ingredient {self.herb}: a derived dose_g needs the original amount it comes from")
        return self


class VersionIngredient(Strict):
    """A herb of a formula version: the dose is given where the source gives one in modern grams."""

    herb: Text
    dose_g: float | None = Field(default=None, gt=0)
    amount: str | None = None
    note: str | None = None


class FormulaVersion(Strict):
    """Another documented composition under the formula's name, with its own source. The main ``composition`` is
    the one the engine suggests; a version is what a prescriber may mean by the name (a 成药 is dispensed by the
    Pharmacopoeia's list), and what the cross-check against other data recognises."""

    kind: VersionKind
    name: Text | None = None  # the name it goes by when that differs (六君子丸 for 六君子汤's 成药)
    origin: str | None = None  # 《兰室秘藏》, 宋本《伤寒论》
    composition: list[VersionIngredient] = Field(min_length=1)
    note: str | None = None
    source: SourceRef
    verification: Verification = Verification.UNVERIFIED


class Formula(Sourced):
    id: Id
    name: Text
    aliases: list[Text] = Field(default_factory=list)
    origin: str | None = None  # classical source, e.g. 《伤寒论》
    category: Text
    composition: list[Ingredient] = Field(min_length=1)
    functions: list[Text] = Field(default_factory=list)
    indications: list[Text] = Field(default_factory=list)
    cautions: list[Text] = Field(default_factory=list)
    usage: str | None = None
    versions: list[FormulaVersion] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_pharmacopoeia_list_per_name(self) -> Formula:
        names = [v.name or self.name for v in self.versions if v.kind is VersionKind.PHARMACOPOEIA]
        if dup := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(
                f"two versions of kind 药典 under the name {dup[0]}: the Pharmacopoeia has one list per preparation "
                "(give each 成药 its own name: 藿香正气水, 藿香正气口服液)"
            )
        return self


class Modification(Strict):
    when: list[Text] = Field(min_length=1)  # findings (symptom names) that call for the change
    add: list[Ingredient] = Field(default_factory=list)
    remove: list[Text] = Field(default_factory=list)
    note: str | None = None

    @model_validator(mode="after")
    def _does_something(self) -> Modification:
        if not self.add and not self.remove and not self.note:
            raise ValueError("a modification must add, remove or say something")
        return self


class Codes(Strict):
    gbt15657: str | None = None  # GB/T 15657-2021 code
    gbt16751: str | None = None  # GB/T 16751.2-2021 code
    icd11: str | None = None  # ICD-11 chapter 26 code


class Syndrome(Sourced):
    id: Id
    name: Text  # e.g. 风寒束表证
    aliases: list[Text] = Field(default_factory=list)
    codes: Codes = Field(default_factory=Codes)
    key_symptoms: list[Text] = Field(min_length=1)
    secondary_symptoms: list[Text] = Field(default_factory=list)
    tongue: list[Text] = Field(default_factory=list)
    pulse: list[Text] = Field(default_factory=list)
    contra_symptoms: list[Text] = Field(default_factory=list)  # findings that argue against it
    principle: Text  # 治法
    formulas: list[Text] = Field(min_length=1)  # main formula first, then alternatives
    modifications: list[Modification] = Field(default_factory=list)


class Disease(Sourced):
    id: Id
    name: Text
    aliases: list[Text] = Field(default_factory=list)
    discipline: Discipline
    codes: Codes = Field(default_factory=Codes)
    western: list[Text] = Field(default_factory=list)  # related Western diagnoses
    syndromes: list[Syndrome] = Field(min_length=1)


class Symptom(Sourced):
    id: Id
    name: Text
    synonyms: list[Text] = Field(default_factory=list)
    category: SymptomCategory
    negated: bool = False  # a finding that is itself an absence: 无汗, 口不渴, 不欲饮
    opposite: str | None = None  # the finding it excludes (无汗 <-> 汗出)
    broader: str | None = None  # a more general finding (恶风 -> 恶寒)
    # ids of entries merged into this one (their names are now its synonyms): nothing is deleted, an old id
    # still answers with this entry and reads as deprecated, replaced by it
    replaces: list[Id] = Field(default_factory=list)


class DistinctName(Sourced):
    """A name that looks derived from a herb's name but names something else (广防己 is not 防己).

    Name resolution stops at these instead of stripping a regional or processing prefix.
    """

    name: Text
    unlike: list[Text] = Field(min_length=1)  # the herb names it must not be taken for
    reason: Text


class Substitution(Sourced):
    """A documented modern substitute for a herb the formulas name: 党参 for 人参 in the formulas for mild spleen
    and lung qi deficiency (the 中药学 textbook's 党参 entry), 水牛角 for the banned 犀角.

    Where a formula names ``original`` and not ``substitute``, a prescription written with the substitute is still
    that formula (kb.formula_match), except in the formulas listed in ``except_formulas`` (人参 kept for collapse:
    独参汤, 参附汤). The formula entries themselves are not changed.
    """

    id: Id
    original: Text  # a herb of the knowledge base
    substitute: Text  # a herb of the knowledge base, not the original
    scope: Text  # the formulas the source says it for, in its words
    except_formulas: list[Text] = Field(default_factory=list)  # formula names where the original is kept
    note: str | None = None


RuleKind = Literal["incompatibility", "antagonism", "controlled", "banned", "duration", "herb_duration"]


class Rule(Sourced):
    """A named rule over herbs. Pair rules use ``a`` and ``b``; list rules use ``members``."""

    id: Id
    kind: RuleKind
    severity: Literal["info", "warning", "critical"]
    a: list[Text] = Field(default_factory=list)
    b: list[Text] = Field(default_factory=list)
    members: list[Text] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict)
    message_zh: Text
    message_en: Text
    note: str | None = None  # contested use, classical exceptions …

    @model_validator(mode="after")
    def _shape(self) -> Rule:
        if self.kind in ("incompatibility", "antagonism"):
            if not self.a or not self.b or self.members:
                raise ValueError(f"a {self.kind} rule lists herbs in `a` and `b` (and no `members`)")
        elif self.kind in ("controlled", "banned", "herb_duration"):
            if not self.members or self.a or self.b:
                raise ValueError(f"a {self.kind} rule lists herbs in `members` (and no `a`/`b`)")
        if self.kind in ("duration", "herb_duration") and "max_days" not in self.params:
            raise ValueError(f"a {self.kind} rule needs params.max_days")
        return self


class RuleSetMeta(Strict):
    id: Id
    name: Text
    version: Text
    edition: Text  # e.g. 中华人民共和国药典 2020年版 一部
    source: SourceRef


class RuleFile(Strict):
    ruleset: RuleSetMeta
    rules: list[Rule] = Field(min_length=1)


class Source(Strict):
    id: Id
    work: Text
    edition: str | None = None
    publisher: str | None = None
    year: int | None = None
    kind: Literal["pharmacopoeia", "standard", "regulation", "textbook", "classic", "project"] = "textbook"
    note: str | None = None


class Release(Strict):
    name: Text  # date-based release name, e.g. 2026.11.25
    note: str | None = None


class SourceFile(Strict):
    sources: list[Source] = Field(min_length=1)


ENTRY_MODELS: dict[str, type[BaseModel]] = {
    "herbs": Herb,
    "formulas": Formula,
    "diseases": Disease,
    "symptoms": Symptom,
    "names": DistinctName,
    "substitutes": Substitution,
}


def check_file(path: Path) -> list[str]:
    """Validate one content file on its own; returns error lines (empty when the file is valid)."""
    from kb.loader import load_file  # local import: loader imports this module

    try:
        load_file(path)
    except Exception as exc:  # the CLI helper reports every problem, not just the first
        return [str(exc)]
    return []


if __name__ == "__main__":  # pragma: no cover - a curator's helper
    bad = 0
    for arg in sys.argv[1:]:
        for line in check_file(Path(arg)):
            bad += 1
            print(line)
    print(f"{len(sys.argv) - 1} file(s), {bad} error(s)")
    sys.exit(1 if bad else 0)
