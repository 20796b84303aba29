"""The extractive answerer: no LLM. It answers with the abstracts' own words, each sentence
followed by the `[n]` of its paper, or refuses when the evidence does not answer the question.

Whether to answer is the calibrated decision of `evidence.EvidenceAssessor` (a model over
evidence features, fit on train questions). How to answer depends on what was asked:
- "what is X / what does X do": first the paper's defining clause ("X is a …", from "we
  introduce X, a …"), then the best one or two supporting sentences;
- "how much / how many": the figure first, then the sentence that states it;
- "which papers": one line per paper with its key sentence (or figure), papers that score close
  to the best one only.
Every quoted span is an exact substring of its source, so support stays measurable.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from ..models import Source
from ..settings import Settings
from ..text import is_bare_subject, mentions, names_system_of, numbers, split_sentences, system_name, terms
from .base import AnswerContext
from .citations import REFUSAL
from .evidence import (
    BACKGROUND,
    LINK,
    MEASUREMENT,
    MIN_SENTENCE_WORDS,
    STANDALONE_NUMBER,
    TIMES,
    WHICH_PAPER,
    Candidate,
    EvidenceAssessor,
    asked_terms,
    asks_for_papers,
    counted_terms,
    counts,
    has_figure,
    units_asked,
    wants_figure,
)

MULTI_RELATIVE = 0.65
SECOND_RELATIVE = 0.75
MAX_PAPERS = 6
#: A paper's contribution sentence is its line in a list when it covers the question's terms this
#: close to its best sentence.
KEY_POINT_RELATIVE = 0.8

_REFERENCE = re.compile(r"\[\d+(?:\s*[,;–-]\s*\d+)*\]")
#: The verbs with which a paper puts forward what it contributes ("we present …", "this work proposes …").
_PUTS_FORWARD = "present|propose|introduce|develop|design|build"
#: Who speaks in an abstract: "we", "this paper", "this study", "our work".
_AUTHORS = r"we|this (?:paper|work|thesis|study|article|report)|our (?:paper|work)"
#: "we relax the constraints of this choice and present …": the verb after a first clause.
_AND_THEN = r"(?:(?:[\w-]+,?\s+){1,8}?and\s+)?"
_INTRO = re.compile(rf"\b(?:{_AUTHORS})\s+{_AND_THEN}({_PUTS_FORWARD}|release|describe|discover)"
                    r"(?:s|d|ed)?\b|\bwe call\b|\b(?:called|named|termed|dubbed)\b", re.I)
#: What a paper that introduces nothing contributes: its finding ("we show that …").
_FINDING = re.compile(rf"\b(?:{_AUTHORS})\s+(?:show|argue|demonstrate|find|found)s?\s+that\b", re.I)
#: "we introduce ShadowKV, a high-throughput … system that …" → name, then the defining clause.
_DEFINES = re.compile(rf"\b(?:{_AUTHORS})\s+(?:{_PUTS_FORWARD})s?\s+"
                      r"(?P<name>[^,;:]{1,60}?),\s+(?P<clause>(?:a|an|the)\s+[^;]+?)\s*[.!]?$", re.I)
#: An acronym a title spells out: "Inference-Time Decomposition of Activations (ITDA)".
_TITLE_ACRONYM = re.compile(r"\(([A-Z][A-Za-z0-9-]*[A-Z0-9][A-Za-z0-9-]*)\)")
#: A name an abstract coins: "termed Expanded Name (X)", "called X", "termed as X", "namely X",
#: "our proposed method, X",
#: "X (Expanded Name)" with a name-shaped X, "we (further) design an Expanded Name (X)" or "we develop a
#: dynamic framework X".
_COINED = re.compile(r"\b(?:called|dubbed|named|termed|coined)\s+(?:as\s+)?(?:an?\s+|the\s+)?(?:[A-Z][\w-]*\s+){1,5}"
                     r"\((?P<acronym>[A-Z][A-Za-z0-9-]*[A-Z0-9][A-Za-z0-9-]*)\)|"
                     r"\b(?:called|dubbed|named|termed|coined|namely)\s+(?:as\s+)?(?P<name>[A-Za-z]\w*[A-Z0-9][\w-]*)|"
                     r"(?:(?P<name2>[A-Z][a-z]*[A-Z][\w-]*)|,\s+(?P<name3>[A-Z][a-z]{2,}))"
                     r"\s+\((?:[A-Z][\w-]*\s+){1,5}[A-Z][\w-]*\)|"
                     r"\b(?i:our proposed (?:\w+ )?(?:method|approach|model|framework|system|algorithm|technique)),?\s+"
                     r"(?P<name4>[A-Z][\w-]*[A-Z0-9][\w-]*)|"
                     rf"\b(?i:{_AUTHORS})\s+(?:\w+\s+)?{_AND_THEN}(?i:{_PUTS_FORWARD})s?\s+"
                     r"(?i:(?:a|an|the|novel|new)\s+)*(?:[\w-]+\s+){1,4}?\((?P<name5>[A-Z][A-Za-z0-9_-]*[A-Z0-9][A-Za-z0-9_-]*)\)|"
                     rf"\b(?i:{_AUTHORS})\s+(?i:{_PUTS_FORWARD})s?\s+(?i:a|an|the)\s+(?:[\w-]+\s+){{0,3}}?"
                     r"(?i:framework|system|method|approach|model|algorithm|technique|tool|benchmark|library)\s+"
                     r"(?P<name6>[A-Z][\w-]*[A-Z0-9][\w-]*)")
#: "What problem does X solve?", "why X?": asks for the problem a paper takes on.
_ASKS_PROBLEM = re.compile(r"\b(?:problems?|challenges?|motivat\w*|why)\b", re.I)
#: "How does X work / compress / keep …": asks for the mechanism, which abstracts tell step by step.
_ASKS_HOW = re.compile(r"\bhow\s+(?:does|do|did|can|is|are|would|could)\b", re.I)
#: A sentence about what the authors have yet to do ("we plan to develop …"): not what the paper does.
_PLANS = re.compile(r"\bwe plan\b|\bfuture (?:work|research)\b|\bin the future\b", re.I)
#: A sentence that states a problem ("… posing challenges for …", "… fail to …").
_PROBLEM = re.compile(r"\b(?:challeng\w*|problems?|bottlenecks?|limit\w*|fail\w*|suffer\w*|struggl\w*)\b", re.I)
#: A gain's unit ("3.04×", "2 times", "10-fold"); with "%", the unit of a gain or a share.
_UNIT = re.compile(rf"%|{TIMES.pattern}")
_COUNTING = re.compile(r"\bhow many\b", re.I)
#: Words that say which way a figure goes: a question with one of a kind wants figures next to a word
#: of that kind.
_DIRECTIONS = [
    frozenset(terms("reduce reduces reduction shrink shrinks cut cuts compress compresses compression lower "
                    "lowers decrease decreases save saves savings smaller fewer")),
    frozenset(terms("faster speed speeds speedup accelerate accelerates acceleration quicker")),
]
DIRECTION_WINDOW = 8
_QUALIFIER = re.compile(r"^(?:up to|over|about|nearly|more than)\s")


def question_kind(question: str) -> str:
    """'list' (several papers), 'numeric' (one figure) or 'single': the shape of answer asked for."""
    if asks_for_papers(question):
        return "list"
    return "numeric" if wants_figure(question) else "single"


class ExtractiveAnswerer:
    """Answers by quoting abstract sentences, when the evidence assessor says they answer."""

    name = "extractive"

    @classmethod
    def configured(cls, settings: Settings) -> bool:
        """Always usable: it needs no endpoint."""
        return True

    @classmethod
    def create(cls, settings: Settings, context: AnswerContext) -> ExtractiveAnswerer:
        """The answerer over the pipeline's evidence assessor (shared, so the two agree)."""
        return cls(context.assessor)

    def __init__(self, assessor: EvidenceAssessor) -> None:
        self.assessor = assessor

    def fit_sources(self, question: str, sources: list[Source]) -> list[Source]:
        """All of them: quoting has no context window."""
        return sources

    def stream(self, question: str, sources: list[Source]) -> Iterator[str]:
        """Yield the whole answer at once (extractive answers are not generated token by token)."""
        yield self.compose(question, sources)

    def compose(self, question: str, sources: list[Source]) -> str:
        """The answer text, or the refusal sentence."""
        evidence = self.assessor.assess(question, sources)
        if not evidence.answerable or not evidence.candidates:
            return REFUSAL
        kind = question_kind(question)
        if kind == "list" and len(sources) == 1:  # "what about the second one?" after a list: one paper
            kind = "single"
        # The page's own reference brackets ("MobileNetV2 [29]") would read as citations of ours: a
        # sentence is quoted up to its first one; a question naming the top paper's system is
        # answered from that paper.
        candidates = [c for c in map(_before_reference, evidence.candidates) if c] or evidence.candidates
        if kind != "list" and names_system_of(question, sources[0].title):
            candidates = [c for c in candidates if c.source.n == sources[0].n] or candidates
        asked = asked_terms(question)
        if asked:
            candidates = [c for c in candidates if asked <= set(terms(c.text + " " + c.source.title))] or candidates
        if wants_figure(question):
            candidates = _stating_figures(question, candidates)
        if kind == "list":
            chosen = _select_list(candidates, evidence.relevance, lambda text: self.assessor.coverage(question, text),
                                  wants_figure(question))
            return _render_list(question, chosen)
        best = candidates[0]
        if kind == "numeric":
            return _render_numeric(question, best, candidates)
        if is_bare_subject(question) and _names_its_system(question, best.source):
            return _render_overview(question, best.source) or _render_single(question, best, candidates)
        return _render_single(question, best, candidates)


