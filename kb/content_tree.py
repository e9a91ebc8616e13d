"""Knowledge-base content as editable entities: find, read, change and diff entries in content files.

A release of the knowledge base is a set of content files (``herbs/jiebiao.yaml`` …, as in ``kb/data``). A
``Tree`` holds one such set and addresses every entry as an entity ``(kind, id)``: herbs, their processed forms,
formulas, diseases, their syndromes, symptoms, rules, sources and substitutions. Edits change entries in place; the files they
touch are written out again, the others stay byte for byte as they were. No validation happens here: the result
is checked by building a knowledge base from it (``kb.curation``).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import BaseModel

from kb import schema as s
from kb.loader import parse_yaml


@dataclass(frozen=True)
class Kind:
    name: str
    model: type[BaseModel]
    folder: str  # where new entries go: "herbs", or the parent's file
    label: str  # Chinese, for people
    parent: str | None = None  # kind of the parent entry (form -> herb); "ruleset" for rules
    container: str | None = None  # field of the parent that lists these entries
    children: str | None = None  # field that lists child entries (herb -> forms), not part of the entity's data


KINDS: dict[str, Kind] = {
    "herb": Kind("herb", s.Herb, "herbs", "中药", children="forms"),
    "form": Kind("form", s.ProcessedForm, "herbs", "炮制品", parent="herb", container="forms"),
    "formula": Kind("formula", s.Formula, "formulas", "方剂"),
    "disease": Kind("disease", s.Disease, "diseases", "疾病", children="syndromes"),
    "syndrome": Kind("syndrome", s.Syndrome, "diseases", "证型", parent="disease", container="syndromes"),
    "symptom": Kind("symptom", s.Symptom, "symptoms", "症状", children=None),
    "rule": Kind("rule", s.Rule, "rules", "配伍规则", parent="ruleset", container="rules"),
    "source": Kind("source", s.Source, "sources.yaml", "文献来源"),
    "substitution": Kind("substitution", s.Substitution, "substitutes", "代用品"),
}
NEW_ENTRIES_FILE = "curated.yaml"  # herbs/curated.yaml … : where created top-level entries go


def file_kind(rel: str) -> str:
    p = PurePosixPath(rel)
    if p.name == "sources.yaml":
        return "sources"
    if p.name == "release.yaml":
        return "release"
    return p.parent.name


def etag_of(data: Any) -> str:
    blob = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def texts_hash(texts: dict[str, str]) -> str:
    """The content hash of a set of files: the same as ``kb.base.content_hash`` of a directory holding them."""
    h = hashlib.sha256()
    for rel in sorted(texts, key=PurePosixPath):
        h.update(str(PurePosixPath(rel)).encode())
        h.update(b"\0")
        h.update(texts[rel].encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:12]


def dump_yaml(obj: Any) -> str:
    """A content file's text for edited entries: JSON, which is YAML too (and ~30x faster to write than YAML
    block style, which matters when a release is validated against the whole knowledge base)."""
    return json.dumps(obj, ensure_ascii=False, indent=1, default=str) + "\n"


@dataclass(frozen=True)
class Loc:
    rel: str
    parent: str | None  # parent entry's id (herb of a form, disease of a syndrome, rule set of a rule)


class EditProblem(Exception):
    """An edit that cannot be applied to this state (the entity does not exist, a duplicate id …)."""


class Tree:
    """A set of content files, readable and editable by entity. Parsed files are shared between a tree and
    its forks and never changed in place: a fork copies a file on its first edit of it."""

    def __init__(self, texts: dict[str, str], _parsed: dict[str, Any] | None = None, _index: dict | None = None):
        self.texts = dict(texts)
        self._parsed: dict[str, Any] = dict(_parsed or {})
        self._index: dict[tuple[str, str], Loc] | None = dict(_index) if _index is not None else None
        self._dirty: set[str] = set()
        self._dumped: dict[str, str] = {}  # dirty file -> its text, until it is edited again

    # ---- reading ---------------------------------------------------------------------------------------
    def parsed(self, rel: str) -> Any:
        if rel not in self._parsed:
            self._parsed[rel] = parse_yaml(self.texts[rel], rel)
        return self._parsed[rel]

    def index(self) -> dict[tuple[str, str], Loc]:
        if self._index is None:
            index: dict[tuple[str, str], Loc] = {}
            for rel in self.texts:
                for kind, ident, parent, _ in _entries_of(file_kind(rel), self.parsed(rel)):
                    index.setdefault((kind, ident), Loc(rel, parent))
            self._index = index
        return self._index

    def exists(self, kind: str, ident: str) -> bool:
        return (kind, ident) in self.index()

    def keys(self, kind: str | None = None) -> Iterator[tuple[str, str]]:
        return (k for k in self.index() if kind is None or k[0] == kind)

    def locate(self, kind: str, ident: str) -> Loc | None:
        return self.index().get((kind, ident))

    def entry(self, kind: str, ident: str) -> dict[str, Any] | None:
        """The entry as written (with its children), or None."""
        loc = self.locate(kind, ident)
        if loc is None:
            return None
        found = _find(self.parsed(loc.rel), kind, ident, file_kind(loc.rel))
        return None if found is None else found[0][found[1]]

    def data(self, kind: str, ident: str) -> dict[str, Any] | None:
        """The entity's own fields (a herb without its forms, a disease without its syndromes)."""
        e = self.entry(kind, ident)
        if e is None:
            return None
        children = KINDS[kind].children
        return {k: copy.deepcopy(v) for k, v in e.items() if k != children}

    def etag(self, kind: str, ident: str) -> str | None:
        d = self.data(kind, ident)
        return None if d is None else etag_of(d)

    def children(self, kind: str, ident: str) -> list[tuple[str, str, str]]:
        """(kind, id, name) of the entity's child entries."""
        k = KINDS[kind]
        e = self.entry(kind, ident)
        if e is None or not k.children:
            return []
        child_kind = next(c.name for c in KINDS.values() if c.container == k.children and c.parent == kind)
        return [(child_kind, str(c.get("id")), str(c.get("name", c.get("id")))) for c in e.get(k.children) or []]

    def release_name(self) -> str | None:
        rel = self.parsed("release.yaml") if "release.yaml" in self.texts else None
        return rel.get("name") if isinstance(rel, dict) else None

    # ---- editing ---------------------------------------------------------------------------------------
    def fork(self) -> Tree:
        """An independent copy to edit (cheap: files are shared until edited)."""
        if not self._dirty:
            return Tree(self.texts, self._parsed, self._index)
        clean = {rel: v for rel, v in self._parsed.items() if rel not in self._dirty}
        return Tree(self.dump(), clean, self._index)

    def _writable(self, rel: str) -> Any:
        if rel not in self._dirty:
            self._parsed[rel] = copy.deepcopy(self.parsed(rel))
            self._dirty.add(rel)
        self._dumped.pop(rel, None)
        return self._parsed[rel]

    def _writable_entry(self, kind: str, ident: str) -> dict[str, Any]:
        loc = self.locate(kind, ident)
        if loc is None:
            raise EditProblem(f"{kind} {ident!r} does not exist")
        obj = self._writable(loc.rel)
        found = _find(obj, kind, ident, file_kind(loc.rel))
        assert found is not None
        return found[0][found[1]]

    def create(self, kind: str, ident: str, data: dict[str, Any], parent: str | None) -> None:
        k = KINDS[kind]
        if self.exists(kind, ident):
            raise EditProblem(f"{kind} {ident!r} exists already; choose another id or update it")
        if kind in ("herb", "form") and (self.exists("herb", ident) or self.exists("form", ident)):
            raise EditProblem(f"id {ident!r} is taken by a herb or processed form")
        entry = {"id": ident, **{key: v for key, v in data.items() if key != "id"}}
        if k.children:
            entry.setdefault(k.children, [])
        if k.parent == "ruleset":
            rel = next((r for r in self.texts if file_kind(r) == "rules"
                        and (self.parsed(r) or {}).get("ruleset", {}).get("id") == parent), None)  # fmt: skip
            if rel is None:
                raise EditProblem(f"rule set {parent!r} does not exist")
            self._writable(rel)["rules"].append(entry)
        elif k.parent:
            if not parent:
                raise EditProblem(f"a {kind} needs its parent {k.parent} (parent)")
            owner = self._writable_entry(k.parent, parent)
            assert k.container is not None
            owner.setdefault(k.container, []).append(entry)
            rel = self.locate(k.parent, parent).rel  # type: ignore[union-attr]
        elif kind == "source":
            rel = "sources.yaml"
            self._writable(rel)["sources"].append(entry)
        else:
            rel = f"{k.folder}/{NEW_ENTRIES_FILE}"
            if rel not in self.texts and rel not in self._dirty:
                self._dirty.add(rel)
                self._parsed[rel] = []
            self._writable(rel).append(entry)
        self.index()[(kind, ident)] = Loc(rel, parent if k.parent else None)

    def update(self, kind: str, ident: str, data: dict[str, Any], unset: Iterable[str] = ()) -> None:
        children = KINDS[kind].children
        for key in (*data, *unset):
            if key == "id":
                raise EditProblem("an id cannot change (create a new entity and deprecate this one)")
            if children and key == children:
                raise EditProblem(f"{key} are entities of their own; edit them one by one")
        entry = self._writable_entry(kind, ident)
        for key in unset:
            entry.pop(key, None)
        entry.update(copy.deepcopy(data))

    def deprecate(self, kind: str, ident: str, replaced_by: str | None, reason: str | None) -> None:
        if replaced_by is not None and not self.exists(kind, replaced_by):
            raise EditProblem(f"the replacement {kind} {replaced_by!r} does not exist")
        entry = self._writable_entry(kind, ident)
        entry["deprecated"] = True
        entry.pop("replaced_by", None)
        entry.pop("deprecation_reason", None)
        if replaced_by:
            entry["replaced_by"] = replaced_by
        if reason:
            entry["deprecation_reason"] = reason

    def relation(self, kind: str, ident: str, field: str, value: Any, add: bool) -> None:
        k = KINDS[kind]
        info = k.model.model_fields.get(field)
        if info is None or field == k.children or getattr(info.annotation, "__origin__", None) is not list:
            lists = [f for f, i in k.model.model_fields.items()
                     if getattr(i.annotation, "__origin__", None) is list and f != k.children]  # fmt: skip
            raise EditProblem(f"{kind} has no list field {field!r}; list fields: {', '.join(lists)}")
        entry = self._writable_entry(kind, ident)
        items = entry.setdefault(field, [])
        pos = _position(items, value)
        if add:
            if pos is not None:
                raise EditProblem(f"{field} of {kind} {ident!r} already holds {_show(value)}")
            items.append(copy.deepcopy(value))
        else:
            if pos is None:
                raise EditProblem(f"{field} of {kind} {ident!r} holds no {_show(value)}")
            del items[pos]

    def set_release(self, name: str, note: str | None) -> None:
        self._dirty.add("release.yaml")
        self._dumped.pop("release.yaml", None)
        self._parsed["release.yaml"] = {"name": name, **({"note": note} if note else {})}

    def dump(self) -> dict[str, str]:
        """The file texts of this tree, edited files written out again."""
        texts = dict(self.texts)
        for rel in self._dirty:
            if rel not in self._dumped:
                self._dumped[rel] = dump_yaml(self._parsed[rel])
            texts[rel] = self._dumped[rel]
        return texts


