"""Data classes that cross module boundaries: Paper, Chunk, ScoredChunk, Source, Citation, Answer,
and AnswerStream (the streaming form of an Answer)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

#: Metadata keys the index writes on every chunk itself (ours, then llama-index's node fields): a
#: paper's own metadata cannot use them, and a source's metadata does not show them.
RESERVED_METADATA = frozenset({"paper_id", "title", "position", "content_hash",
                               "_node_content", "_node_type", "document_id", "doc_id", "ref_doc_id"})
#: The metadata key holding the pages a paper was seen on (written by the index, shown to users).
PROVENANCE_KEY = "pages"


@dataclass
class Paper:
    """One unique paper: its text, what the page said about it, and where it was seen."""

    paper_id: str
    title: str
    abstract: str
    metadata: dict[str, Any] = field(default_factory=dict)
    provenance: list[str] = field(default_factory=list)


@dataclass
class Chunk:
    """A piece of one paper's abstract, as indexed. `embed_text` carries the title."""

    chunk_id: str
    paper_id: str
    title: str
    text: str
    embed_text: str
    position: int
    content_hash: str


@dataclass
class ScoredChunk:
    """A stored chunk as a retriever found it; `score` is that retriever's own (cosine similarity
    for dense search, BM25 for keyword search; 0 for a chunk listed without a query)."""

    chunk_id: str
    paper_id: str
    title: str
    text: str
    score: float = 0.0


@dataclass
class Source:
    """Evidence shown to the answerer and the user, numbered `n` as cited by `[n]`.

    `score` is the fused rank score; `dense` the best cosine similarity of the paper's chunks to
    the question and `keyword` their best BM25 score (0 when keyword search did not find it)."""

    n: int
    title: str
    paper_id: str
    text: str
    score: float
    metadata: dict[str, Any] = field(default_factory=dict)
    dense: float = 0.0
    keyword: float = 0.0


@dataclass
class Citation:
    """A paper the answer cites as `[n]`."""

    n: int
    title: str
    paper_id: str


@dataclass
class SentenceSupport:
    """One answer sentence, the sources it cites and how well they support it (0..1)."""

    text: str
    cites: list[int]
    support: float
    supported: bool


@dataclass
class Answer:
    """The result of a question, the same for every backend."""

    question: str
    text: str
    refused: bool
    citations: list[Citation]
    sources: list[Source]
    backend: str
    sentences: list[SentenceSupport] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    #: Estimated probability (0–1) that the collection answers the question with the evidence
    #: found; low for a refusal. See `answering/evidence.py`.
    confidence: float = 0.0
    #: The filters the papers were narrowed by (empty without filters): `applied` (the filter's
    #: fields), `understood_from` (a date phrase of the question), `matching_papers`, `note`.
    filters: dict[str, Any] = field(default_factory=dict)
    #: The self-contained question actually answered, when `question` was a follow-up that leaned
    #: on an earlier answer (see `answering/followup.py`); None otherwise.
    asked_as: str | None = None
    #: The ids of the papers a follow-up was answered from (an earlier answer's papers); empty when
    #: the question was answered from the whole collection.
    about: list[str] = field(default_factory=list)

    @property
    def grounded(self) -> bool:
        """Whether a sentence states something that a retrieved source it cites supports: False for
        refusals, text citing nothing valid, bare markers and titles alone (see answering/citations.py)."""
        return not self.refused and any(s.cites and s.supported for s in self.sentences)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, the shape of `assistant ask --json`."""
        return {
            "question": self.question,
            "asked_as": self.asked_as,
            "about": list(self.about),
            "answer": self.text,
            "refused": self.refused,
            "citations": [asdict(c) for c in self.citations],
            "sources": [
                {"n": s.n, "title": s.title, "paper_id": s.paper_id, "text": s.text,
                 "score": round(s.score, 4), "dense": s.dense, "keyword": s.keyword,
                 # dense and keyword stay in metadata too: readers of earlier output look there
                 "metadata": {"dense": s.dense, "keyword": s.keyword, **s.metadata}}
                for s in self.sources
            ],
            "backend": self.backend,
            "confidence": round(self.confidence, 4),
            "grounded": self.grounded,
            "sentences": [asdict(s) for s in self.sentences],
            "timings_ms": {k: round(v, 1) for k, v in self.timings_ms.items()},
            "warnings": list(self.warnings),
            "filters": dict(self.filters),
        }


class AnswerStream:
    """One answer in the making: iterate it for the text deltas as the backend writes them; `answer`
    is the final, checked Answer (reading it first drains the stream), `text` the raw text so far.

    One object for both, so callers never sort deltas from results (as simonw/llm's `Response`).
    """

    def __init__(self, deltas: Iterator[str], finish: Callable[[str], Answer]) -> None:
        self._deltas = deltas
        self._finish = finish
        self._pieces: list[str] = []
        self._answer: Answer | None = None

    def __iter__(self) -> Iterator[str]:
        for delta in self._deltas:
            self._pieces.append(delta)
            yield delta
        if self._answer is None:
            self._answer = self._finish(self.text)

    @property
    def text(self) -> str:
        """The backend's raw text so far (before marker checks)."""
        return "".join(self._pieces)

    @property
    def answer(self) -> Answer:
        """The final Answer; drains whatever is left of the stream first."""
        for _ in self:
            pass
        assert self._answer is not None
        return self._answer
