"""`stepledger logs` copies a log in chunks: its memory stays far below the size of the log."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from stepledger.engine.execution import files
from stepledger.engine.read.status import run_dir_of
from stepledger.events import RunStarted, StepReady, StepStarted, StreamWrite
from stepledger.store.connect import open_store

STEPLEDGER = str(Path(sys.executable).with_name("stepledger"))
LOG_MB = 200

# Run in a fresh interpreter that starts nothing else, so RUSAGE_CHILDREN is `logs` alone.
PEAK_OF_LOGS = """
import resource, subprocess, sys
with open(sys.argv[2], "wb") as sink:
    code = subprocess.run(sys.argv[1:2] + sys.argv[3:], stdout=sink).returncode
print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)  # KiB on Linux
"""


def test_logs_of_a_200_mb_log_take_far_less_memory_than_the_log(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    store = open_store(url)
    started = RunStarted(workstream_id="ws", workstream={"id": "ws"}, workstream_hash="h",
                         source_path="ws.json", workdir=str(tmp_path))  # fmt: skip
    store.append([StreamWrite("r1", "r1", 0, [started])])
    store.append(
        [StreamWrite("r1", "r1/big", 0, [StepReady(), StepStarted(attempt=1, host="h", pid=1, pgid=1)])]
    )
    store.close()
    log = Path(files.log_path(str(run_dir_of(str(tmp_path), "r1")), "big", 1))
    log.parent.mkdir(parents=True, exist_ok=True)
    line = "é output line of a chatty step, with a multi-byte character first\n".encode()
    block = line * (1024 * 1024 // len(line) + 1)
    with log.open("wb") as f:
        for _ in range(LOG_MB):
            f.write(block[: 1024 * 1024])
    copy = tmp_path / "copy.log"
    environment = {k: v for k, v in os.environ.items() if k != "STEPLEDGER_DB"}
    helper = [sys.executable, "-c", PEAK_OF_LOGS, STEPLEDGER, str(copy), "logs", "r1", "big", "--db", url]
    done = subprocess.run(helper, capture_output=True, text=True, timeout=300, env=environment, check=True)
    code, peak_kib = map(int, done.stdout.split())
    assert code == 0, done.stderr
    assert copy.stat().st_size == log.stat().st_size  # everything printed, every character whole
    with copy.open("rb") as printed, log.open("rb") as original:
        assert printed.read(1 << 20) == original.read(1 << 20)
    assert peak_kib < LOG_MB * 1024 / 4, f"logs peaked at {peak_kib / 1024:.0f} MB for a {LOG_MB} MB log"
    copy.unlink()
    log.unlink()
