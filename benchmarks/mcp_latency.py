"""Latency of `assistant mcp` as a client sees it: start the server over stdio with the official
`mcp` client, list the tools, then time `ask` and `search_papers` on a few questions.

  python benchmarks/mcp_latency.py            # the index in ASSISTANT_INDEX_DIR (default ./index)
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path

from mcp import Client, StdioServerParameters

QUESTIONS = [
    "What is Medusa?",
    "Which papers shrink the KV cache by sharing it across layers?",
    "What throughput boost does NanoFlow get over existing serving systems?",
    "How does ShadowKV cut KV-cache memory?",
    "What is DSPy?",
]


async def measure() -> str:
    started = time.perf_counter()
    params = StdioServerParameters(command=sys.executable, args=["-m", "assistant", "mcp"],
                                   cwd=str(Path(__file__).resolve().parents[1]))
    async with Client(params, read_timeout_seconds=300) as client:
        await client.list_tools()
        listed = time.perf_counter()
        await client.call_tool("ask", {"question": QUESTIONS[0]})
        first = time.perf_counter()
        timings: dict[str, list[float]] = {"ask": [], "search_papers": []}
        for question in QUESTIONS:
            for tool, argument in (("ask", "question"), ("search_papers", "query")):
                before = time.perf_counter()
                result = await client.call_tool(tool, {argument: question})
                assert not result.is_error, result.content
                timings[tool].append((time.perf_counter() - before) * 1000)
    return (f"start to tool list {listed - started:.2f} s, first ask {(first - listed) * 1000:.0f} ms, "
            + ", ".join(f"{tool} median {statistics.median(ms):.0f} ms (max {max(ms):.0f})"
                        for tool, ms in timings.items()))


if __name__ == "__main__":
    print(asyncio.run(measure()))