def _entries_of(fkind: str, obj: Any) -> Iterator[tuple[str, str, str | None, dict[str, Any]]]:
    """(kind, id, parent id, entry) of every entry in a parsed content file."""
    if obj is None:
        return
    if fkind in ("herbs", "formulas", "diseases", "symptoms") and isinstance(obj, list):
        kind = fkind[:-1]
        child = KINDS[kind].children
        for e in obj:
            if isinstance(e, dict) and isinstance(e.get("id"), str):
                yield kind, e["id"], None, e
                for c in (e.get(child) or []) if child else []:
                    if isinstance(c, dict) and isinstance(c.get("id"), str):
                        yield ("form" if kind == "herb" else "syndrome"), c["id"], e["id"], c
    elif fkind == "rules" and isinstance(obj, dict):
        rs = (obj.get("ruleset") or {}).get("id")
        for r in obj.get("rules") or []:
            if isinstance(r, dict) and isinstance(r.get("id"), str):
                yield "rule", r["id"], rs, r
    elif fkind == "sources" and isinstance(obj, dict):
        for src in obj.get("sources") or []:
            if isinstance(src, dict) and isinstance(src.get("id"), str):
                yield "source", src["id"], None, src
    elif fkind == "substitutes" and isinstance(obj, list):
        for e in obj:
            if isinstance(e, dict) and isinstance(e.get("id"), str):
                yield "substitution", e["id"], None, e


