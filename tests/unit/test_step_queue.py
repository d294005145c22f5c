"""A step's `queue` (docs/workers.md): its own, else the workstream's, else the fleet's default queue."""

from __future__ import annotations

import json
from pathlib import Path

from stepledger.engine.fleet.workstream import step_queues
from stepledger.engine.workstream import load_workstream, workstream_from_dict, workstream_to_dict


def test_each_step_goes_to_its_queue_or_the_workstream_s(tmp_path: Path) -> None:
    data = {"id": "w", "queue": "cpu", "steps": [
        {"id": "prep", "tool": "shell", "tasks": ["true"]},
        {"id": "train", "tool": "shell", "tasks": ["true"], "queue": "gpu", "depends_on": ["prep"]},
    ]}  # fmt: skip
    path = tmp_path / "ws.json"
    path.write_text(json.dumps(data))
    ws = load_workstream(path, env={})
    assert step_queues(ws) == {"prep": "cpu", "train": "gpu"}
    # Recorded in run.started with the rest of the workstream: a resume routes the same way.
    assert step_queues(workstream_from_dict(workstream_to_dict(ws))) == {"prep": "cpu", "train": "gpu"}
    del data["queue"]
    path.write_text(json.dumps(data))
    assert step_queues(load_workstream(path, env={})) == {"prep": "default", "train": "gpu"}
