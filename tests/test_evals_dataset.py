"""Eval set loading and checking: hand-made files against hand-made and real corpora."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from assistant.corpus.parse import load_corpus
from assistant.errors import EvalSetError
from assistant.evals.dataset import check_eval_set, load_eval_set
from assistant.models import Paper

ROOT = Path(__file__).resolve().parents[1]
PAPERS = [Paper("p1", "Lion: Symbolic Discovery", "We discover Lion, which uses momentum. It needs 3.1 GB."),
          Paper("p2", "Other Paper: Sinks", "Attention sinks matter."),
          Paper("p3", "Third Paper: More Sinks", "Streaming with an attention sink.")]


def _write(path: Path, rows: list[object]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def q(qid: str, kind: str, gold: list[str], keywords: list[str]) -> dict:
    return {"id": qid, "kind": kind, "question": f"Question {qid}?", "gold_titles": gold, "answer_keywords": keywords}


def test_a_good_file_has_no_problems(tmp_path: Path) -> None:
    path = _write(tmp_path / "good.jsonl", [
        q("a", "single", ["Lion: Symbolic Discovery"], ["Lion"]),
        q("b", "numeric", ["Lion: Symbolic Discovery"], ["3.1 GB"]),
        q("c", "multi", ["Other Paper: Sinks", "Third Paper: More Sinks"], ["attention sink"]),
        q("d", "unanswerable", [], []),
    ])
    assert check_eval_set([path], PAPERS) == []
    assert [x.kind for x in load_eval_set(path)] == ["single", "numeric", "multi", "unanswerable"]


def test_every_problem_is_listed(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.jsonl", [
        "{not json",
        q("a", "trivia", [], []),
        {"id": "b", "kind": "single", "question": "Where?"},
        q("c", "single", ["Lion: Symbolic Discovery", "Other Paper: Sinks"], []),
        q("c", "multi", ["Other Paper: Sinks"], []),
        q("e", "unanswerable", ["Other Paper: Sinks"], []),
        q("f", "single", ["lion: symbolic discovery"], []),
        q("g", "single", ["Lion: Symbolic Discovery"], ["billion", "Adam"]),
    ])
    problems = "\n".join(check_eval_set([path], PAPERS))
    for expected in ("bad.jsonl:1: invalid JSON", "invalid kind 'trivia'",
                     "missing field(s) gold_titles, answer_keywords",
                     "single needs exactly 1 gold title, has 2", "duplicate id", "multi needs at least 2 gold titles",
                     "unanswerable must have no gold titles", "not in the corpus verbatim: 'lion: symbolic discovery'",
                     "the corpus spells it 'Lion: Symbolic Discovery'", "keyword 'billion' not found",
                     "keyword 'Adam' not found"):
        assert expected in problems
    with pytest.raises(EvalSetError, match=r"line 1: invalid JSON.*line 2: invalid kind"):
        load_eval_set(path)


def test_ids_must_be_unique_across_files(tmp_path: Path) -> None:
    one = _write(tmp_path / "one.jsonl", [q("x", "unanswerable", [], [])])
    two = _write(tmp_path / "two.jsonl", [q("x", "unanswerable", [], [])])
    assert any("duplicate id" in p for p in check_eval_set([one, two], PAPERS))


def test_missing_or_empty_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EvalSetError, match="no such eval set file"):
        load_eval_set(tmp_path / "nope.jsonl")
    with pytest.raises(EvalSetError, match="holds no questions"):
        load_eval_set(_write(tmp_path / "empty.jsonl", [""]))


def test_project_sets_are_valid_against_the_bundled_corpus() -> None:
    sets = [ROOT / "evals" / name for name in ("train.jsonl", "dev.jsonl", "test.jsonl")]
    assert check_eval_set(sets, load_corpus().papers) == []


def test_hand_written_splits_share_no_gold_paper() -> None:
    """Fitting on train.jsonl must not see a paper that dev or test asks about."""
    gold = {name: {t for q in load_eval_set(ROOT / "evals" / f"{name}.jsonl") for t in q.gold_titles}
            for name in ("train", "dev", "test")}
    assert gold["train"] and not gold["train"] & (gold["dev"] | gold["test"])


def test_check_set_script_exit_status(tmp_path: Path) -> None:
    bad = _write(tmp_path / "bad.jsonl", [q("a", "single", ["No Such Paper: At All"], [])])
    script = ROOT / "evals" / "check_set.py"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ok = subprocess.run([sys.executable, script], capture_output=True, text=True, cwd=ROOT, env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    failed = subprocess.run([sys.executable, script, bad], capture_output=True, text=True, cwd=ROOT, env=env)
    assert failed.returncode == 1 and "No Such Paper: At All" in failed.stdout
