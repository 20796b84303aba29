"""Small text helpers shared by keyword search, the extractive answerer and citation scoring."""

from __future__ import annotations

import re
import string
import unicodedata
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
whats whos hows wheres whens whys thats theres dont doesnt didnt isnt arent wasnt werent cant couldnt
wont wouldnt shouldnt hasnt havent hadnt im ive youre don doesn didn isn aren wasn weren couldn wouldn
shouldn hasn haven hadn wat waht wht
""".split())  # the last lines: contractions and typos ("whats new in flatquant", the "don" of "don't", "wat")

_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]*|\d+(?:[.,]\d+)*%?")
#: Changes whenever `terms()` changes, so saved keyword indexes built with the old one are rebuilt.
ANALYZER_ID = "words-v3/stopwords-v3/snowball-en/acronyms/no-training"
_NUMBER = re.compile(r"(?<![A-Za-z])\d+(?:[.,]\d+)*(?:\s*(?:%|×|(?:x|times)\b)|%)?", re.I)
#: A sentence ends at . ! ? before a capital, a digit, a quote or bracket, or a name that starts in
#: lower case but has a capital inside ("… grouped layers. xKV consolidates …").
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[]|[a-z]+[A-Z])")
#: A question that is little more than a name: "What is X?", "tell me about X", "how does X work".
_SUBJECT = re.compile(
    r"^(?:(?:so|and|ok|hi|hey)[, ]+)?(?:what(?:'s| is| are| does)|whats|wat(?: is| does)?|who (?:is|made)|"
    r"tell me about|explain|describe|summari[sz]e|what problem does|how does|how do|info on|about)?\s*"
    r"(?P<subject>[^\s?!.]+(?:\s+[^\s?!.]+){0,2}?)\s*"
    r"(?:do|does|work|works|solve|mean|about|do\?|is)?\s*[?!.]*$", re.I)
_EDGE = re.compile(r"^[^\w]+|[^\w+]+$")
_ABBREVIATIONS = ("e.g.", "i.e.", "et al.", "vs.", "cf.", "Fig.", "Eq.", "approx.")


def without_control(text: str, replacement: str = "") -> str:
    """`text` with every control or invisible format character (Unicode category C: terminal
    escapes, bidi overrides, zero-width marks) but newline and tab replaced by `replacement`: such
    characters must reach neither the index, nor a query, nor the user's terminal."""
    if text.isprintable():  # the common case, checked in C
        return text
    return "".join(ch if ch in "\n\t" or unicodedata.category(ch)[0] != "C" else replacement for ch in text)


@lru_cache(maxsize=1)
def _stemmer():  # PyStemmer has no type hints
    import Stemmer

    return Stemmer.Stemmer("english")


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    """Snowball (English) stem of a lower-case word."""
    return _stemmer().stemWord(word)


#: A digit the pages write as a subscript inside a name: the "_2" of "H_2O", "CO_2".
_SUBSCRIPT_DIGIT = re.compile(r"(?<=[A-Za-z])_(?=\d)")


def unsubscript(text: str) -> str:
    """`text` with subscript digits written inline ("H_2O" → "H2O"): people type names that way."""
    return _SUBSCRIPT_DIGIT.sub("", text) if "_" in text else text


def words(text: str) -> list[str]:
    """Lower-case word and number tokens ("H_2O" is the one token "h2o")."""
    return [w.lower() for w in _WORD.findall(unsubscript(text))]


#: A method that needs no (re)training, said many ways ("training-free", "without retraining", "does
#: not require auxiliary models or additional training"), no word of one phrasing in the others: a
#: text saying it gets one more term, `NO_TRAINING_TERM`, so a question saying it one way finds the
#: abstracts saying it another.
NO_TRAINING = re.compile(r"\b(?:re-?|fine-?)?(?:train|tun)(?:ing|ed)?[- ]free\b|"
                         r"\b(?:without|no|not require|not need|free of)\s+(?:[\w-]+,?\s+){0,4}?"
                         r"(?:re-?|fine-?)?(?:train|tun)(?:ing|ed)?\b", re.I)
NO_TRAINING_TERM = "~no-training"


#: A word every `NO_TRAINING` phrasing has: the regex runs only on texts with one (it is slower than the rest).
_NO_TRAINING_CUES = frozenset({"free", "without", "no", "not"})


#: "large language models" is what "LLMs" stands for: a text saying it has the term "llm" too.
_LARGE_LANGUAGE_MODEL = re.compile(r"\blarge language models?\b", re.I)
#: An acronym's plural ("llms", "cnns", "gpus"), which the stemmer leaves as it is.
_ACRONYM_PLURAL = re.compile(r"[b-df-hj-np-tv-xz]{2,}s|[cgnt]pus")


