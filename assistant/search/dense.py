"""Dense search: the chunks nearest to the question's vector in the Chroma store."""

from __future__ import annotations

import numpy as np

from ..indexing.catalog import Selection
from ..indexing.index import PaperIndex
from ..models import ScoredChunk

#: A selection of at most this many chunks is scored exactly against all its stored vectors;
#: a larger one by asking Chroma for more neighbours and keeping the selected ones.
EXACT_CHUNKS = 2000


class DenseRetriever:
    """Chunks by cosine similarity to the query vector; fills `dense` scores."""

    name = "dense"

    def __init__(self, index: PaperIndex) -> None:
        self.index = index

    def retrieve(self, query: str, vector: np.ndarray, n: int, within: Selection | None = None) -> list[ScoredChunk]:
        """The n nearest chunks, best first (of the selected papers only, when `within` is given:
        a small selection is scored exactly, a large one by over-fetching and keeping its hits)."""
        if within is None:
            return self.index.store.query(vector.tolist(), n)
        if within.chunks <= EXACT_CHUNKS:
            chunks, vectors = self.index.store.chunks_with_vectors(within.chunk_ids())
            scores = vectors @ vector if chunks else np.zeros(0)
            for chunk, score in zip(chunks, scores):
                chunk.score = float(score)
            return sorted(chunks, key=lambda c: -c.score)[:n]
        return within.keep(self.index.store.query(vector.tolist(), within.fetch_size(n)))[:n]

    def similarities(self, chunk_ids: list[str], vector: np.ndarray) -> dict[str, float]:
        """Cosine similarity to `vector` of stored chunks (for chunks another retriever found)."""
        return {cid: float(np.dot(v, vector)) for cid, v in self.index.store.vectors(chunk_ids).items()}
