"""One settings object, read from keyword arguments and `ASSISTANT_*` environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

BACKENDS = ("extractive", "openai", "ollama", "auto")
RETRIEVAL_MODES = ("hybrid", "dense", "bm25")
MAX_TOP_K = 50

#: Environment variable for each setting that has one.
ENV_VARS = {
    "index_dir": "ASSISTANT_INDEX_DIR",
    "chroma_url": "ASSISTANT_CHROMA_URL",
    "backend": "ASSISTANT_BACKEND",
    "openai_model": "ASSISTANT_OPENAI_MODEL",
    "openai_base_url": "OPENAI_BASE_URL",
    "ollama_host": "OLLAMA_HOST",
    "ollama_model": "ASSISTANT_OLLAMA_MODEL",
    "top_k": "ASSISTANT_TOP_K",
    "retrieval": "ASSISTANT_RETRIEVAL",
    "llm_timeout_s": "ASSISTANT_LLM_TIMEOUT",
    "llm_max_retries": "ASSISTANT_LLM_MAX_RETRIES",
    "llm_context_tokens": "ASSISTANT_LLM_CONTEXT_TOKENS",
    "llm_stream": "ASSISTANT_LLM_STREAM",
    "include_bundled": "ASSISTANT_INCLUDE_BUNDLED",
}


@dataclass(frozen=True)
class Settings:
    """Everything that can be configured. Build with `Settings.from_env(**overrides)`."""

    index_dir: Path = Path("index")
    chroma_url: str | None = None
    collection: str = "papers"
    backend: str = "extractive"
    top_k: int = 5
    retrieval: str = "hybrid"
    max_question_chars: int = 2000
    chunk_size: int = 200
    chunk_overlap: int = 30
    openai_model: str = "gpt-4o-mini"
    openai_base_url: str | None = None
    ollama_host: str | None = None
    ollama_model: str = "llama3.2"
    llm_timeout_s: float = 60.0
    llm_max_retries: int = 2
    llm_context_tokens: int = 8192
    llm_stream: bool = True
    extra_paths: tuple[Path, ...] = field(default_factory=tuple)
    include_bundled: bool = True  # index the bundled pages; off = only your own files

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, overridden by environment variables, overridden by keyword arguments."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        types = {f.name: f.type for f in fields(cls)}
        for name, var in ENV_VARS.items():
            raw = env.get(var)
            if raw:
                try:
                    values[name] = _coerce(types[name], raw)
                except ValueError as exc:
                    raise ValueError(f"{var}={raw!r} cannot be used: {exc}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.validate()
        return settings

    def with_(self, **changes: Any) -> Settings:
        """A copy with some fields changed (None values are ignored)."""
        new = replace(self, **{k: v for k, v in changes.items() if v is not None})
        new.validate()
        return new

    def validate(self) -> None:
        """Raise ValueError on a setting that cannot work."""
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        if self.retrieval not in RETRIEVAL_MODES:
            raise ValueError(f"unknown retrieval mode {self.retrieval!r}; choose one of {', '.join(RETRIEVAL_MODES)}")
        if not 1 <= self.top_k <= MAX_TOP_K:
            raise ValueError(f"top_k must be between 1 and {MAX_TOP_K}, got {self.top_k}")
        if self.llm_timeout_s <= 0 or self.llm_max_retries < 0 or self.llm_context_tokens < 256:
            raise ValueError("llm_timeout_s must be > 0, llm_max_retries >= 0 and llm_context_tokens >= 256")


def _coerce(type_name: Any, raw: str) -> Any:
    text = str(type_name)
    if "Path" in text and "tuple" not in text:
        return Path(raw)
    if text.startswith("bool"):
        if raw.strip().lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
            raise ValueError(f"expected a yes/no value, got {raw!r}")
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if text.startswith("int"):
        return int(raw)
    if text.startswith("float"):
        return float(raw)
    return raw
