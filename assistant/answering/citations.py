"""Citations: find `[n]` markers, drop the ones that point outside the sources, and score how
well each answer sentence is supported by the passages it cites (offline, no LLM judge).
`finalize` puts every backend's text through these checks and makes the Answer.

Support of a sentence = 0.6 × best cosine similarity to a sentence of the cited passages
+ 0.2 × share of its numbers found there + 0.2 × share of its rare terms found there.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np

from ..errors import BackendError
from ..models import Answer, Citation, SentenceSupport, Source
from ..text import numbers, split_sentences, terms

REFUSAL = "The collection doesn't answer this."
SUPPORT_THRESHOLD = 0.55
_ITEM = r"\d+(?:\s*[-–]\s*\d+)?"
#: `[1]`, `[1, 2]`, `[1; 2]`, `[1-3]`, `[Source 2]`: what models write; `[1][2]` is two markers.
_MARKER = rf"\[(?:[Ss]ources?:?\s*)?(?P<items>{_ITEM}(?:\s*[,;]\s*{_ITEM})*)\]"
MARKER = re.compile(_MARKER)
#: A marker with the spaces before it: removing one must not touch the quoted text around it.
_SPACED_MARKER = re.compile(rf"(?P<space>[ \t]*){_MARKER}")
_RANGE_LIMIT = 20
_TITLE_QUOTE = re.compile(r"[\"“*_]{1,2}([A-Z][^\"”*_\n]{12,200})[\"”*_]{1,2}")

Encode = Callable[[list[str]], np.ndarray]


def marker_numbers(group: str) -> list[int]:
    """The numbers of one marker's inside, e.g. '1, 3-5' → [1, 3, 4, 5] (short ranges only)."""
    out: list[int] = []
    for item in re.split(r"\s*[,;]\s*", group):
        ends = [int(x) for x in re.split(r"\s*[-–]\s*", item)]
        if len(ends) == 2 and 0 < ends[1] - ends[0] <= _RANGE_LIMIT:
            out.extend(range(ends[0], ends[1] + 1))
        else:
            out.extend(ends)
    return out


def markers(text: str) -> list[int]:
    """Every source number cited in `text`, in order of first appearance."""
    seen: dict[int, None] = {}
    for group in MARKER.findall(text):
        for n in marker_numbers(group):
            seen.setdefault(n, None)
    return list(seen)


def drop_invalid_markers(text: str, valid: set[int]) -> tuple[str, int]:
    """Remove marker numbers not in `valid` and write the rest as `[1, 2]`; returns the new text
    and how many numbers were removed."""
    removed = 0

    def fix(match: re.Match[str]) -> str:
        nonlocal removed
        parts = list(dict.fromkeys(marker_numbers(match.group("items"))))
        kept = [p for p in parts if p in valid]
        removed += len(parts) - len(kept)
        return "[" + ", ".join(map(str, kept)) + "]" if kept else ""

    def drop(match: re.Match[str]) -> str:  # a dropped marker takes the space before it along
        kept = fix(match)
        return match.group("space") + kept if kept else ""

    return _SPACED_MARKER.sub(drop, text), removed


def _plain(text: str) -> str:
    return " ".join(text.replace("’", "'").replace("*", "").replace("_", " ").split()).casefold()


_REFUSALS = (_plain(REFUSAL).rstrip("."), "the collection does not answer this")


def is_refusal(text: str) -> bool:
    """Whether an answer refuses: it starts with the fixed refusal sentence (quotes and markdown
    aside), or it contains that sentence and cites nothing."""
    norm = _plain(text).lstrip("\"'“> ")
    if norm.startswith(_REFUSALS):
        return True
    return any(r in norm for r in _REFUSALS) and not markers(text)


def refusal_has_extra(text: str) -> bool:
    """Whether a refusal carries more than the fixed sentence (text the model should not add)."""
    return _plain(text).strip("\"'“”> .") != _plain(REFUSAL).rstrip(".")


def quoted_titles_not_in(text: str, known_titles: Sequence[str]) -> list[str]:
    """Titles the answer quotes that are not titles of papers in the collection."""
    known = {" ".join(t.split()).casefold() for t in known_titles}
    flagged = []
    for candidate in _TITLE_QUOTE.findall(text):
        name = " ".join(candidate.split()).strip(" .").casefold()
        if len(name.split()) >= 4 and ":" in name and name not in known:
            flagged.append(candidate.strip())
    return flagged


def answer_sentences(text: str) -> list[str]:
    """Split an answer into sentences, keeping each sentence's markers with it."""
    out: list[str] = []
    for line in text.splitlines():
        line = line.strip().lstrip("-*• ").strip()
        if not line:
            continue
        for sentence in split_sentences(line):
            if MARKER.fullmatch(sentence.strip(" .")) and out:
                out[-1] += " " + sentence
            else:
                out.append(sentence)
    return out


