"""What one server process holds: settings, the knowledge base, the audit writer, the client registries."""

from __future__ import annotations

import logging
import threading
from importlib import metadata as importlib_metadata
from typing import Any

import kb as kbmod
from api.audit import Writer, create_schema, make_engine
from api.auth import CDSClients, JWKSCache, TokenStore
from api.ratelimit import RateLimiter
from api.settings import Settings

logger = logging.getLogger(__name__)


def engine_version() -> str:
    try:
        return importlib_metadata.version("tcm-cds")
    except importlib_metadata.PackageNotFoundError:
        return "0+unknown"


def _cached_graph(base: kbmod.KnowledgeBase) -> Any:
    import os
    import pickle

    from kb.base import cache_dir
    from kb.rdf import to_graph

    path = cache_dir() / f"kb-{base.version.content_hash}.rdf-graph.pickle"
    try:
        with path.open("rb") as fh:
            return pickle.load(fh)
    except Exception:  # absent, stale or partial: rebuild
        pass
    g = to_graph(base)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with tmp.open("wb") as fh:
            pickle.dump(g, fh, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(path)
    except OSError as exc:
        logger.info("RDF graph cache not written: %s", type(exc).__name__)
    return g


class Services:
    def __init__(self, settings: Settings, knowledge: kbmod.KnowledgeBase | None = None, jwks_transport: Any = None):
        self.settings = settings
        self.engine = make_engine(settings.database_url)
        create_schema(self.engine)
        self.writer = Writer(self.engine)
        self.tokens = TokenStore(settings.api_tokens_file)
        self.cds_clients = CDSClients(settings.cds_clients_file)
        self.jwks = JWKSCache(transport=jwks_transport)
        self.limiter = RateLimiter(settings.rate_limit_per_min, settings.burst)
        self.version = engine_version()
        self._kb = knowledge
        self._kb_error: BaseException | None = None
        self._kb_lock = threading.Lock()
        self._graph: Any = None
        self._graph_lock = threading.Lock()
        self.sparql_slots = threading.BoundedSemaphore(settings.sparql_concurrency)

    # the knowledge base is loaded once per process (a restart picks up new content)
    @property
    def kb(self) -> kbmod.KnowledgeBase:
        if self._kb is None:
            with self._kb_lock:
                if self._kb is None:
                    try:
                        self._kb = kbmod.load()
                    except Exception as exc:
                        self._kb_error = exc
                        raise
                    self._kb_error = None
        return self._kb

    @property
    def kb_loaded(self) -> bool:
        return self._kb is not None

    def graph(self, wait: float | None = None) -> Any:
        """The RDF graph of the knowledge base (cached on disk by content hash: building it takes seconds).

        ``wait``: give up after that many seconds when another thread is building it (None: no limit)."""
        if self._graph is not None:
            return self._graph
        if not self._graph_lock.acquire(timeout=-1 if wait is None else wait):
            return None
        try:
            if self._graph is None:
                self._graph = _cached_graph(self.kb)
            return self._graph
        finally:
            self._graph_lock.release()

    def warm_graph(self) -> None:
        """Build the RDF graph in the background, so the first SPARQL query does not wait for it."""

        def work() -> None:
            try:
                self.graph()
            except Exception as exc:
                logger.error("RDF graph not built: %s", type(exc).__name__)

        threading.Thread(target=work, name="tcm-rdf-warmup", daemon=True).start()

    def versions(self) -> dict[str, Any]:
        base = self.kb
        return {
            "engine": self.version,
            "kb_version": str(base.version),
            "ruleset_version": base.ruleset_version,
        }

    def close(self) -> None:
        self.writer.close()
        self.engine.dispose()
