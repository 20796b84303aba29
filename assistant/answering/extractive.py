"""The extractive answerer: no LLM. It quotes the abstract sentences that answer the question,
each followed by the `[n]` of its paper, or refuses when the evidence does not answer it.

Sentence score = cosine(question, sentence) + 0.5 × IDF-weighted share of question terms the
sentence (with its title) contains. It refuses when:
- retrieval is weak: the best paper's chunk cosine is below MIN_DENSE, or no sentence scores MIN_SCORE;
- the question names a thing (acronym, CamelCase or digit-bearing name) the collection never uses;
- the evidence lacks what was asked: "how many X" needs a sentence with a figure and X,
  "which <attribute>" (license, affiliation, ...) needs the attribute in the evidence.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from ..models import Source
from ..settings import Settings
from ..text import numbers, split_sentences, terms
from .base import AnswerContext
from .citations import REFUSAL

Encode = Callable[[list[str]], np.ndarray]

MIN_DENSE = 0.42
MIN_SCORE = 0.5
LEXICAL_WEIGHT = 0.5
MULTI_RELATIVE = 0.65
RANK_PENALTY = 0.04
SECOND_RELATIVE = 0.75
BACKGROUND_PENALTY = 0.1
MAX_SENTENCES = 6
#: Sentences embedded per source: the best by lexical coverage (embedding is the slow part).
#: 3 gives the same eval figures as 5 on both splits and p95 171 vs 205 ms at 100k papers.
PREFILTER_PER_SOURCE = 3
FIGURE_BONUS = 0.2

_NUMERIC = re.compile(
    r"\bhow (many|much|fast|large|long|big|far|often|small)\b|\bby how\b|\bhow many times\b|"
    r"\bwhat (percentage|fraction|share|proportion|speed-?up|ratio|number|factor|learning rate|batch size|size)\b|"
    r"\bwhat (average )?(score|accuracy)\b|\bup to how\b|\bby what factor\b",
    re.I,
)
_LIST = re.compile(r"\b(which|what|list|name)\b[^?]*\b(papers|works|methods|studies|approaches|systems)\b|"
                   r"\bpapers\b", re.I)
#: "how many <measure>" / "which <attribute>": the words the evidence must contain.
_ASKED = re.compile(r"\b(?:how many|which|what)\s+((?:[a-z-]+\s+){0,2}?[a-z-]+?)\s+"
                    r"(?:does|do|did|is|are|was|were|has|have|had|can|could|of|in|for|to|on|by|with|were|will)\b",
                    re.I)
#: Words that make a "which X" question ask for a paper or a quantity, not for an attribute.
_GENERIC_ASKED = re.compile(
    r"\b(papers?|works?|methods?|approach(es)?|techniques?|models?|systems?|stud(y|ies)|frameworks?|thes[ie]s|"
    r"datasets?|ones?|ways?|ideas?|kinds?|types?|problems?|tasks?|architectures?|algorithms?|designs?|"
    r"strateg(y|ies)|mechanisms?|tools?|benchmarks?|analys[ie]s|results?|metrics?|widely|main|key|new|first|"
    r"sizes?|rates?|factors?|fractions?|shares?|percentages?|speed(-?ups?)?|ratios?|numbers?|amounts?|much)\b",
    re.I,
)
#: Sentences that state the problem or prior work rather than what the paper did.
_BACKGROUND = re.compile(r"(However|Despite|While|Although|Existing|Current|Recent|Traditional|Prior|Previous|"
                         r"Conventional|Unfortunately|Nevertheless)\b")
_INTRO = re.compile(r"\b(we|this paper|this work|this thesis)\s+(present|propose|introduce|develop|design|"
                    r"build|release|describe|discover)s?\b|\bwe call\b|\bcalled\b|\bnamed\b", re.I)
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
    """'list' (several papers), 'numeric' (one figure) or 'single': the shape of answer asked for."""
    if _LIST.search(question):
        return "list"
    return "numeric" if wants_figure(question) else "single"


def wants_figure(question: str) -> bool:
    """Whether the question asks for a figure ("how many", "by how much", "what speedup")."""
    return bool(_NUMERIC.search(question))


def unknown_names(question: str, knows: Callable[[str], bool]) -> list[str]:
    """Name-like words in the question (acronyms, CamelCase, with digits) the collection never uses."""
    missing = []
    for token in _NAME_TOKEN.findall(question):
        parts = terms(token)
        if parts and not all(knows(p) for p in parts):
            missing.append(token)
    return missing


class ExtractiveAnswerer:
    """Answers by quoting abstract sentences; needs the embedder and term statistics."""

    name = "extractive"

    @classmethod
    def configured(cls, settings: Settings) -> bool:
        """Always usable: it needs no endpoint."""
        return True

    @classmethod
    def create(cls, settings: Settings, context: AnswerContext) -> ExtractiveAnswerer:
        """The answerer over the collection's embedder and term statistics."""
        return cls(context.encode, context.idf, context.knows)

    def __init__(self, encode: Encode, idf: Callable[[str], float], knows: Callable[[str], bool]) -> None:
        self.encode = encode
        self.idf = idf
        self.knows = knows

    def fit_sources(self, question: str, sources: list[Source]) -> list[Source]:
        """All of them: quoting has no context window."""
        return sources

    def stream(self, question: str, sources: list[Source]) -> Iterator[str]:
        """Yield the whole answer at once (extractive answers are not generated token by token)."""
        yield self.compose(question, sources)

    def compose(self, question: str, sources: list[Source]) -> str:
        """The answer text, or the refusal sentence."""
        if not sources or unknown_names(question, self.knows):
            return REFUSAL
        if max(s.dense for s in sources) < MIN_DENSE:
            return REFUSAL
        kind = question_kind(question)
        candidates = self._score(question, sources)
        relevance: dict[int, float] = {}
        for cand in candidates:
            relevance[cand.source.n] = max(relevance.get(cand.source.n, cand.score), cand.score)
        asked = asked_terms(question)
        if asked:
            candidates = [c for c in candidates if asked & set(terms(c.text + " " + c.source.title))]
        if wants_figure(question):
            candidates = [c for c in candidates if _has_figure(c.text)]
        if not candidates or candidates[0].score < MIN_SCORE:
            return REFUSAL
        chosen = self._select(candidates, kind, relevance)
        return _render(chosen) if chosen else REFUSAL

    def _score(self, question: str, sources: list[Source]) -> list[Candidate]:
        """Candidates scored and sorted; per source only the best few by lexical coverage are embedded."""
        candidates = [
            Candidate(src, rank, sentence)
            for rank, src in enumerate(sources)
            for sentence in split_sentences(src.text)
            if len(sentence.split()) >= 5
        ]
        if not candidates:
            return []
        q_terms = set(terms(question))
        weights = {t: self.idf(t) for t in q_terms}
        total = sum(weights.values()) or 1.0
        for cand in candidates:
            present = set(terms(cand.text)) | set(terms(cand.source.title))
            cand.coverage = sum(w for t, w in weights.items() if t in present) / total
        figure = wants_figure(question)
        candidates.sort(key=lambda c: -(c.coverage + (FIGURE_BONUS if figure and _has_figure(c.text) else 0.0)))
        kept: dict[int, int] = {}
        candidates = [c for c in candidates if kept.setdefault(c.source.n, 0) < PREFILTER_PER_SOURCE
                      and not kept.__setitem__(c.source.n, kept[c.source.n] + 1)]
        vectors = self.encode([question] + [c.text for c in candidates])
        for cand, vec in zip(candidates, vectors[1:]):
            cand.score = float(vec @ vectors[0]) + LEXICAL_WEIGHT * cand.coverage - RANK_PENALTY * cand.rank
            if _BACKGROUND.match(cand.text):
                cand.score -= BACKGROUND_PENALTY
        return sorted(candidates, key=lambda c: -c.score)

    def _select(self, candidates: list[Candidate], kind: str, relevance: dict[int, float]) -> list[Candidate]:
        """The sentences to quote. For lists: the best remaining sentence of every paper whose
        relevance (its best sentence before the figure / attribute filters) is close to the top."""
        best = candidates[0]
        if kind != "list":
            chosen = [best]
            if kind == "single":
                second = [c for c in candidates[1:] if c.source.n == best.source.n
                          and c.score >= SECOND_RELATIVE * best.score and not _redundant(c.text, best.text)]
                chosen += second[:1]
                intro = _intro_sentence(best.source)
                if intro and all(intro != c.text and not _redundant(intro, c.text) for c in chosen):
                    chosen.insert(0, Candidate(best.source, best.rank, intro))
            return chosen
        chosen, papers = [], set()
        top = max(relevance.values())
        for cand in candidates:
            if relevance[cand.source.n] >= MULTI_RELATIVE * top and cand.source.n not in papers \
                    and cand.source.dense >= MIN_DENSE:
                chosen.append(cand)
                papers.add(cand.source.n)
            if len(chosen) >= MAX_SENTENCES:
                break
        return chosen


