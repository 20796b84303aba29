"""The eval runner: puts an eval set through the real pipeline and scores it (`assistant eval`).

For each question it retrieves the top 10 papers (for the retrieval metrics), answers with the
chosen backend and retrieval mode (keeping the answerer's raw text to catch invalid markers),
and judges each cited sentence's support. Metrics are defined in `assistant.metrics`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..answering import configured_backends
from ..answering.citations import drop_invalid_markers, markers, score_support
from ..corpus.parse import normalize_title
from ..models import Answer
from ..pipeline import Assistant
from ..settings import RETRIEVAL_MODES, Settings
from .dataset import KINDS, EvalQuestion, load_eval_set
from .gate import check_gate, load_thresholds, write_thresholds
from .metrics import (
    RETRIEVAL_DEPTH,
    Outcome,
    SentenceJudgement,
    calibration_bins,
    evidence_answers,
    fabricated_citations,
    risk_coverage,
    score,
    summarize,
)
from .report import metrics_table, print_table, write_comparison, write_report

DEFAULT_SET = Path("evals/test.jsonl")
RESULTS_DIR = Path("evals/results")


def _recite(sentence: str, cites: Sequence[int]) -> str:
    """The sentence with its markers replaced by one marker listing `cites` (before the end mark)."""
    text = drop_invalid_markers(sentence, set())[0].rstrip()
    end = text[-1] if text and text[-1] in ".!?" else ""
    body = text[:-1] if end else text
    return f"{body} [{', '.join(map(str, cites))}]{end}" if cites else text


def judge_sentences(answer: Answer, encode: Any) -> list[SentenceJudgement]:
    """Support judgements for each answer sentence: together, each cite alone, each cite left out."""
    judgements = [SentenceJudgement(s.text, list(s.cites), s.supported) for s in answer.sentences]
    variants: list[tuple[SentenceJudgement, str, str]] = []
    for j in judgements:
        if len(j.cites) == 1:
            j.alone, j.without = [j.supported], [False]
            continue
        for c in j.cites:
            variants.append((j, "alone", _recite(j.text, [c])))
            variants.append((j, "without", _recite(j.text, [x for x in j.cites if x != c])))
    if variants:
        scored = score_support([v[2] for v in variants], answer.sources, encode)
        for (j, which, _), result in zip(variants, scored):
            getattr(j, which).append(result.supported)
    return judgements


def evaluate_question(assistant: Assistant, q: EvalQuestion, *, backend: str, retrieval: str,
                      top_k: int | None, known_titles: Sequence[str]) -> Outcome:
    """Run one question through the full answer pipeline, then retrieval alone (top 10).

    The answer runs first so that its timings are not helped by the query embedding cached by
    the extra retrieval.
    """
    stream = assistant.stream(q.question, backend=backend, top_k=top_k, retrieval=retrieval)
    answer = stream.answer
    retrieved = [s.title for s in assistant.retrieve(q.question, top_k=RETRIEVAL_DEPTH, retrieval=retrieval)]
    shown = {s.n for s in answer.sources}
    return Outcome(
        q.id, q.kind, q.question, list(q.gold_titles), list(q.answer_keywords), retrieved, answer.text,
        answer.refused, [c.title for c in answer.citations], judge_sentences(answer, assistant.encoder.encode),
        fabricated_citations(answer, known_titles), dict(answer.timings_ms),
        q.suite, answer.confidence, evidence_answers(answer.sources, q.gold_titles, q.answer_keywords),
        grounded=answer.grounded, removed_markers=len({n for n in markers(stream.text) if n not in shown}),
        raw_text=stream.text,
    )


def run_set(assistant: Assistant, questions: Sequence[EvalQuestion], *, backend: str | None = None,
            retrieval: str | None = None, top_k: int | None = None, progress: bool = True,
            label: str = "eval") -> dict[str, Any]:
    """Answer every question and return the metrics payload (config, overall, by_kind, questions)."""
    from tqdm import tqdm

    assistant.ensure_index(progress=progress)
    backend = backend or assistant.settings.backend
    retrieval = retrieval or assistant.settings.retrieval
    known_titles = assistant.index.titles()
    _warn_unknown_gold(questions, known_titles)
    outcomes = [evaluate_question(assistant, q, backend=backend, retrieval=retrieval, top_k=top_k,
                                  known_titles=known_titles)
                for q in tqdm(questions, desc=label, unit="q", file=sys.stderr, disable=not progress)]
    answerer = assistant.answerer(backend).name
    payload: dict[str, Any] = {
        "config": {"backend": answerer, "retrieval": retrieval, "top_k": top_k or assistant.settings.top_k,
                   "questions": len(questions), "created": datetime.now(UTC).isoformat(timespec="seconds")},
        **summarize(outcomes, KINDS),
        "calibration": {"bins": calibration_bins(outcomes), "risk_coverage": risk_coverage(outcomes)},
        "questions": [_question_record(o) for o in outcomes],
    }
    return payload


def _warn_unknown_gold(questions: Sequence[EvalQuestion], known_titles: Sequence[str]) -> None:
    known = {normalize_title(t) for t in known_titles}
    unknown = sorted({t for q in questions for t in q.gold_titles if normalize_title(t) not in known})
    for title in unknown:
        print(f"warning: gold title not in the index (its questions cannot be right): {title!r}", file=sys.stderr)


def _question_record(o: Outcome) -> dict[str, Any]:
    return {
        "id": o.id, "kind": o.kind, "suite": o.suite, "question": o.question, "confidence": o.confidence,
        "evidence_answers": o.evidence_answers, "gold_titles": o.gold_titles,
        "answer_keywords": o.answer_keywords, "retrieved": o.retrieved, "answer": o.text, "raw_answer": o.raw_text,
        "refused": o.refused,
        "cited": o.cited, "fabricated": o.fabricated, "grounded": o.grounded, "removed_markers": o.removed_markers,
        "sentences": [{"text": j.text, "cites": j.cites, "supported": j.supported, "precise": j.precise()}
                      for j in o.sentences],
        "timings_ms": {k: round(v, 1) for k, v in o.timings_ms.items()},
        "scores": score(o),
    }


# -- command line ------------------------------------------------------------------------------
def _out_dir(args: argparse.Namespace, name: str) -> Path:
    if args.out:
        return Path(args.out)
    return RESULTS_DIR / f"{time.strftime('%Y%m%d-%H%M%S')}-{name}"


def run_cli(args: argparse.Namespace, settings: Settings) -> int:
    """`assistant eval`: run a set, print a table, write reports; gate or compare on request."""
    path = Path(args.eval_set or DEFAULT_SET)
    questions = load_eval_set(path)[:args.limit]
    write_to = getattr(args, "write_thresholds", None)
    if args.compare and (args.gate or write_to):
        raise ValueError("--compare cannot be combined with --gate or --write-thresholds")
    limits = load_thresholds(args.gate) if args.gate else None
    assistant = Assistant(settings)
    if args.compare:
        return _compare(args, assistant, questions, path)
    payload = run_set(assistant, questions, backend=settings.backend, retrieval=settings.retrieval,
                      top_k=settings.top_k, label=f"{path.name} {settings.backend}/{settings.retrieval}")
    payload["config"]["set"] = str(path)
    stream = sys.stderr if args.json else sys.stdout
    print_table(metrics_table(payload), stream)
    status = 0
    if limits is not None:
        failures = check_gate(payload, limits)
        payload["gate"] = {"file": str(args.gate), "passed": not failures, "failures": failures}
        for line in failures:
            print(f"gate: {line}", file=sys.stderr)
        print(f"gate: {'FAILED' if failures else 'passed'} ({sum(map(len, limits.values()))} limits, {args.gate})",
              file=sys.stderr)
        status = 1 if failures else 0
    out = _out_dir(args, f"{payload['config']['backend']}-{payload['config']['retrieval']}")
    write_report(out, payload)
    print(f"reports: {out}/metrics.json, report.md, metrics.png", file=stream)
    if write_to:
        write_thresholds(payload, write_to)
        print(f"thresholds written to {write_to}", file=sys.stderr)
    if args.json:
        print(json.dumps({k: v for k, v in payload.items() if k != "questions"}, ensure_ascii=False))
    return status


def _compare(args: argparse.Namespace, assistant: Assistant, questions: Sequence[EvalQuestion], path: Path) -> int:
    """Every configured backend with every retrieval mode; a fresh Assistant (cold caches) per run."""
    runs = []
    out = _out_dir(args, "compare")
    assistant.ensure_index()
    for backend in configured_backends(assistant.settings):
        for mode in RETRIEVAL_MODES:
            payload = run_set(Assistant(assistant.settings), questions, backend=backend, retrieval=mode,
                              top_k=assistant.settings.top_k, label=f"{path.name} {backend}/{mode}")
            payload["config"]["set"] = str(path)
            write_report(out / f"{backend}-{mode}", payload)
            runs.append(payload)
    table = write_comparison(out, runs)
    stream = sys.stderr if args.json else sys.stdout
    print_table(table, stream)
    print(f"reports: {out}/compare.json, compare.md, compare.png (+ one folder per run)", file=stream)
    if args.json:
        print(json.dumps([{k: v for k, v in r.items() if k != "questions"} for r in runs], ensure_ascii=False))
    return 0
