"""The Hub community-model auditor: lineage crawl, toxicity audits and drift reports.

The public Python API is small on purpose:

    from auditor.config import load_config
    from auditor.store import Store
    from crawlers import crawl_lineage

Heavy libraries (torch, transformers, duckdb, huggingface_hub) are imported lazily by the
modules that own them, so importing this package and running `auditor --help` stay instant.
"""

__version__ = "0.1.0"