def asked_terms(question: str) -> set[str]:
    """The stemmed head noun of what the question asks for ("how many human annotators" -> {annot})."""
    match = _ASKED.search(question)
    if not match or _GENERIC_ASKED.search(match.group(1)):
        return set()
    found = terms(match.group(1))
    if not found or found[-1].isdigit():
        return set()
    return {found[-1]}


def _intro_sentence(source: Source) -> str | None:
    """The sentence where a paper introduces its contribution ("We present X ..."), if any;
    one that uses the paper's short name is preferred."""
    sentences = split_sentences(source.text)
    intros = [s for s in sentences if _INTRO.search(s) and len(s.split()) >= 5]
    name = short_name(source.title)
    named = [s for s in intros if name and name.casefold() in s.casefold()]
    return (named or intros or [None])[0]


def short_name(title: str) -> str | None:
    """The name a title gives its method ("ShadowKV: KV Cache in ..." -> "ShadowKV"), if any."""
    head, sep, _ = title.partition(":")
    return head.strip() if sep and 0 < len(head.split()) <= 3 else None


def _has_figure(sentence: str) -> bool:
    """A number that measures something: not a year, not a bare list index like "1)"."""
    listed = set(re.findall(r"(?<![\w.])(\d)\)", sentence))
    return any(not re.fullmatch(r"(19|20)\d\d", n) and not (n.isdigit() and n in listed)
               for n in numbers(sentence))


def _redundant(a: str, b: str) -> bool:
    ta, tb = set(terms(a)), set(terms(b))
    return bool(ta and tb) and len(ta & tb) / min(len(ta), len(tb)) > 0.8


def _with_marker(sentence: str, n: int) -> str:
    body = sentence.rstrip()
    end = body[-1] if body and body[-1] in ".!?" else "."
    body = body.rstrip(".!?")
    return f"{body} [{n}]{end}"


def _render(chosen: list[Candidate]) -> str:
    """One paragraph per paper: its title, then its sentences in abstract order, each with its marker."""
    by_paper: dict[int, list[Candidate]] = {}
    for cand in chosen:
        by_paper.setdefault(cand.source.n, []).append(cand)
    paragraphs = []
    for n, cands in by_paper.items():
        order = split_sentences(cands[0].source.text)
        cands.sort(key=lambda c: order.index(c.text) if c.text in order else 0)
        quotes = " ".join(_with_marker(c.text, n) for c in cands)
        paragraphs.append(f'"{cands[0].source.title}" [{n}]: {quotes}')
    if len(paragraphs) == 1:
        return paragraphs[0]
    return "\n".join(f"- {p}" for p in paragraphs)
