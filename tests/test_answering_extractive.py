"""The extractive answerer and its evidence assessor on the real corpus and model: answers that lead
with what was asked, quotes that stay verbatim, refusals decided by the confidence model."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from assistant import Answer, Assistant
from assistant.answering.citations import MARKER, REFUSAL
from assistant.answering.evidence import (
    FEATURES,
    MODEL_FILE,
    ConfidenceModel,
    asked_terms,
    counted_terms,
    value_unstated,
    wants_figure,
)
from assistant.answering.extractive import paper_name, question_kind
from assistant.corpus.parse import load_corpus
from assistant.models import Source
from assistant.text import NO_TRAINING_TERM, mentions, named_things, names_system_of, terms, typed_names, words

ROOT = Path(__file__).resolve().parents[1]
TRANSMLA = "TransMLA: Multi-head Latent Attention Is All You Need"
MEDUSA = "Medusa: Simple LLM Inference Acceleration Framework with Multiple Decoding Heads"


def _quoted_spans_are_verbatim(answer: Answer) -> None:
    """Every sentence, minus our lead-in ('"Title" [n]:', 'NAME is', 'figure [n]:'), is in its source."""
    by_n = {s.n: " ".join(s.text.split()) for s in answer.sources}
    for sentence in answer.sentences:
        assert sentence.cites, sentence.text
        body = re.sub(r'^"[^"]+"\s*:?\s*', "", MARKER.sub("", sentence.text).strip()).rstrip(" .")
        tails = [body, body.partition(":")[2].strip(), body.partition(" is ")[2].strip()]
        assert any(len(t) > 20 and any(t in by_n[n] for n in sentence.cites) for t in tails), sentence.text


@pytest.mark.parametrize("question", ["What does TransMLA do?", "transmla?", "tell me about TransMLA",
                                      "how does transmla work", "whats new in transmla"])
def test_a_named_system_is_answered_from_its_paper(assistant: Assistant, question: str) -> None:
    answer = assistant.answer(question)
    assert not answer.refused and answer.grounded
    assert {c.title for c in answer.citations} == {TRANSMLA}
    assert answer.confidence >= ConfidenceModel.load().threshold
    _quoted_spans_are_verbatim(answer)


def test_what_is_x_leads_with_the_papers_own_definition(assistant: Assistant) -> None:
    answer = assistant.answer("What is Medusa?")
    first_line = answer.text.splitlines()[0]
    assert first_line.startswith("Medusa is an efficient method that augments LLM inference")
    assert first_line.endswith("[1].") and answer.citations[0].title == MEDUSA
    _quoted_spans_are_verbatim(answer)


def test_an_overview_leads_with_the_sentence_that_introduces_the_system(assistant: Assistant) -> None:
    """"we proposed EnergonAI …" (past tense) is the introduction, not "we propose three techniques"."""
    answer = assistant.answer("what is energonai")
    assert answer.text.startswith("In this paper, we proposed EnergonAI to solve the challenges")
    assert answer.text.count("non-blocking pipeline parallelism") <= 1
    _quoted_spans_are_verbatim(answer)


def test_what_problem_leads_with_the_problem_the_paper_states(assistant: Assistant) -> None:
    answer = assistant.answer("what problem does minicache solve")
    assert answer.text.startswith("However, the size of the KV cache grows linearly with sequence length, posing "
                                  "challenges")
    assert "we present a simple yet effective approach, called MiniCache" in answer.text.split("\n")[0]
    _quoted_spans_are_verbatim(answer)
    coined = assistant.answer("what problem does smartspec solve").text  # a name only the abstract gives
    assert coined.startswith("Yet, deploying SD in real online LLM serving systems")
    overview = assistant.answer("What is MiniCache?").text
    assert not overview.startswith("However") and "called MiniCache" in overview.split(" [1]")[0]


def test_how_a_named_system_works_is_quoted_from_where_the_paper_introduces_it(assistant: Assistant) -> None:
    """The sentences before "we introduce X" describe the field and its problem, not how X works."""
    answer = assistant.answer("tidaldecode how does it work")
    source = answer.sources[0].text
    quoted = answer.text.split("\n\n")[1]
    assert "introduces a few token selection layers" in quoted
    assert "Large language models (LLMs) have driven" not in answer.text
    assert "Large language models (LLMs) have driven" in source  # the scene-setting sentence was there
    _quoted_spans_are_verbatim(answer)


def test_how_a_named_system_does_something_quotes_its_steps(assistant: Assistant) -> None:
    """GEAR's abstract tells its recipe in the sentences after the intro: "first applies quantization
    …", "It then employs a low rank matrix …" (the second would not be quoted by score alone)."""
    answer = assistant.answer("how does gear compress the kv cache")
    quoted = answer.text.split("\n\n")[1]
    assert "GEAR first applies quantization" in quoted and "low rank matrix" in quoted
    _quoted_spans_are_verbatim(answer)


