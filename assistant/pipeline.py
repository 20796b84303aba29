"""The `Assistant`: a long-lived object that keeps the model, the index and the clients open,
and runs retrieval → answering → citation checks for each question.
"""

from __future__ import annotations

import os
import threading
import time
import unicodedata
from collections.abc import Iterator
from typing import Any

from .answering import Answerer
from .answering.citations import (
    REFUSAL,
    answer_sentences,
    build_citations,
    drop_invalid_markers,
    is_refusal,
    quoted_titles_not_in,
    refusal_has_extra,
    score_support,
)
from .answering.evidence import EvidenceAssessor
from .answering.extractive import ExtractiveAnswerer
from .errors import BackendError, IndexProblemError, InvalidQuestionError
from .indexing.build import INCOMPLETE, IndexReport, build_index, keyword_dir, open_store, usable_while_written
from .indexing.embedding import CachedEncoder, MiniLMEncoder
from .indexing.keyword import KeywordIndex
from .indexing.store import IndexStore
from .models import Answer, Source
from .search.fusion import Retriever
from .settings import BACKENDS, MAX_TOP_K, RETRIEVAL_MODES, Settings

KEYWORD_CHECK_SECONDS = 5.0
_CHUNK_META_SKIP = {"paper_id", "title", "position", "content_hash", "_node_content", "_node_type",
                    "document_id", "doc_id", "ref_doc_id"}


def clean_question(question: Any, max_chars: int) -> str:
    """The question with control characters removed; raises InvalidQuestionError if unusable."""
    if not isinstance(question, str):
        raise InvalidQuestionError("the question must be text")
    if len(question) > 4 * max_chars:  # refuse huge input before looking at every character
        raise InvalidQuestionError(f"the question is {len(question)} characters long; the limit is {max_chars}")
    cleaned = "".join(ch if ch in "\n\t" or unicodedata.category(ch)[0] != "C" else " " for ch in question)
    cleaned = " ".join(cleaned.split())
    if not cleaned:
        raise InvalidQuestionError("the question is empty")
    if len(cleaned) > max_chars:
        raise InvalidQuestionError(f"the question is {len(cleaned)} characters long; the limit is {max_chars}")
    if not any(ch.isalnum() for ch in cleaned):
        raise InvalidQuestionError("the question has no words in it")
    return cleaned


def check_options(backend: Any, top_k: Any, retrieval: Any) -> None:
    """Raise InvalidQuestionError for a per-question option that cannot work (None = the default)."""
    if backend is not None and backend not in BACKENDS:
        raise InvalidQuestionError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if top_k is not None and (type(top_k) is not int or not 1 <= top_k <= MAX_TOP_K):
        raise InvalidQuestionError(f"top_k must be a whole number from 1 to {MAX_TOP_K}, got {top_k!r}")
    if retrieval is not None and retrieval not in RETRIEVAL_MODES:
        raise InvalidQuestionError(f"unknown retrieval mode {retrieval!r}; choose one of {', '.join(RETRIEVAL_MODES)}")


def configured_backends(settings: Settings, env: dict[str, str] | None = None) -> list[str]:
    """Backends usable with the current configuration, extractive always first."""
    env = os.environ if env is None else env
    out = ["extractive"]
    if env.get("OPENAI_API_KEY") or settings.openai_base_url:
        out.append("openai")
    if settings.ollama_host:
        out.append("ollama")
    return out


