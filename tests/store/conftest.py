"""Fixtures of the store tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from audit_sample import fill

from stepledger.store.connect import open_store
from stepledger.store.sql import SqlEventStore


@pytest.fixture
def sample(sql_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[SqlEventStore]:
    """A SQL store (each dialect) holding the sample log of audit_sample.py."""
    store = open_store(sql_url)
    assert isinstance(store, SqlEventStore)
    fill(store, monkeypatch)
    yield store
    store.close()
