"""Keyword search: BM25 over the chunks, from the keyword index kept beside the store."""

from __future__ import annotations

import numpy as np

from ..indexing.catalog import Selection
from ..indexing.index import PaperIndex
from ..models import ScoredChunk

#: A selection of at most this many papers is searched with its paper ids as a filter of the keyword
#: query (exact, and only k hits read: two source pages at 10k papers took 131 ms over-fetching);
#: a larger one by over-fetching and keeping its hits, at most FETCH_LIMIT (10,000 hits cost ~110 ms
#: at 100k papers, mostly making the hit objects).
FILTERED_PAPERS = 2_000
FETCH_LIMIT = 2_000


class KeywordRetriever:
    """Chunks by BM25 score of the query's terms; fills `keyword` scores."""

    name = "keyword"

    def __init__(self, index: PaperIndex) -> None:
        self.index = index

    def retrieve(self, query: str, vector: np.ndarray, n: int, within: Selection | None = None) -> list[ScoredChunk]:
        """The n best chunks, best first (the vector is not needed); of the selected papers only
        when `within` is given (a filter of the query for a small selection, else over-fetched and
        kept)."""
        if within is None:
            return self.index.keyword().search(query, n)
        if within.papers <= FILTERED_PAPERS:
            return self.index.keyword().search(query, n, within.paper_ids()) if within.papers else []
        return within.keep(self.index.keyword().search(query, within.fetch_size(n, FETCH_LIMIT)))[:n]
