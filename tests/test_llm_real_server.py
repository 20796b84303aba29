"""The `openai` backend against a real server: llama-cpp-python's `llama_cpp.server` with
Qwen2.5-Coder-0.5B-Instruct on a free loopback port (`make test-llm`, prepared by
tests/llamacpp_runtime.py). These tests check protocol facts and the pipeline's guarantees, not
the model's wisdom: whatever the small model writes, the Answer is a refusal, or cites only the
sources, says whether it is grounded, and says why when it is not.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from llamacpp_runtime import MODEL, server_python

from assistant import Answer, Assistant, BackendError
from assistant.answering.citations import REFUSAL, markers

pytestmark = pytest.mark.llamacpp

QUESTION = "How does ShadowKV cut KV-cache memory?"
WINDOW = 2048           # the server's --n_ctx: small, so prompt processing stays short on 2 cores
ANSWER_TOKENS = 96      # ASSISTANT_LLM_MAX_TOKENS for these tests: enough for a sentence or two
START_TIMEOUT_S = 180


class LlamaServer:
    """`python -m llama_cpp.server` on a port of its own, its output kept in a log file."""

    def __init__(self, port: int, log: Path) -> None:
        self.port, self.log = port, log
        self.url = f"http://127.0.0.1:{port}/v1"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> LlamaServer:
        if not server_python().exists() or not MODEL.exists():
            pytest.fail("the llama.cpp runtime or model is missing: run `make test-llm` (or python "
                        "tests/llamacpp_runtime.py) to prepare them")
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}  # idle OpenMP threads must not spin on shared cores
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(server_python()), "-m", "llama_cpp.server", "--model", str(MODEL), "--host", "127.0.0.1",
                 "--port", str(self.port), "--n_ctx", str(WINDOW), "--n_threads", "2", "--verbose", "False"],
                stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"llama_cpp.server exited: {self.log.read_text()[-2000:]}"
            try:
                with urllib.request.urlopen(f"{self.url}/models", timeout=2) as reply:
                    json.load(reply)
                return self
            except OSError:
                time.sleep(0.5)
        raise AssertionError(f"llama_cpp.server did not answer within {START_TIMEOUT_S} s")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, free_port: Callable[[], int]) -> Iterator[LlamaServer]:
    running = LlamaServer(free_port(), tmp_path_factory.mktemp("llamacpp") / "server.log").start()
    yield running
    running.stop()


def llm(assistant: Assistant, server: LlamaServer, **changes: object) -> Assistant:
    """An Assistant asking the real server, with a small top-k and a generous timeout."""
    values = {"backend": "openai", "openai_base_url": server.url, "openai_model": "qwen2.5-coder-0.5b",
              "llm_context_tokens": WINDOW, "llm_max_tokens": ANSWER_TOKENS, "llm_timeout_s": 300.0,
              "llm_max_retries": 0, "top_k": 2, **changes}
    return assistant.with_settings(assistant.settings.with_(**values))


def assert_guarantees(answer: Answer) -> None:
    """What holds whatever the model wrote."""
    assert answer.backend == "openai"
    shown = {s.n for s in answer.sources}
    if answer.refused:
        assert answer.text == REFUSAL and answer.citations == [] and not answer.grounded
        return
    assert set(markers(answer.text)) <= shown                         # no marker outside the sources
    assert {c.n for c in answer.citations} <= shown
    assert answer.grounded == any(s.cites and s.supported for s in answer.sentences)
    if not answer.grounded:                                           # visibly not grounded, and why
        assert answer.warnings, answer.text
    assert answer.to_dict()["grounded"] is answer.grounded
    assert "<think>" not in answer.text


def test_streamed_and_whole_replies(assistant: Assistant, server: LlamaServer) -> None:
    streamed = llm(assistant, server).stream(QUESTION)
    deltas = list(streamed)
    assert len(deltas) > 3 and "".join(deltas) == streamed.text       # it arrived in pieces
    assert_guarantees(streamed.answer)
    assert len(streamed.answer.sources) == 2

    whole = llm(assistant, server, llm_stream=False).stream(QUESTION)
    assert len(list(whole)) == 1
    assert_guarantees(whole.answer)
    # temperature 0 is sent: the same prompt gets the same reply, streamed or not
    assert whole.text == streamed.text


def test_length_limit_is_recognised(assistant: Assistant, server: LlamaServer) -> None:
    answer = llm(assistant, server, llm_max_tokens=16).answer("Summarise what ShadowKV does and how well it works.")
    assert_guarantees(answer)
    assert answer.refused or any("cut at the length limit" in w for w in answer.warnings), answer


def test_any_model_name_is_served(assistant: Assistant, server: LlamaServer) -> None:
    """llama_cpp.server serves its one model whatever name is asked for (no 404 to report)."""
    request = urllib.request.Request(f"{server.url}/chat/completions", method="POST",
                                     headers={"Content-Type": "application/json"},
                                     data=json.dumps({"model": "no-such-model", "max_tokens": 4, "temperature": 0,
                                                      "messages": [{"role": "user", "content": "Say hi"}]}).encode())
    with urllib.request.urlopen(request, timeout=300) as reply:
        body = json.load(reply)
    assert body["model"] == "no-such-model" and body["choices"][0]["finish_reason"] in ("length", "stop")


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_prompt_over_the_servers_window_names_the_setting(assistant: Assistant, server: LlamaServer,
                                                          stream: bool) -> None:
    # The server cannot say its window (its /v1/models has no n_ctx): the default 8192 is assumed.
    with pytest.raises(BackendError) as exc:
        llm(assistant, server, llm_context_tokens=None, top_k=12, llm_stream=stream).answer(QUESTION)
    message = str(exc.value)
    assert "ASSISTANT_LLM_CONTEXT_TOKENS" in message and "8192" in message and "\n" not in message, message
    assert "empty answer" not in message


def test_abandoned_stream_is_cancelled_on_the_server(assistant: Assistant, server: LlamaServer) -> None:
    deltas = llm(assistant, server, llm_max_tokens=400).answerer("openai").stream(
        "List everything the sources say about KV-cache memory.", assistant.retrieve(QUESTION, top_k=2))
    next(deltas)
    deltas.close()
    deadline = time.monotonic() + 60
    while "Disconnected from client" not in server.log.read_text() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert "Disconnected from client" in server.log.read_text()


def test_server_stopped_mid_stream(assistant: Assistant, tmp_path: Path, free_port: Callable[[], int]) -> None:
    own = LlamaServer(free_port(), tmp_path / "server.log").start()
    try:
        stream = llm(assistant, own, llm_max_tokens=400).stream("List everything the sources say about ShadowKV.")
        pieces = iter(stream)
        next(pieces)
        own.stop()
        with pytest.raises(BackendError) as exc:
            list(pieces)
        message = str(exc.value)
        assert own.url in message and "\n" not in message, message
        assert "lost the connection" in message and "in the middle of the answer" in message, message
    finally:
        own.stop()
