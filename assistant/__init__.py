"""papers-assistant: grounded, cited answers over research-paper abstracts.

    from assistant import answer
    a = answer("How does ShadowKV cut KV-cache memory?")
    print(a.text, [c.title for c in a.citations])
"""

from . import offline  # noqa: F401  (must run before any dependency loads)
from .errors import AssistantError, BackendError, ConfigError, CorpusError, IndexProblemError, InvalidQuestionError
from .models import Answer, AnswerStream, Citation, Paper, SentenceSupport, Source
from .pipeline import Assistant, Conversation, answer, stream
from .search.filters import PaperFilter
from .settings import Settings

__all__ = [
    "Answer", "AnswerStream", "Assistant", "AssistantError", "BackendError", "Citation", "ConfigError", "Conversation",
    "CorpusError",
    "IndexProblemError",
    "InvalidQuestionError", "Paper", "PaperFilter", "SentenceSupport", "Settings", "Source", "answer", "stream",
]
