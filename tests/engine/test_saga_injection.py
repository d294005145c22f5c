"""A step's recorded outputs reach its compensation as data: a hostile output runs nothing during rollback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from failure_scripts import prints_error, write_workstream, writes_outputs

from stepledger.engine.session.runs import start_run
from stepledger.engine.workstream import load_workstream
from stepledger.store.connect import open_store
from stepledger.store.port import EventStore

OUTPUTS = {
    "id": 'u1"; touch pwned1; echo "',
    "sub": "$(touch pwned2)",
    "semi": "x; touch pwned3",
    "quote": "it's'; touch pwned4; '",
}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest) -> Iterator[EventStore]:
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    store = open_store(url)
    yield store
    store.close()


def test_hostile_step_outputs_are_text_in_the_compensation(db: EventStore, tmp_path: Path) -> None:
    action = (
        'echo "undo ${step_output.id}" >> undo.txt; echo ${step_output.sub} >> undo.txt; '
        "echo ${step_output.semi} >> undo.txt; echo '${step_output.quote}' >> undo.txt; "
        'echo "$STEPLEDGER_OUTPUT_ID" >> undo.txt'
    )
    data = {
        "id": "ws-inject",
        "saga": {"enabled": True},
        "execution": {"parallel": False},
        "steps": [
            {
                "id": "create",
                "tool": "shell",
                "tasks": [writes_outputs(**OUTPUTS)],
                "compensation": {"action": action, "parameters": {"user": "${step_output.id}"}},
            },
            {"id": "boom", "tool": "shell", "tasks": [prints_error("down")], "depends_on": ["create"]},
        ],
    }
    result = start_run(db, load_workstream(write_workstream(tmp_path, data)), workdir=tmp_path)
    assert result.outcome == "rolled_back"
    assert sorted(p.name for p in tmp_path.glob("pwned*")) == []
    assert (tmp_path / "undo.txt").read_text().splitlines() == [
        "undo " + OUTPUTS["id"],
        OUTPUTS["sub"],
        OUTPUTS["semi"],
        OUTPUTS["quote"],
        OUTPUTS["id"],
    ]
    started = next(e.payload for e in db.read_run(result.run_id) if e.type == "compensation.started")
    assert "touch" not in started["action"]  # the recorded command is the one that ran: references only
    assert started["parameters"] == {"user": OUTPUTS["id"]}
    assert json.loads(json.dumps(started["parameters"])) == {"user": OUTPUTS["id"]}
