"""Loaders for the research datasets and for the project's own case format.

Every loader takes a data directory (argument, else ``$TCM_DATA_DIR``, else ``../shared/data`` beside the
repository when it exists), validates every row, skips bad rows *with a count and a reason per row*
(:class:`LoadReport`) and returns a dataset with a :class:`DatasetCard` (source, terms, counts, splits, seed,
content hash). Nothing here downloads anything.

    tcm-pd/      TCM-PD: ``pre_symptoms_{train,test}.txt`` / ``pre_herbs_{train,test}.txt``, line i of each one
                 prescription, space-separated 0-based indexes into ``symptom_contains.txt`` / ``herbs_contains.txt``
    smgcn/       SMGCN Set2Set: ``{train,test}.txt`` lines ``symptom ids<TAB>herb ids``; ``sym_mapping.txt`` and
                 ``herb_mapping.txt`` lines ``name id``
    tcm-cases/   ``{train,val,test}.tsv`` lines ``label<TAB>text`` (labels 0,1,3,5,6), with the prescriptions
                 extracted from the text by :mod:`training.prescriptions`
    *.jsonl      the project's own case records (see ``training/CASE_FORMAT.md``)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from kb.errors import InputError

logger = logging.getLogger(__name__)

DATA_ENV = "TCM_DATA_DIR"
REPO_ROOT = Path(__file__).resolve().parents[1]
MAX_BAD_ROWS_KEPT = 200  # per load; the counts per reason are always complete

TERMS_CKCEST = (
    "CKCEST TCM database: research use only; no commercial use, sale or other monetization. "
    "Never commit the data, extracts of it, or models trained on it."
)

# Department labels of tcm-cases (TCM-BERT). 3, 5 and 6 are named by the dataset's documentation;
# 0 and 1 are named from their content (internal-medicine and surgical cases).
CASE_LABELS: dict[int, str] = {
    0: "internal medicine (内科)",
    1: "surgery (外科)",
    3: "gynaecology (妇科)",
    5: "ENT / throat (五官科)",
    6: "paediatrics (儿科)",
}


# ------------------------------------------------------------------------------------------------
# reports and cards


@dataclass(frozen=True, slots=True)
class BadRow:
    """One skipped row: file (relative to the data directory), 1-based line, why. Never its content."""

    file: str
    line: int
    reason: str


@dataclass(frozen=True, slots=True)
class LoadReport:
    rows_read: int
    rows_kept: int
    skipped_by_reason: tuple[tuple[str, int], ...]
    examples: tuple[BadRow, ...]  # the first MAX_BAD_ROWS_KEPT skipped rows
    notes: tuple[str, ...] = ()

    @property
    def skipped(self) -> int:
        return sum(n for _, n in self.skipped_by_reason)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows_read": self.rows_read,
            "rows_kept": self.rows_kept,
            "skipped": self.skipped,
            "skipped_by_reason": dict(self.skipped_by_reason),
            "examples": [{"file": b.file, "line": b.line, "reason": b.reason} for b in self.examples[:20]],
            "notes": list(self.notes),
        }


class _Collector:
    """Accumulates kept/skipped counts while a loader reads its files."""

    def __init__(self) -> None:
        self.read = 0
        self.kept = 0
        self.reasons: Counter[str] = Counter()
        self.bad: list[BadRow] = []
        self.notes: list[str] = []

    def skip(self, file: str, line: int, reason: str) -> None:
        self.reasons[reason.split(":")[0]] += 1
        if len(self.bad) < MAX_BAD_ROWS_KEPT:
            self.bad.append(BadRow(file, line, reason))

    def report(self) -> LoadReport:
        rep = LoadReport(self.read, self.kept, tuple(sorted(self.reasons.items())), tuple(self.bad), tuple(self.notes))
        if rep.skipped:
            logger.warning(
                "skipped %d of %d rows: %s",
                rep.skipped,
                rep.rows_read,
                ", ".join(f"{r} ({n})" for r, n in rep.skipped_by_reason),
            )
        return rep


@dataclass(frozen=True, slots=True)
class DatasetCard:
    name: str
    source: str
    terms: str
    splits: tuple[tuple[str, int], ...]  # split name -> rows
    split_note: str
    seed: int | None
    content_hash: str  # sha256 over the files read, in order (name + bytes)
    files: tuple[str, ...]
    vocab: tuple[tuple[str, int], ...] = ()  # e.g. (("symptoms", 360), ("herbs", 753))
    skipped: tuple[tuple[str, int], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "terms": self.terms,
            "splits": dict(self.splits),
            "split_note": self.split_note,
            "seed": self.seed,
            "content_hash": self.content_hash,
            "files": list(self.files),
            "vocab": dict(self.vocab),
            "skipped": dict(self.skipped),
        }


def content_hash(root: Path, files: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(root)).encode() + b"\0")
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return "sha256:" + h.hexdigest()


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The data directory: the argument, else ``$TCM_DATA_DIR``, else ``../shared/data`` beside the repo."""
    if data_dir is None:
        env = os.environ.get(DATA_ENV)
        if env:
            data_dir = env
        else:
            default = REPO_ROOT.parent / "shared" / "data"
            if default.is_dir():
                return default
            raise InputError(
                f"no data directory given: pass --data DIR or set {DATA_ENV} (looked for {default})", "data"
            )
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise InputError(f"data directory {str(path)!r} does not exist or is not a directory", "data")
    return path


