"""Extractive answers through the public API: citations, figures, refusals and bad input."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from assistant import Answer, Assistant, IndexProblemError, InvalidQuestionError, Settings
from assistant.answering.citations import REFUSAL
from assistant.indexing.embedding import vector_key
from assistant.indexing.sentences import SentenceVectors
from assistant.text import split_sentences

NANOFLOW = "NanoFlow: Towards Optimal Large Language Model Serving Throughput"


def _cited_titles(answer: Answer) -> set[str]:
    return {c.title for c in answer.citations}


def test_answer_cites_the_right_paper(assistant: Assistant) -> None:
    answer = assistant.answer("How does ShadowKV cut KV-cache memory?")
    assert not answer.refused
    assert _cited_titles(answer) == {"ShadowKV: KV Cache in Shadows for High-Throughput Long-Context LLM Inference"}
    assert "low-rank key cache" in answer.text


def test_numeric_answer_quotes_the_figure_verbatim(assistant: Assistant) -> None:
    answer = assistant.answer("By what factor does NanoFlow boost serving throughput?")
    assert NANOFLOW in _cited_titles(answer)
    source = next(s for s in answer.sources if s.title == NANOFLOW)
    figures = re.findall(r"\d+(?:\.\d+)?x", answer.text)
    assert figures and all(f in source.text for f in figures)


def test_every_marker_maps_to_a_source_and_every_sentence_is_scored(assistant: Assistant) -> None:
    answer = assistant.answer("Which papers accelerate LLM decoding with speculative decoding?")
    valid = {s.n for s in answer.sources}
    markers = {int(n) for n in re.findall(r"\[(\d+)\]", answer.text)}
    assert markers and markers <= valid
    assert {c.n for c in answer.citations} == markers
    assert len(_cited_titles(answer)) >= 2
    assert answer.sentences and all(0 <= s.support <= 1 and s.cites for s in answer.sentences)
    assert all(s.supported for s in answer.sentences)


@pytest.mark.parametrize("question", [
    "What is the boiling point of ethanol?",
    "What does the Mixtral 8x22B technical report say about its expert routing?",
    "How does QLoRA's 4-bit NormalFloat data type work?",
    "Under which software license is the DAMO-YOLO code released?",
])
def test_unanswerable_questions_are_refused(assistant: Assistant, question: str) -> None:
    answer = assistant.answer(question)
    assert answer.refused
    assert answer.text == REFUSAL
    assert answer.citations == []


def test_to_dict_has_the_contract_shape(assistant: Assistant) -> None:
    data = assistant.answer("What does DSPy compile?").to_dict()
    assert {"question", "answer", "refused", "citations", "sources", "backend", "timings_ms"} <= set(data)
    assert data["backend"] == "extractive"
    assert all(set(c) == {"n", "title", "paper_id"} for c in data["citations"])
    assert all({"n", "title", "paper_id", "text", "score"} <= set(s) for s in data["sources"])
    assert {"retrieval", "answer", "total"} <= set(data["timings_ms"])


def test_stream_yields_text_deltas_and_keeps_the_final_answer(assistant: Assistant) -> None:
    stream = assistant.stream("How does ShadowKV cut KV-cache memory?")
    deltas = list(stream)
    assert deltas and all(isinstance(d, str) for d in deltas)
    assert isinstance(stream.answer, Answer)
    assert "".join(deltas).strip() == stream.text.strip() == stream.answer.text
    assert list(stream) == [], "a drained stream yields nothing more"


def test_answer_reads_the_stream_to_its_end(assistant: Assistant) -> None:
    stream = assistant.stream("How does ShadowKV cut KV-cache memory?")
    assert stream.answer.citations and stream.text, "reading .answer first drains the deltas"


def test_a_question_never_builds_the_index(tmp_path: Path) -> None:
    fresh = Assistant(Settings.from_env(env={}, index_dir=tmp_path / "index"))
    with pytest.raises(IndexProblemError, match="build it with `assistant index`"):
        fresh.answer("How does ShadowKV cut KV-cache memory?")
    assert not fresh.index.store.exists(), "nothing was built"


@pytest.mark.parametrize("question", ["", "   \n\t ", "x" * 5000, "?!?!", "\x00\x01\x02"])
def test_bad_questions_raise_a_value_error(assistant: Assistant, question: str) -> None:
    with pytest.raises(InvalidQuestionError) as info:
        assistant.answer(question)
    assert isinstance(info.value, ValueError)
    assert str(info.value)


def test_answering_does_not_load_llama_index() -> None:
    """llama-index costs ~1.4 s to import; only indexing needs it."""
    code = ("import sys, assistant.pipeline, assistant.cli; "
            "print(sorted(m for m in sys.modules if m.startswith('llama_index.core')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert (done.returncode, done.stdout.strip()) == (0, "[]"), done.stderr


QUESTIONS_FOR_VECTORS = ["How does ShadowKV cut KV-cache memory?", "Which papers speed up LLM decoding?",
                         "By what factor does NanoFlow boost serving throughput?", "What is Medusa?"]


def test_answers_use_index_time_sentence_vectors(settings: Settings, first_build, tmp_path: Path) -> None:
    stored = Assistant(settings)
    model_calls: list[int] = []
    original = stored.encoder.encoder.encode_ids

    def counted(token_ids: list[list[int]]):
        model_calls.append(len(token_ids))
        return original(token_ids)

    stored.encoder.encoder.encode_ids = counted  # type: ignore[method-assign]
    computed = Assistant(settings)
    computed.index.sentences = SentenceVectors(tmp_path / "none.sqlite3", {})  # nothing stored: embed them all
    for question in QUESTIONS_FOR_VECTORS:
        model_calls.clear()
        with_vectors = stored.answer(question)
        # The sources' sentences were compared through the stored (late-chunking) vectors.
        sentences = [s for src in with_vectors.sources for s in split_sentences(src.text)]
        keys = [vector_key(ids) for ids in stored.encoder.tokenize(sentences)]
        found = stored.index.sentences.get(keys)
        assert set(found) == set(keys)
        np.testing.assert_array_equal(stored.encoder.encode(sentences), np.stack([found[k] for k in keys]))
        assert model_calls == [1], f"only the question is embedded, not {model_calls}"
        without = computed.answer(question)  # each sentence embedded on its own: same sources, an answer
        assert [s.paper_id for s in without.sources] == [s.paper_id for s in with_vectors.sources]
        assert without.text
