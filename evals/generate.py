"""Generate the eval suites from the corpus itself: `python evals/generate.py` (deterministic).

The hand-written sets (`evals/dev.jsonl`, `evals/test.jsonl`) were read and tuned on; these suites
are what keeps the answerer honest on questions nobody tuned for. From every bundled paper whose
title names a system ("NAME: subtitle") it writes:

- `topic`: every paper asked for by the topic its title states, without its system name.
- `describe`: every paper that says "we present X, a …" asked for by that description.
- `name`: the paper asked about by name in six everyday forms (short, lowercase, no question
  mark, "tell me about…", "what problem does … solve"); right = answered, citing the paper.
- `numeric`: a figure an abstract sentence states about the named system, asked for in the
  sentence's own words ("By how much does ShadowKV boost throughput?"); the figure is the keyword.
- `numeric-typed`: each of those typed into a search box ("by how much does shadowkv boost
  throughput"): the name has no capitals left to find it by.
- `near-miss`: unanswerable questions in the same forms: an attribute no abstract states
  (licence, authors, GPU count, training cost, code release date, learning rate) about a paper
  that IS in the collection, asked as written and as typed, and perturbed system names that are
  NOT in it ("ShadowKV-2").
- `claim`: every paper that says "We find / show / evaluate … that …" asked for by up to two such
  claims ("Which paper finds that …?"): a detail, not its headline.
- `query`: every paper that says "we present X, a …" searched for as typed into a search box: the
  first words of that description, lower case, without the name or a question.
- `list`: two- and three-word phrases of titles that 2 to 6 papers state ("kv cache"), asked as
  "Which papers are about …?"; every paper stating it is gold. Kept only when all are in one split.
- `near-miss` also asks about well-known systems the collection never mentions ("What is Jamba?").
- `off-topic`: questions about something else entirely.

Papers are split train / dev / test: gold papers of the hand-written test set go to test, those
of the hand-written dev set to dev, the rest by a hash of the paper id (80 / 10 / 10). Anything
learned (the refusal model) is fit on train, thresholds are chosen on dev, test is reported once.
Output: `evals/generated/{train,dev,test}.jsonl` in the eval-set format, plus a `suite` field.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from assistant.corpus.parse import load_corpus, normalize_title  # noqa: E402
from assistant.models import Paper  # noqa: E402
from assistant.text import numbers, split_sentences, system_name, terms  # noqa: E402

OUT = HERE / "generated"
SPLITS = ("train", "dev", "test")

#: Questions about a paper's topic in its title's words (no system name): papers of every kind.
TOPIC_FORMS = ("Which paper is about {topic}?", "papers on {topic}", "anything on {topic}?")
NAME_FORMS = (
    "What is {name}?",
    "what does {name} do",
    "{name}?",
    "tell me about {name}",
    "What problem does {name} solve?",
    "how does {name} work",
)
#: (question, words that would make the abstract state it: such papers get no question of this kind)
ATTRIBUTES = (
    ("What licence is {name} released under?", r"licen[cs]e"),
    ("Who are the authors of {name}?", r"\bauthors?\b"),
    ("How many GPUs were used to train {name}?", r"\bGPUs?\b"),
    ("How much did it cost to train {name}?", r"\bcost|\$|dollar"),
    ("When was the code for {name} released?", r"releas|available|github|open.?source"),
    ("What learning rate does {name} use?", r"learning.rate"),
)
OFF_TOPIC = (
    "What is a good sourdough recipe?", "how do i renew my passport", "Who won the 2018 FIFA World Cup?",
    "best pizza in naples", "What is the capital of Canada?", "how tall is mount everest",
    "Can you recommend a good running shoe?", "What year did the Berlin Wall fall?",
    "how to get red wine out of a carpet", "What is the boiling point of water at sea level?",
    "tips for growing tomatoes on a balcony", "Who painted the Mona Lisa?", "how do I change a flat tire",
    "What's the weather like in Lisbon in May?", "how many calories are in a banana",
    "Which planet has the most moons?", "what is the plot of Hamlet", "How do I knit a scarf?",
    "best time to visit japan", "What is the population of Brazil?", "how do vaccines work",
    "Who wrote Pride and Prejudice?", "how to train a puppy to sit", "What is the speed of sound in air?",
    "recommend a board game for four players", "How long should I boil an egg?",
    "what causes the northern lights", "How do I file my taxes?", "what's a good name for a cat",
    "Which country has the longest coastline?", "How do I make cold brew coffee?",
    "who invented the telephone", "What is the tallest building in the world?", "how to fix a leaky faucet",
    "What is the rule of offside in football?", "how do i bake chocolate chip cookies",
    "What is the currency of Switzerland?", "when is the next solar eclipse", "How do bees make honey?",
    "what should i pack for a beach holiday",
)
#: Well-known systems and models; those the collection never mentions make near-miss name questions.
OUTSIDE_NAMES = (
    "Jamba", "AlphaFold", "Whisper", "DALL-E", "Chinchilla", "Gopher", "PaLM", "Claude", "Gemini Ultra",
    "Stable Diffusion", "Midjourney", "AlphaGo", "MuZero", "Codex", "Copilot", "Perceiver", "Flamingo",
    "Gato", "Sparrow", "LaMDA", "Megatron-Turing", "BLOOM", "Galactica", "Vicuna", "Alpaca", "Orca",
    "Zephyr", "Phi-1", "StarCoder", "SantaCoder", "WizardLM", "Falcon-180B", "Grok", "Sora", "Imagen",
    "Parti", "Muse", "AudioLM", "MusicGen", "Segment Anything 2", "RETRO", "Toolformer", "ReAct",
    "Reflexion", "Voyager", "AutoGPT", "BabyAGI", "LangChain", "DeepSpeed-MII", "TensorRT-LLM", "vLLM-X",
)
#: "Which papers …?" forms for a topic several titles share.
LIST_FORMS = ("Which papers are about {topic}?", "papers on {topic}?", "any work on {topic}")
#: "We <verb> …" sentences become "Which paper <verb>s …?" (a paper asked for by one of its claims).
_WE_CLAIM = re.compile(r"^(?:We|Here,? we|In this (?:paper|work),? we)\s+(?P<verb>[a-z]+)\s+(?P<rest>.{20,})$")
_CLAIM_VERBS = frozenset("find show demonstrate observe reveal argue identify analyze analyse study investigate "
                         "evaluate explore examine formulate derive prove establish discover leverage exploit "
                         "design train build construct release collect curate adopt apply extend "
                         "conduct".split())
CLAIMS_PER_PAPER = 2
#: Words a search query leaves out.
_HYPE = frozenset("novel new simple effective efficient general generic unified powerful scalable "
                  "lightweight innovative principled comprehensive".split())
#: "NAME: subtitle" heads that are phrases, not system names, are left out by these words.
_PHRASE_WORD = re.compile(r"^(?:a|an|the|to|with|is|are|of|for|in|on|and|or|how|what|why|when|beyond|towards?)$", re.I)
_UNIT = r"(?:\s?(?:×|x|%|times)(?![A-Za-z]))"
_FIGURE = rf"((?<![\d.,])(?:\d{{1,3}}(?:,\d{{3}})+|\d+(?:\.\d+)?){_UNIT})"
#: "<verb>s <object> by (up to) <figure>" → "By how much does NAME <verb> <object>?"
_BY = re.compile(rf"\b(boost|reduc|improv|accelerat|speed|cut|lower|increas|decreas|compress|outperform|"
                 rf"surpass|shrink|enhanc|rais|lift|exceed|beat)(\w*)\s+((?:[\w-]+\s+){{0,4}}?)by\s+"
                 rf"(?:up to |over |more than |about |approximately |around |nearly |an average of |average )?"
                 rf"{_FIGURE}", re.I)
#: "<figure> <comparative or measure>" → "How much <word> is NAME?" / "What <word> does NAME achieve?"
_COMPARATIVE = re.compile(rf"{_FIGURE}\s+(faster|higher|lower|fewer|less|more|smaller|larger|cheaper)\b"
                          rf"(\s+[a-z-]+)?", re.I)
_MEASURE = re.compile(rf"{_FIGURE}\s+(speedup|speed-up|acceleration|reduction|improvement|compression|"
                      rf"increase|gain|throughput)\b", re.I)
_VERB_BASE = {"reduc": "reduce", "improv": "improve", "accelerat": "accelerate", "increas": "increase",
              "decreas": "decrease", "compress": "compress", "surpass": "surpass", "enhanc": "enhance",
              "rais": "raise", "speed": "speed up", "exceed": "exceed"}
#: What a comparative may measure ("3x higher throughput"); other words after it are modifiers.
_MEASURE_NOUNS = frozenset("throughput accuracy cost costs latency memory speed quality efficiency energy "
                           "requests perplexity error bandwidth power".split())


def named_system(title: str) -> str | None:
    """The system a title names ("ShadowKV: KV Cache in Shadows…" → "ShadowKV"); None when the
    head before the colon is a phrase ("Hopping Too Late: …") rather than a name."""
    name = system_name(title)
    words = name.split() if name else []
    if name is None or any(_PHRASE_WORD.match(w) for w in words):
        return None
    if len(words) == 1:
        return name
    looks_named = any(re.search(r"[A-Z].*[A-Z]|\d|[-+]", w[1:] if w[:1].isupper() else w) for w in words)
    return name if looks_named else None


def split_of(paper: Paper, test_gold: set[str], dev_gold: set[str]) -> str:
    """Where a paper's questions go: the hand-written sets' choice first, else a stable hash."""
    key = normalize_title(paper.title)
    if key in test_gold:
        return "test"
    if key in dev_gold:
        return "dev"
    bucket = _hash(paper.paper_id) % 10
    return "train" if bucket < 8 else "dev" if bucket < 9 else "test"


def _gold_titles(path: Path) -> set[str]:
    if not path.exists():
        return set()
    return {normalize_title(t) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
            for t in json.loads(line)["gold_titles"]}


def _question(qid: str, suite: str, kind: str, question: str, gold: list[str], keywords: list[str]) -> dict:
    return {"id": qid, "kind": kind, "question": question, "gold_titles": gold, "answer_keywords": keywords,
            "suite": suite}


def name_questions(paper: Paper, name: str) -> Iterator[tuple[str, list[str]]]:
    """The paper asked about by name: (question, keywords)."""
    for form in NAME_FORMS:
        text = form.format(name=name)
        yield (text.lower() if form[0].islower() else text), []


def topic_questions(paper: Paper) -> Iterator[tuple[str, list[str]]]:
    """The paper asked for by its title's topic (the subtitle when the title names a system)."""
    _, sep, tail = paper.title.partition(":")
    topic = (tail if sep and named_system(paper.title) else paper.title).strip().rstrip("?.!")
    if len(topic.split()) < 3:
        return
    form = TOPIC_FORMS[_pick(TOPIC_FORMS, paper.paper_id)]
    yield form.format(topic=topic[0].lower() + topic[1:]), []


