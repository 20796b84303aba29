"""Follow-up questions in the chat: turn a conversation into one self-contained question.

The answerers have no memory, so a follow-up such as "How much faster is it?" is sent to
retrieval and answering together with the conversation's topic. The rule is deliberately simple:

- The *topic* is the latest user question that was not itself a follow-up.
- A question is a follow-up when there is a topic and the question is short (at most
  `SHORT_QUESTION_WORDS` words), opens with a connective ("and", "also", "what about", ...) or
  refers back ("it", "its", "they", "this paper", "the method", ...).
- A follow-up is asked as "<topic> <follow-up>"; any other question is asked as typed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

SHORT_QUESTION_WORDS = 4
_OPENERS = re.compile(r"^(?:and|also|so|then|but|what about|how about|and what about)\b", re.I)
_REFERRING = re.compile(
    r"\b(?:it|its|it's|they|them|their|theirs|"
    r"(?:this|that|these|those|the same|the)\s+(?:paper|papers|work|method|methods|model|models|"
    r"approach|system|technique|one|ones|authors|study|benchmark))\b",
    re.I,
)


def is_follow_up(question: str) -> bool:
    """Whether a question leans on the one before it (short, opens with a connective or refers back)."""
    text = question.strip()
    return (len(text.split()) <= SHORT_QUESTION_WORDS or bool(_OPENERS.match(text))
            or bool(_REFERRING.search(text)))


def condense(question: str, earlier_questions: Sequence[str]) -> str:
    """The question to ask: the follow-up prefixed with the conversation's topic, or as typed."""
    if not question.strip():
        return question
    topic = None
    for earlier in earlier_questions:
        if topic is None or not is_follow_up(earlier):
            topic = earlier
    if topic is None or not is_follow_up(question):
        return question
    return f"{topic.strip()} {question.strip()}"


def user_questions(history: Iterable[dict[str, Any]]) -> list[str]:
    """The text of the user turns in a Gradio messages history, oldest first.

    Content is a string, or (once the chatbot has normalised it) a list of parts like
    `{"type": "text", "text": ...}`.
    """
    out = []
    for message in history:
        if message.get("role") != "user":
            continue
        content = message.get("content")
        parts = content if isinstance(content, list) else [content]
        text = " ".join(p if isinstance(p, str) else str(p.get("text") or "") for p in parts
                        if isinstance(p, str | dict))
        if text.strip():
            out.append(text.strip())
    return out
