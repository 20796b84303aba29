"""Eval metrics: pure functions over what the pipeline did for each question (no model needed).

Titles are compared after `corpus.normalize_title` (NFKC, case-folded, spaces collapsed).
"Answerable" = every kind but `unanswerable`. Per-question values are averaged over the
questions where they are defined (macro average); counts are summed.

Retrieval (answerable questions; `retrieved` = the papers `Assistant.retrieve` returns with
top_k=10, best first, independent of the answer's top_k):
- hit@k: 1 if a gold paper is among the first k retrieved, else 0 (k = 1, 5).
- mrr@10: 1 / rank of the first gold paper if it is in the top 10, else 0.
- recall@10: share of the gold papers in the top 10 (the useful one for `multi`).

Answers (answerable questions; a refusal counts as 0 where a value is defined):
- keyword_accuracy: 1 if every answer keyword is in the answer text (`keyword_in`), else 0;
  defined only for questions that have keywords.
- citation_precision: share of the cited papers that are gold; defined only for answers that
  cite something (a refusal cites nothing, so it neither helps nor hurts precision).
- citation_recall: share of the gold papers the answer cites (refusal = 0).
- strict_accuracy: 1 if the answer is not a refusal, has every keyword and cites every gold paper.
- removed_markers (all questions, a count): `[n]` markers the backend wrote that point outside the
  sources, which the pipeline removed before the answer was shown.
- fabricated_citations (all questions, a count): `[n]` markers that point outside the sources,
  citations whose title is not the source's, and quoted titles that are not in the collection,
  found in the answerer's raw text (before the pipeline removes invalid markers). Must be 0.

Grounding (ALCE-style, every answer that is not a refusal, judged by `citations.score_support`
without an LLM; see `SentenceJudgement`):
- citation_recall: share of the answer's sentences that their cited passages support
  (`SentenceSupport.supported`); a sentence without a citation is unsupported.
- citation_precision: share of the answer's citations that are precise. A citation of a sentence
  is precise when the sentence is supported by all its citations and either this source alone
  supports it or the sentence is no longer supported without it (ALCE's "irrelevant citation"
  test). Defined for answers with at least one citation.
- uncited_sentences: share of the answer's sentences that cite nothing.
- ungrounded_answers: share of the answers (refusals aside) that are not `Answer.grounded`: no
  sentence states something a source it cites supports.

Refusal:
- refusal_rate: share of unanswerable questions refused (higher is better).
- false_refusal_rate: share of answerable questions refused (lower is better).

Calibration (every question; `Answer.confidence` against whether the evidence answers, see
`evidence_answers`):
- ece: expected calibration error over 10 equal-width confidence bins: the question-weighted
  mean of |mean confidence - share of questions whose evidence answers| per bin (lower is better).
- The report adds a reliability diagram and a risk-coverage curve (answer only questions with
  confidence >= t; coverage = share answered, risk = share of those whose evidence does not answer).

Latency: p50 and p95 of each stage's `timings_ms` (retrieval, answer, total) over the questions,
by linear interpolation between order statistics (numpy's default percentile).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..answering.citations import markers, quoted_titles_not_in
from ..corpus.parse import normalize_title
from ..models import Answer, Source

LATENCY_STAGES = ("retrieval", "answer", "total")
RETRIEVAL_DEPTH = 10
_ALNUM = re.compile(r"[^\W_]")


# -- keywords ----------------------------------------------------------------------------------
def _norm_text(text: str) -> str:
    return " ".join(normalize_title(text).split())


def keyword_pattern(keyword: str) -> re.Pattern[str]:
    """The regex for a keyword: case-insensitive, whole word at the edges that are letters or digits.

    A keyword that starts with a letter or digit must not follow one ("Lion" is not found in
    "billion"); a leading digit must not follow "digit." or "digit," ("2 million" is not found in
    "1.2 million"). A keyword that ends with a letter may end mid-word, so inflections count
    ("attention sink" matches "attention sinks", "pairwise" matches "pairwisely"); one that ends
    with a digit must not run on into "digit", ".digit" or ",digit" ("7.59" is not found in
    "7.591"). Edges that are symbols ("50%", "PPL-p%") need nothing.
    """
    kw = _norm_text(keyword)
    body = r"\s+".join(re.escape(part) for part in kw.split(" "))
    before = after = ""
    if kw and _ALNUM.match(kw[0]):
        before = r"(?<![^\W_])" + (r"(?<!\d[.,])" if kw[0].isdigit() else "")
    if kw and kw[-1].isdigit():
        after = r"(?![.,]?\d)"
    return re.compile(before + body + after)


def keyword_in(keyword: str, text: str) -> bool:
    """Whether `keyword` occurs in `text` under the rules of `keyword_pattern`."""
    return keyword_pattern(keyword).search(_norm_text(text)) is not None


def missing_keywords(keywords: Iterable[str], text: str) -> list[str]:
    """The keywords not found in `text`."""
    return [k for k in keywords if not keyword_in(k, text)]


# -- retrieval and citations -------------------------------------------------------------------
def _titles(titles: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(normalize_title(t) for t in titles))


def first_gold_rank(retrieved: Sequence[str], gold: Iterable[str]) -> int | None:
    """1-based rank of the first gold title among the retrieved titles, or None."""
    wanted = set(_titles(gold))
    for rank, title in enumerate(_titles(retrieved), start=1):
        if title in wanted:
            return rank
    return None


def recall_at(retrieved: Sequence[str], gold: Iterable[str], k: int) -> float:
    """Share of the gold titles among the first k retrieved titles (0 when there is no gold)."""
    wanted = set(_titles(gold))
    return len(wanted & set(_titles(retrieved)[:k])) / len(wanted) if wanted else 0.0


def citation_precision(cited: Iterable[str], gold: Iterable[str]) -> float | None:
    """Share of cited papers that are gold; None when nothing is cited."""
    cited_set, wanted = set(_titles(cited)), set(_titles(gold))
    return len(cited_set & wanted) / len(cited_set) if cited_set else None


def citation_recall(cited: Iterable[str], gold: Iterable[str]) -> float:
    """Share of gold papers that are cited (0 when there is no gold)."""
    cited_set, wanted = set(_titles(cited)), set(_titles(gold))
    return len(cited_set & wanted) / len(wanted) if wanted else 0.0


def evidence_answers(sources: Sequence[Source], gold: Iterable[str], keywords: Iterable[str]) -> bool:
    """Whether retrieval found evidence that answers: the question has gold papers, the top
    retrieved paper is one of them and the gold passages state every keyword. This is what the
    answerer's confidence estimates (and what calibration is measured against)."""
    gold_norm = set(_titles(gold))
    if not gold_norm or not sources or normalize_title(sources[0].title) not in gold_norm:
        return False
    passages = " ".join(s.text for s in sources if normalize_title(s.title) in gold_norm)
    return not missing_keywords(keywords, passages)