def _need(path: Path, what: str) -> Path:
    if not path.is_file():
        raise InputError(f"{what}: expected file {str(path)!r} is missing", "data")
    return path


def _lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path.name} is not UTF-8 text ({exc.reason} at byte {exc.start})", "data") from exc
    lines = text.splitlines()
    return lines


# ------------------------------------------------------------------------------------------------
# herb recommendation: symptom set -> herb set


@dataclass(frozen=True, slots=True)
class HerbRecExample:
    symptoms: tuple[int, ...]
    herbs: tuple[int, ...]


@dataclass(frozen=True)
class HerbRecDataset:
    """Symptom-set -> herb-set prescriptions and their vocabularies. ``splits``: split name -> examples."""

    name: str
    symptoms: tuple[str, ...]
    herbs: tuple[str, ...]
    splits: dict[str, tuple[HerbRecExample, ...]]
    card: DatasetCard
    report: LoadReport

    def split(self, name: str) -> tuple[HerbRecExample, ...]:
        if name not in self.splits:
            raise InputError(f"dataset {self.name} has no split {name!r} (has: {', '.join(self.splits)})")
        return self.splits[name]

    def with_validation(self, fraction: float = 0.1, seed: int = 0) -> HerbRecDataset:
        """Carve a seeded validation split out of ``train`` (the test split is never touched)."""
        if "val" in self.splits:
            return self
        train, val = _carve(self.splits["train"], fraction, seed)
        splits = {"train": train, "val": val, **{k: v for k, v in self.splits.items() if k != "train"}}
        return replace(self, splits=splits, card=_recard(self.card, splits, seed, fraction))

    def subsample(self, sizes: dict[str, int], seed: int = 0) -> HerbRecDataset:
        """A seeded random slice of each split (for tiny CI runs)."""
        splits = {k: _take(v, sizes.get(k), seed) for k, v in self.splits.items()}
        note = f"{self.card.split_note}; subsampled {sizes} (seed {seed})"
        card = replace(self.card, splits=tuple((k, len(v)) for k, v in splits.items()), split_note=note)
        return replace(self, splits=splits, card=card)


def _carve(rows: Sequence[Any], fraction: float, seed: int) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    if not 0 < fraction < 1:
        raise InputError(f"validation fraction must be between 0 and 1, got {fraction}", "val_fraction")
    idx = list(range(len(rows)))
    random.Random(seed).shuffle(idx)
    n_val = max(1, round(len(rows) * fraction))
    val_idx = set(idx[:n_val])
    train = tuple(r for i, r in enumerate(rows) if i not in val_idx)
    val = tuple(r for i, r in enumerate(rows) if i in val_idx)
    return train, val


