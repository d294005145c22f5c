"""The rules that need the whole workstream: ids, dependencies, cycles, groups and shared files."""

from __future__ import annotations

import posixpath
import re
from collections import defaultdict
from dataclasses import replace

from stepledger.engine.workstream.model import Step, Workstream

from .building import Draft
from .graph import acyclic_part, concurrent_pairs, cycle_indices, format_cycle, topo_indices
from .problems import Problem, did_you_mean
from .reference_rules import check_references
from .spec import Context

_PYTHON_TARGET = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
CYCLE_HINT = "each arrow points from a step to one that waits for it; remove one of these dependencies"


def _add(ctx: Context, message: str, path: str, step_id: str | None = None, hint: str | None = None) -> None:
    ctx.problems.append(Problem(message, path, ctx.file, step_id, hint))


def _duplicates(ids: list[str], paths: list[str], what: str, ctx: Context) -> None:
    first: dict[str, str] = {}
    for step_id, path in zip(ids, paths, strict=True):
        where = f"{path}.id" if path else "id"
        if step_id in first:
            hint = f"the first is at {first[step_id] or 'the top level'}; give each {what} its own id"
            _add(ctx, f"duplicate {what} id `{step_id}`", where, step_id, hint)
        else:
            first[step_id] = path


def _phase_requires(draft: Draft, ctx: Context) -> dict[str, tuple[str, ...]]:
    """Steps each phase waits for (every step of the phases it depends on), checking phase ids."""
    phases = draft.phases
    ids = [p.id for p in phases]
    _duplicates(ids, [p.path for p in phases], "phase", ctx)
    known = set(ids)
    for phase in phases:
        for j, dep in enumerate(phase.depends_on):
            if dep not in known:
                hint = did_you_mean(dep, known) or "name one of the phases' ids"
                _add(ctx, f"depends on unknown phase `{dep}`", f"{phase.path}.depends_on[{j}]", None, hint)
    preds = [[ids.index(d) for d in p.depends_on if d in known] for p in phases]
    for cycle in cycle_indices(preds):
        path = phases[cycle[0]].path + ".depends_on"
        _add(ctx, f"phase dependency cycle: {format_cycle([ids[i] for i in cycle])}", path, None, CYCLE_HINT)
    steps_of = {p.id: p.step_ids for p in phases}
    return {p.id: tuple(s for d in p.depends_on for s in steps_of.get(d, ())) for p in phases}


def _requires(draft: Draft, ctx: Context) -> list[Step]:
    steps = list(draft.workstream.steps)
    known = {s.id for s in steps}
    by_phase = _phase_requires(draft, ctx) if draft.phases else {}
    out = []
    for step, path in zip(steps, draft.step_paths, strict=True):
        prefix = f"{path}." if path else ""
        for j, dep in enumerate(step.depends_on):
            if dep not in known:
                hint = did_you_mean(dep, known) or "name one of the workstream's step ids"
                _add(ctx, f"depends on unknown step `{dep}`", f"{prefix}depends_on[{j}]", step.id, hint)
        wanted = [d for d in step.depends_on if d in known] + list(by_phase.get(step.phase or "", ()))
        # The steps were built a moment ago by build() and nothing else holds them yet, so setting
        # the field in place is safe and spares 10,000 dataclasses.replace() calls on big files.
        object.__setattr__(step, "requires", tuple(dict.fromkeys(wanted)))
        out.append(step)
    return out


def _groups(ws: Workstream, ctx: Context) -> None:
    known = {s.id for s in ws.steps}
    _duplicates(
        [g.id for g in ws.step_groups],
        [f"step_groups[{i}]" for i in range(len(ws.step_groups))],
        "group",
        ctx,
    )
    for i, group in enumerate(ws.step_groups):
        for j, step_id in enumerate(group.steps):
            if step_id not in known:
                hint = did_you_mean(step_id, known) or "name one of the workstream's step ids"
                _add(
                    ctx,
                    f"step group `{group.id}` names unknown step `{step_id}`",
                    f"step_groups[{i}].steps[{j}]",
                    None,
                    hint,
                )