def _stating_figures(question: str, candidates: list[Candidate]) -> list[Candidate]:
    """The candidates that state a figure, the best paper's first; within that paper, those that
    state the kind asked for first: a figure in the unit the question implies ("what share" → %,
    "how much faster" → ×), a measurement (a unit or a decimal: "20%", "3.04×", "0.754") unless the
    question counts something ("how many GPUs" → "128"), then a number on its own (not the "2" of
    "LLaMA-2" or "H_2")."""
    stating = [c for c in candidates if has_figure(c.text)] or candidates
    best_paper = [c for c in stating if c.source.n == stating[0].source.n]
    tiers: list[Callable[[str], bool]] = [lambda text: STANDALONE_NUMBER.search(text) is not None]
    if _COUNTING.search(question):
        tiers.insert(0, lambda text: _counted(text, question) is not None)
    else:
        tiers.insert(0, lambda text: MEASUREMENT.search(text) is not None)
    for unit in units_asked(question):
        tiers.insert(0, _figure_in(unit))
    for states in tiers:
        found = [c for c in best_paper if states(c.text)]
        if found:
            return found + [c for c in stating if c not in found]
    return stating


def _figure_in(unit: re.Pattern[str]) -> Callable[[str], bool]:
    """Whether a text states a figure in this unit."""
    return lambda text: any(unit.search(m.group()) for m in MEASUREMENT.finditer(text))