def _take(rows: Sequence[Any], n: int | None, seed: int) -> tuple[Any, ...]:
    if n is None or n >= len(rows):
        return tuple(rows)
    idx = sorted(random.Random(seed).sample(range(len(rows)), n))
    return tuple(rows[i] for i in idx)


def _recard(card: DatasetCard, splits: dict[str, Sequence[Any]], seed: int, fraction: float) -> DatasetCard:
    note = f"{card.split_note}; val = seeded {fraction:.0%} of the published train split (seed {seed})"
    return replace(card, splits=tuple((k, len(v)) for k, v in splits.items()), split_note=note, seed=seed)


def _parse_ids(text: str, n: int, what: str) -> tuple[tuple[int, ...] | None, str | None, bool]:
    """Parse space-separated ids in [0, n). Returns (ids, reason-if-bad, had_duplicates)."""
    toks = text.split()
    if not toks:
        return None, f"empty {what} list", False
    out: list[int] = []
    for t in toks:
        if not t.isdigit():
            return None, f"non-integer {what} id: {t[:12]!r}", False
        v = int(t)
        if v >= n:
            return None, f"{what} id out of range: {v} (vocabulary has {n})", False
        out.append(v)
    uniq = tuple(dict.fromkeys(out))
    return uniq, None, len(uniq) != len(out)


def load_tcm_pd(data_dir: str | Path | None = None) -> HerbRecDataset:
    root = resolve_data_dir(data_dir)
    d = root / "tcm-pd"
    if not d.is_dir():
        raise InputError(f"{root} has no tcm-pd/ folder (TCM-PD)", "data")
    sym_f = _need(d / "symptom_contains.txt", "TCM-PD symptom vocabulary")
    herb_f = _need(d / "herbs_contains.txt", "TCM-PD herb vocabulary")
    symptoms = tuple(x.strip() for x in _lines(sym_f) if x.strip())
    herbs = tuple(x.strip() for x in _lines(herb_f) if x.strip())
    col = _Collector()
    files = [sym_f, herb_f]
    splits: dict[str, tuple[HerbRecExample, ...]] = {}
    dups = 0
    for split in ("train", "test"):
        sf = _need(d / f"pre_symptoms_{split}.txt", f"TCM-PD {split} symptoms")
        hf = _need(d / f"pre_herbs_{split}.txt", f"TCM-PD {split} herbs")
        files += [sf, hf]
        s_lines, h_lines = _lines(sf), _lines(hf)
        if len(s_lines) != len(h_lines):
            raise InputError(
                f"TCM-PD {split}: {sf.name} has {len(s_lines)} lines but {hf.name} has {len(h_lines)}; "
                "line i of each must be the same prescription",
                "data",
            )
        rows = []
        for i, (sl, hl) in enumerate(zip(s_lines, h_lines, strict=True), start=1):
            col.read += 1
            s, why, d1 = _parse_ids(sl, len(symptoms), "symptom")
            if s is None:
                col.skip(sf.name, i, why or "bad row")
                continue
            h, why, d2 = _parse_ids(hl, len(herbs), "herb")
            if h is None:
                col.skip(hf.name, i, why or "bad row")
                continue
            dups += d1 or d2
            rows.append(HerbRecExample(s, h))
            col.kept += 1
        splits[split] = tuple(rows)
    if dups:
        col.notes.append(f"{dups} rows had repeated ids; kept once each")
    rep = col.report()
    card = DatasetCard(
        name="tcm-pd",
        source="TCM-PD (yao8839836/PTM): literature prescriptions, symptom set -> herb set",
        terms=TERMS_CKCEST,
        splits=tuple((k, len(v)) for k, v in splits.items()),
        split_note="published train/test split",
        seed=None,
        content_hash=content_hash(root, files),
        files=tuple(str(f.relative_to(root)) for f in files),
        vocab=(("symptoms", len(symptoms)), ("herbs", len(herbs))),
        skipped=rep.skipped_by_reason,
    )
    return HerbRecDataset("tcm-pd", symptoms, herbs, splits, card, rep)


