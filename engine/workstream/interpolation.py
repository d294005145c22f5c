"""`${env.NAME}`, `${env.NAME:-default}` and `${env.NAME == 'value'}` in the fields that allow them.

`${params.NAME}` (and `${params.NAME == 'value'}`) read the run's parameters the same way
(engine/workstream/parameters.py). `${steps.ID.outputs.NAME}` is left as written: it is filled when
an attempt is dispatched (engine/workstream/step_outputs.py).

Also what keeps the environment's values out of sight: which variable names look secret, and the
wording of problems, which name a placeholder and its variables but never the value it resolved to.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# One placeholder; anything else that starts with `${` in an interpolated field is an error,
# so a typo never passes through as a literal string.
_PLACEHOLDER = re.compile(
    r"\$\{\s*(?P<ns>env|params)\.(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*"
    r"(?:(?P<default>:-(?P<value>[^}]*))|(?P<op>==|!=)\s*(?P<q>['\"])(?P<cmp>.*?)(?P=q)\s*)?\}"
)
# `${worktree_path}`, `${run_branch}` and `${step_branch}` are filled when an attempt is built
# (engine/run/attempt_specs.py), not when the file is loaded: they pass through untouched here.
# So are a for_each expansion's `${for_each.item}` and `${for_each.index}` (engine/workstream/for_each.py).
RUNTIME_PLACEHOLDERS = ("worktree_path", "run_branch", "step_branch", "for_each.item", "for_each.index")
_RUNTIME_NAME = "|".join(map(re.escape, RUNTIME_PLACEHOLDERS))
_RUNTIME = re.compile(r"\$\{\s*(" + _RUNTIME_NAME + r")\s*\}")
_ANY_PLACEHOLDER = re.compile(r"\$\{(?!\s*(?:" + _RUNTIME_NAME + r")\s*\})[^}]*\}?")
FORMS_HINT = "write ${env.NAME}, ${env.NAME:-default}, ${env.NAME == 'value'} or ${params.NAME}"
STEP_REFERENCE = re.compile(r"\$\{\s*steps\.[^{}\s]+?\.outputs\.[A-Za-z0-9_-]+\s*\}")

# Variables whose names match these (case-insensitively) are taken to hold secrets: they may only
# feed a step's `env` (recorded as the template, handed to the step's process), never a value that
# is shown or recorded, such as a folder name, a timeout or a worker count.
SECRET_NAME_PATTERNS = ("*PASSWORD*", "*PASSWD*", "*SECRET*", "*TOKEN*", "*KEY*", "*CREDENTIAL*")
SECRET_NAMES_VAR = "STEPLEDGER_SECRET_NAMES"  # more patterns, comma- or space-separated


class InterpolationError(ValueError):
    """A placeholder that cannot be resolved; the message names it and the hint says how to fix it."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


class UnsetVariable(InterpolationError):
    """`${env.NAME}` for a variable the environment lacks, with no default."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"environment variable {name} is not set and ${{env.{name}}} has no default",
            f"set {name}, or give a default: ${{env.{name}:-value}}",
        )
        self.name = name


class UnknownParameter(InterpolationError):
    """`${params.NAME}` for a parameter without a value: undeclared, or declared and refused."""

    def __init__(self, name: str, params: Mapping[str, Any]) -> None:
        known = ", ".join(sorted(params)) or "none are declared"
        super().__init__(
            f"${{params.{name}}} names no parameter of the workstream",
            f"declare it under `parameters` (declared: {known})",
        )
        self.name = name


@dataclass(frozen=True)
class _Resolved:
    text: str
    boolean: bool | None  # set when the placeholder is a comparison


def has_placeholder(value: str) -> bool:
    """Whether `value` contains something that looks like `${...}`."""
    return "${" in value


def secret_patterns(env: Mapping[str, str]) -> tuple[str, ...]:
    """The built-in patterns of secret-looking names plus those listed in STEPLEDGER_SECRET_NAMES."""
    extra = env.get(SECRET_NAMES_VAR, "").replace(",", " ").split()
    return SECRET_NAME_PATTERNS + tuple(extra)


def looks_secret(name: str, env: Mapping[str, str]) -> bool:
    """Whether the variable `name` looks like it holds a secret (its name matches a pattern)."""
    upper = name.upper()
    return any(fnmatch.fnmatchcase(upper, pattern.upper()) for pattern in secret_patterns(env))


def variables(value: str) -> list[str]:
    """The names of the environment variables the placeholders of `value` read, in order, once each."""
    names = (match["name"] for match in _PLACEHOLDER.finditer(value) if match["ns"] == "env")
    return list(dict.fromkeys(names))


def parameters(value: str) -> list[str]:
    """The names of the run parameters the placeholders of `value` read, in order, once each."""
    names = (match["name"] for match in _PLACEHOLDER.finditer(value) if match["ns"] == "params")
    return list(dict.fromkeys(names))


def secret_variables(value: str, env: Mapping[str, str]) -> list[str]:
    """The variables of `value`'s placeholders whose names look secret."""
    return [name for name in variables(value) if looks_secret(name, env)]


