"""Stores as earlier versions of the auditor left them."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def store_at_schema(path: Path, version: int) -> Any:
    """A DuckDB file as an auditor of schema `version` left it (an open duckdb connection)."""
    import duckdb

    from auditor.store.database import migrations

    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR NOT NULL,"
        " applied_at TIMESTAMPTZ NOT NULL)"
    )
    for migration in migrations()[:version]:
        con.execute(migration.sql)
        con.execute("INSERT INTO schema_migrations VALUES (?, ?, now())", [migration.version, migration.name])
    return con
