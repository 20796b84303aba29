"""`assistant mcp`: the real server process on stdio, driven by the official `mcp` client library
(list the tools, call both, bad arguments come back as tool errors and the server keeps serving)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from assistant import Assistant
from assistant.indexing.build import IndexReport

ROOT = Path(__file__).resolve().parents[1]
SHADOWKV = "How does ShadowKV cut KV-cache memory?"


def with_server(index_dir: Path, env: dict[str, str], session: Callable[[Client], Awaitable[Any]]) -> Any:
    """Start `assistant mcp` over the session index, run `session` with a connected client, stop it."""
    params = StdioServerParameters(command=sys.executable, args=["-m", "assistant", "mcp"], cwd=str(ROOT),
                                   env={**env, "ASSISTANT_INDEX_DIR": str(index_dir)})

    async def run() -> Any:
        async with Client(params, read_timeout_seconds=300) as client:
            return await session(client)
    return asyncio.run(run())


@pytest.fixture
def mcp_session(index_dir: Path, first_build: IndexReport,
                cli_env: Callable[..., dict[str, str]]) -> Callable[[Callable[[Client], Awaitable[Any]]], Any]:
    return lambda session: with_server(index_dir, cli_env(), session)


def test_lists_ask_and_search_papers_with_their_arguments(mcp_session: Callable) -> None:
    async def session(client: Client) -> Any:
        return (await client.list_tools()).tools
    tools = {t.name: t for t in mcp_session(session)}
    assert set(tools) == {"ask", "search_papers"}
    assert tools["ask"].input_schema["required"] == ["question"]
    assert tools["search_papers"].input_schema["required"] == ["query"]
    for tool in tools.values():
        assert tool.description and tool.annotations and tool.annotations.read_only_hint
        assert tool.input_schema["properties"]["top_k"]["anyOf"][0] == {"maximum": 50, "minimum": 1, "type": "integer"}


def test_ask_returns_the_cited_answer_as_structured_data(mcp_session: Callable, assistant: Assistant) -> None:
    async def session(client: Client) -> Any:
        return (await client.call_tool("ask", {"question": SHADOWKV, "top_k": 3}),
                await client.call_tool("ask", {"question": "What is the boiling point of ethanol?"}))
    answered, refused = mcp_session(session)
    expected = assistant.answer(SHADOWKV, top_k=3).to_dict()
    assert not answered.is_error
    data = answered.structured_content
    for key in ("question", "answer", "refused", "citations", "backend", "grounded"):
        assert data[key] == expected[key], key
    assert [s["title"] for s in data["sources"]] == [s["title"] for s in expected["sources"]]
    assert any("ShadowKV" in c["title"] for c in data["citations"]) and len(data["sources"]) == 3
    assert json.loads(answered.content[0].text) == data  # the same as text, for clients without structure
    # a refusal is an answer, not an error
    assert not refused.is_error and refused.structured_content["refused"] is True
    assert refused.structured_content["citations"] == []


def test_search_papers_ranks_papers_with_passages(mcp_session: Callable, assistant: Assistant) -> None:
    async def session(client: Client) -> Any:
        return await client.call_tool("search_papers", {"query": "  ShadowKV\tlow-rank key cache ", "top_k": 4})
    result = mcp_session(session)
    assert not result.is_error
    papers = result.structured_content["papers"]
    assert result.structured_content["query"] == "ShadowKV low-rank key cache"
    assert [p["n"] for p in papers] == [1, 2, 3, 4]
    assert papers[0]["title"].startswith("ShadowKV") and "low-rank" in papers[0]["text"]
    assert [p["score"] for p in papers] == sorted((p["score"] for p in papers), reverse=True)
    assert papers[0]["metadata"]["page_date"] and papers[0]["paper_id"].startswith("p")
    assert [p["title"] for p in papers] == [s.title for s in assistant.retrieve("ShadowKV low-rank key cache", 4)]


BAD_CALLS = [
    ("ask", {}, "Field required"),
    ("ask", {"question": ""}, "the question is empty"),
    ("ask", {"question": "?!"}, "the question has no words in it"),
    ("ask", {"question": 42}, "Input should be a valid string"),
    ("ask", {"question": "x " * 3000}, "the limit is 2000"),
    ("ask", {"question": SHADOWKV, "top_k": 0}, "greater than or equal to 1"),
    ("search_papers", {"query": SHADOWKV, "top_k": "many"}, "valid integer"),
    ("search_papers", {"query": "\x00\x01"}, "the question is empty"),
    ("no_such_tool", {}, "Unknown tool: no_such_tool"),
]


def test_bad_arguments_are_tool_errors_and_the_server_keeps_serving(mcp_session: Callable) -> None:
    async def session(client: Client) -> Any:
        errors = [await client.call_tool(name, arguments) for name, arguments, _ in BAD_CALLS]
        return errors, await client.call_tool("search_papers", {"query": SHADOWKV, "top_k": 1})
    errors, after = mcp_session(session)
    for (name, arguments, message), result in zip(BAD_CALLS, errors):
        assert result.is_error, (name, arguments)
        assert message in result.content[0].text, (message, result.content[0].text)
    assert not after.is_error and after.structured_content["papers"][0]["title"].startswith("ShadowKV")

