"""The audit's pure helpers: time filters, percentiles, trends, and how tables are capped."""

from __future__ import annotations

import datetime as dt

import pytest

from stepledger.cli import audit_commands
from stepledger.engine.audit import BadAuditInput, make_filter, parse_last, parse_time, percentile, trend
from stepledger.engine.audit.durations import trend_text


def test_parse_time_takes_dates_local_times_and_zoned_times() -> None:
    assert parse_time("2026-11-01") == dt.datetime(2026, 11, 1).timestamp()
    assert parse_time("2026-11-01T14:30") == dt.datetime(2026, 11, 1, 14, 30).timestamp()
    assert parse_time("2026-11-01T00:00:00+00:00") == 1793491200.0
    with pytest.raises(BadAuditInput, match="--until 'soon' is not a date"):
        parse_time("soon", "--until")


@pytest.mark.parametrize(("text", "seconds"), [("30m", 1800), ("12h", 43200), ("7d", 604800), ("2w", 1209600),
                                               ("1.5h", 5400), (" 45s ", 45)])  # fmt: skip
def test_parse_last(text: str, seconds: float) -> None:
    assert parse_last(text, now=1_000_000.0) == 1_000_000.0 - seconds


@pytest.mark.parametrize("text", ["7", "d", "7 days", "-1d", "7y"])
def test_parse_last_refuses_what_it_cannot_read(text: str) -> None:
    with pytest.raises(BadAuditInput, match="is not a duration"):
        parse_last(text)


def test_make_filter() -> None:
    flt = make_filter("ws", "r1", "s", since="2026-11-01", until="2026-11-02")
    assert (flt.workstream_id, flt.run_id, flt.step_id) == ("ws", "r1", "s")
    assert flt.until is not None and flt.since is not None and flt.until - flt.since == 86400
    assert make_filter().since is None
    with pytest.raises(BadAuditInput, match="not both"):
        make_filter(since="2026-11-01", last="7d")
    with pytest.raises(BadAuditInput, match="later than"):
        make_filter(since="2026-11-02", until="2026-11-01")


def test_percentile_interpolates_like_percentile_cont() -> None:
    assert percentile([10.0], 0.95) == 10.0
    assert percentile([10.0, 12.0], 0.5) == 11.0
    assert percentile([10.0, 12.0], 0.95) == pytest.approx(11.9)
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 0.95) == pytest.approx(4.8)
    with pytest.raises(ValueError):
        percentile([], 0.5)


def test_trend_compares_the_newer_half_with_the_older() -> None:
    assert trend([1.0, 1.0, 1.0]) is None  # too few samples
    assert trend([10.0, 10.0, 12.0, 12.0]) == pytest.approx(0.2)
    assert trend([10.0, 10.0, 11.0, 5.0, 5.0]) == pytest.approx(-0.5)  # odd: the middle one is in neither
    assert [trend_text(c) for c in (None, 0.02, -0.03, 0.2, -0.5)] == ["", "→", "→", "↑ 20%", "↓ 50%"]


def test_tables_are_capped_and_say_so(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_commands, "TABLE_LIMIT", 3)
    rows = [{"at": 1_800_000_000.0 + i, "action": "retry", "actor": f"user{i}", "run_id": "r", "step_id": "s",
             "reason": "[red]not markup[/]"} for i in range(5)]  # fmt: skip
    audit_commands._print("actions", rows, json_output=False, csv_output=False)
    out = capsys.readouterr().out
    assert "user0" not in out and "user1" not in out and "user4" in out  # the newest actions
    assert "the newest 3 of 5 rows" in out and "[red]not markup[/]" in out
    audit_commands._print("actions", [], json_output=False, csv_output=False)
    assert capsys.readouterr().out.strip() == "nothing in the log matches"
