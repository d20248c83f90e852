"""The Hub side: discovering the derivatives of the root models through declared lineage.

crawl_lineage(config, store)   one crawl (full, or incremental from the change feed)
HubClient                      the huggingface_hub HTTP path, with retries and a request meter
"""

from crawlers.hub import HubClient
from crawlers.lineage import CrawlOptions, CrawlResult, crawl_lineage

__all__ = ["CrawlOptions", "CrawlResult", "HubClient", "crawl_lineage"]
