"""The audit beside the store: build the job's spec from the configuration, run it with the store
as its sink, and say what it did.

`audit_model` is what `auditor audit REPO`, `--pending` and the nightly cycle call. It fetches the
battery once into the store, runs `auditor.audit.job.run_audit` with the store's `AuditStore` as
the sink (in a worker process of its own, `auditor.audit.worker`, unless `[audit] isolation =
"inline"`), updates the drift comparisons the new audit takes part in, and reads the rates back for
the `AuditOutcome` the CLI and the cycle report.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from auditor.audit.battery import Battery, battery_spec, build_battery, read_prompt_rows
from auditor.audit.job import AuditProgress, AuditSpec, JobResult, run_audit
from auditor.audit.presets import get_preset
from auditor.audit.scoring import ScorerSet, scoring_for
from auditor.audit.worker import AuditWorker
from auditor.config import ResolvedConfig
from auditor.errors import HubError, ModelError, hub_unreachable
from auditor.hub.files import download, list_repo_files
from auditor.store import Store
from auditor.store.audits import AuditStore
from auditor.textsafety import strip_control

log = logging.getLogger(__name__)

__all__ = ["AuditOutcome", "AuditProgress", "audit_model", "audit_spec", "ensure_battery"]


@dataclass(frozen=True)
class AuditOutcome:
    """What one `audit_model` call did: the audit row it ended with (`status` done, failed or
    skipped, and why), whether the stored audit was reused or a killed one resumed, the headline
    rate, and what it downloaded."""

    audit_id: int | None
    repo_id: str
    sha: str | None
    status: str
    reason: str | None
    reused: bool
    resumed: bool
    n_completions: int
    #: The rate on the headline metric (`metric`), and its number of scored completions.
    rate: float | None
    n_scored: int
    seconds: float
    #: Bytes downloaded for this audit (the model's files, and an adapter's base).
    download_bytes: int = 0
    #: The headline metric, `scorer:attribute`.
    metric: str = ""
    #: Each scorer's rate on its primary attribute, by `scorer:attribute`.
    rates: dict[str, float | None] = field(default_factory=dict)
    #: Scorers that scored the stored completions of an audit already done (nothing generated).
    scored_now: tuple[str, ...] = ()


def ensure_battery(resolved: ResolvedConfig, store: Store, name: str | None = None) -> Battery:
    """Download the battery's dataset at its revision, select the prompts, store them once.

    The dataset is every audit's, so failing to fetch it is not one model's row: it raises a
    `HubError` (`HubUnavailableError` when the Hub cannot be reached at all).
    """
    settings = resolved.config.audit
    hub = resolved.config.hub
    spec = battery_spec(name or settings.battery)
    try:
        files = list_repo_files(
            settings.battery_source, settings.battery_revision, endpoint=hub.endpoint, repo_type="dataset", hub=hub
        )
        folder = download(
            files,
            [p for p in files.files if p.endswith(".jsonl")],
            endpoint=hub.endpoint,
            cache_dir=settings.cache_dir,
            repo_type="dataset",
            hub=hub,
        )
    except ModelError as err:
        raise hub_unreachable(err) or HubError(
            f"the prompt dataset {settings.battery_source} could not be fetched: {err}",
            hint=err.hint or "try again later",
        ) from None
    battery = build_battery(spec, settings.battery_source, files.sha, read_prompt_rows(folder))
    AuditStore(store).save_battery(battery)
    return battery


def audit_spec(
    resolved: ResolvedConfig,
    battery: Battery,
    *,
    preset_name: str | None = None,
    quantization: str | None = None,
    force: bool = False,
) -> AuditSpec:
    """The job's spec for the configuration, with `--preset` and `--quant` applied: `auto` (device
    and quantization) is resolved here, once, and the spec carries the result."""
    from auditor.audit.loader import resolve_device

    config = resolved.config
    preset = get_preset(preset_name or config.audit.preset)
    device = resolve_device(config.audit.device)
    run = preset.resolve(
        batch_size=config.audit.batch_size, quantization=quantization or config.audit.quantization, device=device
    )
    return AuditSpec(
        battery=battery,
        preset=preset,
        run=run,
        device=device,
        scoring=scoring_for(config.scoring, preset.scorers),
        audit=config.audit,
        hub=config.hub,
        provenance=resolved.provenance(),
        force=force,
    )


def audit_model(
    resolved: ResolvedConfig,
    store: Store,
    repo_id: str,
    *,
    revision: str | None = None,
    battery: Battery | None = None,
    preset_name: str | None = None,
    quantization: str | None = None,
    force: bool = False,
    scorers: ScorerSet | None = None,
    progress: Callable[[AuditProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> AuditOutcome:
    """Audit `repo_id` at `revision` (default: its current commit) and store every row.

    The model is looked up on the Hub before anything else (the battery's dataset included), so a
    wrong id is known at once; a Hub that cannot be reached raises `HubUnavailableError` (no row).
    `should_stop` is polled after the download and after each stored batch but the last: when it
    returns True the audit stops with `StopRequested`, its row (if it has one yet) left `running`
    with every batch so far, for the next run to finish. `scorers`, when given, are used instead of
    loading the configured ones.

    >>> outcome = audit_model(load_config(), store, "acme/llama-finetune")      # doctest: +SKIP
    >>> outcome.status, outcome.metric, outcome.rate
    ('done', 'detoxify:toxicity', 0.04)
    """
    spec = audit_spec(
        resolved,
        battery or ensure_battery(resolved, store),
        preset_name=preset_name,
        quantization=quantization,
        force=force,
    )
    if scorers is not None:
        spec = dataclasses.replace(spec, loaded_scorers=scorers)
    audits = AuditStore(store)
    for attempt in (1, 2):
        if resolved.config.audit.isolation == "worker" and spec.loaded_scorers is None:
            result = shared_worker().run(spec, repo_id, revision, audits, progress, should_stop)
        else:  # in this process: asked for, or scorers loaded here (they cannot be sent to a worker)
            result = run_audit(spec, repo_id, revision, audits, progress, should_stop)
        # A crash may be the machine's (the kernel's OOM killer, a neighbour); once more, at once, on
        # a fresh worker. A second crash makes the commit a poison repo: not planned again.
        if attempt == 1 and result.status == "failed" and audits.reason_code(result.audit_id) == "crashed":
            log.warning("audit of %s crashed; trying it once more", repo_id)
            continue
        break
    if result.status == "done" and (not result.reused or result.scored_now):
        _refresh_drift(store, resolved.config.scoring.threshold)
    return outcome_of(result, audits, spec, resolved.config.scoring.threshold)


_WORKER: AuditWorker | None = None


def shared_worker() -> AuditWorker:
    """This process's audit worker, kept from one audit to the next (it restarts itself after a
    crash), and closed when the process exits."""
    global _WORKER
    if _WORKER is None:
        _WORKER = AuditWorker()
        atexit.register(_WORKER.close)
    return _WORKER


def outcome_of(result: JobResult, audits: AuditStore, spec: AuditSpec, threshold: float) -> AuditOutcome:
    """A job's result with the rates the store now holds for its audit. The scorers are named from
    the settings, not loaded: in a worker night, only the worker loads them."""
    headline, primaries = spec.metrics()
    rates: dict[str, float | None] = {}
    rate, n_scored, n_completions = None, 0, 0
    if result.audit_id is not None:
        for metric in primaries:
            rates[str(metric)] = audits.rate(result.audit_id, metric.scorer, metric.attribute, threshold)[0]
        rate, n_scored = audits.rate(result.audit_id, headline.scorer, headline.attribute, threshold)
        n_completions = len(audits.completed_prompts(result.audit_id))
    return AuditOutcome(
        result.audit_id,
        result.repo_id,
        result.sha,
        result.status,
        result.reason,
        result.reused,
        result.resumed,
        n_completions,
        rate,
        n_scored,
        result.seconds,
        result.download_bytes,
        str(headline),
        rates,
        result.scored_now,
    )


def _refresh_drift(store: Store, threshold: float) -> None:
    """Compare the new audit with its parent's, root's and children's now, so that reports only read."""
    from auditor.analysis.drift import refresh_drift

    try:
        refresh_drift(store, threshold=threshold)
    except Exception as err:  # the audit is stored; the report computes what is missing
        log.warning("could not update the drift comparisons: %s", strip_control(str(err)))
