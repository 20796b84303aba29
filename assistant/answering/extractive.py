"""The extractive answerer: no LLM. It quotes the abstract sentences that answer the question,
each followed by the `[n]` of its paper, or refuses when the evidence does not answer it.

Sentence score = cosine(question, sentence) + 0.5 × IDF-weighted share of question terms the
sentence (with its title) contains. Refusal when: the best score is weak; the question names a
thing (an acronym, a CamelCase or digit-bearing name) that appears nowhere in the collection;
or the question asks "how many / how much" and no good sentence states a number.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from ..citations import REFUSAL
from ..models import Source
from ..text import STOPWORDS, numbers, split_sentences, stem, terms, words

Encode = Callable[[list[str]], np.ndarray]

MIN_SCORE = 0.62
MIN_COVERAGE = 0.34
LEXICAL_WEIGHT = 0.5
MULTI_RELATIVE = 0.8
SECOND_SENTENCE_RELATIVE = 0.9
MAX_SENTENCES = 6

_NUMERIC = re.compile(
    r"\bhow (many|much|fast|large|long|big|far|often|small)\b|\bby how\b|\bhow many times\b|"
    r"\bwhat (percentage|fraction|speed-?up|ratio|number|factor)\b|\bwhat (average )?score\b",
    re.I,
)
_LIST = re.compile(r"\b(which|what|list|name)\b[^?]*\b(papers|works|methods|studies|approaches|systems)\b|"
                   r"\bpapers\b", re.I)
_NAME_TOKEN = re.compile(r"\b(?:[A-Z]{2,}[A-Za-z0-9-]*|[A-Za-z]+[0-9][A-Za-z0-9-]*|[a-z]+[A-Z][A-Za-z0-9-]*|"
                         r"[A-Z][a-z]+[A-Z][A-Za-z0-9-]*)\b")


@dataclass
class Candidate:
    """A sentence of a source with its relevance to the question."""

    source: Source
    rank: int
    text: str
    score: float = 0.0
    coverage: float = 0.0


def question_kind(question: str) -> str:
    """'numeric', 'list' or 'single': what shape of answer the question asks for."""
    if _NUMERIC.search(question):
        return "numeric"
    if _LIST.search(question):
        return "list"
    return "single"


def unknown_names(question: str, knows: Callable[[str], bool]) -> list[str]:
    """Name-like words in the question (acronyms, CamelCase, with digits) the collection never uses."""
    missing = []
    for token in _NAME_TOKEN.findall(question):
        parts = [stem(w) for w in words(token) if w not in STOPWORDS]
        if parts and not all(knows(p) for p in parts):
            missing.append(token)
    return missing


class ExtractiveAnswerer:
    """Answers by quoting abstract sentences; needs the embedder and term statistics."""

    name = "extractive"

    def __init__(self, encode: Encode, idf: Callable[[str], float], knows: Callable[[str], bool]) -> None:
        self.encode = encode
        self.idf = idf
        self.knows = knows

    def stream(self, question: str, sources: list[Source]) -> Iterator[str]:
        """Yield the whole answer at once (extractive answers are not generated token by token)."""
        yield self.compose(question, sources)

    def compose(self, question: str, sources: list[Source]) -> str:
        """The answer text, or the refusal sentence."""
        if not sources or unknown_names(question, self.knows):
            return REFUSAL
        kind = question_kind(question)
        candidates = self._score(question, sources)
        if kind == "numeric":
            candidates = [c for c in candidates if _has_figure(c.text)]
        candidates = [c for c in candidates if c.coverage >= MIN_COVERAGE]
        if not candidates or candidates[0].score < MIN_SCORE:
            return REFUSAL
        chosen = self._select(candidates, kind)
        return _render(chosen)

    def _score(self, question: str, sources: list[Source]) -> list[Candidate]:
        candidates = [
            Candidate(src, rank, sentence)
            for rank, src in enumerate(sources)
            for sentence in split_sentences(src.text)
            if len(sentence.split()) >= 5
        ]
        if not candidates:
            return []
        vectors = self.encode([question] + [c.text for c in candidates])
        q_terms = set(terms(question))
        weights = {t: self.idf(t) for t in q_terms}
        total = sum(weights.values()) or 1.0
        for cand, vec in zip(candidates, vectors[1:]):
            present = set(terms(cand.text)) | set(terms(cand.source.title))
            cand.coverage = sum(w for t, w in weights.items() if t in present) / total
            cand.score = float(vec @ vectors[0]) + LEXICAL_WEIGHT * cand.coverage
        return sorted(candidates, key=lambda c: -c.score)

    def _select(self, candidates: list[Candidate], kind: str) -> list[Candidate]:
        best = candidates[0].score
        chosen: list[Candidate] = []
        per_paper: dict[int, int] = {}
        for cand in candidates:
            n = cand.source.n
            if kind == "list":
                keep = cand.score >= MULTI_RELATIVE * best and per_paper.get(n, 0) == 0
            else:
                same_paper = n == candidates[0].source.n
                keep = same_paper and per_paper.get(n, 0) < 2 and cand.score >= SECOND_SENTENCE_RELATIVE * best
            if keep and not any(_redundant(cand.text, c.text) for c in chosen):
                chosen.append(cand)
                per_paper[n] = per_paper.get(n, 0) + 1
            if len(chosen) >= MAX_SENTENCES:
                break
        return chosen


def _has_figure(sentence: str) -> bool:
    return any(not re.fullmatch(r"(19|20)\d\d", n) for n in numbers(sentence))


def _redundant(a: str, b: str) -> bool:
    ta, tb = set(terms(a)), set(terms(b))
    return bool(ta and tb) and len(ta & tb) / min(len(ta), len(tb)) > 0.8


def _with_marker(sentence: str, n: int) -> str:
    body = sentence.rstrip()
    end = body[-1] if body and body[-1] in ".!?" else "."
    body = body.rstrip(".!?")
    return f"{body} [{n}]{end}"


def _render(chosen: list[Candidate]) -> str:
    """One paragraph per paper, its sentences in abstract order, each ending with its marker."""
    by_paper: dict[int, list[Candidate]] = {}
    for cand in chosen:
        by_paper.setdefault(cand.source.n, []).append(cand)
    paragraphs = []
    for n, cands in by_paper.items():
        order = split_sentences(cands[0].source.text)
        cands.sort(key=lambda c: order.index(c.text) if c.text in order else 0)
        paragraphs.append(" ".join(_with_marker(c.text, n) for c in cands))
    if len(paragraphs) == 1:
        return paragraphs[0]
    return "\n".join(f"- {p}" for p in paragraphs)