_INTRODUCES = re.compile(r"\b(?:we|this paper|this work)\s+(present|propose|introduce|develop|design)s?\s+"
                         r"(?P<name>[^,.;]{1,60}?),\s+(?P<what>(?:a|an)\s+[^.;]{10,200})", re.I)


def describe_questions(paper: Paper) -> Iterator[tuple[str, list[str]]]:
    """The paper asked for by what it says it introduces, without its name ("Which paper
    presents a novel framework for …?")."""
    for sentence in split_sentences(paper.abstract):
        match = _INTRODUCES.search(sentence)
        if match:
            what = " ".join(match.group("what").split()[:20]).rstrip(",:;")
            yield f"Which paper {match.group(1).lower()}s {what}?", []
            return


def claim_questions(paper: Paper) -> Iterator[tuple[str, list[str]]]:
    """The paper asked for by one claim it makes in the middle of its abstract ("We find that …" →
    "Which paper finds that …?"): worded as the paper words it, but not its headline."""
    claims = [m for m in (_WE_CLAIM.match(s) for s in split_sentences(paper.abstract))
              if m and m.group("verb") in _CLAIM_VERBS and len(terms(_claim_words(m.group("rest")))) >= 6]
    start = _pick(claims, paper.paper_id + "claim") if claims else 0
    for claim in (claims[start:] + claims[:start])[:CLAIMS_PER_PAPER]:
        verb = claim.group("verb")
        verb = (verb[:-1] + "ies" if re.search(r"[^aeiou]y$", verb)
                else verb + "es" if verb.endswith(("s", "sh", "ch", "x")) else verb + "s")
        yield f"Which paper {verb} {_claim_words(claim.group('rest'))}?", []


