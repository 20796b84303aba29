"""Token-aware chunks of each abstract (llama-index SentenceSplitter, tiktoken counts).

Each chunk's embedded text starts with the paper title, so a chunk from the middle of an
abstract still says which paper it is about. Sizes keep title + chunk inside the embedder's
256-token window.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path

from .. import offline  # noqa: F401  (sets TIKTOKEN_CACHE_DIR before tiktoken loads)
from ..corpus.normalize import NORMALIZER_VERSION
from ..models import Chunk, Paper

TOKENIZER_NAME = "cl100k_base"


@lru_cache(maxsize=4)
def _splitter(chunk_size: int, chunk_overlap: int):
    import tiktoken
    from llama_index.core.node_parser import SentenceSplitter

    encoding = tiktoken.get_encoding(TOKENIZER_NAME)
    return SentenceSplitter(chunk_size=chunk_size, chunk_overlap=chunk_overlap,
                            tokenizer=encoding.encode, paragraph_separator="\n\n")


def chunking_id(chunk_size: int, chunk_overlap: int) -> str:
    """Identifies the chunking settings and the text normaliser that made the chunked text; stored
    with the index to detect a change (an index built with other ones is re-built)."""
    return (f"sentence-splitter/{TOKENIZER_NAME}/size{chunk_size}/overlap{chunk_overlap}/title-prefix"
            f"/{NORMALIZER_VERSION}")


def embed_text(title: str, text: str) -> str:
    """The text the embedder sees for a chunk: title, then the chunk."""
    return f"{title}\n{text}"


def chunk_paper(paper: Paper, chunk_size: int, chunk_overlap: int) -> list[Chunk]:
    """Split one paper's abstract into chunks with stable ids and content hashes."""
    return _chunks(paper, _pieces(paper.abstract, chunk_size, chunk_overlap))


def _pieces(abstract: str, chunk_size: int, chunk_overlap: int) -> list[str]:
    return _splitter(chunk_size, chunk_overlap).split_text(abstract) or [abstract]


def _chunks(paper: Paper, pieces: list[str]) -> list[Chunk]:
    chunks = []
    for position, text in enumerate(pieces):
        embedded = embed_text(paper.title, text)
        digest = hashlib.sha1(embedded.encode()).hexdigest()[:16]
        chunks.append(Chunk(
            chunk_id=f"{paper.paper_id}-{position}", paper_id=paper.paper_id, title=paper.title,
            text=text, embed_text=embedded, position=position, content_hash=digest,
        ))
    return chunks


def chunk_papers(papers: list[Paper], chunk_size: int, chunk_overlap: int,
                 cache_file: Path | None = None) -> list[Chunk]:
    """Chunks of every paper, in paper order.

    With `cache_file`, the pieces of abstracts split before with the same settings are read
    from it instead of split again (splitting is most of a re-index's time), and the file is
    rewritten with this run's abstracts only.
    """
    cache = _read_cache(cache_file)
    used: dict[str, list[str]] = {}
    out: list[Chunk] = []
    settings = chunking_id(chunk_size, chunk_overlap)
    for paper in papers:
        key = hashlib.sha1(f"{settings}\n{paper.abstract}".encode()).hexdigest()
        pieces = used.get(key) or _valid(cache.get(key)) or _pieces(paper.abstract, chunk_size, chunk_overlap)
        used[key] = pieces
        out += _chunks(paper, pieces)
    if cache_file is not None and used != cache:
        _write_cache(cache_file, used)
    return out


def _write_cache(cache_file: Path, pieces: dict[str, list[str]]) -> None:
    """Replace the cache file atomically; a cache that cannot be written is skipped (it only saves time)."""
    tmp = cache_file.with_name(f"{cache_file.name}.{os.getpid()}.tmp")
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(pieces))
        tmp.replace(cache_file)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def _valid(pieces: object) -> list[str] | None:
    """Cached pieces if they look right (a hand-edited or damaged cache is ignored)."""
    ok = isinstance(pieces, list) and pieces and all(isinstance(p, str) for p in pieces)
    return pieces if ok else None  # type: ignore[return-value]


def _read_cache(cache_file: Path | None) -> dict[str, list[str]]:
    try:
        data = json.loads(cache_file.read_text()) if cache_file is not None else {}
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
