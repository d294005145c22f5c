"""The driver's question "which of these attempts are settled?" (ledger.settled), answered right
and by primary-key lookups even on a table the planner has no statistics for yet."""

from __future__ import annotations

import psycopg
import pytest

from stepledger.engine.fleet import ledger, schema
from stepledger.engine.fleet.settings import conninfo

pytestmark = pytest.mark.postgres


def _attempts(conn: psycopg.Connection) -> None:
    """1,000 settled steps of run r1 (s7 failed once, then passed), one claimed, and another run."""
    rows = [("r1", f"s{n}", 1, "done") for n in range(1000)]
    rows += [("r1", "s7", 2, "done"), ("r1", "busy", 1, "claimed"), ("r2", "s1", 1, "done")]
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO stepledger_fleet_attempts (run_id, step_id, attempt, state, result)"
            " VALUES (%s, %s, %s, %s, '{}'::jsonb)",
            rows,
        )


def test_settled_answers_for_the_steps_asked_in_the_run_asked(pg_url: str) -> None:
    with psycopg.connect(conninfo(pg_url), autocommit=True) as conn:
        schema.install(conn)
        _attempts(conn)
        found = ledger.settled(conn, "r1", ["s1", "s7", "busy", "missing"])
    assert sorted((row.step_id, row.attempt, row.state) for row in found) == [
        ("s1", 1, "done"),
        ("s7", 1, "done"),
        ("s7", 2, "done"),
    ]  # not the claimed attempt, not r2's s1, nothing for a step never run


@pytest.mark.parametrize("plan", ["force_custom_plan", "force_generic_plan"])
def test_settled_looks_attempts_up_by_key_on_a_table_without_statistics(pg_url: str, plan: str) -> None:
    with psycopg.connect(conninfo(pg_url), autocommit=True) as conn:
        schema.install(conn)
        _attempts(conn)
        analyzed = conn.execute(
            "SELECT last_analyze, last_autoanalyze FROM pg_stat_user_tables"
            " WHERE relname = 'stepledger_fleet_attempts'"
        ).fetchone()
        assert analyzed == (None, None)  # the case of a young database
        conn.execute(f"SET plan_cache_mode = {plan}")
        numbered = ledger.SETTLED.replace("%s", "$1", 1).replace("%s", "$2", 1)
        conn.execute(f"PREPARE settled_probe(text[], text) AS {numbered}")
        lines = conn.execute("EXPLAIN EXECUTE settled_probe(ARRAY['s500', 's501'], 'r1')").fetchall()
    text = "\n".join(line[0] for line in lines)
    assert "Index Cond: ((run_id = " in text and "step_id = wanted.step_id" in text, text
    assert "Seq Scan on stepledger_fleet_attempts" not in text, text
