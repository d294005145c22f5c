"""A run's git isolation as the reactor uses it: where each attempt runs, and what a pass commits and merges.

`execution.isolation`:
- "none": every step runs in the run's folder (no git at all);
- "worktree": each attempt runs in a fresh worktree of its own step branch, made from the
  integration branch as it is when the attempt starts; a pass commits what the tool left and
  merges the step branch into the integration branch, one merge at a time, in completion order;
- "workstream": every step runs in the integration branch's worktree; a pass commits what is
  left there. The run is isolated from the checkout, its steps are not isolated from each other.

The reactor calls these synchronously in its own thread, so merges are serial by construction. It
records the events they return; each operation is idempotent (operations.py), so a crash between
an operation and its event is repaired by the same call on resume.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Literal

from stepledger.events import (
    Event,
    RunBranchCreated,
    RunBranchMerged,
    WorktreeCommitted,
    WorktreeCreated,
    WorktreeMergeConflicted,
    WorktreeMerged,
    WorktreesCleanedUp,
    WorktreeScopeViolated,
)

from ..errors import UserInputError
from ..execution.spec import AttemptResult, AttemptSpec
from ..workstream.model import Step, Workstream
from . import operations as ops
from .git import GitError, git_available, head_commit, out, toplevel, valid_branch
from .names import RUN_PREFIX, RUN_WORKTREE, STEP_PREFIX, RunNames, plain_name, step_slug
from .scope import outside_scope, scope_roots

_SHELL_SAFE = re.compile(r"[A-Za-z0-9_./@:+,=-]+")  # a path that needs no quoting in a shell command
_RUNTIME = re.compile(r"\$\{\s*(worktree_path|run_branch|step_branch)\s*\}")


class IsolationSetupError(UserInputError):
    """The run asks for git isolation its folder cannot give; the message says how to fix it."""


def fill_runtime(text: str, values: Mapping[str, str]) -> str:
    """`text` with `${worktree_path}`, `${run_branch}` and `${step_branch}` filled in."""
    if "${" not in text:
        return text
    return _RUNTIME.sub(lambda m: values[m.group(1)], text)


def unisolated_values(workdir: str | Path) -> dict[str, str]:
    """The three placeholders' values for a run without isolation in `workdir`."""
    return {"worktree_path": str(workdir), "run_branch": "", "step_branch": ""}


def filled_spec(spec: AttemptSpec, values: Mapping[str, str]) -> AttemptSpec:
    """`spec` with the three placeholders filled in its tasks, tests and env (as it is: none)."""
    tasks = tuple(fill_runtime(t, values) for t in spec.tasks)
    tests = tuple(fill_runtime(t, values) for t in spec.acceptance_tests)
    env = {name: fill_runtime(v, values) for name, v in spec.env.items()}
    if tasks == spec.tasks and tests == spec.acceptance_tests and env == spec.env:
        return spec
    return replace(spec, tasks=tasks, acceptance_tests=tests, env=env)