def _select_list(candidates: list[Candidate], relevance: dict[int, float], coverage: Callable[[str], float],
                 figure_wanted: bool) -> list[Candidate]:
    """The key sentence of every paper whose relevance is close to the best paper's: the sentence
    where it says what it contributes, when that covers the question's terms about as well as its
    best sentence (and states a figure, when one is asked for), else its best sentence."""
    top = max(relevance.values())
    chosen: dict[int, Candidate] = {}
    for cand in candidates:
        n = cand.source.n
        if n in chosen or relevance.get(n, 0.0) < MULTI_RELATIVE * top:
            continue
        intro = intro_sentence(cand.source)
        covered = (intro is not None and (has_figure(intro) or not figure_wanted)
                   and coverage(intro + " " + cand.source.title) >= KEY_POINT_RELATIVE * cand.coverage)
        chosen[n] = Candidate(cand.source, cand.rank, intro, cand.score) if intro and covered else cand
        if len(chosen) >= MAX_PAPERS:
            break
    lines = list(chosen.values())
    with_figure = [c for c in lines if _measured(c.text)]
    # "Which papers …, and by how much?": the papers that state no figure do not answer the second half.
    return with_figure if figure_wanted and len(with_figure) >= 2 else lines


def defining_clause(source: Source) -> tuple[str, str] | None:
    """(name, clause) from the sentence where the paper defines what it introduces, if any."""
    for sentence in split_sentences(source.text):
        match = _DEFINES.search(sentence)
        if match and len(match.group("clause").split()) >= 4 and not _REFERENCE.search(sentence):
            return match.group("name").strip(), match.group("clause").strip()
    return None


