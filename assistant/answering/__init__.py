"""Answerers turn a question and numbered sources into answer text with `[n]` markers.

Every answerer implements `Answerer` (base.py): `stream()` yields text pieces; the pipeline joins
them, validates the markers and scores support, so the Answer is the same for every backend.
`BACKENDS` is the one list of them: a new backend is a module with its class plus one line here.
"""

from __future__ import annotations

from ..errors import ConfigError
from ..settings import Settings
from .base import AnswerContext, Answerer
from .extractive import ExtractiveAnswerer
from .ollama_backend import OllamaAnswerer
from .openai_backend import OpenAIAnswerer

#: Every backend by name; `auto` picks the first configured one after extractive (an LLM if any).
BACKENDS: dict[str, type[Answerer]] = {
    "extractive": ExtractiveAnswerer,
    "openai": OpenAIAnswerer,
    "ollama": OllamaAnswerer,
}
AUTO = "auto"


def backend_names() -> list[str]:
    """What `--backend` and ASSISTANT_BACKEND accept."""
    return [*BACKENDS, AUTO]


def configured_backends(settings: Settings) -> list[str]:
    """Backends usable with these settings, extractive (always usable) first."""
    return [name for name, backend in BACKENDS.items() if backend.configured(settings)]


def resolve(name: str, settings: Settings) -> str:
    """The backend a name stands for: `auto` is the first configured LLM, else extractive."""
    if name != AUTO:
        return name
    configured = configured_backends(settings)
    return configured[1] if len(configured) > 1 else configured[0]


def create(name: str, settings: Settings, context: AnswerContext) -> Answerer:
    """The answerer of a backend name (`auto` resolved)."""
    name = resolve(name, settings)
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r}; choose one of {', '.join(backend_names())}")
    return BACKENDS[name].create(settings, context)


__all__ = ["AUTO", "BACKENDS", "AnswerContext", "Answerer", "backend_names", "configured_backends", "create",
           "resolve"]