def fabricated_citations(answer: Answer, known_titles: Iterable[str], raw_text: str | None = None) -> int:
    """Markers outside the sources, citations not matching their source, quoted unknown titles.

    Pass the answerer's `raw_text`: the pipeline removes out-of-range markers from `answer.text`.
    """
    text = answer.text if raw_text is None else raw_text
    by_n = {s.n: normalize_title(s.title) for s in answer.sources}
    outside = {n for n in markers(text) if n not in by_n}
    mismatched = {c.n for c in answer.citations
                  if c.n not in outside and by_n.get(c.n) != normalize_title(c.title)}
    invented = quoted_titles_not_in(text, [s.title for s in answer.sources] + list(known_titles))
    return len(outside) + len(mismatched) + len(invented)


# -- one question ------------------------------------------------------------------------------
@dataclass
class SentenceJudgement:
    """One answer sentence and support judgements for its citations (see the module docstring).

    `supported`: all its cited passages together support it. For each cite, `alone[i]`: that
    source alone supports it; `without[i]`: the other cited sources still support it without it.
    """

    text: str
    cites: list[int]
    supported: bool
    alone: list[bool] = field(default_factory=list)
    without: list[bool] = field(default_factory=list)

    def precise(self) -> list[bool]:
        """For each cite: whether the citation is precise (ALCE)."""
        return [self.supported and (a or not w) for a, w in zip(self.alone, self.without)]


