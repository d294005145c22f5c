"""Payload JSON as the databases read it: the text the store writes (orjson's spelling) parses in
SQLite's json functions and PostgreSQL's jsonb to exactly what the standard encoder's text did,
and comes back through the store as it did then (unchanged from SQLite; from jsonb, as jsonb
rewrites numbers, which it did to the old text alike).
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import create_engine, text

from stepledger.events import StepPassed, StreamWrite
from stepledger.store.connect import open_store

STANDARD = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)

# Numbers orjson spells differently from the standard encoder, 64-bit edges, text with escapes,
# and the spelling "\u0000" that is no U+0000: all of it written by orjson.
OUTPUTS: dict[str, Any] = {
    "exp": 1e16,
    "tiny": 1e-7,
    "whole": 123.0,
    "sum": 0.1 + 0.2,
    "max": 1.7976931348623157e308,
    "min": 5e-324,
    "i63": 2**63 - 1,
    "u64": 2**64 - 1,
    "neg": -(2**63),
    "text": 'snow ☃, tab\t, quote " backslash \\u0000 \u2028 🧪',
    "nested": {"list": [1, 1.5, "x", True, False, {}], "empty": []},
}
# What orjson refuses or would misspell, written by the standard encoder: past 64 bits, a None.
FALLBACK: dict[str, Any] = {"huge": 2**70, "none": None, "exp": 1e16}

LEAF = (
    "SELECT json_type({0}, :p), CASE WHEN json_type({0}, :p) IN ('array', 'object')"
    " THEN NULL ELSE json_extract({0}, :p) END FROM events WHERE version = :v"
)


def test_stored_payloads_mean_to_the_database_what_the_standard_encoder_wrote(sql_url: str) -> None:
    events = [
        StepPassed(attempt=1, started_at=1.5, finished_at=1e9 + 0.25, outputs=OUTPUTS),
        StepPassed(attempt=2, started_at=-1.0, finished_at=2.0, outputs=FALLBACK),
    ]
    store = open_store(sql_url)
    try:
        store.append([StreamWrite("r1", "r1/a", 0, events)])
        read = store.read_stream("r1/a")
    finally:
        store.close()
    engine = create_engine(sql_url)
    try:
        with engine.connect() as conn:
            for version, event in enumerate(events, 1):
                standard = STANDARD.encode(event.to_payload())
                if engine.dialect.name == "postgresql":
                    # jsonb compares numbers as numeric: 1e16 = 1e+16, and 1e16 <> 1e15.
                    same = "SELECT payload = CAST(:std AS jsonb) FROM events WHERE version = :v"
                    assert conn.execute(text(same), {"std": standard, "v": version}).scalar_one() is True
                    # jsonb keeps numbers as numeric and writes them back its own way (1e16 as
                    # 10000000000000000, an int to Python): whatever it made of the old text.
                    before = conn.execute(text("SELECT CAST(CAST(:std AS jsonb) AS text)"), {"std": standard})
                    assert read[version - 1].payload == json.loads(before.scalar_one())
                    continue
                assert read[version - 1].event == event
                valid = "SELECT json_valid(payload) FROM events WHERE version = :v"
                assert conn.execute(text(valid), {"v": version}).scalar_one() == 1
                for key in event.outputs:
                    params = {"p": f"$.outputs.{key}", "v": version, "std": standard}
                    ours = conn.execute(text(LEAF.format("payload")), params).one()
                    assert ours == conn.execute(text(LEAF.format(":std")), params).one()
    finally:
        engine.dispose()
