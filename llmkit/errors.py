"""The errors llmkit raises for user mistakes.

Library code raises these with a message that says what was given, what is allowed and
what to do next. Only `llmkit.cli` catches them: it prints the message in one line and
exits 1. Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class LlmkitError(Exception):
    """A problem the user can fix: bad config, bad data, a missing file, a mismatch."""


class ConfigError(LlmkitError):
    """`llmkit.yaml` (or a `-o` override) is invalid; holds every problem found."""

    def __init__(self, problems: list[str], source: str = "llmkit.yaml") -> None:
        self.problems = list(problems)
        self.source = source
        n = len(self.problems)
        head = f"{source}: {n} problem{'s' if n != 1 else ''}"
        super().__init__(head + ": " + "; ".join(self.problems))


class DataError(LlmkitError):
    """Training or validation data is missing, unreadable or unusable."""


class TokenizerError(LlmkitError):
    """The tokenizer is missing, unreadable, or cannot be trained on the data given."""


class TokenIdError(LlmkitError):
    """A token id is outside the model's vocabulary (never clamped)."""


class VocabMismatchError(LlmkitError):
    """A checkpoint, cache or config disagrees with the tokenizer about the vocabulary."""


class CheckpointError(LlmkitError):
    """A checkpoint is missing, unreadable, or does not fit the current project."""


class ScaffoldError(LlmkitError):
    """`llmkit new` cannot create the project as asked."""


class DiskFullError(LlmkitError):
    """A write ran out of disk space; the file being replaced was left as it was."""


class RunLockedError(LlmkitError):
    """Another `llmkit train` is running on the same project run folder."""
