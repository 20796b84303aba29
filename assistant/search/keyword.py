"""Keyword search: BM25 over the chunks, from the keyword index kept beside the store."""

from __future__ import annotations

from collections.abc import Collection

import numpy as np

from ..indexing.index import PaperIndex
from ..models import ScoredChunk

#: Chunks ranked before keeping those of the requested papers: a follow-up's few papers rank in
#: this many unless the question barely concerns them (then their dense score carries them).
RESTRICTED_CANDIDATES = 2000


class KeywordRetriever:
    """Chunks by BM25 score of the query's terms; fills `keyword` scores."""

    name = "keyword"

    def __init__(self, index: PaperIndex) -> None:
        self.index = index

    def retrieve(self, query: str, vector: np.ndarray, n: int, papers: Collection[str] = ()) -> list[ScoredChunk]:
        """The n best chunks (of `papers` only, if given), best first (the vector is not needed)."""
        if not papers:
            return self.index.keyword().search(query, n)
        hits = self.index.keyword().search(query, max(n, RESTRICTED_CANDIDATES))
        return [h for h in hits if h.paper_id in papers][:n]
