"""The engine's exception family. Each says what is wrong and what to do; the CLI prints it as one line."""

from __future__ import annotations


class StepledgerError(Exception):
    """Root of the engine's errors. `exit_code` is what the command line exits with."""

    exit_code = 2


class UserInputError(StepledgerError):
    """Bad input from the user (a file, an option, a run id): the message says how to fix it."""


class RunNotFound(UserInputError):
    """No run with that id is in the log; `stepledger runs` lists the runs."""


class RunInUse(UserInputError):
    """Another live orchestrator drives the run; wait for it, or cancel the run first."""
