"""The Gradio chat: `build_app(assistant)` makes the Blocks app, `launch(settings, host, port)` serves it.

The chat streams answers from `Assistant.stream`, shows the cited papers in a sources panel, marks
weakly supported sentences, and answers follow-up questions about the papers of the previous answer (followup.py).
All HTML is built in chat_render.py, which escapes every piece of corpus or answer text.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from ..answering import configured_backends
from ..corpus.parse import MAX_FILE_BYTES, SUPPORTED_SUFFIXES
from ..errors import AssistantError
from ..export import export
from ..indexing.uploads import add_upload
from ..models import Answer
from ..offline import is_loopback
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
    render_upload,
)

log = logging.getLogger(__name__)

#: Requests answered at the same time; more wait in Gradio's queue.
CONCURRENCY_LIMIT = 4
#: Least time between two renders of a streaming answer (docs/performance.md, "Chat under load").
STREAM_INTERVAL_S = 0.1
#: Earlier answers kept per chat session: a follow-up leans on the last one.
MAX_TURNS = 8
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

#: (bubble HTML, sources HTML, answer dict, the session's answers so far)
ChatOutput = tuple[str, str, dict[str, Any] | None, list[Answer]]


Responder = Callable[..., Iterator[ChatOutput]]


def make_responder(assistant: Assistant) -> Responder:
    """The ChatInterface function: yields (bubble HTML, sources HTML, answer dict, earlier answers) as
    the answer streams. The session's earlier answers make follow-ups follow (answering/followup.py);
    the arguments after them are the filter controls (all optional)."""

    def respond(message: str, history: list[dict[str, Any]], backend: str, top_k: float, earlier: list[Answer],
                since: str = "", until: str = "", listed_since: str = "", listed_until: str = "",
                min_upvotes: float | None = None, sources: list[str] | None = None) -> Iterator[ChatOutput]:
        text = message if isinstance(message, str) else str(message or "")
        earlier = still_shown(earlier or [], history)
        yield render_pending(), SOURCES_PENDING, None, earlier
        try:
            filters = _filters({"since": since, "until": until, "listed_since": listed_since,
                                "listed_until": listed_until, "min_upvotes": min_upvotes, "sources": sources})
            answer = assistant.stream(text, backend=backend, top_k=int(top_k), history=earlier[-MAX_TURNS:],
                                      filters=filters)
            shown = time.monotonic()
            for _ in answer:
                # One render per interval, not per delta: each update re-renders and re-sends the
                # whole bubble, and an answer written at once (extractive) needs no partial render.
                if time.monotonic() - shown >= STREAM_INTERVAL_S:
                    yield render_streaming(answer.text), SOURCES_PENDING, None, earlier
                    shown = time.monotonic()
            final = answer.answer
            yield (render_answer(final), render_sources(final), final.to_dict(),
                   [*earlier, final][-MAX_TURNS:])
        except AssistantError as exc:
            yield render_error(exc), SOURCES_EMPTY, {"error": str(exc), "kind": type(exc).__name__}, earlier
        except Exception as exc:  # keep the chat alive; the traceback goes to the server log
            log.exception("chat request failed")
            yield render_error(exc), SOURCES_EMPTY, {"error": type(exc).__name__, "kind": "internal"}, earlier

    return respond


def still_shown(earlier: list[Answer], history: list[dict[str, Any]]) -> list[Answer]:
    """The earlier answers whose questions the chat still shows: after "undo" or "retry" (which
    take the last exchange off the chat) a follow-up must not lean on an answer no longer there."""
    remaining = Counter(" ".join(text.split()) for text in _user_texts(history))
    kept = []
    for answer in earlier:
        if remaining[answer.question] > 0:
            remaining[answer.question] -= 1
            kept.append(answer)
    return kept


def _user_texts(history: list[dict[str, Any]]) -> list[str]:
    """The text of the user turns in a Gradio messages history. Content is a string or (once the
    chatbot has normalised it) a list of parts like `{"type": "text", "text": ...}`."""
    texts = []
    for message in history:
        if message.get("role") == "user":
            content = message.get("content")
            parts = content if isinstance(content, list) else [content]
            texts.append(" ".join(p if isinstance(p, str) else str(p.get("text") or "") for p in parts
                                  if isinstance(p, str | dict)))
    return texts


def _filters(values: dict[str, Any]) -> dict[str, Any]:
    """The filter controls' values as `Assistant.stream` takes them (empty controls left out)."""
    upvotes = values.get("min_upvotes")
    if isinstance(upvotes, float) and upvotes.is_integer():
        values["min_upvotes"] = int(upvotes)  # gr.Number gives a float
    return {k: v for k, v in values.items() if v not in (None, "", [])}


