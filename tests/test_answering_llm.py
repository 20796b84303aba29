"""The `openai` and `ollama` answerers against scripted servers that speak the real wire protocols
(tests/fake_llm_servers.py), over the real index: the request we send, the Answer we build from
the reply (citations, refusals, warnings) and the one-line errors when the endpoint misbehaves."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fake_llm_servers import FakeLLMServer, Received, Reply

from assistant import Answer, Assistant, BackendError, Settings
from assistant.answering.citations import REFUSAL, drop_invalid_markers, is_refusal, markers
from assistant.answering.llm import answer_room, count_tokens, redact, retry_delay
from assistant.answering.prompts import PROMPT_DIRS, load_prompt, placeholders, render

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "How does ShadowKV cut KV-cache memory?"
PROTOCOLS = ["openai", "ollama"]


def first_sentence(text: str) -> str:
    return text.split(". ")[0].rstrip(".")


@pytest.fixture(scope="module")
def sources(assistant: Assistant) -> list:
    """What retrieval finds for QUESTION: scripted replies quote and cite these."""
    return assistant.retrieve(QUESTION)


class Fake:
    """A running fake server plus the way to ask an Assistant through it."""

    def __init__(self, protocol: str, server: FakeLLMServer, base: Assistant,
                 llm_settings: Callable[[str, str], dict[str, object]]) -> None:
        self.protocol, self.server, self.base, self.llm_settings = protocol, server, base, llm_settings

    def configure(self, **changes: object) -> Assistant:
        """An Assistant (sharing the session one's model) whose settings point at this server."""
        values = {"llm_timeout_s": 5.0, "llm_max_retries": 2, **self.llm_settings(self.protocol, self.server.url)}
        return self.base.with_settings(self.base.settings.with_(**{**values, **changes}))

    def ask(self, *replies: Reply, question: str = QUESTION, **changes: object) -> Answer:
        self.server.script(*replies)
        return self.configure(**changes).answer(question)

    @property
    def request(self) -> Received:
        assert self.server.requests, "the server got no request"
        return self.server.requests[-1]

    @property
    def endpoint(self) -> str:
        return self.server.url + ("/v1" if self.protocol == "openai" else "")


@pytest.fixture(params=PROTOCOLS)
def fake(request: pytest.FixtureRequest, assistant: Assistant, llm_settings: Callable) -> Iterator[Fake]:
    with FakeLLMServer(request.param) as server:
        yield Fake(request.param, server, assistant, llm_settings)


@pytest.fixture
def openai_fake(assistant: Assistant, llm_settings: Callable) -> Iterator[Fake]:
    with FakeLLMServer("openai") as server:
        yield Fake("openai", server, assistant, llm_settings)


def assert_one_line_error(exc: pytest.ExceptionInfo[BackendError], *parts: str) -> None:
    message = str(exc.value)
    assert "\n" not in message and len(message) < 400, message
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"


# -- answers ------------------------------------------------------------------------------------
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_cited_answer_and_the_request_sent(fake: Fake, sources: list, stream: bool) -> None:
    text = f"{first_sentence(sources[0].text)} [1]. {first_sentence(sources[1].text)} [2]."
    answer = fake.ask(Reply(text), llm_stream=stream)

    assert answer.backend == fake.protocol and not answer.refused and answer.warnings == []
    assert answer.text == text
    assert [(c.n, c.title) for c in answer.citations] == [(1, sources[0].title), (2, sources[1].title)]
    assert [s.title for s in answer.sources] == [s.title for s in sources]
    assert all(s.supported for s in answer.sentences), answer.sentences

    body = fake.request.body
    assert body["model"] == "test-model"
    assert body["stream"] is stream
    system, user = body["messages"]
    assert system["role"] == "system" and REFUSAL in system["content"]
    assert "[n]" in user["content"] and QUESTION in user["content"]
    for s in sources:
        assert f"[{s.n}] {s.title}\n{s.text}" in user["content"]
    if fake.protocol == "ollama":
        assert body["options"]["num_ctx"] == 8192
    else:
        assert fake.request.headers["authorization"] == "Bearer unused"


def test_deltas_arrive_before_the_reply_is_complete(fake: Fake) -> None:
    gate = threading.Event()
    fake.server.script(Reply("ShadowKV stores a low-rank key cache [1].", gate=gate))
    stream = fake.configure().stream(QUESTION)
    deltas = iter(stream)
    first = next(deltas)
    # The server holds the rest of the reply until the gate opens: the first delta came early.
    assert first == "ShadowKV" and fake.server.finished == 0
    gate.set()
    rest = list(deltas)
    assert "".join([first, *rest]) == stream.text == "ShadowKV stores a low-rank key cache [1]."
    assert stream.answer.citations[0].n == 1


def test_out_of_range_markers_are_dropped_and_counted(fake: Fake, sources: list) -> None:
    answer = fake.ask(Reply(f"{first_sentence(sources[0].text)} [1][7]. It also compresses keys [2, 9]."))
    assert "[7]" not in answer.text and "9" not in answer.text
    assert answer.text.endswith("compresses keys [2].")
    assert [c.n for c in answer.citations] == [1, 2]
    assert answer.warnings == ["removed 2 citation marker(s) that pointed outside the sources"]


def test_invented_title_is_flagged(fake: Fake) -> None:
    invented = "QuantumKV: Entangled Cache Compression for Long Transformers"
    answer = fake.ask(Reply(f'The paper "{invented}" cuts KV memory by 90% [1].'))
    assert f"title not in the collection: {invented!r}" in answer.warnings
    assert not answer.refused and [c.n for c in answer.citations] == [1]


def test_real_quoted_title_is_not_flagged(fake: Fake, sources: list) -> None:
    answer = fake.ask(Reply(f'"{sources[0].title}" offloads the value cache to the CPU [1].'))
    assert not any("title not in the collection" in w for w in answer.warnings)


@pytest.mark.parametrize("reply, extra", [
    (REFUSAL, False),
    ("The collection doesn’t answer this.\n", False),
    ("**The collection doesn't answer this.**", False),
    ("The collection doesn't answer this. It only covers KV caches.", True),
    ("I'm sorry, but the collection doesn't answer this.", True),
], ids=["exact", "curly", "bold", "extra-after", "wrapped"])
def test_refusal(fake: Fake, reply: str, extra: bool) -> None:
    answer = fake.ask(Reply(reply), question="What is the boiling point of water on Mars?")
    assert answer.refused and answer.text == REFUSAL and answer.citations == []
    assert answer.backend == fake.protocol
    assert answer.warnings == (["dropped text the backend added to the refusal sentence"] if extra else [])


def test_answer_without_markers_is_kept_with_a_warning(fake: Fake) -> None:
    answer = fake.ask(Reply("ShadowKV keeps a low-rank key cache on the GPU."))
    assert not answer.refused and answer.citations == []
    assert answer.warnings == ["the answer cites no source"]


# -- failures -----------------------------------------------------------------------------------
def test_http_500_is_a_one_line_error(fake: Fake) -> None:
    with pytest.raises(BackendError) as exc:
        fake.ask(Reply(status=500, error="CUDA error: out of memory\n at layer 3"))
    assert_one_line_error(exc, fake.endpoint, "test-model", "HTTP 500", "CUDA error: out of memory at layer 3")
    assert len(fake.server.requests) == 1  # a server error is not retried


def test_rate_limit_is_retried_then_answers(fake: Fake) -> None:
    limited = Reply(status=429, error="rate limit reached", headers={"Retry-After": "0"})
    answer = fake.ask(limited, Reply("ShadowKV stores a low-rank key cache [1]."))
    assert [c.n for c in answer.citations] == [1]
    assert len(fake.server.requests) == 2


def test_rate_limit_gives_up_after_the_retries(fake: Fake) -> None:
    limited = Reply(status=429, error="rate limit reached", headers={"Retry-After": "0"})
    with pytest.raises(BackendError) as exc:
        fake.ask(limited, llm_max_retries=1)
    assert_one_line_error(exc, fake.endpoint, "rate-limiting", "2 attempt(s)", "HTTP 429", "rate limit reached")
    assert len(fake.server.requests) == 2


def test_long_retry_after_is_not_waited_for(openai_fake: Fake) -> None:
    with pytest.raises(BackendError) as exc:
        openai_fake.ask(Reply(status=429, error="quota", headers={"Retry-After": "600"}))
    assert_one_line_error(exc, "asks to wait 600 s")
    assert len(openai_fake.server.requests) == 1


def test_retry_delay_backs_off_and_honours_retry_after() -> None:
    assert [retry_delay(i, None) for i in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert retry_delay(0, 3.0) == 3.0


def test_stream_that_stalls_midway_times_out(fake: Fake) -> None:
    with pytest.raises(BackendError) as exc:
        fake.ask(Reply("ShadowKV stores [1].", gate=threading.Event()), llm_timeout_s=0.5)
    assert_one_line_error(exc, "did not answer within 0.5 s")


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_malformed_json_is_a_clear_error(fake: Fake, stream: bool) -> None:
    with pytest.raises(BackendError) as exc:
        fake.ask(Reply("Partial answer", malformed=True), llm_stream=stream)
    assert_one_line_error(exc, fake.endpoint, "not valid JSON" if fake.protocol == "openai" else "not a chat response")


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_empty_completion_is_an_error(fake: Fake, stream: bool) -> None:
    with pytest.raises(BackendError) as exc:
        fake.ask(Reply(None if fake.protocol == "openai" else ""), llm_stream=stream)
    assert_one_line_error(exc, fake.endpoint, "returned an empty answer")


def test_endpoint_down(fake: Fake, free_port: Callable[[], int]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    changes = fake.llm_settings(fake.protocol, url)
    with pytest.raises(BackendError) as exc:
        fake.ask(Reply("unused"), **changes)
    assert_one_line_error(exc, "cannot reach", url)


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_reply_of_the_wrong_shape(fake: Fake, stream: bool) -> None:
    with pytest.raises(BackendError) as exc:
        fake.ask(Reply(body={"object": "list", "data": ["not a completion"]}), llm_stream=stream)
    assert_one_line_error(exc, fake.endpoint, "not a chat completion" if fake.protocol == "openai"
                          else "not a chat response")


def test_openai_unauthorised_names_the_key(openai_fake: Fake) -> None:
    with pytest.raises(BackendError) as exc:
        openai_fake.ask(Reply(status=401, error="Incorrect API key provided"), openai_api_key="sk-wrong")
    assert_one_line_error(exc, "HTTP 401", "Incorrect API key provided", "check OPENAI_API_KEY")
    assert openai_fake.request.headers["authorization"] == "Bearer sk-wrong"


def test_openai_without_key_or_url_is_refused_up_front(assistant: Assistant, settings: Settings) -> None:
    llm = assistant.with_settings(settings.with_(backend="openai"))
    with pytest.raises(BackendError) as exc:
        llm.answer(QUESTION)
    assert_one_line_error(exc, "OPENAI_API_KEY", "OPENAI_BASE_URL")


def test_ollama_missing_model_suggests_pull(assistant: Assistant, llm_settings: Callable) -> None:
    with FakeLLMServer("ollama") as server:
        fake = Fake("ollama", server, assistant, llm_settings)
        with pytest.raises(BackendError) as exc:
            fake.ask(Reply(status=404, error='model "test-model" not found, try pulling it first'))
    assert_one_line_error(exc, "HTTP 404", "ollama pull test-model")


def test_auto_picks_the_configured_llm(openai_fake: Fake) -> None:
    answer = openai_fake.ask(Reply("ShadowKV offloads the value cache [1]."), backend="auto")
    assert answer.backend == "openai" and len(openai_fake.server.requests) == 1


def test_auto_without_llm_config_is_extractive(assistant: Assistant, settings: Settings) -> None:
    assert assistant.with_settings(settings.with_(backend="auto")).answer(QUESTION).backend == "extractive"


# -- context window ----------------------------------------------------------------------------
def test_sources_are_trimmed_to_the_context_window(openai_fake: Fake, sources: list) -> None:
    window = 1200
    answer = openai_fake.ask(Reply(f"{first_sentence(sources[0].text)} [1]. See also [5]."),
                             llm_context_tokens=window)
    kept = answer.sources
    assert 1 <= len(kept) < len(sources)
    prompt = openai_fake.request.prompt
    assert count_tokens(prompt) <= window - answer_room(window, 768)
    for s in kept:
        assert f"[{s.n}] {s.title}\n{s.text}" in prompt
    for s in sources[len(kept):]:
        assert s.title not in prompt
    assert [c.n for c in answer.citations] == [1]  # [5] was not shown to the model
    assert "removed 1 citation marker(s) that pointed outside the sources" in answer.warnings


def test_context_window_too_small_is_an_error(openai_fake: Fake) -> None:
    with pytest.raises(BackendError) as exc:
        openai_fake.ask(Reply("unused"), llm_context_tokens=300)
    assert_one_line_error(exc, "context window of 300 tokens", "ASSISTANT_LLM_CONTEXT_TOKENS")
    assert openai_fake.server.requests == []


# -- prompts ------------------------------------------------------------------------------------
def test_prompt_lookup_prefers_the_package_folder(tmp_path: Path) -> None:
    packaged, repo = tmp_path / "assistant-prompts", tmp_path / "repo-prompts"
    repo.mkdir()
    (repo / "system.md").write_text("from the repo\n")
    assert load_prompt("system", (packaged, repo)) == "from the repo"
    packaged.mkdir()
    (packaged / "system.md").write_text("from the package\n")
    assert load_prompt("system", (packaged, repo)) == "from the package"
    with pytest.raises(BackendError, match=r"answer\.md not found"):
        load_prompt("answer", (packaged, repo))


def test_prompt_files_use_only_documented_placeholders() -> None:
    folder = ROOT / "prompts"
    assert folder in PROMPT_DIRS
    readme = (folder / "README.md").read_text()
    files = sorted(p for p in folder.glob("*.md") if p.name != "README.md")
    assert {p.stem for p in files} == {"system", "answer", "refusal", "source"}
    for path in files:
        for name in placeholders(path.read_text()):
            assert f"`{{{name}}}`" in readme, f"{{{name}}} of {path.name} is not in prompts/README.md"


def test_render_fills_once_and_rejects_unknown_placeholders() -> None:
    assert render("Q: {question}", question="what is {sources}?") == "Q: what is {sources}?"
    with pytest.raises(BackendError, match="question"):
        render("Q: {question}", sources="x")


# -- markers and refusals ----------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("a [1][2].", [1, 2]), ("a [1, 2].", [1, 2]), ("a [2; 1].", [2, 1]), ("a [1-3].", [1, 2, 3]),
    ("a [Source 2].", [2]), ("a [1–2] b [4].", [1, 2, 4]), ("a [x] (1).", []),
])
def test_marker_forms(text: str, expected: list[int]) -> None:
    assert markers(text) == expected


def test_drop_invalid_markers_normalises_forms() -> None:
    assert drop_invalid_markers("A [1-3] B [9] C [Source 2].", {1, 2}) == ("A [1, 2] B C [2].", 2)


def test_refusal_inside_a_cited_answer_is_not_a_refusal() -> None:
    assert not is_refusal("ShadowKV cuts memory [1]. The collection doesn't answer this for GPUs.")
    assert is_refusal("Sorry — the collection does not answer this.")


def test_stream_flag_from_the_environment() -> None:
    assert Settings.from_env(env={"ASSISTANT_LLM_STREAM": "0"}).llm_stream is False
    assert Settings.from_env(env={}).llm_stream is True
    with pytest.raises(ValueError, match="yes/no"):
        Settings.from_env(env={"ASSISTANT_LLM_STREAM": "maybe"})


# -- endpoint faults, then recovery ------------------------------------------------------------
@pytest.mark.parametrize("protocol", ["openai", "ollama"])
def test_llm_faults_are_one_line_errors_and_the_same_assistant_recovers(
        settings: Settings, first_build: object, protocol: str, free_port: Callable[[], int],
        llm_settings: Callable) -> None:
    port = free_port()
    llm = Assistant(settings.with_(**llm_settings(protocol, f"http://127.0.0.1:{port}"),
                                   llm_timeout_s=1.0, llm_max_retries=0))
    first = llm.retrieve(QUESTION)[0]

    def fails(*words: str) -> None:
        with pytest.raises(BackendError) as exc:
            llm.answer(QUESTION)
        message = str(exc.value)
        assert "\n" not in message and all(w in message for w in words), message

    fails("cannot reach", str(port))                                   # endpoint down
    with FakeLLMServer(protocol, port=port) as server:                 # ... and then up
        for reply, words in [(Reply("late [1].", delay=3.0), ("did not answer within 1 s",)),
                             (Reply("x", malformed=True), ()),
                             (Reply(body={"unexpected": ["shape"]}), ()),
                             (Reply(status=500, error="internal error"), ("HTTP 500",))]:
            server.script(reply)
            fails(*words)
        server.script(Reply(f"{first.title} is the paper to read [1]."))
        answer = llm.answer(QUESTION)
    assert answer.backend == protocol and not answer.refused
    assert [c.title for c in answer.citations] == [first.title]


# -- what a real server showed (issue 14) -------------------------------------------------------
def test_a_placeholder_key_does_not_mangle_error_messages(openai_fake: Fake) -> None:
    overflow = "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens"
    with pytest.raises(BackendError) as exc:
        openai_fake.ask(Reply(status=400, error=overflow), openai_api_key="x")
    assert_one_line_error(exc, "maximum context length is 4096 tokens", "you requested 5000 tokens")
    assert "[redacted]" not in str(exc.value)


def test_redaction_replaces_whole_keys_only() -> None:
    key = "sk-test-0123456789"
    assert redact(f"bad key {key}, not {key}99 or x{key}", [key, "x"]) == f"bad key [redacted], not {key}99 or x{key}"


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_temperature_and_max_tokens_are_sent(fake: Fake, stream: bool) -> None:
    fake.ask(Reply("ShadowKV stores a low-rank key cache [1]."), llm_stream=stream)
    fake.ask(Reply("ShadowKV stores a low-rank key cache [1]."), llm_stream=stream, llm_temperature=0.7,
             llm_max_tokens=100)
    first, second = (r.body for r in fake.server.requests)
    if fake.protocol == "openai":
        assert (first["temperature"], first["max_tokens"]) == (0, 768)
        assert (second["temperature"], second["max_tokens"]) == (0.7, 100)
    else:
        assert (first["options"]["temperature"], first["options"]["num_predict"]) == (0, 768)
        assert (second["options"]["temperature"], second["options"]["num_predict"]) == (0.7, 100)


@pytest.mark.parametrize("where, payload", [
    ("props", {"default_generation_settings": {"n_ctx": 2048}}),                  # llama.cpp llama-server
    ("models", [{"id": "test-model", "object": "model", "max_model_len": 2048}]),  # vLLM
])
def test_context_window_is_read_from_the_server(openai_fake: Fake, where: str, payload: object) -> None:
    setattr(openai_fake.server, where, payload)
    answer = openai_fake.ask(Reply("ShadowKV stores a low-rank key cache [1]."), top_k=10)
    body = openai_fake.request.body
    assert body["max_tokens"] == 512  # a quarter of 2048
    assert count_tokens(openai_fake.request.prompt) <= 2048 - 512
    assert 1 <= len(answer.sources) < 10


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_prompt_over_the_servers_window_names_the_setting(openai_fake: Fake, stream: bool) -> None:
    # llama_cpp.server: HTTP 400 without streaming; with streaming, a stream that ends with nothing.
    reply = (Reply("", finish=None) if stream else
             Reply(status=400, error="This model's maximum context length is 2048 tokens. However, you requested "
                                     "4000 tokens (3232 in the messages, 768 in the completion)."))
    with pytest.raises(BackendError) as exc:
        openai_fake.ask(reply, llm_stream=stream)
    assert_one_line_error(exc, openai_fake.endpoint, "ASSISTANT_LLM_CONTEXT_TOKENS", "8192 tokens")
    assert "empty answer" not in str(exc.value)


def test_stream_cut_off_midway_is_an_error(fake: Fake) -> None:
    with pytest.raises(BackendError) as exc:
        fake.ask(Reply("ShadowKV stores a low-rank", finish=None))
    assert_one_line_error(exc, fake.endpoint, "before the answer was finished")
    with pytest.raises(BackendError) as exc:
        fake.ask(Reply("ShadowKV stores a low-rank key cache [1].", drop=True))  # the server crashed
    assert_one_line_error(exc, fake.endpoint, "lost the connection")
    assert "cannot reach" not in str(exc.value)


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_timeout_says_what_to_raise_and_hangs_up(fake: Fake, stream: bool) -> None:
    with pytest.raises(BackendError) as exc:
        fake.ask(Reply("late [1].", delay=30), llm_timeout_s=0.5, llm_stream=stream)
    assert_one_line_error(exc, fake.endpoint, "did not answer within 0.5 s", "raise ASSISTANT_LLM_TIMEOUT")
    assert ("ASSISTANT_LLM_STREAM" in str(exc.value)) is not stream
    assert len(fake.server.requests) == 1  # a timeout is not retried
    deadline = time.monotonic() + 3
    while fake.server.disconnects == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fake.server.disconnects == 1  # the connection was closed: the server can stop working on it


def test_an_abandoned_stream_closes_its_request(fake: Fake, sources: list) -> None:
    gate = threading.Event()
    fake.server.script(Reply("ShadowKV stores a low-rank key cache [1].", gate=gate))
    deltas = fake.configure().answerer(fake.protocol).stream(QUESTION, sources)
    assert next(deltas) == "ShadowKV"
    deltas.close()
    deadline = time.monotonic() + 3
    while fake.server.disconnects == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fake.server.disconnects == 1 and fake.server.finished == 0


@pytest.mark.parametrize("reply", [
    "The Medusa paper does not provide any information about the number of annotators.",
    "The number of annotators is not mentioned in the sources [1].",
    "I cannot determine this from the provided sources.",
    "There is no information about sourdough in the sources.",
    "The provided sources don’t contain the answer [2].",
])
def test_refusal_in_other_words(fake: Fake, reply: str) -> None:
    answer = fake.ask(Reply(reply), question="How many annotators labelled the data in the Medusa paper?")
    assert answer.refused and answer.text == REFUSAL and answer.citations == [] and not answer.grounded
    assert answer.warnings == [f"read as a refusal: {reply!r}"]


def test_a_negative_statement_with_content_is_not_a_refusal(fake: Fake) -> None:
    assert not is_refusal("ShadowKV does not require retraining [1].")
    assert not is_refusal("ShadowKV requires no additional data [1].")
    answer = fake.ask(Reply("ShadowKV does not need any retraining and keeps a low-rank key cache [1]."))
    assert not answer.refused


# -- grounded or visibly not -------------------------------------------------------------------
@pytest.mark.parametrize("question, reply, reason", [
    ("How many annotators labelled the data in the Medusa paper?", "4", "the answer cites no source"),
    ("What is a good sourdough recipe?", "STIV", "the answer cites no source"),
    (QUESTION, "[2]", "the answer is only citation markers, with no statement"),
], ids=["number", "off-topic", "bare-marker"])
def test_real_small_model_outputs_are_not_grounded(fake: Fake, question: str, reply: str, reason: str) -> None:
    answer = fake.ask(Reply(reply), question=question)
    assert not answer.refused and not answer.grounded
    assert answer.to_dict()["grounded"] is False
    assert reason in answer.warnings


def test_title_only_answer_is_not_grounded(fake: Fake, sources: list) -> None:
    answer = fake.ask(Reply(f"{sources[0].title} [1]"))
    assert [c.n for c in answer.citations] == [1] and not answer.grounded
    assert answer.sentences[0].support == 0
    assert "the answer names papers but states nothing from them" in answer.warnings


def test_markers_before_sentences_are_moved_after_them(fake: Fake, sources: list) -> None:
    one, two = first_sentence(sources[0].text), first_sentence(sources[1].text)
    answer = fake.ask(Reply(f"[1] {one}. [2] {two}."))
    assert answer.text == f"{one} [1]. {two} [2]."
    assert [s.cites for s in answer.sentences] == [[1], [2]]
    assert answer.grounded and all(s.supported for s in answer.sentences)


def test_reasoning_blocks_are_removed(fake: Fake, sources: list) -> None:
    one = first_sentence(sources[0].text)
    answer = fake.ask(Reply(f"<think>The user asks about [3]; source 1 says so.</think>\n{one} [1]."))
    assert answer.text == f"{one} [1]." and answer.grounded and [c.n for c in answer.citations] == [1]
    with pytest.raises(BackendError) as exc:
        fake.ask(Reply("<think>Let me think about ShadowKV and the sources [1] before I"))
    assert_one_line_error(exc, "only its reasoning")


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_reply_cut_at_the_length_limit(fake: Fake, sources: list, stream: bool) -> None:
    one = first_sentence(sources[0].text)
    answer = fake.ask(Reply(f"{one} [1]. It also offloads the value cache to", finish="length"), llm_stream=stream)
    assert answer.text == f"{one} [1]." and answer.grounded
    assert answer.warnings == ["the reply was cut at the length limit (ASSISTANT_LLM_MAX_TOKENS); "
                               "its unfinished last sentence was dropped"]


# -- CLI ----------------------------------------------------------------------------------------
@pytest.fixture
def cli(index_dir: Path, first_build: object,
        cli_env: Callable[..., dict[str, str]]) -> Callable[[dict[str, str]], subprocess.CompletedProcess[str]]:
    """`assistant ask QUESTION --backend openai --json` in a subprocess with these variables set."""
    def run(variables: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "assistant", "ask", QUESTION, "--backend", "openai", "--json"],
                              env=cli_env(ASSISTANT_INDEX_DIR=str(index_dir), **variables), capture_output=True,
                              text=True, timeout=300, cwd=ROOT)
    return run


def test_cli_ask_openai_json(cli: Callable, sources: list) -> None:
    with FakeLLMServer("openai") as server:
        server.script(Reply(f"{first_sentence(sources[0].text)} [1]."))
        done = cli({"OPENAI_BASE_URL": server.url + "/v1", "ASSISTANT_OPENAI_MODEL": "cli-model",
                    "OPENAI_API_KEY": "sk-test"})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["backend"] == "openai" and result["refused"] is False and result["grounded"] is True
    assert result["citations"] == [{"n": 1, "title": sources[0].title, "paper_id": sources[0].paper_id}]
    body = server.requests[0].body
    assert body["model"] == "cli-model" and body["stream"] is True
    assert server.requests[0].headers["authorization"] == "Bearer sk-test"


def test_cli_endpoint_down_exits_with_one_line(cli: Callable, free_port: Callable[[], int]) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    done = cli({"OPENAI_BASE_URL": url})
    assert done.returncode == 1 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot reach the openai endpoint {url}"), done.stderr