def test_what_problem_quotes_the_problem_stated_after_an_opening_intro(assistant: Assistant) -> None:
    """DistServe's abstract opens with the system, then says what goes wrong in existing systems."""
    answer = assistant.answer("What problem does DistServe solve?")
    lead = answer.text.split("\n\n")[0]
    assert lead.startswith("DistServe improves the performance") and "Existing LLM serving systems colocate" in lead
    _quoted_spans_are_verbatim(answer)


def test_how_much_leads_with_the_figure_the_question_asks_about(assistant: Assistant) -> None:
    answer = assistant.answer("How much does ShadowKV improve throughput?")
    figure, _, quote = answer.text.partition(":")
    assert "3.04" in figure and "6" not in figure  # the throughput figure, not the batch-size one
    assert "3.04" in quote
    _quoted_spans_are_verbatim(answer)


def test_an_overview_quotes_no_code_link_as_a_result(assistant: Assistant) -> None:
    """"Our code is publicly available at https://github.com/Zoeyyao27/SirLLM" has digits, but no result."""
    answer = assistant.answer("what does SirLLM do")
    assert answer.citations[0].title.startswith("SirLLM") and "Token Entropy" in answer.text
    assert "github.com" not in answer.text


def test_which_papers_gives_one_line_per_paper(assistant: Assistant) -> None:
    answer = assistant.answer("Which papers accelerate LLM decoding with speculative decoding?")
    lines = answer.text.splitlines()
    assert len(lines) >= 2 and all(line.startswith("- ") for line in lines)
    cited_per_line = [set(map(int, re.findall(r"\[(\d+)\]", line))) for line in lines]
    assert all(len(c) == 1 for c in cited_per_line) and len(set.union(*cited_per_line)) == len(lines)


def test_papers_whose_titles_say_the_topic_come_first(assistant: Assistant) -> None:
    """Both rankings are weak for "segment anything" (BM25 finds the titles, dense finds nothing):
    rank fusion alone put DefAn first; the titles that say the whole topic now lead."""
    answer = assistant.answer("Which papers are about segment anything?")
    assert not answer.refused
    assert {s.title.split(":")[0] for s in answer.sources[:2]} == {"Faster Segment Anything",
                                                                  "0.1% Data Makes Segment Anything Slim"}
    assert {c.title for c in answer.citations} == {s.title for s in answer.sources[:2]}


@pytest.mark.parametrize("question", ["what does transmla-3 do", "What is ShadowKV-3?", "Quamba4?",
                                      "How does SAM 2 handle video segmentation?",
                                      "What is a good sourdough recipe?"])
def test_unknown_names_and_off_topic_are_refused_with_low_confidence(assistant: Assistant, question: str) -> None:
    answer = assistant.answer(question)
    assert answer.refused and answer.text == REFUSAL and not answer.grounded
    assert answer.confidence < ConfidenceModel.load().threshold
    assert answer.to_dict()["confidence"] == answer.confidence and answer.to_dict()["grounded"] is False


@pytest.mark.parametrize("question", ["Which smartphone models was PowerInfer-2 evaluated on?",
                                      "Which GPU model was DistServe evaluated on?",
                                      "how many gpus did nanoflow use in its evaluation",
                                      "what size llm powers codecompose"])
