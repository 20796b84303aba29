"""The `ollama` answerer: a local (or remote) Ollama server via OLLAMA_HOST, streaming NDJSON."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import closing

import httpx
import ollama

from ..errors import BackendError
from ..settings import Settings
from .llm import ChatAnswerer, Messages, RateLimited, one_line

OLLAMA_URL = "http://127.0.0.1:11434"


class OllamaAnswerer(ChatAnswerer):
    """Answers with Ollama's `/api/chat` through the official `ollama` client."""

    name = "ollama"

    def __init__(self, settings: Settings) -> None:
        host = settings.ollama_host or OLLAMA_URL
        super().__init__(settings, settings.ollama_model, host)
        self.client = ollama.Client(host=host, timeout=self.timeout_s)
        if key := os.environ.get("OLLAMA_API_KEY"):  # the client sends it as a bearer token
            self.secrets.append(key)
        # Ollama's default window is small and it cuts prompts silently: ask for ours.
        self.options = {"num_ctx": self.context_tokens, "temperature": 0}

    def _complete(self, messages: Messages) -> Iterator[str]:
        try:
            if self.streaming:
                parts = self.client.chat(self.model, messages, stream=True, options=self.options)
                with closing(parts):  # closes the HTTP stream if the reader stops early
                    for part in parts:
                        yield part.message.content or ""
                return
            yield self.client.chat(self.model, messages, stream=False, options=self.options).message.content or ""
        except ollama.ResponseError as exc:
            if exc.status_code in (429, 503):
                raise RateLimited(f"HTTP {exc.status_code}: {one_line(exc.error)}") from exc
            if exc.status_code == -1:  # an error line inside the stream
                raise BackendError(f"{self.where} reported an error: {one_line(exc.error)}") from exc
            hint = f" (try `ollama pull {self.model}`)" if exc.status_code == 404 else ""
            raise BackendError(f"{self.where} returned HTTP {exc.status_code}: {one_line(exc.error)}{hint}") from exc
        except httpx.TimeoutException as exc:
            raise BackendError(f"{self.where} did not answer within {self.timeout_s:g} s "
                               "(ASSISTANT_LLM_TIMEOUT)") from exc
        except (ConnectionError, httpx.ConnectError) as exc:
            raise BackendError(f"cannot reach {self.where}: is `ollama serve` running there? (OLLAMA_HOST)") from exc
        except httpx.HTTPError as exc:
            raise BackendError(f"lost the connection to {self.where}: {one_line(exc)}") from exc
        except ValueError as exc:  # JSON that does not parse, or not the shape of a chat reply
            raise BackendError(f"{self.where} sent a reply that is not a chat response: {one_line(exc, 160)}") from exc
