"""The store's SQL without SQLAlchemy stays true to the declared schema (schema.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stepledger.store import ddl, ddl_render, statements
from stepledger.store.projections import STEP_FIELDS
from stepledger.store.schema import HEAD_REVISION, events, run_leases, runs, step_outcomes, step_states


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_the_checked_in_ddl_is_what_the_schema_renders(dialect: str) -> None:
    assert ddl.TABLES[dialect] == tuple(ddl_render.render(dialect)), (
        "store/ddl.py is stale: run `python -m stepledger.store.ddl_render`"
    )
    assert ddl.HEAD_REVISION == HEAD_REVISION


def test_the_store_statements_name_the_declared_columns_in_order() -> None:
    for table, columns in [
        (events, statements.EVENT_COLUMNS),
        (runs, statements.RUN_COLUMNS),
        (step_states, statements.STEP_COLUMNS),
        (run_leases, statements.LEASE_COLUMNS),
        (step_outcomes, statements.OUTCOME_COLUMNS),
    ]:
        assert tuple(c.name for c in table.columns) == columns, table.name
    # The projector writes step rows as tuples of the state's fields after the run id.
    assert ("run_id", *STEP_FIELDS) == statements.STEP_COLUMNS
    json_columns = {c.name for t in (events, runs, step_states) for c in t.columns if "JSON" in repr(c.type)}
    assert json_columns == statements.JSON_COLUMNS
    booleans = {c.name for t in (runs, step_states) for c in t.columns if repr(c.type) == "Boolean()"}
    assert booleans == statements.BOOLEAN_COLUMNS


def test_opening_and_appending_to_a_sqlite_log_does_not_import_sqlalchemy(tmp_path: Path) -> None:
    # What a `stepledger run` on the default SQLite file does before its first step.
    script = f"""
import sys
from stepledger.events import RunStarted, StreamWrite
from stepledger.store.connect import open_store
store = open_store("sqlite:///{tmp_path / "ledger.db"}")
event = RunStarted(workstream_id="w", workstream={{}}, workstream_hash="h", source_path="-", workdir=".")
store.append([StreamWrite("r", "r", 0, [event])])
assert store.run_state("r").workstream_id == "w"
store.close()
print(sorted(m for m in sys.modules if m.split(".")[0] in ("sqlalchemy", "alembic")))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
