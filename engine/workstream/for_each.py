"""Dynamic fan-out: `for_each: "${steps.list.outputs.files}"` makes one step per item of a list.

A matrix is expanded when the file is read; a for_each step's list exists only once the step it
reads has passed. So the step stays one step in the file's model (validated, planned and drawn as
one) and the reactor expands it when its turn comes (engine/run/expanding.py), recording the
items and the new ids in one `step.expanded` event. This module is the model's side of that:

- `source`: the dependency and output a for_each reads (one `${steps.ID.outputs.NAME}`, nothing else);
- `read_items`: what the recorded output says — a list to expand, nothing to do, or a refusal
  (not JSON, not a list, longer than `max_fan_out`), each with the words the log will hold;
- `expansion_ids`: `ID[0]`, `ID[1]`, ... — by position, never by value: an item is data from outside
  (a file name, an object, a 1 MB string) and must not become a stream name, a branch or a line
  of a graph; the position is short, unique when items repeat, and the same on every resume,
  since it is the recorded list's;
- `graft`: the workstream with the expansions placed after the step, and every step that waits
  for it also waiting for each of them (a step group naming it names them too);
- `check_for_each`, `check_placeholders`: the rules `validate` applies
  (engine/workstream/reference_rules.py calls them).

An expansion is the step with `for_each_index` and `for_each_item` set: `${for_each.item}` and
`${for_each.index}` in its tasks, tests, env and cwd are filled at dispatch like outputs, as
quoted variable reads in shell commands (engine/workstream/step_outputs.py), never as code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal

from stepledger.engine.workstream.model import Step, Workstream

from .limits import MAX_FAN_OUT
from .problems import Problem
from .spec import Context
from .step_outputs import FOR_EACH, REFERENCE

_SOURCE_HINT = 'write for_each: "${steps.ID.outputs.NAME}", naming a step it depends on and its list output'
_EXPANSION_ID = re.compile(r"(?P<template>.+)\[(?P<index>0|[1-9][0-9]*)\]")


def source(for_each: str) -> tuple[str, str] | None:
    """(step id, output name) of a for_each that is exactly one reference, else None."""
    match = REFERENCE.fullmatch(for_each.strip())
    return (match["step"], match["name"]) if match else None


def expansion_ids(template: str, count: int) -> list[str]:
    """The ids of a for_each step's expansions, by position: `process[0]`, `process[1]`, ..."""
    return [f"{template}[{i}]" for i in range(count)]


def template_of(step_id: str) -> tuple[str, int] | None:
    """(the for_each step, the position) an id like `process[3]` would be an expansion of."""
    match = _EXPANSION_ID.fullmatch(step_id)
    return (match["template"], int(match["index"])) if match else None


@dataclass(frozen=True)
class Reading:
    """What a for_each step's list says: `expand` its items, `skip` (nothing to do), or `refuse`."""

    verdict: Literal["expand", "skip", "refuse"]
    items: tuple[Any, ...] = ()
    why: str = ""  # a skip's reason, a refusal's one line


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number the log can hold")


def _kind(value: Any) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a text", dict: "an object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def read_items(step: Step, state: str, outputs: dict[str, Any]) -> Reading:
    """Read `step`'s list from the outputs its source step recorded (`state`: that step's state).

    A list arrives as a JSON list in the outputs file (or a python step's return value), or as
    text holding one. An output the source did not record because it was skipped means there is
    nothing to do; one a passed step did not record is an error of the workstream, said as such.
    """
    assert step.for_each is not None
    where = source(step.for_each)
    assert where is not None  # validate refused anything else
    dependency, name = where
    shown = f"steps.{dependency}.outputs.{name}"
    if name not in outputs:
        if state == "skipped":
            return Reading("skip", why=f"empty: {dependency} was skipped, so {shown} holds no list")
        why = f"for_each: {dependency} recorded no output `{name}` (it must be a JSON list)"
        return Reading("refuse", why=why)
    value = outputs[name]
    if isinstance(value, str):
        try:
            value = json.loads(value, parse_constant=_refuse_constant)
        except ValueError as error:
            start = json.dumps(outputs[name][:60]) + ("…" if len(outputs[name]) > 60 else "")
            return Reading("refuse", why=f"for_each: {shown} is not JSON ({error}): {start}")
    if not isinstance(value, list):
        return Reading("refuse", why=f"for_each: {shown} is {_kind(value)}, not a list")
    if not value:
        return Reading("skip", why=f"empty: {shown} is an empty list")
    if len(value) > step.max_fan_out:
        return Reading(
            "refuse",
            why=f"for_each: {shown} has {len(value):,} items, more than max_fan_out ({step.max_fan_out:,}); "
            f"raise max_fan_out (up to {MAX_FAN_OUT:,}) or make the list shorter",
        )
    return Reading("expand", items=tuple(value))


