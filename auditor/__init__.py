"""The Hub community-model auditor: lineage crawl, toxicity audits and drift reports.

The public Python API is small on purpose, and `__all__` is all of it (a test pins it):

    from auditor import load_config, Store, audit_pending, drift_rows

    resolved = load_config("auditor.toml")
    with Store.open_configured(resolved.config.store) as store:
        audit_pending(resolved, store, limit=10)
        most_drifted = drift_rows(store)[:20]

The crawl lives beside the core, not in it: `from crawlers import crawl_lineage`.

Importing this package stays instant: the names are loaded from their modules on first use, and
heavy libraries (torch, transformers, duckdb, huggingface_hub) are imported lazily by the modules
that own them, so `import auditor` and `auditor --help` import none of them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from auditor.analysis.drift import DriftRow, drift_rows
    from auditor.audit.driver import audit_model
    from auditor.audit.pending import audit_pending
    from auditor.config import ResolvedConfig, load_config
    from auditor.errors import AuditorError
    from auditor.store import Store

__version__ = "0.1.0"

#: Each public name and the module that defines it.
_HOMES = {
    "load_config": "auditor.config",
    "ResolvedConfig": "auditor.config",
    "Store": "auditor.store",
    "audit_model": "auditor.audit.driver",
    "audit_pending": "auditor.audit.pending",
    "drift_rows": "auditor.analysis.drift",
    "DriftRow": "auditor.analysis.drift",
    "AuditorError": "auditor.errors",
}

__all__ = [
    "AuditorError",
    "DriftRow",
    "ResolvedConfig",
    "Store",
    "audit_model",
    "audit_pending",
    "drift_rows",
    "load_config",
]


def __getattr__(name: str) -> Any:
    """Load a public name from its module on first use (PEP 562), so `import auditor` stays instant."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'auditor' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