def terms(text: str) -> list[str]:
    """Stemmed content terms: what keyword search and overlap scores compare. Acronyms are singular
    ("LLMs" ~ "LLM"), "large language model" also counts as "llm", and `NO_TRAINING_TERM` stands for
    every way of saying a method needs no training."""
    tokens = words(text)
    found = [w[:-1] if _ACRONYM_PLURAL.fullmatch(w) else stem(w)
             for w in tokens if w not in STOPWORDS and (len(w) > 1 or w.isdigit())]
    if "language" in tokens and _LARGE_LANGUAGE_MODEL.search(text):
        found.append("llm")
    if not _NO_TRAINING_CUES.isdisjoint(tokens) and NO_TRAINING.search(text):
        found.append(NO_TRAINING_TERM)
    return found


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


def _token(word: str) -> str:
    return _EDGE.sub("", word).casefold()


#: Quantities that look like names: "1B-parameter", "2k-32k-word", "1.6-trillion-parameter", "4-bit", "2D", "7B",
#: "10k+".
_NOT_A_NAME = re.compile(r"\d[\d.,]*[a-zA-Z]{0,2}(?:-\d[\d.,]*[a-zA-Z]{0,2})*-[a-z-]+|\d[\d.,]*[a-zA-Z]{0,2}\+|"
                         r"\d[\d.,]*[a-zA-Z]{1,2}")
#: A descriptor glued to a name: "a MuZero-style agent", "Llama-2-based models" name MuZero, Llama-2.
_DESCRIPTOR = re.compile(r"-(?:style|like|based|inspired|type|sized|scale|level|specific|driven|powered|centric|"
                         r"enabled|augmented|accelerated)$",
                         re.I)


#: A version written apart from its name: the "2" of "SAM 2", the "v3" of "YOLO v3".
_VERSION = re.compile(r"v?\d{1,2}(?:\.\d{1,2})?")


def named_things(question: str) -> list[str]:
    """What the question names, case-folded: name-shaped words (digits, inner capitals, hyphens,
    acronyms) and the subject of a bare "What is X?" question. Quantities ("1B-parameter") are not
    names, nor are lower-case compounds ("code-search") in a question that writes names with capitals."""
    return list(_named_things(question))


@lru_cache(maxsize=256)
def _named_things(question: str) -> tuple[str, ...]:
    """`named_things`, cached: retrieval asks it of one question for every candidate paper."""
    names = []
    cased = question != question.lower()
    words = question.split()
    for i, word in enumerate(words):
        bare = _DESCRIPTOR.sub("", re.sub(r"['’]s$", "", _EDGE.sub("", unsubscript(word))))
        if re.fullmatch(r"[A-Z]{2,}s", bare):  # "CNNs", "LLMs": the acronym is the name
            bare = bare[:-1]
        if len(bare) < 2 or bare.casefold() in STOPWORDS or _NOT_A_NAME.fullmatch(bare):
            continue
        if cased and "-" in bare and bare.islower() and not any(c.isdigit() for c in bare):
            continue  # "code-search" where names are written with capitals: a compound word
        inner = bare[1:]
        if (any(c.isdigit() for c in bare) and any(c.isalpha() for c in bare)) or any(c.isupper() for c in inner) \
                or re.search(r"\w[-+]|\+$", bare) or (i > 0 and bare[0].isupper() and word[0] not in "'\"“("):
            version = _VERSION.fullmatch(_EDGE.sub("", words[i + 1])) if i + 1 < len(words) else None
            names.append(f"{bare} {version.group()}".casefold() if version and word == _EDGE.sub("", word) else
                         bare.casefold())
    match = _SUBJECT.match(question.strip())
    if match:
        subject = " ".join(match.group("subject").split())
        owner = re.match(r"(.+?)['’]s\b", subject)  # "ShadowKV's speedup": the name is ShadowKV's, not "speedup"
        names += [_token(w) for w in (owner.group(1) if owner else subject).split()
                  if _token(w) and _token(w) not in STOPWORDS and len(_token(w)) > 1]
    return tuple(dict.fromkeys(names))


#: A word written as a name: a capital after a small letter or digit ("FlatQuant", "mT5"), letters and
#: digits together ("Llama2"), capitals then small letters ("XGrammar", "DSPy"); acronyms ("LLMs",
#: "GPU") are common words when typed in lower case.
_NAME_SHAPED = re.compile(r"[A-Za-z0-9]*(?:[a-z0-9][A-Z]|[A-Za-z]\d|[A-Z]{2}[a-rt-z])\w*")
#: Lower-cases ASCII letters only, keeping every position where it was.
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_WORD_CHAR = re.compile(r"[\w-]")


