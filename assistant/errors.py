"""Exceptions the assistant raises on purpose; each carries a message fit for a user."""


class AssistantError(Exception):
    """Base class: a failure with a one-line, user-facing message."""


class InvalidQuestionError(AssistantError, ValueError):
    """The question is empty, too long or otherwise unusable."""


class ConfigError(AssistantError, ValueError):
    """A setting (keyword argument, CLI flag or environment variable) has a value that cannot work."""


class IndexProblemError(AssistantError):
    """The index is missing, corrupted, locked or built with other settings."""


class BackendError(AssistantError):
    """An answering backend failed (endpoint down, timeout, bad reply, not configured)."""


class CorpusError(AssistantError):
    """A corpus path cannot be read at all (missing, not a supported file)."""


class EvalSetError(AssistantError, ValueError):
    """An eval set file is missing or not in the eval set format."""