class Assistant:
    """Answers questions over the indexed papers. Thread-safe; reuse one per process."""

    def __init__(self, settings: Settings | None = None, **overrides: Any) -> None:
        self.settings = (settings or Settings.from_env()).with_(**overrides)
        self.encoder = CachedEncoder(MiniLMEncoder())
        self._lock = threading.RLock()
        self._store: IndexStore | None = None
        self._keyword: KeywordIndex | None = None
        self._keyword_checked = 0.0
        self._ready_checked = -KEYWORD_CHECK_SECONDS
        self._answerers: dict[tuple[str, Settings], Answerer] = {}
        self.assessor = EvidenceAssessor(self.encoder.encode, lambda term: self.keyword_index().idf(term))

    # -- index -------------------------------------------------------------------------------
    @property
    def store(self) -> IndexStore:
        """The open Chroma store (opened on first use)."""
        with self._lock:
            if self._store is None:
                self._store = open_store(self.settings)
            return self._store

    def index_ready(self) -> bool:
        """Whether a complete index built with our embedder and chunking exists (raises
        IndexProblemError when the index is damaged)."""
        store = self.store
        store.check()
        return (store.exists() and store.count() > 0 and store.mismatch() is None
                and store.fingerprint() not in ("", INCOMPLETE))

    def ensure_index(self, progress: bool = True) -> IndexReport | None:
        """Build or finish the index if it is missing, incomplete or built with other settings."""
        with self._lock:
            # Checked at most every few seconds: counting a large collection costs ~20 ms at 100k papers.
            if time.monotonic() - self._ready_checked < KEYWORD_CHECK_SECONDS:
                return None
            if self.index_ready() or usable_while_written(self.settings, self.store):
                self._ready_checked = time.monotonic()
                return None
            report = build_index(self.settings, progress=progress, encoder=self.encoder.encoder)
            self._store, self._keyword = None, None
            return report

    def keyword_index(self) -> KeywordIndex:
        """The BM25 index matching the store; reloaded only when the store changed."""
        with self._lock:
            now = time.monotonic()
            if self._keyword is not None and now - self._keyword_checked < KEYWORD_CHECK_SECONDS:
                return self._keyword
            self._keyword_checked = now
            fingerprint = self.store.fingerprint() if self.settings.chroma_url is None else self._fresh_fingerprint()
            if self._keyword is None or self._keyword.fingerprint != fingerprint:
                folder = keyword_dir(self.settings)
                self._keyword = KeywordIndex.load(folder, fingerprint)
                if self._keyword is None:
                    self._keyword = KeywordIndex(self.store.all_chunks(), fingerprint)
                    if fingerprint != INCOMPLETE:  # a run is writing: its own save will follow
                        self._keyword.save(folder)
            return self._keyword

    def _fresh_fingerprint(self) -> str:
        """Re-read the collection so a change by another process (server mode) is seen."""
        self.store._collection = None
        return self.store.fingerprint()

    @property
    def retriever(self) -> Retriever:
        """The hybrid retriever over the store and the keyword index."""
        return Retriever(self.store, self.keyword_index, self.encoder, self.settings.retrieval)

    # -- answering ---------------------------------------------------------------------------
    def answerer(self, name: str) -> Answerer:
        """The answerer for a backend name ('auto' picks the first configured LLM, else extractive)."""
        if name == "auto":
            backends = configured_backends(self.settings)
            name = backends[1] if len(backends) > 1 else backends[0]
        with self._lock:
            key = (name, self.settings)  # settings can change on a shared Assistant
            if key not in self._answerers:
                self._answerers[key] = self._make_answerer(name)
            return self._answerers[key]

    def _make_answerer(self, name: str) -> Answerer:
        if name == "extractive":
            return ExtractiveAnswerer(self.assessor)
        if name == "openai":
            from .answering.openai_backend import OpenAIAnswerer

            return OpenAIAnswerer(self.settings)
        if name == "ollama":
            from .answering.ollama_backend import OllamaAnswerer

            return OllamaAnswerer(self.settings)
        raise BackendError(f"backend {name!r} is not available")

    def retrieve(self, question: str, top_k: int | None = None, retrieval: str | None = None) -> list[Source]:
        """Numbered sources (one per paper) for a question."""
        self.ensure_index()
        hits = self.retriever.retrieve(question, top_k or self.settings.top_k, retrieval)
        best_chunks = [h.best_chunk.chunk_id for h in hits]
        meta = self._chunk_metadata(best_chunks)
        return [Source(n, h.title, h.paper_id, h.passage, round(h.score, 6),
                       {"dense": round(h.dense, 4), "keyword": round(h.keyword, 4), **meta.get(cid, {})})
                for n, (h, cid) in enumerate(zip(hits, best_chunks), start=1)]

    def _chunk_metadata(self, chunk_ids: list[str]) -> dict[str, dict[str, Any]]:
        if not chunk_ids:
            return {}
        got = self.store.collection.get(ids=chunk_ids, include=["metadatas"])
        return {cid: {k: v for k, v in (m or {}).items() if k not in _CHUNK_META_SKIP}
                for cid, m in zip(got["ids"], got["metadatas"])}

    def answer(self, question: str, *, backend: str | None = None, top_k: int | None = None,
               retrieval: str | None = None) -> Answer:
        """Answer one question; see `stream` for the streaming form."""
        result = None
        for item in self.stream(question, backend=backend, top_k=top_k, retrieval=retrieval):
            if isinstance(item, Answer):
                result = item
        assert result is not None
        return result

    def stream(self, question: str, *, backend: str | None = None, top_k: int | None = None,
               retrieval: str | None = None) -> Iterator[str | Answer]:
        """Yield text deltas as the answerer produces them, then the final, validated Answer."""
        started = time.perf_counter()
        question = clean_question(question, self.settings.max_question_chars)
        check_options(backend, top_k, retrieval)
        name = backend or self.settings.backend
        answerer = self.answerer(name)
        sources = self.retrieve(question, top_k, retrieval)
        fit_sources = getattr(answerer, "fit_sources", None)
        if fit_sources is not None:  # LLM backends show only what fits their context window
            sources = fit_sources(question, sources)
        retrieved = time.perf_counter()
        pieces: list[str] = []
        for delta in answerer.stream(question, sources):
            pieces.append(delta)
            yield delta
        answered = time.perf_counter()
        result = self.finalize(question, "".join(pieces), sources, answerer.name)
        result.confidence = self.assessor.assess(question, sources).confidence
        result.timings_ms = {"retrieval": (retrieved - started) * 1000, "answer": (answered - retrieved) * 1000,
                             "citations": (time.perf_counter() - answered) * 1000,
                             "total": (time.perf_counter() - started) * 1000}
        yield result

    def finalize(self, question: str, text: str, sources: list[Source], backend: str) -> Answer:
        """Validate markers, detect refusals, score support: the same for every backend."""
        text = text.strip()
        if not text:
            raise BackendError(f"the {backend} backend returned an empty answer")
        if is_refusal(text):
            extra = ["dropped text the backend added to the refusal sentence"] if refusal_has_extra(text) else []
            return Answer(question, REFUSAL, True, [], sources, backend, warnings=extra)
        warnings = []
        text, removed = drop_invalid_markers(text, {s.n for s in sources})
        if removed:
            warnings.append(f"removed {removed} citation marker(s) that pointed outside the sources")
        invented = quoted_titles_not_in(text, [s.title for s in sources])
        if invented:  # only then against the whole collection: ~0.2 s at 100k papers
            invented = quoted_titles_not_in(text, [s.title for s in sources] + self._all_titles())
        warnings += [f"title not in the collection: {t!r}" for t in invented]
        sentences = score_support(answer_sentences(text), sources, self.encoder.encode)
        citations = build_citations(text, sources)
        if not citations:
            warnings.append("the answer cites no source")
        return Answer(question, text, False, citations, sources, backend, sentences, warnings=warnings)

    def _all_titles(self) -> list[str]:
        return sorted({c.title for c in self.keyword_index().chunks})


