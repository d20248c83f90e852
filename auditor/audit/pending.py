"""What is left to audit: the crawled models without a finished audit made the configured way.

`audit --pending` and the nightly cycle read `pending_work`; `audit_pending` audits it in order,
parents first, each model through `auditor.audit.driver.audit_model`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

from auditor.audit.battery import Battery, battery_spec
from auditor.audit.driver import AuditOutcome, audit_model, audit_spec, ensure_battery
from auditor.audit.scoring import ScorerSet
from auditor.config import ResolvedConfig
from auditor.store import Store
from auditor.store.audits import AuditStore


@dataclass(frozen=True)
class PendingWork:
    """The crawled models that have no finished audit, made and scored the configured way, at their
    current sha."""

    battery: Battery
    scorers: ScorerSet
    preset_name: str
    quantization: str
    models: list[tuple[str, str]]  # (repo_id, sha), parents first
    #: `[audit] escalate_battery`, and the models to audit with it too: both sides of comparisons
    #: the battery is too small for (`auditor.analysis.drift.undetectable`), not yet audited with it.
    escalation_battery: Battery | None = None
    escalations: list[tuple[str, str]] = field(default_factory=list)


def pending_work(
    resolved: ResolvedConfig,
    store: Store,
    *,
    limit: int | None = None,
    preset_name: str | None = None,
    quantization: str | None = None,
) -> PendingWork:
    """What `audit --pending` and the nightly cycle have left to do.

    >>> work = pending_work(load_config(), store, limit=10)                      # doctest: +SKIP
    >>> work.models[:1]
    [('google/gemma-2b', '0123abcd...')]
    """
    config = resolved.config
    battery = ensure_battery(resolved, store)
    spec = audit_spec(resolved, battery, preset_name=preset_name, quantization=quantization)
    scorers = spec.scorers()
    refs = scorers.refs()
    template = spec.key("", None)
    audits = AuditStore(store)
    models = audits.pending_models(template, refs, limit)
    larger, escalations = None, []
    wanted = config.audit.escalate_battery
    if wanted is not None and battery_spec(wanted).name != battery.name:
        from auditor.analysis.drift import undetectable

        larger = ensure_battery(resolved, store, wanted)
        change = config.audit.detectable_change
        needing = undetectable(
            store, battery.battery_id, change=change, metric=scorers.headline, scoring=config.scoring
        )
        bigger = dataclasses.replace(template, battery_id=larger.battery_id)
        escalations = [(r, sha) for r, sha in audits.pending_models(bigger, refs, None) if r in needing]
    return PendingWork(battery, scorers, spec.preset.name, spec.run.quantization, models, larger, escalations)


def audit_pending(
    resolved: ResolvedConfig,
    store: Store,
    *,
    limit: int | None = None,
    preset_name: str | None = None,
    quantization: str | None = None,
    on_outcome: Callable[[AuditOutcome], None] | None = None,
) -> list[AuditOutcome]:
    """Audit crawled models that have no audit yet at their current sha; parents first.

    >>> [o.status for o in audit_pending(load_config(), store, limit=2)]        # doctest: +SKIP
    ['done', 'done']
    """
    work = pending_work(resolved, store, limit=limit, preset_name=preset_name, quantization=quantization)
    outcomes = []
    queue = [(r, sha, work.battery) for r, sha in work.models]
    if work.escalation_battery is not None:
        queue += [(r, sha, work.escalation_battery) for r, sha in work.escalations]
    for repo_id, sha, battery in queue[:limit] if limit is not None else queue:
        result = audit_model(
            resolved,
            store,
            repo_id,
            revision=sha,
            battery=battery,
            preset_name=work.preset_name,
            quantization=work.quantization,
        )
        outcomes.append(result)
        if on_outcome is not None:
            on_outcome(result)
    return outcomes
