"""Bridges to other frameworks; each module imports its framework, so import them only when wanted."""
