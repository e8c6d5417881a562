"""Errors that decide a document's fate.

A :class:`DocumentError` is bad input: retrying cannot help, so the document
fails with the stage and reason recorded, and the rest of the batch goes on.
Anything else raised by an activity is treated as transient (a server down, a
timeout) and retried by Temporal with backoff.
"""

from __future__ import annotations

from docpipe.models import Stage


class DocumentError(Exception):
    """This document cannot be processed; the reason is meant for a person."""

    def __init__(self, stage: Stage, reason: str) -> None:
        super().__init__(f"{stage}: {reason}")
        self.stage = stage
        self.reason = reason

    def __reduce__(self) -> tuple[type[DocumentError], tuple[Stage, str]]:
        # Raised inside the CPU worker's process pool: must survive pickling back.
        return (type(self), (self.stage, self.reason))


class TransientError(Exception):
    """Worth retrying later (network blip, 5xx, a server restarting)."""