def paper_name(source: Source) -> str | None:
    """The short name of what a paper contributes: the title's ("ShadowKV: …", "… Activations
    (ITDA)"), else the one its abstract coins ("called X", "we introduce X, a …", "Lion (EvoLved
    Sign Momentum)"), so an answer to "which paper …?" can say it."""
    in_title = system_name(source.title) or next(iter(_TITLE_ACRONYM.findall(source.title)), None)
    if in_title:
        return in_title
    for sentence in split_sentences(source.text):
        defined = _DEFINES.search(sentence)
        if defined and len(defined.group("name").split()) <= 2:
            return defined.group("name").strip()
        coined = _COINED.search(sentence)
        if coined:
            return next(name for name in coined.groups() if name)
    return None


def intro_sentence(source: Source) -> str | None:
    """The sentence where a paper introduces its contribution ("We present X ..."), preferring one
    that uses the paper's short name. A name the abstract coins is introduced where it first
    appears ("… an optimization algorithm, Lion (…)"); a title's name, where it first appears when
    no sentence presents anything ("DistServe improves …"); a paper without a name that presents
    nothing contributes its finding ("we show that …"). Never a sentence with the page's own
    reference brackets."""
    sentences = [s for s in split_sentences(source.text)
                 if len(s.split()) >= MIN_SENTENCE_WORDS and not _REFERENCE.search(s)]
    intros = [s for s in sentences if _INTRO.search(s)]
    name = paper_name(source)
    if name:
        named = [s for s in sentences if name.casefold() in s.casefold()]
        coined = name != system_name(source.title)
        found = [s for s in intros if s in named] or (named if coined else []) or intros or named
    else:
        found = intros or [s for s in sentences if _FINDING.search(s)]
    return found[0] if found else None


def _render_single(question: str, best: Candidate, candidates: list[Candidate]) -> str:
    """The paper's definition first, then up to two supporting sentences from the same paper.

    A question about the paper's own system ("how does TidalDecode work") is answered from where
    the abstract introduces it on: the sentences before set the scene (what others did, the
    problem), unless the question asks for the problem."""
    source, n = best.source, best.source.n
    lead, used = None, []
    order = split_sentences(source.text)
    defined = defining_clause(source)
    if defined:  # the clause is part of one of the sentences: that one introduces the system
        lead = _definition(defined, n)
        used.append(defined[1])
        intro = next((s for s in order if defined[1] in s), None)
    else:
        intro = intro_sentence(source)
        if intro:
            lead = _with_marker(intro, n)
            used.append(intro)
    support = [c.text for c in candidates if c.source.n == n and c.score >= SECOND_RELATIVE * best.score]
    support = [s for s in support if not any(_redundant(s, u) or s in u or u in s for u in used)]
    asks_how = _ASKS_HOW.search(question) is not None
    if lead and intro in order and (asks_how or _about_its_system(question, source)):
        start = order.index(intro) + 1
        method = [s for s in order[start:] if len(s.split()) >= MIN_SENTENCE_WORDS and not BACKGROUND.match(s)
                  and not _REFERENCE.search(s) and not LINK.search(s) and not any(_redundant(s, u) for u in used)]
        steps = [s for s in method if not has_figure(s)][:2]
        if asks_how and _about_its_system(question, source):  # "how does GEAR compress …": its steps
            support = steps or support
        else:  # what comes before the intro sets the scene: it cannot say how the paper's method works
            support = [s for s in support if s in order[start:]] or (steps if asks_how else method[:1])
    support = support[:2 if lead else 3]
    support.sort(key=lambda s: order.index(s) if s in order else 0)
    quotes = " ".join(_with_marker(s, n) for s in support)
    if lead is None:
        return f'"{source.title}" [{n}]: {quotes}'
    if WHICH_PAPER.search(question) and not _says_name(lead, source):  # the answer is the paper: say which
        return f'"{source.title}" [{n}]: ' + " ".join(filter(None, (lead, quotes)))
    return f'{lead}\n\n"{source.title}" [{n}]: {quotes}' if quotes else lead