def test_a_value_the_paper_does_not_state_is_refused(assistant: Assistant, question: str) -> None:
    """The paper is right there and matches on every other feature; the value asked for is not in it."""
    answer = assistant.answer(question)
    assert answer.refused and answer.confidence <= round(ConfidenceModel.load().caps["value_unstated"], 4)


@pytest.mark.parametrize(("question", "quoted"), [("what gpu does shadowkv run on", "A100"),
                                                  ("which llms was minicache evaluated on", "LLaMA-2")])
def test_a_value_the_paper_states_is_answered(assistant: Assistant, question: str, quoted: str) -> None:
    answer = assistant.answer(question)
    assert not answer.refused and quoted in answer.text
    _quoted_spans_are_verbatim(answer)


def _source(title_start: str) -> Source:
    paper = next(p for p in load_corpus().papers if p.title.startswith(title_start))
    return Source(1, paper.title, paper.paper_id, paper.abstract, 1.0, {})


@pytest.mark.parametrize(("question", "title_start", "unstated"), [
    ("Which GPU model was DistServe evaluated on?", "DistServe", True),
    ("what gpu does shadowkv run on", "ShadowKV", False),  # "on an A100 GPU"
    ("Which smartphone models was PowerInfer-2 evaluated on?", "PowerInfer-2", True),
    ("which 8 llms did scbench evaluate", "SCBench", True),  # "8 LLMs", none named
    ("which llms was minicache evaluated on", "MiniCache", False),  # "LLaMA-2, LLaMA-3, Phi-3, …"
    ("Under which licence is ShadowKV released?", "ShadowKV", True),
    ("who are the authors of shadowkv", "ShadowKV", True),
    ("how many gpus did nanoflow use", "NanoFlow", True),
    ("How much does ShadowKV improve throughput?", "ShadowKV", False),  # "by up to 3.04"
    ("What batch size does ShadowKV support?", "ShadowKV", False),  # "6times larger batch sizes"
    ("Which paper develops an LLM inference system with attention offloading?", "ShadowKV", False),  # a paper
    ("What is LLM Inference Unveiled?", "ShadowKV", False),  # asks for no value
    ("What top-5 accuracy does MnasNet get on ImageNet?", "MnasNet", True),  # it states top-1
    ("What top-1 accuracy does MnasNet get on ImageNet?", "MnasNet", False),
    ("How long did the MnasNet architecture search take?", "MnasNet", True),  # "78ms" is a latency
    ("What is the per-token energy use of mllm-NPU in joules?", "Empowering 1000", True),
    ("How much did it cost to train ShadowKV?", "ShadowKV", True),
])
def test_value_unstated(question: str, title_start: str, unstated: bool) -> None:
    assert value_unstated(question, [_source(title_start)]) is unstated


def test_what_a_question_counts_and_asks_for() -> None:
    assert counted_terms("How many public datasets was Tiny Time Mixers pre-trained on?") == set(terms("datasets"))
    assert counted_terms("how many bits per parameter does it use") == set(terms("bits"))
    assert counted_terms("nanoflow how many gpus") == set(terms("gpus"))
    assert counted_terms("What does NanoFlow do?") == set()
    assert counted_terms("how many people annotated the TimePro dataset") == set(terms("people"))
    assert counted_terms("How many times fewer tokens does it need?") == set()  # a factor, not a count
    assert asked_terms("What does FastSwitch fix in fairness-aware LLM serving?") == set()  # "does" is no attribute
    assert asked_terms("Which GPU does X use?") == set(terms("gpu"))
    assert asked_terms("How does H2O decide which tokens stay in the KV cache?") == set()  # a clause of a how


