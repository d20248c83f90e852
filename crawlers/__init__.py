"""The Hub side: discovering the derivatives of the root models through declared lineage.

crawl_lineage(config, store)   one crawl: full (by walk or by scan), or incremental from the change feed
HubClient                      the huggingface_hub HTTP path, with retries, pacing and a request meter
choose_strategy                walk or scan, from their estimated costs (crawlers.plan)
"""

from crawlers.client import HubClient
from crawlers.crawl import CrawlOptions, CrawlProgress, CrawlResult, crawl_lineage
from crawlers.plan import StrategyChoice, choose_strategy

__all__ = [
    "CrawlOptions",
    "CrawlProgress",
    "CrawlResult",
    "HubClient",
    "StrategyChoice",
    "choose_strategy",
    "crawl_lineage",
]