@dataclass
class Outcome:
    """What the pipeline did for one question: everything the metrics need."""

    id: str
    kind: str
    question: str
    gold_titles: list[str]
    answer_keywords: list[str]
    retrieved: list[str]
    text: str
    refused: bool
    cited: list[str]
    sentences: list[SentenceJudgement] = field(default_factory=list)
    fabricated: int = 0
    timings_ms: dict[str, float] = field(default_factory=dict)
    suite: str = ""
    confidence: float | None = None
    evidence_answers: bool | None = None
    grounded: bool = True
    removed_markers: int = 0
    raw_text: str = ""  # what the backend wrote, before the checks (to see what an LLM did)

    @property
    def answerable(self) -> bool:
        """Whether the question has gold papers to find (every kind but `unanswerable`)."""
        return self.kind != "unanswerable"


def _flag(value: bool) -> float:
    return 1.0 if value else 0.0


def score(o: Outcome) -> dict[str, Any]:
    """Per-question values of every metric; None where a metric is not defined for it."""
    s: dict[str, Any] = dict.fromkeys(
        ("gold_rank", "hit@1", "hit@5", "mrr@10", "recall@10", "keyword_accuracy", "citation_precision",
         "citation_recall", "strict_accuracy", "grounded_recall", "grounded_precision", "uncited_sentences",
         "refusal", "false_refusal", "ungrounded"))
    s["missing_keywords"] = []
    s["fabricated"] = o.fabricated
    s["removed_markers"] = o.removed_markers
    if o.answerable:
        rank = first_gold_rank(o.retrieved[:RETRIEVAL_DEPTH], o.gold_titles)
        s["gold_rank"] = rank
        s["hit@1"] = _flag(rank is not None and rank <= 1)
        s["hit@5"] = _flag(rank is not None and rank <= 5)
        s["mrr@10"] = 1.0 / rank if rank is not None and rank <= RETRIEVAL_DEPTH else 0.0
        s["recall@10"] = recall_at(o.retrieved, o.gold_titles, RETRIEVAL_DEPTH)
        missing = list(o.answer_keywords) if o.refused else missing_keywords(o.answer_keywords, o.text)
        s["missing_keywords"] = missing
        if o.answer_keywords:
            s["keyword_accuracy"] = _flag(not missing)
        cited = [] if o.refused else o.cited
        s["citation_precision"] = citation_precision(cited, o.gold_titles)
        s["citation_recall"] = citation_recall(cited, o.gold_titles)
        s["strict_accuracy"] = _flag(not o.refused and not missing and s["citation_recall"] == 1.0)
        s["false_refusal"] = _flag(o.refused)
    else:
        s["refusal"] = _flag(o.refused)
    if not o.refused:
        s["ungrounded"] = _flag(not o.grounded)
    if not o.refused and o.sentences:
        s["grounded_recall"] = sum(j.supported for j in o.sentences) / len(o.sentences)
        s["uncited_sentences"] = sum(not j.cites for j in o.sentences) / len(o.sentences)
        precise = [p for j in o.sentences for p in j.precise()]
        s["grounded_precision"] = sum(precise) / len(precise) if precise else None
    return s


