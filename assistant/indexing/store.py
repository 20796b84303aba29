"""The Chroma store of chunk vectors: embedded (PersistentClient) or a Chroma server (HttpClient).

The collection's metadata records the embedder and chunking settings; `IndexStore.mismatch()`
tells when the stored vectors were made with other ones, so they are never mixed.
We always pass our own embeddings: Chroma's default embedding function would download a model.
Every call to Chroma goes through `_Guarded`, so a broken index or an unreachable server is an
`IndexProblemError` with a hint, and in server mode the next call reconnects.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .. import offline  # noqa: F401
from ..errors import AssistantError, IndexProblemError
from ..models import Chunk, ScoredChunk
from .repair import forget_open_store

SCHEMA_VERSION = 1
#: The fingerprint while an indexing run writes (or after one was killed part-way).
INCOMPLETE = "incomplete"
_WRITE_BATCH = 1000
#: Seconds after its last renewal that a writer's lease on a Chroma server counts as abandoned.
LEASE_SECONDS = 300.0
SERVER_TIMEOUT_S = 30.0  # per request to a Chroma server; Chroma's own client never times out
HEALTH_SAMPLE = 64  # stored vectors read back when a store is first opened


def _client(index_dir: Path, chroma_url: str | None) -> Any:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    if chroma_url:
        url = urlparse(chroma_url if "://" in chroma_url else f"http://{chroma_url}")
        try:
            client = chromadb.HttpClient(host=url.hostname or "127.0.0.1", port=url.port or 8000,
                                         ssl=url.scheme == "https", settings=chroma_settings)
            _set_timeout(client, SERVER_TIMEOUT_S)
            client.heartbeat()
        except Exception as exc:  # chromadb raises several types for an unreachable server
            raise IndexProblemError(f"cannot reach the Chroma server at {chroma_url}: {exc}") from exc
        return client
    try:
        index_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise IndexProblemError(f"cannot use {index_dir} as the index folder ({exc.strerror or exc}); "
                                "point ASSISTANT_INDEX_DIR (or --index-dir) at a writable folder") from None
    try:
        return chromadb.PersistentClient(path=str(index_dir), settings=chroma_settings)
    except Exception as exc:
        forget_open_store(index_dir)  # else Chroma hands the broken client out again
        raise IndexProblemError(
            f"the index in {index_dir} cannot be opened ({type(exc).__name__}: {exc}); it may be "
            f"corrupted. Rebuild it with `assistant index --rebuild` (or delete {index_dir})."
        ) from exc


def _set_timeout(client: Any, seconds: float) -> None:
    """Give the Chroma HTTP client a timeout, so a hung server is an error rather than a hang."""
    import httpx

    session = getattr(getattr(client, "_server", None), "_session", None)
    if isinstance(session, httpx.Client):
        session.timeout = httpx.Timeout(seconds, connect=min(seconds, 5.0))


class IndexStore:
    """One Chroma collection of chunks, tagged with how its vectors were made."""

    def __init__(self, index_dir: Path, chroma_url: str | None, collection: str,
                 expected: dict[str, str]) -> None:
        self.index_dir = Path(index_dir)
        self.chroma_url = chroma_url
        self.name = collection
        self.expected = dict(expected)
        self._client = _client(self.index_dir, chroma_url)
        self._collection: Any = None
        self._checked = False

    @property
    def location(self) -> str:
        """Where the index lives, for messages."""
        return self.chroma_url or str(self.index_dir)

    def exists(self) -> bool:
        """Whether the collection exists at all."""
        try:
            return self.name in [getattr(c, "name", c) for c in self._client.list_collections()]
        except Exception as exc:
            raise self._problem(exc) from exc

    def _problem(self, exc: Exception) -> IndexProblemError:
        """The user-facing error for a failed Chroma call."""
        what = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
        self._collection = None  # fetch the collection anew on the next call
        if self.chroma_url:
            return IndexProblemError(f"the Chroma server at {self.chroma_url} failed ({what}); check that it "
                                     "is running; the next question tries again")
        return IndexProblemError(f"the index at {self.location} cannot be read ({what}); it may be corrupted. "
                                 "Rebuild it with `assistant index --rebuild`.")

    def check(self) -> None:
        """Read a sample of stored vectors back, once per store: a deleted or damaged vector
        segment (which Chroma notices only on some reads) becomes an IndexProblemError now."""
        if self._checked or not self.exists():
            return
        ids = self.collection.get(limit=HEALTH_SAMPLE, include=[])["ids"]
        got = self.collection.get(ids=ids, include=["embeddings"]) if ids else {"ids": []}
        if len(got["ids"]) != len(ids):
            raise self._problem(LookupError(f"{len(ids) - len(got['ids'])} of {len(ids)} sampled vectors missing"))
        self._checked = True

    @property
    def collection(self) -> Any:
        """The Chroma collection, created (with our tags) if missing."""
        if self._collection is None:
            try:
                self._collection = _Guarded(self._client.get_or_create_collection(
                    self.name, configuration={"hnsw": {"space": "cosine"}},
                    metadata={"schema": SCHEMA_VERSION, **self.expected},
                ), self._problem)
            except Exception as exc:
                raise self._problem(exc) from exc
        return self._collection

    def mismatch(self) -> str | None:
        """A sentence saying how the stored vectors differ from the expected ones, or None."""
        stored = self.collection.metadata or {}
        for key, value in {**self.expected, "schema": SCHEMA_VERSION}.items():
            if stored.get(key) != value:
                return f"index {key} is {stored.get(key)!r}, expected {value!r}"
        return None

    def fingerprint(self, fresh: bool = False) -> str:
        """A tag that changes whenever the stored chunks change (set by the indexer). `fresh`
        re-reads the collection, so a change by another process (server mode) is seen."""
        if fresh:
            self._collection = None
        return str((self.collection.metadata or {}).get("fingerprint", ""))

    def set_fingerprint(self, value: str) -> None:
        """Record the tag of the current contents in the collection metadata."""
        self._set_metadata("fingerprint", value)

    def sources(self) -> list[str]:
        """The corpus paths earlier runs indexed (besides the bundled pages)."""
        try:
            return [str(p) for p in json.loads((self.collection.metadata or {}).get("sources", "[]"))]
        except (TypeError, ValueError):
            return []

    def set_sources(self, sources: list[str]) -> None:
        """Remember the corpus paths, so the next run (or one after a crash) reads them again."""
        self._set_metadata("sources", json.dumps(sources))

    def _set_metadata(self, key: str, value: str) -> None:
        meta = {k: v for k, v in (self.collection.metadata or {}).items() if not k.startswith("hnsw:")}
        self.collection.modify(metadata={**meta, key: value})

    def count(self) -> int:
        """Number of chunks stored."""
        return self.collection.count()

    def reset(self) -> None:
        """Drop the collection and create it anew with the expected tags."""
        if self.exists():
            try:
                self._client.delete_collection(self.name)
            except Exception as exc:
                raise self._problem(exc) from exc
        self._collection = None
        _ = self.collection

    def stored_hashes(self) -> dict[str, str]:
        """chunk_id -> content hash of every stored chunk."""
        return {chunk_id: meta.get("content_hash", "") for chunk_id, meta in self.all_metadata()}

    def all_metadata(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """(chunk_id, metadata) of every stored chunk, read in pages."""
        total = self.count()
        for offset in range(0, total, 5000):
            got = self.collection.get(include=["metadatas"], limit=5000, offset=offset)
            for chunk_id, meta in zip(got["ids"], got["metadatas"]):
                yield chunk_id, dict(meta or {})

    def all_chunks(self) -> list[ScoredChunk]:
        """Every stored chunk (without vectors), for building the keyword index."""
        out = []
        total = self.count()
        for offset in range(0, total, 5000):
            got = self.collection.get(include=["metadatas", "documents"], limit=5000, offset=offset)
            for chunk_id, meta, doc in zip(got["ids"], got["metadatas"], got["documents"]):
                meta = meta or {}
                out.append(ScoredChunk(chunk_id, meta.get("paper_id", ""), meta.get("title", ""), doc or ""))
        return out

    def add(self, chunks: list[Chunk], embeddings: list[list[float]], paper_meta: dict[str, dict]) -> None:
        """Upsert chunks with their vectors (through llama-index's ChromaVectorStore)."""
        from llama_index.core.schema import BaseNode, TextNode
        from llama_index.vector_stores.chroma import ChromaVectorStore

        vector_store = ChromaVectorStore(chroma_collection=self.collection)
        nodes: list[BaseNode] = [
            TextNode(
                id_=c.chunk_id, text=c.text, embedding=list(map(float, e)),
                metadata={"paper_id": c.paper_id, "title": c.title, "position": c.position,
                          "content_hash": c.content_hash, **paper_meta.get(c.paper_id, {})},
                excluded_embed_metadata_keys=["paper_id", "title", "position", "content_hash"],
            )
            for c, e in zip(chunks, embeddings)
        ]
        self.delete([c.chunk_id for c in chunks])
        for start in range(0, len(nodes), _WRITE_BATCH):
            vector_store.add(nodes[start:start + _WRITE_BATCH])

    def delete(self, chunk_ids: list[str]) -> None:
        """Remove chunks by id (ids not stored are ignored)."""
        for start in range(0, len(chunk_ids), _WRITE_BATCH):
            self.collection.delete(ids=chunk_ids[start:start + _WRITE_BATCH])

    def vectors(self, chunk_ids: list[str]) -> dict[str, list[float]]:
        """Stored vectors of the given chunks (ids not stored are left out)."""
        if not chunk_ids:
            return {}
        got = self.collection.get(ids=chunk_ids, include=["embeddings"])
        return {cid: list(vec) for cid, vec in zip(got["ids"], got["embeddings"])}

    def chunks(self, chunk_ids: list[str]) -> list[ScoredChunk]:
        """The given stored chunks (text, paper, title), in the order given; ids not stored are left out."""
        if not chunk_ids:
            return []
        got = self.collection.get(ids=chunk_ids, include=["metadatas", "documents"])
        found = {cid: ScoredChunk(cid, (meta or {}).get("paper_id", ""), (meta or {}).get("title", ""), doc or "")
                 for cid, meta, doc in zip(got["ids"], got["metadatas"], got["documents"])}
        return [found[cid] for cid in chunk_ids if cid in found]

    def metadata(self, chunk_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Stored metadata of the given chunks (ids not stored are left out)."""
        if not chunk_ids:
            return {}
        got = self.collection.get(ids=chunk_ids, include=["metadatas"])
        return {cid: dict(meta or {}) for cid, meta in zip(got["ids"], got["metadatas"])}

    def nearest_ids(self, embedding: list[float], k: int) -> list[tuple[str, float]]:
        """The ids and cosine similarities of the k nearest chunks: without their texts, so asking
        for thousands stays cheap (6 ms for 1440 at 100k papers, against 330 ms with texts)."""
        if k <= 0:
            return []
        got = self.collection.query(query_embeddings=[embedding], n_results=k, include=["distances"])
        return [(cid, 1.0 - float(dist)) for cid, dist in zip(got["ids"][0], got["distances"][0])]

    def query(self, embedding: list[float], k: int) -> list[ScoredChunk]:
        """The k nearest chunks by cosine similarity."""
        if k <= 0:
            return []
        got = self.collection.query(query_embeddings=[embedding], n_results=k,
                                    include=["metadatas", "documents", "distances"])
        hits = []
        for chunk_id, meta, doc, dist in zip(got["ids"][0], got["metadatas"][0], got["documents"][0],
                                             got["distances"][0]):
            meta = meta or {}
            hits.append(ScoredChunk(chunk_id, meta.get("paper_id", ""), meta.get("title", ""), doc or "",
                                    1.0 - float(dist)))
        return hits

    # -- writer lease (server mode) -------------------------------------------------------------
    # A Chroma server is shared by processes that cannot share a file lock, so the writer holds a
    # lease: a small collection whose creation is atomic on the server. It names its owner and
    # is renewed while the run lasts, so a crashed run's lease expires.

    @property
    def _lease_name(self) -> str:
        return f"{self.name}.writer-lease"

    def acquire_lease(self, owner: str) -> str | None:
        """Take the writer lease; returns None on success, else who holds it."""
        from chromadb.errors import ChromaError

        for _ in range(2):
            try:
                self._client.create_collection(self._lease_name, embedding_function=None,
                                               metadata={"owner": owner, "renewed": time.time()})
                return None
            except ChromaError as exc:
                if "exists" not in str(exc):
                    raise self._problem(exc) from exc
            except Exception as exc:
                raise self._problem(exc) from exc
            holder = self.lease_holder()
            if holder is not None:
                return holder
            self._drop_lease()  # expired: take it over
        return self.lease_holder() or "another writer"

    def lease_holder(self) -> str | None:
        """The owner of a live writer lease, or None when nobody writes."""
        from chromadb.errors import NotFoundError

        try:
            meta = self._client.get_collection(self._lease_name, embedding_function=None).metadata or {}
        except NotFoundError:
            return None
        except Exception as exc:
            raise self._problem(exc) from exc
        if time.time() - float(meta.get("renewed", 0.0)) > LEASE_SECONDS:
            return None
        return str(meta.get("owner", "another writer"))

    def renew_lease(self, owner: str) -> None:
        """Tell other processes the lease holder is still at work."""
        try:
            lease = self._client.get_collection(self._lease_name, embedding_function=None)
            lease.modify(metadata={"owner": owner, "renewed": time.time()})
        except Exception as exc:
            raise self._problem(exc) from exc

    def release_lease(self) -> None:
        """Give the writer lease back."""
        self._drop_lease()

    def _drop_lease(self) -> None:
        from chromadb.errors import NotFoundError

        with contextlib.suppress(NotFoundError):
            self._client.delete_collection(self._lease_name)


class _Guarded:
    """A Chroma collection whose method calls raise IndexProblemError instead of Chroma's or the
    network's own exceptions (attributes such as `metadata` pass through unchanged)."""

    def __init__(self, collection: Any, problem: Any) -> None:
        self._inner = collection
        self._problem = problem

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if not callable(value):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return value(*args, **kwargs)
            except AssistantError:
                raise
            except Exception as exc:
                raise self._problem(exc) from exc
        return call