def _own(kind: str, entry: dict[str, Any]) -> dict[str, Any]:
    children = KINDS[kind].children
    return {k: v for k, v in entry.items() if k != children}


def _find(obj: Any, kind: str, ident: str, fkind: str) -> tuple[list[Any], int] | None:
    lists: list[list[Any]] = []
    if kind in ("herb", "formula", "disease", "symptom", "substitution"):
        lists = [obj]
    elif kind in ("form", "syndrome"):
        container = KINDS[kind].container
        lists = [e.get(container) or [] for e in obj if isinstance(e, dict)]
    elif kind == "rule":
        lists = [obj.get("rules") or []]
    elif kind == "source":
        lists = [obj.get("sources") or []]
    for items in lists:
        for i, e in enumerate(items):
            if isinstance(e, dict) and e.get("id") == ident:
                return items, i
    return None


def _position(items: list[Any], value: Any) -> int | None:
    for i, item in enumerate(items):
        if isinstance(value, dict) and isinstance(item, dict) and "herb" in value:
            if item.get("herb") == value.get("herb"):  # composition: one line per herb
                return i
        elif item == value:
            return i
    return None


def _show(value: Any) -> str:
    if isinstance(value, dict) and "herb" in value:
        return repr(value["herb"])
    return repr(value)


