"""The Gradio chat: `build_app(assistant)` makes the Blocks app, `launch(settings, host, port)` serves it.

The chat streams answers from `Assistant.stream`, shows the cited papers in a sources panel, marks
weakly supported sentences, and turns follow-up questions into self-contained ones (followup.py).
All HTML is built in chat_render.py, which escapes every piece of corpus or answer text.
"""

from __future__ import annotations

import ipaddress
import logging
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from ..answering import configured_backends
from ..answering.followup import condense, user_questions
from ..errors import AssistantError
from ..pipeline import Assistant
from ..settings import Settings, env_var
from .render import (
    SOURCES_EMPTY,
    SOURCES_PENDING,
    render_answer,
    render_error,
    render_pending,
    render_sources,
    render_streaming,
)

log = logging.getLogger(__name__)

#: Requests answered at the same time; more wait in Gradio's queue.
CONCURRENCY_LIMIT = 4
#: Least time between two renders of a streaming answer (docs/performance.md, "Chat under load").
STREAM_INTERVAL_S = 0.1
MAX_TOP_K = 20
CSS = (Path(__file__).with_name("chat.css")).read_text(encoding="utf-8")
# Gradio 6.31 ships Source Sans Pro SemiBold (600) as a 55-glyph subset: bold text then mixes in
# fallback letters. Load Regular and Bold (complete) instead; weight 600 resolves to Bold.
THEME = gr.themes.Default(
    primary_hue="indigo", neutral_hue="slate", radius_size="md",
    font=(gr.themes.LocalFont("Source Sans Pro", weights=(400, 700)), "ui-sans-serif", "system-ui", "sans-serif"),
)

EXAMPLES = [
    "How does ShadowKV cut KV-cache memory?",
    "What throughput boost does NanoFlow get over existing serving systems?",
    "How much memory does TPI-LLM need to serve 70B-scale models on edge devices?",
    "Which papers shrink the KV cache by sharing it across layers?",
]

HEADER = (
    '<div class="pa-header"><h1>Papers assistant</h1>'
    "<p>Answers from {papers} research-paper abstracts (Hugging Face Daily Papers). Each claim cites its "
    "paper as <span class=\"pa-cite\">[n]</span>; dotted sentences are weakly supported.</p></div>"
)

# Scroll each evidence box to its first highlighted (quoted) sentence.
SCROLL_TO_EVIDENCE = """() => requestAnimationFrame(() => {
  document.querySelectorAll('#pa-sources .pa-evidence').forEach((box) => {
    const mark = box.querySelector('mark');
    if (mark) box.scrollTop += mark.getBoundingClientRect().top - box.getBoundingClientRect().top - 20;
  });
})"""

ChatOutput = tuple[str, str, dict[str, Any] | None]


Responder = Callable[[str, list[dict[str, Any]], str, float], Iterator[ChatOutput]]


def make_responder(assistant: Assistant) -> Responder:
    """The ChatInterface function: yields (bubble HTML, sources HTML, answer dict) as the answer streams."""

    def respond(message: str, history: list[dict[str, Any]], backend: str, top_k: float) -> Iterator[ChatOutput]:
        text = message if isinstance(message, str) else str(message or "")
        asked = condense(text, user_questions(history))
        asked_as = asked if asked != text.strip() else None
        yield render_pending(asked_as), SOURCES_PENDING, None
        try:
            answer = assistant.stream(asked, backend=backend, top_k=int(top_k))
            shown = time.monotonic()
            for _ in answer:
                # One render per interval, not per delta: each update re-renders and re-sends the
                # whole bubble, and an answer written at once (extractive) needs no partial render.
                if time.monotonic() - shown >= STREAM_INTERVAL_S:
                    yield render_streaming(answer.text, asked_as), SOURCES_PENDING, None
                    shown = time.monotonic()
            yield render_answer(answer.answer, asked_as), render_sources(answer.answer), answer.answer.to_dict()
        except AssistantError as exc:
            yield render_error(exc), SOURCES_EMPTY, {"error": str(exc), "kind": type(exc).__name__}
        except Exception as exc:  # keep the chat alive; the traceback goes to the server log
            log.exception("chat request failed")
            yield render_error(exc), SOURCES_EMPTY, {"error": type(exc).__name__, "kind": "internal"}

    return respond


def _paper_count(assistant: Assistant) -> str:
    try:
        return str(assistant.index.keyword().paper_count())
    except AssistantError:
        return "the indexed"


