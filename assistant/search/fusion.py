"""Hybrid retrieval: dense (Chroma) and keyword (BM25) rankings fused by reciprocal rank,
grouped by paper so that one paper's chunks cannot crowd out the others.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..indexing.embedding import CachedEncoder, MiniLMEncoder
from ..indexing.keyword import KeywordHit, KeywordIndex
from ..indexing.store import DenseHit, IndexStore
from ..text import named_things, split_sentences, system_name

RRF_K = 60
CANDIDATE_CHUNKS = 40
MAX_CHUNKS_PER_PAPER = 2
#: Weights of the two rankings in hybrid fusion (chosen on evals/dev.jsonl).
DENSE_WEIGHT = 1.0
KEYWORD_WEIGHT = 1.5
#: Added to the fused score of a paper whose title names the system the question names
#: ("What is TransMLA?" → "TransMLA: …"): rank fusion alone lets a weak dense match outvote it.
NAME_MATCH_BONUS = 1.0


@dataclass
class ChunkHit:
    """A chunk of a retrieved paper, with its rank scores from each retriever."""

    chunk_id: str
    text: str
    position: int
    dense: float = 0.0
    keyword: float = 0.0

    @property
    def strength(self) -> float:
        """How well the chunk matched: cosine first, BM25 as a tie-breaker."""
        return self.dense + self.keyword / 100


@dataclass
class PaperHit:
    """One retrieved paper: fused score, best dense cosine, best BM25 score and its chunks."""

    paper_id: str
    title: str
    score: float
    dense: float
    keyword: float
    chunks: list[ChunkHit] = field(default_factory=list)

    @property
    def best_chunk(self) -> ChunkHit:
        """The chunk that matched the query best."""
        return max(self.chunks, key=lambda c: c.strength)

    @property
    def passage(self) -> str:
        """Its best chunk and its opening chunk (else its second best), in abstract order: the
        evidence shown for this paper."""
        ranked = sorted(self.chunks, key=lambda c: -c.strength)
        # The opening chunk, when it matched at all, says what the paper introduces: keep it.
        best = ranked[:1] + sorted(ranked[1:], key=lambda c: (c.position != 0, -c.strength))
        best = best[:MAX_CHUNKS_PER_PAPER]
        sentences: dict[str, None] = {}
        for chunk in sorted(best, key=lambda c: c.position):
            sentences.update(dict.fromkeys(split_sentences(chunk.text)))
        return " ".join(sentences)


def _position(chunk_id: str) -> int:
    tail = chunk_id.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


class Retriever:
    """Finds the papers that best answer a question, by `mode`: hybrid, dense or bm25."""

    def __init__(self, store: IndexStore, keyword_index: Callable[[], KeywordIndex],
                 encoder: MiniLMEncoder | CachedEncoder, mode: str = "hybrid") -> None:
        self.store = store
        self.keyword_index = keyword_index
        self.encoder = encoder
        self.mode = mode

    def retrieve(self, query: str, top_k: int, mode: str | None = None) -> list[PaperHit]:
        """The top_k papers for `query`, best first."""
        mode = mode or self.mode
        papers: dict[str, PaperHit] = {}
        rankings: list[list[str]] = []
        vector = self.encoder.encode([query])[0]
        if mode in ("hybrid", "dense"):
            rankings.append(_add_hits(papers, self.store.query(vector.tolist(), CANDIDATE_CHUNKS), "dense"))
        if mode in ("hybrid", "bm25"):
            rankings.append(_add_hits(papers, self.keyword_index().search(query, CANDIDATE_CHUNKS), "keyword"))
        weights = [DENSE_WEIGHT, KEYWORD_WEIGHT] if mode == "hybrid" else None
        for paper_id, score in reciprocal_rank_fusion(rankings, weights=weights).items():
            papers[paper_id].score = score
        named = set(named_things(query))
        for paper in papers.values():
            name = system_name(paper.title)
            if name and set(name.casefold().split()) <= named:
                paper.score += NAME_MATCH_BONUS
        ranked = sorted(papers.values(), key=lambda p: -p.score)[:top_k]
        self._fill_dense(ranked, vector)
        return ranked

    def _fill_dense(self, papers: list[PaperHit], vector: np.ndarray) -> None:
        """Give chunks found only by keyword their cosine to the query, so every hit has one."""
        missing = [c for p in papers for c in p.chunks if c.dense == 0.0]
        stored = self.store.vectors([c.chunk_id for c in missing])
        for chunk in missing:
            if chunk.chunk_id in stored:
                chunk.dense = float(np.dot(stored[chunk.chunk_id], vector))
        for paper in papers:
            paper.dense = max((c.dense for c in paper.chunks), default=0.0)


def _chunk(paper: PaperHit, chunk_id: str, text: str) -> ChunkHit:
    for chunk in paper.chunks:
        if chunk.chunk_id == chunk_id:
            return chunk
    chunk = ChunkHit(chunk_id, text, _position(chunk_id))
    paper.chunks.append(chunk)
    return chunk


def _add_hits(papers: dict[str, PaperHit], hits: Sequence[DenseHit | KeywordHit], score: str) -> list[str]:
    """Record chunk hits of one retriever under `score` ('dense' or 'keyword') on their papers;
    returns the paper ids in order of their first (best) chunk."""
    for hit in hits:
        paper = papers.setdefault(hit.paper_id, PaperHit(hit.paper_id, hit.title, 0.0, 0.0, 0.0))
        setattr(paper, score, max(getattr(paper, score), hit.score))
        setattr(_chunk(paper, hit.chunk_id, hit.text), score, hit.score)
    return list(dict.fromkeys(h.paper_id for h in hits))


def reciprocal_rank_fusion(rankings: list[list[str]], k: int = RRF_K,
                           weights: Sequence[float] | None = None) -> dict[str, float]:
    """Sum of weight / (k + rank) over the rankings each id appears in (rank starts at 1)."""
    scores: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights or [1.0] * len(rankings)):
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    return scores