def refused_secret(value: str, names: list[str]) -> tuple[str, str]:
    """Message and hint for a secret-looking variable used where its value would be shown."""
    listed = " and ".join(names)
    message = (
        f"{value!r} reads {listed}, whose name looks secret: only a step's `env` may read such variables"
    )
    hint = (
        f"hand it to the step through `env` (the step reads ${names[0]}); a value here ends up in "
        "folder names, messages or the event log"
    )
    return message, hint


def unusable(value: str, expected: str, env: Mapping[str, str]) -> tuple[str, str]:
    """Message and hint for a placeholder that resolves to something of the wrong type.

    They name the template and its variables, never what the environment holds: it may be a secret.
    """
    whole = _PLACEHOLDER.fullmatch(value.strip())
    if whole and whole["op"]:
        return f"{value!r} is a comparison (true or false), not {expected}", "write ${env.NAME} here"
    names = variables(value)
    if not names:  # no environment variable: a run parameter, or a value known only at dispatch
        runtime = dict.fromkeys(f"${{{m.group(1)}}}" for m in _RUNTIME.finditer(value))
        if runtime:
            said = " and ".join(runtime)
            return f"{value!r} does not give {expected}: {said} is filled only when an attempt starts", (
                "write the value itself here"
            )
        return (
            f"{value!r} does not give {expected}",
            "give the parameter a value that does (--param NAME=VALUE)",
        )
    set_names = " and ".join(name for name in names if name in env)
    if not set_names:
        unset = " and ".join(names)
        return f"{value!r} does not give {expected}: {unset} is not set and the default is not one", (
            "change the default after `:-`"
        )
    message = f"{value!r} does not give {expected} (what {set_names} holds is not shown: it may be secret)"
    return message, f"check what {set_names} holds"


def _resolve(match: re.Match[str], env: Mapping[str, str], params: Mapping[str, Any]) -> _Resolved:
    name = match["name"]
    if match["ns"] == "params":
        if name not in params:
            raise UnknownParameter(name, params)
        current: str | None = param_text(params[name])
    else:
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
    raise UnsetVariable(name)


def param_text(value: Any) -> str:
    """A parameter's value as text: booleans as true/false, numbers as written, strings as they are."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _refuse_unrecognised(value: str, start: int, end: int) -> None:
    # A step output reference is left in place for dispatch; anything else is a typo.
    for bad in _ANY_PLACEHOLDER.finditer(value, start, end):
        if not STEP_REFERENCE.fullmatch(bad.group(0)):
            raise InterpolationError(f"unrecognised placeholder {bad.group(0)!r}", FORMS_HINT)


def interpolate(value: str, env: Mapping[str, str], params: Mapping[str, Any] | None = None) -> str | bool:
    """Substitute every placeholder; a value that is only a comparison becomes a bool."""
    params = params or {}
    whole = _PLACEHOLDER.fullmatch(value.strip())
    if whole and whole["op"]:
        return bool(_resolve(whole, env, params).boolean)
    out: list[str] = []
    pos = 0
    for match in _PLACEHOLDER.finditer(value):
        _refuse_unrecognised(value, pos, match.start())
        if match["default"] is not None and "${" in match["value"]:
            # A default is plain text, ending at the first `}`: `${env.X:-${steps.a.outputs.y}}`
            # would give X's value with a stray `}`, or an output reference cut in two.
            raise InterpolationError(
                f"the default of {match.group(0)!r}… holds a placeholder, and a default is plain text",
                'write a plain default, or give the step both values and choose in its command: "${A:-$B}"',
            )
        out.append(value[pos : match.start()])
        out.append(_resolve(match, env, params).text)
        pos = match.end()
    _refuse_unrecognised(value, pos, len(value))
    out.append(value[pos:])
    return "".join(out)
