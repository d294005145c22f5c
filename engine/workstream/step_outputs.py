"""`${steps.ID.outputs.NAME}`: a dependency's recorded output in a step's tasks, tests, env, cwd, timeout.

References are checked when the file is loaded (engine/workstream/rules.py: only a step's direct or
indirect dependencies may be read) and filled when an attempt is dispatched, from the outputs the
log recorded with each dependency's `step.passed` — so a resumed run fills them exactly as the
original did.

Outputs are data from outside the workstream (an API's answer, a branch name). They never become
command text: in a shell command (a `shell` task, every acceptance test) each reference becomes a
quoted read of an environment variable holding the value, in a `python` task a shell-quoted
argument, and for a tool profile or a program (run without a shell, with an argv list) the value
itself inside the one argument it is part of. This is the compensations' machinery
(engine/saga/log.py), keyed on this placeholder.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Group 1 is `ID.outputs.NAME`; a step id may hold dots and brackets (a matrix expansion's
# `test[python=3.11]`), so the id is everything up to the last `.outputs.`.
REFERENCE = re.compile(r"\$\{\s*steps\.((?P<step>[^{}\s]+?)\.outputs\.(?P<name>[A-Za-z0-9_-]+))\s*\}")

# A for_each expansion's `${for_each.item}` and `${for_each.index}` (engine/workstream/for_each.py)
# are data like outputs, filled in the same pass as the references, so that no value is ever read
# again as a placeholder. In this pattern group 1 is `steps.ID.outputs.NAME` or `for_each.WHAT`.
FOR_EACH = re.compile(r"\$\{\s*for_each\.(item|index)\s*\}")
_WITH_FOR_EACH = re.compile(
    r"\$\{\s*(steps\.[^{}\s]+?\.outputs\.[A-Za-z0-9_-]+|for_each\.(?:item|index))\s*\}"
)
# The variables an expansion's processes get the item and its index in (its commands read them).
FOR_EACH_VARIABLES = {"for_each.item": "STEPLEDGER_ITEM", "for_each.index": "STEPLEDGER_ITEM_INDEX"}

OutputsOf = Callable[[str], Mapping[str, Any]]


def _substitute(text: str, word: Callable[[str, str], str], pattern: re.Pattern[str] = REFERENCE) -> str:
    # The saga's log module (and with it every event class) is needed only when a reference is
    # filled, not to load a workstream: imported here, loading a file stays light.
    from ..saga.log import substitute_words

    return substitute_words(text, word, pattern)


def _as_text(value: Any) -> str:
    from ..saga.log import as_text

    return as_text(value)


def split_key(key: str) -> tuple[str, str]:
    """(step id, output name) of a reference's `ID.outputs.NAME`."""
    step, _, name = key.rpartition(".outputs.")
    return step, name


def references(text: str) -> list[tuple[str, str]]:
    """The (step id, output name) pairs `text` reads, in order, once each."""
    return list(dict.fromkeys((m["step"], m["name"]) for m in REFERENCE.finditer(text)))


@dataclass
class Filler:
    """Fills the references of one attempt's fields; the shell variables it used go into `env`."""

    outputs_of: OutputsOf
    env: dict[str, str] = field(default_factory=dict)
    missing: set[str] = field(default_factory=set)  # `ID.outputs.NAME` of outputs nobody recorded
    # One variable per reference for the whole attempt: every task and test shares `env`, so
    # `x-y` in one task and `x_y` in another must not be given the same variable.
    variables: dict[str, str] = field(default_factory=dict)
    # (index, item) of a for_each expansion; its environment holds both (FOR_EACH_VARIABLES).
    for_each: tuple[int, Any] | None = None

    def __post_init__(self) -> None:
        if self.for_each is not None:
            self.env.update({variable: self._text(key) for key, variable in FOR_EACH_VARIABLES.items()})

    @property
    def _pattern(self) -> re.Pattern[str]:
        return REFERENCE if self.for_each is None else _WITH_FOR_EACH

    def _key(self, found: str) -> str:
        """`ID.outputs.NAME` of a reference, or `for_each.item|index` (what `_pattern`'s group 1 held)."""
        if self.for_each is None or found.startswith("for_each."):
            return found
        return found.removeprefix("steps.")

    def _text(self, key: str) -> str:
        if self.for_each is not None and key in FOR_EACH_VARIABLES:
            index, item = self.for_each
            return str(index) if key == "for_each.index" else _as_text(item)
        return self.value(key)

    def _variables(self, keys: list[str]) -> dict[str, str]:
        new = [key for key in keys if key not in self.variables]
        if new:
            from ..saga.log import output_env_names

            every = output_env_names([*self.variables, *new])
            taken = set(self.variables.values())
            for key in sorted(set(new)):
                variable, n = every[key], 1
                while variable in taken:  # named before this reference was seen: a suffix of its own
                    n += 1
                    variable = f"{every[key]}_{n}"
                taken.add(variable)
                self.variables[key] = variable
        return self.variables

    def reads(self, text: str) -> bool:
        """Whether `text` holds a value this filler fills from data: an output, or the item or its index."""
        return self._pattern.search(text) is not None

    def value(self, key: str) -> str:
        step, name = split_key(key)
        outputs = self.outputs_of(step)
        if name not in outputs:
            self.missing.add(key)
            return ""
        return _as_text(outputs[name])

    def data(self, text: str) -> str:
        """`text` with each reference replaced by the value itself (env values, cwd, timeout, argv)."""
        return self._pattern.sub(lambda m: self._text(self._key(m.group(1))), text)

    def cut(self, text: str) -> list[tuple[str, str]]:
        """`text` cut at its references: (the text before one, the value filled in) pairs, the last
        pair's value "". An env template so cut is finished elsewhere (env_values.py, `resolve_on_worker`)
        by interpolating each text and appending each value as it is: data never read as a template."""
        parts: list[tuple[str, str]] = []
        pos = 0
        for match in self._pattern.finditer(text):
            parts.append((text[pos : match.start()], self._text(self._key(match.group(1)))))
            pos = match.end()
        parts.append((text[pos:], ""))
        return parts

    def shell(self, text: str) -> str:
        """A shell command where each reference reads a variable holding its value, as one word."""
        keys = [self._key(m.group(1)) for m in self._pattern.finditer(text)]
        if not keys:
            return text
        outputs = [key for key in keys if key not in FOR_EACH_VARIABLES]
        names = {**self._variables(outputs), **FOR_EACH_VARIABLES}
        for key in outputs:
            self.env[names[key]] = self.value(key)

        def word(found: str, state: str) -> str:
            ref = "${" + names[self._key(found)] + "}"
            return {"": f'"{ref}"', "'": f"'\"{ref}\"'", '"': ref}[state]

        return _substitute(text, word, self._pattern)

    def python(self, text: str) -> str:
        """A python task (`module:function args`, split like a shell line): each value one argument."""

        def word(found: str, state: str) -> str:
            return f"{state}{shlex.quote(self._text(self._key(found)))}{state}"

        return _substitute(text, word, self._pattern)

    def task(self, tool: str, text: str) -> str:
        """A task for `tool`: shell words for `shell`, quoted arguments for `python`, data otherwise."""
        if tool == "shell":
            return self.shell(text)
        if tool == "python":
            return self.python(text)
        return self.data(text)
