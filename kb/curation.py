"""Knowledge curation: change requests, review, releases, restore — kept in the service's database.

A **change request** groups edits (create, update, deprecate, add/remove a relation) with its author, reason and
source. It is validated whenever it is saved: its edits are applied to the current release and a knowledge base
is built from the result (content schema, every cross-reference, alias collisions) and the touched entries are
checked against the SHACL shapes. A reviewer who is not the author approves or rejects it. A **release** applies
every approved change request to the current release, validates the result again, and stores it as a new
release: a manifest of content files (each file stored once, by hash), a changelog and a field-by-field diff
against its parent. Restoring a release publishes its content again as a new release; nothing is deleted.

Every step is one database transaction: a proposal is stored when the call returns, and a release is either
wholly there or not at all. The first release ("seed") is the knowledge base the engine was started with,
recorded the first time curation is used. Works on SQLite (WAL) and PostgreSQL through SQLAlchemy Core.

Edits name the state they were based on: an update carries the entity's ``etag`` (a hash of its data in the
release the author saw), a change-request edit carries its ``revision``. An edit based on an older state raises
``StaleError`` and stores nothing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError

from kb.content_tree import KINDS, EditProblem, Tree, diff, read_dir, texts_hash
from kb.errors import (
    ContentError,
    CurationError,
    CurationInputError,
    NotPermittedError,
    PreconditionRequiredError,
    StaleError,
    UnknownEntityError,
)

logger = logging.getLogger(__name__)

metadata = MetaData()

kb_blob = Table(
    "kb_blob",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("size", Integer, nullable=False),
    Column("data", LargeBinary, nullable=False),  # zlib of the UTF-8 text
)

kb_release = Table(
    "kb_release",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(40), nullable=False, unique=True),
    Column("content_hash", String(16), nullable=False),
    Column("parent_id", Integer, unique=True),  # one child per release: two concurrent releases cannot both land
    Column("kind", String(10), nullable=False),  # seed | release | restore
    Column("created_at", DateTime, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("note", Text),
    Column("restored_from", String(40)),
    Column("manifest", Text, nullable=False),  # {path: sha256}
    Column("change_requests", Text, nullable=False),  # [id, ...]
    Column("changelog", Text, nullable=False),  # [line, ...]
    Column("diff", Text, nullable=False),  # against the parent
)

kb_change_request = Table(
    "kb_change_request",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("title", String(200), nullable=False),
    Column("author", String(200), nullable=False, index=True),
    Column("reason", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("status", String(12), nullable=False, index=True),
    Column("revision", Integer, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("base_release", String(40), nullable=False),
    Column("edits", Text, nullable=False),
    Column("validation", Text, nullable=False),
    Column("diff", Text, nullable=False),  # what it does to the release it was last validated against
    Column("reviewer", String(200)),
    Column("decision", String(10)),
    Column("review_comment", Text),
    Column("reviewed_at", DateTime),
    Column("released_in", String(40)),
)

kb_cr_event = Table(
    "kb_cr_event",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cr_id", Integer, nullable=False, index=True),
    Column("at", DateTime, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(20), nullable=False),
    Column("detail", Text),
    UniqueConstraint("cr_id", "id"),
)

STATUSES = ("open", "approved", "rejected", "released", "withdrawn", "conflict")
EDITABLE = ("open", "rejected", "conflict")


def create_schema(engine: Engine) -> None:
    for attempt in range(5):
        try:
            metadata.create_all(engine, checkfirst=True)
            return
        except DBAPIError as exc:  # another process created a table between check and create
            if attempt == 4 or not any(w in str(exc).lower() for w in ("already exists", "duplicate")):
                raise


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _iso(t: dt.datetime | None) -> str | None:
    return None if t is None else t.replace(tzinfo=dt.UTC).isoformat().replace("+00:00", "Z")


# ---- what callers send ---------------------------------------------------------------------------------
_ID = r"^[a-z][a-z0-9]*(?:[-_.][a-z0-9]+)*$"


class Edit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    op: Literal["create", "update", "deprecate", "add_relation", "remove_relation"]
    kind: Literal["herb", "form", "formula", "disease", "syndrome", "symptom", "rule", "source", "substitution"]
    id: str = Field(pattern=_ID, min_length=2, max_length=80)
    parent: str | None = None
    base_etag: str | None = Field(None, max_length=64)
    data: dict[str, Any] = Field(default_factory=dict)
    unset: list[str] = Field(default_factory=list)
    relation: str | None = None
    value: Any = None
    note: str | None = Field(None, max_length=2000)


class Citation(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    work: str = Field(min_length=1, max_length=300)
    edition: str | None = Field(None, max_length=200)
    locator: str | None = Field(None, max_length=200)


class ChangeRequestIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: str = Field(min_length=1, max_length=200)
    reason: str = Field(min_length=1, max_length=5000)
    source: Citation
    edits: list[Edit] = Field(min_length=1, max_length=500)


def parse_request(raw: Any) -> ChangeRequestIn:
    """A change request from JSON, or CurationInputError naming every malformed field."""
    try:
        cr = ChangeRequestIn.model_validate(raw)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(x) for x in e['loc']) or '(request)'}: {e['msg']}" for e in exc.errors(include_url=False)
        ]
        raise CurationInputError("malformed change request", problems) from None
    problems = []
    for i, e in enumerate(cr.edits):
        where = f"edits.{i}"
        k = KINDS[e.kind]
        if e.op == "create":
            if not e.data:
                problems.append(f"{where}.data: a create gives the new entity's fields")
            if e.base_etag:
                problems.append(f"{where}.base_etag: a create is not based on an existing entity")
            if k.parent and not e.parent:
                problems.append(f"{where}.parent: a {e.kind} is created under its {k.parent} (give its id)")
        elif not e.base_etag:
            problems.append(f"{where}.base_etag: give the etag of the {e.kind} you edited (GET it first)")
        if e.op == "update" and not e.data and not e.unset:
            problems.append(f"{where}: an update sets (data) or removes (unset) at least one field")
        if e.op in ("add_relation", "remove_relation") and (not e.relation or e.value is None):
            problems.append(f"{where}: a relation edit names the list field (relation) and the item (value)")
        if e.op == "deprecate" and e.kind == "source":
            problems.append(f"{where}: sources are not deprecated; correct the entries that cite them")
        for key in e.data:
            if e.op == "deprecate":
                if key not in ("replaced_by", "reason"):
                    problems.append(f"{where}.data.{key}: a deprecation gives replaced_by and reason only")
            elif key not in k.model.model_fields or key == k.children:
                problems.append(f"{where}.data.{key}: a {e.kind} has no such field")
        for key in e.unset:
            if key not in k.model.model_fields:
                problems.append(f"{where}.unset: a {e.kind} has no field {key!r}")
    if problems:
        raise CurationInputError("malformed change request", problems)
    return cr


def _stored_edits(cr: ChangeRequestIn) -> list[dict[str, Any]]:
    """The edits as stored: only what was given, with op, kind and id always present."""
    return [
        e.model_dump(exclude_none=True, exclude_defaults=True) | {"op": e.op, "kind": e.kind, "id": e.id}
        for e in cr.edits
    ]


# ---- applying and validating ---------------------------------------------------------------------------
@dataclass
class Applied:
    tree: Tree
    touched: set[tuple[str, str]]
    problems: list[str]


def apply_edits(base: Tree, edits: list[dict[str, Any]], *, into: Tree | None = None) -> Applied:
    """Apply edits (as stored) to ``base`` (or onto ``into``, a fork of it that already holds other edits).

    Raises StaleError when an edit's base_etag is not the entity's etag in ``base``; other problems (an entity
    that does not exist, a duplicate id) are returned, each naming its edit."""
    stale = []
    for i, e in enumerate(edits):
        if e.get("base_etag"):
            current = base.etag(e["kind"], e["id"])
            if current is not None and current != e["base_etag"]:
                stale.append({"edit": i, "kind": e["kind"], "id": e["id"], "current_etag": current})
    if stale:
        raise StaleError(
            "the entity changed since this edit was written: reload it and edit the current version",
            [f"edits.{s['edit']}: {s['kind']} {s['id']} changed (current etag {s['current_etag']})" for s in stale],
            stale=stale,
            current_etag=stale[0]["current_etag"],
        )
    tree = into if into is not None else base.fork()
    touched: set[tuple[str, str]] = set()
    problems: list[str] = []
    for i, e in enumerate(edits):
        kind, ident = e["kind"], e["id"]
        try:
            if e["op"] == "create":
                tree.create(kind, ident, e.get("data") or {}, e.get("parent"))
            elif e["op"] == "update":
                tree.update(kind, ident, e.get("data") or {}, e.get("unset") or ())
            elif e["op"] == "deprecate":
                d = e.get("data") or {}
                tree.deprecate(kind, ident, d.get("replaced_by"), d.get("reason") or e.get("note"))
            else:
                tree.relation(kind, ident, e["relation"], e["value"], add=e["op"] == "add_relation")
        except EditProblem as exc:
            problems.append(f"edits.{i} ({e['op']} {kind} {ident}): {exc}")
            continue
        touched.add((kind, ident))
    return Applied(tree, touched, problems)


@dataclass
class Check:
    ok: bool
    problems: list[str]
    warnings: list[str]
    kb: Any = None  # the knowledge base built from the result, when it is valid


def check_tree(tree: Tree, touched: set[tuple[str, str]], data_dir: Path, *, shacl: bool = True) -> Check:
    """Build a knowledge base from the tree; SHACL on the touched entries. Problems name file, entry, field."""
    from kb.base import KnowledgeBase
    from kb.loader import content_from_texts

    texts = tree.dump()
    content = content_from_texts(texts)
    if content.problems:  # entries that fail the schema: report them alone (their absence would cascade)
        return Check(False, content.problems, [])
    try:
        base = KnowledgeBase(content, data_dir, texts_hash(texts))
    except ContentError as exc:
        return Check(False, exc.problems, [])
    touched_files = {tree.locate(k, i).rel for k, i in touched if tree.locate(k, i)}  # type: ignore[union-attr]
    warnings = [w for w in base.warnings if w.split(" entry #")[0] in touched_files]
    if shacl:
        from kb.rdf import to_subgraph, validate_shacl

        keys = {(k, i) for k, i in touched if k != "source"}
        if keys:
            g, focus = to_subgraph(base, keys)
            conforms, violations = validate_shacl(g, focus)
            if not conforms:
                return Check(False, [f"SHACL: {v}" for v in violations], warnings)
    return Check(True, [], warnings, base)


# ---- the store -----------------------------------------------------------------------------------------
def _blob_sha(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """Validating or releasing builds a whole knowledge base: ~100,000 new long-lived objects that would make the
    cyclic collector rescan a large heap again and again (it dominated the time in a server holding a few
    releases). Reference counting still frees everything short-lived; the collector runs again afterwards."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def release_dir(content_hash: str) -> Path:
    """Where a release's files are written for the engine to load (a cache: the database holds them)."""
    from kb.base import cache_dir

    return cache_dir() / "releases" / content_hash


