"""Data classes that cross module boundaries: Paper, Chunk, Source, Citation, Answer."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


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
class Source:
    """Evidence shown to the answerer and the user, numbered `n` as cited by `[n]`."""

    n: int
    title: str
    paper_id: str
    text: str
    score: float
    metadata: dict[str, Any] = field(default_factory=dict)


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

    @property
    def grounded(self) -> bool:
        """Whether at least one sentence cites a source that was retrieved (False for refusals)."""
        return not self.refused and bool(self.citations)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, the shape of `assistant ask --json`."""
        return {
            "question": self.question,
            "answer": self.text,
            "refused": self.refused,
            "citations": [asdict(c) for c in self.citations],
            "sources": [
                {"n": s.n, "title": s.title, "paper_id": s.paper_id, "text": s.text,
                 "score": round(s.score, 4), "metadata": s.metadata}
                for s in self.sources
            ],
            "backend": self.backend,
            "confidence": round(self.confidence, 4),
            "grounded": self.grounded,
            "sentences": [asdict(s) for s in self.sentences],
            "timings_ms": {k: round(v, 1) for k, v in self.timings_ms.items()},
            "warnings": list(self.warnings),
        }
