"""The events of git isolation (`execution.isolation`: "worktree" or "workstream").

Each git operation of a run is recorded once it is done, with the attempt it belongs to: the
integration branch and its worktree (on the run's stream), each attempt's worktree, the commit of
what the tool left and the merge into the integration branch (on the step's stream, between the
attempt's start and its outcome). The fold ignores them; they are the audit of what each attempt
started from and produced, and the operations are idempotent, so a crash between an operation and
its event is repaired by doing it again on resume (engine/worktrees/).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .registry import Event, event_type


@event_type("worktree.run_branch_created")
@dataclass(frozen=True, kw_only=True)
class RunBranchCreated(Event):
    """The run's integration branch exists, checked out in the run's own worktree."""

    isolation: str  # "worktree" or "workstream"
    branch: str  # stepledger/<run>
    base_commit: str  # what the branch started from: the checkout's HEAD when the run started
    path: str  # the worktree that has it checked out


@event_type("worktree.created")
@dataclass(frozen=True, kw_only=True)
class WorktreeCreated(Event):
    """A fresh worktree for one attempt of a step, on its branch, from the integration branch."""

    attempt: int
    path: str
    branch: str
    base_commit: str  # the integration branch's head when the attempt started


@event_type("worktree.committed")
@dataclass(frozen=True, kw_only=True)
class WorktreeCommitted(Event):
    """The passed attempt's work is committed: what the tool left uncommitted, if anything, included."""

    attempt: int
    branch: str
    base_commit: str
    commit: str  # the resulting commit: the head of the step's branch (or the run's, "workstream")
    files: list[str] = field(default_factory=list)  # files changed from the base commit


@event_type("worktree.scope_violated")
@dataclass(frozen=True, kw_only=True)
class WorktreeScopeViolated(Event):
    """The passed attempt changed files outside its step's `files_scope`; `fatal`: the step fails."""

    attempt: int
    files: list[str]  # the changed files outside the scope, from the repository's root
    scope: list[str]  # the scope's entries, from the repository's root
    fatal: bool = False  # execution.files_scope_strict


@event_type("worktree.merged")
@dataclass(frozen=True, kw_only=True)
class WorktreeMerged(Event):
    """The step's branch is merged into the integration branch (`merge_commit` empty: nothing to merge)."""

    attempt: int
    branch: str  # the step's branch
    into: str  # the integration branch
    merge_commit: str


@event_type("worktree.merge_conflicted")
@dataclass(frozen=True, kw_only=True)
class WorktreeMergeConflicted(Event):
    """The step's branch conflicts with the integration branch: the merge was undone, the step fails."""

    attempt: int
    branch: str
    into: str
    files: list[str]
    conflicting_steps: list[str] = field(default_factory=list)  # steps merged since this one started


@event_type("worktree.run_merged")
@dataclass(frozen=True, kw_only=True)
class RunBranchMerged(Event):
    """At the end of a passed run, the integration branch was brought into `into` (--merge-into)."""

    into: str
    commit: str  # the head of `into` afterwards
    how: str  # created, fast_forward, merge, up_to_date; conflict or refused: left as it was
    files: list[str] = field(default_factory=list)  # the conflicting files, for "conflict"
    error: str = ""  # what git said, for "refused" (uncommitted changes in its checkout, say)


@event_type("worktree.cleaned_up")
@dataclass(frozen=True, kw_only=True)
class WorktreesCleanedUp(Event):
    """At the end of a run: the worktrees removed (passed steps) and those kept for inspection."""

    removed: list[str] = field(default_factory=list)  # step ids; ".run" for the integration worktree
    kept: list[str] = field(default_factory=list)
