"""Metric functions on hand-made answers and outcomes (no model, no index)."""

from __future__ import annotations

import json

import pytest

from assistant.answering.citations import REFUSAL
from assistant.evals.gate import check_gate, default_keys, load_thresholds, thresholds_from, write_thresholds
from assistant.evals.metrics import (
    Outcome,
    SentenceJudgement,
    aggregate,
    calibration_bins,
    citation_precision,
    citation_recall,
    evidence_answers,
    expected_calibration_error,
    fabricated_citations,
    first_gold_rank,
    keyword_in,
    percentile,
    risk_coverage,
    score,
    summarize,
)
from assistant.models import Answer, Citation, Source

A, B, C = "Alpha: A Paper About Things", "Beta: Another Paper", "Gamma: Third Paper"
OTHERS = [f"Filler Paper {i}" for i in range(12)]


def outcome(kind: str = "single", *, gold=(A,), keywords=(), retrieved=None, text="", refused=False,
            cited=(), sentences=None, fabricated=0, timings=None) -> Outcome:
    """A hand-made outcome: by default a correct single answer citing its gold paper."""
    if sentences is None:
        sentences = [SentenceJudgement(text, [1], True, [True], [False])] if text and not refused else []
    return Outcome("q", kind, "question?", list(gold), list(keywords),
                   list(retrieved if retrieved is not None else [*gold, *OTHERS]), text, refused, list(cited),
                   sentences, fabricated, timings or {"retrieval": 10.0, "answer": 20.0, "total": 30.0})


# -- keywords ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("keyword", "text", "found"), [
    ("Lion", "We discover Lion, an optimizer.", True),
    ("Lion", "a model with 7 billion parameters", False),
    ("lion", "LION beats AdamW", True),
    ("attention sink", "keeps the attention sinks", True),
    ("pairwise", "ranks pairwisely", True),
    ("2 million", "over 2 million hours", True),
    ("2 million", "trained on 1.2 million hours", False),
    ("7.59", "a score of 7.591", False),
    ("7.59", "a score of 7.59.", True),
    ("50%", "cuts memory by 150%", False),
    ("50%", "cuts memory by 50% overall", True),
    ("3.1 GB", "needs only 3.1\nGB of memory", True),
    ("5.67x", "a 5.67 speedup", False),
    ("PPL-p%", "we propose PPL-p% sparsity", True),
])
def test_keyword_matching_rules(keyword: str, text: str, found: bool) -> None:
    assert keyword_in(keyword, text) is found


def test_keyword_accuracy_needs_every_keyword() -> None:
    assert score(outcome(keywords=["Lion", "sign"], text="Lion uses the sign operation [1]."))["keyword_accuracy"] == 1
    s = score(outcome(keywords=["Lion", "momentum"], text="Lion uses the sign operation [1]."))
    assert s["keyword_accuracy"] == 0 and s["missing_keywords"] == ["momentum"]
    assert score(outcome("multi", gold=(A, B), text="x [1]."))["keyword_accuracy"] is None


# -- citations -----------------------------------------------------------------------------------
def test_wrong_citation_lowers_precision_not_recall() -> None:
    s = score(outcome(text="x [1]. y [2].", cited=[A, B]))
    assert s["citation_precision"] == 0.5 and s["citation_recall"] == 1.0
    assert score(outcome(text="x [1].", cited=[A]))["citation_precision"] == 1.0


def test_missing_gold_paper_lowers_recall() -> None:
    s = score(outcome("multi", gold=(A, B, C), text="x [1].", cited=[A]))
    assert s["citation_recall"] == pytest.approx(1 / 3)
    assert s["citation_precision"] == 1.0 and s["strict_accuracy"] == 0


def test_titles_compare_case_and_space_insensitively() -> None:
    assert citation_precision(["alpha:  a paper about THINGS"], [A]) == 1.0
    assert citation_recall([], [A]) == 0.0 and citation_precision([], [A]) is None


# -- refusals ------------------------------------------------------------------------------------
def test_refusal_on_answerable_question_is_a_false_refusal() -> None:
    s = score(outcome(keywords=["Lion"], text=REFUSAL, refused=True))
    assert s["false_refusal"] == 1 and s["refusal"] is None
    assert s["keyword_accuracy"] == 0 and s["citation_recall"] == 0 and s["strict_accuracy"] == 0
    assert s["citation_precision"] is None  # a refusal cites nothing: no precision to judge
    assert s["grounded_recall"] is None


