"""Keyword search: BM25 over the chunks, from the keyword index kept beside the store."""

from __future__ import annotations

import numpy as np

from ..indexing.catalog import Selection
from ..indexing.index import PaperIndex
from ..models import ScoredChunk

#: At most this many keyword hits are fetched to find a selection's: a very small selection gets
#: keyword hits only among the best FETCH_LIMIT (dense search scores all its chunks). 10,000 hits
#: cost ~110 ms at 100k papers, mostly making the hit objects.
FETCH_LIMIT = 2_000


class KeywordRetriever:
    """Chunks by BM25 score of the query's terms; fills `keyword` scores."""

    name = "keyword"

    def __init__(self, index: PaperIndex) -> None:
        self.index = index

    def retrieve(self, query: str, vector: np.ndarray, n: int, within: Selection | None = None) -> list[ScoredChunk]:
        """The n best chunks, best first (the vector is not needed); of the selected papers only
        when `within` is given (over-fetched, then kept)."""
        if within is None:
            return self.index.keyword().search(query, n)
        return within.keep(self.index.keyword().search(query, within.fetch_size(n, FETCH_LIMIT)))[:n]
