"""The collection as a Model Context Protocol server (`assistant mcp`, stdio), so other assistants and
IDEs can use it: `ask` gives a cited answer and `search_papers` the ranked papers with passages, both
as structured data in the shapes of `assistant ask --json`.

A bad argument (an empty question, top_k out of range, a wrong type) comes back as a tool error
the client can show; the server keeps serving.
"""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import Field

from .errors import AssistantError
from .pipeline import Assistant, check_options, clean_question
from .settings import MAX_TOP_K, Settings

INSTRUCTIONS = (
    "Answers questions from a collection of research-paper abstracts (Hugging Face Daily Papers and the "
    "user's own files). `ask` returns an answer whose claims cite papers as [n], or refused=true when the "
    "collection does not answer; `search_papers` returns the best-matching papers with their passages."
)
TopK = Annotated[int | None, Field(ge=1, le=MAX_TOP_K, description="papers to retrieve (default: the server's)")]
READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)


def build_server(assistant: Assistant) -> MCPServer:
    """An MCP server with the `ask` and `search_papers` tools over this Assistant's index."""
    server: MCPServer = MCPServer("papers-assistant", instructions=INSTRUCTIONS)

    @server.tool(annotations=READ_ONLY)
    def ask(question: Annotated[str, Field(description="the question, in plain words")],
            top_k: TopK = None) -> dict[str, Any]:
        """Answer a question from the paper abstracts. `answer` cites papers as [n]; `citations` maps
        each n to a title; `sources` holds the passages; `refused` is true when the collection does
        not answer (then nothing is cited); `confidence` is 0-1."""
        try:
            return assistant.answer(question, top_k=top_k).to_dict()
        except AssistantError as exc:
            raise ToolError(str(exc)) from None

    @server.tool(annotations=READ_ONLY)
    def search_papers(query: Annotated[str, Field(description="words or a question to search for")],
                      top_k: TopK = None) -> dict[str, Any]:
        """Rank the papers for a query (keyword and semantic search, fused): each paper's title, id,
        best-matching passage, score and page metadata (listing date, upvotes, links), best first."""
        try:
            check_options(None, top_k, None)
            cleaned = clean_question(query, assistant.settings.max_question_chars)
            return {"query": cleaned, "papers": [s.to_dict() for s in assistant.retrieve(cleaned, top_k)]}
        except AssistantError as exc:
            raise ToolError(str(exc)) from None

    return server


def serve_stdio(settings: Settings) -> None:
    """Build the index if it is missing (progress on stderr), then serve MCP on stdin/stdout until
    the client closes them."""
    assistant = Assistant(settings)
    assistant.ensure_index()  # stdout is the protocol's: every message here goes to stderr
    build_server(assistant).run("stdio")
