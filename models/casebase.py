"""The master-physician case base: normalised cases in an embedded SQLite store, and similar-case retrieval.

A case (:class:`Case`) holds its findings text (de-identified), the recognised symptom ids, the prescription's
herbs with doses and knowledge-base ids where they resolve, the source, the department label, the syndrome and
formula where known, and the de-identification report (counts by type, never the values). Its id is a content
hash (``case-`` + 16 hex digits of SHA-256 over source and content), so re-adding the same case is a no-op.

This module depends on ``kb`` only. Turning raw records into cases needs symptom recognition (``cds.extract``),
prescription parsing and de-identification (``training``); those are passed in as callables by the layers
above (see :func:`eval.retrieval.case_normaliser`), keeping the layer arrows pointing down.

    CaseStore   sqlite3 file ``cases.sqlite``: add (idempotent), get, iterate, count
    CaseBase    a directory: ``cases.sqlite`` + ``encoder/`` + ``index/``; ``search(text, k)`` satisfies
                ``cds.differentiate.CaseIndex``; ``similar(text, k)`` returns hydrated hits
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kb.errors import ArtifactError, InputError

logger = logging.getLogger(__name__)

STORE_FILE = "cases.sqlite"
SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class CaseHerb:
    name: str  # as the source names it (lexicon name or written name)
    herb_id: str | None  # knowledge-base id when it resolves
    dose: float | None = None
    unit: str | None = None
    dose_g: float | None = None


@dataclass(frozen=True, slots=True)
class Case:
    id: str
    findings: str
    symptoms: tuple[str, ...]
    herbs: tuple[CaseHerb, ...]
    source: str
    department: str | None = None
    label: int | None = None
    syndrome: str | None = None
    syndrome_id: str | None = None
    formula: str | None = None
    split: str | None = None
    deid: dict[str, int] = field(default_factory=dict)

    def herb_keys(self) -> frozenset[str]:
        """The herbs as comparable keys: the knowledge-base id where resolved, else the name."""
        return frozenset(h.herb_id or h.name for h in self.herbs)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["herbs"] = [asdict(h) for h in self.herbs]
        d["symptoms"] = list(self.symptoms)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Case:
        d = dict(d)
        d["herbs"] = tuple(CaseHerb(**h) for h in d.get("herbs", ()))
        d["symptoms"] = tuple(d.get("symptoms", ()))
        return cls(**d)


def case_id(source: str, findings: str, herbs: Sequence[tuple[str, float | None, str | None]]) -> str:
    """A stable content id: the same source, findings and prescription always give the same id."""
    payload = json.dumps([source, findings.strip(), [list(h) for h in herbs]], ensure_ascii=False)
    return "case-" + hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Normaliser:
    """Turns raw findings and herbs into a :class:`Case`. The clinical parts are injected:

    ``symptoms(text) -> symptom ids`` (cds.extract), ``resolve_herb(name) -> kb id | None`` (kb.resolve_herb),
    ``deidentify(text) -> (text, {type: count})`` (training.deid), ``resolve_syndrome(name) -> id | None``.
    """

    symptoms: Callable[[str], Sequence[str]] = lambda _t: ()
    resolve_herb: Callable[[str], str | None] = lambda _n: None
    deidentify: Callable[[str], tuple[str, dict[str, int]]] | None = None
    resolve_syndrome: Callable[[str], str | None] = lambda _n: None

    def case(
        self, findings: str, herbs: Sequence[tuple[str, float | None, str | None, float | None]], source: str, *,
        department: str | None = None, label: int | None = None, syndrome: str | None = None,
        formula: str | None = None, split: str | None = None,
    ) -> Case:  # fmt: skip
        if not findings or not findings.strip():
            raise InputError("a case needs findings text", "findings")
        cid = case_id(source, findings, [(h[0], h[1], h[2]) for h in herbs])
        text, report = findings.strip(), dict[str, int]()
        if self.deidentify is not None:
            text, report = self.deidentify(text)
        return Case(
            id=cid, findings=text, symptoms=tuple(dict.fromkeys(self.symptoms(text))),
            herbs=tuple(CaseHerb(n, self.resolve_herb(n), d, u, g) for n, d, u, g in herbs),
            source=source, department=department, label=label, syndrome=syndrome,
            syndrome_id=self.resolve_syndrome(syndrome) if syndrome else None, formula=formula, split=split,
            deid=dict(report),
        )  # fmt: skip


# ------------------------------------------------------------------------------------------------
# the store


class CaseStore:
    """An embedded SQLite store of cases keyed by their content id. Adding is idempotent."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS cases (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                id TEXT NOT NULL UNIQUE,
                source TEXT NOT NULL,
                split TEXT,
                department TEXT,
                label INTEGER,
                syndrome_id TEXT,
                data TEXT NOT NULL
            );
            CREATE INDEX IF NOT EXISTS cases_split ON cases(split);
            """
        )
        row = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            self._db.commit()
        elif int(row[0]) != SCHEMA_VERSION:
            raise ArtifactError(f"{self.path}: case store schema {row[0]}, this version reads {SCHEMA_VERSION}")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> CaseStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, cases: Iterable[Case]) -> int:
        """Insert cases; those already stored (same id) are left as they are. Returns how many were new."""
        before = self.count()
        with self._db:
            self._db.executemany(
                "INSERT OR IGNORE INTO cases (id, source, split, department, label, syndrome_id, data) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    (c.id, c.source, c.split, c.department, c.label, c.syndrome_id,
                     json.dumps(c.to_dict(), ensure_ascii=False))
                    for c in cases
                ),
            )  # fmt: skip
        added = self.count() - before
        logger.info("case store %s: %d new cases", self.path.name, added)
        return added

    def count(self, split: str | None = None) -> int:
        if split is None:
            return int(self._db.execute("SELECT COUNT(*) FROM cases").fetchone()[0])
        return int(self._db.execute("SELECT COUNT(*) FROM cases WHERE split=?", (split,)).fetchone()[0])

    def get(self, ids: Sequence[str]) -> dict[str, Case]:
        out: dict[str, Case] = {}
        for b in range(0, len(ids), 500):
            chunk = list(ids[b : b + 500])
            q = f"SELECT id, data FROM cases WHERE id IN ({','.join('?' * len(chunk))})"
            for cid, data in self._db.execute(q, chunk):
                out[cid] = Case.from_dict(json.loads(data))
        return out

    def __iter__(self) -> Iterator[Case]:
        for (data,) in self._db.execute("SELECT data FROM cases ORDER BY seq"):
            yield Case.from_dict(json.loads(data))

    def cases(self, splits: Sequence[str] | None = None) -> list[Case]:
        if splits is None:
            return list(self)
        q = f"SELECT data FROM cases WHERE split IN ({','.join('?' * len(splits))}) ORDER BY seq"
        return [Case.from_dict(json.loads(d)) for (d,) in self._db.execute(q, list(splits))]


# ------------------------------------------------------------------------------------------------
# case base = store + encoder + index


@dataclass(frozen=True, slots=True)
class Hit:
    case: Case
    score: float

    def to_dict(self, excerpt: int = 80) -> dict[str, Any]:
        c = self.case
        text = c.findings if len(c.findings) <= excerpt else c.findings[:excerpt] + "…"
        return {
            "case_id": c.id, "score": round(self.score, 4), "findings": text, "department": c.department,
            "label": c.label, "syndrome": c.syndrome, "syndrome_id": c.syndrome_id, "formula": c.formula,
            "herbs": [{"name": h.name, "herb_id": h.herb_id, "dose": h.dose, "unit": h.unit} for h in c.herbs],
            "source": c.source,
        }  # fmt: skip


class CaseBase:
    """A built case base directory. ``search`` satisfies ``cds.differentiate.CaseIndex``."""

    def __init__(self, store: CaseStore, encoder: Any, index: Any, directory: Path | None = None):
        self.store, self.encoder, self.index, self.directory = store, encoder, index, directory
        self.name = f"cases:{encoder.name}:{encoder.version}"

    @classmethod
    def build(
        cls, directory: str | Path, cases: Iterable[Case], encoder: Any, *, splits: Sequence[str] | None = None,
        kind: str = "auto",
    ) -> CaseBase:  # fmt: skip
        """Add ``cases`` to the store in ``directory`` (incrementally), save ``encoder`` and (re)build the index
        over the stored cases of ``splits`` (all when None). The encoder must already be fitted."""
        from models.encoders import save_encoder
        from models.vector_index import VectorIndex

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        store = CaseStore(d / STORE_FILE)
        store.add(cases)
        indexed = store.cases(splits)
        if not indexed:
            raise InputError("no cases to index: the case base is empty (check --data and the splits)", "cases")
        vectors = encoder.encode([c.findings for c in indexed])
        index = VectorIndex.build(vectors, [c.id for c in indexed], encoder.name, encoder.version, kind=kind)
        save_encoder(encoder, d / "encoder")
        index.save(d / "index")
        return cls(store, encoder, index, d)

    @classmethod
    def open(cls, directory: str | Path) -> CaseBase:
        from models.encoders import load_encoder
        from models.vector_index import VectorIndex

        d = Path(directory)
        if not (d / STORE_FILE).is_file():
            raise ArtifactError(f"{d} is not a case base ({STORE_FILE} is missing); build one with `tcm cases build`")
        encoder = load_encoder(d / "encoder")
        index = VectorIndex.load(d / "index", encoder=encoder)
        return cls(CaseStore(d / STORE_FILE), encoder, index, d)

    def close(self) -> None:
        self.store.close()

    def _query(self, text: str) -> Any:
        if not isinstance(text, str) or not text.strip():
            raise InputError("the query text is empty; give the patient's findings as text", "text")
        return self.encoder.encode([text.strip()])

    def similar(self, text: str, k: int = 10) -> list[Hit]:
        q = self._query(text)
        pairs = self.index.search(q, k)[0]
        rows = self.store.get([cid for cid, _ in pairs])
        missing = [cid for cid, _ in pairs if cid not in rows]
        if missing:
            raise ArtifactError(
                f"the index names {len(missing)} case(s) the store lacks (e.g. {missing[0]}); rebuild the case base"
            )
        return [Hit(rows[cid], s) for cid, s in pairs]

    def search(self, text: str, k: int) -> list[tuple[str, float, str | None]]:
        return [(h.case.id, h.score, h.case.syndrome_id) for h in self.similar(text, k)]
