"""What one server process holds: settings, the knowledge base, the audit writer, the client registries."""

from __future__ import annotations

import gc
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


def _refreeze() -> None:
    """After a knowledge base is swapped: let the collector free the old one (it has reference cycles), then
    exempt the new one from collections again (see api/app.py)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


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
        self._kb_release: tuple[int, str, str] | None = None  # (id, name, hash) of the curated release served
        self._seed_dir = knowledge.data_dir if knowledge is not None else None
        self._curation: Any = None
        self._curation_lock = threading.Lock()
        self._poller: threading.Thread | None = None
        self._stop = threading.Event()
        self._graph: Any = None
        self._graph_lock = threading.Lock()
        self._models: Any = None
        self._models_lock = threading.Lock()
        self.models_error: str | None = None
        self.sparql_slots = threading.BoundedSemaphore(settings.sparql_concurrency)

    # ---- the knowledge base ------------------------------------------------------------------------------
    # Loaded once per process: the current curated release when there is one in the database, else the
    # built-in knowledge base ($TCM_KB_DIR). A release made through this process is served at once; one made
    # by another process is picked up within TCM_KB_POLL_S.
    @property
    def kb(self) -> kbmod.KnowledgeBase:
        if self._kb is None:
            with self._kb_lock:
                if self._kb is None:
                    try:
                        self._kb = self._load_kb()
                    except Exception as exc:
                        self._kb_error = exc
                        raise
                    self._kb_error = None
        return self._kb

    @property
    def kb_loaded(self) -> bool:
        return self._kb is not None

    @property
    def curation(self) -> Any:
        """The curation workflow (``kb.curation.Curation``) over this service's database."""
        if self._curation is None:
            with self._curation_lock:
                if self._curation is None:
                    from kb.curation import Curation

                    self._curation = Curation(self.engine, seed_dir=self._seed_dir)
        return self._curation

    def _load_kb(self) -> kbmod.KnowledgeBase:
        pointer = self._release_pointer()
        if pointer is None:
            return kbmod.load(self._seed_dir) if self._seed_dir is not None else kbmod.load()
        base = self.curation.knowledge_base(self.curation.release_by_name(pointer[1]))
        self._kb_release = pointer
        stale = self.curation.seed_differs()
        if stale:
            logger.warning(stale)
        return base

    def _release_pointer(self) -> tuple[int, str, str] | None:
        try:
            return self.curation.latest_pointer()  # type: ignore[no-any-return]
        except Exception as exc:  # the database is down: serve what we have, say so in the log
            logger.error("could not read the current knowledge-base release: %s", type(exc).__name__)
            return None

    def adopt(self, base: kbmod.KnowledgeBase) -> None:
        """Serve a newly released knowledge base from now on (answers report its version)."""
        pointer = self.curation.latest_pointer()
        with self._kb_lock:
            self._kb = base
            self._kb_release = pointer
            self._graph = None
        _refreeze()
        logger.info("serving knowledge base %s", base.version)

    def refresh(self) -> bool:
        """Pick up a release another process made; True when the knowledge base changed."""
        pointer = self._release_pointer()
        if pointer is None or pointer == self._kb_release:
            return False
        base = self.curation.knowledge_base(self.curation.release_by_name(pointer[1]))
        with self._kb_lock:
            self._kb = base
            self._kb_release = pointer
            self._graph = None
        _refreeze()
        logger.info("picked up knowledge-base release %s", base.version)
        if self.settings.sparql_warmup:
            self.warm_graph()
        return True

    def start_polling(self) -> None:
        if self.settings.kb_poll_s <= 0 or self._poller is not None:
            return

        def loop() -> None:
            while not self._stop.wait(self.settings.kb_poll_s):
                try:
                    self.refresh()
                except Exception as exc:  # keep serving the release we have
                    logger.error("knowledge-base release not picked up: %s", type(exc).__name__)

        self._poller = threading.Thread(target=loop, name="tcm-kb-release-poll", daemon=True)
        self._poller.start()

    @property
    def models(self) -> Any:
        """The learned models and case base under ``settings.models_dir`` (``cds.learned.Models``), loaded once.
        One that cannot be read is logged and left out (``models_error``); the knowledge base still answers."""
        if self._models is None:
            with self._models_lock:
                if self._models is None:
                    from cds import learned

                    try:
                        self._models = learned.load(self.settings.models_dir)
                    except Exception as exc:
                        self.models_error = f"{type(exc).__name__}: {exc}"
                        logger.error("models not loaded from %s: %s", self.settings.models_dir, self.models_error)
                        self._models = learned.NONE
        return self._models

    def graph(self, wait: float | None = None) -> Any:
        """The RDF graph of the knowledge base (cached on disk by content hash: building it takes seconds).

        ``wait``: give up after that many seconds when another thread is building it (None: no limit)."""
        if self._graph is not None:
            return self._graph
        if not self._graph_lock.acquire(timeout=-1 if wait is None else wait):
            return None
        try:
            if self._graph is None:
                from kb.rdf import cached_graph

                self._graph = cached_graph(self.kb)
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
        self._stop.set()
        self.writer.close()
        self.engine.dispose()
