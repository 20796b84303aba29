"""The `openai` answerer: OpenAI, or any server that speaks its chat-completions API (vLLM,
llama.cpp server, LM Studio, ...) via OPENAI_BASE_URL. Streams with server-sent events."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, cast

from ..errors import BackendError
from ..settings import Settings
from .base import AnswerContext
from .llm import ChatAnswerer, Messages, RateLimited, one_line

if TYPE_CHECKING:  # the SDK is imported when the backend is used: it costs ~0.5 s
    import openai
    from openai.types.chat import ChatCompletionMessageParam

OPENAI_URL = "https://api.openai.com/v1"
_HINTS = {401: " (check OPENAI_API_KEY)", 403: " (check OPENAI_API_KEY)",
          404: " (check OPENAI_BASE_URL, which usually ends in /v1, and ASSISTANT_OPENAI_MODEL)"}


class OpenAIAnswerer(ChatAnswerer):
    """Answers with a chat-completions endpoint through the official `openai` client."""

    name = "openai"

    @classmethod
    def create(cls, settings: Settings, context: AnswerContext) -> OpenAIAnswerer:
        """The backend for these settings (an LLM needs nothing from the context)."""
        return cls(settings)

    @classmethod
    def configured(cls, settings: Settings) -> bool:
        """Usable with a key (OpenAI) or a base URL (a compatible server)."""
        return bool(settings.openai_api_key or settings.openai_base_url)

    def __init__(self, settings: Settings) -> None:
        import openai

        base_url = settings.openai_base_url or OPENAI_URL
        super().__init__(settings, settings.openai_model, base_url)
        api_key = settings.openai_api_key
        if not api_key:
            if not settings.openai_base_url:
                raise BackendError("the openai backend needs OPENAI_API_KEY (for api.openai.com) or "
                                   "OPENAI_BASE_URL (for an OpenAI-compatible server)")
            api_key = "unused"  # local servers ignore it, but the client requires one
        else:
            self.secrets.append(api_key)
        # Retries are ours (see ChatAnswerer.stream), so that both backends behave alike.
        self.client = openai.OpenAI(api_key=api_key, base_url=base_url, timeout=self.timeout_s, max_retries=0)

    def _complete(self, messages: Messages) -> Iterator[str]:
        # Our messages are plain role/content dicts; the SDK types them as one TypedDict per role.
        sent = cast("list[ChatCompletionMessageParam]", messages)
        with self._errors():
            if self.streaming:
                with self.client.chat.completions.create(model=self.model, messages=sent, stream=True) as events:
                    for chunk in events:
                        yield self._text(chunk, "delta")
                return
            completion = self.client.chat.completions.create(model=self.model, messages=sent, stream=False)
            yield self._text(completion, "message")

    def _list_models(self) -> list[str]:
        with self._errors():
            return [model.id for model in self.client.models.list()]

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """The client's exceptions as BackendError (RateLimited for 429 and 503), each one line."""
        import openai

        try:
            yield
        except openai.RateLimitError as exc:
            raise RateLimited(_status_message(exc), _retry_after(exc)) from exc
        except openai.APITimeoutError as exc:
            raise BackendError(f"{self.where} did not answer within {self.timeout_s:g} s "
                               "(ASSISTANT_LLM_TIMEOUT)") from exc
        except openai.APIConnectionError as exc:
            raise BackendError(f"cannot reach {self.where}: {one_line(exc.__cause__ or exc)}") from exc
        except openai.APIStatusError as exc:
            if exc.status_code == 503:
                raise RateLimited(_status_message(exc), _retry_after(exc)) from exc
            hint = _HINTS.get(exc.status_code, "")
            raise BackendError(f"{self.where} returned {_status_message(exc)}{hint}") from exc
        except openai.OpenAIError as exc:
            raise BackendError(f"{self.where} reported an error: {one_line(exc)}") from exc
        except ValueError as exc:  # JSON that does not parse
            raise BackendError(f"{self.where} sent a reply that is not valid JSON: {one_line(exc)}") from exc

    def _text(self, reply: object, field: str) -> str:
        """`choices[0].<field>.content` of a completion ('message') or a stream chunk ('delta').

        The client does not validate replies, so a server can hand us any JSON shape."""
        choices = getattr(reply, "choices", None)
        if not isinstance(choices, list):
            raise BackendError(f"{self.where} sent a reply that is not a chat completion: {one_line(reply, 120)}")
        content = getattr(getattr(choices[0], field, None), "content", None) if choices else None
        return content if isinstance(content, str) else ""


def _status_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        body = body.get("message", body)
    return f"HTTP {exc.status_code}: {one_line(body or exc.message)}"


def _retry_after(exc: openai.APIStatusError) -> float | None:
    value = exc.response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
