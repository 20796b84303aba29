"""Hybrid retrieval on the real index: paraphrased questions find the right paper."""

from __future__ import annotations

import pytest

from assistant import Assistant
from assistant.search.fusion import ChunkHit, PaperHit, reciprocal_rank_fusion
from assistant.text import written_as_names

PARAPHRASED = [
    ("keep the key cache in low rank on the GPU and push the values to CPU memory to serve long inputs faster",
     "ShadowKV: KV Cache in Shadows for High-Throughput Long-Context LLM Inference"),
    ("find redundant copies of tables in huge enterprise data lakes",
     "R2D2: Reducing Redundancy and Duplication in Data Lakes"),
    ("an optimizer discovered by program search that only tracks momentum and uses the sign",
     "Symbolic Discovery of Optimization Algorithms"),
    ("diagnose which microservice caused a failure with neural causal discovery",
     "Root Cause Analysis In Microservice Using Neural Granger Causal Discovery"),
    ("compress spreadsheets so a language model can read them",
     "SpreadsheetLLM: Encoding Spreadsheets for Large Language Models"),
]


@pytest.mark.parametrize(("question", "title"), PARAPHRASED)
def test_paraphrased_question_ranks_the_paper_first(assistant: Assistant, question: str, title: str) -> None:
    sources = assistant.retrieve(question, top_k=5)
    assert sources[0].title == title


@pytest.mark.parametrize(("question", "title_start"), [
    ("How fast is Lite-LLM4Rec at inference?", "Rethinking Large Language Model Architectures"),
    ("does PrFlashAttention lose accuracy", "The Nature of Mathematical Modeling"),
    ("how much kv cache memory does longgen save at inference", "A Little Goes a Long Way"),  # "LongGen" in lower case
])
def test_a_paper_that_mentions_a_name_few_papers_mention_ranks_first(assistant: Assistant, question: str,
                                                                     title_start: str) -> None:
    """The name is in the paper's abstract, not its title: without the mention bonus, papers that
    are closer to the rest of the question in meaning ranked above it."""
    assert assistant.retrieve(question, top_k=5)[0].title.startswith(title_start)


@pytest.mark.parametrize("mode", ["hybrid", "dense", "bm25"])
def test_every_mode_returns_distinct_papers_with_scores(assistant: Assistant, mode: str) -> None:
    sources = assistant.retrieve("speculative decoding with a draft model", top_k=8, retrieval=mode)
    assert len(sources) == 8
    assert len({s.paper_id for s in sources}) == 8
    assert [s.n for s in sources] == list(range(1, 9))
    assert all(s.text and 0 < s.dense <= 1 for s in sources)


def test_grouping_keeps_one_paper_from_crowding_out_others(assistant: Assistant) -> None:
    sources = assistant.retrieve("ShadowKV", top_k=5)
    assert sources[0].title.startswith("ShadowKV")
    assert sum(s.title.startswith("ShadowKV") for s in sources) == 1


def test_reciprocal_rank_fusion_rewards_agreement() -> None:
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["b", "a", "d"]], k=60)
    assert fused["a"] == fused["b"] > fused["c"] > 0
    assert fused["c"] == fused["d"]


def test_weighted_fusion_prefers_the_heavier_ranking() -> None:
    fused = reciprocal_rank_fusion([["a", "b"], ["b", "a"]], k=60, weights=[1.0, 1.5])
    assert fused["b"] > fused["a"]


def test_a_passage_keeps_each_sentence_once_when_chunks_overlap_inside_a_sentence() -> None:
    """The splitter's overlap can start a chunk mid-sentence; the fragment must not be glued to the
    sentence before it ("… pooling. non-blocking pipeline …") nor repeated."""
    first = ChunkHit("p-0", "We built it. Upon the architecture, we propose three techniques, i.e. non-blocking "
                     "pipeline parallelism and peer memory pooling.", 0, dense=0.5)
    second = ChunkHit("p-1", "non-blocking pipeline parallelism and peer memory pooling. It runs faster.", 1,
                      dense=0.6)
    hit = PaperHit("p", "EnergonAI: An Inference System", 1.0, 0.6, 0.0, [first, second])
    assert hit.passage == ("We built it. Upon the architecture, we propose three techniques, i.e. non-blocking "
                           "pipeline parallelism and peer memory pooling. It runs faster.")


def test_a_lower_case_word_the_papers_write_as_a_name_is_a_name() -> None:
    text = "LongGen cuts memory. XGrammar and Llama2 too. LLMs on GPUs, with a 7B model and a reward."
    question = "does longgen beat xgrammar or llama2 on llms with gpus at 7b reward"
    assert written_as_names(question, text) == ["longgen", "xgrammar", "llama2"]
