"""The indexing run: corpus → chunks → embeddings → Chroma (+ the tantivy keyword index and the
sentence vectors beside it).

Incremental: chunks are compared with the stored ones by id and content hash, so unchanged
chunks are never embedded again, changed ones are replaced and vanished ones removed. Vectors
are written batch by batch, so a run that is killed keeps its progress and the next run
finishes the job. On the embedded store a lock file keeps two runs from writing at once.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..corpus.parse import ParseProblem, is_indexable, load_corpus
from ..errors import CorpusError, IndexProblemError
from ..models import PROVENANCE_KEY, RESERVED_METADATA, Chunk, Paper
from ..text import split_sentences
from . import keyword
from .catalog import PaperCatalog
from .chunking import chunk_papers
from .embedding import Encoder, vector_key
from .repair import remove_index_files
from .sentences import SentenceWriter
from .store import INCOMPLETE, IndexStore
from .uploads import uploaded_files

if TYPE_CHECKING:  # index.py runs the build and imports this module
    from .index import PaperIndex

EMBED_BATCH = 64
CHUNK_CACHE = "chunk-cache.json"


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


def _flat_metadata(paper: Paper) -> dict[str, Any]:
    """Paper metadata as Chroma-storable scalars (lists joined), plus provenance.

    `raw_abstract` (the abstract before LaTeX clean-up) stays in the `Paper` only: copied into
    every chunk it would store the whole abstract once more per chunk. `raw_title` is kept.
    """
    out: dict[str, Any] = {}
    for key, value in paper.metadata.items():
        if key in RESERVED_METADATA or key == "raw_abstract":
            continue
        out[key] = " ".join(map(str, value)) if isinstance(value, list) else value
    out[PROVENANCE_KEY] = "; ".join(paper.provenance)
    return out


def _fingerprint(chunks: Sequence[Chunk]) -> str:
    digest = hashlib.sha1()
    for c in sorted(chunks, key=lambda c: c.chunk_id):
        digest.update(f"{c.chunk_id}:{c.content_hash}\n".encode())
    return digest.hexdigest()[:16]


def build(index: PaperIndex, paths: Sequence[str | Path] = (), *, rebuild: bool = False,
          progress: bool = True, encoder: Encoder) -> IndexReport:
    """The indexing run (see `PaperIndex.build`), under the index's writer lock."""
    settings = index.settings
    report = IndexReport()
    with index.lock() as renew:
        started = time.perf_counter()
        if rebuild:
            sources = _emptied(index, progress)
            reason: str | None = "--rebuild was given"
        else:
            reason = index.store.mismatch() if index.store.exists() else None
            if not reason:
                index.store.check()  # a damaged index is not patched up: it needs --rebuild
            sources = index.store.sources()
        store = index.store
        remembered = list(sources)
        new_paths = [str(Path(p).resolve()) for p in paths]
        sources += [p for p in new_paths + [str(p) for p in settings.extra_paths] if p not in sources]
        uploads = [str(p) for p in uploaded_files(settings.uploads_folder)]  # read anew by every run
        corpus = load_corpus(sources + uploads, include_bundled=settings.include_bundled)
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
        paper_meta = {p.paper_id: _flat_metadata(p) for p in corpus.papers}
        previous = store.fingerprint()
        changed = bool(todo or stale) or previous != fingerprint
        sentences = index.sentences.writer(fresh=rebuild or bool(reason))
        try:
            # Not complete (new, an index made before sentence vectors, or a run cut short): every
            # chunk's missing sentences are computed below; otherwise only the new chunks' ones.
            spans = _sentence_spans(chunks if not sentences.complete else todo, sentences, encoder)
            if changed:
                store.set_fingerprint(INCOMPLETE)
                store.set_sources(sources)  # first, so that a run after a crash knows what to finish
                sentences.set_complete(False)
            if todo or spans:
                t = time.perf_counter()
                _embed_and_store(store, sentences, todo, spans, chunks, paper_meta, encoder, progress, renew)
                report.seconds["embed+store"] = time.perf_counter() - t
            store.delete(stale)
            if stale or any(c.chunk_id in stored for c in todo):  # sentences of replaced chunks go
                sentences.keep_only(_sentence_keys(chunks, encoder))
            sentences.set_complete(True)
        finally:
            sentences.close()
        t = time.perf_counter()
        # Before the new fingerprint is published: until then readers take these as they are.
        if keyword.write(index.keyword_dir, fingerprint, previous=previous, added=todo, removed=stale,
                         all_chunks=store.all_chunks):
            report.seconds["keyword"] = time.perf_counter() - t
        if PaperCatalog.load(index.catalog_path, fingerprint) is None:
            PaperCatalog.from_metadata(((c.chunk_id, {"paper_id": c.paper_id, **paper_meta[c.paper_id]})
                                        for c in chunks), fingerprint).save(index.catalog_path)
        if changed:
            store.set_fingerprint(fingerprint)
        report.seconds["total"] = time.perf_counter() - started
    return report


