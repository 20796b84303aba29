"""The chat's API (`/chat`), driven with gradio_client against the real app on a local port."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from assistant import Assistant, Settings
from assistant.chat.app import make_responder
from assistant.errors import ConfigError

SHADOWKV = "How does ShadowKV cut KV-cache memory?"


def ask(client: Client, question: str, backend: str = "extractive", top_k: int = 5) -> tuple[str, str, dict]:
    bubble, sources, details = client.predict(question, backend, top_k, api_name="/chat")
    return bubble, sources, details


def test_answer_carries_citations_sources_and_details(chat_url: str, assistant: Assistant) -> None:
    bubble, sources, details = ask(Client(chat_url, verbose=False), SHADOWKV, top_k=4)
    expected = assistant.answer(SHADOWKV, top_k=4)
    assert details["citations"] == [{"n": c.n, "title": c.title, "paper_id": c.paper_id}
                                    for c in expected.citations]
    assert details["citations"] and not details["refused"] and details["backend"] == "extractive"
    assert len(details["sources"]) == 4
    assert 'class="pa-msg pa-answer"' in bubble and 'class="pa-cite"' in bubble
    for citation in details["citations"]:
        assert citation["title"] in bubble and citation["title"] in sources


def test_follow_up_is_answered_about_the_previous_answer_s_paper(chat_url: str) -> None:
    client = Client(chat_url, verbose=False)
    _, _, first = ask(client, SHADOWKV)
    bubble, _, details = ask(client, "How much does it boost throughput?")
    shadowkv = first["citations"][0]
    assert details["question"] == "How much does it boost throughput?"
    assert details["asked_as"] == "How much does ShadowKV boost throughput?"
    assert details["about"] == [shadowkv["paper_id"]]
    assert [c["title"] for c in details["citations"]] == [shadowkv["title"]]
    assert f"About [1] {shadowkv['title']}" in bubble and "3.04×" in bubble
    other = Client(chat_url, verbose=False)  # another session has no earlier answer to lean on
    _, _, alone = ask(other, "How much does it boost throughput?")
    assert alone["about"] == [] and alone["asked_as"] is None


def test_a_follow_up_leans_only_on_answers_the_chat_still_shows(assistant: Assistant) -> None:
    """After "undo" or "retry" an exchange is gone from the chat: its answer must not steer a follow-up."""
    respond = make_responder(assistant)
    *_, (_, _, first, earlier) = respond(SHADOWKV, [], "extractive", 5, [])
    shown = [{"role": "user", "content": SHADOWKV}, {"role": "assistant", "content": "<div>…</div>"}]
    follow_up = "How much does it boost throughput?"
    *_, (_, _, follow, _) = respond(follow_up, shown, "extractive", 5, earlier)
    assert follow["about"] == [first["citations"][0]["paper_id"]]
    *_, (_, _, undone, _) = respond(follow_up, [], "extractive", 5, earlier)  # the exchange was undone
    assert undone["about"] == [] and undone["asked_as"] is None


def test_unanswerable_question_is_refused(chat_url: str) -> None:
    bubble, sources, details = ask(Client(chat_url, verbose=False), "What is the boiling point of ethanol?")
    assert details["refused"] and details["citations"] == []
    assert "pa-refusal" in bubble and "pa-answer" not in bubble
    assert "No paper answers" in sources


def test_bad_question_shows_an_error_and_the_chat_keeps_working(chat_url: str) -> None:
    client = Client(chat_url, verbose=False)
    bubble, _, details = ask(client, "   ")
    assert details["kind"] == "InvalidQuestionError" and "pa-error" in bubble
    _, _, details = ask(client, "?!")
    assert details["kind"] == "InvalidQuestionError"
    with pytest.raises(AppError, match="maximum value 20"):  # Gradio checks the slider's range
        ask(client, SHADOWKV, top_k=500)
    with pytest.raises(AppError, match="not in the list of choices"):
        ask(client, SHADOWKV, backend="nonsense")
    _, _, details = ask(client, SHADOWKV)
    assert details["citations"]


def test_backend_down_is_reported(assistant: Assistant, free_port: Callable[[], int], running_chat: Callable) -> None:
    down = assistant.with_settings(assistant.settings.with_(openai_base_url=f"http://127.0.0.1:{free_port()}/v1",
                                              llm_max_retries=0, llm_timeout_s=5.0))
    with running_chat(down, backends=["extractive", "openai"]) as url:
        client = Client(url, verbose=False)
        bubble, _, details = ask(client, SHADOWKV, backend="openai")
        assert details["kind"] == "BackendError"
        assert "backend failed" in bubble
        _, _, details = ask(client, SHADOWKV, backend="extractive")
        assert details["citations"]


def test_unreachable_index_is_reported(tmp_path: Path, free_port: Callable[[], int], running_chat: Callable) -> None:
    broken = Assistant(Settings.from_env(env={}, index_dir=tmp_path,
                                         chroma_url=f"http://127.0.0.1:{free_port()}"))
    with running_chat(broken) as url:
        bubble, sources, details = ask(Client(url, verbose=False), SHADOWKV)
    assert details["kind"] == "IndexProblemError"
    assert "index has a problem" in bubble and "Chroma" in bubble
    assert "pa-src" not in sources


def test_login_comes_from_the_environment() -> None:
    assert Settings.from_env(env={}).chat_login is None
    assert Settings.from_env(env={"ASSISTANT_CHAT_AUTH": "alice:s3:cret"}).chat_login == ("alice", "s3:cret")
    for bad in ("alice", "alice:", ":pw"):
        with pytest.raises(ConfigError, match="ASSISTANT_CHAT_AUTH"):
            _ = Settings.from_env(env={"ASSISTANT_CHAT_AUTH": bad}).chat_login