def check_isolation(workstream: Workstream, workdir: str | Path, run_id: str, merge_into: str | None) -> None:
    """Refuse, before anything is recorded, a run whose isolation cannot work in `workdir`."""
    mode = workstream.execution.isolation
    merge_into = merge_into or workstream.execution.merge_into
    for step in workstream.steps:
        if step.cwd and _RUNTIME.search(step.cwd):
            raise IsolationSetupError(
                f"step {step.id!r}: cwd {step.cwd!r} uses a placeholder filled per attempt; a cwd is "
                "already relative to the step's worktree: write the path within it"
            )
    if mode == "none":
        if merge_into:
            raise IsolationSetupError(
                f"--merge-into {merge_into} needs git isolation: set execution.isolation to "
                '"worktree" or "workstream" in the workstream file'
            )
        return
    where = f'execution.isolation "{mode}"'
    if not git_available():
        raise IsolationSetupError(f'{where} needs git, which is not on PATH: install git or use "none"')
    top = toplevel(workdir)
    if top is None:
        raise IsolationSetupError(
            f"{where} needs a git repository, and {workdir} is in none: run it inside one "
            '(`git init` and a first commit) or set execution.isolation to "none"'
        )
    if head_commit(top) is None:
        raise IsolationSetupError(
            f"{where}: the repository at {top} has no commit yet: commit something first"
        )
    if not plain_name(run_id) or not valid_branch(top, RUN_PREFIX + run_id):
        raise IsolationSetupError(
            f"run id {run_id!r} cannot name a git branch: use letters, digits, '-', '_'"
        )
    if not _SHELL_SAFE.fullmatch(str(top)) and any(
        "${" in text for step in workstream.steps for text in (*step.tasks, *step.acceptance_tests)
    ):
        raise IsolationSetupError(
            f"the repository's path {str(top)!r} holds characters a shell command would split or "
            'interpret: in tasks and acceptance tests write "$STEPLEDGER_WORKTREE_PATH" (quoted) instead '
            "of ${worktree_path}, or move the repository"
        )
    if merge_into is not None and (
        not valid_branch(top, merge_into)
        or merge_into.startswith((RUN_PREFIX, STEP_PREFIX))
        or merge_into == "HEAD"
    ):
        raise IsolationSetupError(
            f"--merge-into {merge_into!r} is not a branch stepledger may merge into: give a branch "
            "name such as main (not HEAD, not one of stepledger's own branches)"
        )


@dataclass(frozen=True)
class Settled:
    """What settling a passed attempt recorded, and why its step fails after all (None: it passed)."""

    events: list[Event]
    reason: Literal["merge_conflict", "scope_violation"] | None = None
    message: str = ""


