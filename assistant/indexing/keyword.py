"""Keyword search: BM25 over the stored chunks, in an on-disk tantivy index beside the vectors.

The indexing run writes it (adding and deleting the chunks it embedded or removed) and records
in `manifest.json` the store fingerprint it matches. Answering processes open it read-only in
milliseconds whatever its size (tantivy memory-maps its files, nothing is loaded per process) and
reload it when the manifest changes, so they see a re-index without rebuilding anything. Terms
come from `text.terms` (words, stop words, Snowball stems), handed to tantivy pre-tokenised, so
keyword search, answering and citation checks agree on what a term is.

`KeywordSearch` is what the rest of the package asks of a keyword engine; a server engine
(OpenSearch/Elasticsearch BM25, a sparse-vector store) would implement it (docs/performance.md).
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from ..models import Chunk, ScoredChunk
from ..text import ANALYZER_ID, terms

MANIFEST = "manifest.json"
#: Changes with the schema below (or the engine), so an index written otherwise is rewritten.
ENGINE_ID = f"tantivy/v1/{ANALYZER_ID}"
#: BM25 as Lucene 8+ (and bm25s before tantivy) computes it: the fusion weights were chosen with it.
#: tantivy's own scoring fixes k1 at 1.2, so it picks CANDIDATES × k chunks and these score them.
BM25_K1 = 1.5
BM25_B = 0.75
CANDIDATES = 2
_WRITER_HEAP = 64_000_000


class KeywordSearch(Protocol):
    """A BM25 ranking of the stored chunks, in step with the store's fingerprint."""

    fingerprint: str

    def search(self, query: str, k: int, paper_ids: Sequence[str] = ()) -> list[ScoredChunk]:
        """The k best chunks for the query's terms, best first (chunks with no term left out); of
        the given papers only when `paper_ids` is not empty (a terms filter in a server engine)."""
        ...

    def idf(self, term: str) -> float:
        """Inverse document frequency of a stemmed term over the chunks (highest for unknown terms)."""
        ...

    def knows(self, term: str) -> bool:
        """Whether a stemmed term occurs anywhere in the chunks."""
        ...

    def titles(self) -> list[str]:
        """Every indexed paper's title, sorted."""
        ...

    def paper_count(self) -> int:
        """How many papers the chunks come from."""
        ...


def _schema() -> Any:
    import tantivy

    builder = tantivy.SchemaBuilder()
    builder.add_text_field("chunk_id", stored=True, tokenizer_name="raw", index_option="basic")
    builder.add_text_field("paper_id", stored=True, tokenizer_name="raw", index_option="basic")
    builder.add_text_field("title", stored=True, tokenizer_name="raw", index_option="basic")
    builder.add_bytes_field("text", stored=True, indexed=False)  # shown, never searched: not in the dictionary
    builder.add_text_field("terms", stored=True, tokenizer_name="whitespace", index_option="freq")
    builder.add_unsigned_field("length", fast=True)  # terms in the chunk, for the average length
    return builder.build()


def _document(chunk: Chunk | ScoredChunk) -> Any:
    import tantivy

    doc = tantivy.Document()
    doc.add_text("chunk_id", chunk.chunk_id)
    doc.add_text("paper_id", chunk.paper_id)
    doc.add_text("title", chunk.title)
    doc.add_bytes("text", chunk.text.encode())
    chunk_terms = terms(f"{chunk.title}\n{chunk.text}")
    doc.add_text("terms", " ".join(chunk_terms))
    doc.add_unsigned("length", len(chunk_terms))
    return doc


def _chunk(doc: Any, score: float = 0.0) -> ScoredChunk:
    return ScoredChunk(doc["chunk_id"][0], doc["paper_id"][0], doc["title"][0], bytes(doc["text"][0]).decode(), score)


