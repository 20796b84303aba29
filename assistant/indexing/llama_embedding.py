"""The embedder as a llama-index `BaseEmbedding`, for llama-index pipelines (`Settings.embed_model`).

Kept apart from `embedding.py` because importing llama-index costs ~1.4 s at start-up, which
the assistant's own paths (index, ask, chat) do not need.
"""

from __future__ import annotations

from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding
from pydantic import PrivateAttr

from .embedding import EMBEDDER_ID, MiniLMEncoder


class MiniLMEmbedding(BaseEmbedding):
    """llama-index adapter for `MiniLMEncoder`, so the embedder plugs into llama-index pipelines."""

    model_name: str = EMBEDDER_ID
    _encoder: MiniLMEncoder = PrivateAttr()

    def __init__(self, encoder: MiniLMEncoder | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._encoder = encoder or MiniLMEncoder()

    @property
    def encoder(self) -> MiniLMEncoder:
        return self._encoder

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._encoder.encode([query])[0].tolist()

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._encoder.encode([text])[0].tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._encoder.encode(texts).tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)
