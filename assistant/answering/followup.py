"""Follow-up questions: answer a question that leans on the previous answer about that answer's papers.

The answerers have no memory, so `plan` turns a follow-up into a self-contained question and, when
the previous answer cited papers, the set of papers to answer from:

- "what about the second one?" → the previous question, about the second paper the answer cited;
- "which of them works without retraining?" → the new question, about all the papers it cited;
- "and its speedup?" after an answer about one paper → "and ShadowKV's speedup?", about that paper;
- a follow-up to a refusal has no papers to lean on: it is asked together with the earlier
  question ("<topic> <follow-up>"), as retrieval then has both to go on.

A question is a follow-up when there is an earlier turn and the question is short (at most
`SHORT_QUESTION_WORDS` words) without naming anything of its own, opens with a connective ("and",
"what about", …) or refers back ("it", "its", "they", "which of them", "this paper", "the second
one", …). Any other question is asked as typed, over the whole collection.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..models import Answer, Citation
from ..text import named_things, system_name, terms

SHORT_QUESTION_WORDS = 4
#: Words that ask nothing by themselves ("what about …", "how about …", "me").
_FILLER = frozenset(terms("about what how me us please"))
_CONNECTIVES = r"and|also|so|then|but|what about|how about|and what about"
_OPENERS = re.compile(rf"^(?:{_CONNECTIVES})\b", re.I)
_NOUNS = r"(?:paper|papers|work|works|method|methods|model|models|approach|approaches|system|systems|" \
         r"technique|techniques|one|ones|study|studies)"
_REFERRING = re.compile(
    rf"\b(?:it|its|it's|they|them|their|theirs|(?:this|that|these|those|the same|the)\s+(?:{_NOUNS}|authors|"
    r"benchmark))\b", re.I)
_ORDINALS = {"first": 0, "1st": 0, "second": 1, "2nd": 1, "third": 2, "3rd": 2, "fourth": 3, "4th": 3,
             "fifth": 4, "5th": 4, "sixth": 5, "6th": 5, "last": -1}
#: "the second one", "the last paper", "paper 2", "[2]": one paper of the previous answer.
_ORDINAL = re.compile(rf"\b(?:the\s+)?(?P<word>{'|'.join(_ORDINALS)})\s+(?:{_NOUNS}|of them)\b|"
                      rf"\b(?:paper|source|number|no\.)\s*#?(?P<number>\d)\b|\[(?P<marker>\d)\]", re.I)
#: "which of them", "among these", "they", "those papers": every paper of the previous answer.
_PLURAL = re.compile(r"\b(?:they|them|their|theirs|these|those)\b|\b(?:the|both)\s+(?:papers|works|methods|"
                     r"models|approaches|systems|techniques|ones|studies)\b", re.I)
#: "it", "its", "this paper", "the method": the one paper of the previous answer.
_SINGULAR = re.compile(r"\b(?:(?:this|that|the same|the)\s+(?:paper|work|method|model|approach|system|"
                       r"technique|one|study)|it's|its|it)\b", re.I)
_MORE = re.compile(r"\b(?:tell me|more|describe|explain|elaborate|details?|summar(?:y|ize|ise))\b|"
                   r"\bhow (?:does|do)\b[^?]*\bwork", re.I)
#: The connective a follow-up opens with, and its comma, taken off to see what is left.
_LEADING = re.compile(rf"^(?:{_CONNECTIVES}|ok(?:ay)?)\b[\s,]*", re.I)


def is_follow_up(question: str) -> bool:
    """Whether a question leans on the one before it: it opens with a connective, refers back, or
    is short without naming anything of its own ("why?", "and the speedup" are follow-ups; "mllm-NPU
    prefill speed" is a question of its own)."""
    text = question.strip()
    return ((len(text.split()) <= SHORT_QUESTION_WORDS and not named_things(text)) or bool(_OPENERS.match(text))
            or bool(_REFERRING.search(text)) or bool(_ORDINAL.search(text)))


@dataclass(frozen=True)
class Turn:
    """What a follow-up needs of an earlier answer: the question it answered (self-contained) and the
    papers it cited, in the order the answer first cites them."""

    question: str
    papers: tuple[Citation, ...] = ()

    @classmethod
    def of(cls, answer: Answer) -> Turn:
        """The turn of a finished answer: the papers it cites or, for a refused follow-up, the papers
        it was asked about (a later "what about the second one?" still points into them)."""
        question = answer.asked_as or answer.question
        if not answer.refused and answer.citations:
            order = {c.n: answer.text.find(f"[{c.n}]") for c in answer.citations}
            return cls(question, tuple(sorted(answer.citations, key=lambda c: (order[c.n] < 0, order[c.n], c.n))))
        about = set(answer.about)
        return cls(question, tuple(Citation(s.n, s.title, s.paper_id) for s in answer.sources if s.paper_id in about))


@dataclass(frozen=True)
class FollowUp:
    """How to answer a question in its conversation: the self-contained question, and the papers to
    answer from (empty: the whole collection)."""

    question: str
    papers: tuple[Citation, ...] = ()

    @property
    def paper_ids(self) -> tuple[str, ...]:
        return tuple(p.paper_id for p in self.papers)


def plan(question: str, history: Sequence[Turn]) -> FollowUp:
    """How to answer `question` after the turns in `history` (oldest first)."""
    text = question.strip()
    if not history or not text or not is_follow_up(text):
        return FollowUp(text)
    last = history[-1]
    if not last.papers:
        return FollowUp(f"{last.question.strip()} {text}")
    ordinal = _ORDINAL.search(text)
    if ordinal and (paper := _nth(last.papers, ordinal)) is not None:
        aspect = _without(text, ordinal)
        return FollowUp(_about(aspect, paper) if _asks_something(aspect) else _more(text, paper, last), (paper,))
    if len(last.papers) == 1 or (_SINGULAR.search(text) and not _PLURAL.search(text)):
        paper = last.papers[0]
        return FollowUp(_about(text, paper) if _asks_something(text) else _more(text, paper, last), (paper,))
    if _asks_something(_LEADING.sub("", _PLURAL.sub("", text))):
        return FollowUp(text, last.papers)
    return FollowUp(last.question, last.papers)


def _nth(papers: tuple[Citation, ...], match: re.Match[str]) -> Citation | None:
    """The paper an ordinal points at: "the second one" is the second paper cited, "[2]" is source 2."""
    if match.group("marker"):
        return next((p for p in papers if p.n == int(match.group("marker"))), None)
    index = int(match.group("number")) - 1 if match.group("number") else _ORDINALS[match.group("word").lower()]
    return papers[index] if -len(papers) <= index < len(papers) else None


def _without(text: str, match: re.Match[str]) -> str:
    """The question with the reference to a paper taken out ("what about the second one" → "")."""
    rest = f"{text[:match.start()]} {text[match.end():]}"
    return " ".join(_LEADING.sub("", rest.strip(" ?,.")).split())


def _more(text: str, paper: Citation, last: Turn) -> str:
    """A follow-up with no aspect of its own: "how does it work?" and "tell me more about the first
    one" ask what that paper is; "what about the second one?" asks the previous question of it."""
    if not _MORE.search(text):
        return last.question
    return _about(text, paper) if _SINGULAR.search(text) else f"What is {system_name(paper.title) or paper.title}?"


def _asks_something(text: str) -> bool:
    """Whether a follow-up names an aspect of its own (terms beyond the references and connectives)."""
    remaining = _SINGULAR.sub(" ", _PLURAL.sub(" ", _LEADING.sub("", text.strip())))
    return bool(set(terms(_MORE.sub(" ", remaining))) - _FILLER)


def _about(text: str, paper: Citation) -> str:
    """The follow-up with its reference to the paper replaced by the paper's name ("its speedup" →
    "ShadowKV's speedup"), or the name added when it has none."""
    name = system_name(paper.title) or f"“{paper.title}”"

    def replace(match: re.Match[str]) -> str:
        word = match.group(0).lower()
        return f"{name}'s" if word == "its" else f"{name} is" if word == "it's" else name

    replaced, count = _SINGULAR.subn(replace, text, count=1)
    return replaced if count else f"{text.rstrip(' ?')} ({name})?"
