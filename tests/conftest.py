"""Shared test options. Database fixtures live in tests/dbs.py and tests/private_cluster.py and are
imported here."""

from __future__ import annotations

import pytest
from dbs import pg_template, pg_url, sql_url, sqlite_url, store, store_url  # noqa: F401 - fixtures
from private_cluster import private_cluster  # noqa: F401 - a fixture


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak", action="store_true", default=False, help="run the long crash/concurrency soaks"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--soak"):
        return
    skip = pytest.mark.skip(reason="soak: run with --soak")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
