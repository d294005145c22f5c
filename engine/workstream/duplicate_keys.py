"""Mappings whose source repeated keys: the last value wins, as in JSON, and the names are kept
so that `validate` can report them. Both the JSON and the YAML reader build them."""

from __future__ import annotations

from typing import Any


class DuplicateKeys(dict):
    """A mapping whose source repeated some keys (the last value won); the checker reports them."""

    duplicate_keys: tuple[str, ...] = ()


def json_object(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    # json keeps the last of repeated keys silently; keep that, but remember the names.
    out = dict(pairs)
    if len(out) == len(pairs):
        return out
    marked = DuplicateKeys(out)
    marked.duplicate_keys = repeated([str(k) for k, _ in pairs])
    return marked


def repeated(keys: list[str]) -> tuple[str, ...]:
    counts: dict[str, int] = {}
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
    return tuple(k for k, n in counts.items() if n > 1)
