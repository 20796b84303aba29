"""What every answerer implements (`Answerer`) and what it may be given besides its settings
(`AnswerContext`). The registry of backends is in `answering/__init__.py`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from ..models import Source
from ..settings import Settings
from .evidence import EvidenceAssessor


@dataclass(frozen=True)
class AnswerContext:
    """What the pipeline shares with answerers that need more than settings: its evidence
    assessor (the embedder, the collection's term statistics and the confidence model)."""

    assessor: EvidenceAssessor


class Answerer(Protocol):
    """A backend that writes an answer from numbered sources."""

    name: str

    @classmethod
    def configured(cls, settings: Settings) -> bool:
        """Whether the settings make this backend usable (an endpoint, a key...)."""
        ...

    @classmethod
    def create(cls, settings: Settings, context: AnswerContext) -> Answerer:
        """The answerer for these settings."""
        ...

    def fit_sources(self, question: str, sources: list[Source]) -> list[Source]:
        """The sources the backend will be shown: all of them, or (LLMs) those that fit its context
        window, so markers are checked against what it actually saw."""
        ...

    def stream(self, question: str, sources: list[Source]) -> Iterator[str]:
        """Yield the answer text in pieces; the fixed refusal sentence when sources don't answer."""
        ...
