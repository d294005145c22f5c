"""Failures in words for the audit's tables: what ended an attempt, its error, its last output line.

An error signature (`reason:exit_code:line | line | line`, execution/files.py) is made to compare
failures, not to be read: it starts with the reason and exit code, which the tables show in their
own column, and its lines include the `$ command` line the attempt's log starts with, which is the
step's own task and says nothing of the error.
"""

from __future__ import annotations

from stepledger.engine.read.describe import failure_words, last_error_line

PART_SEPARATOR = " | "  # between the output lines kept in a signature
__all__ = ["failure_words", "last_output", "signature_text"]


def signature_text(signature: str | None) -> str:
    """The output lines of an error signature, without its reason prefix and the `$ command` lines."""
    if not signature:
        return ""
    parts = signature.split(":", 2)
    body = parts[2] if len(parts) == 3 else signature
    kept = [part for part in body.split(PART_SEPARATOR) if part.strip() and not part.startswith("$ ")]
    return PART_SEPARATOR.join(kept)


def last_output(excerpt: str | None) -> str:
    """The last line the step itself wrote (not stepledger's `$ command` and `exit N in Ts` lines)."""
    return last_error_line(excerpt or "")
