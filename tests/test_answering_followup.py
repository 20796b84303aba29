"""Follow-ups are answered about the papers of the previous answer: the planning rules on their own,
then whole conversations through `Conversation` and `Assistant.answer(history=…)` on the real index."""

from __future__ import annotations

import pytest

from assistant import Assistant, Conversation
from assistant.answering.followup import FollowUp, Turn, is_follow_up, plan
from assistant.models import Citation

SHADOWKV = Citation(1, "ShadowKV: KV Cache in Shadows for High-Throughput Long-Context LLM Inference", "p-shadowkv")
XKV = Citation(2, "xKV: Cross-Layer SVD for KV-Cache Compression", "p-xkv")
MINICACHE = Citation(4, "MiniCache: KV Cache Compression in Depth Dimension for Large Language Models", "p-minicache")
UNNAMED = Citation(3, "Online Speculative Decoding", "p-osd")
LIST_TURN = Turn("Which papers shrink the KV cache?", (XKV, MINICACHE, SHADOWKV))
ONE_PAPER = Turn("What is ShadowKV?", (SHADOWKV,))


# -- planning ---------------------------------------------------------------------------------------
def test_a_first_or_self_contained_question_is_asked_as_typed_over_the_collection() -> None:
    question = "What throughput boost does NanoFlow get over existing serving systems?"
    assert plan(question, []) == FollowUp(question)
    assert not is_follow_up(question)
    assert plan(question, [LIST_TURN]) == FollowUp(question)


@pytest.mark.parametrize("question", ["mllm-NPU prefill speed", "what is TransMLA?", "lserve"])
def test_a_short_question_naming_its_own_subject_is_not_a_follow_up(question: str) -> None:
    assert not is_follow_up(question)
    assert plan(question, [ONE_PAPER]) == FollowUp(question)
    assert is_follow_up("and the speedup?") and is_follow_up("why?")


def test_which_of_them_asks_the_new_aspect_of_all_the_previous_papers() -> None:
    follow = plan("and which of them works without retraining?", [LIST_TURN])
    assert follow.question == "and which of them works without retraining?"
    assert follow.papers == LIST_TURN.papers


@pytest.mark.parametrize(("question", "paper"), [
    ("what about the second one?", MINICACHE), ("and the last paper?", SHADOWKV), ("what about [2]?", XKV),
    ("the first one?", XKV),
])
def test_an_ordinal_asks_the_previous_question_of_that_paper(question: str, paper: Citation) -> None:
    assert plan(question, [LIST_TURN]) == FollowUp(LIST_TURN.question, (paper,))


def test_an_ordinal_with_an_aspect_asks_that_aspect_by_the_paper_s_name() -> None:
    follow = plan("how much memory does the second one save?", [LIST_TURN])
    assert follow.papers == (MINICACHE,)
    assert "MiniCache" in follow.question and "memory" in follow.question


def test_tell_me_more_asks_what_the_paper_is() -> None:
    assert plan("tell me more about the first one", [LIST_TURN]) == FollowUp("What is xKV?", (XKV,))
    assert plan("tell me more", [Turn("papers on speculative decoding", (UNNAMED,))]) == FollowUp(
        "What is Online Speculative Decoding?", (UNNAMED,))


@pytest.mark.parametrize(("question", "asked"), [
    ("and its speedup?", "and ShadowKV's speedup?"),
    ("how much memory does it save?", "how much memory does ShadowKV save?"),
    ("How does the method pick KV pairs?", "How does ShadowKV pick KV pairs?"),
    ("and latency?", "and latency (ShadowKV)?"),
])
def test_a_reference_to_the_one_paper_is_replaced_by_its_name(question: str, asked: str) -> None:
    assert plan(question, [ONE_PAPER]) == FollowUp(asked, (SHADOWKV,))


def test_it_after_a_list_means_the_first_paper_cited() -> None:
    assert plan("how does it work?", [LIST_TURN]) == FollowUp("how does xKV work?", (XKV,))


def test_a_follow_up_to_a_refusal_is_asked_with_the_earlier_question() -> None:
    refused = Turn("How does the Jamba architecture interleave layers?")
    assert plan("and its speedup?", [refused]) == FollowUp("How does the Jamba architecture interleave layers? "
                                                           "and its speedup?")


def test_only_the_last_turn_counts() -> None:
    assert plan("what about the second one?", [LIST_TURN, ONE_PAPER]).papers == (SHADOWKV,)


