"""Git isolation of a run's steps: worktrees, step and integration branches, merges (docs/worktrees.md)."""
