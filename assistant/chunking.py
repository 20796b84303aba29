"""Token-aware chunks of each abstract (llama-index SentenceSplitter, tiktoken counts).

Each chunk's embedded text starts with the paper title, so a chunk from the middle of an
abstract still says which paper it is about. Sizes keep title + chunk inside the embedder's
256-token window.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

from . import offline  # noqa: F401  (sets TIKTOKEN_CACHE_DIR before tiktoken loads)
from .models import Chunk, Paper

TOKENIZER_NAME = "cl100k_base"


@lru_cache(maxsize=4)
def _splitter(chunk_size: int, chunk_overlap: int):
    import tiktoken
    from llama_index.core.node_parser import SentenceSplitter

    encoding = tiktoken.get_encoding(TOKENIZER_NAME)
    return SentenceSplitter(chunk_size=chunk_size, chunk_overlap=chunk_overlap,
                            tokenizer=encoding.encode, paragraph_separator="\n\n")


def chunking_id(chunk_size: int, chunk_overlap: int) -> str:
    """Identifies the chunking settings; stored with the index to detect a change."""
    return f"sentence-splitter/{TOKENIZER_NAME}/size{chunk_size}/overlap{chunk_overlap}/title-prefix"


def embed_text(title: str, text: str) -> str:
    """The text the embedder sees for a chunk: title, then the chunk."""
    return f"{title}\n{text}"


def chunk_paper(paper: Paper, chunk_size: int, chunk_overlap: int) -> list[Chunk]:
    """Split one paper's abstract into chunks with stable ids and content hashes."""
    pieces = _splitter(chunk_size, chunk_overlap).split_text(paper.abstract) or [paper.abstract]
    chunks = []
    for position, text in enumerate(pieces):
        embedded = embed_text(paper.title, text)
        digest = hashlib.sha1(embedded.encode()).hexdigest()[:16]
        chunks.append(Chunk(
            chunk_id=f"{paper.paper_id}-{position}", paper_id=paper.paper_id, title=paper.title,
            text=text, embed_text=embedded, position=position, content_hash=digest,
        ))
    return chunks


def chunk_papers(papers: list[Paper], chunk_size: int, chunk_overlap: int) -> list[Chunk]:
    """Chunks of every paper, in paper order."""
    return [c for p in papers for c in chunk_paper(p, chunk_size, chunk_overlap)]