_shared: dict[tuple, Assistant] = {}
_shared_lock = threading.Lock()


def shared_assistant(**settings_overrides: Any) -> Assistant:
    """One Assistant per distinct index configuration, created on first use."""
    settings = Settings.from_env(**settings_overrides)
    key = (str(settings.index_dir), settings.chroma_url, settings.collection)
    with _shared_lock:
        if key not in _shared:
            _shared[key] = Assistant(settings)
        elif settings != _shared[key].settings:
            _shared[key].settings = settings
        return _shared[key]


def answer(question: str, *, backend: str | None = None, top_k: int | None = None,
           retrieval: str | None = None, **settings_overrides: Any) -> Answer:
    """Answer a question with the shared Assistant (embedded defaults unless configured)."""
    return shared_assistant(**settings_overrides).answer(question, backend=backend, top_k=top_k,
                                                         retrieval=retrieval)


def stream(question: str, *, backend: str | None = None, top_k: int | None = None,
           retrieval: str | None = None, **settings_overrides: Any) -> Iterator[str | Answer]:
    """Streaming form of `answer`: text deltas, then the final Answer."""
    return shared_assistant(**settings_overrides).stream(question, backend=backend, top_k=top_k,
                                                         retrieval=retrieval)


__all__ = ["Assistant", "IndexProblemError", "answer", "shared_assistant", "stream"]