# -- aggregation -------------------------------------------------------------------------------
def _mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(float(np.mean(present)), 4) if present else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) by linear interpolation; None for no values."""
    return round(float(np.percentile(values, q)), 1) if len(values) else None


CALIBRATION_BINS = 10


def _rated(outcomes: Sequence[Outcome]) -> list[tuple[float, bool]]:
    """(confidence, whether the evidence answers) of the outcomes that have both."""
    return [(o.confidence, o.evidence_answers) for o in outcomes
            if o.confidence is not None and o.evidence_answers is not None]


def calibration_bins(outcomes: Sequence[Outcome], bins: int = CALIBRATION_BINS) -> list[dict[str, float]]:
    """Per equal-width confidence bin: count, mean confidence and share whose evidence answers."""
    rated = _rated(outcomes)
    out = []
    for i in range(bins):
        low, high = i / bins, (i + 1) / bins
        members = [(c, y) for c, y in rated if low <= c < high or (i == bins - 1 and c == 1.0)]
        if members:
            out.append({"low": low, "high": high, "n": len(members),
                        "confidence": float(np.mean([c for c, _ in members])),
                        "accuracy": float(np.mean([y for _, y in members]))})
    return out


def expected_calibration_error(outcomes: Sequence[Outcome]) -> float | None:
    """ECE over `calibration_bins` (None when no question has a confidence)."""
    bins = calibration_bins(outcomes)
    total = sum(b["n"] for b in bins)
    if not total:
        return None
    return round(sum(b["n"] * abs(b["confidence"] - b["accuracy"]) for b in bins) / total, 4)


def risk_coverage(outcomes: Sequence[Outcome]) -> list[tuple[float, float]]:
    """(coverage, risk) when answering only the most confident questions, for every cut-off."""
    rated = sorted(_rated(outcomes), key=lambda t: -t[0])
    points, wrong = [], 0
    for i, (_, answers) in enumerate(rated, start=1):
        wrong += not answers
        points.append((i / len(rated), wrong / i))
    return points


def aggregate(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """All metrics for a group of questions (see the module docstring for definitions)."""
    scores = [score(o) for o in outcomes]

    def mean(key: str) -> float | None:
        return _mean(s[key] for s in scores)

    latency = {}
    for stage in LATENCY_STAGES:
        times = [o.timings_ms[stage] for o in outcomes if stage in o.timings_ms]
        latency[stage] = {"p50": percentile(times, 50), "p95": percentile(times, 95)}
    return {
        "n": len(outcomes),
        "answerable": sum(o.answerable for o in outcomes),
        "answered": sum(not o.refused for o in outcomes),
        "retrieval": {k: mean(k) for k in ("hit@1", "hit@5", "mrr@10", "recall@10")},
        "answers": {"keyword_accuracy": mean("keyword_accuracy"), "citation_precision": mean("citation_precision"),
                    "citation_recall": mean("citation_recall"), "strict_accuracy": mean("strict_accuracy"),
                    "fabricated_citations": sum(s["fabricated"] for s in scores),
                    "removed_markers": sum(s["removed_markers"] for s in scores)},
        "grounding": {"citation_recall": mean("grounded_recall"), "citation_precision": mean("grounded_precision"),
                      "uncited_sentences": mean("uncited_sentences"), "ungrounded_answers": mean("ungrounded")},
        "refusal": {"refusal_rate": mean("refusal"), "false_refusal_rate": mean("false_refusal")},
        "calibration": {"ece": expected_calibration_error(outcomes)},
        "latency_ms": latency,
    }


def summarize(outcomes: Sequence[Outcome], kinds: Sequence[str]) -> dict[str, Any]:
    """Metrics overall, for each kind present (in the order of `kinds`) and for each suite when
    the set names suites (questions without one count as `handwritten`)."""
    by_kind = {k: aggregate([o for o in outcomes if o.kind == k]) for k in kinds if any(o.kind == k for o in outcomes)}
    suites = list(dict.fromkeys(o.suite or "handwritten" for o in outcomes))
    by_suite = {s: aggregate([o for o in outcomes if (o.suite or "handwritten") == s]) for s in suites} \
        if len(suites) > 1 or suites[:1] != ["handwritten"] else {}
    return {"overall": aggregate(outcomes), "by_kind": by_kind, "by_suite": by_suite}
