"""`${env.NAME}`, `${env.NAME:-default}` and `${env.NAME == 'value'}` in the fields that allow them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

# One placeholder; anything else that starts with `${` in an interpolated field is an error,
# so a typo never passes through as a literal string.
_PLACEHOLDER = re.compile(
    r"\$\{\s*env\.(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*"
    r"(?:(?P<default>:-(?P<value>[^}]*))|(?P<op>==|!=)\s*(?P<q>['\"])(?P<cmp>.*?)(?P=q)\s*)?\}"
)
_ANY_PLACEHOLDER = re.compile(r"\$\{[^}]*\}?")
FORMS_HINT = "write ${env.NAME}, ${env.NAME:-default} or ${env.NAME == 'value'}"


class InterpolationError(ValueError):
    """A placeholder that cannot be resolved; the message names it and the hint says how to fix it."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True)
class _Resolved:
    text: str
    boolean: bool | None  # set when the placeholder is a comparison


def has_placeholder(value: str) -> bool:
    """Whether `value` contains something that looks like `${...}`."""
    return "${" in value


def _resolve(match: re.Match[str], env: Mapping[str, str]) -> _Resolved:
    name = match["name"]
    current = env.get(name)
    if match["op"]:
        # A missing variable compares as not equal: `${env.CI == 'true'}` is false outside CI.
        equal = current == match["cmp"]
        result = equal if match["op"] == "==" else not equal
        return _Resolved("true" if result else "false", result)
    if current is not None:
        return _Resolved(current, None)
    if match["default"] is not None:
        return _Resolved(match["value"], None)
    raise InterpolationError(
        f"environment variable {name} is not set and ${{env.{name}}} has no default",
        f"set {name}, or give a default: ${{env.{name}:-value}}",
    )


def interpolate(value: str, env: Mapping[str, str]) -> str | bool:
    """Substitute every placeholder; a value that is only a comparison becomes a bool."""
    whole = _PLACEHOLDER.fullmatch(value.strip())
    if whole and whole["op"]:
        return bool(_resolve(whole, env).boolean)
    out: list[str] = []
    pos = 0
    for match in _PLACEHOLDER.finditer(value):
        bad = _ANY_PLACEHOLDER.search(value, pos, match.start())
        if bad:
            raise InterpolationError(f"unrecognised placeholder {bad.group(0)!r}", FORMS_HINT)
        out.append(value[pos : match.start()])
        out.append(_resolve(match, env).text)
        pos = match.end()
    bad = _ANY_PLACEHOLDER.search(value, pos)
    if bad:
        raise InterpolationError(f"unrecognised placeholder {bad.group(0)!r}", FORMS_HINT)
    out.append(value[pos:])
    return "".join(out)