def test_a_name_typed_without_its_subscript_finds_its_paper(assistant: Assistant) -> None:
    """The page writes "H_2O" (from LaTeX's H$_2$O); people type "H2O"."""
    assert words("H_2O and CO_2, not W_Q") == ["h2o", "and", "co2", "not", "w", "q"]
    assert mentions("H_2O: Heavy-Hitter Oracle", "h2o") and named_things("What is H2O?") == ["h2o"]
    answer = assistant.answer("How does H2O decide which tokens stay in the KV cache?")
    assert not answer.refused and answer.citations[0].title.startswith("H_2O")


def test_a_capped_feature_caps_the_probability() -> None:
    model = ConfidenceModel.load()
    features = dict.fromkeys(FEATURES, 1.0)
    capped = model.probability(features)
    assert capped <= model.caps["value_unstated"] < model.threshold
    assert model.probability({**features, "value_unstated": 0.0}) != capped


def test_a_reference_bracket_of_the_page_is_not_quoted_as_a_citation(assistant: Assistant) -> None:
    """The page's "[29]" would read as our citation: the sentence is quoted up to it. The query
    names a measure, so the figure next to it leads."""
    answer = assistant.stream("mnasnet latency on pixel phone")
    raw = "".join(answer)
    assert set(map(int, re.findall(r"\[(\d+)\]", raw))) <= {s.n for s in answer.answer.sources}
    assert raw.startswith("78ms [1]: On the ImageNet classification task, our MnasNet achieves 75.2% top-1 accuracy")
    assert "1.8x faster than MobileNetV2 [1]." in raw
    _quoted_spans_are_verbatim(answer.answer)


@pytest.mark.parametrize(("question", "figures"), [
    ("What compression ratio does QMoE reach?", ["20x"]),
    ("flashdecoding++ speedup", ["4.86x", "2.18x", "1.37x"]),  # two sentences with a figure: both quoted
    ("What is MinMo's speech-to-text latency?", ["100ms"]),  # "what is X's <measure>" asks for a figure
    ("What speedup does XGrammar report over existing solutions?", ["100x"]),  # a figure glued to its unit
    ("how many tokens was geb-1.3b trained on", ["550 billion tokens"]),  # a count leads with what it counts
    ("how many bits per parameter does qmoe use", ["0.8 bits"]),
    ("How fast can Cambricon-LLM run a 70B LLM on-device?", ["3.44 token/s"]),  # a rate, not "over 22X"
])
def test_a_question_for_a_figure_gets_the_figures(assistant: Assistant, question: str, figures: list[str]) -> None:
    answer = assistant.answer(question)
    assert not answer.refused and all(f in answer.text for f in figures), answer.text
    lead, _, _ = answer.text.partition(" [1]: ")
    assert any(f in lead for f in figures) and len(lead.split()) <= 5, lead  # a figure leads
    _quoted_spans_are_verbatim(answer)


@pytest.mark.parametrize(("question", "wanted"), [
    ("What MMLU score does the 4B Minitron model get?", True),  # a measure with what it is measured on
    ("What top-5 accuracy does MnasNet get on ImageNet?", True),
    ("What accuracy does DSPy reach?", True),
    ("What training data does DSPy use?", False),
    ("What does MnasNet search for?", False),
])
def test_wants_figure_knows_a_measure_with_its_benchmark(question: str, wanted: bool) -> None:
    assert wants_figure(question) is wanted


@pytest.mark.parametrize(("question", "kind"), [
    ("any work on automatic speech recognition", "list"),  # "any work on X" asks for the papers on X
    ("papers on kv cache compression?", "list"),
    ("is there some research about diffusion transformers", "list"),
    ("any work where the llm itself decides how to prune it", "single"),
    ("What does TransMLA do?", "single"),
    ("How much does ShadowKV improve throughput?", "numeric"),
])
def test_question_kind(question: str, kind: str) -> None:
    assert question_kind(question) == kind


