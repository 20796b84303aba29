"""How well the retrieved sources answer a question: scored sentences, evidence features and a
calibrated confidence.

Whether to answer is a decision over evidence, not a hand-set threshold on one score: a short
question that names a system ("What is TransMLA?") has a low dense cosine although the paper is
right there, while a question about a system that is NOT in the collection ("what does lserve-3
do") can score high. The features below describe the evidence; a logistic model fit on the
train questions, generated and hand-written (`evals/fit_confidence.py`, stored in `confidence_model.json`) turns them
into `confidence`: the estimated probability that the collection answers the question with the
evidence found (its top paper is a right one and states what was asked). The extractive answerer
refuses below the model's threshold, which was chosen on dev for a target false-refusal rate.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Protocol

import numpy as np

from ..models import Source
from ..text import (
    NO_TRAINING,
    NO_TRAINING_TERM,
    VERSIONED,
    mentions,
    named_things,
    numbers,
    split_sentences,
    terms,
    typed_names,
)

Encode = Callable[[list[str]], np.ndarray]
MODEL_FILE = Path(__file__).with_name("confidence_model.json")

LEXICAL_WEIGHT = 0.5
RANK_PENALTY = 0.04
BACKGROUND_PENALTY = 0.1
FIGURE_BONUS = 0.2
#: Sentences embedded per source: the best by lexical coverage (embedding is the slow part).
PREFILTER_PER_SOURCE = 3
#: Shorter sentences (headings, fragments) are never quoted.
MIN_SENTENCE_WORDS = 5
_CACHE_SIZE = 256

_NUMERIC = re.compile(
    r"\bhow (many|much|fast|large|long|big|far|often|small)\b|\bby how\b|\bhow many times\b|"
    r"\bwhat (percentage|fraction|share|proportion|speed-?up|ratio|number|factor|learning rate|batch size|size|"
    r"reduction|compression(?: ratio)?|improvement|gains?|savings|throughput|latency)\b|"
    r"\bwhat (average )?(score|accuracy)\b|"
    # "what MMLU score does …", "what top-5 accuracy does …": a measure with what it is measured on
    r"\bwhat (?:[\w-]+ ){1,2}(?:scores?|accuracy|perplexity|speed-?ups?|latency|throughput)\s+"
    r"(?:does|do|did|is|are|was|were|can|could)\b|"
    r"\bup to how\b|\bby what factor\b|\b(its|the|their|[\w-]+'s) speed-?ups?\b",
    re.I,
)
#: Measures a keyword query may ask for by name alone.
_MEASURE = re.compile(r"\b(?:latency|latencies|speed-?ups?|throughput|accuracy|perplexity|bleu|f1|compression ratio|"
                      r"memory (?:savings|reduction|footprint|usage))\b", re.I)
_WHAT_IS = re.compile(r"what(?:'s|’s| is| are| was| were)\b", re.I)
_QUESTION_WORD = re.compile(r"(?:what|which|who|how|why|where|when|does|do|is|are|can|tell|explain|describe|"
                            r"papers?|any)\b", re.I)
#: "how many <measure>" / "which <attribute>": the words the evidence must contain.
_ASKED = re.compile(r"\b(?:how many|which|what)\s+(?!(?:does|do|did|is|are|was|were|has|have|had|can|could|will)\b)"
                    r"((?:[a-z-]+\s+){0,2}?[a-z-]+?)\s+"
                    r"(?:does|do|did|is|are|was|were|has|have|had|can|could|of|in|for|to|on|by|with|were|will)\b",
                    re.I)
#: "how many public datasets was …", "how many bits per parameter": what is counted ("how many times
#: fewer tokens" asks for a factor).
_HOW_MANY = re.compile(r"\bhow many\s+(?!times\b)((?:[\w-]+\s+){0,2}?[\w-]+?)(?:\s+(?:does|do|did|is|are|was|were|"
                       r"has|have|had|can|could|of|in|for|to|on|by|with|will|per)\b|\s*[?.!]*\s*$)", re.I)
#: A count: "256", "40K", "349k", "1.4" (of "1.4 million hours"); and how many words may come
#: between it and what it counts.
COUNT = re.compile(r"(?<![\w.-])\d[\d,.]*[KkMB]?(?![\w-])")
COUNTED_WORDS = 4
#: Words any figure satisfies ("what accuracy", "what throughput gain"): not required in the evidence.
_MEASURE_WORDS = frozenset(terms("score scores accuracy gain gains improvement improvements point points performance "
                                 "result results"))
#: How many words apart a figure and the word it measures may be ("a batch size of 4,096").
VALUE_WINDOW = 6
#: A model family's name ("Llama-3.1-8B", "GPT-4", "Mistral-7B"): what "which LLMs" asks for.
_MODEL_NAME = re.compile(r"\b(?:Llama|LLaMA|Mistral|Mixtral|Gemma|Vicuna|Falcon|Claude|Qwen|Phi|Gemini|Yi|BERT|"
                         r"RoBERTa|GPT|OPT|T5|GLM|ChatGLM|DeepSeek|Baichuan|InternLM|PaLM|BLOOM|Pythia|ViT|ResNet|CLIP|Whisper|"
                         r"MobileNet|EfficientNet|Swin|DeiT|Stable Diffusion|SDXL|DiT)")
#: A word between "which" and what it asks for: not an auxiliary ("what is LLM Inference Unveiled").
_FILLER = r"(?:(?!(?:is|are|was|were|does|do|did|has|have|had)\b)[\w-]+\s+)"
#: Questions asking for a kind of value, and what a value of that kind looks like: abstracts often
#: say "on GPUs" or "on smartphones" without which ones.
_VALUE_KINDS = [
    (re.compile(rf"\b(?:which|what)\s+{_FILLER}{{0,2}}?(?:gpus?|accelerators?)\b"
                r"(?!\s+(?:memory|hours|days|count|kernels?))", re.I),
     re.compile(r"\b(?:[AHLTVB]\d{2,3}|RTX\s?\d{4}|A\d{4}|MI\d{3}X?|TPUs?\s?v?\d|Jetson|[GH]B?\d{3}|Gaudi\d?|Xeon|"
                r"EPYC)\b")),
    (re.compile(rf"\b(?:which|what)\s+{_FILLER}{{0,2}}?(?:smart)?phones?\b|\b(?:smart)?phone models?\b", re.I),
     re.compile(r"\b(?:iPhone|Pixel|Galaxy|OnePlus|Xiaomi|Snapdragon|Redmi|Huawei|Dimensity|Oppo|Vivo)\b", re.I)),
    # "which 8 LLMs did SCBench evaluate" asks for models; "which video LLMs report …" for papers
    (re.compile(rf"\b(?:which|what)\s+(?!(?:kinds?|types?|sorts?)\s+of\b){_FILLER}{{0,3}}?"
                r"(?:llms?|language models?|base models?|models?)\s+(?:does|do|did|is|are|was|were|has|have|had)\b|"
                r"\bwhich of the (?:[\w-]+\s+){0,2}?(?:llms|language models|models)\b", re.I),
     _MODEL_NAME),
    # "what size LLM powers CodeCompose": a parameter count
    (re.compile(r"\bwhat size (?:of )?(?:[\w-]+ )?(?:llms?|models?)\b|"
                r"\bhow (?:big|large) (?:is|was) (?:the )?(?:[\w-]+ )?(?:model|llm)\b", re.I),
     re.compile(r"\b\d+(?:\.\d+)?\s?[BM]\b|\b(?:billion|million)\b")),
    (re.compile(rf"\b(?:which|what)\s+{_FILLER}{{0,2}}?(?:compan(?:y|ies)|organi[sz]ations?|labs?|institutions?|"
                r"universit(?:y|ies)|firms?)\b", re.I),
     re.compile(r"\b(?:Meta|Google|Microsoft|Amazon|Apple|Alibaba|ByteDance|Tencent|Baidu|NVIDIA|Nvidia|Huawei|OpenAI|"
                r"Facebook|Samsung|Intel|AMD|Qualcomm|IBM|Kuaishou|Meituan|Xiaohongshu|Ant Group|University|"
                r"Institute)\b")),
    (re.compile(rf"\b(?:which|what)\s+{_FILLER}{{0,2}}?languages\b", re.I),
     re.compile(r"\b(?:English|Chinese|Mandarin|Cantonese|Japanese|Korean|Spanish|French|German|Arabic|Hindi|Russian|"
                r"Portuguese|Italian|Python|Java|JavaScript|C\+\+|Rust|Fortran|Verilog|SQL)\b")),
    (re.compile(r"\bhow much (?:did|does|do|would|will) (?:it|\w+) cost\b|\bin (?:dollars|usd)\b|\bhow much money\b|"
                r"\bwhat (?:was|is|were) the (?:\w+ )?cost\b", re.I),
     re.compile(r"\$\s?\d|\bUSD\b|\bdollars?\b")),
    (re.compile(r"\blicen[cs]e[ds]?\b", re.I), re.compile(r"\b(?:Apache|MIT|GPL|BSD|CC[- ]BY|licen[cs]e[ds]?)\b")),
    (re.compile(r"^\W*who\b|\b(?:which|what)\s+(?:are\s+)?(?:the\s+)?(?:authors|affiliations?)\b|"
                r"\bauthors?(?:'s)?\s+(?:names?|affiliations?)\b|\bnames? of the authors\b|\baffiliat", re.I),
     re.compile(r"\bet al\b|\bUniversity\b|\bInstitute\b|\b(?:Inc|Ltd)\b")),
    (re.compile(r"^\W*when\s+(?:was|were|did|is|will)\b.*\b(?:releas|publish|launch|introduc|open.?sourc|came out|"
                r"come out|available)|\b(?:release|publication) date\b|\bwhat (?:year|date|month)\b", re.I),
     re.compile(r"\b(?:19|20)\d\d\b|\b(?:January|February|March|April|May|June|July|August|September|October|"
                r"November|December)\b")),
]
#: The word that makes a sentence a question, when it is not "which"/"what"/"how many" ("how does …").
_QUESTION_HEAD = re.compile(r"\b(?:how(?!\s+many\b)|why|does|do|did|is|are|can|could)\b", re.I)
#: "who are the authors of …", "who wrote …": people, which abstracts rarely name.
_WHO = re.compile(r"\bwho\s+(?:are|were|is|was)\s+the\s+([a-z-]+)|\bwho\s+(?:wrote|authored)\b", re.I)
#: Measures that need what they measure to be an attribute ("learning rate", "batch size").
_MEASURE_HEAD = re.compile(r"sizes?|rates?|counts?", re.I)
#: Words that make a "which X" question ask for a paper or a quantity, not for an attribute.
_GENERIC_ASKED = re.compile(
    r"\b(papers?|works?|methods?|approach(es)?|techniques?|models?|systems?|stud(y|ies)|frameworks?|thes[ie]s|"
    r"datasets?|ones?|ways?|ideas?|kinds?|types?|problems?|tasks?|architectures?|algorithms?|designs?|"
    r"strateg(y|ies)|mechanisms?|tools?|benchmarks?|analys[ie]s|results?|metrics?|widely|main|key|new|first|"
    r"sizes?|rates?|factors?|fractions?|shares?|percentages?|speed(-?ups?)?|ratios?|numbers?|amounts?|much)\b",
    re.I,
)
#: Sentences that set the scene (prior work, the problem) rather than say what a paper does.
BACKGROUND = re.compile(r"(However|Yet|Despite|While|Although|Existing|Current|Recent|Traditional|Prior|Previous|"
                         r"Conventional|Unfortunately|Nevertheless)\b")
#: Words that frame a question rather than say what it is about ("what problem does X solve").
_FRAME_TERMS = frozenset(terms("problem problems solve solves work works do tell explain describe summary summarize "
                               "mean means idea main key purpose goal contribution contributions about info "
                               "anything something papers paper study "
                               # what any figure satisfies: "what compression ratio does X reach" ~ "20x compression"
                               "reach reaches achieve achieves get gets obtain obtains ratio factor number amount "
                               "speedup speedups"))
#: A link: "https://github.com/…", "aka.ms/…".
LINK = re.compile(r"\b(?:https?://|www\.|github\.com/|aka\.ms/)\S*", re.I)
#: Words that say something is absent ("without retraining", "training-free").
_ABSENCE = frozenset(terms("without free lacks lacking never"))


#: "Which papers …", "any work on …", "papers on …": a question asking for several papers.
_LIST = re.compile(r"\b(which|what|list|name|any)\b[^?]*\b(papers|works|methods|studies|approaches|systems)\b|"
                   r"\bpapers\b|^(?:any(?:thing)?|something)\s+(?:on|about)\b|"
                   r"\b(?:any|some)\s+(?:work|research|literature)\s+(?:on|about|that|for)\b", re.I)


#: "Which paper …?", "what study …": a question whose answer is a paper.
WHICH_PAPER = re.compile(r"\b(?:which|what)\s+(?:paper|thesis|study|work|article|report|survey|publication)\b", re.I)


def asks_for_papers(question: str) -> bool:
    """Whether the question asks for several papers ("which papers …", "papers on …")."""
    return bool(_LIST.search(question))


def wants_figure(question: str) -> bool:
    """Whether the question asks for a figure ("how many", "by how much", "what speedup"), or is a
    search-box query for a measure ("mnasnet latency on pixel phone", "shadowkv throughput")."""
    if _NUMERIC.search(question) or (_WHAT_IS.match(question.strip()) and _MEASURE.search(question)):
        return True  # "what is MinMo's speech-to-text latency?" asks for a figure too
    words = question.split()
    return len(words) <= 8 and not _QUESTION_WORD.match(question.strip()) and bool(_MEASURE.search(question))


def asked_terms(question: str) -> set[str]:
    """The stemmed words the evidence must contain to state what the question asks for: the head
    noun ("how many human annotators" → {annot}), a measure with what it measures ("what learning
    rate" → {learn, rate}), the people asked about ("who are the authors" → {author})."""
    who = _WHO.search(question)
    if who:
        return set(terms(who.group(1) or "author"))
    match = _ASKED.search(question)
    if not match:
        return set()
    head = _QUESTION_HEAD.search(question)
    if head and head.start() < match.start():  # "how does H2O decide which tokens stay …": a clause
        return set()
    words = match.group(1).split()
    if len(words) >= 2 and _MEASURE_HEAD.fullmatch(words[-1]) and not _GENERIC_ASKED.search(words[-2]):
        return set(terms(" ".join(words[-2:])))
    if _GENERIC_ASKED.search(match.group(1)):
        return set()
    found = terms(match.group(1))
    if not found or found[-1].isdigit():
        return set()
    return {found[-1]}


def counted_terms(question: str) -> set[str]:
    """For "how many X …", the term of what is counted ("how many public datasets was …" →
    {dataset}, "how many bits per parameter" → {bit}); empty for other questions."""
    match = _HOW_MANY.search(question)
    found = terms(match.group(1)) if match else []
    if not found:  # "how many people annotated the TimePro dataset": the word after "how many"
        first = re.search(r"\bhow many\s+(?!times\b)([\w-]+)", question, re.I)
        found = terms(first.group(1)) if first else []
    return {found[-1]} if found else set()


def counts(sentence: str, counted: set[str]) -> str | None:
    """The count of what is counted with its words, as the sentence writes it ("550 billion tokens",
    "256 worker nodes"): a number followed within `COUNTED_WORDS` words by a counted term."""
    for number in COUNT.finditer(sentence):
        for i, word in enumerate(re.finditer(r"\S+", sentence[number.end():])):
            if i >= COUNTED_WORDS:
                break
            if counted & set(terms(word.group())):
                return sentence[number.start():number.end() + word.end()].rstrip(".,;:)")
    return None


def value_unstated(question: str, subject: list[Source]) -> bool:
    """Whether the question asks for a value that no sentence of these papers states: a value of the
    asked kind (a GPU or phone model, a licence, people, a date), a count before what is counted
    ("how many GPUs" → "8 GPUs"), a figure near the asked words ("what batch size" → "a batch size of
    4,096"), or the asked words at all ("which annotators"). False for questions asking for none, and
    for those asking for papers ("which paper develops an LLM …")."""
    if asks_for_papers(question) or WHICH_PAPER.search(question):
        return False
    for asks, value in _VALUE_KINDS:
        if asks.search(question):
            return not any(value.search(f"{s.title} {s.text}") for s in subject)
    counted = counted_terms(question) - _MEASURE_WORDS
    asked = counted or asked_terms(question) - _MEASURE_WORDS
    unit_named = _UNIT_NAMED.search(question)  # "… energy use of mllm-NPU in joules"
    if unit_named:
        asked |= set(terms(unit_named.group(1)))
    figure = wants_figure(question)
    if not asked and not figure:
        return False
    # other units are often said in words ("two orders of magnitude faster")
    unit = DURATION if _HOW_LONG.search(question) else SHARE if _SHARE_ASKED.search(question) else None
    variants = {v.casefold() for v in _VARIANT.findall(question)} if figure else set()
    for src in subject:
        for sentence in split_sentences(src.text):
            if asked and not asked <= set(terms(f"{sentence} {src.title}")):
                continue
            if variants and not all(mentions(f"{sentence} {src.title}", v) for v in variants):
                continue
            if counted and not counts(sentence, counted):
                continue
            if figure and not counted and not _figure_near(sentence, asked, unit):
                continue
            return False
    return True


def _figure_near(sentence: str, asked: set[str], unit: re.Pattern[str] | None) -> bool:
    """A figure in the sentence (in the asked unit, if any), within `VALUE_WINDOW` words of an asked
    word if there are any."""
    if not has_figure(sentence):
        return False
    words = sentence.split()
    figures = [i for i, w in enumerate(words) if has_figure(w) and (
        unit is None or any(unit.search(m.group()) for m in MEASUREMENT.finditer(" ".join(words[i:i + 2]))))]
    wanted = [i for i, w in enumerate(words) if asked & set(terms(w))]
    return bool(figures) and (not asked or any(abs(i - j) <= VALUE_WINDOW for i in figures for j in wanted))


def has_figure(sentence: str) -> bool:
    """A number that measures something: not a year, not a bare list index like "1)"."""
    listed = set(re.findall(r"(?<![\w.])(\d)\)", sentence))
    return any(not re.fullmatch(r"(19|20)\d\d", n) and not (n.isdigit() and n in listed)
               for n in numbers(sentence))


#: A rate's unit: "3.44 token/s", "11.68 tokens per second".
RATE = r"tokens?/s|tokens? per second|tok/s|FPS|QPS"
#: A measurement: a figure with its unit ("78ms", "3.1 GB", "20%", "3.04×", "100x", "10-fold", a rate)
#: or a decimal.
MEASUREMENT = re.compile(r"(?<![\w.-])(?:up to |over |about |nearly |more than )?\d+(?:[.,]\d+)*\s?(?:%|×|x|X|times|"
                         rf"-fold|fold|ms|s|GB|MB|KB|TB|GiB|MiB|hours?|minutes?|days?|{RATE})(?![A-Za-z])|"
                         r"(?<![\w.-])\d+(?:[.,]\d+)+(?![\w.])")
#: A gain's unit: "3.04×", "2 times", "10-fold".
TIMES = re.compile(r"[×xX]|times|fold")
#: A unit the question names for its figure: the figure's sentence must say it.
_UNIT_NAMED = re.compile(r"\bin (joules|watts|lines of code|gigabytes|megabytes|terabytes|flops|tokens|words|"
                         r"parameters)\b", re.I)
#: "What fraction of heads …": a share, in per cent.
_SHARE_ASKED = re.compile(r"\b(?:what|which)\s+(?:share|percent\w*|fraction|proportion)\b", re.I)
SHARE = re.compile(r"%")
#: A variant a figure question asks about: "the 4B model", "top-5 accuracy", "8192-length sequences",
#: "4-bit"; the figure's sentence must name it.
_VARIANT = re.compile(r"(?<![\w.-])(?:\d+(?:\.\d+)?[BMK]|top-\d+|\d+-(?:bits?|length|shots?|layers?|tokens?|way))"
                      r"(?![\w-])", re.I)
#: "How long did the search take", "how long did training take": a duration in minutes or more,
#: not the "75.2%" or the "78ms" latency of the same sentence.
_HOW_LONG = re.compile(r"\bhow long\b(?=.*\b(?:train\w*|pre-?train\w*|fine-?tun\w*|search\w*)\b)", re.I)
DURATION = re.compile(r"hours?|minutes?|days?|weeks?|months?")
#: The unit a question implies for its figure: (what the question says, the unit of the figure).
_UNITS_ASKED = [
    (re.compile(r"\b(?:share|percent\w*|fraction|proportion|accuracy|rate)\b", re.I), re.compile(r"%")),
    (re.compile(r"\b(?:faster|speed-?ups?|times)\b", re.I), TIMES),
    (re.compile(r"\bhow fast\b|\b(?:generation|decoding|inference) (?:rate|speed)\b|\btokens? per second\b", re.I),
     re.compile(RATE)),
    (_HOW_LONG, DURATION),
]


def units_asked(question: str) -> list[re.Pattern[str]]:
    """The units of the figure the question implies, the most specific last ("what generation rate"
    is a rate before a %)."""
    return [unit for asked, unit in _UNITS_ASKED if asked.search(question)]


#: A number on its own: not part of a name ("LLaMA-2", "H_2", "A100") nor a year.
STANDALONE_NUMBER = re.compile(r"(?<![\w.-])(?!(?:19|20)\d\d\b)\d+(?:[.,]\d+)*[KMB]?(?![\w-]*[A-Za-z_])")

@dataclass
class Candidate:
    """A sentence of a source with its relevance to the question."""

    source: Source
    rank: int
    text: str
    score: float = 0.0
    cosine: float = 0.0
    coverage: float = 0.0


#: The features, in model order, with what each measures (stored with the fitted model).
FEATURES = {
    "dense_top": "cosine of the question to the best chunk of the top-ranked paper",
    "dense_margin": "dense_top minus the best cosine of any other retrieved paper (0 for a list question: "
                    "it expects several papers, not one clear winner)",
    "coverage_top": "IDF-weighted share of the question's content terms found in the top paper (title + passage)",
    "coverage_margin": "coverage_top minus the best coverage of any other retrieved paper (0 for a list "
                       "question)",
    "best_sentence": "score of the best sentence (cosine + 0.5 x term coverage - rank penalty)",
    "best_cosine": "cosine of the question to the best sentence",
    "rest_coverage_top": "coverage_top over the terms that are neither named things nor question frames "
                         "('problem', 'solve', 'work', ...); 1 when there are none",
    "named": "1 if the question names something (name-shaped word, the X of 'what is X', or in a question typed "
             "in lower case a word the sources write as a name: 'splitwise')",
    "named_missing": "1 if a named thing is in no retrieved paper (title or passage) and its terms are not "
                     "all in the collection's vocabulary either: something the collection never mentions",
    "version_missing": "1 if a named thing with a version (digits or '+': 'ShadowKV-3') is in no retrieved paper",
    "named_in_top": "share of named things the top paper mentions",
    "asks_attribute": "1 if the question asks for an attribute ('how many annotators', 'which license')",
    "attribute_missing": "1 if it does and no retrieved sentence or title contains the asked word",
    "value_unstated": "1 if the question asks for a value (a figure, a count, an attribute, or a kind of value: "
                      "a GPU or phone model, a licence, people, a date) and no sentence of the papers that mention "
                      "most of its named things (the two best papers when it names none) states it: the asked "
                      "words with a figure near them, a number before what is counted, a value of the kind",
    "wants_figure": "1 if the question asks for a figure ('how many', 'by how much', 'what speedup')",
    "figure_missing": "1 if it does and no sentence of the two best papers states a figure",
    "question_terms": "log(1 + number of content terms in the question)",
    "asks_list": "1 if the question asks for several papers ('which papers …', 'papers on …')",
    "covering_share": "share of the retrieved papers whose title + passage hold at least half of the "
                      "question's IDF-weighted content terms",
    "rest_in_sentence": "IDF-weighted share of the question's terms that are neither named things nor "
                        "question frames found together in one sentence of the top paper; 1 when there are none",
    "rest_in_figure_sentence": "for a question asking for a figure, the same share over the sentences of the "
                               "two best papers that state a number on its own or a measurement ('100x'); "
                               "1 for other questions",
}


@dataclass
class Evidence:
    """What the assessor found for one question: scored sentences, features, confidence."""

    candidates: list[Candidate]
    features: dict[str, float]
    confidence: float
    answerable: bool
    relevance: dict[int, float] = field(default_factory=dict)


@dataclass
class ConfidenceModel:
    """A logistic model over standardised features, caps and the refusal threshold chosen on dev.

    A cap is for a yes/no feature that, when it fires, settles the question almost alone: the
    probability is then at most the share of train questions with the feature that the evidence
    answered. A linear model cannot do this: "What GPU model was MobileSAM trained on?" matches its
    paper on every other feature, which outweighs the one that says the value is not there."""

    version: int
    features: list[str]
    mean: list[float]
    scale: list[float]
    weights: list[float]
    bias: float
    threshold: float
    caps: dict[str, float] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path = MODEL_FILE) -> ConfidenceModel:
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(data["version"], [f["name"] for f in data["features"]], data["mean"], data["scale"],
                   data["weights"], data["bias"], data["threshold"], data["caps"])

    def probability(self, features: dict[str, float]) -> float:
        """P(the evidence answers the question) for one feature dict."""
        x = np.array([features[name] for name in self.features], dtype=np.float64)
        z = float(((x - np.array(self.mean)) / np.array(self.scale)) @ np.array(self.weights) + self.bias)
        p = 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))
        return min([p, *(cap for name, cap in self.caps.items() if features[name] >= 0.5)])