def query_questions(paper: Paper) -> Iterator[tuple[str, list[str]]]:
    """The paper searched for as people type into a search box: the first words of what it says it
    introduces, lower case, no name and no question ("system that accelerates long-sequence llm …")."""
    for sentence in split_sentences(paper.abstract):
        match = _INTRODUCES.search(sentence)
        if match:
            words = [w.rstrip(",:;") for w in match.group("what").split()[1:] if w.casefold() not in _HYPE][:10]
            while words and not terms(words[-1]):
                words.pop()
            query = " ".join(words).casefold()
            if len(terms(query)) >= 4:
                yield query, []
            return


def _claim_words(rest: str) -> str:
    """A claim's first words, cut where a word ends the phrase, in the third person ("our" → "its")."""
    words = re.sub(r"\b(?:our|Our)\b", "its", rest).split()[:18]
    while words and (not terms(words[-1]) or words[-1].casefold() in {"its", "their", "this", "these"}):
        words.pop()
    return " ".join(words).rstrip(".,;:")


def shared_topics(papers: list[Paper]) -> dict[str, list[Paper]]:
    """Two- and three-word phrases of titles, beginning and ending with a content word, that 2 to 6
    papers state in their title or abstract ("kv cache", "speculative decoding"): topics with
    several papers, each of them gold."""
    phrases: set[str] = set()
    for paper in papers:
        words = re.findall(r"[a-z0-9][a-z0-9-]*", paper.title.casefold())
        for size in (2, 3):
            for i in range(len(words) - size + 1):
                gram = words[i:i + size]
                if all(terms(w) for w in (gram[0], gram[-1])) and not any(w.isdigit() for w in gram):
                    phrases.add(" ".join(gram))
    texts = {p.paper_id: " ".join(re.findall(r"[a-z0-9][a-z0-9-]*", f"{p.title} {p.abstract}".casefold()))
             for p in papers}
    topics = {}
    for phrase in sorted(phrases):
        members = [p for p in papers if f" {phrase} " in f" {texts[p.paper_id]} "]
        if 2 <= len(members) <= 6:
            topics[phrase] = members
    return topics