def _emptied(index: PaperIndex, progress: bool) -> list[str]:
    """For --rebuild: drop the collection and return the sources it remembered. An embedded index
    too damaged to open or drop has its files removed and starts afresh."""
    sources: list[str] = []
    try:
        store = index.store
        sources = store.sources() if store.exists() else []
        store.reset()
        return sources
    except IndexProblemError as exc:
        folder = index.settings.index_dir
        if index.settings.chroma_url:
            raise
        removed = remove_index_files(Path(folder))
        if progress:
            lost = "" if sources else "; give the files you had added with `assistant index PATH` again"
            print(f"Could not open the index ({exc})\nRemoved {', '.join(removed) or 'nothing'} from "
                  f"{folder} and starting afresh{lost}.", file=sys.stderr)
        index.reopen()
        return sources


def _embed_and_store(store: IndexStore, sentences: SentenceWriter, todo: list[Chunk],
                     spans: dict[str, list[SentenceSpan]], chunks: Sequence[Chunk], paper_meta: dict[str, dict],
                     encoder: Encoder, progress: bool, renew: Callable[[], None]) -> None:
    """Embed the `todo` chunks and, from the same model pass, the sentences `spans` places in them
    or in other chunks (late chunking: a sentence's vector is the mean of its token states inside
    the chunk). Length-sorted batches; a writer thread stores each batch while the next one is
    embedded (the model releases the GIL), so the writes cost almost no wall time.
    """
    from tqdm import tqdm

    wanted = {c.chunk_id for c in todo}
    passes = sorted((c for c in chunks if c.chunk_id in wanted or c.chunk_id in spans), key=lambda c: len(c.embed_text))
    bar = tqdm(total=len(passes), desc="Embedding chunks", unit="chunk", disable=not progress or not passes,
               file=sys.stderr)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="chroma-writer") as writer:
        pending: tuple[Future, int] | None = None
        for start in range(0, len(passes), EMBED_BATCH):
            batch = passes[start:start + EMBED_BATCH]
            placed = [spans.get(c.chunk_id, []) for c in batch]
            vectors, span_vectors = encoder.encode_spans([c.embed_text for c in batch],
                                                         [[(s.start, s.end) for s in p] for p in placed])
            keys, found, cut = [], [], []
            for chunk_spans, chunk_vectors in zip(placed, span_vectors):
                for span, vector in zip(chunk_spans, chunk_vectors):
                    if vector is None:
                        cut.append(span)
                    else:
                        keys.append(span.key)
                        found.append(vector)
            if cut:  # cut off by truncation inside the chunk: embedded on their own
                keys += [s.key for s in cut]
                found += list(encoder.encode_ids([s.token_ids for s in cut]))
            embedded = [(c, v) for c, v in zip(batch, vectors.tolist()) if c.chunk_id in wanted]
            if pending is not None:
                _stored(pending, bar)  # one write in flight at most; a failed write stops the run
            pending = writer.submit(_write, store, sentences, embedded, keys, found, paper_meta), len(batch)
            renew()
        if pending is not None:
            _stored(pending, bar)
    bar.close()


def _write(store: IndexStore, sentences: SentenceWriter, embedded: list[tuple[Chunk, list[float]]],
           keys: list[str], vectors: list[np.ndarray], paper_meta: dict[str, dict]) -> None:
    """Store a batch: chunk vectors first, then the sentence vectors computed with them."""
    if embedded:
        store.add([c for c, _ in embedded], [v for _, v in embedded], paper_meta)
    if keys:
        sentences.add(keys, np.stack(vectors))


def chunk_sentences(chunks: Sequence[Chunk]) -> list[str]:
    """The distinct sentences of the chunks, as the answerer splits their passages: the texts
    whose vectors an indexing run stores besides the chunks'."""
    return list(dict.fromkeys(s for c in chunks for s in split_sentences(c.text)))


def _sentence_keys(chunks: Sequence[Chunk], encoder: Encoder) -> set[str]:
    return {vector_key(ids) for ids in encoder.tokenize(chunk_sentences(chunks))}


@dataclass(frozen=True)
class SentenceSpan:
    """Where a sentence whose vector is to be stored lies in its chunk's embedded text."""

    key: str
    start: int
    end: int
    token_ids: list[int]  # of the sentence alone, for when truncation cut it from the chunk


def _sentence_spans(chunks: Sequence[Chunk], sentences: SentenceWriter,
                    encoder: Encoder) -> dict[str, list[SentenceSpan]]:
    """By chunk id, the spans of the chunks' sentences not stored yet; a sentence that several chunks
    hold is taken from the first of them (in corpus order)."""
    texts = chunk_sentences(chunks)
    token_ids = dict(zip(texts, encoder.tokenize(texts)))
    keys = {text: vector_key(ids) for text, ids in token_ids.items()}
    missing = sentences.missing(keys.values())
    out: dict[str, list[SentenceSpan]] = {}
    for chunk in chunks:
        offset, cursor = len(chunk.embed_text) - len(chunk.text), 0
        for text in split_sentences(chunk.text):
            at = chunk.text.index(text, cursor)
            cursor = at + len(text)
            if keys[text] in missing:
                missing.discard(keys[text])
                out.setdefault(chunk.chunk_id, []).append(
                    SentenceSpan(keys[text], offset + at, offset + cursor, token_ids[text]))
    return out


def _stored(write: tuple[Future, int], bar: Any) -> None:
    """Wait for a batch's write; the progress bar counts stored chunks, not embedded ones."""
    write[0].result()
    bar.update(write[1])
