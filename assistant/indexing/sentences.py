"""Sentence vectors computed at index time, beside the store, for the answerer to look up.

The extractive answerer and the citation checks compare the question with the sentences of the
retrieved passages; embedding them at question time cost ~125 ms of a ~150 ms answer. The
indexing run computes them from the model pass that embeds the chunks ("late chunking": a
sentence's vector is the mean of its token states inside the first chunk that holds it, so it
costs no model pass of its own; docs/performance.md) and keeps them here, keyed by a hash of the
sentence's model token ids (`embedding.vector_key`): a sentence that several chunks or papers
share is stored once, and a text that tokenises alike finds it. A sentence missing here is simply
embedded on its own at question time.

One SQLite file per collection (WAL: the indexing run writes while answering processes read),
tagged with the embedder and chunking ids like the Chroma collection and with `METHOD`; other
tags mean it was made for other vectors and it is ignored and rebuilt.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from .embedding import DIMENSIONS

#: How the vectors are made; a file made otherwise (sentences embedded on their own, before) is rebuilt.
METHOD = "late-chunking/first-chunk"
_LOOKUP_BATCH = 500  # ids per SELECT (SQLite's limit on bound parameters is 32,766)


class SentenceVectors:
    """The sentence-vector file at `path` for vectors made as `tags` (and `METHOD`) say. Thread-safe."""

    def __init__(self, path: Path, tags: dict[str, str]) -> None:
        self.path = Path(path)
        self.tags = json.dumps({**tags, "sentences": METHOD}, sort_keys=True)
        self._lock = threading.Lock()
        self._reader: sqlite3.Connection | None = None

    # -- the answering side -------------------------------------------------------------------------
    def get(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored vectors of the keys it holds (none when the file is missing or made otherwise)."""
        if not keys:
            return {}
        with self._lock:
            reader = self._reader or self._open_reader()
            if reader is None:
                return {}
            found: dict[str, np.ndarray] = {}
            for start in range(0, len(keys), _LOOKUP_BATCH):
                part = keys[start:start + _LOOKUP_BATCH]
                rows = reader.execute(f"SELECT key, vector FROM sentences WHERE key IN ({','.join('?' * len(part))})",
                                      part).fetchall()
                found.update((key, np.frombuffer(blob, dtype=np.float32)) for key, blob in rows)
            return found

    def _open_reader(self) -> sqlite3.Connection | None:
        if not self.path.is_file():
            return None
        try:
            reader = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            if _tags(reader) != self.tags:
                reader.close()
                return None
        except sqlite3.Error:
            return None
        self._reader = reader
        return reader

    def close(self) -> None:
        """Let go of the file (a re-index that rebuilds it is seen on the next lookup)."""
        with self._lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    # -- the indexing side --------------------------------------------------------------------------
    def writer(self, fresh: bool) -> SentenceWriter:
        """A writer for the indexing run; `fresh` (a rebuild) or other tags start from an empty file."""
        self.close()
        return SentenceWriter(self.path, self.tags, fresh)


class SentenceWriter:
    """Adds and prunes sentence vectors; each call is its own transaction, so a killed run keeps
    what it wrote. Used from one thread at a time (the indexing run's main thread, and its writer
    thread while the chunks are embedded)."""

    def __init__(self, path: Path, tags: str, fresh: bool) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS sentences (key TEXT PRIMARY KEY, vector BLOB NOT NULL)")
        self._db.execute("CREATE TABLE IF NOT EXISTS tags (value TEXT NOT NULL, complete INTEGER NOT NULL)")
        if fresh or _tags(self._db) != tags:
            with self._db:
                self._db.execute("DELETE FROM sentences")
                self._db.execute("DELETE FROM tags")
                self._db.execute("INSERT INTO tags VALUES (?, 0)", (tags,))

    @property
    def complete(self) -> bool:
        """Whether it holds the sentences of every stored chunk (False when new, cleared, or when
        the run that was filling it in stopped part-way)."""
        row = self._db.execute("SELECT complete FROM tags").fetchone()
        return bool(row and row[0])

    def set_complete(self, value: bool) -> None:
        """Record whether every stored chunk's sentences are here."""
        with self._db:
            self._db.execute("UPDATE tags SET complete = ?", (int(value),))

    def missing(self, keys: Iterable[str]) -> set[str]:
        """The keys it does not hold yet."""
        wanted = set(keys)
        ordered = list(wanted)
        for start in range(0, len(ordered), _LOOKUP_BATCH):
            part = ordered[start:start + _LOOKUP_BATCH]
            rows = self._db.execute(f"SELECT key FROM sentences WHERE key IN ({','.join('?' * len(part))})", part)
            wanted -= {key for (key,) in rows}
        return wanted

    def add(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Store vectors under their keys."""
        assert vectors.shape == (len(keys), DIMENSIONS)
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO sentences VALUES (?, ?)",
                                 [(k, np.asarray(v, dtype=np.float32).tobytes()) for k, v in zip(keys, vectors)])

    def keep_only(self, keys: Iterable[str]) -> int:
        """Drop every vector whose key is not in `keys` (sentences of removed chunks); returns how many."""
        keep = set(keys)
        return self.discard([key for (key,) in self._db.execute("SELECT key FROM sentences") if key not in keep])

    def discard(self, keys: Iterable[str]) -> int:
        """Drop the vectors of these keys; returns how many were asked for."""
        gone = [(key,) for key in keys]
        with self._db:
            self._db.executemany("DELETE FROM sentences WHERE key = ?", gone)
        return len(gone)

    def close(self) -> None:
        """Finish writing."""
        self._db.close()


def _tags(db: sqlite3.Connection) -> str | None:
    try:
        row = db.execute("SELECT value FROM tags").fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row else None
