"""The indexing run: corpus → chunks → embeddings → Chroma (+ the BM25 keyword index).

Incremental: chunks are compared with the stored ones by id and content hash, so unchanged
chunks are never embedded again, changed ones are replaced and vanished ones removed. Vectors
are written batch by batch, so a run that is killed keeps its progress and the next run
finishes the job. On the embedded store a lock file keeps two runs from writing at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..corpus.parse import ParseProblem, is_indexable, load_corpus
from ..errors import CorpusError, IndexProblemError
from ..models import Chunk, Paper
from ..settings import Settings
from .chunking import chunk_papers, chunking_id
from .embedding import EMBEDDER_ID, Encoder, MiniLMEncoder
from .keyword import KeywordIndex
from .repair import half_deleted, remove_index_files
from .store import IndexStore

EMBED_BATCH = 64
INCOMPLETE = "incomplete"
CHUNK_CACHE = "chunk-cache.json"
#: How often a long run on a Chroma server renews its writer lease.
LEASE_RENEW_SECONDS = 30.0


@dataclass
class IndexReport:
    """What an indexing run did, for the CLI to print."""

    papers: int = 0
    entries: int = 0
    duplicates_merged: int = 0
    files_read: int = 0
    chunks: int = 0
    added: int = 0
    unchanged: int = 0
    removed: int = 0
    rebuilt_because: str | None = None
    problems: list[ParseProblem] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """Human-readable summary lines."""
        out = [
            f"papers: {self.papers} unique from {self.entries} entries in {self.files_read} files "
            f"({self.duplicates_merged} duplicates merged)",
            f"chunks: {self.chunks} total, {self.added} added, {self.unchanged} unchanged, {self.removed} removed",
        ]
        if self.rebuilt_because:
            out.insert(0, f"rebuilt the index: {self.rebuilt_because}")
        if self.problems:
            out.append(f"problems: {len(self.problems)} (skipped or repaired)")
            out += [f"  {p}" for p in self.problems]
        out.append("time: " + ", ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items()))
        return out


def expected_tags(settings: Settings) -> dict[str, str]:
    """The tags a compatible index must carry."""
    return {"embedder": EMBEDDER_ID, "chunking": chunking_id(settings.chunk_size, settings.chunk_overlap)}


def open_store(settings: Settings) -> IndexStore:
    """The configured store (embedded or server) expecting our embedder and chunking."""
    if not settings.chroma_url and (damage := half_deleted(Path(settings.index_dir))):
        raise IndexProblemError(f"the index in {settings.index_dir} is damaged ({damage}). "
                                "Rebuild it with `assistant index --rebuild`.")
    return IndexStore(settings.index_dir, settings.chroma_url, settings.collection, expected_tags(settings))


def keyword_dir(settings: Settings) -> Path:
    """Where the BM25 index is saved (locally, also in server mode)."""
    suffix = "" if not settings.chroma_url else "-" + hashlib.sha1(settings.chroma_url.encode()).hexdigest()[:8]
    return Path(settings.index_dir) / f"keyword-{settings.collection}{suffix}"


@contextmanager
def index_lock(settings: Settings) -> Iterator[Callable[[], None]]:
    """Hold the writer lock of the index, or fail at once with a clear message.

    Embedded store: a file lock in the index folder. Chroma server: a lease on the server (see
    `IndexStore.acquire_lease`), shared by every process and machine using it. Yields a function
    the writer calls now and then to keep the lease alive.
    """
    if settings.chroma_url:
        store = open_store(settings)
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
    with _open_lock_file(settings) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IndexProblemError(
                f"another `assistant index` run is writing to {settings.index_dir}; wait for it to finish"
            ) from None
        try:
            yield lambda: None
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _open_lock_file(settings: Settings) -> Any:
    folder = Path(settings.index_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return open(folder / ".index.lock", "w")  # closed by the caller's `with`
    except OSError as exc:
        raise IndexProblemError(f"cannot use {folder} as the index folder ({exc.strerror or exc}); "
                                "point ASSISTANT_INDEX_DIR (or --index-dir) at a writable folder") from None


def _every(seconds: float, action: Callable[[], None]) -> Callable[[], None]:
    """`action`, throttled to run at most once per `seconds`."""
    last = time.monotonic()

    def maybe() -> None:
        nonlocal last
        if time.monotonic() - last >= seconds:
            action()
            last = time.monotonic()
    return maybe


def writer_active(settings: Settings, store: IndexStore) -> bool:
    """Whether another process holds the writer lock of this index right now."""
    if settings.chroma_url:
        return store.lease_holder() is not None
    with _open_lock_file(settings) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def usable_while_written(settings: Settings, store: IndexStore) -> bool:
    """True when another process is updating the index and it already holds usable chunks
    (answer from them meanwhile, instead of starting a second run); raises IndexProblemError
    when it is being built and holds none yet; False when nobody is writing.
    """
    if not writer_active(settings, store):
        return False
    if store.exists() and store.count() > 0 and store.mismatch() is None:
        return True
    raise IndexProblemError(f"another `assistant index` run is writing to {store.location} and nothing is "
                            "stored yet; try again when it has finished")


def _flat_metadata(paper: Paper) -> dict[str, Any]:
    """Paper metadata as Chroma-storable scalars (lists joined), plus provenance.

    `raw_abstract` (the abstract before LaTeX clean-up) stays in the `Paper` only: copied into
    every chunk it would store the whole abstract once more per chunk. `raw_title` is kept.
    """
    out: dict[str, Any] = {}
    for key, value in paper.metadata.items():
        if key in ("paper_id", "title", "position", "content_hash", "raw_abstract"):
            continue
        out[key] = " ".join(map(str, value)) if isinstance(value, list) else value
    out["pages"] = "; ".join(paper.provenance)
    return out


def _fingerprint(chunks: Sequence[Chunk]) -> str:
    digest = hashlib.sha1()
    for c in sorted(chunks, key=lambda c: c.chunk_id):
        digest.update(f"{c.chunk_id}:{c.content_hash}\n".encode())
    return digest.hexdigest()[:16]


def _remembered_sources(store: IndexStore) -> list[str]:
    raw = (store.collection.metadata or {}).get("sources", "[]")
    try:
        return [str(p) for p in json.loads(raw)]
    except (TypeError, ValueError):
        return []


def build_index(settings: Settings, paths: Sequence[str | Path] = (), *, rebuild: bool = False,
                progress: bool = True, encoder: Encoder | None = None) -> IndexReport:
    """Bring the index up to date with the bundled corpus, remembered sources and `paths`."""
    report = IndexReport()
    with index_lock(settings) as renew:
        started = time.perf_counter()
        if rebuild:
            store, sources = _emptied_store(settings, progress)
            reason: str | None = "--rebuild was given"
        else:
            store = open_store(settings)
            reason = store.mismatch() if store.exists() else None
            if not reason:
                store.check()  # a damaged index is not patched up: it needs --rebuild
            sources = _remembered_sources(store)
        remembered = list(sources)
        new_paths = [str(Path(p).resolve()) for p in paths]
        sources += [p for p in new_paths + [str(p) for p in settings.extra_paths] if p not in sources]
        corpus = load_corpus(sources, include_bundled=settings.include_bundled)
        report.papers, report.entries = len(corpus.papers), corpus.entries
        report.duplicates_merged, report.files_read = corpus.duplicates_merged, corpus.files_read
        report.problems = corpus.problems
        report.problems += [ParseProblem(p, "", "added by an earlier run but gone now: forgotten, its papers "
                                         "leave the index") for p in remembered if not is_indexable(p)]
        sources = [p for p in sources if is_indexable(p)]
        if not corpus.papers:
            why = (f"{len(corpus.problems)} input problem(s), the first: {corpus.problems[0]}" if corpus.problems
                   else "ASSISTANT_INCLUDE_BUNDLED is off and no files were given (assistant index PATH)")
            raise CorpusError(f"no papers to index; the index is {'empty' if rebuild else 'unchanged'}: {why}")
        if reason:
            if progress:
                print(f"Rebuilding the index at {store.location}: {reason}.", file=sys.stderr)
            if not rebuild:
                store.reset()
            report.rebuilt_because = reason
        chunks = chunk_papers(corpus.papers, settings.chunk_size, settings.chunk_overlap,
                              Path(settings.index_dir) / CHUNK_CACHE)
        report.chunks = len(chunks)
        report.seconds["parse+chunk"] = time.perf_counter() - started

        stored = store.stored_hashes()
        todo = [c for c in chunks if stored.get(c.chunk_id) != c.content_hash]
        current = {c.chunk_id for c in chunks}
        stale = [cid for cid in stored if cid not in current]
        report.added, report.unchanged, report.removed = len(todo), len(chunks) - len(todo), len(stale)
        fingerprint = _fingerprint(chunks)
        if todo or stale or store.fingerprint() != fingerprint:
            store.set_fingerprint(INCOMPLETE)
            _save_sources(store, sources)  # first, so that a run after a crash knows what to finish
            t = time.perf_counter()
            _embed_and_store(store, todo, {p.paper_id: _flat_metadata(p) for p in corpus.papers},
                             encoder or MiniLMEncoder(), progress, renew)
            report.seconds["embed+store"] = time.perf_counter() - t
            store.delete(stale)
            store.set_fingerprint(fingerprint)
        kw = keyword_dir(settings)
        if KeywordIndex.load(kw, fingerprint) is None:
            t = time.perf_counter()
            KeywordIndex(store.all_chunks(), fingerprint).save(kw)
            report.seconds["keyword"] = time.perf_counter() - t
        report.seconds["total"] = time.perf_counter() - started
    return report


def _emptied_store(settings: Settings, progress: bool) -> tuple[IndexStore, list[str]]:
    """For --rebuild: the store with its collection dropped, and the sources it remembered.
    An embedded index too damaged to open or drop has its files removed and starts afresh."""
    sources: list[str] = []
    try:
        store = open_store(settings)
        sources = _remembered_sources(store) if store.exists() else []
        store.reset()
        return store, sources
    except IndexProblemError as exc:
        if settings.chroma_url:
            raise
        removed = remove_index_files(Path(settings.index_dir))
        if progress:
            lost = "" if sources else "; give the files you had added with `assistant index PATH` again"
            print(f"Could not open the index ({exc})\nRemoved {', '.join(removed) or 'nothing'} from "
                  f"{settings.index_dir} and starting afresh{lost}.", file=sys.stderr)
        return open_store(settings), sources


def _save_sources(store: IndexStore, sources: list[str]) -> None:
    meta = {k: v for k, v in (store.collection.metadata or {}).items() if not k.startswith("hnsw:")}
    store.collection.modify(metadata={**meta, "sources": json.dumps(sources)})


def _embed_and_store(store: IndexStore, chunks: list[Chunk], paper_meta: dict[str, dict],
                     encoder: Encoder, progress: bool, renew: Callable[[], None]) -> None:
    """Embed chunks in length-sorted batches; a writer thread stores each batch while the next
    one is embedded (the model releases the GIL), so Chroma's writes cost almost no wall time.
    """
    from tqdm import tqdm

    chunks = sorted(chunks, key=lambda c: len(c.embed_text))
    bar = tqdm(total=len(chunks), desc="Embedding chunks", unit="chunk", disable=not progress or not chunks,
               file=sys.stderr)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="chroma-writer") as writer:
        pending: tuple[Future, int] | None = None
        for start in range(0, len(chunks), EMBED_BATCH):
            batch = chunks[start:start + EMBED_BATCH]
            vectors = encoder.encode([c.embed_text for c in batch])
            if pending is not None:
                _stored(pending, bar)  # one write in flight at most; a failed write stops the run
            pending = writer.submit(store.add, batch, vectors.tolist(), paper_meta), len(batch)
            renew()
        if pending is not None:
            _stored(pending, bar)
    bar.close()


def _stored(write: tuple[Future, int], bar: Any) -> None:
    """Wait for a batch's write; the progress bar counts stored chunks, not embedded ones."""
    write[0].result()
    bar.update(write[1])