class KeywordIndex:
    """The tantivy index in `folder` (or in memory when `folder` is None: an empty stand-in while
    a first indexing run has written nothing yet). Thread-safe for searching."""

    def __init__(self, folder: Path | None, fingerprint: str = "") -> None:
        import tantivy

        self.folder = folder
        self.fingerprint = fingerprint
        self.schema = _schema()
        self._index = tantivy.Index(self.schema, path=str(folder) if folder else None)
        self._index.config_reader("Manual")
        self._open_searcher()

    def _open_searcher(self) -> None:
        import tantivy

        self._searcher = searcher = self._index.searcher()
        total = searcher.aggregate(tantivy.Query.all_query(), {"terms": {"sum": {"field": "length"}}})
        self._average_length = (total["terms"]["value"] or 0.0) / max(searcher.num_docs, 1)

    @classmethod
    def open(cls, folder: Path) -> KeywordIndex | None:
        """The index saved in `folder`, or None when there is none written by this engine."""
        manifest = _read_manifest(folder)
        if manifest.get("engine") != ENGINE_ID:
            return None
        try:
            return cls(folder, str(manifest.get("fingerprint", "")))
        except (OSError, ValueError):
            return None

    def refresh(self) -> None:
        """Reopen the latest commit when the writer has recorded another fingerprint since."""
        if self.folder is None:
            return
        fingerprint = str(_read_manifest(self.folder).get("fingerprint", ""))
        if fingerprint != self.fingerprint:
            self._index.reload()
            self._open_searcher()
            self.fingerprint = fingerprint

    # -- reading ---------------------------------------------------------------------------------
    def search(self, query: str, k: int, paper_ids: Sequence[str] = ()) -> list[ScoredChunk]:
        """The k best chunks for the query's terms, scored by BM25, best first; of the given papers
        only when `paper_ids` is not empty."""
        import tantivy

        query_terms = terms(query)
        if not query_terms or k <= 0:
            return []
        # One clause per term occurrence: a repeated term counts twice, as it always has.
        parsed = tantivy.Query.boolean_query([(tantivy.Occur.Should, tantivy.Query.term_query(self.schema, "terms", t))
                                              for t in query_terms])
        if paper_ids:
            parsed = tantivy.Query.boolean_query([
                (tantivy.Occur.Must, parsed),
                (tantivy.Occur.Must, tantivy.Query.term_set_query(self.schema, "paper_id", list(paper_ids)))])
        searcher = self._searcher
        idf = {t: self.idf(t) for t in query_terms}
        hits = []
        for _, address in searcher.search(parsed, CANDIDATES * k, count=False).hits:
            doc = searcher.doc(address)
            counts = Counter(doc["terms"][0].split())
            norm = BM25_K1 * (1 - BM25_B + BM25_B * sum(counts.values()) / self._average_length)
            hits.append(_chunk(doc, sum(idf[t] * counts[t] / (counts[t] + norm) for t in query_terms)))
        return sorted(hits, key=lambda c: -c.score)[:k]

    def idf(self, term: str) -> float:
        """Inverse document frequency of a stemmed term over chunks (highest for unknown terms)."""
        searcher = self._searcher
        n, df = searcher.num_docs, searcher.doc_freq("terms", term)
        return math.log(1 + (n - df + 0.5) / (df + 0.5))

    def knows(self, term: str) -> bool:
        """Whether a stemmed term occurs anywhere in the indexed chunks."""
        return self._searcher.doc_freq("terms", term) > 0

    def titles(self) -> list[str]:
        """Every indexed paper's title, sorted (a walk of the title dictionary, no documents read)."""
        return sorted(t for t, _ in self._searcher.terms_with_prefix("title", ""))

    def paper_count(self) -> int:
        """How many papers the chunks come from."""
        return len(self._searcher.terms_with_prefix("paper_id", ""))

    def chunks(self) -> Iterator[ScoredChunk]:
        """Every indexed chunk (reads every stored document: for checks, not for answering)."""
        import tantivy

        searcher = self._searcher
        for _, address in searcher.search(tantivy.Query.all_query(), max(searcher.num_docs, 1), count=False).hits:
            yield _chunk(searcher.doc(address))


# -- writing (the indexing run, or a process whose folder the indexing run does not write) ---------
def write(folder: Path, fingerprint: str, *, previous: str | None, added: Sequence[Chunk | ScoredChunk],
          removed: Sequence[str], all_chunks: Callable[[], Iterable[ScoredChunk]]) -> bool:
    """Bring the index in `folder` to `fingerprint`: when it holds `previous`, apply the chunks
    added (or changed) and removed since; otherwise (missing, older, another engine's) rewrite it
    from `all_chunks()`. The manifest is written last, so a run killed part-way is redone. Returns
    False when the index was at `fingerprint` already."""
    with _writer_lock(folder, wait=True):
        if _holds(folder, fingerprint):
            return False
        _write(folder, fingerprint, previous=previous, added=added, removed=removed, all_chunks=all_chunks)
        return True


def catch_up(folder: Path, fingerprint: str, all_chunks: Callable[[], Iterable[ScoredChunk]]) -> bool:
    """Rewrite the index from `all_chunks()` unless another process is writing it right now (then
    False: the caller keeps what it has and asks again later)."""
    try:
        with _writer_lock(folder, wait=False):
            if not _holds(folder, fingerprint):
                _write(folder, fingerprint, previous=None, added=(), removed=(), all_chunks=all_chunks)
            return True
    except BlockingIOError:
        return False


def _write(folder: Path, fingerprint: str, *, previous: str | None, added: Sequence[Chunk | ScoredChunk],
           removed: Sequence[str], all_chunks: Callable[[], Iterable[ScoredChunk]]) -> None:
    import tantivy

    manifest = _read_manifest(folder)
    incremental = previous is not None and manifest.get("engine") == ENGINE_ID \
        and manifest.get("fingerprint") == previous
    if manifest.get("engine") != ENGINE_ID:  # nothing, or an older format: start afresh
        shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    index = tantivy.Index(_schema(), path=str(folder))
    writer = index.writer(_WRITER_HEAP, 1)
    if incremental:
        for chunk_id in [*removed, *(c.chunk_id for c in added)]:
            writer.delete_documents_by_term("chunk_id", chunk_id)
        chunks: Iterable[Chunk | ScoredChunk] = added
    else:
        writer.delete_all_documents()
        chunks = all_chunks()
    for chunk in chunks:
        writer.add_document(_document(chunk))
    writer.commit()  # one commit: readers see the old contents or the new ones, never a part
    writer.wait_merging_threads()
    tmp = folder / f"{MANIFEST}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps({"engine": ENGINE_ID, "fingerprint": fingerprint}))
    tmp.replace(folder / MANIFEST)


def _holds(folder: Path, fingerprint: str) -> bool:
    manifest = _read_manifest(folder)
    return (manifest.get("engine"), manifest.get("fingerprint")) == (ENGINE_ID, fingerprint)


def _read_manifest(folder: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


@contextmanager
def _writer_lock(folder: Path, wait: bool) -> Iterator[None]:
    """One writer per keyword folder across processes (a lock file beside it: tantivy's own lock
    fails at once instead of waiting, and the folder itself may be replaced)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.with_name(f".{folder.name}.lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
