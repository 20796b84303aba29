"""Hybrid retrieval: chunk rankings of weighted retrievers (dense, keyword) fused by reciprocal
rank, grouped by paper so that one paper's chunks cannot crowd out the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..indexing.catalog import Selection
from ..indexing.embedding import Encoder
from ..indexing.index import PaperIndex
from ..models import ScoredChunk
from ..text import mentions, named_things, names_system_of, split_sentences, terms, written_as_names
from .dense import DenseRetriever
from .keyword import KeywordRetriever

RRF_K = 60
CANDIDATE_CHUNKS = 40
#: Chunks a paper's passage joins: two cut an abstract's sentence at the chunk boundary or left out its
#: last third often enough to miss the figure asked for (2% of the answerable dev questions).
MAX_CHUNKS_PER_PAPER = 3
#: Weights of the two rankings in hybrid fusion (chosen on evals/dev.jsonl).
DENSE_WEIGHT = 1.0
KEYWORD_WEIGHT = 1.5
#: Added to the fused score of a paper whose title names the system the question names
#: ("What is TransMLA?" → "TransMLA: …"): rank fusion alone lets a weak dense match outvote it.
NAME_MATCH_BONUS = 1.0
#: Added to the fused score of a paper whose title holds every content term of the question (at least
#: TITLE_MATCH_TERMS of them): "Which papers are about segment anything?" is about "Faster Segment
#: Anything: …", though a paper that both rankings place low outvotes it by rank fusion alone.
TITLE_MATCH_BONUS = 0.02
TITLE_MATCH_TERMS = 2
#: Added, times the share of the question's distinctive names a paper mentions (names that at most
#: DISTINCTIVE_PAPERS of the candidates mention): "How much more efficient is Lite-LLM4Rec on ML-1m?"
#: is about the paper that says "Lite-LLM4Rec", however the dense ranking places it.
NAME_MENTION_BONUS = 0.5
DISTINCTIVE_PAPERS = 2
#: A question without a name-shaped word ("how much memory does longgen save") may still name a paper
#: in lower case: its words are looked up, written as names, in this many best candidates.
LOWER_CASE_NAME_PAPERS = 10

#: The (retriever, weight) pairs of each retrieval mode, by retriever name.
MODES = {"hybrid": (("dense", DENSE_WEIGHT), ("keyword", KEYWORD_WEIGHT)),
         "dense": (("dense", 1.0),), "bm25": (("keyword", 1.0),)}


class ChunkRetriever(Protocol):
    """One ranking of chunks for a query. `name` is the score it fills on hits: dense or keyword."""

    name: str

    def retrieve(self, query: str, vector: np.ndarray, n: int, within: Selection | None = None) -> list[ScoredChunk]:
        """The n best chunks for the query (text and vector), best first; only chunks of the
        selected papers when `within` is given."""
        ...


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
        """Its best chunk, its opening chunk and its next best (at most `MAX_CHUNKS_PER_PAPER`), in
        abstract order: the evidence shown for this paper."""
        ranked = sorted(self.chunks, key=lambda c: -c.strength)
        # The opening chunk, when it matched at all, says what the paper introduces: keep it.
        best = ranked[:1] + sorted(ranked[1:], key=lambda c: (c.position != 0, -c.strength))
        best = best[:MAX_CHUNKS_PER_PAPER]
        sentences: list[str] = []
        for chunk in sorted(best, key=lambda c: c.position):
            for sentence in split_sentences(chunk.text):
                # Chunks overlap and may start or end inside a sentence: keep each sentence once, whole.
                if any(sentence in kept for kept in sentences):
                    continue
                sentences = [kept for kept in sentences if kept not in sentence] + [sentence]
        return " ".join(sentences)


def _position(chunk_id: str) -> int:
    tail = chunk_id.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


class Retriever:
    """Finds the papers that best answer a question, by mode: hybrid, dense or bm25."""

    def __init__(self, index: PaperIndex, encoder: Encoder) -> None:
        self.dense = DenseRetriever(index)
        self.keyword = KeywordRetriever(index)
        self.encoder = encoder

    def retrieve(self, query: str, top_k: int, mode: str = "hybrid", within: Selection | None = None) -> list[PaperHit]:
        """The top_k papers for `query`, best first, each with its best cosine similarity; only
        selected papers when `within` is given."""
        by_name: dict[str, ChunkRetriever] = {"dense": self.dense, "keyword": self.keyword}
        vector = self.encoder.encode([query])[0]
        ranked = fuse(query, vector, [(by_name[name], weight) for name, weight in MODES[mode]], top_k, within)
        # Chunks found only by keyword get their cosine too, so every hit has one.
        missing = [c for p in ranked for c in p.chunks if c.dense == 0.0]
        similarity = self.dense.similarities([c.chunk_id for c in missing], vector)
        for chunk in missing:
            chunk.dense = similarity.get(chunk.chunk_id, chunk.dense)
        for paper in ranked:
            paper.dense = max((c.dense for c in paper.chunks), default=0.0)
        return ranked


def fuse(query: str, vector: np.ndarray, retrievers: Sequence[tuple[ChunkRetriever, float]],
         top_k: int, within: Selection | None = None) -> list[PaperHit]:
    """The top_k papers by weighted reciprocal rank over the retrievers' chunk rankings, best first."""
    papers: dict[str, PaperHit] = {}
    rankings = [_add_hits(papers, retriever.retrieve(query, vector, CANDIDATE_CHUNKS, within), retriever.name)
                for retriever, _ in retrievers]
    for paper_id, score in reciprocal_rank_fusion(rankings, weights=[w for _, w in retrievers]).items():
        papers[paper_id].score = score
    wanted = set(terms(query))
    for paper in papers.values():
        if names_system_of(query, paper.title):
            paper.score += NAME_MATCH_BONUS
        elif len(wanted) >= TITLE_MATCH_TERMS and wanted <= set(terms(paper.title)):
            paper.score += TITLE_MATCH_BONUS
    _reward_distinctive_names(query, list(papers.values()))
    return sorted(papers.values(), key=lambda p: -p.score)[:top_k]


