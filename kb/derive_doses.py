"""Modern decoction doses for formulas whose source gives only the original amounts (一两, 半两, 等分).

The textbooks give many formulas of the 散 and 丸 tradition as the original batch (参苓白术散: 人参 二斤 …) with
"亦可作汤剂，用量按原方比例酌定": the daily decoction dose is the original *proportion*, scaled to doses a
physician writes. This module does that scaling, for curators, and writes the result into the content files
marked ``derived: true`` so that every reader knows the grams are the project's computation, not the source's:

    weights   each ingredient's original amount in 钱 (斤 = 16 两, 两 = 10 钱; 分 a tenth of a 钱, or a quarter of a
              两 in a formula that writes no 钱 (宋 and earlier); 等分 = equal parts; 一两至二两 its middle; a note
              in brackets dropped)
    scale     one factor s (grams per 钱) for the whole formula: the one that brings the doses, on average, to the
              middle of their herbs' Pharmacopoeia ranges (least squares on log s·w against the log of each range's
              geometric middle); a formula with some doses already in grams reads the rest at 一钱 = 3 g
    rounding  ≥ 10 g to whole grams, ≥ 1 g to 0.5 g, below to 0.1 g (0.01 g below 0.1); then any dose still
              outside its herb's range is moved to the nearest bound, so that no derived dose is out of range

Only formulas the source gives as a decoction (水煎服, 亦可作汤剂) are derived; a pill or powder taken as such
(十枣汤 为末 每服0.5~1g) keeps its amounts and its usage, and so does a formula whose proportion cannot sit inside
the ranges (most doses on a bound: 左金丸's 6:1) or that has one weighed herb (独参汤). Counts (3片, 12枚) stay
counts; an ingredient named in the method of preparation (``用法所加``) and one already in grams keep what they
have. ``python -m kb.derive_doses`` lists what it would write; ``--write`` writes it.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import kb as kbmod
from kb import model as m
from kb.base import default_data_dir
from kb.loader import origin_map

NUMERALS = {"一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
UNIT_QIAN = {"斤": 160.0, "两": 10.0, "钱": 1.0, "分": 0.1}  # in 钱
EQUAL = "等分"


def _number(text: str) -> float | None:
    """一 … 九十九 and 半; None when the text is not a number."""
    if text == "半":
        return 0.5
    if text and all(c in NUMERALS or c == "十" for c in text):
        if "十" in text:
            tens, _, units = text.partition("十")
            return float((NUMERALS[tens] if tens else 1) * 10 + (NUMERALS[units] if units else 0))
        if len(text) == 1:
            return float(NUMERALS[text])
    return None


def weight_in_qian(amount: str, fen: float = 0.1) -> float | None:
    """An original amount as written (一两五钱, 七钱半, 半斤, 一两至二两) in 钱, a 分 counting ``fen`` 钱; None when it is
    not a weight."""
    text = re.sub(r"（[^）]*）|\([^)]*\)", "", amount).strip()
    text = re.sub(r"^(赤白各|各|代\w{2}?)", "", text)
    if "至" in text:
        parts = [weight_in_qian(p, fen) for p in text.split("至")]
        return None if None in parts else sum(p for p in parts if p is not None) / len(parts)
    total, rest = 0.0, text
    pattern = re.compile(r"^([一二三四五六七八九十半]+)(斤|两|钱|分)(半?)")
    found = False
    while rest:
        mt = pattern.match(rest)
        if mt is None:
            return None
        n = _number(mt.group(1))
        if n is None:
            return None
        unit = fen if mt.group(2) == "分" else UNIT_QIAN[mt.group(2)]
        total += n * unit + (0.5 * unit if mt.group(3) else 0.0)
        rest, found = rest[mt.end() :], True
    return total if found else None


@dataclass(frozen=True)
class Derived:
    herb: str  # as written
    amount: str
    dose_g: float
    range_g: tuple[float, float] | None
    clamped: bool  # moved to a bound of its range after rounding


def _round(d: float) -> float:
    """To the step a physician writes (1 g from 10 g, 0.5 g from 1 g, then 0.1 and 0.01 g), halves rounded up."""
    step = 1.0 if d >= 10 else 0.5 if d >= 1 else 0.1 if d >= 0.1 else 0.01
    return round(math.floor(d / step + 0.5 + 1e-9) * step, 2)


def settle(dose: float, rng: tuple[float, float] | None) -> tuple[float, bool]:
    """A computed dose rounded as a physician writes it and kept inside the herb's range: (dose, moved to a bound)."""
    d = _round(dose)
    if rng is not None and not rng[0] <= d <= rng[1]:
        return (rng[0] if d < rng[0] else rng[1]), True
    return d, False


def proportion_factor(weights: list[float], ranges: list[tuple[float, float] | None]) -> float:
    """The grams-per-钱 factor that brings the doses, on average, to the middle of their ranges: the least-squares
    fit of log s·w to the log of each range's geometric middle (closed form: the mean of log middle − log w)."""
    fit = [
        math.log(math.sqrt(r[0] * r[1])) - math.log(w) for w, r in zip(weights, ranges, strict=True) if r and r[0] > 0
    ]
    return math.exp(sum(fit) / len(fit)) if fit else 3.0  # nothing to fit: the usual reading of 一钱 as 3 g


