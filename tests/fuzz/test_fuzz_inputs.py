"""Fuzzing the way in: every workstream file ends in a model or in problems of one line each, fast.

Hypothesis mutates the real workstream files of tests/workstreams (keys dropped, types changed, odd
strings, numbers and control characters put in, values nested deep, YAML anchors and aliases) and
writes random JSON/YAML text, then checks three ways in:

- the loader in process (`validate_problems`): no exception, each problem one line, within a time limit;
- `validate` and `run` through the CLI app in process: exit 0, 1 (a run whose step failed) or 2,
  every stderr line one `error:`/`warning:` line, never an exception;
- a few real `validate` and `run` processes: the same, plus no traceback and no hang.

Seeded (derandomize), so a failure repeats; `--soak` runs the `slow` variants with many more cases.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stepledger.engine.errors import StepledgerError
from stepledger.engine.workstream import validate_problems
from stepledger.engine.workstream.reading import read_document

# The edited examples and the unedited originals (tests/workstreams/original/) alike.
EXAMPLES = sorted(
    p
    for p in (Path(__file__).resolve().parents[1] / "workstreams").rglob("*")
    if p.suffix in (".json", ".yaml", ".yml")
)
DOCS = [read_document(p) for p in EXAMPLES]
TIME_LIMIT_S = 10.0  # per input; the limits make every input take milliseconds, this catches a hang

ODD_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(["\x00", "\n", "\r", "\x1b", "\u2028", "\x85", "\ud800", "\udfff", "$", "{", "}"]),
    ),
    max_size=40,
)
ODD_STRINGS = st.one_of(
    ODD_TEXT,
    st.sampled_from([
        "${env.HOME}", "${env.NO_SUCH_VARIABLE}", "${env.X:-5}", "${env.CI == 'true'}", "${env.", "auto",
        "(a|aa)+$", "(unclosed", "a" * 5000, "../../etc", "/", ".", "..", "-rf", "3-6 minutes", "1e999s",
    ]),
)  # fmt: skip
ODD_NUMBERS = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1, 256, 257, 10**9, 2**63, 1e308, 5e-324, -0.0]),
)
SCALARS = st.one_of(st.none(), st.booleans(), ODD_NUMBERS, ODD_STRINGS)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(ODD_STRINGS, inner, max_size=4)),
    max_leaves=12,
)


def _nested(depth: int) -> Any:
    value: Any = "x"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


def _places(doc: Any, path: tuple = ()) -> list[tuple]:
    """Every (container path, key) in `doc`."""
    out = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            out.append((path, key))
            out.extend(_places(value, (*path, key)))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            out.append((path, i))
            out.extend(_places(value, (*path, i)))
    return out


def _at(doc: Any, path: tuple) -> Any:
    for key in path:
        doc = doc[key]
    return doc


@st.composite
def mutated_docs(draw: st.DrawFn) -> Any:
    """One of the real workstreams with a few parts dropped, retyped or replaced."""
    doc = json.loads(json.dumps(draw(st.sampled_from(DOCS))))
    for _ in range(draw(st.integers(1, 4))):
        places = _places(doc)
        if not places:
            break
        path, key = draw(st.sampled_from(places))
        parent = _at(doc, path)
        op = draw(st.sampled_from(["drop", "value", "deep", "wrap", "add"]))
        if op == "drop":
            del parent[key]
        elif op == "value":
            parent[key] = draw(VALUES)
        elif op == "deep":
            parent[key] = _nested(draw(st.sampled_from([50, 99, 101, 200, 900])))
        elif op == "wrap":
            parent[key] = [parent[key]] if draw(st.booleans()) else {"x": parent[key]}
        elif isinstance(parent, dict):
            parent[draw(ODD_STRINGS)] = draw(VALUES)
        else:
            parent.append(draw(VALUES))
    return doc


def _yaml_text(doc: Any) -> str:
    try:
        return yaml.safe_dump(doc, allow_unicode=True)
    except (yaml.YAMLError, UnicodeError, RecursionError):
        return json.dumps(doc)  # JSON is YAML too


@st.composite
def alias_yaml(draw: st.DrawFn) -> str:
    """YAML whose anchors and aliases nest (bombs of several shapes) or point back into themselves."""
    width, levels = draw(st.integers(1, 12)), draw(st.integers(1, 10))
    lines = ["id: ws-alias", "tool: shell", "tasks: ['true']", "metadata:", "  l0: &l0 [x, y]"]
    for i in range(1, levels):
        lines.append(f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]")
    if draw(st.booleans()):
        lines.append(f"  self: &s {{inner: [*s, *l{levels - 1}]}}")
    if draw(st.booleans()):
        lines += ["retry: &r {strategy: fixed}", "circuit_breaker: {<<: *r}"]
    return "\n".join(lines) + "\n"


@st.composite
def files(draw: st.DrawFn) -> tuple[str, bytes]:
    """A file name and its bytes: a mutated real workstream, alias YAML, or random text."""
    kind = draw(st.sampled_from(["json", "yaml", "alias", "text", "bytes", "edit"]))
    if kind == "alias":
        return "ws.yaml", draw(alias_yaml()).encode()
    if kind == "text":
        return draw(st.sampled_from(["ws.json", "ws.yaml"])), draw(ODD_TEXT).encode("utf-8", "surrogatepass")
    if kind == "bytes":
        return draw(st.sampled_from(["ws.json", "ws.yml"])), draw(st.binary(max_size=200))
    doc = draw(mutated_docs())
    if kind == "yaml":
        return "ws.yaml", _yaml_text(doc).encode("utf-8", "surrogatepass")
    text = json.dumps(doc, ensure_ascii=draw(st.booleans()))
    if kind == "edit":  # a typo somewhere in the text: a character dropped or put in
        at = draw(st.integers(0, len(text)))
        text = (
            text[:at] + draw(st.sampled_from(["", "{", "]", ",", '"', "\\", "\x00", "NaN"])) + text[at + 1 :]
        )
    return "ws.json", text.encode("utf-8", "surrogatepass")


def _write(tmp: Path, name: str, data: bytes) -> Path:
    path = tmp / name
    path.write_bytes(data)
    return path


def _one_line_each(lines: list[str]) -> None:
    for line in lines:
        assert line.startswith(("error: ", "warning: ", "note: ")), lines


def check_loader(tmp: Path, name: str, data: bytes) -> None:
    path = _write(tmp, name, data)
    started = time.monotonic()
    workstream, problems = validate_problems(path, env={"HOME": "/home/u"}, check_tools=False)
    assert time.monotonic() - started < TIME_LIMIT_S
    errors = [p for p in problems if p.severity == "error"]
    assert workstream is not None or errors
    for problem in problems:
        assert len(problem.render().splitlines()) == 1, problem
        json.dumps(problem.to_dict())  # `validate --json` can print it


def seeded(examples: int) -> settings:
    """Seeded (the same cases every run), no example database, no per-case deadline."""
    return settings(derandomize=True, database=None, deadline=None, max_examples=examples,
                    suppress_health_check=list(HealthCheck))  # fmt: skip


@seeded(1500)
@given(files())
def test_the_loader_never_raises_and_each_problem_is_one_line(
    tmp_path_factory: Any, file: tuple[str, bytes]
) -> None:
    check_loader(tmp_path_factory.mktemp("f"), *file)


@pytest.mark.slow
@seeded(50_000)
@given(files())
def test_the_loader_soak(tmp_path_factory: Any, file: tuple[str, bytes]) -> None:
    check_loader(tmp_path_factory.mktemp("f"), *file)


def check_cli(tmp: Path, name: str, data: bytes, command: str) -> None:
    from typer.testing import CliRunner

    from stepledger.cli.app import build_app

    path = _write(tmp, name, data)
    old = os.getcwd()
    os.chdir(tmp)  # `run` writes its log and folders in the current folder
    try:
        started = time.monotonic()
        result = CliRunner().invoke(build_app(command), [command, str(path)])
        assert time.monotonic() - started < TIME_LIMIT_S * 3
    finally:
        os.chdir(old)
    error = result.exception
    if error is not None and not isinstance(error, SystemExit):
        # Raised out of the command: `main` prints these as one line each and exits 2.
        assert isinstance(error, StepledgerError), repr(error)
        return
    assert result.exit_code in (0, 1, 2) if command == "run" else result.exit_code in (0, 2)
    _one_line_each(result.stderr.splitlines())


@seeded(250)
@given(files())
def test_validate_in_process(tmp_path_factory: Any, file: tuple[str, bytes]) -> None:
    check_cli(tmp_path_factory.mktemp("v"), *file, "validate")


@seeded(60)
@given(files())
def test_run_in_process(tmp_path_factory: Any, file: tuple[str, bytes]) -> None:
    check_cli(tmp_path_factory.mktemp("r"), *file, "run")


@pytest.mark.slow
@seeded(3000)
@given(files(), st.sampled_from(["validate", "run"]))
def test_cli_in_process_soak(tmp_path_factory: Any, file: tuple[str, bytes], command: str) -> None:
    check_cli(tmp_path_factory.mktemp("c"), *file, command)


def check_process(tmp: Path, name: str, data: bytes, command: str) -> None:
    path = _write(tmp, name, data)
    done = subprocess.run([sys.executable, "-m", "stepledger.cli", command, path.name], cwd=tmp,
                          capture_output=True, text=True, errors="backslashreplace", timeout=120,
                          env={**os.environ, "STEPLEDGER_DB": ""})  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode in ((0, 1, 2) if command == "run" else (0, 2)), done.stderr
    _one_line_each(done.stderr.splitlines())


@seeded(12)
@given(files(), st.sampled_from(["validate", "run"]))
def test_real_processes(tmp_path_factory: Any, file: tuple[str, bytes], command: str) -> None:
    check_process(tmp_path_factory.mktemp("p"), *file, command)


@pytest.mark.slow
@seeded(300)
@given(files(), st.sampled_from(["validate", "run"]))
def test_real_processes_soak(tmp_path_factory: Any, file: tuple[str, bytes], command: str) -> None:
    check_process(tmp_path_factory.mktemp("p"), *file, command)
