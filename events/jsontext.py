"""JSON text of payloads: orjson where its output means what the standard library's would.

Encoding was the largest part of an append's own CPU time, most of it the standard encoder setting
itself up on every call; orjson is many times faster (docs/performance.md). orjson's
text differs only in spelling (``1e16`` for ``1e+16``, ``1e-7`` for ``1e-07``): keys keep their
order, non-ASCII stays raw UTF-8, control characters are escaped, and every number is the same
decimal value (both write the shortest digits that round-trip), so Python, SQLite's json
functions and PostgreSQL's jsonb read from it what they read before (tests/unit/test_event_json.py
and tests/store/test_payload_json.py check). Where orjson would *mean* something else, or
refuses, the standard encoder decides instead, so what is stored, and what raises, is what it
always was:

- NaN and ±Infinity: orjson writes ``null`` where the standard encoder (``allow_nan=False``)
  raises ValueError, so any text holding ``null`` is re-encoded by the standard one (a payload
  with a None in it costs what it used to);
- integers beyond 64 bits, non-string keys, float subclasses, lone surrogates, nesting deeper
  than 254, cycles, and (by the passthrough options) dataclasses and datetimes: orjson raises
  TypeError, and the standard encoder writes them (or raises) as before.

The one difference left: orjson writes a plain Enum member as its value and a UUID as its text,
which the standard encoder refused with TypeError. A payload holds plain JSON types by
construction (`Event.to_payload`), so such a value was a bug that failed the append; it is now
stored as that value (and read back as it).
"""

from __future__ import annotations

import json
from typing import Any

import orjson

# Compact separators: the payload is stored, never read by people in this form.
_standard = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
# The standard encoder refuses dataclasses and datetimes; orjson would encode them unless told not to.
_OPTIONS = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME

# orjson escapes U+0000 (in keys and values alike) as these six bytes, and nothing else produces
# them except a string holding a backslash followed by "u0000" (which orjson writes as "\\u0000",
# containing them too): a test that may say yes wrongly, never no wrongly.
ESCAPED_NUL = b"\\u0000"


def dumps(payload: Any) -> str:
    """Compact JSON text of a payload (what the standard encoder would store, see above)."""
    try:
        text = orjson.dumps(payload, option=_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return _standard.encode(payload)
    if b"null" in text:  # a None, or a NaN/infinity that must raise: let the standard encoder decide
        return _standard.encode(payload)
    return text.decode()


def loads(text: str | bytes) -> Any:
    """Payload from JSON text.

    The standard parser, not orjson's: orjson reads an integer beyond 64 bits as a float, and a
    payload may hold one (the standard encoder writes them), so it would not read back the same.
    """
    return json.loads(text)


def may_hold_nul(payload: Any) -> bool:
    """False only if no string (key or value) in `payload` contains U+0000.

    One C-speed encoding and a byte search instead of walking the payload in Python. A payload
    orjson cannot encode (see above) may hold anything: True.
    """
    try:
        return ESCAPED_NUL in orjson.dumps(payload, option=_OPTIONS)
    except TypeError:
        return True