def test_which_papers_and_by_how_much_gives_each_paper_the_figure_that_goes_the_way_asked(
        assistant: Assistant) -> None:
    """"shrink … by how much": DuoAttention's memory reduction (2.55x), not its decoding speed-up (2.18x)."""
    answer = assistant.answer("which papers shrink the KV cache for long-context decoding, and by how much?")
    lines = {line.split(" [")[0]: line for line in answer.text.splitlines() if line.startswith("- ")}
    assert "], up to 2.55x: " in lines["- DuoAttention"]
    assert "], 80%: " in lines["- LOOK-M"]  # "reducing it by 80%", not "up to 1.5x faster decoding"
    _quoted_spans_are_verbatim(answer)


def test_which_paper_answers_say_the_name_the_paper_coins(assistant: Assistant) -> None:
    """A title without a system name ("Symbolic Discovery of Optimization Algorithms"): the answer
    names what the abstract calls it (Lion), or the title when the abstract names nothing; a
    descriptor ("MuZero-style") still finds a name that appears only inside a longer one (mallocMuZero)."""
    lion = assistant.answer("Which paper discovered an optimizer by searching over programs?")
    assert lion.citations[0].title == "Symbolic Discovery of Optimization Algorithms"
    assert "Lion (EvoLved Sign Momentum)" in lion.text.splitlines()[0]
    unnamed = assistant.answer("Which paper adds latent embeddings from an offline coprocessor to a frozen LLM's "
                               "kv cache?")
    assert unnamed.text.startswith('"Deliberation in Latent Space via Differentiable Cache Augmentation" [1]: ')
    malloc = assistant.answer("which paper uses a MuZero-style agent to map tensors to memory")
    assert not malloc.refused
    assert malloc.citations[0].title == "Optimizing Memory Mapping Using Deep Reinforcement Learning"
    _quoted_spans_are_verbatim(lion)


@pytest.mark.parametrize(("title_start", "name"), [
    ("Exploring the Role of Large Language Models in Prompt Encoding", "LI-DiT"),  # "we further design … (LI-DiT)"
    ("MetaFormer Is Actually What You Need", "PoolFormer"),  # "termed as PoolFormer"
    ("MIMO Is All You Need", "MIMO-VP"),  # "namely MIMO-VP"
    ("With Greater Text Comes Greater Necessity", "Temp-Lora"),  # "Our proposed method, Temp-Lora, …"
    ("Online Speculative Decoding", "OSD"),  # "We introduce online speculative decoding (OSD)"
    ("Long-context LLMs Struggle with Long In-context", "LIConBench"),  # "This study introduces a … (LIConBench)"
    ("Lookahead When It Matters", "ANCAT"),  # "we relax … and present the Adaptive … Transducer (ANCAT)"
    ("It's Never Too Late", "UADF"),  # "a … solution termed Uncertainty-Aware Dynamic Fusion (UADF)"
    ("Optimizing Speculative Decoding for Serving", "SmartSpec"),  # "we develop a dynamic framework SmartSpec"
    ("Scaling Test-Time Inference with Policy-Optimized", None),  # "a … framework for enhancing … (RAG)": not theirs
])
def test_paper_name_finds_the_name_an_abstract_coins(title_start: str, name: str | None) -> None:
    paper = next(p for p in load_corpus().papers if p.title.startswith(title_start))
    source = Source(n=1, title=paper.title, paper_id=paper.paper_id, text=paper.abstract, score=1.0)
    assert paper_name(source) == name


def test_a_figure_question_quotes_the_measurement_not_a_digit_of_a_name(assistant: Assistant) -> None:
    """"H_2" is a name, not a figure: the answer quotes the sentence that states the share."""
    answer = assistant.answer("What share of heavy-hitter tokens does H2O keep in its reported implementation?")
    assert not answer.refused and "20%" in answer.text, answer.text
    assert answer.citations[0].title.startswith("H_2O")
    _quoted_spans_are_verbatim(answer)


