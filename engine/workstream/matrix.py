"""Matrix steps: `matrix: {python: ["3.11", "3.12"], db: [sqlite, pg]}` makes one step per combination.

The expansion happens when the file is read, before any field is checked, so every expansion is an
ordinary step from then on (checked, planned, drawn, run and recorded like the others):

- its id is `ID[key=value,...]`, keys in the order written (`test[python=3.12,db=pg]`);
- `${matrix.KEY}` in any of its strings is replaced by the value (the file's author wrote the
  values, so they are text of the file, not data from outside); `when` reads `matrix.KEY` itself;
- a step that depends on `ID` depends on every expansion, and a step group naming `ID` names them all.

Problems found in an expansion are reported at the path of the step as written (`steps[1]...`),
with the expansion's id.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field, replace
from typing import Any

from .interpolation import param_text
from .limits import MAX_MATRIX_STEPS
from .problems import Problem
from .spec import Context

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_REFERENCE = re.compile(r"\$\{\s*matrix\.([A-Za-z_][A-Za-z0-9_-]*)\s*\}")
_STEP_PATH = re.compile(r"^((?:phases\[\d+\]\.)?steps\[\d+\])")


@dataclass
class Expansion:
    """What expanding a file's matrices did: the new data and how to name places in the file."""

    data: dict[str, Any]
    paths: dict[str, str] = field(default_factory=dict)  # expanded step path → path as written
    expanded: dict[str, list[str]] = field(default_factory=dict)  # matrix step id → its expansions' ids

    def restore_paths(self, ctx: Context) -> None:
        """Name each problem found in an expansion by the path of the step as written."""
        for i, problem in enumerate(ctx.problems):
            match = _STEP_PATH.match(problem.path)
            if match and self.paths.get(match.group(1), match.group(1)) != match.group(1):
                path = self.paths[match.group(1)] + problem.path[match.end() :]
                ctx.problems[i] = replace(problem, path=path)


def _substitute(value: Any, values: dict[str, str], unknown: set[str]) -> Any:
    if isinstance(value, str):

        def one(match: re.Match[str]) -> str:
            if match.group(1) not in values:
                unknown.add(match.group(1))
                return match.group(0)
            return values[match.group(1)]

        return _REFERENCE.sub(one, value)
    if isinstance(value, dict):
        return {k: _substitute(v, values, unknown) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, values, unknown) for v in value]
    return value


def _combinations(matrix: Any, path: str, step_id: Any, ctx: Context) -> list[dict[str, str]] | None:
    """The matrix's combinations, in order; None (and a problem) when it is not a usable matrix."""

    def refuse(message: str, hint: str) -> None:
        ctx.problems.append(
            Problem(message, path, ctx.file, step_id if isinstance(step_id, str) else None, hint)
        )

    shape = 'write matrix: {KEY: [value, ...]}, e.g. {"python": ["3.11", "3.12"]}'
    if not isinstance(matrix, dict) or not matrix:
        refuse("a matrix must be an object of non-empty lists", shape)
        return None
    for key, values in matrix.items():
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            refuse(f"matrix key {key!r} is not a name", "use letters, digits, _ and -")
            return None
        scalars = isinstance(values, list) and all(isinstance(v, str | int | float | bool) for v in values)
        if not scalars or not values:
            refuse(f"matrix.{key} must be a non-empty list of strings, numbers or booleans", shape)
            return None
        texts = [param_text(v) for v in values]
        if len(set(texts)) != len(texts):
            refuse(f"matrix.{key} lists a value twice", "each value makes one step: list it once")
            return None
    keys = list(matrix)
    return [
        dict(zip(keys, (param_text(v) for v in combo), strict=True))
        for combo in itertools.product(*matrix.values())
    ]