def numeric_questions(paper: Paper, name: str) -> Iterator[tuple[str, list[str]]]:
    """Figures the abstract states about the system, each asked for in the sentence's words.

    Only figures written once in the abstract are used, so the keyword identifies one claim, and a
    question that two figures would answer is left out.
    """
    abstract = paper.abstract
    counts: dict[str, int] = {}
    for n in numbers(abstract):
        counts[n] = counts.get(n, 0) + 1
    found: dict[str, list[str]] = {}
    for sentence in split_sentences(abstract):
        if name.casefold() not in sentence.casefold() and not re.search(r"\b(?:we|our|it)\b", sentence, re.I):
            continue
        for question, figure in _figure_questions(sentence, name):
            norm = next(iter(numbers(figure)), None)
            if norm is not None and abstract.count(figure) == 1 and counts.get(norm, 0) == 1:
                found.setdefault(question, []).append(figure)
    for question, figures in found.items():
        if len(set(figures)) == 1:  # one question asking for two different figures has no single answer
            yield question, figures[:1]


def _figure_questions(sentence: str, name: str) -> Iterator[tuple[str, str]]:
    for m in _BY.finditer(sentence):
        stem, obj, figure = m.group(1).lower(), m.group(3).strip(), m.group(4).strip()
        verb = _VERB_BASE.get(stem, stem)
        if verb == "speed up":
            obj = re.sub(r"^up\b\s*", "", obj)
        if re.search(r"\d|,|\b(?:and|or|the|a|an)$", obj):
            continue
        yield f"By how much does {name} {verb}{' ' + obj if obj else ''}?", figure
    for m in _COMPARATIVE.finditer(sentence):
        word, what = m.group(2).lower(), (m.group(3) or "").strip()
        if word == "faster":
            yield f"How much faster is {name}?", m.group(1).strip()
        elif what in _MEASURE_NOUNS:
            yield f"How much {word} {what} does {name} give?", m.group(1).strip()
    for m in _MEASURE.finditer(sentence):
        yield f"What {m.group(2).lower()} does {name} achieve?", m.group(1).strip()


def typed(question: str) -> str:
    """The question as people type it into a search box: lower case, no question mark ("how much
    faster is llmcompiler"). Names then carry no capitals, so the answerer must find them anyway."""
    return question.lower().rstrip("?")


def perturbed(name: str, taken: str) -> str | None:
    """A name that looks like a version or sibling of `name` but occurs nowhere in the collection."""
    digits = re.search(r"\d+(?!.*\d)", name)
    candidates = []
    if digits:
        value = int(digits.group())
        candidates.append(name[: digits.start()] + str(value + 2) + name[digits.end():])
    candidates += [f"{name}-3", f"{name}++" if not name.endswith("+") else f"{name}-Pro", f"{name} Pro"]
    for candidate in candidates:
        if candidate.casefold() not in taken:
            return candidate
    return None


