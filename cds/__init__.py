"""Clinical logic: prescription safety review, syndrome differentiation, formula suggestion.

Depends on ``kb``; reaches learned models only through small protocols, so it imports and runs without torch,
faiss or fastapi.
"""

from cds.prescription import Patient, Prescription, parse
from cds.review import CHECKS, Finding, Review, review

__all__ = ["CHECKS", "Finding", "Patient", "Prescription", "Review", "parse", "review"]
