"""The crawl's view of the Hub's rate limits: the process-wide one of `auditor.hub.backoff`.

The crawler and the audit's own Hub calls (repo info, file trees, downloads) spend the same quota,
so they read the Hub's `RateLimit` headers in one place and pace themselves from it: what was this
module's moved to `auditor.hub.backoff` (the core never imports `crawlers`). A crawl's summary reports
what it spent with `RATE_LIMITS.usage` (a `QuotaUsage`), counted from `RATE_LIMITS.mark`.
"""

from __future__ import annotations

from auditor.hub.backoff import RATE_LIMITS, QuotaUsage, RateLimits, bucket_of, origin_of

__all__ = ["RATE_LIMITS", "QuotaUsage", "RateLimits", "bucket_of", "origin_of"]
