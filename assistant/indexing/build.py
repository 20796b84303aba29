"""The indexing run: corpus → chunks → embeddings → Chroma (+ the tantivy keyword index and the
sentence vectors beside it; the sentences of new abstracts are embedded while the abstracts are split).

Incremental: chunks are compared with the stored ones by id and content hash, so unchanged
chunks are never embedded again, changed ones are replaced and vanished ones removed. Vectors
are written batch by batch, so a run that is killed keeps its progress and the next run
finishes the job. On the embedded store a lock file keeps two runs from writing at once.
"""

from __future__ import annotations

import hashlib
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
SENTENCE_BATCH = 512
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
        stored = store.stored_hashes()
        sentences = index.sentences.writer(fresh=rebuild or bool(reason))
        try:
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sentence-embedder") as early:
                # While the abstracts are split into chunks (1-3 s, most of it importing llama-index
                # and loading tiktoken's BPE), the model embeds the sentences of the abstracts no
                # chunk was stored for: nearly all of their chunks' sentences (3,196 of 3,202 in the
                # bundled corpus; the rest are pieces of sentences a chunk boundary cut).
                stored_papers = {chunk_id.rsplit("-", 1)[0] for chunk_id in stored}
                new_papers = [p for p in corpus.papers if not sentences.complete or p.paper_id not in stored_papers]
                abstract_sentences = list(dict.fromkeys(s for p in new_papers for s in split_sentences(p.abstract)))
                stop = threading.Event()
                first = early.submit(_store_sentences, sentences, abstract_sentences, encoder, progress, stop)
                try:
                    chunks = chunk_papers(corpus.papers, settings.chunk_size, settings.chunk_overlap,
                                          Path(settings.index_dir) / CHUNK_CACHE)
                    report.chunks = len(chunks)
                    report.seconds["parse+chunk"] = time.perf_counter() - started
                    t = time.perf_counter()
                    embedded_early = first.result()
                    report.seconds["sentences"] = time.perf_counter() - t
                except BaseException:
                    stop.set()  # a failed split or Ctrl-C: the model stops after its batch, not after the corpus
                    raise

            todo = [c for c in chunks if stored.get(c.chunk_id) != c.content_hash]
            current = {c.chunk_id for c in chunks}
            stale = [cid for cid in stored if cid not in current]
            report.added, report.unchanged, report.removed = len(todo), len(chunks) - len(todo), len(stale)
            fingerprint = _fingerprint(chunks)
            paper_meta = {p.paper_id: _flat_metadata(p) for p in corpus.papers}
            previous = store.fingerprint()
            changed = bool(todo or stale) or previous != fingerprint
            # Not complete (new, an index made before sentence vectors, or a run cut short): every
            # chunk's missing sentences are embedded below; otherwise only the new chunks' ones.
            needs_sentences = chunks if not sentences.complete else todo
            if changed:
                store.set_fingerprint(INCOMPLETE)
                store.set_sources(sources)  # first, so that a run after a crash knows what to finish
                sentences.set_complete(False)
                t = time.perf_counter()
                _embed_and_store(store, todo, paper_meta, encoder, progress, renew)
                report.seconds["embed+store"] = time.perf_counter() - t
                store.delete(stale)
            if needs_sentences:
                t = time.perf_counter()
                _store_sentences(sentences, chunk_sentences(needs_sentences), encoder, progress)
                report.seconds["sentences"] += time.perf_counter() - t
            if embedded_early:  # an abstract's sentence no chunk has whole (its chunks are all in needs_sentences)
                sentences.discard(embedded_early - _sentence_keys(needs_sentences, encoder))
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


def chunk_sentences(chunks: Sequence[Chunk]) -> list[str]:
    """The distinct sentences of the chunks, as the answerer splits their passages: the texts
    whose vectors an indexing run stores besides the chunks'."""
    return list(dict.fromkeys(s for c in chunks for s in split_sentences(c.text)))


def _sentence_keys(chunks: Sequence[Chunk], encoder: Encoder) -> set[str]:
    return {vector_key(ids) for ids in encoder.tokenize(chunk_sentences(chunks))}


def _store_sentences(sentences: SentenceWriter, texts: list[str], encoder: Encoder, progress: bool,
                     stop: threading.Event | None = None) -> set[str]:
    """Embed and store the texts that are not stored yet, in batches (each one its own transaction,
    so a killed run keeps what it wrote) until `stop` is set; returns the keys of those it stored."""
    from tqdm import tqdm

    added: set[str] = set()
    with tqdm(total=len(texts), desc="Embedding sentences", unit="sentence", file=sys.stderr,
              disable=not progress or not texts) as bar:
        for start in range(0, len(texts), SENTENCE_BATCH):
            if stop is not None and stop.is_set():
                break
            token_ids = {vector_key(ids): ids for ids in encoder.tokenize(texts[start:start + SENTENCE_BATCH])}
            missing = sentences.missing(token_ids)
            todo = [key for key in token_ids if key in missing]
            if todo:
                sentences.add(todo, encoder.encode_ids([token_ids[k] for k in todo]))
                added.update(todo)
            bar.update(len(texts[start:start + SENTENCE_BATCH]))
    return added


def _stored(write: tuple[Future, int], bar: Any) -> None:
    """Wait for a batch's write; the progress bar counts stored chunks, not embedded ones."""
    write[0].result()
    bar.update(write[1])