def _read_mapping(path: Path, col: _Collector) -> tuple[str, ...]:
    pairs: dict[int, str] = {}
    for i, line in enumerate(_lines(path), start=1):
        if not line.strip():
            continue
        name, _, ident = line.strip().rpartition(" ")
        name = name.strip()
        if not name or not ident.isdigit():
            raise InputError(f"{path.name} line {i}: expected 'name id'", "data")
        if int(ident) in pairs:
            raise InputError(f"{path.name} line {i}: id {ident} is given twice", "data")
        pairs[int(ident)] = name
    n = max(pairs) + 1 if pairs else 0
    missing = [i for i in range(n) if i not in pairs]
    if missing:
        col.notes.append(f"{path.name}: ids without a name: {missing[:10]}")
    return tuple(pairs.get(i, f"#{i}") for i in range(n))


def load_smgcn(data_dir: str | Path | None = None) -> HerbRecDataset:
    root = resolve_data_dir(data_dir)
    d = root / "smgcn"
    if not d.is_dir():
        raise InputError(f"{root} has no smgcn/ folder (SMGCN Set2Set)", "data")
    col = _Collector()
    sym_f = _need(d / "sym_mapping.txt", "SMGCN symptom mapping")
    herb_f = _need(d / "herb_mapping.txt", "SMGCN herb mapping")
    symptoms = _read_mapping(sym_f, col)
    herbs = _read_mapping(herb_f, col)
    files = [sym_f, herb_f]
    splits: dict[str, tuple[HerbRecExample, ...]] = {}
    dups = 0
    for split in ("train", "test"):
        f = _need(d / f"{split}.txt", f"SMGCN {split}")
        files.append(f)
        rows = []
        for i, line in enumerate(_lines(f), start=1):
            if not line.strip():
                continue
            col.read += 1
            parts = line.rstrip("\r\n").split("\t")
            if len(parts) != 2:
                col.skip(f.name, i, f"expected 2 tab-separated fields: got {len(parts)}")
                continue
            s, why, d1 = _parse_ids(parts[0], len(symptoms), "symptom")
            if s is None:
                col.skip(f.name, i, why or "bad row")
                continue
            h, why, d2 = _parse_ids(parts[1], len(herbs), "herb")
            if h is None:
                col.skip(f.name, i, why or "bad row")
                continue
            dups += d1 or d2
            rows.append(HerbRecExample(s, h))
            col.kept += 1
        splits[split] = tuple(rows)
    if dups:
        col.notes.append(f"{dups} rows had repeated ids; kept once each")
    rep = col.report()
    card = DatasetCard(
        name="smgcn",
        source="SMGCN Set2Set split (yuanyuansiyuan/ICDE-2020-SMGCN), a subset of TCM-PD",
        terms=TERMS_CKCEST,
        splits=tuple((k, len(v)) for k, v in splits.items()),
        split_note="published train/test split",
        seed=None,
        content_hash=content_hash(root, files),
        files=tuple(str(f.relative_to(root)) for f in files),
        vocab=(("symptoms", len(symptoms)), ("herbs", len(herbs))),
        skipped=rep.skipped_by_reason,
    )
    return HerbRecDataset("smgcn", symptoms, herbs, splits, card, rep)


HERB_REC_LOADERS = {"smgcn": load_smgcn, "tcm-pd": load_tcm_pd}


# ------------------------------------------------------------------------------------------------
# case texts: text -> department, with the prescriptions extracted


@dataclass(frozen=True, slots=True)
class CaseText:
    label: int
    text: str
    line: int  # 1-based line in its file, for audit


