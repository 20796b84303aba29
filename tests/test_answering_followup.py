"""Follow-up questions are asked together with the conversation's topic."""

from assistant.answering.followup import condense, is_follow_up, user_questions

SHADOWKV = "How does ShadowKV cut KV-cache memory?"


def test_first_question_is_asked_as_typed() -> None:
    assert condense(SHADOWKV, []) == SHADOWKV


def test_self_contained_question_is_not_rewritten() -> None:
    question = "What throughput boost does NanoFlow get over existing serving systems?"
    assert not is_follow_up(question)
    assert condense(question, [SHADOWKV]) == question


def test_pronoun_follow_up_gets_the_topic() -> None:
    follow = "How much does it boost throughput on an A100 GPU?"
    assert condense(follow, [SHADOWKV]) == f"{SHADOWKV} {follow}"


def test_short_and_connective_follow_ups() -> None:
    assert is_follow_up("And the speedup?")
    assert is_follow_up("What about the latency of long sequences on GPUs?")
    assert is_follow_up("Which benchmarks did the authors evaluate on?")


def test_topic_stays_the_last_self_contained_question() -> None:
    history = [SHADOWKV, "How much does it boost throughput?"]
    assert condense("And its accuracy?", history) == f"{SHADOWKV} And its accuracy?"
    new_topic = "What does NanoFlow split requests into?"
    assert condense("Why?", [*history, new_topic]) == f"{new_topic} Why?"


def test_empty_question_stays_empty() -> None:
    assert condense("   ", [SHADOWKV]) == "   "


def test_user_questions_reads_both_content_shapes() -> None:
    history = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "<div>answer</div>"},
        {"role": "user", "content": [{"type": "text", "text": "second"}]},
        {"role": "user", "content": [{"type": "file", "file": {"path": "x.png"}}]},
    ]
    assert user_questions(history) == ["first", "second"]
