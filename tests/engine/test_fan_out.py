"""Dynamic fan-out end to end: `stepledger run` as a subprocess on a real SQLite log.

A list step writes a JSON list; a for_each step becomes one step per item, each getting its item
as data; the step after waits for all of them. Then the lists that are empty, too long or not
lists at all, and what `validate` refuses.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from failure_scripts import cli, only_run_id, write_workstream, writes_outputs

from stepledger.engine.api import Stepledger
from stepledger.store.connect import open_store

EVIL = "x'\"; touch pwned; \"' $(touch pwned)"
ITEMS = ["a b.txt", EVIL, {"k": [1, 2]}, 7]


def _events(db: str, run_id: str) -> list[tuple[str, str | None, dict[str, Any]]]:
    store = open_store(db)
    try:
        return [(e.type, e.step_id, e.payload) for e in store.read_run(run_id)]
    finally:
        store.close()


def test_a_list_fans_out_into_one_step_per_item_and_the_next_step_waits_for_all(
    tmp_path: Path, sqlite_url: str
) -> None:
    ws = write_workstream(
        tmp_path,
        {
            "id": "fan",
            "tool": "shell",
            "steps": [
                {"id": "list", "tasks": [writes_outputs(files=ITEMS)]},
                {
                    "id": "process",
                    "depends_on": ["list"],
                    "for_each": "${steps.list.outputs.files}",
                    "cwd": "out/${for_each.index}",
                    "env": {"ITEM": "${for_each.item}"},
                    "tasks": [
                        "echo ${for_each.item} > bare.txt",
                        'echo "${for_each.item}" > double.txt',
                        "echo '${for_each.item}' > single.txt",
                        'printf %s "$ITEM" > env.txt; printf %s "$STEPLEDGER_ITEM_INDEX" > index.txt',
                        'echo "{\\"n\\": \\"$STEPLEDGER_ITEM_INDEX\\"}" > "$STEPLEDGER_OUTPUTS"',
                    ],
                    "acceptance_tests": ['test "$(cat env.txt)" = "${for_each.item}"'],
                },
                {
                    "id": "summary",
                    "depends_on": ["process"],
                    "tasks": ["ls out > summary.txt", "echo ${steps.process[3].outputs.n} >> summary.txt"],
                },
            ],
        },
    )
    done = cli("run", str(ws), cwd=tmp_path, db=sqlite_url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (
        "Expanded into 4 steps (process[0] … process[3]): one per item of list.outputs.files" in done.stdout
    )
    assert "6 steps: 6 passed" in done.stdout
    assert not list(tmp_path.rglob("pwned"))
    for i, item in enumerate(ITEMS):
        text = item if isinstance(item, str) else json.dumps(item)
        folder = tmp_path / "out" / str(i)
        for name in ("bare.txt", "double.txt", "single.txt"):
            assert (folder / name).read_text() == text + "\n", (i, name)
        assert (folder / "env.txt").read_text() == text and (folder / "index.txt").read_text() == str(i)
    assert (tmp_path / "summary.txt").read_text() == "0\n1\n2\n3\n3\n"

    run_id = only_run_id(sqlite_url, tmp_path)
    events = _events(sqlite_url, run_id)
    ids = [f"process[{i}]" for i in range(4)]
    expanded = [(sid, p) for t, sid, p in events if t == "step.expanded"]
    listed = next(p["outputs"]["files"] for t, sid, p in events if t == "step.passed" and sid == "list")
    assert expanded == [("process", {"source": "list.outputs.files", "items": listed, "ids": ids})]
    assert listed == ITEMS
    order = [(t, sid) for t, sid, _ in events]
    first_of = {sid: order.index(("step.ready", sid)) for sid in ids}
    assert all(order.index(("step.expanded", "process")) < first_of[sid] for sid in ids)
    assert all(order.index(("step.passed", sid)) < order.index(("step.started", "summary")) for sid in ids)
    assert [sid for t, sid in order if t == "step.passed"].count("process[1]") == 1

    status = json.loads(cli("status", run_id, "--json", cwd=tmp_path, db=sqlite_url).stdout)
    rows = {s["step_id"]: s for s in status["steps"]}
    assert [s["step_id"] for s in status["steps"]] == ["list", "process", *ids, "summary"]
    assert rows["process"]["state"] == "expanded" and rows["process"]["expanded_into"] == ids
    assert (
        "into 4 steps: process[0] … process[3]" in cli("status", run_id, cwd=tmp_path, db=sqlite_url).stdout
    )
    verify = cli("replay", run_id, "--verify", cwd=tmp_path, db=sqlite_url)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # The run's graph (web view, timeline) and `audit why` see the expansions too.
    api = Stepledger(sqlite_url, workdir=tmp_path)
    graph = api.step_requirements(run_id)
    assert graph["summary"] == ["process", *ids] and graph["process[2]"] == ["list"]
    assert api.audit("why", run_id, "summary")["requires"] == ["process", *ids]
    said = api.audit("why", run_id, "process")["reason"]
    assert said.startswith("a for_each step: it became 4 steps, one per item (process[0], process[1]")
    page = api.audit("timeline_html", run_id)
    assert all(f">{sid}<" in page for sid in ids)


def test_an_empty_list_skips_and_no_list_or_a_long_one_fails_with_one_line(
    tmp_path: Path, sqlite_url: str
) -> None:
    lists = {"empty": [], "long": [1, 2, 3], "text": "a.txt b.txt", "number": 5}

    def fan(name: str, **more: Any) -> dict[str, Any]:
        return {"id": name, "depends_on": ["list"], "for_each": f"${{steps.list.outputs.{name}}}",
                "tasks": ["touch ran-${for_each.index}"], **more}  # fmt: skip

    ws = write_workstream(
        tmp_path,
        {
            "id": "odd-lists",
            "tool": "shell",
            "steps": [
                {"id": "list", "tasks": [writes_outputs(**lists)]},
                fan("empty"),
                {**fan("empty_too", on_skip="skip"), "for_each": "${steps.list.outputs.empty}"},
                fan("long", max_fan_out=2),
                fan("text"),
                fan("number"),
                {"id": "after_empty", "depends_on": ["empty"], "tasks": ["touch after-empty"]},
                {"id": "after_too", "depends_on": ["empty_too"], "tasks": ["touch after-too"]},
                {"id": "after_long", "depends_on": ["long"], "tasks": ["touch after-long"]},
            ],
        },
    )
    done = cli("run", str(ws), cwd=tmp_path, db=sqlite_url)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert not list(tmp_path.glob("ran-*"))  # nothing expanded
    assert (tmp_path / "after-empty").exists()  # on_skip: run (the default)
    assert not (tmp_path / "after-too").exists() and not (tmp_path / "after-long").exists()
    run_id = only_run_id(sqlite_url, tmp_path)
    status = json.loads(cli("status", run_id, "--json", cwd=tmp_path, db=sqlite_url).stdout)
    rows = {s["step_id"]: (s["state"], s["last_error"]) for s in status["steps"]}
    assert rows["empty"][0] == rows["empty_too"][0] == "skipped"
    assert rows["after_too"][0] == "skipped" and rows["after_long"] == ("blocked", "blocked by long")
    assert rows["long"] == (
        "tripped",
        "error: for_each: steps.list.outputs.long has 3 items, more than max_fan_out (2); raise "
        "max_fan_out (up to 10,000) or make the list shorter",
    )
    assert rows["text"][0] == "tripped" and "steps.list.outputs.text is not JSON" in rows["text"][1]
    assert rows["number"] == ("tripped", "error: for_each: steps.list.outputs.number is a number, not a list")
    events = _events(sqlite_url, run_id)
    skips = {sid: p["reason"] for t, sid, p in events if t == "step.skipped"}
    assert skips["empty"] == "empty: steps.list.outputs.empty is an empty list"
    assert skips["after_too"] == "condition: empty_too was skipped"
    assert not [e for e in events if e[0] == "step.expanded"]
    trips = [sid for t, sid, p in events if t == "step.tripped" and p["reason"] == "not_retryable"]
    assert Counter(trips) == Counter(["long", "number", "text"])  # each tripped once
    verify = cli("replay", run_id, "--verify", cwd=tmp_path, db=sqlite_url)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_validate_and_run_refuse_a_for_each_that_cannot_work(tmp_path: Path, sqlite_url: str) -> None:
    ws = write_workstream(
        tmp_path,
        {
            "id": "bad",
            "tool": "shell",
            "steps": [
                {"id": "list", "tasks": ["true"]},
                {"id": "stray", "for_each": "${steps.list.outputs.files}", "tasks": ["true"]},
                {"id": "both", "depends_on": ["list"], "for_each": "${steps.list.outputs.files}",
                 "matrix": {"py": ["3.11", "3.12", "3.13"]}, "tasks": ["true"]},
            ],
        },
    )  # fmt: skip
    done = cli("validate", str(ws), cwd=tmp_path, db=sqlite_url)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2, lines
    said = "\n".join(lines)
    assert "steps[1].for_each [step stray]: ${steps.list.outputs.files} reads step `list`, which" in said
    assert "steps[2].for_each [step both[py=3.11]]: a step cannot have both matrix and for_each" in said
    run = cli("run", str(ws), cwd=tmp_path, db=sqlite_url)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert not (tmp_path / ".stepledger" / "runs").exists() or not list(
        (tmp_path / ".stepledger" / "runs").iterdir()
    )


def test_a_failed_run_rolls_back_the_expansions_that_passed(tmp_path: Path, sqlite_url: str) -> None:
    made = 'touch "made-${for_each.item}" && echo "{\\"f\\": \\"made-$STEPLEDGER_ITEM\\"}" > '
    made += '"$STEPLEDGER_OUTPUTS"'
    ws = write_workstream(
        tmp_path,
        {
            "id": "fan-saga",
            "tool": "shell",
            "saga": {"enabled": True},
            "steps": [
                {"id": "list", "tasks": [writes_outputs(files=["a", "b", "bad"])]},
                {"id": "process", "depends_on": ["list"], "for_each": "${steps.list.outputs.files}",
                 "tasks": ['test "${for_each.item}" != bad', made], "compensation": "rm ${step_output.f}"},
            ],
        },
    )  # fmt: skip
    done = cli("run", str(ws), cwd=tmp_path, db=sqlite_url)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Rolling back 2 completed steps in reverse order" in done.stdout
    assert not list(tmp_path.glob("made-*"))  # both passed expansions were undone
    run_id = only_run_id(sqlite_url, tmp_path)
    undone = [p["step_id"] for t, _, p in _events(sqlite_url, run_id) if t == "compensation.passed"]
    assert sorted(undone) == ["process[0]", "process[1]"]  # in the reverse of the order they passed