def decocted(formula: m.Formula) -> bool:
    """Whether the source gives the formula as a decoction (水煎服, 亦可作汤剂 …): a pill or a powder taken as such
    (十枣汤: 为末 每服0.5~1g) keeps its original amounts and its usage."""
    usage = formula.usage or ""
    if re.search(r"水煎|煎服|汤剂|煎(?![汤膏])|煎$", usage.replace("包煎", "")):
        return True
    if re.search(r"[丸散末膏胶]|送[服下]|调下", usage):
        return False
    return formula.name.endswith(("汤", "饮", "煎"))


def derive(base: kbmod.KnowledgeBase, formula: m.Formula) -> tuple[list[Derived], str | None]:
    """The derived doses of a formula's ingredients that have an original weight and no grams; ``(derived, None)``
    or ``([], why not)``."""
    todo = [i for i in formula.composition if i.dose_g is None and i.amount and not m.named_in_usage(i.note)]
    # 分 is a tenth of a 钱 where the formula writes 钱 (金元 and later), a quarter of a 两 where it writes only
    # 两 and 分 (宋 and earlier: 防风通圣散 荆芥 一分 beside 防风 半两)
    quarter = not any("钱" in (i.amount or "") for i in formula.composition)
    equal = [i for i in todo if (i.amount or "").startswith(EQUAL)]
    weighed: list[tuple[m.Ingredient, float]] = [
        (i, w) for i in todo if (w := weight_in_qian(i.amount or "", fen=2.5 if quarter else 0.1)) is not None
    ]
    if not weighed and not equal:
        return [], "no original weight to scale"
    if equal and weighed:
        return [], "等分 beside other weights: the proportion is not written"
    if equal:
        weighed = [(i, 1.0) for i in equal]
    if not decocted(formula):
        return [], "a pill or powder taken as such (its usage gives no decoction)"
    mixed = any(i.dose_g is not None for i in formula.composition)
    if len(weighed) < 2 and not mixed:
        return [], "one weighed herb: no proportion to keep"
    if mixed:
        s = 3.0  # some herbs already have grams from the source: read the rest at 一钱 = 3 g
    else:
        s = proportion_factor([w for _, w in weighed], [base.safety(i.herb_id, i.form_id).dose_g for i, _ in weighed])
    out = []
    for i, w in weighed:
        rng = base.safety(i.herb_id, i.form_id).dose_g
        d, clamped = settle(s * w, rng)
        out.append(Derived(i.written, i.amount or "", d, rng, clamped))
    done = {d.herb for d in out}
    if left := [i.written for i in formula.composition if i.dose_g is None and i.written not in done
                and not m.modern_amount(i.amount) and not m.named_in_usage(i.note)]:  # fmt: skip
        return [], f"{'、'.join(left)} would stay without grams (an amount that is neither a weight nor a count)"
    if not mixed and 2 * sum(d.clamped for d in out) > len(out):
        return [], "the proportion does not fit the Pharmacopoeia ranges (most doses would sit on a bound)"
    return out, None


def _write(path: Path, formula_name: str, derived: list[Derived]) -> int:
    """Insert ``dose_g: N, derived: true`` after each derived ingredient's amount, inside the formula's entry."""
    text = path.read_text(encoding="utf-8")
    start = text.index(f"\n  name: {formula_name}\n")
    end = text.find("\n- id:", start)
    end = len(text) if end < 0 else end
    block = text[start:end]
    n = 0
    for d in derived:
        old = f"{{herb: {d.herb}, amount: {d.amount},"
        if block.count(old) != 1:
            raise ValueError(f"{path}: {formula_name}: cannot place the dose of {d.herb} ({old!r})")
        block = block.replace(old, f"{{herb: {d.herb}, amount: {d.amount}, dose_g: {d.dose_g:g}, derived: true,")
        n += 1
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text[:start] + block + text[end:], encoding="utf-8")
    tmp.replace(path)
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kb.derive_doses", description=__doc__.split("\n\n")[0])
    ap.add_argument("--kb", type=Path, default=None, help="knowledge-base directory (default: the built-in one)")
    ap.add_argument("--write", action="store_true", help="write the derived doses into the formula files")
    args = ap.parse_args(argv)
    base = kbmod.load(args.kb, cache=False)
    origin = {f.id: f for f in base.content.formulas}
    where = origin_map(base.content)
    written = skipped = 0
    for f in base.formulas.values():
        derived, why = derive(base, f)
        if why is not None:
            if why != "no original weight to scale":
                print(f"skip {f.name}: {why}", file=sys.stderr)
                skipped += 1
            continue
        print(
            f.name + ": " + " ".join(f"{d.herb}{d.amount}→{d.dose_g:g}g" + ("*" if d.clamped else "") for d in derived)
        )
        if args.write:
            rel = where[id(origin[f.id])].split(" entry #")[0]
            path = (args.kb or default_data_dir()) / rel
            try:
                written += _write(path if path.is_file() else Path(rel), f.name, derived)
            except ValueError as exc:  # each file is replaced whole or not at all; what was written stays valid
                print(f"error: {exc}; {written} doses written before it", file=sys.stderr)
                return 1
    print(f"{written} doses written; {skipped} formulas skipped (* = moved to a bound of the range)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
