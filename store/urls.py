"""What a database URL names, read without a driver."""

from __future__ import annotations

from urllib.parse import unquote


def sqlite_file(url: str) -> str | None:
    """The file of a plain `sqlite:///path` URL (SQLAlchemy's form), None for anything else."""
    for prefix in ("sqlite:///", "sqlite+pysqlite:///"):
        if url.startswith(prefix):
            path = unquote(url[len(prefix) :])
            # URL options, or an in-memory database (one per connection), go through SQLAlchemy.
            return path if path and "?" not in url and path != ":memory:" else None
    return None