def _python_tasks(ws: Workstream, paths: list[str], ctx: Context) -> None:
    """The `python` tool calls `module:function [arg ...]`; anything else would fail only at run time."""
    hint = "write it as module:function [arg ...], e.g. mypkg.tasks:build --fast"
    for step, path in zip(ws.steps, paths, strict=True):
        prefix = f"{path}." if path else ""
        if step.tool == "python":
            for j, task in enumerate(step.tasks):
                if not _PYTHON_TARGET.fullmatch(task.strip().partition(" ")[0]):
                    _add(
                        ctx,
                        f"python task {task!r} is not module:function",
                        f"{prefix}tasks[{j}]",
                        step.id,
                        hint,
                    )
        comp = step.compensation
        if (
            comp is not None
            and comp.tool == "python"
            and not _PYTHON_TARGET.fullmatch(comp.action.partition(" ")[0])
        ):
            message = f"python compensation {comp.action!r} is not module:function"
            _add(ctx, message, f"{prefix}compensation.action", step.id, hint)


def _normalised(path: str, cwd: str | None) -> str:
    # files_scope is relative to the step's cwd (as its tool sees it); compare from the run's directory.
    return posixpath.normpath(posixpath.join(cwd or "", path.replace("\\", "/")))


def _file_conflicts(
    ws: Workstream,
    preds: list[list[int]],
    order: list[int],
    paths: list[str],
    ctx: Context,
    deadlocked: list[list[int]],
) -> None:
    """Two steps that may run at once (no dependency path between them) must not share a file."""
    if ws.execution.serialize_conflicting_files or ws.execution.worker_limit == 1:
        return
    holders: dict[str, list[int]] = defaultdict(list)
    for i, step in enumerate(ws.steps):
        for name in dict.fromkeys(_normalised(f, step.cwd) for f in step.files_scope):
            holders[name].append(i)
    shared = [(name, idx) for name, idx in holders.items() if len(idx) > 1]
    index = {s.id: i for i, s in enumerate(ws.steps)}
    sequential = [[index[s] for s in g.steps if s in index] for g in ws.step_groups if g.limit == 1]
    sequential += deadlocked  # steps of one cycle never run at all, let alone together
    hint = 'add a depends_on between them, or set "execution.serialize_conflicting_files": true'
    buckets = [idx for _, idx in shared]
    for b, pairs, total in concurrent_pairs(preds, order, buckets, sequential):
        name = shared[b][0]
        for first, second in pairs:
            a, z = ws.steps[first], ws.steps[second]
            message = f"steps `{a.id}` and `{z.id}` may run at the same time and both touch `{name}`"
            where = f"{paths[second]}.files_scope" if paths[second] else "files_scope"
            _add(ctx, message, where, z.id, hint)
        if total > len(pairs):
            _add(
                ctx,
                f"… and {total - len(pairs)} more pairs of concurrent steps touch `{name}`",
                "",
                None,
                hint,
            )


def apply_rules(draft: Draft, ctx: Context) -> Workstream:
    """Check ids, dependencies, cycles, groups and shared files; return the model with `requires` set."""
    ws = draft.workstream
    _duplicates([s.id for s in ws.steps], draft.step_paths, "step", ctx)
    steps = _requires(draft, ctx)
    ws = replace(ws, steps=tuple(steps))
    _groups(ws, ctx)
    _python_tasks(ws, draft.step_paths, ctx)
    check_references(steps, draft.step_paths, ctx)
    index: dict[str, int] = {}
    for i, step in enumerate(steps):
        index.setdefault(step.id, i)
    preds = [[index[d] for d in s.requires] for s in steps]
    order = topo_indices(preds)
    if order is None:
        for cycle in cycle_indices(preds):
            path = draft.step_paths[cycle[0]]
            where = f"{path}.depends_on" if path else "depends_on"
            shown = format_cycle([steps[i].id for i in cycle])
            _add(ctx, f"dependency cycle: {shown}", where, steps[cycle[0]].id, CYCLE_HINT)
        # Go on with the rest of the graph so the shared-file rule still reports its problems too.
        preds, deadlocked = acyclic_part(preds)
        order = topo_indices(preds)
        assert order is not None  # without the edges inside strong components the graph is a DAG
    else:
        deadlocked = []
    _file_conflicts(ws, preds, order, draft.step_paths, ctx, deadlocked)
    return ws