# -- conversations on the real index -------------------------------------------------------------------
def test_which_of_them_stays_within_the_previous_answer(assistant: Assistant) -> None:
    chat = Conversation(assistant)
    first = chat.ask("papers on speculative decoding")
    assert len(first.citations) >= 3
    second = chat.ask("which of them skip layers of the model instead of using a separate draft model?")
    previous = {c.paper_id for c in first.citations}
    assert second.about == [c.paper_id for c in Turn.of(first).papers]
    assert {s.paper_id for s in second.sources} <= previous
    assert not second.refused and {c.paper_id for c in second.citations} < previous
    assert any("SWIFT" in c.title for c in second.citations)


def test_which_of_them_works_without_training_quotes_the_paper_that_says_so(assistant: Assistant) -> None:
    """"without training" is said "does not require … additional training": the absence word is not
    matched, what is absent is ("without compromising quality" no longer wins on "without")."""
    chat = Conversation(assistant)
    chat.ask("which papers speed up LLM inference with speculative decoding?")
    second = chat.ask("and which of them works without training?")
    first_line = second.text.splitlines()[0]
    assert first_line.startswith("- SWIFT [")
    assert "does not require auxiliary models or additional training" in first_line


def test_which_of_them_works_without_retraining_finds_the_paper_that_says_training_free(
        assistant: Assistant) -> None:
    """The issue's own example: no word of "without retraining" is in "MiniCache is training-free",
    and the passages of all five papers match the earlier topic, so the paper stating the new aspect
    must be found by its sentence and cited first."""
    chat = Conversation(assistant)
    first = chat.ask("Which papers compress the KV cache?")
    assert any(c.title.startswith("MiniCache") for c in first.citations)
    second = chat.ask("and which of them works without retraining?")
    assert not second.refused and second.sources[0].title.startswith("MiniCache")
    assert second.text.splitlines()[0].startswith("- MiniCache [1]: Our MiniCache is training-free")


def test_its_speedup_is_the_figure_of_the_paper_asked_about(assistant: Assistant) -> None:
    chat = Conversation(assistant)
    first = chat.ask("What is ShadowKV?")
    follow = chat.ask("and its speedup?")
    assert follow.asked_as == "and ShadowKV's speedup?"
    assert [c.title for c in follow.citations] == [first.citations[0].title]
    assert follow.text.split("[")[0].strip().endswith("×")  # the figure comes first
    assert chat.answers == [first, follow]


def test_a_follow_up_for_one_of_two_figures_leads_with_that_one(assistant: Assistant) -> None:
    """"… the speech-to-text latency is approximately 100ms, full-duplex latency is approximately
    600ms …": the figure of the clause that says what was asked, not the nearest to any asked word."""
    chat = Conversation(assistant)
    chat.ask("what is minmo")
    follow = chat.ask("and its full-duplex latency?")
    assert follow.text.startswith("600ms [1]: "), follow.text


def test_the_second_one_is_the_second_paper_the_answer_cites(assistant: Assistant) -> None:
    first = assistant.answer("Which papers shrink the KV cache?")
    second_paper = Turn.of(first).papers[1]
    follow = assistant.answer("tell me more about the second one", history=[first])
    assert follow.about == [second_paper.paper_id]
    assert [c.paper_id for c in follow.citations] == [second_paper.paper_id]
    assert follow.to_dict()["asked_as"].startswith("What is ")


def test_what_about_one_paper_of_a_list_is_answered_about_that_paper_not_as_a_list(assistant: Assistant) -> None:
    """The earlier question asked for papers; asked again about one of them, it gets a paper's answer."""
    first = assistant.answer("papers on quantization of llms")
    assert first.text.startswith("- ")
    follow = assistant.answer("what about the second one?", history=[first])
    assert len(follow.citations) == 1 and not follow.refused
    assert not follow.text.startswith("- ") and f'"{follow.citations[0].title}" [1]: ' in follow.text


def test_history_does_not_change_a_self_contained_question(assistant: Assistant) -> None:
    first = assistant.answer("What is ShadowKV?")
    question = "What throughput boost does NanoFlow get over existing serving systems?"
    alone, after = assistant.answer(question), assistant.answer(question, history=[first])
    assert (after.text, after.about, after.asked_as) == (alone.text, [], None)
