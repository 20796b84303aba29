"""The `Assistant`: a long-lived object that keeps the model, the index and the clients open,
and runs retrieve → fit → answer → check for each question.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from . import answering
from .answering.citations import finalize
from .answering.evidence import EvidenceAssessor
from .answering.followup import Turn, plan
from .errors import InvalidQuestionError
from .indexing.build import IndexReport
from .indexing.catalog import Selection
from .indexing.embedding import CachedEncoder, MiniLMEncoder
from .indexing.index import PaperIndex
from .models import Answer, AnswerStream, Source
from .search.filters import PaperFilter, filter_note
from .search.fusion import Retriever
from .settings import MAX_TOP_K, RETRIEVAL_MODES, Settings
from .text import split_sentences, without_control


def clean_question(question: Any, max_chars: int) -> str:
    """The question with control characters removed; raises InvalidQuestionError if unusable."""
    if not isinstance(question, str):
        raise InvalidQuestionError("the question must be text")
    if len(question) > 4 * max_chars:  # refuse huge input before looking at every character
        raise InvalidQuestionError(f"the question is {len(question)} characters long; the limit is {max_chars}")
    cleaned = " ".join(without_control(question, " ").split())
    if not cleaned:
        raise InvalidQuestionError("the question is empty")
    if len(cleaned) > max_chars:
        raise InvalidQuestionError(f"the question is {len(cleaned)} characters long; the limit is {max_chars}")
    if not any(ch.isalnum() for ch in cleaned):
        raise InvalidQuestionError("the question has no words in it")
    return cleaned


def check_options(backend: Any, top_k: Any, retrieval: Any) -> None:
    """Raise InvalidQuestionError for a per-question option that cannot work (None = the default)."""
    if backend is not None and backend not in answering.backend_names():
        raise InvalidQuestionError(f"unknown backend {backend!r}; choose one of {', '.join(answering.backend_names())}")
    if top_k is not None and (type(top_k) is not int or not 1 <= top_k <= MAX_TOP_K):
        raise InvalidQuestionError(f"top_k must be a whole number from 1 to {MAX_TOP_K}, got {top_k!r}")
    if retrieval is not None and retrieval not in RETRIEVAL_MODES:
        raise InvalidQuestionError(f"unknown retrieval mode {retrieval!r}; choose one of {', '.join(RETRIEVAL_MODES)}")


class Assistant:
    """Answers questions over the indexed papers. Thread-safe; reuse one per process.

    It never builds the index on its own: call `ensure_index()` first (as the CLI, the chat and the
    evals do) or run `assistant index`; a question on a missing index is an IndexProblemError.
    """

    def __init__(self, settings: Settings | None = None, **overrides: Any) -> None:
        self.settings = (settings or Settings.from_env()).with_(**overrides)
        self.encoder = CachedEncoder(MiniLMEncoder(self.settings.embed_threads))
        self.index = PaperIndex(self.settings, self.encoder.encoder)
        self.retriever = Retriever(self.index, self.encoder)
        self._lock = threading.RLock()
        self._answerers: dict[tuple[str, Settings], answering.Answerer] = {}
        self.assessor = self._assessor()

    def with_settings(self, settings: Settings) -> Assistant:
        """An Assistant with other settings that shares this one's model, answerers and (when the
        settings describe the same index) index: cheap, and leaves this one unchanged."""
        other = copy.copy(self)
        other.settings = settings
        if not self.index.serves(settings):
            other.index = PaperIndex(settings, self.encoder.encoder)
            other.retriever = Retriever(other.index, self.encoder)
            other.assessor = other._assessor()
            other._answerers = {}
        return other

    def _assessor(self) -> EvidenceAssessor:
        """Scores evidence with this Assistant's model and its index's vocabulary."""
        return EvidenceAssessor(self.encoder.encode, self.index.keyword)

    def ensure_index(self, progress: bool = True) -> IndexReport | None:
        """Build or finish the index if it is missing, incomplete or built with other settings."""
        return self.index.ensure(progress=progress)

    def answerer(self, name: str) -> answering.Answerer:
        """The answerer for a backend name ('auto' picks the first configured LLM, else extractive)."""
        name = answering.resolve(name, self.settings)
        with self._lock:
            key = (name, self.settings)
            if key not in self._answerers:
                context = answering.AnswerContext(self.assessor)
                self._answerers[key] = answering.create(name, self.settings, context)
            return self._answerers[key]

    def retrieve(self, question: str, top_k: int | None = None, retrieval: str | None = None,
                 within: Selection | None = None) -> list[Source]:
        """Numbered sources (one per paper) for a question, of the selected papers when `within` is given."""
        self.index.require()
        hits = self.retriever.retrieve(question, top_k or self.settings.top_k, retrieval or self.settings.retrieval,
                                       within)
        best_chunks = [h.best_chunk.chunk_id for h in hits]
        meta = self.index.chunk_metadata(best_chunks)
        return [Source(n, h.title, h.paper_id, h.passage, round(h.score, 6), meta.get(cid, {}),
                       dense=round(h.dense, 4), keyword=round(h.keyword, 4))
                for n, (h, cid) in enumerate(zip(hits, best_chunks), start=1)]

    def load_sentence_vectors(self, sources: list[Source]) -> None:
        """Put the sources' sentence vectors, computed when indexing, in the encoder's cache: the
        answerer and the citation checks then embed none of them."""
        self.encoder.preload([s for src in sources for s in split_sentences(src.text)], self.index.sentences.get)

    def _by_evidence(self, question: str, sources: list[Source]) -> list[Source]:
        """Sources renumbered best sentence first. For a follow-up over the previous answer's papers
        ("which of them works without retraining?"), passages ranked for the earlier topic all match
        it: the paper with a sentence stating the new aspect goes first."""
        relevance = self.assessor.assess(question, sources).relevance
        ranked = sorted(sources, key=lambda s: -relevance.get(s.n, -1.0))
        return [dataclasses.replace(s, n=n) for n, s in enumerate(ranked, start=1)]

    def answer(self, question: str, *, backend: str | None = None, top_k: int | None = None,
               retrieval: str | None = None, history: Sequence[Answer] = (),
               filters: PaperFilter | Mapping[str, Any] | None = None) -> Answer:
        """Answer one question; see `stream` for the streaming form, `history` and `filters`."""
        return self.stream(question, backend=backend, top_k=top_k, retrieval=retrieval, history=history,
                           filters=filters).answer

    def stream(self, question: str, *, backend: str | None = None, top_k: int | None = None,
               retrieval: str | None = None, history: Sequence[Answer] = (),
               filters: PaperFilter | Mapping[str, Any] | None = None) -> AnswerStream:
        """The answer as it is written: iterate for text deltas; `.answer` is the final, checked Answer.

        `history` is the conversation's earlier answers, oldest first: a follow-up ("which of them…",
        "and its speedup?", "what about the second one?") is then answered about their papers (see
        `answering/followup.py`, and `Conversation` for a chat kept from code).

        `filters` (a PaperFilter or a dict such as `{"since": "2024-12-01", "min_upvotes": 5}`)
        narrows the papers searched; without a date range, a date phrase in the question ("since
        December 2024") becomes one. When no paper matches, the answer says so and cites nothing.
        """
        started = time.perf_counter()
        question = clean_question(question, self.settings.max_question_chars)
        check_options(backend, top_k, retrieval)
        answerer = self.answerer(backend or self.settings.backend)
        follow_up = plan(question, [Turn.of(earlier) for earlier in history])
        paper_filter, asked = PaperFilter.parse(filters).with_question_dates(follow_up.question)
        within, applied = None, {}
        if paper_filter.active or follow_up.paper_ids:
            self.index.require()
            within = paper_filter.select(self.index.catalog(), follow_up.paper_ids)
        if paper_filter.active and within is not None:
            applied = {"applied": paper_filter.to_dict(), "understood_from": paper_filter.understood_from,
                       "matching_papers": within.papers, "note": filter_note(paper_filter, within)}
            if not within.papers:
                return _nothing_matches(question, answerer.name, applied, started)
        sources = answerer.fit_sources(asked, self.retrieve(asked, top_k, retrieval, within))
        self.load_sentence_vectors(sources)
        if len(follow_up.paper_ids) > 1:
            sources = self._by_evidence(asked, sources)
        retrieved = time.perf_counter()

        def check(text: str) -> Answer:
            answered = time.perf_counter()
            result = finalize(asked, text, sources, answerer.name, self.encoder.encode, self.index.titles)
            result.question = question
            result.asked_as = follow_up.question if follow_up.question != question else None
            result.about = list(follow_up.paper_ids)
            result.confidence = self.assessor.assess(asked, sources).confidence
            result.filters = applied
            result.timings_ms = {"retrieval": (retrieved - started) * 1000, "answer": (answered - retrieved) * 1000,
                                 "citations": (time.perf_counter() - answered) * 1000,
                                 "total": (time.perf_counter() - started) * 1000}
            return result

        return AnswerStream(answerer.stream(asked, sources), check)


class Conversation:
    """A conversation from code: each question is answered with the answers before it, so follow-ups
    ("which of them…", "and its speedup?") follow, as in the chat.

        chat = Conversation(assistant)
        chat.ask("Which papers compress the KV cache?")
        chat.ask("and which of them works without retraining?")
    """

    def __init__(self, assistant: Assistant, **options: Any) -> None:
        self.assistant = assistant
        self.options = options  # backend, top_k, retrieval, filters for every question
        self.answers: list[Answer] = []

    def ask(self, question: str) -> Answer:
        """Answer the next question of the conversation."""
        return self.stream(question).answer

    def stream(self, question: str) -> AnswerStream:
        """The next answer as it is written; it joins the conversation once it is finished."""
        reply = self.assistant.stream(question, history=tuple(self.answers), **self.options)

        def finished(_text: str) -> Answer:
            self.answers.append(reply.answer)
            return reply.answer

        return AnswerStream(iter(reply), finished)


def _nothing_matches(question: str, backend: str, applied: dict[str, Any], started: float) -> AnswerStream:
    """The answer when no paper passes the filters: says so, cites nothing, searches nothing."""
    text = f"No paper matches the filters, so there is nothing to answer from. {applied['note']} Widen or remove them."
    timings = {"retrieval": 0.0, "answer": 0.0, "citations": 0.0, "total": (time.perf_counter() - started) * 1000}
    return AnswerStream(iter([text]), lambda _: Answer(question, text, True, [], [], backend,
                                                       timings_ms=timings, filters=applied))


_shared: dict[Settings, Assistant] = {}
_shared_lock = threading.Lock()


def shared_assistant(**settings_overrides: Any) -> Assistant:
    """One Assistant per distinct configuration (sharing the model and, where they can, the index),
    its index built on first use: the one-call API promises answers on a fresh install."""
    settings = Settings.from_env(**settings_overrides)
    with _shared_lock:
        if settings not in _shared:
            base = next(iter(_shared.values()), None)
            _shared[settings] = base.with_settings(settings) if base else Assistant(settings)
        assistant = _shared[settings]
    assistant.ensure_index()
    return assistant


def answer(question: str, *, backend: str | None = None, top_k: int | None = None,
           retrieval: str | None = None, filters: PaperFilter | Mapping[str, Any] | None = None,
           **settings_overrides: Any) -> Answer:
    """Answer a question with the shared Assistant (embedded defaults unless configured)."""
    return shared_assistant(**settings_overrides).answer(question, backend=backend, top_k=top_k,
                                                         retrieval=retrieval, filters=filters)


def stream(question: str, *, backend: str | None = None, top_k: int | None = None,
           retrieval: str | None = None, filters: PaperFilter | Mapping[str, Any] | None = None,
           **settings_overrides: Any) -> AnswerStream:
    """Streaming form of `answer`: iterate for text deltas; `.answer` is the final Answer."""
    return shared_assistant(**settings_overrides).stream(question, backend=backend, top_k=top_k,
                                                         retrieval=retrieval, filters=filters)


__all__ = ["Assistant", "Conversation", "answer", "shared_assistant", "stream"]
