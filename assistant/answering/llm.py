"""What the LLM answerers share: the prompt (from `prompts/`), fitting the sources into the context
window (the server's, when it says), bounded retries on rate limits, a one-line error for every
failure with secrets cut out of it, and what a reply's finish reason means.

A backend subclasses `ChatAnswerer` and implements `_complete(messages, end)`, which yields text
deltas, records the finish reason in `end`, and turns its client's exceptions into `BackendError`
(or `RateLimited`, which is retried).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Generator, Iterator
from contextlib import closing
from dataclasses import dataclass, replace
from functools import lru_cache
from urllib.parse import urlsplit

import tiktoken

from ..errors import BackendError
from ..models import Source
from ..settings import Settings
from .citations import CUT_MARK, REFUSAL
from .prompts import load_prompt, render

DEFAULT_CONTEXT_TOKENS = 8192  # the window when neither the setting nor the server says
FORMAT_TOKENS = 16           # chat-format tokens around the messages (approximate)
MIN_SOURCE_TOKENS = 48       # a source cut shorter than this is left out instead
SOURCE_SEPARATOR = "\n\n"
FIRST_RETRY_DELAY_S = 0.5
MAX_RETRY_DELAY_S = 8.0
MAX_RETRY_AFTER_S = 30.0     # a server asking for a longer wait gets no retry
MIN_SECRET_CHARS = 8         # shorter "keys" (OPENAI_API_KEY=x) are placeholders: cutting them mangles text

Messages = list[dict[str, str]]


class RateLimited(BackendError):
    """The endpoint asked us to slow down (HTTP 429, or 503 while busy); worth a retry."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@lru_cache(maxsize=1)
def _encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding("cl100k_base")


def count_tokens(text: str) -> int:
    """Token count with cl100k_base: exact for OpenAI's older models, an estimate for others."""
    return len(_encoding().encode(text, disallowed_special=()))


def truncate_tokens(text: str, limit: int) -> str:
    """`text` cut to about `limit` tokens at a word boundary, marked with an ellipsis."""
    tokens = _encoding().encode(text, disallowed_special=())
    if len(tokens) <= limit:
        return text
    cut = _encoding().decode(tokens[: max(limit - 3, 1)])  # room for the ellipsis
    head, _, _ = cut.rpartition(" ")
    return (head or cut).rstrip(" ,;:") + " …"


