"""Eval sets: JSONL files of questions with gold papers and answer keywords.

Format (one object per line): `{"id", "kind", "question", "gold_titles", "answer_keywords"}`,
kind one of single | numeric | multi | unanswerable, and optionally `"suite"` (e.g. `name`,
`near-miss`: the generated suites of `evals/generate.py`), which reports show separately.
`load_eval_set` reads a file for a run and rejects malformed lines; `check_eval_set` also checks
the questions against a corpus.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..corpus.parse import normalize_title
from ..errors import EvalSetError
from ..models import Paper
from .metrics import keyword_in

KINDS = ("single", "numeric", "multi", "unanswerable")
FIELDS = ("id", "kind", "question", "gold_titles", "answer_keywords")


@dataclass(frozen=True)
class EvalQuestion:
    """One question of an eval set."""

    id: str
    kind: str
    question: str
    gold_titles: tuple[str, ...]
    answer_keywords: tuple[str, ...]
    suite: str = ""

    @property
    def answerable(self) -> bool:
        """Whether the collection answers it (every kind but `unanswerable`)."""
        return self.kind != "unanswerable"


def parse_line(line: str) -> tuple[EvalQuestion | None, list[str]]:
    """One line as a question, or None and the reasons it is not one."""
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        return None, [f"invalid JSON ({exc.msg})"]
    if not isinstance(raw, dict):
        return None, ["not a JSON object"]
    problems = []
    missing = [k for k in FIELDS if k not in raw]
    if missing:
        problems.append(f"missing field(s) {', '.join(missing)}")
    qid, kind, question = raw.get("id"), raw.get("kind"), raw.get("question")
    gold, keywords = raw.get("gold_titles"), raw.get("answer_keywords")
    if "id" in raw and (not isinstance(qid, str) or not qid.strip()):
        problems.append("id must be a non-empty string")
    if "kind" in raw and kind not in KINDS:
        problems.append(f"invalid kind {kind!r}; use one of {', '.join(KINDS)}")
    if "question" in raw and (not isinstance(question, str) or not question.strip()):
        problems.append("question must be a non-empty string")
    if "gold_titles" in raw and not _strings(gold):
        problems.append("gold_titles must be a list of non-empty strings")
    if "answer_keywords" in raw and not _strings(keywords):
        problems.append("answer_keywords must be a list of non-empty strings")
    suite = raw.get("suite", "")
    if not isinstance(suite, str):
        problems.append("suite must be a string")
    if problems:
        return None, problems
    return EvalQuestion(raw["id"], raw["kind"], raw["question"], tuple(raw["gold_titles"]),
                        tuple(raw["answer_keywords"]), suite), []


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and v.strip() for v in value)


def _lines(path: Path) -> list[tuple[int, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EvalSetError(f"{path}: no such eval set file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalSetError(f"{path}: cannot read ({exc})") from None
    return [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]


def load_eval_set(path: str | Path) -> list[EvalQuestion]:
    """The questions of a JSONL eval set; raises EvalSetError listing every malformed line."""
    path = Path(path)
    questions, problems = _read(path)
    if problems:
        raise EvalSetError(f"{path}: {len(problems)} problem(s): " + "; ".join(problems))
    if not questions:
        raise EvalSetError(f"{path}: the eval set holds no questions")
    return questions


def _read(path: Path) -> tuple[list[EvalQuestion], list[str]]:
    questions, problems = [], []
    seen: dict[str, int] = {}
    for number, line in _lines(path):
        question, reasons = parse_line(line)
        problems += [f"line {number}: {r}" for r in reasons]
        if question is None:
            continue
        if question.id in seen:
            problems.append(f"line {number}: duplicate id {question.id!r} (first on line {seen[question.id]})")
        seen.setdefault(question.id, number)
        questions.append(question)
    return questions, problems


def check_eval_set(paths: Iterable[str | Path], papers: Iterable[Paper]) -> list[str]:
    """Every problem of the given eval files against a corpus (empty when all is well).

    Checks: valid JSON objects with all fields, a valid kind, ids unique across all files, gold
    titles present verbatim in the corpus and not repeated, exactly 1 gold title for single and
    numeric, at least 2 for multi, none and no keywords for unanswerable, and every answer keyword
    found in a gold abstract under the same matching rule the evals use (`metrics.keyword_in`).
    """
    abstracts = {p.title: p.abstract for p in papers}
    by_norm = {normalize_title(t): t for t in abstracts}
    problems: list[str] = []
    seen_ids: dict[str, str] = {}
    for path in map(Path, paths):
        try:
            lines = _lines(path)
        except EvalSetError as exc:
            problems.append(str(exc))
            continue
        if not lines:
            problems.append(f"{path}: the eval set holds no questions")
        for number, line in lines:
            where = f"{path}:{number}"
            question, reasons = parse_line(line)
            problems += [f"{where}: {r}" for r in reasons]
            if question is None:
                continue
            where = f"{where} ({question.id})"
            if question.id in seen_ids:
                problems.append(f"{where}: duplicate id (first at {seen_ids[question.id]})")
            seen_ids.setdefault(question.id, f"{path}:{number}")
            problems += [f"{where}: {p}" for p in _question_problems(question, abstracts, by_norm)]
    return problems


def _question_problems(q: EvalQuestion, abstracts: dict[str, str], by_norm: dict[str, str]) -> list[str]:
    problems = []
    n = len(q.gold_titles)
    if len(set(q.gold_titles)) != n:
        problems.append("gold_titles repeats a title")
    for title in q.gold_titles:
        if title not in abstracts:
            near = by_norm.get(normalize_title(title))
            hint = f" (the corpus spells it {near!r})" if near else ""
            problems.append(f"gold title not in the corpus verbatim: {title!r}{hint}")
    if q.kind in ("single", "numeric") and n != 1:
        problems.append(f"{q.kind} needs exactly 1 gold title, has {n}")
    if q.kind == "multi" and n < 2:
        problems.append(f"multi needs at least 2 gold titles, has {n}")
    if q.kind == "unanswerable" and (n or q.answer_keywords):
        problems.append("unanswerable must have no gold titles and no answer keywords")
    gold_abstracts = [abstracts[t] for t in q.gold_titles if t in abstracts]
    if gold_abstracts:
        for keyword in q.answer_keywords:
            if not any(keyword_in(keyword, a) for a in gold_abstracts):
                problems.append(f"answer keyword {keyword!r} not found in any gold abstract")
    return problems