UploadOutput = tuple[Any, Any, Any]
#: Gradio shows the progress of tqdm bars (the build's embedding bar) made while a handler runs.
TRACK_PROGRESS = gr.Progress(track_tqdm=True)


def make_uploader(assistant: Assistant) -> Callable[..., Iterator[UploadOutput]]:
    """The upload handler: yields (status HTML, header HTML, source-filter choices) while a file is
    checked, kept in the uploads folder and indexed (Gradio shows the embedding progress)."""
    one_at_a_time = threading.Lock()

    def add_papers(file: str | None, progress: gr.Progress = TRACK_PROGRESS) -> Iterator[UploadOutput]:
        if not file:
            return
        name = Path(file).name
        yield render_upload(f"Checking {name}…", state="working"), gr.skip(), gr.skip()
        with one_at_a_time:
            try:
                upload = add_upload(Path(file), assistant.settings.uploads_folder)
            except AssistantError as exc:
                yield render_upload(str(exc), state="failed"), gr.skip(), gr.skip()
                return
            papers, problems = len(upload.corpus.papers), upload.problem_lines()
            yield render_upload(f"Indexing {papers} paper(s) from {name}…", problems, state="working"), \
                gr.skip(), gr.skip()
            try:
                report = assistant.index.build(progress=True)
            except AssistantError as exc:
                yield render_upload(f"{name} is kept in {upload.path.parent} and will be indexed by the next "
                                    f"indexing run, but indexing it now failed: {exc}", state="failed"), \
                    gr.skip(), gr.skip()
                return
        log.info("added %s: %d papers, %d chunks embedded", upload.path, papers, report.added)
        done = (f"Added {papers} paper(s) from {name} ({report.added} chunk(s) embedded); ask about them now."
                if report.added else f"The {papers} paper(s) in {name} were already indexed (same titles).")
        yield (render_upload(done, problems),
               HEADER.format(papers=_paper_count(assistant)), gr.update(choices=_source_choices(assistant)))

    return add_papers


def _source_choices(assistant: Assistant) -> list[tuple[str, str]]:
    """The source filter's choices: each file papers were read from, shown by its name."""
    try:
        return [(Path(f).name, f) for f in assistant.index.catalog().files]
    except AssistantError:
        return []