@dataclass(frozen=True)
class CaseTextDataset:
    name: str
    labels: tuple[int, ...]
    splits: dict[str, tuple[CaseText, ...]]
    card: DatasetCard
    report: LoadReport
    label_names: dict[int, str] = field(default_factory=dict)

    def split(self, name: str) -> tuple[CaseText, ...]:
        if name not in self.splits:
            raise InputError(f"dataset {self.name} has no split {name!r} (has: {', '.join(self.splits)})")
        return self.splits[name]

    def subsample(self, sizes: dict[str, int], seed: int = 0) -> CaseTextDataset:
        splits = {k: _take(v, sizes.get(k), seed) for k, v in self.splits.items()}
        note = f"{self.card.split_note}; subsampled {sizes} (seed {seed})"
        card = replace(self.card, splits=tuple((k, len(v)) for k, v in splits.items()), split_note=note)
        return replace(self, splits=splits, card=card)


def load_tcm_cases(data_dir: str | Path | None = None, labels: Iterable[int] = CASE_LABELS) -> CaseTextDataset:
    root = resolve_data_dir(data_dir)
    d = root / "tcm-cases"
    if not d.is_dir():
        raise InputError(f"{root} has no tcm-cases/ folder (case records)", "data")
    allowed = tuple(sorted(labels))
    col = _Collector()
    files: list[Path] = []
    splits: dict[str, tuple[CaseText, ...]] = {}
    for split in ("train", "val", "test"):
        f = d / f"{split}.tsv"
        if not f.is_file():
            if split == "val":
                continue  # optional: carve one from train instead
            _need(f, f"tcm-cases {split}")
        files.append(f)
        rows = []
        for i, line in enumerate(_lines(f), start=1):
            if not line.strip():
                continue
            col.read += 1
            label, sep, text = line.partition("\t")
            if not sep:
                col.skip(f.name, i, "no tab: expected 'label<TAB>text'")
                continue
            label = label.strip()
            if not label.lstrip("-").isdigit():
                col.skip(f.name, i, f"label is not an integer: {label[:8]!r}")
                continue
            if int(label) not in allowed:
                col.skip(f.name, i, f"unknown label: {label} (expected one of {allowed})")
                continue
            text = text.strip()
            if len(text) < 10:
                col.skip(f.name, i, f"text too short: {len(text)} characters")
                continue
            rows.append(CaseText(int(label), text, i))
            col.kept += 1
        splits[split] = tuple(rows)
    rep = col.report()
    card = DatasetCard(
        name="tcm-cases",
        source="TCM case records (yao8839836/tcm_bert), five department classes",
        terms=TERMS_CKCEST,
        splits=tuple((k, len(v)) for k, v in splits.items()),
        split_note="published train/val/test split",
        seed=None,
        content_hash=content_hash(root, files),
        files=tuple(str(f.relative_to(root)) for f in files),
        vocab=(("labels", len(allowed)),),
        skipped=rep.skipped_by_reason,
    )
    names = {k: CASE_LABELS.get(k, str(k)) for k in allowed}
    return CaseTextDataset("tcm-cases", allowed, splits, card, rep, names)


def case_texts_with_validation(ds: CaseTextDataset, fraction: float = 0.1, seed: int = 0) -> CaseTextDataset:
    """Use the published ``val`` split when there is one, else carve a seeded one from train."""
    if "val" in ds.splits:
        return ds
    train, val = _carve(ds.splits["train"], fraction, seed)
    splits = {"train": train, "val": val, **{k: v for k, v in ds.splits.items() if k != "train"}}
    return replace(ds, splits=splits, card=_recard(ds.card, splits, seed, fraction))


# ------------------------------------------------------------------------------------------------
# the project's own case format (JSON Lines; see training/CASE_FORMAT.md)


class HerbDoseModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1, max_length=40)
    dose: float | None = Field(default=None, gt=0, le=1000)
    unit: Literal["g", "钱", "两", "分", "ml", "枚", "片", "粒", "只", "条", "个"] | None = None
    preparation: str | None = Field(default=None, max_length=40)


class FindingsModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    symptoms: list[str] = Field(default_factory=list)
    tongue: str | None = None
    pulse: str | None = None
    signs: list[str] = Field(default_factory=list)


class OutcomeModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    status: Literal["cured", "improved", "unchanged", "worse", "unknown"] = "unknown"
    note: str | None = None
    followup_days: int | None = Field(default=None, ge=0)


class MetadataModel(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    source: str = Field(min_length=1)
    department: str | None = None
    year: int | None = Field(default=None, ge=200, le=2100)
    deidentified: bool = False
    license: str | None = None


class CaseRecordModel(BaseModel):
    """One line of a case file. Only ``id``, ``findings`` and ``metadata.source`` are required."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(min_length=1, max_length=80)
    text: str | None = None
    findings: FindingsModel
    syndrome: str | None = None
    formula: str | None = None
    herbs: list[HerbDoseModel] = Field(default_factory=list)
    outcome: OutcomeModel = Field(default_factory=OutcomeModel)
    metadata: MetadataModel

    @field_validator("herbs")
    @classmethod
    def _unique_herbs(cls, v: list[HerbDoseModel]) -> list[HerbDoseModel]:
        names = [h.name for h in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"herb listed twice: {', '.join(dup)}")
        return v


@dataclass(frozen=True, slots=True)
class HerbDose:
    name: str
    dose: float | None
    unit: str | None
    preparation: str | None = None


@dataclass(frozen=True, slots=True)
class CaseRecord:
    id: str
    text: str | None
    symptoms: tuple[str, ...]
    tongue: str | None
    pulse: str | None
    syndrome: str | None
    formula: str | None
    herbs: tuple[HerbDose, ...]
    outcome: str
    department: str | None
    source: str
    deidentified: bool
    line: int


@dataclass(frozen=True)
class CaseFile:
    records: tuple[CaseRecord, ...]
    card: DatasetCard
    report: LoadReport


def _record(m: CaseRecordModel, line: int) -> CaseRecord:
    return CaseRecord(
        id=m.id,
        text=m.text,
        symptoms=tuple(m.findings.symptoms),
        tongue=m.findings.tongue,
        pulse=m.findings.pulse,
        syndrome=m.syndrome,
        formula=m.formula,
        herbs=tuple(HerbDose(h.name, h.dose, h.unit, h.preparation) for h in m.herbs),
        outcome=m.outcome.status,
        department=m.metadata.department,
        source=m.metadata.source,
        deidentified=m.metadata.deidentified,
        line=line,
    )


def load_case_jsonl(path: str | Path) -> CaseFile:
    """Read a case file in the project's format; invalid lines are skipped and reported (line and field)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"case file {str(p)!r} does not exist", "data")
    col = _Collector()
    seen: set[str] = set()
    records = []
    for i, line in enumerate(_lines(p), start=1):
        if not line.strip():
            continue
        col.read += 1
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            col.skip(p.name, i, f"invalid JSON: {exc.msg} at column {exc.colno}")
            continue
        try:
            m = CaseRecordModel.model_validate(obj)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(x) for x in err["loc"]) or "record"
            col.skip(p.name, i, f"invalid field: {where}: {err['msg']}")
            continue
        if m.id in seen:
            col.skip(p.name, i, f"duplicate id: {m.id}")
            continue
        seen.add(m.id)
        records.append(_record(m, i))
        col.kept += 1
    rep = col.report()
    card = DatasetCard(
        name=p.stem,
        source=f"case file {p.name} (project case format v1)",
        terms="as stated by the file's metadata.license / metadata.source",
        splits=(("all", len(records)),),
        split_note="one file; splits are carved by the caller",
        seed=None,
        content_hash=content_hash(p.parent, [p]),
        files=(p.name,),
        skipped=rep.skipped_by_reason,
    )
    return CaseFile(tuple(records), card, rep)
