"""Coverage of the knowledge base against the shared research data (`tcm kb coverage --data DIR --json`).

    herbs     the 811 names of tcm-pd/herbs_contains.txt, the 753 of smgcn/herb_mapping.txt, and the herb mentions
              in the prescriptions of tcm-cases (a name followed by a dose: 黄芪30g, 半夏二钱, 神曲炭钱半, 生姜三片)
    symptoms  the 390 names of tcm-pd/symptom_contains.txt
    formulas  for every formula of formulae/formulae.jsonl that names one of ours (name or alias), whether the herb
              sets agree (compared at the herb level: 炙甘草 and 甘草 are one herb); every disagreement is listed

The data is read, never copied: the report lists names, counts and differences, not the datasets' text.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

from kb.base import KnowledgeBase
from kb.errors import InputError

_UNIT = r"(?:克|g|G|钱|錢|两|兩|分|枚|片|个|只|条|粒|朵)"
_NUM = r"(?:\d+(?:\s*\.\s*\d+)?|[一二三四五六七八九十百半两]+)"
# a dose: 9克, 4.5g, 二钱, 一钱五分, 钱半, 三片 — names are the text between doses
_DOSE = re.compile(rf"(?:{_NUM}\s*{_UNIT}(?:\s*{_NUM}\s*{_UNIT})*|钱半|{_UNIT}半)")
_NOTE = re.compile(r"[（(][^）)]{0,12}[）)]")
_NAME = re.compile(r"[\u4e00-\u9fff]{2,8}$")
_NOT_HERB = re.compile(r"^(?:各|共|加|减|去|用|每|服|剂|日|次|水|煎|取|以上|上药|另|先|后|再|如|若|方|药|又|即)")


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


def _resolve_list(kb: KnowledgeBase, names: list[str], kind: str) -> dict[str, Any]:
    unresolved = []
    for n in names:
        r = kb.resolve(n, kind)
        if not r.resolved:
            unresolved.append({"name": n, "candidates": list(r.candidates[:3]), **({"note": r.note} if r.note else {})})
    total = len(names)
    return {
        "total": total,
        "resolved": total - len(unresolved),
        "coverage": round((total - len(unresolved)) / total, 4) if total else None,
        "unresolved": unresolved,
    }


def case_mentions(text: str) -> list[str]:
    """Herb names written with a dose in a case text (only the prescription parts after '|' when present)."""
    parts = text.split("|")
    segments = parts[1:] if len(parts) > 1 else parts
    out = []
    for seg in segments:
        pieces = _DOSE.split(_NOTE.sub("", seg))
        for piece in pieces[:-1]:  # the text after the last dose names no dosed herb
            piece = re.split(r"[，,、；;。|：:\s]", piece.strip())[-1] if piece.strip() else ""
            piece = piece.removesuffix("各")
            m = _NAME.search(piece)
            if m and not _NOT_HERB.match(m.group(0)):
                out.append(m.group(0))
    return out


def _cases(kb: KnowledgeBase, data: Path) -> dict[str, Any]:
    counts: Counter[str] = Counter()
    files = sorted((data / "tcm-cases").glob("*.tsv"))
    if not files:
        raise InputError(f"{data / 'tcm-cases'}: no .tsv files")
    for f in files:
        for line in f.read_text(encoding="utf-8").splitlines():
            _, _, text = line.partition("\t")
            counts.update(case_mentions(text))
    resolved = {n for n in counts if kb.resolve_herb(n).resolved}
    mentions = sum(counts.values())
    ok = sum(c for n, c in counts.items() if n in resolved)
    top = [{"name": n, "mentions": c, "candidates": list(kb.resolve_herb(n).candidates[:3])}
           for n, c in counts.most_common() if n not in resolved][:200]  # fmt: skip
    return {
        "mentions": mentions, "resolved_mentions": ok, "coverage": round(ok / mentions, 4) if mentions else None,
        "distinct": len(counts), "resolved_distinct": len(resolved),
        "distinct_coverage": round(len(resolved) / len(counts), 4) if counts else None,
        "unresolved_top": top,
    }  # fmt: skip


def _composition(text: str) -> list[str] | None:
    m = re.search(r"由(.+?)(?:等药物|等药|等)?组成", text)
    if not m:
        return None
    return [x.strip() for x in re.split(r"[、，,及和]", m.group(1)) if x.strip()]


def _formulas(kb: KnowledgeBase, data: Path) -> dict[str, Any]:
    path = data / "formulae" / "formulae.jsonl"
    if not path.is_file():
        raise InputError(f"{path}: not found")
    compared, agree, disagreements, no_composition = 0, 0, [], 0
    matched_names = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        r = kb.resolve(row["formula"], "formula")
        if not r.resolved or r.how == "variant":
            continue
        matched_names += 1
        theirs = _composition(row.get("text", ""))
        if not theirs:
            no_composition += 1
            continue
        compared += 1
        ours_f = kb.formulas[r.id]
        ours = {i.herb_id for i in ours_f.composition}
        their_ids, their_unresolved = set(), []
        for name in theirs:
            name = _NOTE.sub("", name)  # 枳实（炒） -> 枳实: a processing note, not another herb
            rr = kb.resolve_herb(name)
            if rr.resolved and rr.id:
                their_ids.add(rr.id)
                continue
            # a generic name (贝母, 沙参) matches the species of ours that carries it
            species = [h for h in ours if name in kb.herbs[h].name and len(name) >= 2]
            if species:
                their_ids.add(species[0])
            else:
                their_unresolved.append(name)
        if their_ids == ours and not their_unresolved:
            agree += 1
            continue
        disagreements.append({
            "formula": ours_f.name, "id": ours_f.id, "their_name": row["formula"],
            "only_ours": sorted(kb.herbs[h].name for h in ours - their_ids),
            "only_theirs": sorted(kb.herbs[h].name for h in their_ids - ours),
            "theirs_unresolved": their_unresolved,
        })  # fmt: skip
    return {
        "in_both": matched_names, "compared": compared, "without_composition": no_composition, "agree": agree,
        "agreement": round(agree / compared, 4) if compared else None, "disagreements": disagreements,
    }  # fmt: skip


def coverage(kb: KnowledgeBase, data: Path | None = None) -> dict[str, Any]:
    data = data or default_data_dir()
    if data is None or not data.is_dir():
        raise InputError(f"shared data directory not found: {data} (pass --data DIR or set TCM_DATA_DIR)")
    return {
        "kb_version": str(kb.version),
        "data": str(data),
        "herbs": {
            "tcm-pd": _resolve_list(kb, _names(data / "tcm-pd" / "herbs_contains.txt"), "herb"),
            "smgcn": _resolve_list(kb, _names(data / "smgcn" / "herb_mapping.txt", mapping=True), "herb"),
            "tcm-cases": _cases(kb, data),
        },
        "symptoms": {"tcm-pd": _resolve_list(kb, _names(data / "tcm-pd" / "symptom_contains.txt"), "symptom")},
        "formulas": _formulas(kb, data),
    }