class Vocabulary(Protocol):
    """What the assessor needs to know of the collection's terms (the keyword index has it)."""

    def idf(self, term: str) -> float: ...

    def knows(self, term: str) -> bool: ...


class EvidenceAssessor:
    """Scores the sentences of the retrieved sources and decides how likely they answer.

    Thread-safe; remembers the last few assessments so the pipeline and the answerer share one.
    """

    def __init__(self, encode: Encode, vocabulary: Callable[[], Vocabulary],
                 model: ConfidenceModel | None = None) -> None:
        self.encode = encode
        self.vocabulary = vocabulary  # a callable: the keyword index is reloaded when the store changes
        self._model = model
        self._cache: OrderedDict[tuple, Evidence] = OrderedDict()
        self._lock = threading.Lock()

    @cached_property
    def model(self) -> ConfidenceModel:
        return self._model or ConfidenceModel.load()

    def assess(self, question: str, sources: list[Source]) -> Evidence:
        """The evidence for a question over these sources (cached by question and passages)."""
        key = (question, tuple((s.n, s.paper_id, s.text) for s in sources))
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        candidates, relevance = self.score_sentences(question, sources)
        values = self.features(question, sources, candidates)
        confidence = self.model.probability(values) if sources else 0.0
        evidence = Evidence(candidates, values, round(confidence, 4),
                            bool(sources) and confidence >= self.model.threshold, relevance)
        with self._lock:
            self._cache[key] = evidence
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return evidence

    def term_weights(self, question: str) -> dict[str, float]:
        """The IDF of each content term of the question: what coverage shares are weighted by. Words
        that say something is absent are left out, as abstracts say it many ways ("without
        compromising quality", "lossless"): what is absent stays. For a method that needs no training
        ("without retraining") the words give way to `NO_TRAINING_TERM`, the phrasings' common term."""
        vocabulary = self.vocabulary()
        weights = {t: vocabulary.idf(t) for t in set(terms(question)) if t not in _ABSENCE}
        no_training = NO_TRAINING.search(question)
        if no_training:  # "without retraining" asks for any way of saying it, not for the word "retraining"
            said = [weights.pop(t) for t in set(terms(no_training.group())) - {NO_TRAINING_TERM} if t in weights]
            weights[NO_TRAINING_TERM] = max([weights[NO_TRAINING_TERM], *said])
        return weights

    def coverage(self, question: str, text: str) -> float:
        """IDF-weighted share of the question's content terms that `text` contains."""
        return _share(self.term_weights(question), set(terms(text)))

    def score_sentences(self, question: str, sources: list[Source]) -> tuple[list[Candidate], dict[int, float]]:
        """Candidate sentences, best first, and each source's best score.

        Score = cosine(question, sentence) + 0.5 x IDF-weighted share of question terms in the
        sentence and its title (links left out) - 0.04 x the paper's rank (- 0.1 for background
        sentences); only the best few sentences per source by term coverage are embedded.
        """
        candidates = [Candidate(src, rank, sentence) for rank, src in enumerate(sources)
                      for sentence in split_sentences(src.text) if len(sentence.split()) >= MIN_SENTENCE_WORDS]
        if not candidates:
            return [], {}
        weights = self.term_weights(question)
        for cand in candidates:  # a link's words ("https://aka.ms/SCBench") say nothing the question asks
            cand.coverage = _share(weights, set(terms(LINK.sub(" ", cand.text))) | set(terms(cand.source.title)))
        figure = wants_figure(question)
        candidates.sort(key=lambda c: -(c.coverage + (FIGURE_BONUS if figure and has_figure(c.text) else 0.0)))
        kept: dict[int, int] = {}
        prefiltered = []
        for cand in candidates:
            if kept.get(cand.source.n, 0) < PREFILTER_PER_SOURCE:
                kept[cand.source.n] = kept.get(cand.source.n, 0) + 1
                prefiltered.append(cand)
        vectors = self.encode([question] + [c.text for c in prefiltered])
        for cand, vec in zip(prefiltered, vectors[1:]):
            cand.cosine = float(vec @ vectors[0])
            cand.score = cand.cosine + LEXICAL_WEIGHT * cand.coverage - RANK_PENALTY * cand.rank
            if BACKGROUND.match(cand.text):
                cand.score -= BACKGROUND_PENALTY
        prefiltered.sort(key=lambda c: -c.score)
        relevance: dict[int, float] = {}
        for cand in prefiltered:
            relevance.setdefault(cand.source.n, cand.score)
        return prefiltered, relevance

    def features(self, question: str, sources: list[Source], candidates: list[Candidate]) -> dict[str, float]:
        """The feature values of `FEATURES` for one question."""
        if not sources:
            return dict.fromkeys(FEATURES, 0.0)
        dense = [s.dense for s in sources]
        weights = self.term_weights(question)
        cover = [_share(weights, set(terms(f"{s.title} {s.text}"))) for s in sources]
        names = named_things(question) + typed_names(
            question, [s.title for s in sources], " ".join(f"{s.title} {s.text}" for s in sources))
        name_terms = {t for n in names for t in terms(n)}
        rest = [t for t in weights if t not in name_terms and t not in _FRAME_TERMS]
        vocabulary = self.vocabulary()
        found = [any(mentions(f"{s.title} {s.text}", n) for s in sources) for n in names]
        unknown = [not f and not (terms(n) and all(vocabulary.knows(t) for t in terms(n)))  # "пингвин": no terms
                   for n, f in zip(names, found)]
        top_text = f"{sources[0].title} {sources[0].text}"
        rest_weights = {t: weights[t] for t in rest}
        asked = asked_terms(question)
        figure = wants_figure(question)
        best_two = {s.n for s in sources[:2]}
        listing = asks_for_papers(question)
        return {
            "dense_top": dense[0],
            "dense_margin": 0.0 if listing else dense[0] - max(dense[1:], default=0.0),
            "coverage_top": cover[0],
            "coverage_margin": 0.0 if listing else cover[0] - max(cover[1:], default=0.0),
            "best_sentence": candidates[0].score if candidates else 0.0,
            "best_cosine": max((c.cosine for c in candidates), default=0.0),
            "rest_coverage_top": _share(rest_weights, set(terms(top_text))) if rest else 1.0,
            "named": float(bool(names)),
            "named_missing": float(any(unknown)),
            "version_missing": float(any(not f and VERSIONED.search(n) for n, f in zip(names, found))),
            "named_in_top": sum(mentions(top_text, n) for n in names) / len(names) if names else 0.0,
            "asks_attribute": float(bool(asked)),
            "attribute_missing": float(bool(asked) and not any(
                asked <= set(terms(c.text + " " + c.source.title)) for c in candidates)),
            "value_unstated": float(value_unstated(question, _subject(sources, names))),
            "wants_figure": float(figure),
            "figure_missing": float(figure and not any(
                has_figure(s) for src in sources if src.n in best_two for s in split_sentences(src.text))),
            "question_terms": math.log1p(len(terms(question))),
            "asks_list": float(listing),
            "covering_share": sum(c >= 0.5 for c in cover) / len(cover),
            "rest_in_sentence": _best_share(rest_weights, split_sentences(sources[0].text)) if rest else 1.0,
            "rest_in_figure_sentence": _best_share(rest_weights, [
                s for src in sources if src.n in best_two for s in split_sentences(src.text)
                if STANDALONE_NUMBER.search(s) or MEASUREMENT.search(s)]) if figure and rest else 1.0,
        }


def _subject(sources: list[Source], names: list[str]) -> list[Source]:
    """The papers a question is about: those mentioning most of its named things (none when no
    paper mentions any), the two best papers when it names nothing."""
    if not names:
        return sources[:2]
    mentioned = [sum(mentions(f"{s.title} {s.text}", n) for n in names) for s in sources]
    return [s for s, m in zip(sources, mentioned) if m and m == max(mentioned)]


def _best_share(weights: dict[str, float], sentences: list[str]) -> float:
    """The best `_share` of any one sentence (0 when there are none)."""
    return max((_share(weights, set(terms(s))) for s in sentences), default=0.0)


def _share(weights: dict[str, float], present: set[str]) -> float:
    """The weighted share of the terms in `weights` that are `present`."""
    return sum(w for t, w in weights.items() if t in present) / (sum(weights.values()) or 1.0)