def score_support(sentences: list[str], sources: Sequence[Source], encode: Encode) -> list[SentenceSupport]:
    """A support score in 0..1 for each answer sentence against the sources it cites.

    A sentence quoted verbatim from a cited passage (after an optional leading quoted title)
    has similarity 1 without being embedded; others are embedded with the cited passages' sentences.
    """
    by_n = {s.n: s for s in sources}
    plain = [MARKER.sub("", s).strip() for s in sentences]
    cites = [[n for n in markers(s) if n in by_n] for s in sentences]
    verbatim = [bool(c) and _quoted_verbatim(bare, [by_n[n] for n in c]) for bare, c in zip(plain, cites)]
    evidence = {n: split_sentences(by_n[n].text) or [by_n[n].text] for c in cites for n in c}
    needed = sorted({bare for bare, c, v in zip(plain, cites, verbatim) if c and bare and not v}
                    | {e for bare, c, v in zip(plain, cites, verbatim) if c and bare and not v
                       for n in c for e in evidence[n]})
    vectors = dict(zip(needed, encode(needed))) if needed else {}
    results = []
    for sentence, bare, cited, exact in zip(sentences, plain, cites, verbatim):
        if not cited or not bare:
            results.append(SentenceSupport(sentence, cited, 0.0, False))
            continue
        cited_text = " ".join(by_n[n].title + ". " + by_n[n].text for n in cited)
        cos = 1.0 if exact else max(float(vectors[bare] @ vectors[e]) for n in cited for e in evidence[n])
        nums = numbers(bare)
        num_share = len(nums & numbers(cited_text)) / len(nums) if nums else 1.0
        rare = set(terms(bare))
        term_share = len(rare & set(terms(cited_text))) / len(rare) if rare else 1.0
        support = max(0.0, min(1.0, 0.6 * cos + 0.2 * num_share + 0.2 * term_share))
        results.append(SentenceSupport(sentence, cited, round(support, 3), support >= SUPPORT_THRESHOLD))
    return results


def _quoted_verbatim(sentence: str, cited: Sequence[Source]) -> bool:
    """Whether the sentence appears in a cited passage, after at most one short lead-in of ours:
    a quoted title ('"Title":'), a label ('ShadowKV:', '3.04×:') or a name ('ShadowKV is …')."""
    body = sentence
    for source in cited:
        prefix = f'"{source.title}"'
        if body.startswith(prefix):
            body = body[len(prefix):].lstrip(" :")
    body = " ".join(body.split()).rstrip(" .!?")
    passages = [" ".join(s.text.split()) for s in cited]
    tails = [body]
    for sep, max_words in ((":", 8), (" is ", 5)):
        head, found, tail = body.partition(sep)
        if found and len(head.split()) <= max_words:
            tails.append(tail.strip())
    return any(len(t) > 20 and any(t in p for p in passages) for t in tails)


def build_citations(text: str, sources: Sequence[Source]) -> list[Citation]:
    """Citations for the markers in `text` that map to sources, in order of first use."""
    by_n = {s.n: s for s in sources}
    return [Citation(n, by_n[n].title, by_n[n].paper_id) for n in markers(text) if n in by_n]


def finalize(question: str, text: str, sources: list[Source], backend: str, encode: Encode,
             all_titles: Callable[[], list[str]]) -> Answer:
    """The Answer for a backend's text: markers validated, refusal detected, support scored: the
    same for every backend. `all_titles` (slow on a large collection) is called only when the text
    quotes a title that is not one of the sources."""
    text = text.strip()
    if not text:
        raise BackendError(f"the {backend} backend returned an empty answer")
    if is_refusal(text):
        extra = ["dropped text the backend added to the refusal sentence"] if refusal_has_extra(text) else []
        return Answer(question, REFUSAL, True, [], sources, backend, warnings=extra)
    warnings = []
    text, removed = drop_invalid_markers(text, {s.n for s in sources})
    if removed:
        warnings.append(f"removed {removed} citation marker(s) that pointed outside the sources")
    invented = quoted_titles_not_in(text, [s.title for s in sources])
    if invented:  # only then against the whole collection: ~0.2 s at 100k papers
        invented = quoted_titles_not_in(text, [s.title for s in sources] + all_titles())
    warnings += [f"title not in the collection: {t!r}" for t in invented]
    sentences = score_support(answer_sentences(text), sources, encode)
    citations = build_citations(text, sources)
    if not citations:
        warnings.append("the answer cites no source")
    return Answer(question, text, False, citations, sources, backend, sentences, warnings=warnings)