def test_named_things_and_system_names() -> None:
    assert named_things("what does lserve-3 do") == ["lserve-3"]
    assert named_things("a MuZero-style agent on Llama-2-based models") == ["muzero", "llama-2"]
    assert named_things("What accuracy do FlashAttention-enabled models reach?") == ["flashattention"]
    assert named_things("can llms write 10k+ words") == []  # a quantity, not a version of a name
    assert mentions("we train a once-for-all (OFA) network", "once-for-all")  # a name of stopwords only
    assert "shadowkv" in named_things("How does ShadowKV cut KV-cache memory?")
    assert named_things("What is a good sourdough recipe?") == []
    assert named_things("and ShadowKV's speedup?") == ["shadowkv"]  # what it owns is asked, not named
    assert named_things("How does SAM 2 handle video segmentation?") == ["sam 2"]  # a version written apart
    assert mentions("SAM-2 and SAM2 differ", "sam 2") and mentions("8 Intel Gaudi® 2 accelerators", "gaudi 2")
    assert not mentions("Segment Anything (SAM) and MobileSAM", "sam 2")
    assert terms("whats new in transmla, dont skip") == terms("What's new in TransMLA? Don't skip")
    assert terms("LLMs on GPUs") == terms("an LLM on a GPU") == ["llm", "gpu"]  # acronyms are singular
    assert "llm" in terms("serving large language models")  # what the acronym stands for
    for said in ("works without retraining", "is training-free", "does not require auxiliary models or additional "
                 "training", "with no fine-tuning"):
        assert NO_TRAINING_TERM in terms(said), said
    for said in ("online retraining of draft models", "without compromising quality", "we train without labels"):
        assert NO_TRAINING_TERM not in terms(said), said
    assert names_system_of("what is transmla", TRANSMLA)
    assert not names_system_of("what is transmla-2", TRANSMLA)
    assert not names_system_of("What is attention?", "Hopping Too Late: Exploring the Limitations of LLMs")
    splitwise = "Splitwise: Efficient generative LLM inference using phase splitting"
    assert names_system_of("how much lower cost does splitwise give", splitwise)  # typed in lower case
    assert not names_system_of("how much does medusa cost", splitwise)


def test_a_question_typed_in_lower_case_names_what_the_papers_write_as_names() -> None:
    titles = ["Splitwise: Efficient generative LLM inference using phase splitting", "Scope is all you need"]
    text = "DuoAttention cuts memory. Splitwise splits phases. Large language models on GPUs."
    question = "by how much does duoattention beat splitwise on pre-filling for large models"
    assert typed_names(question, titles, text) == ["duoattention", "splitwise"]  # "pre-filling" is named already
    assert typed_names(question.capitalize(), titles, text) == []  # a question with capitals writes names with them
    assert typed_names("what is the scope of large models", titles, text) == []


def test_the_shipped_model_matches_the_features_it_was_fit_on() -> None:
    stored = json.loads(MODEL_FILE.read_text(encoding="utf-8"))
    assert [f["name"] for f in stored["features"]] == list(FEATURES)
    model = ConfidenceModel.load()
    assert len(model.weights) == len(model.mean) == len(model.scale) == len(FEATURES)
    assert 0.0 < model.threshold < 1.0
    assert stored["fit"]["dev_false_refusal"] <= stored["target_false_refusal"]


def test_the_generated_suites_are_reproducible_and_split_by_paper(tmp_path: Path) -> None:
    committed = {p.name: p.read_text(encoding="utf-8") for p in (ROOT / "evals" / "generated").glob("*.jsonl")}
    subprocess.run([sys.executable, str(ROOT / "evals" / "generate.py"), "--out", str(tmp_path)], check=True,
                   capture_output=True, cwd=ROOT)
    regenerated = {p.name: p.read_text(encoding="utf-8") for p in tmp_path.glob("*.jsonl")}
    assert regenerated == committed
    gold = {split: {t for line in committed[f"{split}.jsonl"].splitlines() for t in json.loads(line)["gold_titles"]}
            for split in ("train", "dev", "test")}
    assert not gold["train"] & gold["dev"] and not gold["train"] & gold["test"] and not gold["dev"] & gold["test"]
    suites = {json.loads(line)["suite"] for text in committed.values() for line in text.splitlines()}
    assert suites == {"topic", "describe", "claim", "query", "list", "name", "numeric", "numeric-typed", "near-miss",
                      "off-topic"}
