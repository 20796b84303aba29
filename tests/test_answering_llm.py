"""The `openai` and `ollama` answerers against scripted servers that speak the real wire protocols
(tests/fake_llm_servers.py), over the real index: the request we send, the Answer we build from
the reply (citations, refusals, warnings) and the one-line errors when the endpoint misbehaves."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fake_llm_servers import FakeLLMServer, Received, Reply

from assistant import Answer, Assistant, BackendError, Settings
from assistant.answering.citations import REFUSAL, drop_invalid_markers, is_refusal, markers
from assistant.answering.llm import answer_room, count_tokens, retry_delay
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


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_slow_endpoint_times_out(fake: Fake, stream: bool) -> None:
    with pytest.raises(BackendError) as exc:
        fake.ask(Reply("late [1].", delay=30), llm_timeout_s=0.5, llm_stream=stream)
    assert_one_line_error(exc, fake.endpoint, "did not answer within 0.5 s")
    assert len(fake.server.requests) == 1  # a timeout is not retried


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
    assert count_tokens(prompt) <= window - answer_room(window)
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
    assert result["backend"] == "openai" and result["refused"] is False
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