def _hash(key: str) -> int:
    """A stable hash (Python's own changes between runs): splits and choices stay the same."""
    return int(hashlib.sha1(key.encode()).hexdigest(), 16)


def _pick(seq: tuple | list, key: str) -> int:
    return _hash(key) % len(seq)


def near_miss_questions(paper: Paper, name: str, taken: str) -> Iterator[str]:
    """An attribute no abstract states about this paper, and a perturbed name of its system."""
    eligible = [q for q, stated in ATTRIBUTES if not re.search(stated, paper.abstract, re.I)]
    if eligible:
        question = eligible[_pick(eligible, paper.paper_id)].format(name=name)
        yield question
        yield typed(question)
    other = perturbed(name, taken)
    if other:
        form = NAME_FORMS[_pick(NAME_FORMS, other)]
        text = form.format(name=other)
        yield text.lower() if form[0].islower() else text


def generate(papers: list[Paper], test_gold: set[str], dev_gold: set[str]) -> dict[str, list[dict]]:
    """All generated questions by split, in a stable order."""
    taken = " ".join(f"{p.title} {p.abstract}" for p in papers).casefold()
    out: dict[str, list[dict]] = {s: [] for s in SPLITS}
    counters: dict[tuple[str, str], int] = {}

    def add(split: str, suite: str, kind: str, question: str, gold: list[str], keywords: list[str]) -> None:
        counters[split, suite] = counters.get((split, suite), 0) + 1
        qid = f"gen-{split}-{suite}-{counters[split, suite]:04d}"
        out[split].append(_question(qid, suite, kind, question, gold, keywords))

    for paper in sorted(papers, key=lambda p: p.paper_id):
        split = split_of(paper, test_gold, dev_gold)
        for question, keywords in topic_questions(paper):
            add(split, "topic", "single", question, [paper.title], keywords)
        for question, keywords in describe_questions(paper):
            add(split, "describe", "single", question, [paper.title], keywords)
        for question, keywords in claim_questions(paper):
            add(split, "claim", "single", question, [paper.title], keywords)
        for question, keywords in query_questions(paper):
            add(split, "query", "single", question, [paper.title], keywords)
        name = named_system(paper.title)
        if name is None:
            continue
        for question, keywords in name_questions(paper, name):
            add(split, "name", "single", question, [paper.title], keywords)
        for question, keywords in numeric_questions(paper, name):
            add(split, "numeric", "numeric", question, [paper.title], keywords)
            add(split, "numeric-typed", "numeric", typed(question), [paper.title], keywords)
        for question in near_miss_questions(paper, name, taken):
            add(split, "near-miss", "unanswerable", question, [], [])
    for topic, members in shared_topics(papers).items():
        splits = {split_of(p, test_gold, dev_gold) for p in members}
        if len(splits) == 1:  # a question may not lean on papers of another split
            question = LIST_FORMS[_pick(LIST_FORMS, topic)].format(topic=topic)
            add(splits.pop(), "list", "multi", question, sorted(p.title for p in members), [])
    for name in OUTSIDE_NAMES:
        if name.casefold() not in taken:
            bucket = _hash(name) % 10
            form = NAME_FORMS[_pick(NAME_FORMS, name)]
            question = form.format(name=name)
            add("train" if bucket < 6 else "dev" if bucket < 8 else "test", "near-miss", "unanswerable",
                question.lower() if form[0].islower() else question, [], [])
    for question in OFF_TOPIC:
        bucket = _hash(question) % 10
        add("train" if bucket < 6 else "dev" if bucket < 8 else "test", "off-topic", "unanswerable", question, [], [])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"folder for the split files (default {OUT})")
    out = parser.parse_args(argv).out
    papers = load_corpus().papers
    suites = generate(papers, _gold_titles(HERE / "test.jsonl"), _gold_titles(HERE / "dev.jsonl"))
    out.mkdir(parents=True, exist_ok=True)
    for split, questions in suites.items():
        path = out / f"{split}.jsonl"
        path.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in questions), encoding="utf-8")
        by_suite: dict[str, int] = {}
        for q in questions:
            by_suite[q["suite"]] = by_suite.get(q["suite"], 0) + 1
        print(f"{path}: {len(questions)} questions " + ", ".join(f"{k} {v}" for k, v in sorted(by_suite.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
