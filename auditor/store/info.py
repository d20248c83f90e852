"""A short description of a store: schema version, table sizes, recent crawls."""

from __future__ import annotations

from typing import Any

from auditor.store.database import Store

PUBLIC_TABLES = ("models", "lineage", "lineage_defects", "crawl_runs", "model_changes", "lineage_changes")


def describe_store(store: Store, *, recent: int = 5) -> dict[str, Any]:
    tables = {name: int(store.query(f"SELECT count(*) FROM {name}")[0][0]) for name in PUBLIC_TABLES}
    crawls = store.query_dicts(
        "SELECT crawl_id, mode, status, started_at, finished_at, requests, models_new, models_changed,"
        " models_removed, error FROM crawl_runs ORDER BY crawl_id DESC LIMIT ?",
        [recent],
    )
    return {"path": str(store.path), "schema_version": store.version(), "tables": tables, "crawls": crawls}
