"""Small text helpers shared by keyword search, the extractive answerer and citation scoring."""

from __future__ import annotations

import re
from functools import lru_cache

STOPWORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further had has
have having he her here hers herself him himself his how i if in into is it its itself just me more
most my myself no nor not of off on once only or other our ours ourselves out over own same she
should so some such than that the their theirs them themselves then there these they this those
through to too under until up very was we were what when where which while who whom why will with
would you your yours yourself yourselves paper papers work works approach approaches method methods
propose proposes proposed present presents introduce introduces show shows use uses using used
based new novel collection which whose does tell find list describe explain give say says
""".split())

_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]*|\d+(?:[.,]\d+)*%?")
#: Changes whenever `terms()` changes, so saved keyword indexes built with the old one are rebuilt.
ANALYZER_ID = "words-v2/stopwords/snowball-en"
_NUMBER = re.compile(r"(?<![A-Za-z])\d+(?:[.,]\d+)*(?:\s*(?:%|×|(?:x|times)\b)|%)?", re.I)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")
_ABBREVIATIONS = ("e.g.", "i.e.", "et al.", "vs.", "cf.", "Fig.", "Eq.", "approx.")


@lru_cache(maxsize=1)
def _stemmer():  # PyStemmer has no type hints
    import Stemmer

    return Stemmer.Stemmer("english")


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    """Snowball (English) stem of a lower-case word."""
    return _stemmer().stemWord(word)


def words(text: str) -> list[str]:
    """Lower-case word and number tokens."""
    return [w.lower() for w in _WORD.findall(text)]


def terms(text: str) -> list[str]:
    """Stemmed content terms: what keyword search and overlap scores compare."""
    return [stem(w) for w in words(text) if w not in STOPWORDS and (len(w) > 1 or w.isdigit())]


def numbers(text: str) -> set[str]:
    """Numbers as written (e.g. '3.04', '6x', '45%'), normalised for comparison ('6×', '6 times' → '6x')."""
    return {re.sub(r"\s+", "", m.group()).lower().replace(",", "").replace("×", "x").replace("times", "x")
            for m in _NUMBER.finditer(text)}


def split_sentences(text: str) -> list[str]:
    """Split an abstract into sentences, keeping common abbreviations intact."""
    protected = text
    for i, abbr in enumerate(_ABBREVIATIONS):
        protected = protected.replace(abbr, f"\x00{i}\x00")
    parts = _SENTENCE_END.split(protected)
    out = []
    for part in parts:
        for i, abbr in enumerate(_ABBREVIATIONS):
            part = part.replace(f"\x00{i}\x00", abbr)
        if part.strip():
            out.append(part.strip())
    return out
