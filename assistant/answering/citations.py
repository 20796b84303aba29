"""Citations: find `[n]` markers, drop the ones that point outside the sources, and score how
well each answer sentence is supported by the passages it cites (offline, no LLM judge).
`finalize` puts every backend's text through these checks and makes the Answer.

Support of a sentence = 0.6 × best cosine similarity to a sentence of the cited passages
+ 0.2 × share of its numbers found there + 0.2 × share of its rare terms found there. A sentence
that is only markers, or only a paper's title, states nothing and has no support.

Grounding policy (docs/llm.md): the text is kept as the backend wrote it (reasoning blocks removed,
leading markers moved after their sentence), and the Answer is `grounded` only when a sentence
states something that a source it cites supports; otherwise it carries a warning saying why and is
shown as unverified. A reply that says, in any words, that the sources don't answer is a refusal.
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
#: Appended by the LLM answerers to a reply cut at the length limit (finish reason "length").
CUT_MARK = " […]"
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
_NOT = r"(?:\bnot|n't|\bnever)"
#: How models say the sources don't answer, in their own words ("The Medusa paper does not provide
#: any information about…", "This is not mentioned in the sources", "I cannot determine…").
_NOT_ANSWERED = re.compile(
    rf"(?:{_NOT}\s+(?:\w+\s+)?(?:provide[ds]?|contain[s]?|mention(?:s|ed)?|include[ds]?|specif(?:y|ies|ied)|"
    rf"state[ds]?|say[s]?|discuss(?:es|ed)?|address(?:es|ed)?|cover(?:s|ed)?|give[sn]?|report(?:s|ed)?|"
    rf"answer(?:s|ed)?|describe[ds]?)\b.*\b(?:information|details?|data|mention|answer|question|number|figure)s?\b"
    rf"|\b(?:is|are|was|were)\s*{_NOT}\s+(?:\w+\s+)?(?:mentioned|specified|stated|provided|given|"
    rf"discussed|reported|described|available|found)\b"
    rf"|\b(?:no|not\s+any|not\s+enough)\s+(?:\w+\s+)?(?:information|details?|mention)\b"
    rf"|\b(?:cannot|can't|can\s+not|unable\s+to|not\s+possible\s+to)\s+(?:\w+\s+)?(?:answer|determine|"
    rf"find|tell|say|infer|know)\b|\bI\s+(?:do\s+not|don't)\s+know\b)",
    re.IGNORECASE)


def is_refusal(text: str) -> bool:
    """Whether an answer refuses: it starts with the fixed refusal sentence (quotes and markdown
    aside), it contains that sentence and cites nothing, or every sentence of it says in other
    words that the sources don't answer."""
    norm = _plain(text).lstrip("\"'“> ")
    if norm.startswith(_REFUSALS):
        return True
    if any(r in norm for r in _REFUSALS) and not markers(text):
        return True
    sentences = [MARKER.sub("", s).replace("’", "'") for s in answer_sentences(text)]
    return bool(sentences) and all(_NOT_ANSWERED.search(s) for s in sentences)


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


_BULLET = re.compile(r"^(\s*(?:[-*•]|\d+[.)])?\s*)(.*)$")
_LEADING_MARKERS = re.compile(rf"^((?:{MARKER.pattern}\s*)+)(?=[^\W\d_]|[\"“*])")
_THINK = re.compile(r"<think>.*?(?:</think>|\Z)", re.DOTALL)
_SENTENCE_DONE = re.compile(r"[.!?][\"”*)]*(?:\s*\[[^\]]*\])*(?=\s|$)")


def move_leading_markers(text: str) -> str:
    """'[1] ShadowKV cuts memory.' → 'ShadowKV cuts memory [1].': small models put a marker before
    the sentence it supports; after it is where readers (and the support check) look."""
    lines = []
    for line in text.split("\n"):
        head, body = _BULLET.match(line).groups()  # type: ignore[union-attr]  # the pattern matches any line
        sentences = split_sentences(body)
        if not any(_LEADING_MARKERS.match(s) for s in sentences):
            lines.append(line)
            continue
        fixed = []
        for sentence in sentences:
            if found := _LEADING_MARKERS.match(sentence):
                rest = sentence[found.end():].rstrip()
                end = rest[-1] if rest[-1] in ".!?" else ""
                sentence = f"{rest[:len(rest) - len(end)].rstrip()} {found.group(1).strip()}{end}"
            fixed.append(sentence)
        lines.append(head + " ".join(fixed))
    return "\n".join(lines)


def without_reasoning(text: str) -> str:
    """The text without `<think>…</think>` blocks (an unclosed one runs to the end)."""
    return _THINK.sub("", text).strip()


