"""Answerers turn a question and numbered sources into answer text with `[n]` markers.

Every answerer implements `Answerer`: `stream()` yields text pieces; the pipeline joins them,
validates the markers and scores support, so the Answer object is the same for every backend.
An answerer with a limited context window (the LLM backends) also has
`fit_sources(question, sources) -> list[Source]`: the pipeline then keeps only the sources it
returns, so markers are checked against what the model was actually shown.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from ..models import Source


class Answerer(Protocol):
    """A backend that writes an answer from numbered sources."""

    name: str

    def stream(self, question: str, sources: list[Source]) -> Iterator[str]:
        """Yield the answer text in pieces; the fixed refusal sentence when sources don't answer."""
        ...
