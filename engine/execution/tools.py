"""How a tool's tasks become processes (shell, profile, program) or an in-process call (python).

Imported by the worker process: standard library only.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from collections.abc import Sequence

TYPE_CHECKING = False  # as typing's, without importing typing: a worker starts on a run's critical path
if TYPE_CHECKING:
    from typing import Protocol

    class _WorkerFds(Protocol):
        devnull: int
        stderr_fd: int

    class Attempt(Protocol):
        """What a python task's call uses of its attempt (attempt.py)."""

        workdir: str
        log_fd: int
        outputs: dict
        step_env: dict[str, str]

        @property  # read-only, so that the attempt's worker may be of any type that has the fds
        def worker(self) -> _WorkerFds: ...

        def log(self, text: str) -> None: ...


SHELL = "/bin/bash" if os.path.exists("/bin/bash") else "/bin/sh"


_PLACEHOLDER = re.compile(r"\{(task|step_id|attempt|file)\}")
FILES = "{files}"  # a template argument that becomes one argument per files_scope entry
FILE = "{file}"  # inside a template argument: the argument is repeated once per files_scope entry


def file_arguments_are_safe(template: Sequence[str]) -> bool:
    """Whether no files_scope entry can be read as an option by the program of `template`.

    A file is safe where it follows a `--` argument (the end of the options), or where it is not
    at the start of its argument (`--file={file}`: the tool's per-file option). A bare `{files}`
    or `{file}` before any `--` puts each entry where `--test-cmd=...` would be an option.
    """
    after_dashes = False
    for part in template:
        if part == "--":
            after_dashes = True
        elif not after_dashes and (part == FILES or part.startswith(FILE)):
            return False
    return True


def _fill(part: str, values: dict[str, str]) -> str:
    # One pass: a task or a file name holding `{attempt}` is left as it is.
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], part)


def profile_argv(template: Sequence[str], task: str, spec: dict) -> list[str]:
    """The argv of one invocation of a profile: placeholders filled, file arguments placed."""
    files = list(spec["files_scope"])
    if not file_arguments_are_safe(template):
        # Validation refuses entries starting with `-` for such a profile; should one get here
        # anyway (a profile changed before a resume), `./-x` names the same file and is no option.
        files = ["./" + f if f.startswith("-") else f for f in files]
    values = {"task": task, "step_id": spec["step_id"], "attempt": str(spec["attempt"]), "file": ""}
    argv: list[str] = []
    for part in template:
        if part == FILES:
            argv.extend(files)
        elif FILE in part:
            argv.extend(_fill(part, {**values, "file": f}) for f in files)
        else:
            argv.append(_fill(part, values))
    return argv


def commands(spec: dict) -> list[tuple[list[str], str]]:
    """The argv lists (and how to show them) of a shell, profile or plain-program tool's tasks."""
    tasks = list(spec["tasks"])
    if spec["tool"] == "shell":
        return [([SHELL, "-c", task], task) for task in tasks]
    template = spec["profile_command"]
    if not template:
        return [([spec["tool"], task], f"{spec['tool']} {task}") for task in tasks]
    groups = [[t] for t in tasks] if spec["profile_per_task"] else [tasks]
    out = []
    for group in groups:
        argv = profile_argv(template, "\n".join(group), spec)
        out.append((argv, " ".join(argv)))
    return out


_site_added = not sys.flags.no_site


def add_site() -> None:
    """Give a worker started without `site` (pool.py) the site-packages, .pth files and
    sitecustomize a python task's code may import, as an interpreter's start-up would; once."""
    global _site_added
    if not _site_added:
        _site_added = True
        import site

        site.main()


def run_python(attempt: Attempt, task: str) -> tuple[int, str | None]:
    """Import and call `module:function [arg ...]` in this process, with the step's env and cwd."""
    add_site()
    attempt.log(f"$ python {task}\n")
    began = time.monotonic()
    target, _, argtext = task.strip().partition(" ")
    modname, _, funcname = target.partition(":")
    args: list[str] = []
    if argtext.strip():
        import shlex

        args = shlex.split(argtext)
    # os.environ._data is the bytes dict behind os.environ: copying and comparing it costs under
    # a microsecond, where the str view costs ~30 us each (this is the per-attempt hot path).
    env_data: dict[bytes, bytes] = os.environ._data  # type: ignore[attr-defined]
    saved_env = dict(env_data)
    os.environ.update(attempt.step_env)
    # The cwd is left there afterwards: nothing of the worker depends on it.
    os.chdir(attempt.workdir)
    added_path = attempt.workdir not in sys.path
    if added_path:
        sys.path.insert(0, attempt.workdir)
    os.dup2(attempt.log_fd, 1)
    os.dup2(attempt.log_fd, 2)
    code, reason = 0, None
    try:
        if not modname or not funcname:
            raise ValueError(f"python task {task!r} must look like 'module:function [arg ...]'")
        module = sys.modules.get(modname)
        if module is None:
            import importlib

            module = importlib.import_module(modname)
        func = module
        for name in funcname.split("."):
            func = getattr(func, name)
        value = func(*args)  # type: ignore[operator]
        if isinstance(value, dict):
            attempt.outputs.update(value)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        reason = "exit_code" if code else None
    except BaseException:
        import traceback

        traceback.print_exc()
        code, reason = 1, "error"
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os.dup2(attempt.worker.devnull, 1)
        os.dup2(attempt.worker.stderr_fd, 2)
        if added_path:
            with contextlib.suppress(ValueError):
                sys.path.remove(attempt.workdir)
        if env_data != saved_env:
            # The step's variables, and whatever the function set itself, end with the attempt.
            for key in [k for k in env_data if k not in saved_env]:
                os.unsetenv(key)
                del env_data[key]
            for key, value in saved_env.items():
                if env_data.get(key) != value:
                    os.putenv(key, value)
                    env_data[key] = value
    attempt.log(f"exit {code} in {time.monotonic() - began:.2f}s\n")
    return code, reason