def without_unfinished_sentence(text: str) -> str:
    """The text up to its last finished sentence (all of it when no sentence is finished)."""
    ends = list(_SENTENCE_DONE.finditer(text))
    return text[:ends[-1].end()] if ends else text


def _is_title(sentence: str, titles: Sequence[str]) -> bool:
    """Whether a sentence (markers removed) is nothing but one of the titles."""
    def squeeze(value: str) -> str:
        return re.sub(r"\W+", " ", value).strip().casefold()
    return squeeze(sentence) in {squeeze(t) for t in titles}


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
    verbatim = [bool(c) and quoted_span(bare, [by_n[n] for n in c]) is not None for bare, c in zip(plain, cites)]
    evidence = {n: split_sentences(by_n[n].text) or [by_n[n].text] for c in cites for n in c}
    needed = sorted({bare for bare, c, v in zip(plain, cites, verbatim) if c and bare and not v}
                    | {e for bare, c, v in zip(plain, cites, verbatim) if c and bare and not v
                       for n in c for e in evidence[n]})
    vectors = dict(zip(needed, encode(needed))) if needed else {}
    results = []
    titles = [s.title for s in sources]
    for sentence, bare, cited, exact in zip(sentences, plain, cites, verbatim):
        if not cited or not bare or _is_title(bare, titles):
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


def quoted_span(sentence: str, cited: Sequence[Source]) -> str | None:
    """The part of the sentence that a cited passage holds verbatim (whitespace normalised), after at
    most one short lead-in of ours: a quoted title ('"Title":'), a label ('ShadowKV:', '3.04×:') or a
    name ('ShadowKV is …'); None when it is not a quote."""
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
    return next((t for t in tails if len(t) > 20 and any(t in p for p in passages)), None)


def build_citations(text: str, sources: Sequence[Source]) -> list[Citation]:
    """Citations for the markers in `text` that map to sources, in order of first use."""
    by_n = {s.n: s for s in sources}
    return [Citation(n, by_n[n].title, by_n[n].paper_id) for n in markers(text) if n in by_n]


def finalize(question: str, text: str, sources: list[Source], backend: str, encode: Encode,
             all_titles: Callable[[], list[str]]) -> Answer:
    """The Answer for a backend's text: markers validated, refusal detected, support scored: the
    same for every backend. `all_titles` (slow on a large collection) is called only when the text
    quotes a title that is not one of the sources."""
    warnings = []
    if text.endswith(CUT_MARK):
        text = without_unfinished_sentence(text.removesuffix(CUT_MARK).rstrip())
        warnings.append("the reply was cut at the length limit (ASSISTANT_LLM_MAX_TOKENS); "
                        "its unfinished last sentence was dropped")
    thought = "<think>" in text
    text = without_reasoning(text)
    if not text:
        reason = "wrote only its reasoning (<think>…) and no answer" if thought else "returned an empty answer"
        raise BackendError(f"the {backend} backend {reason}")
    if is_refusal(text):
        if any(r in _plain(text) for r in _REFUSALS):
            extra = ["dropped text the backend added to the refusal sentence"] if refusal_has_extra(text) else []
        else:
            extra = [f"read as a refusal: {' '.join(text.split())[:200]!r}"]
        return Answer(question, REFUSAL, True, [], sources, backend, warnings=extra)
    text = move_leading_markers(text)
    text, removed = drop_invalid_markers(text, {s.n for s in sources})
    if removed:
        warnings.append(f"removed {removed} citation marker(s) that pointed outside the sources")
    invented = quoted_titles_not_in(text, [s.title for s in sources])
    if invented:  # only then against the whole collection: ~0.2 s at 100k papers
        invented = quoted_titles_not_in(text, [s.title for s in sources] + all_titles())
    warnings += [f"title not in the collection: {t!r}" for t in invented]
    sentences = score_support(answer_sentences(text), sources, encode)
    citations = build_citations(text, sources)
    warnings += ungrounded_reasons(sentences, citations)
    return Answer(question, text, False, citations, sources, backend, sentences, warnings=warnings)


def ungrounded_reasons(sentences: list[SentenceSupport], citations: list[Citation]) -> list[str]:
    """Why an answer is not grounded (nothing when a sentence states what a cited source supports)."""
    if any(s.cites and s.supported for s in sentences):
        return []
    if not citations:
        return ["the answer cites no source"]
    if all(not MARKER.sub("", s.text).strip(" .") for s in sentences):
        return ["the answer is only citation markers, with no statement"]
    if all(s.support == 0 for s in sentences if s.cites):
        return ["the answer names papers but states nothing from them"]
    return ["no sentence is supported by the passage it cites"]