def one_line(text: object, limit: int = 300) -> str:
    """A message squeezed onto one line and shortened, for error text."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _values(question: str, sources_text: str) -> dict[str, str]:
    refusal_rule = render(load_prompt("refusal"), refusal=REFUSAL)
    return {"question": question, "sources": sources_text, "refusal": REFUSAL, "refusal_rule": refusal_rule}


def source_block(source: Source) -> str:
    """One numbered source as the model sees it (prompts/source.md)."""
    return render(load_prompt("source"), n=source.n, title=source.title, text=source.text,
                  paper_id=source.paper_id)


def build_messages(question: str, sources: list[Source]) -> Messages:
    """The system and user messages for a question and its numbered sources."""
    values = _values(question, SOURCE_SEPARATOR.join(source_block(s) for s in sources))
    return [{"role": "system", "content": render(load_prompt("system"), **values)},
            {"role": "user", "content": render(load_prompt("answer"), **values)}]


def answer_room(context_tokens: int, max_tokens: int) -> int:
    """Tokens kept free for (and asked of) the answer: `max_tokens`, at most a quarter of the window."""
    return min(max_tokens, context_tokens // 4)


def fit_sources(question: str, sources: list[Source], context_tokens: int, max_tokens: int) -> list[Source]:
    """The leading sources that fit the window with the prompt and room for the answer; the last
    one that fits only in part is shortened. Raises BackendError when not even one source fits."""
    budget = context_tokens - answer_room(context_tokens, max_tokens) - FORMAT_TOKENS
    used = sum(count_tokens(m["content"]) for m in build_messages(question, []))
    fitted: list[Source] = []
    for source in sources:
        cost = count_tokens(source_block(source) + SOURCE_SEPARATOR)
        if used + cost <= budget:
            fitted.append(source)
            used += cost
            continue
        room = budget - used - count_tokens(source_block(replace(source, text="")) + SOURCE_SEPARATOR)
        if room >= MIN_SOURCE_TOKENS:
            fitted.append(replace(source, text=truncate_tokens(source.text, room)))
        break
    if sources and not fitted:
        raise BackendError(
            f"the context window of {context_tokens} tokens (ASSISTANT_LLM_CONTEXT_TOKENS) is too small for "
            f"the prompt ({used} tokens), one source and {answer_room(context_tokens, max_tokens)} tokens of answer")
    return fitted


def redact(message: str, secrets: list[str]) -> str:
    """`message` with each secret, as a whole token, replaced by `[redacted]`. Secrets shorter than
    MIN_SECRET_CHARS are placeholders, not keys: replacing them would mangle ordinary words."""
    for secret in secrets:
        if len(secret) >= MIN_SECRET_CHARS:
            message = re.sub(rf"(?<![\w-]){re.escape(secret)}(?![\w-])", "[redacted]", message)
    return message


def retry_delay(attempt: int, retry_after: float | None) -> float:
    """Seconds to wait before retry number `attempt` (0-based): the server's Retry-After if it
    gave one, else exponential backoff from FIRST_RETRY_DELAY_S, capped at MAX_RETRY_DELAY_S."""
    if retry_after is not None:
        return max(0.0, retry_after)
    return min(FIRST_RETRY_DELAY_S * 2**attempt, MAX_RETRY_DELAY_S)


@dataclass
class ReplyEnd:
    """How a reply ended, recorded by `_complete`: the finish reason the server gave ('stop',
    'length', ...), or None when the reply ended without one (a stream cut off)."""

    finish: str | None = None


class ChatAnswerer:
    """Base of the LLM answerers: prompt, context fitting, retries, empty and unfinished replies."""

    name = "llm"

    def __init__(self, settings: Settings, model: str, endpoint: str) -> None:
        self.model = model
        url = urlsplit(endpoint)
        self.endpoint = url._replace(netloc=url.netloc.rpartition("@")[2]).geturl()  # shown in messages
        #: Never shown: an API key (added by the backend) and any password in the URL.
        self.secrets = [s for s in (url.password,) if s]
        self.timeout_s = settings.llm_timeout_s
        self.max_retries = max(0, settings.llm_max_retries)
        self.streaming = settings.llm_stream
        self.temperature = settings.llm_temperature
        self.max_tokens_setting = settings.llm_max_tokens
        self._context_tokens = settings.llm_context_tokens  # None: ask the server on first use
        self._window_lock = threading.Lock()

    @property
    def where(self) -> str:
        """How error messages name this backend: kind, URL and model."""
        return f"the {self.name} endpoint {self.endpoint} (model {self.model})"

    @property
    def context_tokens(self) -> int:
        """The context window: the setting, else what the server reports (asked once it answers),
        else DEFAULT_CONTEXT_TOKENS."""
        with self._window_lock:
            if self._context_tokens is not None:
                return self._context_tokens
            try:
                self._context_tokens = self._server_context_tokens() or DEFAULT_CONTEXT_TOKENS
            except OSError:  # not reachable now: the request itself will say so; ask again next time
                return DEFAULT_CONTEXT_TOKENS
            return self._context_tokens

    @property
    def max_tokens(self) -> int:
        """The `max_tokens` sent: ASSISTANT_LLM_MAX_TOKENS, at most a quarter of the window."""
        return answer_room(self.context_tokens, self.max_tokens_setting)

    def _server_context_tokens(self) -> int | None:
        """The window the server reports, or None; raises OSError when it cannot be reached."""
        return None

    def fit_sources(self, question: str, sources: list[Source]) -> list[Source]:
        """The sources this backend will show the model (see `fit_sources`)."""
        return fit_sources(question, sources, self.context_tokens, self.max_tokens_setting)

    def timed_out(self) -> BackendError:
        """The error for a reply that did not come in time, saying what to raise."""
        whole = "" if self.streaming else (", or leave ASSISTANT_LLM_STREAM on (then the limit is per piece "
                                           "of the reply, not for the whole of it)")
        return BackendError(f"{self.where} did not answer within {self.timeout_s:g} s; a model on a CPU can need "
                            f"minutes: raise ASSISTANT_LLM_TIMEOUT{whole}")

    def stream(self, question: str, sources: list[Source]) -> Iterator[str]:
        """Yield the model's answer as it arrives; retries rate limits before the first delta. A reply
        cut at the length limit ends with CUT_MARK; one cut off without a finish reason is an error.
        Closing this generator closes the request, so the server can stop generating."""
        messages = build_messages(question, self.fit_sources(question, sources))
        for attempt in range(self.max_retries + 1):
            text = ""
            end = ReplyEnd()
            try:
                with closing(self._redacted(messages, end)) as deltas:
                    for delta in deltas:
                        if delta:
                            text += delta
                            yield delta
            except RateLimited as exc:
                if text or attempt == self.max_retries:
                    raise BackendError(f"{self.where} is rate-limiting requests; gave up after "
                                       f"{attempt + 1} attempt(s): {exc}") from None
                delay = retry_delay(attempt, exc.retry_after)
                if delay > MAX_RETRY_AFTER_S:
                    raise BackendError(f"{self.where} is rate-limiting requests and asks to wait "
                                       f"{delay:.0f} s: {exc}") from None
                time.sleep(delay)
                continue
            if end.finish is None and self.streaming:
                raise BackendError(self._unfinished(text))
            if not text.strip():
                raise BackendError(f"{self.where} returned an empty answer")
            if end.finish == "length":
                yield CUT_MARK
            return

    def _unfinished(self, text: str) -> str:
        """What a stream that stopped without a finish reason means."""
        if text.strip():
            return f"{self.where} stopped the stream before the answer was finished (did the server stop?)"
        return (f"{self.where} ended the stream without an answer; a server does this when the prompt does not fit "
                f"its context window: the sources were fitted to {self.context_tokens} tokens, so set "
                "ASSISTANT_LLM_CONTEXT_TOKENS to the server's window (llama.cpp: its --n_ctx)")

    def context_hint(self) -> str:
        """What to add to a server's 'context length exceeded' error."""
        return (f" (the sources were fitted to {self.context_tokens} tokens: set ASSISTANT_LLM_CONTEXT_TOKENS "
                "to the server's context window)")

    def _redacted(self, messages: Messages, end: ReplyEnd) -> Generator[str, None, None]:
        """`_complete`, with the secrets cut out of its errors (a server may echo the key back)."""
        try:
            yield from self._complete(messages, end)
        except BackendError as exc:
            message = redact(str(exc), self.secrets)
            if message == str(exc):
                raise
            exc.args = (message,)
            raise exc from None  # the client's own exception would still carry the secret

    def _complete(self, messages: Messages, end: ReplyEnd) -> Iterator[str]:
        """Send the chat request, yield text deltas and record how the reply ended in `end`;
        implemented by each backend."""
        raise NotImplementedError