def _expand_list(steps: Any, base: str, out: Expansion, ctx: Context, budget: list[int]) -> Any:
    if not isinstance(steps, list):
        return steps
    expanded: list[Any] = []
    for i, raw in enumerate(steps):
        if not (isinstance(raw, dict) and "matrix" in raw):
            out.paths[f"{base}[{len(expanded)}]"] = f"{base}[{i}]"
            expanded.append(raw)
            continue
        step_id = raw.get("id")
        combos = _combinations(raw["matrix"], f"{base}[{i}].matrix", step_id, ctx)
        body = {k: v for k, v in raw.items() if k != "matrix"}
        if combos is None or not isinstance(step_id, str):
            out.paths[f"{base}[{len(expanded)}]"] = f"{base}[{i}]"
            expanded.append(body)
            continue
        budget[0] -= len(combos)
        if budget[0] < 0:
            message = f"matrix step `{step_id}` takes the file past {MAX_MATRIX_STEPS:,} expanded steps"
            ctx.problems.append(
                Problem(message, f"{base}[{i}].matrix", ctx.file, step_id, "use fewer values")
            )
            return steps
        ids = []
        for values in combos:
            unknown: set[str] = set()
            # The step's own `when` reads `matrix.KEY` when it is decided; a `when` deeper down (an
            # env variable so named) is ordinary text and is filled like the rest.
            copy = {k: v if k == "when" else _substitute(v, values, unknown) for k, v in body.items()}
            copy["id"] = f"{step_id}[{','.join(f'{k}={v}' for k, v in values.items())}]"
            ctx.matrix_values[copy["id"]] = values  # Step.matrix, for `when`
            for key in sorted(unknown):
                message = f"${{matrix.{key}}} is not a key of the step's matrix"
                ctx.problems.append(
                    Problem(message, f"{base}[{i}]", ctx.file, copy["id"], f"keys: {', '.join(values)}")
                )
            out.paths[f"{base}[{len(expanded)}]"] = f"{base}[{i}]"
            expanded.append(copy)
            ids.append(copy["id"])
        out.expanded[step_id] = ids
    return expanded


def _rename(names: Any, expanded: dict[str, list[str]]) -> Any:
    if not isinstance(names, list):
        return names
    return [
        new for name in names for new in (expanded.get(name, [name]) if isinstance(name, str) else [name])
    ]


def _depending_on_expansions(steps: Any, expanded: dict[str, list[str]]) -> Any:
    """Copies of the steps whose depends_on names a matrix step, naming its expansions instead."""
    if not isinstance(steps, list):
        return steps
    return [
        {**s, "depends_on": _rename(s["depends_on"], expanded)}
        if isinstance(s, dict) and "depends_on" in s
        else s
        for s in steps
    ]


def expand(data: dict[str, Any], ctx: Context) -> Expansion:
    """`data` with every matrix step replaced by its expansions (problems with a matrix go to `ctx`)."""
    has_matrix = any(
        isinstance(s, dict) and "matrix" in s
        for steps in [
            data.get("steps"),
            *[p.get("steps") for p in data.get("phases") or [] if isinstance(p, dict)],
        ]
        if isinstance(steps, list)
        for s in steps
    )
    out = Expansion(data)
    if not has_matrix:
        return out
    budget = [MAX_MATRIX_STEPS]
    new = dict(data)
    new["steps"] = _expand_list(data.get("steps"), "steps", out, ctx, budget)
    if isinstance(data.get("phases"), list):
        new["phases"] = [
            {**p, "steps": _expand_list(p.get("steps"), f"phases[{j}].steps", out, ctx, budget)}
            if isinstance(p, dict)
            else p
            for j, p in enumerate(data["phases"])
        ]
    if "steps" not in data:
        del new["steps"]
    if out.expanded:
        if "steps" in new:
            new["steps"] = _depending_on_expansions(new["steps"], out.expanded)
        if isinstance(new.get("phases"), list):
            new["phases"] = [
                {**p, "steps": _depending_on_expansions(p.get("steps"), out.expanded)}
                if isinstance(p, dict)
                else p
                for p in new["phases"]
            ]
        if isinstance(new.get("step_groups"), list):
            new["step_groups"] = [
                {**g, "steps": _rename(g.get("steps"), out.expanded)} if isinstance(g, dict) else g
                for g in new["step_groups"]
            ]
    out.data = new
    return out
