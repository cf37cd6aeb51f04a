"""Errors meant for a person: each message is one line that says what went wrong and what to do; and the
exit codes the `rag` commands (rag/cli.py, rag/cli_answers.py and the client packages' commands) end with."""

# 0 done; 1 done, but some inputs were skipped (each reported on stderr); 2 nothing done (bad arguments,
# bad config, no index, wrong model, ...).
EXIT_OK, EXIT_PARTIAL, EXIT_ERROR = 0, 1, 2


class RagError(Exception):
    """An expected failure (bad config, missing index, wrong model) shown without a traceback."""


class ConfigError(RagError):
    """A config file, profile or environment override is wrong."""


class IndexStoreError(RagError):
    """The index cannot be opened or written as asked."""


class LLMError(RagError):
    """The model could not answer: missing, failed its checksum, unreachable, timed out, or refused."""
