"""The `openai` answerer: OpenAI, or any server that speaks its chat-completions API (vLLM,
llama.cpp server, LM Studio, ...) via OPENAI_BASE_URL. Streams with server-sent events."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

import httpx

from ..errors import BackendError
from ..settings import Settings
from .base import AnswerContext
from .llm import ChatAnswerer, Messages, RateLimited, ReplyEnd, one_line

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

    def _server_context_tokens(self) -> int | None:
        """The window a local server reports: vLLM in `/v1/models` (`max_model_len`), llama.cpp's
        `llama-server` in `/props` (`default_generation_settings.n_ctx`). OpenAI itself says nothing."""
        if self.endpoint == OPENAI_URL:
            return None
        base = str(self.client.base_url).rstrip("/")
        headers = {"Authorization": f"Bearer {self.client.api_key}"}
        try:
            with httpx.Client(timeout=min(self.timeout_s, 10.0), headers=headers) as http:
                for url, read in ((f"{base}/models", self._window_in_models),
                                  (f"{base.removesuffix('/v1')}/props", _window_in_props)):
                    response = http.get(url)
                    if response.is_success and (window := read(response.json())):
                        return window
        except httpx.TransportError as exc:
            raise OSError(str(exc)) from exc
        except ValueError:  # not JSON: a server without these endpoints
            return None
        return None

    def _window_in_models(self, listing: Any) -> int | None:
        data = listing.get("data") if isinstance(listing, dict) else None
        models = [m for m in data if isinstance(m, dict)] if isinstance(data, list) else []
        ours = [m for m in models if m.get("id") == self.model] or models[:1]
        value = ours[0].get("max_model_len") if ours else None
        return value if isinstance(value, int) and value > 0 else None

    def _complete(self, messages: Messages, end: ReplyEnd) -> Iterator[str]:
        import openai

        # Our messages are plain role/content dicts; the SDK types them as one TypedDict per role.
        sent = cast("list[ChatCompletionMessageParam]", messages)
        options: dict[str, Any] = {"temperature": self.temperature, "max_tokens": self.max_tokens}
        started = False  # whether the reply had begun: a connection lost then is not "cannot reach"
        try:
            if self.streaming:
                with self.client.chat.completions.create(model=self.model, messages=sent, stream=True,
                                                         **options) as events:
                    for chunk in events:
                        started = True
                        yield self._text(chunk, "delta", end)
                return
            completion = self.client.chat.completions.create(model=self.model, messages=sent, stream=False, **options)
            yield self._text(completion, "message", end)
        except openai.RateLimitError as exc:
            raise RateLimited(_status_message(exc), _retry_after(exc)) from exc
        except openai.APITimeoutError as exc:
            raise self.timed_out() from exc
        except openai.APIConnectionError as exc:
            if started:
                raise BackendError(f"lost the connection to {self.where} in the middle of the answer: "
                                   f"{one_line(exc.__cause__ or exc)}") from exc
            raise BackendError(f"cannot reach {self.where}: {one_line(exc.__cause__ or exc)}") from exc
        except openai.APIStatusError as exc:
            if exc.status_code == 503:
                raise RateLimited(_status_message(exc), _retry_after(exc)) from exc
            hint = self.context_hint() if _context_exceeded(exc) else _HINTS.get(exc.status_code, "")
            raise BackendError(f"{self.where} returned {_status_message(exc)}{hint}") from exc
        except openai.OpenAIError as exc:
            raise BackendError(f"{self.where} reported an error: {one_line(exc)}") from exc
        except httpx.TimeoutException as exc:  # mid-stream: the SDK passes httpx's errors through
            raise self.timed_out() from exc
        except httpx.HTTPError as exc:
            raise BackendError(f"lost the connection to {self.where}: {one_line(exc)}") from exc
        except ValueError as exc:  # JSON that does not parse
            raise BackendError(f"{self.where} sent a reply that is not valid JSON: {one_line(exc)}") from exc

    def _text(self, reply: object, field: str, end: ReplyEnd) -> str:
        """`choices[0].<field>.content` of a completion ('message') or a stream chunk ('delta'); a
        finish reason is recorded in `end`.

        The client does not validate replies, so a server can hand us any JSON shape."""
        choices = getattr(reply, "choices", None)
        if not isinstance(choices, list):
            raise BackendError(f"{self.where} sent a reply that is not a chat completion: {one_line(reply, 120)}")
        if not choices:
            return ""
        finish = getattr(choices[0], "finish_reason", None)
        if isinstance(finish, str):
            end.finish = finish
        elif field == "message":  # a whole completion has ended, whether or not it says why
            end.finish = "stop"
        content = getattr(getattr(choices[0], field, None), "content", None)
        return content if isinstance(content, str) else ""


def _window_in_props(props: Any) -> int | None:
    settings = props.get("default_generation_settings") if isinstance(props, dict) else None
    value = settings.get("n_ctx") if isinstance(settings, dict) else None
    return value if isinstance(value, int) and value > 0 else None


def _context_exceeded(exc: openai.APIStatusError) -> bool:
    """Whether an HTTP error says the prompt does not fit the model's window (OpenAI's and
    llama-cpp-python's `context_length_exceeded`, or their wording)."""
    body = exc.body if isinstance(exc.body, dict) else {}
    return body.get("code") == "context_length_exceeded" or "context length" in str(body.get("message", exc.message))


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