class RunIsolation:
    """The worktrees and branches of one run, and the events that record what was done to them."""

    def __init__(
        self,
        mode: str,
        workdir: str | Path,
        run_id: str,
        steps: Mapping[str, Step],
        scope_strict: bool = False,
        on_workers: bool = False,
    ) -> None:
        self.mode = mode
        # A run on the fleet (isolation is refused there): each worker fills the placeholders with
        # its own folder (engine/fleet/worker.py), not with the driver's.
        self.on_workers = on_workers
        self.workdir = Path(workdir)
        self.run_id = run_id
        self.steps = steps
        self.scope_strict = scope_strict
        self.slugs = {step_slug(sid): sid for sid in steps}
        self.bases: dict[tuple[str, int], str] = {}  # (step, attempt) -> base commit, "workstream"
        top = toplevel(workdir) if self.active else None
        self.names = RunNames(top or self.workdir, run_id)
        self.rel = self.workdir.resolve().relative_to(top.resolve()) if top else Path()

    @property
    def active(self) -> bool:
        """Whether steps run in a git worktree (isolation other than "none")."""
        return self.mode != "none"

    # --- where an attempt runs ------------------------------------------------------------------

    def root(self, sid: str) -> Path:
        """The worktree `sid` runs in (the run's folder when not isolated)."""
        if self.mode == "worktree":
            return self.names.step_worktree(sid)
        if self.mode == "workstream":
            return self.names.run_worktree
        return self.workdir

    def folder(self, sid: str) -> Path:
        """The step's folder before its own `cwd`: the run's folder, at the same place in its worktree."""
        return self.root(sid) / self.rel if self.active else self.workdir

    def variables(self, sid: str) -> dict[str, str]:
        """The values of `${worktree_path}`, `${run_branch}` and `${step_branch}` for `sid`."""
        if not self.active:
            return unisolated_values(self.workdir)
        step_branch = self.names.step_branch(sid) if self.mode == "worktree" else self.names.run_branch
        return {
            "worktree_path": str(self.root(sid)),
            "run_branch": self.names.run_branch,
            "step_branch": step_branch,
        }

    def adjust(self, spec: AttemptSpec) -> AttemptSpec:
        """`spec` moved into the step's worktree, with the three placeholders filled (none: as is)."""
        if not self.active and self.on_workers:
            return spec
        values = self.variables(spec.step_id)
        filled = filled_spec(spec, values)
        if not self.active:
            return filled
        env = {**filled.env, **{f"STEPLEDGER_{name.upper()}": value for name, value in values.items()}}
        workdir = Path(spec.workdir)
        if workdir.is_relative_to(self.workdir):  # an absolute `cwd` is the step's own business
            workdir = self.folder(spec.step_id) / workdir.relative_to(self.workdir)
            workdir.mkdir(parents=True, exist_ok=True)
        return replace(filled, env=env, workdir=str(workdir))

    # --- the operations -------------------------------------------------------------------------

    def start(self, recorded: bool) -> list[Event]:
        """Make sure the integration branch and its worktree exist (a crash's half merge undone)."""
        if not self.active:
            return []
        base, _ = ops.ensure_run_branch(self.names)
        if recorded:
            return []
        return [RunBranchCreated(isolation=self.mode, branch=self.names.run_branch, base_commit=base,
                                 path=str(self.names.run_worktree))]  # fmt: skip

    def new_attempt(self, sid: str, attempt: int) -> WorktreeCreated | None:
        """Prepare the worktree of attempt `attempt` of `sid` (fresh, for "worktree")."""
        if self.mode == "worktree":
            path, branch, base = ops.fresh_step_worktree(self.names, sid)
            return WorktreeCreated(attempt=attempt, path=str(path), branch=branch, base_commit=base)
        if self.mode == "workstream":
            base = head_commit(self.names.run_worktree) or ""
            self.bases[(sid, attempt)] = base
            return WorktreeCreated(
                attempt=attempt,
                path=str(self.names.run_worktree),
                branch=self.names.run_branch,
                base_commit=base,
            )
        return None

    def settle_pass(self, sid: str, attempt: int) -> Settled:
        """Commit a passed attempt's work, check its scope and merge it: what to record, how it ended."""
        wt = self.root(sid)
        message = f"stepledger: run {self.run_id}, step {_label(sid)}, attempt {attempt}"
        if self.mode == "workstream":
            base = self.bases.get((sid, attempt)) or head_commit(wt) or ""
            commit = ops.commit_all(wt, message)
            files = ops.changed_files(wt, base, commit) if base else []
            branch = self.names.run_branch
            return Settled([WorktreeCommitted(attempt=attempt, branch=branch, base_commit=base, commit=commit,
                                              files=files)])  # fmt: skip
        branch, into = self.names.step_branch(sid), self.names.run_branch
        commit = ops.commit_all(wt, message)
        # The step branch was made from the integration branch: their merge base is where it began.
        base = out(wt, "merge-base", commit, f"refs/heads/{into}")
        files = ops.changed_files(wt, base, commit)
        events: list[Event] = [
            WorktreeCommitted(attempt=attempt, branch=branch, base_commit=base, commit=commit, files=files)
        ]
        step = self.steps[sid]
        roots = scope_roots(step.files_scope, PurePosixPath(self.rel.as_posix()), step.cwd)
        outside = outside_scope(files, roots)
        if outside:
            events.append(
                WorktreeScopeViolated(attempt=attempt, files=outside, scope=roots, fatal=self.scope_strict)
            )
            if self.scope_strict:
                said = (
                    f"changed files outside its files_scope: {', '.join(outside)}; the worktree {wt} is kept"
                )
                return Settled(events, "scope_violation", said)
        merge = ops.merge_step(
            self.names, commit, ops.merge_message(self.run_id, _label(sid), step_slug(sid), attempt)
        )
        if not merge.conflicted:
            events.append(
                WorktreeMerged(attempt=attempt, branch=branch, into=into, merge_commit=merge.merge_commit)
            )
            return Settled(events)
        conflicting = set(merge.conflict_files)
        steps = [
            self.slugs.get(slug, slug)
            for slug, changed in ops.merged_since(self.names, base)
            if conflicting.intersection(changed)
        ]
        steps = list(dict.fromkeys(steps))
        events.append(
            WorktreeMergeConflicted(
                attempt=attempt, branch=branch, into=into, files=merge.conflict_files, conflicting_steps=steps
            )
        )
        said = ", ".join(merge.conflict_files)
        against = f" with the merged work of {', '.join(steps)}" if steps else ""
        return Settled(
            events, "merge_conflict", f"merge conflict in {said}{against}; the worktree {wt} is kept"
        )

    def settled(self, result: AttemptResult) -> tuple[list[Event], AttemptResult]:
        """`settle_pass` for a passed result: its events, and the result, failed if it did not settle."""
        try:
            settled = self.settle_pass(result.step_id, result.attempt)
        except GitError as error:
            said = f"stepledger: the step's work could not be committed or merged: {error}"
            return [], replace(
                result, passed=False, reason="error", output_excerpt=said, error_signature=said
            )
        if settled.reason is None:
            return settled.events, result
        failed = replace(result, passed=False, reason=settled.reason, output_excerpt=settled.message,
                         error_signature=settled.message)  # fmt: skip
        return settled.events, failed

    def finished(
        self, outcome: str, states: Mapping[str, str], merge_into: str | None
    ) -> tuple[list[Event], list[str]]:
        """`finish`, and the lines to tell: a merge into `merge_into` not made, a clean-up that failed."""
        try:
            events = self.finish(outcome, states, merge_into)
        except GitError as error:
            return [], [f"the run's worktrees could not be cleaned up: {error}"]
        notes = []
        for event in events:
            if isinstance(event, RunBranchMerged) and event.how in ("conflict", "refused"):
                why = f"conflicts with it in {', '.join(event.files)}" if event.files else event.error
                notes.append(
                    f"{self.names.run_branch} was not merged into {event.into}: {why}; merge it by hand"
                )
        return events, notes

    def finish(self, outcome: str, states: Mapping[str, str], merge_into: str | None) -> list[Event]:
        """At the end of a run: merge into `merge_into` (passed), remove passed steps' worktrees."""
        if not self.active or outcome == "interrupted":
            return []
        events: list[Event] = []
        top = self.names.toplevel
        if outcome == "passed" and merge_into:
            message = f"stepledger: merge run {self.run_id}\n\n{ops.TRAILER_RUN}: {self.run_id}\n"
            try:
                head, how, files = ops.merge_into(self.names, merge_into, message)
                events.append(RunBranchMerged(into=merge_into, commit=head, how=how, files=files))
            except GitError as error:  # the run passed all the same: its work waits on its branch
                current = head_commit(top, f"refs/heads/{merge_into}") or ""
                events.append(
                    RunBranchMerged(into=merge_into, commit=current, how="refused", error=str(error))
                )
        removed: list[str] = []
        kept: list[str] = []
        if self.mode == "worktree":
            for sid, state in states.items():
                path = self.names.step_worktree(sid)
                if not path.exists():
                    continue
                if state == "passed":
                    ops.discard_worktree(top, path, self.names.step_branch(sid))
                    removed.append(sid)
                else:
                    kept.append(sid)
        if outcome == "passed":
            ops.discard_worktree(top, self.names.run_worktree)
            removed.append(RUN_WORKTREE)
            if self.names.root.is_dir() and not any(self.names.root.iterdir()):
                self.names.root.rmdir()
        if removed or kept:
            events.append(WorktreesCleanedUp(removed=removed, kept=kept))
        return events


def _label(step_id: str) -> str:
    """A step id as one line of a commit message."""
    return " ".join(step_id.split()) or step_slug(step_id)