def test_refusal_on_unanswerable_question_is_correct() -> None:
    refused = outcome("unanswerable", gold=(), text=REFUSAL, refused=True)
    answered = outcome("unanswerable", gold=(), text="Made up [1].", cited=[B])
    assert score(refused)["refusal"] == 1 and score(refused)["false_refusal"] is None
    assert score(answered)["refusal"] == 0
    group = aggregate([refused, answered, outcome(text="x [1].", cited=[A])])
    assert group["refusal"] == {"refusal_rate": 0.5, "false_refusal_rate": 0.0}
    assert group["answers"]["citation_recall"] == 1.0  # answer metrics only count answerable questions


# -- fabricated citations ------------------------------------------------------------------------
def _answer(text: str, citations: list[Citation] | None = None) -> Answer:
    sources = [Source(n, t, f"p{n}", "passage", 1.0) for n, t in enumerate([A, B, C], start=1)]
    return Answer("q", text, False, citations or [], sources, "test")


def test_out_of_range_marker_counts_as_fabricated() -> None:
    answer = _answer("Alpha does it [1].", [Citation(1, A, "p1")])
    assert fabricated_citations(answer, [A, B, C]) == 0
    # the pipeline already removed [7] from answer.text: the raw text still shows it
    assert fabricated_citations(answer, [A, B, C], raw_text="Alpha does it [1]. Beta too [7].") == 1
    assert fabricated_citations(_answer("x [4, 5]. y [1]."), [A, B, C]) == 2


def test_invented_title_and_mismatched_citation_count_as_fabricated() -> None:
    quoted = _answer('As shown in "Omega: A Paper That Does Not Exist" [1].', [Citation(1, A, "p1")])
    assert fabricated_citations(quoted, [A, B, C]) == 1
    assert fabricated_citations(_answer(f'As "{A}" shows [1].', [Citation(1, A, "p1")]), [A, B, C]) == 0
    assert fabricated_citations(_answer("x [2].", [Citation(2, A, "p1")]), [A, B, C]) == 1


def test_fabricated_citations_are_summed() -> None:
    group = aggregate([outcome(text="x [1].", cited=[A], fabricated=2), outcome(text="y [1].", cited=[A])])
    assert group["answers"]["fabricated_citations"] == 2


# -- retrieval -----------------------------------------------------------------------------------
def test_retrieval_ranks() -> None:
    assert first_gold_rank([B, C, A], [A]) == 3
    s = score(outcome(retrieved=[B, C, A, *OTHERS]))
    assert (s["hit@1"], s["hit@5"], s["mrr@10"], s["gold_rank"]) == (0, 1, pytest.approx(1 / 3), 3)
    late = score(outcome(retrieved=[*OTHERS[:10], A]))
    assert late["hit@5"] == 0 and late["mrr@10"] == 0 and late["recall@10"] == 0
    multi = score(outcome("multi", gold=(A, B, C), retrieved=[A, *OTHERS[:8], C, B]))
    assert multi["recall@10"] == pytest.approx(2 / 3) and multi["hit@1"] == 1


# -- grounding -----------------------------------------------------------------------------------
def test_alce_citation_precision_and_recall() -> None:
    needed = SentenceJudgement("x [1, 2].", [1, 2], True, alone=[True, False], without=[False, True])
    # cite 1 supports alone; cite 2 neither supports alone nor is needed: imprecise
    assert needed.precise() == [True, False]
    both_needed = SentenceJudgement("y [1, 2].", [1, 2], True, alone=[False, False], without=[False, False])
    assert both_needed.precise() == [True, True]
    unsupported = SentenceJudgement("z [3].", [3], False, alone=[False], without=[False])
    uncited = SentenceJudgement("w.", [], False)
    s = score(outcome(text="x", sentences=[needed, both_needed, unsupported, uncited], cited=[A]))
    assert s["grounded_recall"] == 0.5
    assert s["grounded_precision"] == pytest.approx(3 / 5)
    assert s["uncited_sentences"] == 0.25


# -- aggregation ---------------------------------------------------------------------------------
def test_summary_by_kind_and_latency() -> None:
    outcomes = [outcome(text="x [1].", cited=[A], timings={"retrieval": t, "answer": 2 * t, "total": 3 * t})
                for t in (10.0, 20.0, 30.0, 40.0)]
    outcomes.append(outcome("unanswerable", gold=(), text=REFUSAL, refused=True))
    summary = summarize(outcomes, ["single", "numeric", "unanswerable"])
    assert list(summary["by_kind"]) == ["single", "unanswerable"]
    single = summary["by_kind"]["single"]
    assert single["n"] == 4 and single["latency_ms"]["retrieval"] == {"p50": 25.0, "p95": 38.5}
    assert summary["overall"]["answerable"] == 4 and summary["overall"]["answered"] == 4
    assert summary["by_kind"]["unanswerable"]["retrieval"]["hit@1"] is None
    assert percentile([], 50) is None


