"""Text from outside (step ids, error messages, a tool's output) made safe to show on a terminal.

A step id, an error or an output excerpt can hold control characters and escape sequences: ESC
`[2J` clears the screen, ESC `]0;...` BEL retitles the window, `\\r` overwrites the line already
printed, a bidi override reorders what is read. Every view stepledger formats itself passes such
text through `printable`, which shows each of them as an escape (`\\x1b`, `\\r`, `\\u202e`)
instead of letting the terminal act on it. Standard library only: the worker may import it.
"""

from __future__ import annotations

import re

# C0 controls (newline and tab included: one event is one line, a table cell one cell), DEL, C1
# controls (0x9b is a one-byte CSI to some terminals), the invisible format characters that can
# make text read differently than it is (zero-width, bidi marks, embeddings, overrides, isolates),
# the line and paragraph separators, and lone surrogates (which cannot even be encoded).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def printable(text: str) -> str:
    """`text` with every control or invisible formatting character shown as an escape."""
    if text.isprintable():  # the usual case, checked in C
        return text
    return _UNSAFE.sub(_escape, text)


def json_printable(text: str) -> str:
    """A JSON document (made with ensure_ascii=False) with the characters above as \\u escapes.

    json.dumps already escapes C0 controls; C1 controls, bidi overrides and lone surrogates it
    writes as they are. These characters can only sit inside JSON strings, where `\\uXXXX` means
    the same character, so the document still parses to the same values.
    """
    if text.isprintable():
        return text
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
