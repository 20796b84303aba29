"""Keyword search: BM25 over the chunks, from the keyword index kept beside the store."""

from __future__ import annotations

import numpy as np

from ..indexing.index import PaperIndex
from ..models import ScoredChunk


class KeywordRetriever:
    """Chunks by BM25 score of the query's terms; fills `keyword` scores."""

    name = "keyword"

    def __init__(self, index: PaperIndex) -> None:
        self.index = index

    def retrieve(self, query: str, vector: np.ndarray, n: int) -> list[ScoredChunk]:
        """The n best chunks, best first (the vector is not needed)."""
        return self.index.keyword().search(query, n)
