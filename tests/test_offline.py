"""Provably offline: with the embedded defaults, indexing, answering, the chat (start and a question)
and `assistant eval` attempt no connection and no name lookup, except the chat's connections to its
own loopback port. Every socket `connect`, `connect_ex` and `getaddrinfo` of this process is blocked
and recorded (`block_network` in conftest.py)."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import NetworkGuard
from gradio_client import Client

from assistant import Assistant, Paper, Settings, cli
from assistant.chat.app import build_app, serve
from assistant.indexing.build import IndexReport
from assistant.indexing.index import PaperIndex

ROOT = Path(__file__).resolve().parents[1]
SHADOWKV = "How does ShadowKV cut KV-cache memory?"


def test_the_guard_blocks_and_records(block_network: NetworkGuard, free_port: Callable[[], int]) -> None:
    port = free_port()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1)
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("huggingface.co", 443)
    assert block_network.attempts == [("127.0.0.1", port), ("lookup", "huggingface.co", 443)]


def test_indexing_opens_no_connection(tmp_path: Path, bundled_papers: list[Paper],
                                      block_network: NetworkGuard) -> None:
    papers = tmp_path / "papers.jsonl"
    papers.write_text("".join(json.dumps({"title": p.title, "abstract": p.abstract}) + "\n"
                              for p in bundled_papers[:20]), encoding="utf-8")
    settings = Settings.from_env(env={}, index_dir=tmp_path / "index", include_bundled=False)
    report = PaperIndex(settings).build([papers], progress=False)
    assert report.problems == [] and PaperIndex(settings).ready()
    assert block_network.attempts == []


def test_answering_opens_no_connection(assistant: Assistant, block_network: NetworkGuard) -> None:
    fresh = Assistant(assistant.settings)  # loads the model and opens the index under the guard
    answer = fresh.answer(SHADOWKV)
    assert not answer.refused and answer.citations
    assert block_network.attempts == []


def test_the_chat_starts_and_answers_connecting_only_to_itself(assistant: Assistant, free_port: Callable[[], int],
                                                               block_network: NetworkGuard) -> None:
    port = free_port()
    block_network.allowed_ports.add(port)
    app = build_app(Assistant(assistant.settings))
    try:
        url = serve(app, "127.0.0.1", port, block=False)
        _, _, details = Client(url, verbose=False).predict(SHADOWKV, "extractive", 5, api_name="/chat")
    finally:
        app.close()
    assert details["citations"] and not details["refused"]
    assert block_network.attempts == []


def test_eval_opens_no_connection(index_dir: Path, first_build: IndexReport, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch, block_network: NetworkGuard,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    questions = (ROOT / "evals" / "test.jsonl").read_text(encoding="utf-8").splitlines()[:4]
    (tmp_path / "set.jsonl").write_text("\n".join(questions) + "\n", encoding="utf-8")
    monkeypatch.setenv("ASSISTANT_INDEX_DIR", str(index_dir))
    for var in ("ASSISTANT_BACKEND", "ASSISTANT_CHROMA_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL", "OLLAMA_HOST"):
        monkeypatch.delenv(var, raising=False)
    status = cli.main(["eval", "--set", str(tmp_path / "set.jsonl"), "--out", str(tmp_path / "out"), "--json"])
    assert status == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["config"]["backend"] == "extractive"
    assert (tmp_path / "out" / "metrics.png").is_file()
    assert block_network.attempts == []