def _reward_distinctive_names(query: str, papers: list[PaperHit]) -> None:
    """Raise the papers that mention the names of the question only few candidates mention."""
    texts = {p.paper_id: " ".join([p.title, *(c.text for c in p.chunks)]) for p in papers}
    names = named_things(query)
    if names:
        mentioning = [_mentioned_by(name, texts) for name in names]
    else:  # a name typed in lower case is a word as the papers write it: a plain search finds it
        best = sorted(papers, key=lambda p: -p.score)[:LOWER_CASE_NAME_PAPERS]
        names = written_as_names(query, " ".join(texts[p.paper_id] for p in best))
        if not names:
            return
        lowered = {paper_id: text.lower() for paper_id, text in texts.items()}
        mentioning = [{paper_id for paper_id, text in lowered.items() if name in text} for name in names]
    distinctive = [found for found in mentioning if 0 < len(found) <= DISTINCTIVE_PAPERS]
    if not distinctive:
        return
    for paper in papers:
        share = sum(paper.paper_id in found for found in distinctive) / len(names)
        paper.score += NAME_MENTION_BONUS * share


def _mentioned_by(name: str, texts: dict[str, str]) -> set[str]:
    """The papers whose text mentions `name`, up to one more than a distinctive name may have:
    past that the name is common and the rest need not be read (stemming the texts is the cost)."""
    found: set[str] = set()
    for paper_id, text in texts.items():
        if mentions(text, name):
            found.add(paper_id)
            if len(found) > DISTINCTIVE_PAPERS:
                break
    return found


def _chunk(paper: PaperHit, chunk_id: str, text: str) -> ChunkHit:
    for chunk in paper.chunks:
        if chunk.chunk_id == chunk_id:
            return chunk
    chunk = ChunkHit(chunk_id, text, _position(chunk_id))
    paper.chunks.append(chunk)
    return chunk


def _add_hits(papers: dict[str, PaperHit], hits: Sequence[ScoredChunk], score: str) -> list[str]:
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