def _says_name(text: str, source: Source) -> bool:
    """Whether `text` says the paper's short name ("we present SWIFT, …")."""
    name = paper_name(source)
    return name is not None and name.casefold() in text.casefold()


def _names_its_system(question: str, source: Source) -> bool:
    """Whether the question names what a paper contributes: its title's system ("ShadowKV: …") or
    the name its abstract coins ("what problem does smartspec solve")."""
    name = paper_name(source)
    return names_system_of(question, source.title) or (name is not None and mentions(question, name))


def _about_its_system(question: str, source: Source) -> bool:
    """Whether the question asks about the system a paper contributes, not about the problem it
    takes on ("how does InfLLM handle long inputs", not "why InfLLM")."""
    return _names_its_system(question, source) and not _ASKS_PROBLEM.search(question)


def _definition(defined: tuple[str, str], n: int) -> str:
    """The paper's definition as our lead sentence: "NAME is <its defining clause> [n]."."""
    name, clause = defined
    return f"{name.strip('*_ ')} is {clause.rstrip('.')} [{n}]."


def _render_overview(question: str, source: Source) -> str | None:
    """What a paper is, for a question that only names it: its definition (or the sentence that
    introduces it), led by the problem it states when the question asks for that; then, under the
    paper's title, the next two sentences when they say more and its first result with a figure."""
    sentences = [s for s in split_sentences(source.text) if len(s.split()) >= MIN_SENTENCE_WORDS]
    n = source.n
    defined = defining_clause(source)
    intro = next((s for s in sentences if defined and defined[1] in s), None) or intro_sentence(source)
    if intro is None or intro not in sentences:
        return None
    lead = _definition(defined, n) if defined else _with_marker(intro, n)
    if _ASKS_PROBLEM.search(question):  # "what problem does X solve": the problem it states, then X
        before = sentences[:sentences.index(intro)]
        problem = next((s for s in reversed(before) if BACKGROUND.match(s) or _PROBLEM.search(s)), None)
        if problem is None:  # an abstract that opens with its system states the problem it solves next
            problem = next((s for s in sentences[sentences.index(intro) + 1:]
                            if (BACKGROUND.match(s) or _PROBLEM.search(s)) and not has_figure(s)), None)
            lead = f"{lead} {_with_marker(problem, n)}" if problem and not _REFERENCE.search(problem) else lead
        else:
            lead = f"{_with_marker(problem, n)} {lead}" if not _REFERENCE.search(problem) else lead
    after = sentences[sentences.index(intro) + 1:]
    more = [s for s in after[:2] if not BACKGROUND.match(s) and not has_figure(s) and not _REFERENCE.search(s)
            and not _PLANS.search(s)]
    result = next((s for s in after if has_figure(s) and not _REFERENCE.search(s) and not LINK.search(s)), None)
    quotes = " ".join(_with_marker(s, n) for s in (*more, result) if s and not _redundant(s, intro))
    return f'{lead}\n\n"{source.title}" [{n}]: {quotes}' if quotes else lead


def _render_numeric(question: str, best: Candidate, candidates: list[Candidate]) -> str:
    """The figure up front, then the sentence that states it, and the paper's next sentence with a
    figure when it scores close (papers often give two: "up to 4.86× on NVIDIA, 2.18× on AMD")."""
    n = best.source.n
    figure = _counted(best.text, question) or _main_figure(best.text, question)
    more = next((c.text for c in candidates if c.source.n == n and c.text != best.text and has_figure(c.text)
                 and c.score >= SECOND_RELATIVE * best.score and not _redundant(c.text, best.text)), None)
    quote = " ".join(_with_marker(s, n) for s in (best.text, more) if s)
    return f"{figure} [{n}]: {quote}" if figure else f'"{best.source.title}" [{n}]: {quote}'