def build_app(assistant: Assistant, backends: list[str] | None = None) -> gr.Blocks:
    """The chat app (queued, not launched). `backends` defaults to the configured ones plus the
    settings' backend, which is selected at start."""
    backends = list(backends or configured_backends(assistant.settings))
    default_backend = assistant.settings.backend
    if default_backend not in backends:  # asked for explicitly: offer it, so a failure shows, not a swap
        backends.append(default_backend)
    with gr.Blocks(title="Papers assistant") as app:
        with gr.Row(elem_id="pa-top"):
            gr.HTML(HEADER.format(papers=_paper_count(assistant)), scale=5)
            new_chat = gr.Button("New chat", variant="secondary", size="md", scale=0, min_width=110,
                                 elem_id="pa-new-chat")
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=340):
                with gr.Row(elem_id="pa-controls"):
                    backend = gr.Dropdown(backends, value=default_backend, label="Backend",
                                          interactive=len(backends) > 1, scale=2, min_width=150)
                    top_k = gr.Slider(1, MAX_TOP_K, value=min(assistant.settings.top_k, MAX_TOP_K), step=1,
                                      label="Papers retrieved", scale=3, min_width=200)
                sources = gr.HTML(SOURCES_EMPTY, elem_id="pa-sources", render=False)
                details = gr.JSON(visible=False, render=False)
                chat = gr.ChatInterface(
                    make_responder(assistant),
                    chatbot=gr.Chatbot(
                        elem_id="pa-chat", height="68vh", min_height=360, show_label=False,
                        latex_delimiters=[], allow_tags=False, sanitize_html=True, buttons=[],
                        feedback_options=None, placeholder="Ask about the papers, or pick an example.",
                    ),
                    textbox=gr.Textbox(placeholder="Ask a question about the papers…", autofocus=True,
                                       submit_btn=True, stop_btn=True, max_lines=6),
                    additional_inputs=[backend, top_k],
                    additional_outputs=[sources, details],
                    examples=[[q, None, None] for q in EXAMPLES],
                    api_name="chat",
                    fill_height=False,
                )
            with gr.Column(scale=2, min_width=300, elem_id="pa-sources-col"):
                sources.render()
                details.render()
        sources.change(None, js=SCROLL_TO_EVIDENCE, api_visibility="undocumented", queue=False)
        chat.chatbot.clear(lambda: (SOURCES_EMPTY, None), outputs=[sources, details],
                           api_visibility="undocumented", queue=False)
        new_chat.click(lambda: ([], [], SOURCES_EMPTY, None),
                       outputs=[chat.chatbot, chat.chatbot_state, sources, details],
                       api_visibility="undocumented", queue=False)
    return app.queue(default_concurrency_limit=CONCURRENCY_LIMIT)


def serve(app: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, *,
          auth: tuple[str, str] | None = None, block: bool = True) -> str:
    """Launch the app on host:port (never a share link); returns the local URL."""
    _, url, _ = app.launch(
        server_name=host, server_port=port, auth=auth, share=False, prevent_thread_lock=not block,
        theme=THEME, css=CSS, footer_links=["api", "settings"], ssr_mode=False, quiet=not block,
        show_error=False, mcp_server=False,
    )
    return url


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def warm_up(assistant: Assistant) -> None:
    """Do now what the first users would otherwise wait for: load the model and open the indexes
    (~3 s), and pick matplotlib's backend, which Gradio resolves on its first request otherwise by
    importing pyplot on the event loop (~1 s during which no request moves)."""
    import matplotlib

    matplotlib.use("agg")
    try:
        assistant.answer(EXAMPLES[0], backend="extractive")
    except AssistantError as exc:
        log.warning("warm-up question failed: %s", exc)


def launch(settings: Settings, host: str = "127.0.0.1", port: int = 7860) -> None:
    """Build the index if needed (progress in the terminal), then serve the chat until interrupted."""
    auth = settings.chat_login
    assistant = Assistant(settings)
    assistant.ensure_index()
    warm_up(assistant)
    if not _is_loopback(host) and auth is None:
        print(f"warning: serving on {host} without a login; set {env_var('chat_auth')}=user:password",
              file=sys.stderr)
    print(f"Chat on http://{host}:{port}" + (" (login required)" if auth else ""), file=sys.stderr)
    serve(build_app(assistant), host, port, auth=auth)
