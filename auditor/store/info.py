"""A short description of a store: schema version, table sizes, recent crawls."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from auditor.store.database import Store

PUBLIC_TABLES = ("models", "lineage", "lineage_defects", "crawl_runs", "model_changes", "lineage_changes")
#: Everything `auditor export` writes: the public tables and views.
EXPORTED = (
    *PUBLIC_TABLES,
    "prompts",
    "batteries",
    "battery_prompts",
    "audits",
    "audit_scorers",
    "completions",
    "scores",
    "drift_pairs",
    "lineage_closure",
    "audit_scorings",
    "audit_summary",
    "drift",
)


def describe_store(store: Store, *, recent: int = 5) -> dict[str, Any]:
    tables = {name: int(store.query(f"SELECT count(*) FROM {name}")[0][0]) for name in PUBLIC_TABLES}
    crawls = store.query_dicts(
        "SELECT crawl_id, mode, strategy, status, started_at, finished_at, requests, models_new, models_changed,"
        " models_removed, error FROM crawl_runs ORDER BY crawl_id DESC LIMIT ?",
        [recent],
    )
    return {"path": str(store.path), "schema_version": store.version(), "tables": tables, "crawls": crawls}


def export_parquet(store: Store, directory: Path) -> dict[str, int]:
    """Write each public table and view to `directory/<name>.parquet`; returns rows per name."""
    directory.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in EXPORTED:
        target = directory / f"{name}.parquet"
        with store.session() as con:
            con.execute(f"COPY (SELECT * FROM {name}) TO '{_quote(str(target))}' (FORMAT parquet)")
        written[name] = int(store.query(f"SELECT count(*) FROM {name}")[0][0])
    return written


def _quote(path: str) -> str:
    return path.replace("'", "''")