def _export_file(answer: Answer, fmt: str, name: str) -> str:
    """Write the answer in `fmt` to a file named `name` (in a folder named by its content, so the same
    answer is written once) and return its path for a download button."""
    text = export(answer, fmt)
    folder = Path(tempfile.gettempdir()) / "papers-assistant-exports" / hashlib.sha256(text.encode()).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def export_buttons(details: dict[str, Any] | None) -> tuple[gr.DownloadButton, gr.DownloadButton]:
    """The download buttons for the last answer: Markdown for any answer or refusal, BibTeX when it
    cites papers; hidden before an answer and after an error."""
    if not details or "error" in details:
        return gr.DownloadButton(value=None, visible=False), gr.DownloadButton(value=None, visible=False)
    answer = Answer.from_dict(details)
    bibtex = _export_file(answer, "bibtex", "references.bib") if answer.citations else None
    return (gr.DownloadButton(value=_export_file(answer, "markdown", "answer.md"), visible=True),
            gr.DownloadButton(value=bibtex, visible=bibtex is not None))


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
            header = gr.HTML(HEADER.format(papers=_paper_count(assistant)), scale=5)
            upload = gr.UploadButton("Add papers", file_types=sorted(SUPPORTED_SUFFIXES), file_count="single",
                                     size="md", scale=0, min_width=120, elem_id="pa-add-papers")
            new_chat = gr.Button("New chat", variant="secondary", size="md", scale=0, min_width=110,
                                 elem_id="pa-new-chat")
        upload_status = gr.HTML("", elem_id="pa-upload-status")
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=340):
                with gr.Row(elem_id="pa-controls"):
                    backend = gr.Dropdown(backends, value=default_backend, label="Backend",
                                          interactive=len(backends) > 1, scale=2, min_width=150)
                    top_k = gr.Slider(1, MAX_TOP_K, value=min(assistant.settings.top_k, MAX_TOP_K), step=1,
                                      label="Papers retrieved", scale=3, min_width=200)
                with gr.Accordion("Filters", open=False, elem_id="pa-filters"):
                    with gr.Row():
                        since = gr.DateTime("", label="Published since", include_time=False, type="string",
                                            min_width=200, elem_id="pa-since")
                        until = gr.DateTime("", label="Published until", include_time=False, type="string",
                                            min_width=200, elem_id="pa-until")
                        min_upvotes = gr.Number(label="Min upvotes", precision=0, minimum=0, min_width=110,
                                                elem_id="pa-min-upvotes")
                    with gr.Row():
                        listed_since = gr.DateTime("", label="Listed since", include_time=False, type="string",
                                                   min_width=200, elem_id="pa-listed-since")
                        listed_until = gr.DateTime("", label="Listed until", include_time=False, type="string",
                                                   min_width=200, elem_id="pa-listed-until")
                        sources_filter = gr.Dropdown(_source_choices(assistant), value=[], multiselect=True,
                                                     allow_custom_value=True, label="Source files", min_width=200,
                                                     elem_id="pa-source-files")
                filter_inputs = [since, until, listed_since, listed_until, min_upvotes, sources_filter]
                sources = gr.HTML(SOURCES_EMPTY, elem_id="pa-sources", render=False)
                details = gr.JSON(visible=False, render=False)
                earlier = gr.State([])
                chat = gr.ChatInterface(
                    make_responder(assistant),
                    chatbot=gr.Chatbot(
                        elem_id="pa-chat", height="68vh", min_height=360, show_label=False,
                        latex_delimiters=[], allow_tags=False, sanitize_html=True, buttons=[],
                        feedback_options=None, placeholder="Ask about the papers, or pick an example.",
                    ),
                    textbox=gr.Textbox(placeholder="Ask a question about the papers…", autofocus=True,
                                       submit_btn=True, stop_btn=True, max_lines=6),
                    additional_inputs=[backend, top_k, earlier, *filter_inputs],
                    additional_outputs=[sources, details, earlier],
                    examples=[[q] + [None] * (3 + len(filter_inputs)) for q in EXAMPLES],
                    api_name="chat",
                    fill_height=False,
                )
            with gr.Column(scale=2, min_width=300, elem_id="pa-sources-col"):
                with gr.Row(elem_id="pa-downloads"):
                    markdown_file = gr.DownloadButton("Download answer (Markdown)", visible=False, size="sm",
                                                      variant="secondary", elem_id="pa-download-markdown")
                    bibtex_file = gr.DownloadButton("Download references (BibTeX)", visible=False, size="sm",
                                                    variant="secondary", elem_id="pa-download-bibtex")
                sources.render()
                details.render()
        upload.upload(make_uploader(assistant), inputs=upload, outputs=[upload_status, header, sources_filter],
                      api_name="add_papers", concurrency_limit=1)
        sources.change(None, js=SCROLL_TO_EVIDENCE, api_visibility="undocumented", queue=False)
        details.change(export_buttons, inputs=details, outputs=[markdown_file, bibtex_file],
                       api_visibility="undocumented", queue=False)
        chat.chatbot.clear(lambda: (SOURCES_EMPTY, None, []), outputs=[sources, details, earlier],
                           api_visibility="undocumented", queue=False)
        new_chat.click(lambda: ([], [], SOURCES_EMPTY, None, []),
                       outputs=[chat.chatbot, chat.chatbot_state, sources, details, earlier],
                       api_visibility="undocumented", queue=False)
    return app.queue(default_concurrency_limit=CONCURRENCY_LIMIT)


def serve(app: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, *,
          auth: tuple[str, str] | None = None, block: bool = True) -> str:
    """Launch the app on host:port (never a share link); returns the local URL."""
    _, url, _ = app.launch(
        server_name=host, server_port=port, auth=auth, share=False, prevent_thread_lock=not block,
        theme=THEME, css=CSS, footer_links=["api", "settings"], ssr_mode=False, quiet=not block,
        show_error=False, mcp_server=False, max_file_size=MAX_FILE_BYTES,
    )
    return url


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
    if not is_loopback(host) and auth is None:
        print(f"warning: serving on {host} without a login; set {env_var('chat_auth')}=user:password",
              file=sys.stderr)
    print(f"Chat on http://{host}:{port}" + (" (login required)" if auth else ""), file=sys.stderr)
    serve(build_app(assistant), host, port, auth=auth)
