"""What is wrong with a workstream file: one `Problem` per finding, and the error that carries them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from stepledger.engine.errors import UserInputError

# error: the file cannot run; warning: it runs, but something in it is ignored or unfillable;
# note: a setting that is read and kept but that the engine does not act on.
Severity = Literal["error", "warning", "note"]
PathPart = str | int


def json_path(parts: Sequence[PathPart]) -> str:
    """Render path parts as `steps[2].depends_on[0]` (the root is an empty string)."""
    out: list[str] = []
    for part in parts:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif part.isidentifier() or part.replace("-", "_").replace("$", "_").isidentifier():
            out.append(f".{part}" if out else part)
        else:
            out.append(f"[{part!r}]")
    return "".join(out)


# Line breaks (as str.splitlines sees them) and other control characters, shown escaped: a problem
# quotes names and values from the file, and each problem is printed as exactly one line.
_CONTROLS = {
    c: f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"
    for c in [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]
}


def one_line(text: str) -> str:
    """`text` with line breaks and control characters written as escapes (`\\n` becomes `\\x0a`)."""
    return text.translate(_CONTROLS)


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """A 'did you mean `x`?' hint for the closest of `choices`, or None when nothing is close."""
    by_folded = {choice.casefold(): choice for choice in choices}  # `Per_Step` is close to `per_step`
    import difflib  # here: only a misspelt name needs it, and every run loads this module

    close = difflib.get_close_matches(word.casefold(), list(by_folded), n=1, cutoff=0.6)
    return f"did you mean `{by_folded[close[0]]}`?" if close else None


@dataclass(frozen=True)
class Problem:
    """One finding: where it is (file, JSON path, step), what is wrong and what would fix it."""

    message: str
    path: str = ""
    file: str = ""
    step_id: str | None = None
    hint: str | None = None
    severity: Severity = "error"
    line: int | None = None  # only for syntax errors, where a JSON path does not exist yet
    column: int | None = None

    def render(self) -> str:
        """The one-line form printed by the command line (after `error:` or `warning:`)."""
        where = self.file or "<workstream>"
        if self.line is not None:
            where += f":{self.line}:{self.column or 1}"
        if self.path:
            where += f": {self.path}"
        step = f" [step {self.step_id}]" if self.step_id else ""
        hint = f" — {self.hint}" if self.hint else ""
        return one_line(f"{where}{step}: {self.message}{hint}")

    def to_dict(self) -> dict[str, object]:
        """A JSON-able form for `validate --json`."""
        return {
            "severity": self.severity,
            "file": self.file,
            "path": self.path,
            "step_id": self.step_id,
            "message": self.message,
            "hint": self.hint,
            "line": self.line,
            "column": self.column,
        }


class WorkstreamInvalid(UserInputError):
    """The workstream file has problems; each names its place and a fix. Correct them and run again."""

    verdict = "is not valid"

    def __init__(self, problems: Sequence[Problem], file: str = "") -> None:
        self.problems = tuple(problems)
        self.file = file
        errors = [p for p in self.problems if p.severity == "error"]
        head = f"{file or 'workstream'} {self.verdict} ({len(errors)} problem{'s' * (len(errors) != 1)}):"
        super().__init__("\n".join([head, *(f"  {p.render()}" for p in errors)]))


class ToolsUnavailable(WorkstreamInvalid):
    """A step's tool is not built in, not a profile and not on PATH: install it or define a profile."""

    verdict = "cannot run here"