# -- gate ----------------------------------------------------------------------------------------
def _metrics(hit5: float, fabricated: int) -> dict:
    return {"overall": {"retrieval": {"hit@5": hit5}, "answers": {"fabricated_citations": fabricated},
                        "refusal": {"false_refusal_rate": 0.1}}}


def test_gate_names_each_metric_outside_its_limit(tmp_path) -> None:
    path = tmp_path / "thresholds.json"
    path.write_text(json.dumps({"min": {"overall.retrieval.hit@5": 0.8},
                                "max": {"overall.answers.fabricated_citations": 0}}))
    limits = load_thresholds(path)
    assert check_gate(_metrics(0.9, 0), limits) == []
    failures = check_gate(_metrics(0.7, 2), limits)
    assert len(failures) == 2
    assert "overall.retrieval.hit@5" in failures[0] and "fabricated_citations" in failures[1]
    with pytest.raises(ValueError, match="unknown metric"):
        check_gate(_metrics(0.9, 0), {"min": {"overall.retrieval.hit@3": 0.5}})


def test_thresholds_are_set_just_under_measured_figures(tmp_path) -> None:
    keys = {"min": ["overall.retrieval.hit@5"], "max": ["overall.refusal.false_refusal_rate"]}
    limits = thresholds_from(_metrics(0.8571, 3), keys)
    assert limits["min"] == {"overall.retrieval.hit@5": 0.83}
    assert limits["max"] == {"overall.refusal.false_refusal_rate": 0.12, "overall.answers.fabricated_citations": 0}
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"min": {"overall.retrieval.hit@5": 0.1}}))
    write_thresholds(_metrics(0.95, 0), path)
    written = load_thresholds(path)["min"]
    assert written["overall.retrieval.hit@5"] == 0.93
    assert set(default_keys(_metrics(0.95, 0))["min"]) <= set(written)  # what the file lacked is gated too
    with pytest.raises(ValueError, match="no such thresholds file"):
        load_thresholds(tmp_path / "missing.json")


# -- suites and calibration ----------------------------------------------------------------------
def _rated(confidence: float, answers: bool, suite: str = "name", kind: str = "single") -> Outcome:
    o = outcome(kind, gold=() if kind == "unanswerable" else (A,), text="An answer [1].", cited=(A,),
                refused=kind == "unanswerable")
    o.suite, o.confidence, o.evidence_answers = suite, confidence, answers
    return o


def test_calibration_error_and_risk_coverage() -> None:
    perfect = [_rated(0.95, True)] * 19 + [_rated(0.95, False)] + [_rated(0.05, False)] * 19 + [_rated(0.05, True)]
    assert expected_calibration_error(perfect) == 0.0
    overconfident = [_rated(0.9, False)] * 10
    assert expected_calibration_error(overconfident) == 0.9
    points = risk_coverage([_rated(0.9, True), _rated(0.5, False), _rated(0.1, False)])
    assert points == [(1 / 3, 0.0), (2 / 3, 0.5), (1.0, 2 / 3)]
    bins = calibration_bins(perfect)
    assert [b["n"] for b in bins] == [20, 20] and bins[1]["accuracy"] == 0.95


def test_metrics_by_suite_and_suite_thresholds() -> None:
    outcomes = [_rated(0.9, True, "name"), _rated(0.1, False, "near-miss", "unanswerable"), _rated(0.8, True)]
    summary = summarize(outcomes, ("single", "unanswerable"))
    assert list(summary["by_suite"]) == ["name", "near-miss"] and summary["by_suite"]["name"]["n"] == 2
    assert summary["by_suite"]["near-miss"]["refusal"]["refusal_rate"] == 1.0
    keys = default_keys(summary)
    assert "by_suite.near-miss.refusal.refusal_rate" in keys["min"]
    assert "by_suite.name.answers.strict_accuracy" in keys["min"] and "by_suite.name.calibration.ece" in keys["max"]
    assert "by_kind.multi.retrieval.recall@10" not in keys["min"]  # not measured by this set: not gated
    hand_written = summarize([outcome()], ("single",))
    assert hand_written["by_suite"] == {}


def test_evidence_answers_needs_the_top_paper_and_the_keywords() -> None:
    sources = [Source(1, A, "a", "It reaches 3.04x throughput.", 1.0), Source(2, B, "b", "Other.", 0.5)]
    assert evidence_answers(sources, [A], ["3.04x"])
    assert not evidence_answers(sources, [A], ["6x"])
    assert not evidence_answers(sources, [B], [])
    assert not evidence_answers(sources, [], [])
