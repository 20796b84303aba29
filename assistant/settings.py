"""One settings object, read from keyword arguments and environment variables.

Every environment variable the package reads is a field here, with its name and help text in
the field's metadata: the CLI flags and the README's configuration table are made from them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import Field, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError

RETRIEVAL_MODES = ("hybrid", "dense", "bm25")
MAX_TOP_K = 50


def _backend_names() -> list[str]:
    from .answering import backend_names  # the registry imports the backends, which import settings

    return backend_names()


def _setting(default: Any, env: str | None = None, help: str = "", *, flag: bool = False, shown: str | None = None,
             choices: Callable[[], Any] | None = None, secret: bool = False) -> Any:
    """A settings field: its environment variable, help text, whether the CLI has a flag for it, how
    the README shows its default, the values it accepts; a secret is left out of repr()."""
    return field(default=default, repr=not secret,
                 metadata={"env": env, "help": help, "flag": flag, "shown": shown, "choices": choices})


@dataclass(frozen=True)
class Settings:
    """Everything that can be configured. Build with `Settings.from_env(**overrides)`."""

    index_dir: Path = _setting(Path("index"), "ASSISTANT_INDEX_DIR",
                               "where the embedded Chroma store and the keyword index live", flag=True,
                               shown="`./index`")
    chroma_url: str | None = _setting(None, "ASSISTANT_CHROMA_URL", "use a Chroma server (e.g. "
                                      "`http://127.0.0.1:8000`) instead of the embedded store", flag=True)
    collection: str = "papers"
    backend: str = _setting("extractive", "ASSISTANT_BACKEND", "`extractive`, `openai`, `ollama`, or `auto` "
                            "(first configured LLM, else extractive)", flag=True, choices=_backend_names)
    top_k: int = _setting(5, "ASSISTANT_TOP_K", f"papers retrieved per question (1–{MAX_TOP_K})", flag=True)
    retrieval: str = _setting("hybrid", "ASSISTANT_RETRIEVAL", "`hybrid` (dense + BM25, fused), `dense` or `bm25`",
                              flag=True, choices=lambda: RETRIEVAL_MODES)
    max_question_chars: int = 2000
    chunk_size: int = 200
    chunk_overlap: int = 30
    openai_api_key: str | None = _setting(None, "OPENAI_API_KEY", "key for OpenAI; optional for local "
                                          "OpenAI-compatible servers", secret=True)
    openai_base_url: str | None = _setting(None, "OPENAI_BASE_URL", "any OpenAI-compatible server (vLLM, "
                                           "llama.cpp server, LM Studio, Ollama's `/v1`)", shown="OpenAI")
    openai_model: str = _setting("gpt-4o-mini", "ASSISTANT_OPENAI_MODEL", "model name for the `openai` backend")
    ollama_host: str | None = _setting(None, "OLLAMA_HOST", "Ollama server, e.g. `http://127.0.0.1:11434`")
    ollama_api_key: str | None = _setting(None, "OLLAMA_API_KEY", "bearer token for an Ollama server that "
                                          "asks for one", secret=True)
    ollama_model: str = _setting("llama3.2", "ASSISTANT_OLLAMA_MODEL", "model name for the `ollama` backend")
    llm_timeout_s: float = _setting(60.0, "ASSISTANT_LLM_TIMEOUT", "seconds to connect and to wait for each "
                                    "piece of an LLM reply")
    llm_max_retries: int = _setting(2, "ASSISTANT_LLM_MAX_RETRIES", "retries (with backoff) after HTTP 429 / 503")
    llm_context_tokens: int | None = _setting(None, "ASSISTANT_LLM_CONTEXT_TOKENS", "the model's context window; "
                                              "sources are trimmed to fit (tiktoken count)",
                                              shown="the server's (`/v1/models`, `/props`), else `8192`")
    llm_temperature: float = _setting(0.0, "ASSISTANT_LLM_TEMPERATURE", "sampling temperature sent to the LLM "
                                      "(0: the same question gets the same answer)")
    llm_max_tokens: int = _setting(768, "ASSISTANT_LLM_MAX_TOKENS", "most tokens the LLM may write (at most a "
                                   "quarter of the context window); sent as `max_tokens`")
    llm_stream: bool = _setting(True, "ASSISTANT_LLM_STREAM", "`0` asks the LLM for one reply instead of a stream")
    extra_paths: tuple[Path, ...] = ()
    include_bundled: bool = _setting(True, "ASSISTANT_INCLUDE_BUNDLED",
                                     "`0` indexes only your own files, not the bundled pages")
    uploads_dir: Path | None = _setting(None, "ASSISTANT_UPLOADS_DIR", "where files added in the chat are kept; "
                                        "every indexing run reads them, `--rebuild` keeps them",
                                        shown="`<index dir>/uploads`")
    chat_auth: str | None = _setting(None, "ASSISTANT_CHAT_AUTH", "`user:password` login for the chat",
                                     secret=True)
    embed_threads: int = _setting(0, "ASSISTANT_EMBED_THREADS", "ONNX Runtime threads for the embedder",
                                  shown="CPU count")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, overridden by environment variables, overridden by keyword arguments."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            var = f.metadata.get("env")
            raw = env.get(var) if var else None
            if raw:
                try:
                    values[f.name] = _coerce(f.type, raw)
                except ValueError as exc:
                    raise ConfigError(f"{var}={raw!r} cannot be used: {exc}") from None
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
        """Raise ConfigError on a setting that cannot work."""
        for f in fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices():
                raise ConfigError(f"unknown {f.name.replace('_', ' ')} {getattr(self, f.name)!r}; "
                                  f"choose one of {', '.join(choices())}")
        if not 1 <= self.top_k <= MAX_TOP_K:
            raise ConfigError(f"top_k must be between 1 and {MAX_TOP_K}, got {self.top_k}")
        if self.llm_timeout_s <= 0 or self.llm_max_retries < 0 or (self.llm_context_tokens or 256) < 256:
            raise ConfigError("llm_timeout_s must be > 0, llm_max_retries >= 0 and llm_context_tokens >= 256")
        if not 0 <= self.llm_temperature <= 2 or self.llm_max_tokens < 16:
            raise ConfigError("llm_temperature must be between 0 and 2 and llm_max_tokens at least 16")
        if self.embed_threads < 0:
            raise ConfigError(f"embed_threads must be 0 (one per CPU) or more, got {self.embed_threads}")

    @property
    def uploads_folder(self) -> Path:
        """Where chat uploads are kept (`uploads_dir`, else `uploads` in the index folder)."""
        return Path(self.uploads_dir or Path(self.index_dir) / "uploads")

    @property
    def chat_login(self) -> tuple[str, str] | None:
        """The chat's (user, password) from `chat_auth`, or None; checked only when the chat starts."""
        if not self.chat_auth:
            return None
        user, sep, password = self.chat_auth.partition(":")
        if not sep or not user or not password:
            raise ConfigError(f"{env_var('chat_auth')} must look like user:password")
        return user, password


def env_var(name: str) -> str:
    """The environment variable of a setting."""
    return str(_field(name).metadata["env"])


def cli_flags() -> list[Field[Any]]:
    """The settings that have a CLI flag (`--index-dir` for index_dir, ...)."""
    return [f for f in fields(Settings) if f.metadata.get("flag")]


def config_table() -> list[str]:
    """The README's configuration table (a test keeps the README in step with it)."""
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for f in fields(Settings):
        if not f.metadata.get("env"):
            continue
        name = f"`{f.metadata['env']}`" + (f" (`--{f.name.replace('_', '-')}`)" if f.metadata["flag"] else "")
        rows.append(f"| {name} | {f.metadata['shown'] or _shown(f.default)} | {f.metadata['help']} |")
    return rows


def _field(name: str) -> Field[Any]:
    return next(f for f in fields(Settings) if f.name == name)


def _shown(default: Any) -> str:
    if default is None:
        return "unset"
    if isinstance(default, bool):
        return f"`{int(default)}`"
    return f"`{default:g}`" if isinstance(default, float) else f"`{default}`"


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
