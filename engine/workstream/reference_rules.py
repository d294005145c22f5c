"""The rule for `${steps.ID.outputs.NAME}`: a step reads only the outputs of steps it waits for.

A step that read a step it does not depend on (directly or through others) could start before that
step passed, and would read nothing — or, on another day, something. `validate` says so, naming the
field by its JSON path.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from stepledger.engine.workstream.model import Step

from .expressions import ExpressionError, parse
from .for_each import check_for_each, check_placeholders, reads_expansion
from .problems import Problem, did_you_mean, json_path
from .spec import Context
from .step_outputs import references, split_key

_RUN_VALUE = re.compile(r"\$\{\s*(steps|params|matrix|for_each)\.")
_PARAM_IN_COMMAND = re.compile(r"\$\{\s*params\.([A-Za-z_][A-Za-z0-9_]*)")


def _fields(step: Step, prefix: str) -> Iterator[tuple[str, str]]:
    """(JSON path, text) of each field of `step` filled when an attempt starts, but its timeout."""
    for j, task in enumerate(step.tasks):
        yield f"{prefix}tasks[{j}]", task
    for j, test in enumerate(step.acceptance_tests):
        yield f"{prefix}acceptance_tests[{j}]", test
    for name, value in step.env.items():
        yield prefix + json_path(["env", name]), value
    if step.cwd:
        yield f"{prefix}cwd", step.cwd


def _ancestors(step: Step, by_id: dict[str, Step]) -> set[str]:
    """Every step `step` waits for, directly or indirectly."""
    seen: set[str] = set()
    todo = list(step.requires)
    while todo:
        sid = todo.pop()
        if sid in seen or sid not in by_id:
            continue
        seen.add(sid)
        todo.extend(by_id[sid].requires)
    return seen


def _params_in_commands(step: Step, prefix: str, ctx: Context) -> None:
    # Tasks and tests are shell commands, never interpolated at load time: a parameter spliced in
    # would be code. It reaches them as data through the step's env.
    commands = [(f"{prefix}tasks[{j}]", t) for j, t in enumerate(step.tasks)]
    commands += [(f"{prefix}acceptance_tests[{j}]", t) for j, t in enumerate(step.acceptance_tests)]
    for where, text in commands:
        match = _PARAM_IN_COMMAND.search(text)
        if match:
            name = match.group(1)
            message = f"${{params.{name}}} is not filled in a command"
            var = name.upper()
            hint = f'pass it through env — "env": {{"{var}": "${{params.{name}}}"}} — and write "${var}"'
            ctx.problems.append(Problem(message, where, ctx.file, step.id, hint))


def _condition_references(step: Step, where: str, ctx: Context) -> list[tuple[str, tuple[str, str]]]:
    """Check `when` parses and names declared parameters and matrix keys; its step references."""
    try:
        expression = parse(step.when or "")
    except ExpressionError as error:
        hint = "write comparisons such as params.target == 'prod' (==, !=, in, not in, and, or, not, ( ))"
        ctx.problems.append(Problem(f"cannot read the condition: {error}", where, ctx.file, step.id, hint))
        return []
    found = []
    declared = set(ctx.params) | ctx.refused_params
    for namespace, name in expression.references():
        if namespace == "steps":
            found.append((where, split_key(name)))
        elif namespace == "params" and name not in declared:
            hint = did_you_mean(name, declared) or "declare it under `parameters`"
            ctx.problems.append(Problem(f"params.{name} names no parameter", where, ctx.file, step.id, hint))
        elif namespace == "matrix" and name not in step.matrix:
            hint = "matrix.KEY reads a key of the step's own `matrix`"
            ctx.problems.append(
                Problem(f"matrix.{name} is not a key of this step's matrix", where, ctx.file, step.id, hint)
            )
    return found


def _in_compensation(step: Step, prefix: str, ctx: Context) -> None:
    # A compensation runs during a rollback, when dependencies may be undone already: it reads its
    # own step's outputs (${step_output.NAME}) and nothing else of the run.
    comp = step.compensation
    if comp is None:
        return
    texts = [(f"{prefix}compensation.action", comp.action)]
    texts += [(f"{prefix}compensation.parameters", v) for v in comp.parameters.values() if isinstance(v, str)]
    for where, text in texts:
        match = _RUN_VALUE.search(text)
        if match:
            message = f"${{{match.group(1)}.…}} is not filled in a compensation"
            hint = "a compensation reads its own step's outputs: ${step_output.NAME}"
            ctx.problems.append(Problem(message, where, ctx.file, step.id, hint))


def check_references(steps: list[Step], paths: list[str], ctx: Context) -> None:
    """Each reference names a known step that `step` depends on; problems name the field's path."""
    by_id = {s.id: s for s in steps}
    templates = {s.id for s in steps if s.for_each is not None}
    matrix_said: set[str] = set()
    for step, path in zip(steps, paths, strict=True):
        prefix = f"{path}." if path else ""
        _params_in_commands(step, prefix, ctx)
        _in_compensation(step, prefix, ctx)
        texts = list(_fields(step, prefix))
        check_placeholders(step, texts, ctx)  # a timeout's `${for_each...}` its format refuses already
        if isinstance(step.timeout, str):
            texts.append((f"{prefix}timeout", step.timeout))
        reads_list = check_for_each(step, prefix, templates, matrix_said, ctx)
        found = [(where, ref) for where, text in texts for ref in references(text)]
        if step.when is not None:
            found += _condition_references(step, f"{prefix}when", ctx)
        if reads_list is not None:
            found.append((f"{prefix}for_each", reads_list))
        if not found:
            continue
        ancestors = _ancestors(step, by_id)
        for where, (ref_step, name) in found:
            shown = f"${{steps.{ref_step}.outputs.{name}}}"
            if ref_step in templates and ref_step in ancestors:
                message = f"{shown}: `{ref_step}` is a for_each step, which records no outputs of its own"
                hint = f"each expansion records its own: ${{steps.{ref_step}[0].outputs.{name}}}, ..."
            elif reads_expansion(ref_step, templates, ancestors):
                continue  # `process[2]`: known once the run expands it; reads as empty if it has no item 2
            elif ref_step not in by_id:
                hint = did_you_mean(ref_step, by_id) or "name one of the workstream's step ids"
                message = f"{shown} reads unknown step `{ref_step}`"
            elif ref_step == step.id:
                message = f"{shown}: a step cannot read its own outputs"
                hint = "outputs are recorded when the step passes; read them in a dependent step"
            elif ref_step not in ancestors:
                message = f"{shown} reads step `{ref_step}`, which `{step.id}` does not depend on"
                hint = f'add "{ref_step}" to depends_on (directly or through a step that depends on it)'
            else:
                continue
            ctx.problems.append(Problem(message, where, ctx.file, step.id, hint))
