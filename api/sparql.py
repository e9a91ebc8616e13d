"""Read-only SPARQL over the knowledge base's RDF graph, with a time limit and a result limit.

Updates are refused (``kb.rdf.prepare``), and so are queries that would reach the network: ``SERVICE``
(federated query) and ``FROM`` / ``FROM NAMED`` (rdflib would download the named graphs). A query runs in its
own thread; past the time limit an exception is raised inside that thread (rdflib evaluates in Python, so it
stops at the next bytecode) and the caller gets ``QueryError`` (400). At most ``sparql_concurrency`` queries
run at once per process; more get 503.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any

from api.errors import Unavailable
from kb.errors import QueryError


class _Stop(Exception):
    """Raised inside a query thread that ran out of time."""


def _names(x: Any) -> set[str]:
    from rdflib.plugins.sparql.parserutils import CompValue

    out: set[str] = set()
    stack = [x]
    while stack:
        v = stack.pop()
        if isinstance(v, CompValue):
            out.add(v.name)
            stack.extend(v.values())
        elif isinstance(v, (list, tuple)):
            stack.extend(v)
    return out


def check(text: str) -> None:
    """Parse the query; refuse updates and anything that would fetch from elsewhere."""
    from kb.rdf import prepare

    q = prepare(text)
    names = _names(q.algebra)
    if "ServiceGraphPattern" in names:
        raise QueryError("SPARQL SERVICE (federated query) is not allowed here")
    if "DatasetClause" in names or q.algebra.get("datasetClause"):
        raise QueryError("SPARQL FROM / FROM NAMED is not allowed here; the knowledge base is the only graph")


def _interrupt(thread: threading.Thread) -> None:
    if thread.ident is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(_Stop))


def run(services: Any, text: str, limit: int, timeout: float) -> dict[str, Any]:
    """Run a read-only query; SPARQL 1.1 JSON results, ``truncated`` when the row limit cut it."""
    from kb.rdf import query

    if len(text) > 20_000:
        raise QueryError("SPARQL query text over 20000 characters")
    check(text)
    if not services.sparql_slots.acquire(timeout=0.5):
        raise Unavailable("too many SPARQL queries running; retry shortly")
    try:
        graph = services.graph(wait=timeout)
        if graph is None:
            raise Unavailable("the SPARQL graph is still being built; retry in a few seconds", {"Retry-After": "5"})
        box: dict[str, Any] = {}

        def work() -> None:
            try:
                box["result"] = query(graph, text, limit=limit + 1)
            except _Stop:
                box["stopped"] = True
            except BaseException as exc:  # handed to the caller's thread
                box["error"] = exc

        t = threading.Thread(target=work, name="tcm-sparql", daemon=True)
        t.start()
        t.join(timeout)
        if t.is_alive():
            _interrupt(t)
            t.join(2.0)
            raise QueryError(f"SPARQL query exceeded the {timeout:g} s time limit; narrow it or add LIMIT")
        if "error" in box:
            err = box["error"]
            raise (err if isinstance(err, QueryError) else QueryError(f"SPARQL query failed: {type(err).__name__}"))
        if "stopped" in box:
            raise QueryError(f"SPARQL query exceeded the {timeout:g} s time limit")
        result: dict[str, Any] = box["result"]
    finally:
        services.sparql_slots.release()
    rows = result.get("results", {}).get("bindings")
    if rows is not None:
        result["truncated"] = len(rows) > limit
        del rows[limit:]
    elif "triples" in result:
        result["truncated"] = bool(result.get("truncated")) or len(result["triples"]) > limit
        del result["triples"][limit:]
    return result