def _render_list(question: str, chosen: list[Candidate]) -> str:
    """One line per paper: its short name (or title) and its key sentence, figure first when asked."""
    figure_wanted = wants_figure(question)
    lines = []
    for cand in chosen:
        n = cand.source.n
        label = system_name(cand.source.title) or f'"{cand.source.title}"'
        figure = _main_figure(cand.text, question) if figure_wanted else None
        head = f"{label} [{n}]" + (f", {figure}" if figure else "")
        lines.append(f"- {head}: {_with_marker(cand.text, n)}")
    return "\n".join(lines)


def _measured(sentence: str) -> bool:
    """Whether a sentence states a gain or a share ("3.04×", "80%", "2 times"), not just a count."""
    return any(_UNIT.search(m.group()) for m in MEASUREMENT.finditer(sentence))


def _main_figure(sentence: str, question: str) -> str | None:
    """The figure the question asks about: of the figures with a unit (×, %, times, ms, GB) — else any
    decimal — those that go the way the question asks ("shrink … by how much" → "reduces memory by
    up to 2.55x", not "speeds up decoding by 2.18x"), then one in the clause with most of the
    question's words ("…, full-duplex latency is approximately 600ms"), and there the one closest to
    one of them ("throughput … by up to 3.04×")."""
    found = [m for m in MEASUREMENT.finditer(sentence) if numbers(m.group())]
    with_unit = [m for m in found if re.search(r"[^\d.,\s]", _QUALIFIER.sub("", m.group()))]
    figures = with_unit or found
    if not figures:
        return None
    asked_units = units_asked(question)
    if asked_units:
        figures = [m for m in figures if asked_units[-1].search(m.group())] or figures
    wanted = set(terms(question))
    direction: set[str] = set().union(*(d for d in _DIRECTIONS if d & wanted))
    if direction:
        figures = [m for m in figures if direction & _words_around(sentence, m)] or figures
    positions = [m.start() for m in re.finditer(r"[A-Za-z][\w-]*", sentence) if set(terms(m.group())) & wanted]
    clauses = [(c.start(), c.end(), len(wanted & set(terms(c.group())))) for c in re.finditer(r"[^,;]+", sentence)]

    def in_asked_clause(m: re.Match[str]) -> int:
        return next((asked for start, end, asked in clauses if start <= m.start() < end), 0)

    def distance(m: re.Match[str]) -> int:
        return min((abs(m.start() - p) for p in positions), default=0)

    return min(figures, key=lambda m: (-in_asked_clause(m), distance(m))).group().strip()


def _counted(sentence: str, question: str) -> str | None:
    """For "how many X", the number with what it counts, as the sentence writes it ("550 billion
    tokens", "256 worker nodes", "40K high-quality multi-turn dialogues"), if it states one."""
    counted = counted_terms(question)
    return counts(sentence, counted) if counted else None


def _words_around(sentence: str, figure: re.Match[str]) -> set[str]:
    """The terms of the words that say what a figure measures: up to `DIRECTION_WINDOW` words before
    it ("reduces memory by up to 2.55x") and the word after it ("1.5x faster")."""
    before = sentence[:figure.start()].split()[-DIRECTION_WINDOW:]
    return set(terms(" ".join([*before, *sentence[figure.end():].split()[:1]])))


def _before_reference(cand: Candidate) -> Candidate | None:
    """The candidate quoted up to the page's first reference bracket (still a verbatim span), or
    None when too little is left."""
    bracket = _REFERENCE.search(cand.text)
    if bracket is None:
        return cand
    head = cand.text[:bracket.start()].rstrip(" ,;:(")
    if len(head.split()) < MIN_SENTENCE_WORDS:
        return None
    return Candidate(cand.source, cand.rank, head, cand.score, cand.cosine, cand.coverage)


def _redundant(a: str, b: str) -> bool:
    ta, tb = set(terms(a)), set(terms(b))
    return bool(ta and tb) and len(ta & tb) / min(len(ta), len(tb)) > 0.8


def _with_marker(sentence: str, n: int) -> str:
    body = sentence.rstrip()
    end = body[-1] if body and body[-1] in ".!?" else "."
    body = body.rstrip(".!?")
    return f"{body} [{n}]{end}"