def written_as_names(question: str, text: str) -> list[str]:
    """The words of a question that `text` writes as names ("flatquant" where the text has
    "FlatQuant"): people type names in lower case. Each word is looked for with `str.find` in a
    lower-cased copy of the same length (so positions match), much cheaper than a regex pass."""
    lower = text.lower()
    if len(lower) != len(text):  # a letter whose lower case is longer ("İ"): lower ASCII only
        lower = text.translate(_ASCII_LOWER)
    found = []
    for word in dict.fromkeys(map(_token, question.split())):
        if len(word) < 4 or word in STOPWORDS:
            continue
        start = lower.find(word)
        while start >= 0:
            end = start + len(word)
            form = text[start:end]
            whole = (start == 0 or not _WORD_CHAR.match(lower[start - 1])) and (
                end == len(lower) or not _WORD_CHAR.match(lower[end]))
            if whole and _NAME_SHAPED.fullmatch(form) and not _NOT_A_NAME.fullmatch(form):
                found.append(word)
                break
            start = lower.find(word, end)
    return found


def typed_names(question: str, titles: list[str], text: str) -> list[str]:
    """The names a question types in lower case, beyond `named_things`: its lower-case words that
    `text` writes as names ("flatquant" for "FlatQuant") or that a title gives as its system's name
    ("splitwise" for "Splitwise: …")."""
    typed = typed_words(question)
    if not typed:
        return []
    found = written_as_names(question, text)
    found += [name.casefold() for name in map(system_name, titles) if name and name.casefold() in typed]
    named = set(named_things(question))
    return [name for name in dict.fromkeys(found) if name not in named]


def is_bare_subject(question: str) -> bool:
    """Whether the question is little more than a name ("What is X?", "tell me about X", "X?"): it
    asks for an overview, not for one detail."""
    return _SUBJECT.match(question.strip()) is not None


def system_name(title: str) -> str | None:
    """The name a title gives its method ("ShadowKV: KV Cache in ..." -> "ShadowKV"), if any."""
    head, sep, _ = title.partition(":")
    return head.strip() if sep and 0 < len(head.split()) <= 3 else None


def names_system_of(question: str, title: str) -> bool:
    """Whether the question names the system a title is about ("What is TransMLA?" and
    "TransMLA: Multi-head Latent Attention …")."""
    name = system_name(title)
    if name is None:
        return False
    wanted = set(unsubscript(name).casefold().split())
    return wanted <= set(named_things(question)) or wanted <= typed_words(question)


def typed_words(question: str) -> set[str]:
    """The words of a question typed all in lower case ("how fast is splitwise"): people type names
    that way, so such a word may name a system. A question with capitals writes its names with them."""
    return set(map(_token, question.split())) if question == question.lower() else set()


VERSIONED = re.compile(r"\d|\+")


def mentions(text: str, name: str) -> bool:
    """Whether `text` mentions `name`: as a whole word (case-folded) when the name carries a
    version (digits, '+') or is made of stopwords only ("Once-for-All"), else by its stemmed terms
    ("CNNs" ~ "CNN", "KV-cache" ~ "KV cache") or, for a name of 4+ letters, inside a longer name
    ("MuZero" in "mallocMuZero")."""
    name = unsubscript(name)
    if VERSIONED.search(name) or not terms(name):  # "Once-for-All" has no terms: all are stopwords
        # "SAM 2" ~ "SAM-2" ~ "SAM2"; "Gaudi 2" ~ "Gaudi® 2"
        spaced = r"[®™]?[\s-]?".join(map(re.escape, re.split(r"[\s-]", name)))
        return re.search(rf"(?<![\w+-]){spaced}(?![\w+]|-\w)", unsubscript(text).casefold()) is not None
    wanted = set(terms(name))
    if wanted and wanted <= _terms_of(text):
        return True
    return len(name) >= 4 and name.isalpha() and re.search(rf"[a-z]{re.escape(name)}|{re.escape(name)}[a-z]",
                                                           text.casefold()) is not None


@lru_cache(maxsize=1024)
def _terms_of(text: str) -> frozenset[str]:
    """The stemmed terms of a passage, singular forms added ("GPUs" mentions the "GPU" of "how many
    GPUs"); cached: every name of a question is looked up in the same few passages."""
    present = set(terms(text))
    return frozenset(present | {t[:-1] for t in present if t.endswith("s")})