class Curation:
    """The curation workflow over one database. Thread-safe; several processes may share the database."""

    def __init__(self, engine: Engine, seed_dir: Path | None = None, clock: Callable[[], dt.datetime] = utcnow):
        from kb.base import default_data_dir

        self.engine = engine
        self.seed_dir = Path(seed_dir) if seed_dir is not None else default_data_dir()
        self.clock = clock
        create_schema(engine)
        self._lock = threading.RLock()
        self._texts: dict[int, dict[str, str]] = {}  # release id -> files
        self._trees: dict[int, Tree] = {}
        self._kbs: dict[int, Any] = {}
        self._compiling: list[threading.Thread] = []

    def wait_compiled(self) -> None:
        """Wait until the compiled copies of new releases are written to the cache folder."""
        while self._compiling:
            self._compiling.pop().join()

    # ---- releases ------------------------------------------------------------------------------------
    def current(self, conn: Connection | None = None) -> dict[str, Any]:
        """The current release row (seeding the database with the running knowledge base the first time)."""
        row = self._latest(conn)
        if row is None:
            self._seed()
            row = self._latest(conn)
        assert row is not None
        return row

    def latest_pointer(self) -> tuple[int, str, str] | None:
        """(id, name, content hash) of the current release, or None before curation was first used: cheap."""
        with self.engine.connect() as conn:
            r = conn.execute(
                select(kb_release.c.id, kb_release.c.name, kb_release.c.content_hash)
                .order_by(kb_release.c.id.desc())
                .limit(1)
            ).first()
        return None if r is None else (r.id, r.name, r.content_hash)

    def _latest(self, conn: Connection | None = None) -> dict[str, Any] | None:
        q = select(kb_release).order_by(kb_release.c.id.desc()).limit(1)
        if conn is not None:
            r = conn.execute(q).mappings().first()
        else:
            with self.engine.connect() as c:
                r = c.execute(q).mappings().first()
        return dict(r) if r else None

    def seed_differs(self) -> str | None:
        """A warning when the knowledge base the engine ships differs from the one curation started from (an
        engine upgrade brought new content): the curated releases do not contain it."""
        from kb.base import content_hash

        with self.engine.connect() as conn:
            seed = conn.execute(
                select(kb_release.c.name, kb_release.c.content_hash).where(kb_release.c.kind == "seed")
            ).first()
        if seed is None or not self.seed_dir.is_dir():
            return None
        now = content_hash(self.seed_dir)
        if now == seed.content_hash:
            return None
        return (f"the built-in knowledge base ({self.seed_dir}, {now}) differs from the one curation started from "
                f"({seed.name}+{seed.content_hash}); the server serves the curated release, which lacks the new "
                "built-in content — bring it in through change requests, or start curation afresh on a new database")  # fmt: skip

    def _seed(self) -> None:
        texts = read_dir(self.seed_dir)
        name = Tree(texts).release_name() or "unreleased"
        try:
            with self.engine.begin() as conn:
                if conn.execute(select(kb_release.c.id).limit(1)).first() is not None:
                    return
                manifest = self._store_blobs(conn, texts)
                conn.execute(insert(kb_release).values(
                    name=name, content_hash=texts_hash(texts), parent_id=None, kind="seed", created_at=self.clock(),
                    created_by="system", note=f"引擎启动时的知识库（{self.seed_dir.name}）",
                    restored_from=None, manifest=json.dumps(manifest), change_requests="[]", changelog="[]", diff="[]",
                ))  # fmt: skip
        except IntegrityError:  # another process seeded it first
            pass

    def _store_blobs(self, conn: Connection, texts: dict[str, str]) -> dict[str, str]:
        manifest = {rel: _blob_sha(t) for rel, t in texts.items()}
        have = set()
        shas = sorted(set(manifest.values()))
        for i in range(0, len(shas), 500):
            chunk = shas[i : i + 500]
            have |= {r[0] for r in conn.execute(select(kb_blob.c.sha256).where(kb_blob.c.sha256.in_(chunk)))}
        rows, seen = [], set()
        for rel, sha in manifest.items():
            if sha not in have and sha not in seen:
                seen.add(sha)
                data = texts[rel].encode("utf-8")
                rows.append({"sha256": sha, "size": len(data), "data": zlib.compress(data, 6)})
        if rows:
            conn.execute(insert(kb_blob), rows)
        return manifest

    def texts(self, release: dict[str, Any]) -> dict[str, str]:
        rid = release["id"]
        with self._lock:
            if rid in self._texts:
                return self._texts[rid]
        manifest: dict[str, str] = json.loads(release["manifest"])
        shas = sorted(set(manifest.values()))
        blobs: dict[str, str] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(shas), 500):
                for r in conn.execute(
                    select(kb_blob.c.sha256, kb_blob.c.data).where(kb_blob.c.sha256.in_(shas[i : i + 500]))
                ):
                    blobs[r.sha256] = zlib.decompress(r.data).decode("utf-8")
        missing = [rel for rel, sha in manifest.items() if sha not in blobs]
        if missing:
            raise CurationError(f"release {release['name']}: content files missing from the database", missing)
        texts = {rel: blobs[sha] for rel, sha in manifest.items()}
        with self._lock:
            self._texts[rid] = texts
            _trim(self._texts, keep=4)
        return texts

    def tree(self, release: dict[str, Any]) -> Tree:
        rid = release["id"]
        with self._lock:
            t = self._trees.get(rid)
        if t is None:
            t = Tree(self.texts(release))
            t.index()
            with self._lock:
                self._trees[rid] = t
                _trim(self._trees, keep=3)
        return t

    def release_by_name(self, name: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            r = conn.execute(select(kb_release).where(kb_release.c.name == name)).mappings().first()
        if r is None:
            raise UnknownEntityError("release", name, [x["name"] for x in self.history(limit=5)])
        return dict(r)

    def knowledge_base(self, release: dict[str, Any]) -> Any:
        """The knowledge base of a release (its files written to the cache folder, compiled once)."""
        from kb.base import content_hash, default_data_dir, load

        rid = release["id"]
        with self._lock:
            if rid in self._kbs:
                return self._kbs[rid]
        builtin = default_data_dir()
        if builtin.is_dir() and content_hash(builtin) == release["content_hash"]:
            base = load(builtin)
        else:
            base = load(materialize(self.texts(release), release["content_hash"]))
        with self._lock:
            self._kbs[rid] = base
            _trim(self._kbs, keep=2)
        return base

    def history(self, limit: int = 200) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(kb_release).order_by(kb_release.c.id.desc()).limit(limit)).mappings().all()
            names = dict(conn.execute(select(kb_release.c.id, kb_release.c.name)).all())
        current = rows[0]["id"] if rows else None
        return [self._release_out(dict(r), names, current, with_diff=False) for r in rows]

    def release_detail(self, name: str) -> dict[str, Any]:
        r = self.release_by_name(name)
        with self.engine.connect() as conn:
            names = dict(conn.execute(select(kb_release.c.id, kb_release.c.name)).all())
        return self._release_out(r, names, self.current()["id"], with_diff=True)

    @staticmethod
    def _release_out(r: dict[str, Any], names: dict[int, str], current: int | None, with_diff: bool) -> dict[str, Any]:
        out = {
            "name": r["name"],
            "version": f"{r['name']}+{r['content_hash']}",
            "content_hash": r["content_hash"],
            "parent": names.get(r["parent_id"]) if r["parent_id"] else None,
            "kind": r["kind"],
            "created_at": _iso(r["created_at"]),
            "created_by": r["created_by"],
            "note": r["note"],
            "restored_from": r["restored_from"],
            "change_requests": json.loads(r["change_requests"]),
            "changelog": json.loads(r["changelog"]),
            "current": r["id"] == current,
        }
        d = json.loads(r["diff"])
        out["changed_entities"] = len(d)
        if with_diff:
            out["diff"] = d
        return out

    def diff(self, from_name: str | None = None, to_name: str | None = None) -> dict[str, Any]:
        """Field-by-field diff between two releases (default: the current one against its parent)."""
        to = self.release_by_name(to_name) if to_name else self.current()
        if from_name:
            frm = self.release_by_name(from_name)
        else:
            if not to["parent_id"]:
                return {"from": None, "to": to["name"], "diff": []}
            with self.engine.connect() as conn:
                frm = dict(conn.execute(select(kb_release).where(kb_release.c.id == to["parent_id"])).mappings().one())
        return {"from": frm["name"], "to": to["name"], "diff": diff(self.tree(frm), self.tree(to))}

    # ---- entities ------------------------------------------------------------------------------------
    def entity(self, kind: str, ident: str) -> dict[str, Any]:
        if kind not in KINDS:
            raise CurationInputError(f"unknown kind {kind!r}; kinds: {', '.join(KINDS)}")
        rel = self.current()
        tree = self.tree(rel)
        data = tree.data(kind, ident)
        if data is None:
            raise UnknownEntityError(kind, ident, [h["id"] for h in self.search(ident, kind, 5)["results"]])
        loc = tree.locate(kind, ident)
        assert loc is not None
        return {
            "kind": kind,
            "id": ident,
            "parent": loc.parent,
            "name": data.get("name") or data.get("work") or ident,
            "data": data,
            "etag": tree.etag(kind, ident),
            "deprecated": bool(data.get("deprecated")),
            "replaced_by": data.get("replaced_by"),
            "replaced_by_name": _name(tree.entry(kind, data["replaced_by"])) if data.get("replaced_by") else None,
            "parent_name": _name(tree.entry(KINDS[kind].parent or "", loc.parent)) if loc.parent else None,
            "children": [{"kind": k, "id": i, "name": n} for k, i, n in tree.children(kind, ident)],
            "file": loc.rel,
            "pending": self.pending_for(kind, ident),
            "release": rel["name"],
            "kb_version": f"{rel['name']}+{rel['content_hash']}",
        }

    def search(self, q: str, kind: str | None = None, limit: int = 50) -> dict[str, Any]:
        from kb.normalize import normalize

        if kind is not None and kind not in KINDS:
            raise CurationInputError(f"unknown kind {kind!r}; kinds: {', '.join(KINDS)}")
        tree = self.tree(self.current())
        needle = normalize(q.strip()).lower()
        scored = []
        for k, ident in tree.keys(kind):
            e = tree.entry(k, ident) or {}
            name = str(e.get("name") or e.get("work") or ident)
            if not needle:
                scored.append((3, name, k, ident))
                continue
            labels = [
                name,
                ident,
                str(e.get("pinyin") or ""),
                *[str(a) for a in e.get("aliases") or e.get("synonyms") or []],
            ]
            best = None
            for j, lab in enumerate(labels):
                low = normalize(lab).lower()
                if low == needle:
                    rank = 0 if j == 0 else 1
                elif low.startswith(needle):
                    rank = 2
                elif needle in low:
                    rank = 3
                else:
                    continue
                best = rank if best is None else min(best, rank)
            if best is not None:
                scored.append((best, name, k, ident))
        scored.sort(key=lambda x: (x[0], len(x[1]), x[1], x[2]))
        hits = scored[: max(1, min(limit, 500))]
        return {
            "query": q,
            "kind": kind,
            "results": [
                {"kind": k, "id": i, "name": n, "deprecated": bool((tree.entry(k, i) or {}).get("deprecated"))}
                for _, n, k, i in hits
            ],  # fmt: skip
            "total": len(scored),
        }

    def neighbourhood(self, kind: str, ident: str, limit: int = 80) -> dict[str, Any]:
        """The entity and what it links to in the knowledge graph, for drawing."""
        base = self.knowledge_base(self.current())
        if kind in ("source",):
            return {"center": f"{kind}:{ident}", "nodes": [], "edges": []}
        g = base.graph
        center = f"{kind}:{ident}"
        if center not in g:
            raise UnknownEntityError(kind, ident)
        nodes: dict[str, dict[str, Any]] = {}
        edges: list[dict[str, Any]] = []

        def node(key: str) -> str:
            if key not in nodes:
                a = g.nodes[key]
                k, _, i = key.partition(":")
                nodes[key] = {"key": key, "kind": a.get("kind", k), "id": i, "name": a.get("name", i)}
            return key

        node(center)
        around = list(g.in_edges(center, data=True)) + list(g.out_edges(center, data=True))
        around.sort(
            key=lambda e: _REL_ORDER.get(e[2].get("rel", ""), 3)
        )  # rules and structure before the many formulas
        for src, dst, a in around:
            if len(nodes) >= limit:
                break
            rel = a.get("rel", "")
            if rel == "realised_by":  # principle -> formula: show the syndrome it belongs to
                sy = f"syndrome:{a.get('syndrome')}"
                if sy in g:
                    edges.append({"source": node(sy), "target": node(dst), "rel": "treated_with",
                                  "label": "主方" if a.get("rank") == 0 else "备选方"})  # fmt: skip
                continue
            if rel == "treated_by":  # syndrome -> principle: show the principle and its formulas
                edges.append({"source": node(src), "target": node(dst), "rel": rel, "label": "治法"})
                for _, f, b in g.out_edges(dst, data=True):
                    if b.get("syndrome") == ident:
                        edges.append({"source": node(src), "target": node(f), "rel": "treated_with",
                                      "label": "主方" if b.get("rank") == 0 else "备选方"})  # fmt: skip
                continue
            edges.append({"source": node(src), "target": node(dst), "rel": rel, "label": _edge_label(a)})
        return {"center": center, "nodes": list(nodes.values()), "edges": edges}

    def pending_for(self, kind: str, ident: str) -> list[int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(kb_change_request.c.id, kb_change_request.c.edits).where(
                    kb_change_request.c.status.in_(("open", "approved"))
                )
            ).all()
        return [r.id for r in rows if any(e["kind"] == kind and e["id"] == ident for e in json.loads(r.edits))]

    # ---- change requests -----------------------------------------------------------------------------
    def _validate(
        self, edits: list[dict[str, Any]], release: dict[str, Any]
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """(validation, diff) of edits applied to a release; StaleError when they are based on another state."""
        with _no_gc():
            return self._validate_quietly(edits, release)

    def _validate_quietly(
        self, edits: list[dict[str, Any]], release: dict[str, Any]
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        tree = self.tree(release)
        applied = apply_edits(tree, edits)
        changes = diff(tree, applied.tree)
        if applied.problems:
            result = Check(False, applied.problems, [])
        elif not changes:
            result = Check(False, ["the change request changes nothing in the current release"], [])
        else:
            result = check_tree(applied.tree, applied.touched, release_dir("pending"))
        validation = {
            "ok": result.ok,
            "problems": result.problems,
            "warnings": result.warnings,
            "checked_against": f"{release['name']}+{release['content_hash']}",
            "checked_at": _iso(self.clock()),
        }
        return validation, changes

    def propose(self, author: str, raw: Any) -> dict[str, Any]:
        cr = parse_request(raw)
        edits = _stored_edits(cr)
        release = self.current()
        validation, changes = self._validate(edits, release)
        now = self.clock()
        with self.engine.begin() as conn:
            cr_id = conn.execute(insert(kb_change_request).values(
                title=cr.title, author=author, reason=cr.reason, source=json.dumps(cr.source.model_dump(), ensure_ascii=False),
                status="open", revision=1, created_at=now, updated_at=now, base_release=release["name"],
                edits=json.dumps(edits, ensure_ascii=False), validation=json.dumps(validation, ensure_ascii=False),
                diff=json.dumps(changes, ensure_ascii=False),
            )).inserted_primary_key[0]  # type: ignore[index]  # fmt: skip
            self._event(conn, cr_id, author, "proposed", f"{len(edits)} edit(s); valid: {validation['ok']}")
        return self.get(cr_id)

    def revise(self, cr_id: int, actor: str, raw: Any, if_match: int | None, admin: bool = False) -> dict[str, Any]:
        """Replace a change request's title, reason, source and edits (its author, while it is not decided)."""
        cur = self._row(cr_id)
        if if_match is None:
            raise PreconditionRequiredError("give the revision you edited (If-Match)", current_revision=cur["revision"])
        if cur["author"] != actor and not admin:
            raise NotPermittedError("only its author edits a change request")
        if cur["status"] not in EDITABLE:
            raise CurationError(f"change request #{cr_id} is {cur['status']}; it can no longer be edited")
        if if_match != cur["revision"]:
            raise StaleError(
                f"change request #{cr_id} changed since revision {if_match}", current_revision=cur["revision"]
            )
        cr = parse_request(raw)
        edits = _stored_edits(cr)
        release = self.current()
        validation, changes = self._validate(edits, release)
        with self.engine.begin() as conn:
            n = conn.execute(update(kb_change_request).where(
                (kb_change_request.c.id == cr_id) & (kb_change_request.c.revision == if_match)
            ).values(
                title=cr.title, reason=cr.reason, source=json.dumps(cr.source.model_dump(), ensure_ascii=False),
                edits=json.dumps(edits, ensure_ascii=False), validation=json.dumps(validation, ensure_ascii=False),
                diff=json.dumps(changes, ensure_ascii=False),
                status="open", revision=if_match + 1, updated_at=self.clock(), base_release=release["name"],
                reviewer=None, decision=None, review_comment=None, reviewed_at=None,
            )).rowcount  # fmt: skip
            if n != 1:
                raise StaleError(
                    f"change request #{cr_id} changed meanwhile", current_revision=self._row(cr_id)["revision"]
                )
            self._event(conn, cr_id, actor, "revised", f"revision {if_match + 1}; valid: {validation['ok']}")
        return self.get(cr_id)

    def validate(self, cr_id: int, actor: str) -> dict[str, Any]:
        cur = self._row(cr_id)
        edits = json.loads(cur["edits"])
        extra: dict[str, Any] = {}
        try:
            validation, changes = self._validate(edits, self.current())
            extra["diff"] = json.dumps(changes, ensure_ascii=False)
        except StaleError as exc:
            validation = {"ok": False, "problems": exc.problems, "warnings": [], "stale": True,
                          "checked_against": None, "checked_at": _iso(self.clock())}  # fmt: skip
        with self.engine.begin() as conn:
            conn.execute(update(kb_change_request).where(kb_change_request.c.id == cr_id)
                         .values(validation=json.dumps(validation, ensure_ascii=False), **extra))  # fmt: skip
            self._event(conn, cr_id, actor, "validated", f"valid: {validation['ok']}")
        return self.get(cr_id)

    def review(self, cr_id: int, reviewer: str, decision: str, comment: str | None) -> dict[str, Any]:
        if decision not in ("approve", "reject"):
            raise CurationInputError("decision is approve or reject")
        cur = self._row(cr_id)
        if cur["author"] == reviewer:
            raise NotPermittedError("a change request is reviewed by someone other than its author")
        if cur["status"] != "open":
            raise CurationError(f"change request #{cr_id} is {cur['status']}; only an open one is reviewed")
        validation: dict[str, Any] = {}
        if decision == "approve":
            edits = json.loads(cur["edits"])
            try:
                validation, _ = self._validate(edits, self.current())
            except StaleError as exc:
                self._set_status(cr_id, reviewer, "conflict", "; ".join(exc.problems), cur["revision"])
                raise CurationError("cannot approve: the entities it edits changed since; the author re-proposes it",
                                    exc.problems) from None  # fmt: skip
            if not validation["ok"]:
                with self.engine.begin() as conn:
                    conn.execute(update(kb_change_request).where(kb_change_request.c.id == cr_id)
                                 .values(validation=json.dumps(validation, ensure_ascii=False)))  # fmt: skip
                raise CurationError("cannot approve a change request that fails validation", validation["problems"])
        new = "approved" if decision == "approve" else "rejected"
        with self.engine.begin() as conn:
            n = conn.execute(update(kb_change_request).where(
                (kb_change_request.c.id == cr_id) & (kb_change_request.c.revision == cur["revision"])
                & (kb_change_request.c.status == "open")
            ).values(status=new, reviewer=reviewer, decision=decision, review_comment=comment, reviewed_at=self.clock(),
                     revision=cur["revision"] + 1, **({"validation": json.dumps(validation, ensure_ascii=False)}
                                                       if decision == "approve" else {}))).rowcount  # fmt: skip
            if n != 1:
                raise StaleError(f"change request #{cr_id} changed while it was being reviewed; look again",
                                 current_revision=self._row(cr_id)["revision"])  # fmt: skip
            self._event(conn, cr_id, reviewer, new, comment)
        return self.get(cr_id)

    def withdraw(self, cr_id: int, actor: str, admin: bool = False) -> dict[str, Any]:
        cur = self._row(cr_id)
        if cur["author"] != actor and not admin:
            raise NotPermittedError("only its author withdraws a change request")
        if cur["status"] in ("released", "withdrawn"):
            raise CurationError(f"change request #{cr_id} is {cur['status']}")
        self._set_status(cr_id, actor, "withdrawn", None, cur["revision"])
        return self.get(cr_id)

    def _set_status(self, cr_id: int, actor: str, status: str, detail: str | None, revision: int) -> None:
        with self.engine.begin() as conn:
            n = conn.execute(update(kb_change_request).where(
                (kb_change_request.c.id == cr_id) & (kb_change_request.c.revision == revision)
            ).values(status=status, revision=revision + 1, updated_at=self.clock())).rowcount  # fmt: skip
            if n != 1:
                raise StaleError(
                    f"change request #{cr_id} changed meanwhile", current_revision=self._row(cr_id)["revision"]
                )
            self._event(conn, cr_id, actor, status, detail)

    def _event(self, conn: Connection, cr_id: int, actor: str, action: str, detail: str | None) -> None:
        conn.execute(
            insert(kb_cr_event).values(cr_id=cr_id, at=self.clock(), actor=actor, action=action, detail=detail)
        )

    def _row(self, cr_id: int) -> dict[str, Any]:
        with self.engine.connect() as conn:
            r = conn.execute(select(kb_change_request).where(kb_change_request.c.id == cr_id)).mappings().first()
        if r is None:
            raise UnknownEntityError("change request", str(cr_id))
        return dict(r)

    def get(self, cr_id: int, with_diff: bool = True) -> dict[str, Any]:
        r = self._row(cr_id)
        out = _cr_out(r)
        with self.engine.connect() as conn:
            out["events"] = [
                {"at": _iso(e.at), "actor": e.actor, "action": e.action, "detail": e.detail}
                for e in conn.execute(
                    select(kb_cr_event).where(kb_cr_event.c.cr_id == cr_id).order_by(kb_cr_event.c.id)
                )
            ]
        if with_diff:
            out["diff"] = self._cr_diff(r)
        return out

    def _cr_diff(self, r: dict[str, Any]) -> list[dict[str, Any]]:
        """What the change request does: in the release it went into, else as last validated."""
        if r["status"] == "released" and r["released_in"]:
            edits = json.loads(r["edits"])
            rel = self.release_by_name(r["released_in"])
            return [
                d for d in json.loads(rel["diff"]) if any(d["kind"] == e["kind"] and d["id"] == e["id"] for e in edits)
            ]
        return json.loads(r["diff"])  # type: ignore[no-any-return]

    def change_requests(self, status: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        if status is not None and status not in STATUSES:
            raise CurationInputError(f"unknown status {status!r}; statuses: {', '.join(STATUSES)}")
        q = select(kb_change_request).order_by(kb_change_request.c.id.desc()).limit(max(1, min(limit, 1000)))
        if status:
            q = q.where(kb_change_request.c.status == status)
        with self.engine.connect() as conn:
            return [_cr_out(dict(r)) for r in conn.execute(q).mappings()]

    # ---- releasing -----------------------------------------------------------------------------------
    def release(
        self, actor: str, note: str | None = None, on_built: Callable[[Any], None] | None = None
    ) -> dict[str, Any]:
        """Publish every approved change request as a new release; those that no longer apply are marked
        ``conflict`` with the reason and left out. ``on_built`` gets the new knowledge base once it is stored."""
        with self._lock, _no_gc():
            base_rel = self.current()
            with self.engine.connect() as conn:
                approved = [dict(r) for r in conn.execute(
                    select(kb_change_request).where(kb_change_request.c.status == "approved")
                    .order_by(kb_change_request.c.reviewed_at, kb_change_request.c.id)
                ).mappings()]  # fmt: skip
            if not approved:
                raise CurationError("nothing to release: no change request is approved")
            base = self.tree(base_rel)
            name = self._new_name()
            accepted, conflicts = self._combine(base, approved, name, note)
            if not accepted:
                self._mark_conflicts(conflicts, actor)
                raise CurationError("nothing released: every approved change request conflicts",
                                    [f"#{c}: {p}" for c, p in conflicts.items()])  # fmt: skip
            tree, check = accepted["tree"], accepted["check"]
            changelog = [
                f"#{r['id']} {r['title']} ({r['author']}; approved by {r['reviewer']})" for r in accepted["crs"]
            ]
            changelog += [f"#{c} not released (conflict): {p}" for c, p in conflicts.items()]
            return self._publish(base_rel, tree, name, "release", actor, note, [r["id"] for r in accepted["crs"]],
                                 changelog, check.kb, conflicts, on_built)  # fmt: skip

    def _combine(
        self, base: Tree, approved: list[dict[str, Any]], name: str, note: str | None
    ) -> tuple[dict[str, Any], dict[int, str]]:
        conflicts: dict[int, str] = {}
        data_dir = release_dir("pending")

        def attempt(crs: list[dict[str, Any]]) -> tuple[Tree, Check | None, dict[int, str]]:
            tree = base.fork()
            touched: set[tuple[str, str]] = set()
            bad: dict[int, str] = {}
            for r in crs:
                trial = tree.fork()
                try:
                    applied = apply_edits(tree, json.loads(r["edits"]), into=trial)
                except StaleError as exc:
                    bad[r["id"]] = "; ".join(exc.problems)
                    continue
                if applied.problems:
                    bad[r["id"]] = "; ".join(applied.problems)
                    continue
                tree, touched = trial, touched | applied.touched
            tree.set_release(name, note)
            if len(bad) == len(crs):
                return tree, None, bad
            return tree, check_tree(tree, touched, data_dir), bad

        tree, check, bad = attempt(approved)
        conflicts.update(bad)
        good = [r for r in approved if r["id"] not in bad]
        if check is not None and not check.ok:
            # together they fail: add them one at a time, keeping each that leaves a valid knowledge base
            kept: list[dict[str, Any]] = []
            for r in good:
                _, c, b = attempt([*kept, r])
                if b or c is None or not c.ok:
                    conflicts[r["id"]] = "; ".join((c.problems if c else []) or list(b.values()))[:4000]
                else:
                    kept.append(r)
            good = kept
            tree, check, _ = attempt(good) if good else (tree, None, {})
        if not good or check is None:
            return {}, conflicts
        return {"tree": tree, "check": check, "crs": good}, conflicts

    def _mark_conflicts(self, conflicts: dict[int, str], actor: str, conn: Connection | None = None) -> None:
        """Mark change requests ``conflict`` with the reason (in ``conn``'s transaction, or one of its own)."""
        if conn is None:
            with self.engine.begin() as own:
                self._mark_conflicts(conflicts, actor, own)
            return
        now = self.clock()
        for cr_id, why in conflicts.items():
            validation = {"ok": False, "problems": [why], "warnings": [], "checked_at": _iso(now)}
            conn.execute(update(kb_change_request).where(kb_change_request.c.id == cr_id).values(
                status="conflict", revision=kb_change_request.c.revision + 1, updated_at=now,
                validation=json.dumps(validation, ensure_ascii=False),
            ))  # fmt: skip
            self._event(conn, cr_id, actor, "conflict", why[:2000])

    def _publish(self, parent: dict[str, Any], tree: Tree, name: str, kind: str, actor: str, note: str | None,
                 cr_ids: list[int], changelog: list[str], built: Any, conflicts: dict[int, str],
                 on_built: Callable[[Any], None] | None, restored_from: str | None = None) -> dict[str, Any]:  # fmt: skip
        texts = tree.dump()
        digest = texts_hash(texts)
        changes = diff(self.tree(parent), Tree(texts))
        now = self.clock()
        try:
            with self.engine.begin() as conn:
                manifest = self._store_blobs(conn, texts)
                rid = conn.execute(insert(kb_release).values(
                    name=name, content_hash=digest, parent_id=parent["id"], kind=kind, created_at=now, created_by=actor,
                    note=note, restored_from=restored_from, manifest=json.dumps(manifest), change_requests=json.dumps(cr_ids),
                    changelog=json.dumps(changelog, ensure_ascii=False), diff=json.dumps(changes, ensure_ascii=False),
                )).inserted_primary_key[0]  # type: ignore[index]  # fmt: skip
                for cr_id in cr_ids:
                    n = conn.execute(update(kb_change_request).where(
                        (kb_change_request.c.id == cr_id) & (kb_change_request.c.status == "approved")
                    ).values(status="released", released_in=name, revision=kb_change_request.c.revision + 1,
                             updated_at=now)).rowcount  # fmt: skip
                    if n != 1:
                        raise StaleError(
                            f"change request #{cr_id} changed while the release was being made; release again"
                        )
                    self._event(conn, cr_id, actor, "released", name)
                self._mark_conflicts(conflicts, actor, conn)
        except IntegrityError:
            raise CurationError(
                "another release was made at the same moment; look at the history and try again"
            ) from None
        release = {
            "id": rid,
            "name": name,
            "content_hash": digest,
            "manifest": json.dumps(manifest),
            "parent_id": parent["id"],
        }
        with self._lock:
            self._texts[rid] = texts
            self._trees[rid] = tree.fork()  # its index is kept up to date by the edits: no re-parse
        # the database holds the release; the folder and the compiled cache are derived from it
        data_dir = materialize(texts, digest)
        if built is not None:
            from kb.base import _code_hash, _write_pickle, cache_dir

            built.data_dir = data_dir
            with self._lock:
                self._kbs[rid] = built
            # the compiled copy only speeds up the next process's start: write it off the caller's path
            t = threading.Thread(
                target=_write_pickle,
                args=(cache_dir() / f"kb-{digest}-{_code_hash()}.pickle", built),
                name="tcm-kb-compile",
                daemon=False,  # finishes before the process exits
            )
            t.start()
            self._compiling.append(t)
        if on_built is not None:
            on_built(self.knowledge_base(release))
        return self.release_detail(name)

    def restore(
        self, name: str, actor: str, note: str | None = None, on_built: Callable[[Any], None] | None = None
    ) -> dict[str, Any]:
        """Publish the content of an earlier release as a new release."""
        with self._lock, _no_gc():
            target = self.release_by_name(name)
            parent = self.current()
            if target["id"] == parent["id"]:
                raise CurationError(f"{name} is the current release already")
            tree = self.tree(target).fork()
            new_name = self._new_name()
            tree.set_release(new_name, note or f"restore of {name}")
            check = check_tree(tree, set(), release_dir("pending"), shacl=False)
            if not check.ok:
                raise CurationError(f"release {name} is not valid for this engine version; it cannot be restored",
                                    check.problems[:50])  # fmt: skip
            changelog = [f"restored the content of {name}"]
            return self._publish(parent, tree, new_name, "restore", actor, note or f"restore of {name}", [], changelog,
                                 check.kb, {}, on_built, restored_from=name)  # fmt: skip

    def _new_name(self) -> str:
        day = self.clock().strftime("%Y.%m.%d")
        with self.engine.connect() as conn:
            taken = {r[0] for r in conn.execute(select(kb_release.c.name).where(kb_release.c.name.like(f"{day}%")))}
        if day not in taken:
            return day
        n = 2
        while f"{day}.{n}" in taken:
            n += 1
        return f"{day}.{n}"

    # ---- export with provenance ----------------------------------------------------------------------
    def export(self, name: str, fmt: str) -> bytes:
        """A release as Turtle or JSON-LD, with PROV-O provenance of every change request in its lineage."""
        from kb.provenance import release_graph

        fmts = {"ttl": "turtle", "turtle": "turtle", "jsonld": "json-ld", "json-ld": "json-ld"}
        if fmt not in fmts:
            raise CurationInputError(f"unknown RDF format {fmt!r}; use ttl or jsonld")
        rel = self.release_by_name(name)
        from kb.base import _write_bytes, cache_dir

        cached = (
            cache_dir()
            / "exports"
            / f"{rel['name']}-{rel['content_hash']}.{'ttl' if fmts[fmt] == 'turtle' else 'jsonld'}"
        )
        if cached.is_file():  # a release never changes: serialise it once (it takes a minute on the full graph)
            return cached.read_bytes()
        lineage = []
        with self.engine.connect() as conn:
            r: dict[str, Any] | None = rel
            while r is not None:
                lineage.append(r)
                r = (dict(conn.execute(select(kb_release).where(kb_release.c.id == r["parent_id"])).mappings().one())
                     if r["parent_id"] else None)  # fmt: skip
            ids = sorted({i for x in lineage for i in json.loads(x["change_requests"])})
            crs = (
                [
                    dict(x)
                    for x in conn.execute(select(kb_change_request).where(kb_change_request.c.id.in_(ids))).mappings()
                ]
                if ids
                else []
            )
        g = release_graph(self.knowledge_base(rel), lineage, crs)
        from kb.rdf import serialize

        out = serialize(g, fmt)
        _write_bytes(cached, out)
        return out


def _cr_out(r: dict[str, Any]) -> dict[str, Any]:
    review = None
    if r["reviewer"]:
        review = {"reviewer": r["reviewer"], "decision": r["decision"], "comment": r["review_comment"],
                  "at": _iso(r["reviewed_at"])}  # fmt: skip
    return {
        "id": r["id"],
        "title": r["title"],
        "author": r["author"],
        "reason": r["reason"],
        "source": json.loads(r["source"]),
        "status": r["status"],
        "revision": r["revision"],
        "created_at": _iso(r["created_at"]),
        "updated_at": _iso(r["updated_at"]),
        "base_release": r["base_release"],
        "edits": json.loads(r["edits"]),
        "validation": json.loads(r["validation"]),
        "review": review,
        "released_in": r["released_in"],
    }


_REL_LABELS = {"contains": "含", "form_of": "炮制品", "has_syndrome": "证型", "argues_against": "不支持",
               "incompatibility": "十八反", "antagonism": "十九畏", "treated_by": "治法"}  # fmt: skip
_REL_ORDER = {"incompatibility": 0, "antagonism": 0, "form_of": 1, "has_syndrome": 2, "treated_by": 2}  # first
_ROLE_LABELS = {"key": "主症", "secondary": "次症", "tongue": "舌象", "pulse": "脉象"}


def _edge_label(a: dict[str, Any]) -> str:
    rel = a.get("rel", "")
    if rel == "contains":
        dose = a.get("dose_g")
        role = a.get("role")
        return "含" + (f" {dose:g} g" if isinstance(dose, (int, float)) else "") + (f" ({role})" if role else "")
    if rel == "indicates":
        return _ROLE_LABELS.get(a.get("role", ""), "症")
    return _REL_LABELS.get(rel, rel)


def _name(entry: dict[str, Any] | None) -> str | None:
    if entry is None:
        return None
    return str(entry.get("name") or entry.get("work") or entry.get("id"))


def _trim(d: dict[int, Any], keep: int) -> None:
    while len(d) > keep:
        d.pop(min(d))


def materialize(texts: dict[str, str], digest: str) -> Path:
    """Write a release's files to ``release_dir(digest)`` (all or nothing) and return that folder."""
    target = release_dir(digest)
    if (target / "release.yaml").is_file() or (target.is_dir() and any(target.iterdir())):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{digest}.", dir=target.parent))
    try:
        for rel, text in texts.items():
            if ".." in Path(rel).parts or Path(rel).is_absolute() or not re.fullmatch(r"[\w./-]+\.yaml", rel):
                raise CurationError(f"refusing to write content file {rel!r}")
            p = tmp / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text, encoding="utf-8")
        try:
            os.rename(tmp, target)
        except OSError:  # another process wrote it first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
