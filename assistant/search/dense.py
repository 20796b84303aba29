"""Dense search: the chunks nearest to the question's vector in the Chroma store."""

from __future__ import annotations

import numpy as np

from ..indexing.catalog import Selection
from ..indexing.index import PaperIndex
from ..models import ScoredChunk

#: A selection of at most this many chunks is scored exactly against its stored vectors (~200 ms
#: for 1000 at 100k papers); a larger one by asking Chroma for more neighbours (ids only, at most
#: FETCH_LIMIT) and keeping the selected ones.
EXACT_CHUNKS = 1000
FETCH_LIMIT = 16_000


class DenseRetriever:
    """Chunks by cosine similarity to the query vector; fills `dense` scores."""

    name = "dense"

    def __init__(self, index: PaperIndex) -> None:
        self.index = index

    def retrieve(self, query: str, vector: np.ndarray, n: int, within: Selection | None = None) -> list[ScoredChunk]:
        """The n nearest chunks, best first (of the selected papers only, when `within` is given)."""
        if within is None:
            return self.index.store.query(vector.tolist(), n)
        if within.chunks <= EXACT_CHUNKS:
            nearest = sorted(self.similarities(within.chunk_ids(), vector).items(), key=lambda kv: -kv[1])
        else:
            found = self.index.store.nearest_ids(vector.tolist(), within.fetch_size(n, FETCH_LIMIT))
            nearest = [(cid, score) for cid, score in found if within.allows_chunk(cid)]
        scores = dict(nearest[:n])
        chunks = self.index.store.chunks(list(scores))
        for chunk in chunks:
            chunk.score = scores[chunk.chunk_id]
        return chunks

    def similarities(self, chunk_ids: list[str], vector: np.ndarray) -> dict[str, float]:
        """Cosine similarity to `vector` of stored chunks (for chunks another retriever found)."""
        return {cid: float(np.dot(v, vector)) for cid, v in self.index.store.vectors(chunk_ids).items()}