# ---- diffs ---------------------------------------------------------------------------------------------
def diff(before: Tree, after: Tree) -> list[dict[str, Any]]:
    """Per entity, field by field: what differs between two trees (only files that differ are read)."""
    bt, at = before.dump(), after.dump()
    changed = {rel for rel in set(bt) | set(at) if bt.get(rel) != at.get(rel)}
    changed.discard("release.yaml")

    def entities(tree: Tree) -> dict[tuple[str, str], dict[str, Any]]:
        out: dict[tuple[str, str], dict[str, Any]] = {}
        texts = bt if tree is before else at
        for rel in changed:
            if rel in texts:
                for kind, ident, _, entry in _entries_of(file_kind(rel), tree.parsed(rel)):
                    out.setdefault((kind, ident), _own(kind, entry))
        return out

    b, a = entities(before), entities(after)
    out = []
    for key in sorted(set(b) | set(a)):
        old, new = b.get(key), a.get(key)
        if old == new:
            continue
        kind, ident = key
        if old is None:
            change = "created"
        elif new is None:
            change = "removed"
        elif new.get("deprecated") and not old.get("deprecated"):
            change = "deprecated"
        else:
            change = "updated"
        fields = []
        for f in sorted(set(old or {}) | set(new or {})):
            x, y = (old or {}).get(f), (new or {}).get(f)
            if x != y or (f in (old or {})) != (f in (new or {})):
                fields.append({"field": f, "before": x, "after": y})
        name = (new or old or {}).get("name") or (new or old or {}).get("work") or ident
        out.append({"kind": kind, "id": ident, "name": name, "change": change, "fields": fields})
    return out


def read_dir(data_dir: Path) -> dict[str, str]:
    from kb.base import content_files

    return {str(p.relative_to(data_dir).as_posix()): p.read_text(encoding="utf-8") for p in content_files(data_dir)}
