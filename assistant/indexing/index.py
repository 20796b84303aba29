"""The index as one object: the Chroma store (opened once), the keyword index beside it, the writer
lock, readiness, chunk metadata and titles.

A `PaperIndex` is made from the settings once and passed down (to the build run, to search, to the
pipeline), so nothing along the way re-reads settings or opens a second store. Building is
explicit: `build()` (the `assistant index` command) or `ensure()` (build only if needed, as `ask`,
the chat and the evals do on first use); asking a question never builds.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

from ..errors import IndexProblemError
from ..models import RESERVED_METADATA
from ..settings import Settings
from .build import IndexReport, build
from .catalog import PaperCatalog
from .chunking import chunking_id
from .embedding import EMBEDDER_ID, Encoder, MiniLMEncoder
from .keyword import KeywordIndex, KeywordSearch, catch_up
from .repair import half_deleted
from .sentences import SentenceVectors
from .store import INCOMPLETE, IndexStore

#: How long a readiness check or a loaded keyword index is trusted before the store is asked again.
KEYWORD_CHECK_SECONDS = 5.0
#: How often a long run on a Chroma server renews its writer lease.
LEASE_RENEW_SECONDS = 30.0
#: The settings an index depends on: other values need another PaperIndex.
INDEX_FIELDS = ("index_dir", "chroma_url", "collection", "chunk_size", "chunk_overlap", "extra_paths",
                "include_bundled", "uploads_dir")


class DerivedIndex(Protocol):
    """What is derived from the stored chunks and saved beside them (BM25 index, paper catalog)."""

    @property
    def fingerprint(self) -> str: ...

    def save(self, path: Path) -> None: ...


D = TypeVar("D", bound=DerivedIndex)


def expected_tags(settings: Settings) -> dict[str, str]:
    """The tags a compatible index must carry."""
    return {"embedder": EMBEDDER_ID, "chunking": chunking_id(settings.chunk_size, settings.chunk_overlap)}


class PaperIndex:
    """One index (embedded folder or Chroma server collection) and everything kept beside it.
    Thread-safe; `encoder` embeds chunks when building (the MiniLM model unless given)."""

    def __init__(self, settings: Settings, encoder: Encoder | None = None) -> None:
        self.settings = settings
        self._encoder = encoder
        self._lock = threading.RLock()
        self._store: IndexStore | None = None
        self._keyword: KeywordIndex | None = None
        self._catalog: PaperCatalog | None = None
        self._checked: dict[str, float] = {}  # when keyword() and catalog() last asked the store
        self._ready_checked = -KEYWORD_CHECK_SECONDS
        self.sentences = SentenceVectors(Path(f"{self._beside('sentences')}.sqlite3"), expected_tags(settings))

    def serves(self, settings: Settings) -> bool:
        """Whether `settings` describe this same index (so an Assistant with them can share it)."""
        return all(getattr(settings, name) == getattr(self.settings, name) for name in INDEX_FIELDS)

    # -- the store -------------------------------------------------------------------------------
    @property
    def store(self) -> IndexStore:
        """The Chroma store, opened on first use (a half-deleted folder is an IndexProblemError)."""
        with self._lock:
            if self._store is None:
                folder = Path(self.settings.index_dir)
                if not self.settings.chroma_url and (damage := half_deleted(folder)):
                    raise IndexProblemError(f"the index in {folder} is damaged ({damage}). "
                                            "Rebuild it with `assistant index --rebuild`.")
                self._store = IndexStore(folder, self.settings.chroma_url, self.settings.collection,
                                         expected_tags(self.settings))
            return self._store

    def reopen(self) -> IndexStore:
        """Open the store anew (after its files were removed)."""
        with self._lock:
            self._store = None
            return self.store

    def _beside(self, kind: str) -> Path:
        """Where a part kept beside the vectors lives: in the index folder, also in server mode.
        Named after the collection only: the keyword index says which store fingerprint it
        matches and sentence vectors depend on the text alone, so a folder served by `chroma run`
        or reached under another URL is used as it is."""
        return Path(self.settings.index_dir) / f"{kind}-{self.settings.collection}"

    @property
    def keyword_dir(self) -> Path:
        """Where the keyword index lives."""
        return self._beside("keyword")

    @property
    def catalog_path(self) -> Path:
        """Where the paper catalog (for filters) is saved, beside the vectors like the keyword index."""
        return Path(f"{self._beside('catalog')}.json")

    # -- building --------------------------------------------------------------------------------
    def build(self, paths: Sequence[str | Path] = (), *, rebuild: bool = False, progress: bool = True) -> IndexReport:
        """Bring the index up to date with the bundled corpus, remembered sources and `paths`."""
        encoder = self._encoder or MiniLMEncoder(self.settings.embed_threads)
        report = build(self, paths, rebuild=rebuild, progress=progress, encoder=encoder)
        with self._lock:
            self._keyword = self._catalog = None  # the store changed: reload on next use
        return report

    def ensure(self, progress: bool = True) -> IndexReport | None:
        """Build or finish the index if it is missing, incomplete or built with other settings;
        None when it was usable already."""
        with self._lock:
            if self._usable():
                return None
            if progress:
                print("Building the index (first use)...", file=sys.stderr)
            return self.build(progress=progress)

    def require(self) -> None:
        """Raise IndexProblemError, saying how to build it, unless there is an index to answer from."""
        with self._lock:
            if not self._usable():
                raise IndexProblemError(f"there is no usable index at {self.store.location} ({self.problem()}); "
                                        "build it with `assistant index`")

    def _usable(self) -> bool:
        # Checked at most every few seconds: counting a large collection costs ~20 ms at 100k papers.
        if time.monotonic() - self._ready_checked < KEYWORD_CHECK_SECONDS:
            return True
        if self.ready() or self.usable_while_written():
            self._ready_checked = time.monotonic()
            return True
        return False

    def problem(self) -> str | None:
        """Why the index cannot answer yet (None when it can); a damaged index raises IndexProblemError."""
        store = self.store
        store.check()
        if not store.exists() or store.count() == 0:
            return "nothing is indexed yet"
        if mismatch := store.mismatch():
            return mismatch
        if store.fingerprint() in ("", INCOMPLETE):
            return "an indexing run did not finish"
        return None

    def ready(self) -> bool:
        """Whether a complete index built with our embedder and chunking exists."""
        return self.problem() is None

    # -- the writer lock -------------------------------------------------------------------------
    @contextmanager
    def lock(self) -> Iterator[Callable[[], None]]:
        """Hold the writer lock of the index, or fail at once with a clear message.

        Embedded store: a file lock in the index folder. Chroma server: a lease on the server (see
        `IndexStore.acquire_lease`), shared by every process and machine using it. Yields a function
        the writer calls now and then to keep the lease alive.
        """
        if self.settings.chroma_url:
            store = self.store
            owner = f"{socket.gethostname()}:{os.getpid()}"
            holder = store.acquire_lease(owner)
            if holder is not None:
                raise IndexProblemError(f"another `assistant index` run ({holder}) is writing to {store.location}; "
                                        "wait for it to finish")
            try:
                yield _every(LEASE_RENEW_SECONDS, lambda: store.renew_lease(owner))
            finally:
                store.release_lease()
            return
        with self._lock_file() as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise IndexProblemError(f"another `assistant index` run is writing to {self.settings.index_dir}; "
                                        "wait for it to finish") from None
            try:
                yield lambda: None
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _lock_file(self) -> IO[Any]:
        folder = Path(self.settings.index_dir)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            return open(folder / ".index.lock", "w")  # closed by the caller's `with`
        except OSError as exc:
            raise IndexProblemError(f"cannot use {folder} as the index folder ({exc.strerror or exc}); "
                                    "point ASSISTANT_INDEX_DIR (or --index-dir) at a writable folder") from None

    def writer_active(self) -> bool:
        """Whether another process holds the writer lock of this index right now."""
        if self.settings.chroma_url:
            return self.store.lease_holder() is not None
        with self._lock_file() as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False

    def usable_while_written(self) -> bool:
        """True when another process is updating the index and it already holds usable chunks
        (answer from them meanwhile, instead of starting a second run); raises IndexProblemError
        when it is being built and holds none yet; False when nobody is writing.
        """
        if not self.writer_active():
            return False
        store = self.store
        if store.exists() and store.count() > 0 and store.mismatch() is None:
            return True
        raise IndexProblemError(f"another `assistant index` run is writing to {store.location} and nothing is "
                                "stored yet; try again when it has finished")

    # -- reading ---------------------------------------------------------------------------------
    def keyword(self) -> KeywordSearch:
        """The keyword index beside the store, opened read-only and reopened when an indexing run
        has written it anew (checked every few seconds); never rebuilt while it is in step."""
        with self._lock:
            now = time.monotonic()
            if self._keyword is not None and now - self._checked.get("keyword", 0.0) < KEYWORD_CHECK_SECONDS:
                return self._keyword
            self._checked["keyword"] = now
            # Another process (or PaperIndex) may have changed the collection: read it afresh.
            fingerprint = self.store.fingerprint(fresh=True)
            if self._keyword is None or self._keyword.folder is None:
                self._keyword = KeywordIndex.open(self.keyword_dir)
            else:
                self._keyword.refresh()
            # Out of step: a folder no indexing run writes (a Chroma server used from another
            # machine) or one written by an older version. While a run writes, it is left alone.
            out_of_step = self._keyword is None or self._keyword.fingerprint != fingerprint
            if out_of_step and fingerprint != INCOMPLETE and catch_up(self.keyword_dir, fingerprint,
                                                                      self.store.all_chunks):
                self._keyword = KeywordIndex.open(self.keyword_dir)
            if self._keyword is None:  # a first run is still writing: no keyword hits until it is done
                self._keyword = KeywordIndex(None)
            return self._keyword

    def catalog(self) -> PaperCatalog:
        """Each paper's dates, upvotes and files (for filters), matching the store: the copy the
        indexing run saved, else read from the store's metadata (slow at scale: 49 s at 100k papers)."""
        with self._lock:
            self._catalog = self._in_step(
                self._catalog, "catalog", self.catalog_path, PaperCatalog.load,
                lambda fingerprint: PaperCatalog.from_metadata(self.store.all_metadata(), fingerprint))
            return self._catalog

    def _in_step(self, held: D | None, name: str, path: Path, load: Callable[[Path, str], D | None],
                 make: Callable[[str], D]) -> D:
        """`held` while the store is unchanged (asked at most every few seconds), else the copy saved
        at `path` for the store's fingerprint, else `make(fingerprint)`, saved there for others."""
        now = time.monotonic()
        if held is not None and now - self._checked.get(name, 0.0) < KEYWORD_CHECK_SECONDS:
            return held
        self._checked[name] = now
        # On a server another process may have changed the collection: read it afresh.
        fingerprint = self.store.fingerprint(fresh=self.settings.chroma_url is not None)
        if held is not None and held.fingerprint == fingerprint:
            return held
        made = load(path, fingerprint)
        if made is None:
            made = make(fingerprint)
            if fingerprint != INCOMPLETE:  # a run is writing: its own save will follow
                made.save(path)
        return made

    def chunk_metadata(self, chunk_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The paper metadata stored with each chunk (the index's own bookkeeping left out)."""
        return {cid: {k: v for k, v in meta.items() if k not in RESERVED_METADATA}
                for cid, meta in self.store.metadata(chunk_ids).items()}

    def titles(self) -> list[str]:
        """Every indexed paper's title, sorted."""
        return self.keyword().titles()


def _every(seconds: float, action: Callable[[], None]) -> Callable[[], None]:
    """`action`, throttled to run at most once per `seconds`."""
    last = time.monotonic()

    def maybe() -> None:
        nonlocal last
        if time.monotonic() - last >= seconds:
            action()
            last = time.monotonic()
    return maybe
