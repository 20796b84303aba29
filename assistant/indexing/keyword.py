"""Keyword search: a BM25 index (bm25s) over the stored chunks, persisted beside the vectors.

The index is saved under `<index_dir>/keyword/` with the store fingerprint it was built from.
It is loaded once per process and rebuilt only when the store's fingerprint changes (another
process indexed new papers), never per query.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import threading
from pathlib import Path

import numpy as np

from ..models import ScoredChunk
from ..text import ANALYZER_ID, terms

MANIFEST = "manifest.json"


class KeywordIndex:
    """BM25 over chunk texts (title included), stemmed, stop words removed."""

    def __init__(self, chunks: list[ScoredChunk], fingerprint: str) -> None:
        import bm25s

        self.chunks = chunks
        self.fingerprint = fingerprint
        self._bm25 = bm25s.BM25()
        if chunks:
            self._bm25.index([terms(f"{c.title}\n{c.text}") or ["_empty_"] for c in chunks], show_progress=False)

    def search(self, query: str, k: int) -> list[ScoredChunk]:
        """The k best chunks for the query's terms, scored by BM25 (chunks with score 0 are left out)."""
        query_terms = [t for t in terms(query) if t in self._bm25.vocab_dict] if self.chunks else []
        if not query_terms:
            return []
        scores = self._bm25.get_scores(query_terms)
        k = min(k, len(self.chunks))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top])]
        return [ScoredChunk(self.chunks[i].chunk_id, self.chunks[i].paper_id, self.chunks[i].title,
                            self.chunks[i].text, float(scores[i])) for i in top if scores[i] > 0]

    def idf(self, term: str) -> float:
        """Inverse document frequency of a stemmed term over chunks (highest for unknown terms)."""
        token = self._bm25.vocab_dict.get(term) if self.chunks else None
        df = 0
        if token is not None:
            indptr = self._bm25.scores["indptr"]
            df = int(indptr[token + 1] - indptr[token])
        return math.log(1 + (len(self.chunks) - df + 0.5) / (df + 0.5))

    def knows(self, term: str) -> bool:
        """Whether a stemmed term occurs anywhere in the indexed chunks."""
        return bool(self.chunks) and term in self._bm25.vocab_dict

    def save(self, folder: Path) -> None:
        """Write the index and its chunk table; replaces any older copy atomically enough."""
        # A private temporary folder: processes sharing an index folder may save at the same time.
        tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}-{threading.get_ident()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        if self.chunks:
            self._bm25.save(str(tmp), show_progress=False)
        rows = [[c.chunk_id, c.paper_id, c.title, c.text] for c in self.chunks]
        (tmp / "chunks.json").write_text(json.dumps(rows))
        (tmp / MANIFEST).write_text(json.dumps({"fingerprint": self.fingerprint, "analyzer": ANALYZER_ID,
                                                "chunks": len(rows)}))
        _replace_folder(tmp, folder)

    @classmethod
    def load(cls, folder: Path, fingerprint: str) -> KeywordIndex | None:
        """The saved index if it matches `fingerprint`, else None (missing, stale or unreadable)."""
        import bm25s

        try:
            manifest = json.loads((folder / MANIFEST).read_text())
            if manifest.get("fingerprint") != fingerprint or manifest.get("analyzer") != ANALYZER_ID:
                return None
            rows = json.loads((folder / "chunks.json").read_text())
            self = cls.__new__(cls)
            self.chunks = [ScoredChunk(r[0], r[1], r[2], r[3]) for r in rows]
            self.fingerprint = fingerprint
            self._bm25 = bm25s.BM25.load(str(folder), show_progress=False) if rows else bm25s.BM25()
            return self
        except (OSError, ValueError, KeyError, IndexError):
            return None


def _replace_folder(new: Path, folder: Path) -> None:
    """Move `new` to `folder`, replacing what is there; a copy saved meanwhile by another process wins."""
    old = folder.with_name(f"{folder.name}.old-{os.getpid()}-{threading.get_ident()}")
    with contextlib.suppress(FileNotFoundError):
        folder.rename(old)
    try:
        new.rename(folder)
    except OSError:  # another process put its copy in place between our two renames
        shutil.rmtree(new, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
