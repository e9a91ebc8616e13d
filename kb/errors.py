"""The engine's errors, in one place.

    TCMError                                  base of everything the engine raises on purpose
    ├── ContentError(TCMError, ValueError)    a knowledge-base content file is broken (file, entry, field named)
    ├── UnknownEntityError(TCMError, KeyError)
    │   └── UnknownHerbError                  a name or id the knowledge base cannot resolve
    ├── QueryError(TCMError, ValueError)      a malformed or refused SPARQL query
    ├── RDFError(TCMError, ValueError)        an RDF file that cannot be read back into content
    ├── InputError(TCMError, ValueError)      a caller's request is malformed (names the item and field)
    ├── ArtifactError(TCMError, ValueError)   a model or index artifact is missing, corrupt or mismatched
    └── CurationError                         a curation step that cannot be taken now (kb.curation)
        ├── StaleError                        the edit's base (etag, revision) is out of date
        ├── NotPermittedError                 e.g. approving one's own change request
        ├── PreconditionRequiredError         an edit that does not name its base
        └── CurationInputError                a malformed change request

Every message says what was wrong and, where it can, what to do. ``api/`` maps these to HTTP status codes and
the CLI to exit codes in one place each.
"""

from __future__ import annotations


class TCMError(Exception):
    """Base class of the engine's deliberate errors."""


class ContentError(TCMError, ValueError):
    """A content file is invalid. ``problems`` lists every problem found, each naming file, entry and field."""

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        shown = self.problems[:50]
        more = len(self.problems) - len(shown)
        text = "\n".join(shown) + (f"\n... and {more} more" if more > 0 else "")
        super().__init__(f"invalid knowledge-base content ({len(self.problems)} problem(s)):\n{text}")


class UnknownEntityError(TCMError, KeyError):
    def __init__(self, kind: str, key: str, candidates: list[str] | None = None):
        self.kind, self.key, self.candidates = kind, key, candidates or []
        hint = f"; did you mean: {', '.join(self.candidates)}" if self.candidates else ""
        super().__init__(f"unknown {kind} {key!r}{hint}")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class UnknownHerbError(UnknownEntityError):
    def __init__(self, key: str, candidates: list[str] | None = None):
        super().__init__("herb", key, candidates)


class QueryError(TCMError, ValueError):
    """A SPARQL query that does not parse, is not read-only, or exceeds a limit."""


class RDFError(TCMError, ValueError):
    """An RDF document that cannot be turned back into knowledge-base content."""


class InputError(TCMError, ValueError):
    """A malformed request. ``where`` names the item and field, e.g. ``items[2].dose``."""

    def __init__(self, message: str, where: str | None = None):
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class ArtifactError(TCMError, ValueError):
    """A model or index artifact that is missing, corrupt, or built for something else."""


class CurationError(TCMError):
    """A curation step that cannot be taken in the state things are in (approve an invalid change request,
    release with nothing approved …). ``problems`` lists the reasons; ``details`` carries machine-readable
    context (current etag, revision)."""

    def __init__(self, message: str, problems: list[str] | None = None, **details: object):
        self.problems = list(problems or [])
        self.details = details
        super().__init__(message)


class StaleError(CurationError):
    """An edit based on a state that has changed since (an entity's etag, a change request's revision)."""


class NotPermittedError(CurationError, PermissionError):
    """The caller may not take this step (approve their own change request, edit someone else's)."""


class PreconditionRequiredError(CurationError):
    """An edit that does not say which state it was based on (no If-Match / base_etag)."""


class CurationInputError(CurationError, ValueError):
    """A change request that is malformed (unknown kind or operation, missing fields)."""
