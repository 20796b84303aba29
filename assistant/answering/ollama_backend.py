"""The `ollama` answerer: a local (or remote) Ollama server via OLLAMA_HOST, streaming NDJSON."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing

import httpx

from ..errors import BackendError
from ..settings import Settings
from .base import AnswerContext
from .llm import ChatAnswerer, Messages, RateLimited, ReplyEnd, one_line

OLLAMA_URL = "http://127.0.0.1:11434"


class OllamaAnswerer(ChatAnswerer):
    """Answers with Ollama's `/api/chat` through the official `ollama` client."""

    name = "ollama"

    @classmethod
    def create(cls, settings: Settings, context: AnswerContext) -> OllamaAnswerer:
        """The backend for these settings (an LLM needs nothing from the context)."""
        return cls(settings)

    @classmethod
    def configured(cls, settings: Settings) -> bool:
        """Usable once OLLAMA_HOST names a server."""
        return bool(settings.ollama_host)

    def __init__(self, settings: Settings) -> None:
        import ollama  # imported when the backend is used: it costs ~0.2 s

        host = settings.ollama_host or OLLAMA_URL
        super().__init__(settings, settings.ollama_model, host)
        headers = {}
        if key := settings.ollama_api_key:
            headers["Authorization"] = f"Bearer {key}"
            self.secrets.append(key)
        self.client = ollama.Client(host=host, timeout=self.timeout_s, headers=headers)
        # Ollama's default window is small and it cuts prompts silently: ask for ours (Ollama sets
        # the window to what is asked, so there is nothing to read from the server).
        self.options = {"num_ctx": self.context_tokens, "temperature": self.temperature,
                        "num_predict": self.max_tokens}

    def _complete(self, messages: Messages, end: ReplyEnd) -> Iterator[str]:
        import ollama

        try:
            if self.streaming:
                parts = self.client.chat(self.model, messages, stream=True, options=self.options)
                # closes the HTTP stream if the reader stops early (a generator, typed as an Iterator)
                with closing(parts):  # type: ignore[type-var]
                    for part in parts:
                        if part.done:
                            end.finish = part.done_reason or "stop"
                        yield part.message.content or ""
                return
            reply = self.client.chat(self.model, messages, stream=False, options=self.options)
            end.finish = reply.done_reason or "stop"
            yield reply.message.content or ""
        except ollama.ResponseError as exc:
            if exc.status_code in (429, 503):
                raise RateLimited(f"HTTP {exc.status_code}: {one_line(exc.error)}") from exc
            if exc.status_code == -1:  # an error line inside the stream
                raise BackendError(f"{self.where} reported an error: {one_line(exc.error)}") from exc
            hint = f" (try `ollama pull {self.model}`)" if exc.status_code == 404 else ""
            raise BackendError(f"{self.where} returned HTTP {exc.status_code}: {one_line(exc.error)}{hint}") from exc
        except httpx.TimeoutException as exc:
            raise self.timed_out() from exc
        except (ConnectionError, httpx.ConnectError) as exc:
            raise BackendError(f"cannot reach {self.where}: is `ollama serve` running there? (OLLAMA_HOST)") from exc
        except httpx.HTTPError as exc:
            raise BackendError(f"lost the connection to {self.where}: {one_line(exc)}") from exc
        except ValueError as exc:  # JSON that does not parse, or not the shape of a chat reply
            raise BackendError(f"{self.where} sent a reply that is not a chat response: {one_line(exc, 160)}") from exc
