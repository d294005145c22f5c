"""`audit timeline --html` on a 2,000-step chain listed in reverse order (no recursion over the
graph's depth), with an interrupted attempt, a failure, a stretch with no orchestrator, a resume
and an operator's retry on the time axis; in process and through the installed command line."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from audit_sample import T0, Log, recorded_at_clock

from stepledger.engine import audit
from stepledger.engine.audit.graph_svg import levels
from stepledger.engine.audit.html import tick_label, tick_step
from stepledger.events import (
    RunResumed,
    RunStarted,
    StepFailed,
    StepPassed,
    StepReady,
    StepRetryRequested,
    StepStarted,
    StreamWrite,
)
from stepledger.store.connect import open_store

STEPS = [f"s{i:04d}" for i in range(2000)]  # each requires the one before it


def chain_log(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run `big`: the chain, its file listing the last step first."""
    store = open_store(url)
    declared = [{"id": s, "requires": [STEPS[i - 1]] if i else []} for i, s in enumerate(STEPS)]
    workstream = {"id": "ws-chain", "steps": list(reversed(declared))}
    with recorded_at_clock(monkeypatch) as clock:
        log = Log(store, clock)
        started = RunStarted(workstream_id="ws-chain", workstream=workstream, workstream_hash="h",
                             source_path="chain.json", workdir=".")  # fmt: skip
        log.add(T0, "big", None, started)
        log.add(T0, "big", "s0000", StepReady(), StepStarted(attempt=1, host="h", pid=10, pgid=10))
        # The orchestrator dies after that; the next one resumes at T0+100 and settles the attempt.
        log.add(T0 + 100, "big", None, RunResumed(host="h", pid=20))
        log.add(T0 + 100, "big", "s0000", StepFailed(attempt=1, reason="interrupted", started_at=T0,
                                                      finished_at=T0 + 10))  # fmt: skip
        log.add(T0 + 101, "big", "s0000", StepStarted(attempt=2, host="h", pid=21, pgid=21),
                StepPassed(attempt=2, started_at=T0 + 101, finished_at=T0 + 102))  # fmt: skip
        log.add(T0 + 103, "big", "s0001", StepReady(), StepStarted(attempt=1, host="h", pid=22, pgid=22),
                StepFailed(attempt=1, reason="exit_code", exit_code=1, started_at=T0 + 103,
                           finished_at=T0 + 104, error_signature="x", output_excerpt="x"))  # fmt: skip
        log.add(T0 + 150, "big", "s0001", StepRetryRequested(by="alice", reason="flaky"),
                StepStarted(attempt=2, host="h", pid=23, pgid=23),
                StepPassed(attempt=2, started_at=T0 + 150, finished_at=T0 + 151))  # fmt: skip
        clock.now = T0 + 160
        writes = []
        for i, step in enumerate(STEPS[2:]):
            start = T0 + 151 + i * 0.05
            writes.append(StreamWrite("big", f"big/{step}", 0, [
                StepReady(), StepStarted(attempt=1, host="h", pid=30, pgid=30),
                StepPassed(attempt=1, started_at=start, finished_at=start + 0.05),
            ]))  # fmt: skip
        store.append(writes)
    store.close()


@pytest.fixture
def chain_db(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    chain_log(sqlite_url, monkeypatch)
    yield sqlite_url


def check_page(page: str) -> None:
    """What the page of `big` must show."""
    assert page.startswith("<!DOCTYPE html>")
    widths = [int(w) for w in re.findall(r'<svg xmlns="http://www.w3.org/2000/svg" width="(\d+)"', page)]
    assert len(widths) == 3 and max(widths) < 3000, widths  # axis, Gantt, graph: not 2,000 columns wide
    assert page.count('marker-end="url(#arrow)"') == len(STEPS) - 1
    for step in ("s0000", "s1999"):
        assert f"<title>{step}: passed</title>" in page
    # The interrupted attempt is hatched grey; the step's own failure is red.
    assert re.search(
        r'<rect class="attempt interrupted" [^>]*fill="url\(#cut\)"><title>s0000 attempt 1', page
    )
    assert re.search(r'<rect class="attempt failed" [^>]*fill="#d64541"><title>s0001 attempt 1', page)
    # No orchestrator from the last event before the crash (T0) to the resume (T0+100).
    assert "<title>no orchestrator alive: 1m 40s</title>" in page
    assert '<line class="resume"' in page and "resumed by pid 20 on h" in page
    assert '<line class="action"' in page and "<title>retry s0001 by alice: flaky</title>" in page
    labels = re.findall(r'text-anchor="middle">(\+[^<]*)</text>', page)
    assert labels[:3] == ["+0s", "+1m", "+2m"] and len(labels) <= 9, labels


def test_the_page_of_a_long_chain_in_reverse_order(chain_db: str) -> None:
    store = open_store(chain_db)
    try:
        page = audit.timeline_html(store, "big")
    finally:
        store.close()
    check_page(page)


def test_the_command_writes_the_page(chain_db: str, tmp_path: Path) -> None:
    page = tmp_path / "big.html"
    command = ["audit", "timeline", "big", "--html", str(page), "--json", "--db", chain_db]
    done = subprocess.run([sys.executable, "-m", "stepledger.cli", *command], capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    check_page(page.read_text(encoding="utf-8"))


def test_depths_are_found_without_recursion() -> None:
    long = [f"t{i}" for i in range(10_000)]  # listed last step first: the deepest recursion
    depth = levels(list(reversed(long)), {s: [long[i - 1]] if i else [] for i, s in enumerate(long)})
    assert depth["t0"] == 0 and depth["t9999"] == 9999
    assert levels(["a", "b"], {"a": ["b"], "b": ["a"]}) == {"a": 0, "b": 0}  # a cycle does not hang


@pytest.mark.parametrize(
    ("span", "step", "labels"),
    [
        (0.8, 0.1, ["+0ms", "+100ms", "+200ms"]),
        (45, 10, ["+0s", "+10s", "+20s"]),
        (250, 60, ["+0s", "+1m", "+2m"]),
        (400, 60, ["+0s", "+1m", "+2m"]),
        (5400, 900, ["+0s", "+15m", "+30m"]),
        (25000, 3600, ["+0s", "+1h 00m", "+2h 00m"]),
    ],
)
def test_ticks_are_round_and_readable(span: float, step: float, labels: list[str]) -> None:
    assert tick_step(span) == step
    assert [tick_label(n * step, step) for n in range(3)] == labels
    assert span / step <= 8
