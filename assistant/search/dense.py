"""Dense search: the chunks nearest to the question's vector in the Chroma store."""

from __future__ import annotations

from collections.abc import Collection

import numpy as np

from ..indexing.index import PaperIndex
from ..models import ScoredChunk


class DenseRetriever:
    """Chunks by cosine similarity to the query vector; fills `dense` scores."""

    name = "dense"

    def __init__(self, index: PaperIndex) -> None:
        self.index = index

    def retrieve(self, query: str, vector: np.ndarray, n: int, papers: Collection[str] = ()) -> list[ScoredChunk]:
        """The n nearest chunks (of `papers` only, if given), best first."""
        return self.index.store.query(vector.tolist(), n, papers)

    def similarities(self, chunk_ids: list[str], vector: np.ndarray) -> dict[str, float]:
        """Cosine similarity to `vector` of stored chunks (for chunks another retriever found)."""
        return {cid: float(np.dot(v, vector)) for cid, v in self.index.store.vectors(chunk_ids).items()}
