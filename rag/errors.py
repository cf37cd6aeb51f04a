"""Errors meant for a person: each message is one line that says what went wrong and what to do."""


class RagError(Exception):
    """An expected failure (bad config, missing index, wrong model) shown without a traceback."""


class ConfigError(RagError):
    """A config file, profile or environment override is wrong."""


class IndexStoreError(RagError):
    """The index cannot be opened or written as asked."""


class LLMError(RagError):
    """The model could not answer: missing, failed its checksum, unreachable, timed out, or refused."""
