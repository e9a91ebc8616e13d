"""ICD-11 chapter 26 (Traditional Medicine Conditions, Module I: "TM1") codes: which exist, what they are called.

The chapter has two halves. Disorders (``SA00``–``SE5Z``) name the disease (感冒 = ``SA60`` Common cold disorder);
patterns (``SE70``–``SJ3Z``) name the syndrome, organ-system or stage pattern that is not tied to one disease
(风寒袭肺 = ``SF8C`` Wind-cold fettering the lung pattern). A TCM diagnosis is coded with one of each, so a
disease in the knowledge base carries a disorder code and a syndrome a pattern code, and validation refuses the
other way round.

The table (``icd11_tm1.tsv`` beside this module) holds every code of the chapter with WHO's English title,
unchanged (ICD-11 MMS, CC BY-ND 3.0 IGO). The Korean four-constitution patterns (``SH40``–``SH9Z``) are in it
because they are in the chapter; no Chinese-medicine syndrome maps to them.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
from typing import Literal

SYSTEM = "http://id.who.int/icd/release/11/mms"  # the FHIR code system URI of ICD-11 MMS
FIRST_PATTERN = "SE70"
CODE = re.compile(r"^S[A-J][0-9A-Z]{2}(\.[0-9A-Z])?$")

Kind = Literal["disorder", "pattern"]


@functools.cache
def table() -> dict[str, str]:
    """Code -> English title, for every TM1 code."""
    text = importlib.resources.files("kb").joinpath("icd11_tm1.tsv").read_text(encoding="utf-8")
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            code, title = line.split("\t")
            out[code] = title
    return out


def title(code: str) -> str | None:
    return table().get(code)


def kind(code: str) -> Kind | None:
    """``disorder`` or ``pattern`` for a TM1 code; None for a string that is not one."""
    if code not in table():
        return None
    return "pattern" if code >= FIRST_PATTERN else "disorder"


def problem(code: str, want: Kind) -> str | None:
    """Why ``code`` cannot stand where a ``want`` code is needed, or None when it can."""
    found = kind(code)
    if found == want:
        return None
    if found is None:
        shape = "" if CODE.match(code) else " (TM1 codes look like SA60, SF8C or SB06.0)"
        return f"{code!r} is not an ICD-11 chapter 26 (TM1) code{shape}"
    return f"{code!r} is an ICD-11 TM1 {found} code ({title(code)}); a {'disease' if want == 'disorder' else 'syndrome'} needs a {want} code"


def coding(code: str) -> dict[str, str]:
    """A FHIR Coding for a TM1 code."""
    out = {"system": SYSTEM, "code": code}
    if (t := title(code)) is not None:
        out["display"] = t
    return out