def expansion(template: Step, step_id: str, index: int, item: Any) -> Step:
    """The step made for `item`: the template's fields, its own id, its place and its item.

    Its `when` was decided for the template (true, or there would be no expansion).
    """
    return replace(template, id=step_id, for_each=None, for_each_index=index, for_each_item=item, when=None)


def graft(ws: Workstream, template_id: str, items: list[Any], ids: list[str]) -> Workstream:
    """`ws` with the for_each step's expansions after it; whoever waits for it waits for them too."""
    template = ws.step(template_id)
    made = [expansion(template, sid, i, item) for i, (sid, item) in enumerate(zip(ids, items, strict=True))]
    steps: list[Step] = []
    for step in ws.steps:
        if template_id in step.requires:
            step = replace(step, requires=(*step.requires, *ids))
        steps.append(step)
        if step.id == template_id:
            steps.extend(made)
    groups = tuple(
        replace(g, steps=(*g.steps, *ids)) if template_id in g.steps else g for g in ws.step_groups
    )
    return replace(ws, steps=tuple(steps), step_groups=groups)


# --- validate ---------------------------------------------------------------------------------


def check_placeholders(step: Step, texts: Iterable[tuple[str, str]], ctx: Context) -> None:
    """`${for_each...}` in `texts` (the step's fields as (JSON path, text)) of a step without for_each:
    nothing would fill it. A compensation's is refused with the other run values it cannot read
    (engine/workstream/reference_rules.py)."""
    if step.for_each is not None:
        return
    for where, text in texts:
        match = FOR_EACH.search(text)
        if match is not None:
            message = f"${{for_each.{match.group(1)}}} is filled only in a step with for_each"
            hint = 'add for_each: "${steps.ID.outputs.NAME}" to the step, or remove the placeholder'
            ctx.problems.append(Problem(message, where, ctx.file, step.id, hint))


def check_for_each(
    step: Step, prefix: str, templates: set[str], matrix_said: set[str], ctx: Context
) -> tuple[str, str] | None:
    """Check `step`'s id against the ids the for_each steps (`templates`) give their expansions and,
    for a for_each step, its list: the (step, output) it reads, to check like any `${steps...}`
    (the list's step must be a direct or indirect dependency). `matrix_said`: the matrix steps
    already told they cannot have for_each (one line for the step as written, not per combination)."""
    expanded_from = template_of(step.id)
    if expanded_from and expanded_from[0] in templates:
        message = f"step id `{step.id}` is the id an expansion of for_each step `{expanded_from[0]}` gets"
        hint = "rename the step: for_each steps name their expansions ID[0], ID[1], ..."
        ctx.problems.append(Problem(message, f"{prefix}id", ctx.file, step.id, hint))
    if step.for_each is None:
        return None
    if step.matrix:
        base = step.id.rpartition("[")[0] or step.id
        if base not in matrix_said:
            matrix_said.add(base)
            message = "a step cannot have both matrix and for_each"
            hint = "split it: a matrix step that writes the list, and a for_each step that depends on it"
            ctx.problems.append(Problem(message, f"{prefix}for_each", ctx.file, step.id, hint))
        return None
    reference = source(step.for_each)
    if reference is None:
        message = f"for_each must be one reference to a list output, got {step.for_each[:80]!r}"
        ctx.problems.append(Problem(message, f"{prefix}for_each", ctx.file, step.id, _SOURCE_HINT))
    return reference


def reads_expansion(ref_step: str, templates: set[str], ancestors: set[str]) -> bool:
    """Whether `${steps.ref_step...}` reads an expansion (`process[2]`) of a for_each step it waits for."""
    expanded_from = template_of(ref_step)
    return bool(expanded_from and expanded_from[0] in templates and expanded_from[0] in ancestors)
