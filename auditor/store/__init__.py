"""The DuckDB store, the one home of duckdb in the project.

Store            the file: open, migrate, transactions, read queries
LineageStore     the crawl's tables: runs, models, lineage edges, defects, change logs
HubIndex         the crawler's Hub-wide index of declared parents, and where a scan stands
"""

from auditor.store.crawls import CrawlRun, LineageStore, tree_digest
from auditor.store.database import Store, schema_version
from auditor.store.hubindex import HubIndex

__all__ = ["CrawlRun", "HubIndex", "LineageStore", "Store", "schema_version", "tree_digest"]
