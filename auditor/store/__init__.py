"""The DuckDB store, the one home of duckdb in the project.

Store            the file: open, migrate, transactions, read queries
LineageStore     the crawl's tables: runs, models, lineage edges, defects, change logs
"""

from auditor.store.database import Store, schema_version
from auditor.store.lineage import CrawlRun, LineageStore

__all__ = ["CrawlRun", "LineageStore", "Store", "schema_version"]
