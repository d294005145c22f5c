"""Printing helpers shared by the commands: errors as one red line, JSON lines, tables."""

from __future__ import annotations

import json
import sys
from typing import Any

from stepledger.engine.read.terminal_text import json_printable, printable


def plain_cells(*values: object) -> list[Any]:
    """Cells for a rich table: text shown as it is (no markup), escape sequences escaped."""
    from rich.text import Text

    return [Text(printable(str(value))) for value in values]


def known_error_types() -> tuple[type[BaseException], ...]:
    """The exception families that are the user's to fix, printed without a traceback."""
    from stepledger.engine.api import error_types

    return error_types()


def print_error(error: BaseException) -> int:
    """Print `error` as one red line on stderr and return the exit code it calls for."""
    code = getattr(error, "exit_code", 2)
    problems = [p for p in getattr(error, "problems", ()) if getattr(p, "severity", "error") == "error"]
    # An error listing several problems prints each as its own complete line.
    lines = [p.render() for p in problems] or [str(error) or type(error).__name__]
    prefix = "\x1b[31merror:\x1b[0m" if sys.stderr.isatty() else "error:"
    for line in lines:
        sys.stderr.write(f"{prefix} {printable(line)}\n")
    return int(code)


def echo_json(obj: Any) -> None:
    """Write one JSON object as one line on stdout."""
    sys.stdout.write(json_printable(json.dumps(obj, default=str, ensure_ascii=False)) + "\n")
