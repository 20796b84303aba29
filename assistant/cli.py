"""The `assistant` command: index, ask, chat, eval. A thin layer over the Python API.

Exit status: 0 success (an answer or a refusal), 1 failure (backend, index), 2 bad input,
3 indexing finished but some inputs were skipped (partial success).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import offline  # noqa: F401
from .errors import AssistantError, CorpusError, InvalidQuestionError
from .settings import Settings, cli_flags
from .text import without_control

EXIT_FAILURE, EXIT_BAD_INPUT, EXIT_PARTIAL = 1, 2, 3
#: The PaperFilter fields `ask` has flags for.
FILTER_FIELDS = ("since", "until", "listed_since", "listed_until", "min_upvotes", "sources")


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(**{f.name: getattr(args, f.name, None) for f in cli_flags()})


def cmd_index(args: argparse.Namespace) -> int:
    from .indexing.index import PaperIndex

    report = PaperIndex(_settings(args)).build(args.paths, rebuild=args.rebuild, progress=not args.quiet)
    for line in report.lines():
        print(line)
    return EXIT_PARTIAL if report.problems else 0


def cmd_ask(args: argparse.Namespace) -> int:
    from .chat.render import follow_up_note
    from .pipeline import Assistant, Conversation, clean_question
    from .search.filters import PaperFilter

    settings = _settings(args)
    for question in args.question:  # bad input fails before any indexing
        clean_question(question, settings.max_question_chars)
    paper_filter = PaperFilter.parse({name: getattr(args, name) for name in FILTER_FIELDS})
    assistant = Assistant(settings)
    assistant.ensure_index()  # a question never builds the index on its own
    conversation = Conversation(assistant, filters=paper_filter)
    for i, question in enumerate(args.question):
        result = conversation.ask(question)
        if args.json:  # one JSON object per question (JSON Lines for a conversation)
            print(json.dumps(result.to_dict(), ensure_ascii=False))
            continue
        if len(args.question) > 1:
            print(("\n" if i else "") + terminal_safe(f"> {question}"))
            note = follow_up_note(result)
            if note:
                print(terminal_safe(f"({note})"))
        if result.filters.get("matching_papers"):  # with none, the text itself says what was searched
            print(terminal_safe(result.filters["note"]) + "\n")
        print(terminal_safe(result.text))
        if result.citations:
            print()
            for c in result.citations:
                print(terminal_safe(f"[{c.n}] {c.title}"))
        for warning in result.warnings:
            print(terminal_safe(f"warning: {warning}"), file=sys.stderr)

    return 0


def terminal_safe(text: str) -> str:
    """Text without control characters other than newline and tab: an answer (or an LLM's reply)
    must not be able to send escape sequences to the user's terminal."""
    return without_control(text)


def cmd_chat(args: argparse.Namespace) -> int:
    from .chat.app import launch

    launch(_settings(args), host=args.host, port=args.port)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .evals.run import run_cli

    return run_cli(args, _settings(args))


def _print_error(exc: Exception) -> None:
    """The one line on stderr for a failed command."""
    print(terminal_safe("error: " + " ".join(str(exc).split())), file=sys.stderr)


def add_setting_flags(parser: argparse.ArgumentParser, *names: str) -> None:
    """Flags for settings, with help, type and choices taken from the Settings fields."""
    for f in cli_flags():
        if f.name not in names:
            continue
        kind: Any = {"Path": Path, "int": int}.get(str(f.type).split(" ")[0], str)
        choices = f.metadata["choices"]
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=kind, choices=choices() if choices else None,
                            help=f"{f.metadata['help']} (env {f.metadata['env']})".replace("`", ""))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(prog="assistant", description="Cited answers over research-paper abstracts.")
    common = argparse.ArgumentParser(add_help=False)
    add_setting_flags(common, "index_dir", "chroma_url")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("index", parents=[common], help="parse, chunk, embed and store the corpus")
    p.add_argument("paths", nargs="*", help="extra pages, .jsonl or .csv files, or folders to add")
    p.add_argument("--rebuild", action="store_true", help="drop the index and build it anew")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("ask", parents=[common], help="answer a question (more questions: a conversation)")
    p.add_argument("question", nargs="+",
                   help="the question; further questions are follow-ups answered about the previous answer's papers")
    add_setting_flags(p, "backend", "top_k", "retrieval")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    f = p.add_argument_group("filters", "narrow the papers searched (dates as YYYY-MM-DD, YYYY-MM or YYYY)")
    f.add_argument("--since", metavar="DATE", help="only papers published on or after DATE")
    f.add_argument("--until", metavar="DATE", help="only papers published on or before DATE")
    f.add_argument("--listed-since", metavar="DATE", help="only papers a Daily Papers page listed on or after DATE")
    f.add_argument("--listed-until", metavar="DATE", help="only papers a Daily Papers page listed on or before DATE")
    f.add_argument("--min-upvotes", type=int, metavar="N", help="only papers with at least N upvotes")
    f.add_argument("--source", dest="sources", action="append", metavar="TEXT",
                   help="only papers read from a file whose name contains TEXT (repeatable)")
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("chat", parents=[common], help="start the Gradio chat")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    add_setting_flags(p, "backend")
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("eval", parents=[common], help="run the citation evals")
    p.add_argument("--set", dest="eval_set", type=Path, help="eval set JSONL (default: evals/test.jsonl)")
    add_setting_flags(p, "backend", "top_k", "retrieval")
    p.add_argument("--out", type=Path, help="folder for JSON, Markdown and PNG reports")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N questions of the set (e.g. for a slow LLM)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--compare", action="store_true", help="compare retrieval modes and backends side by side")
    p.add_argument("--gate", type=Path, help="exit 1 if a metric is below the thresholds in this file")
    p.add_argument("--write-thresholds", type=Path, metavar="FILE",
                   help="write thresholds just under the measured figures to FILE (see docs/evals.md)")
    p.set_defaults(func=cmd_eval)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (InvalidQuestionError, CorpusError, ValueError) as exc:
        _print_error(exc)
        return EXIT_BAD_INPUT
    except AssistantError as exc:
        _print_error(exc)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
