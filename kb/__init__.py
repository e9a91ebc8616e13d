"""The knowledge graph of herbs, processed forms, formulas, diseases, syndromes, symptoms and safety rules.

>>> import kb
>>> base = kb.default()
>>> base.resolve_herb("炙甘草").name
'甘草'
"""

from kb.base import KnowledgeBase, default, load
from kb.errors import ContentError, TCMError, UnknownEntityError, UnknownHerbError
from kb.names import Resolution

__all__ = [
    "ContentError",
    "KnowledgeBase",
    "Resolution",
    "TCMError",
    "UnknownEntityError",
    "UnknownHerbError",
    "default",
    "load",
]
