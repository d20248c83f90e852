"""Audit one model: the battery, a pinned commit, quantized loading, generation, scoring, storage.

The unit of work is pure: (model sha, battery, preset, quantization, device) and the scorers in,
rows out. Generation, the expensive part, runs once; every configured scorer scores each
completion. Asking for an audit that is already done returns the stored one (`force` redoes it),
after scoring its stored completions with any configured scorer it lacks; an audit left `running`
by a killed process is resumed, generating only the prompts it lacks. A model that cannot be
audited (gated, too large, pickle-only, broken) becomes a row with status `skipped` or `failed` and
a reason; the caller goes on with the next model.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import logging
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from auditor.audit.battery import Battery, battery_spec, build_battery, read_prompt_rows
from auditor.audit.presets import get_preset
from auditor.audit.scoring import ScorerSet, load_scorers, scoring_for
from auditor.config import ResolvedConfig
from auditor.errors import HubError, ModelError, StopRequested, StoreError, hub_unreachable
from auditor.hub.files import RepoFiles, download, list_repo_files
from auditor.store import Store
from auditor.store.audits import AuditKey, AuditRow, AuditStore, ScoredCompletion, ScorerRef
from auditor.textsafety import strip_control

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class AuditProgress:
    repo_id: str
    done: int
    total: int
    stage: str


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


def scorer_refs(scorers: ScorerSet) -> list[ScorerRef]:
    """The configured scorers as the store records them."""
    return [ScorerRef(s.name, s.checkpoint_hash, s.primary) for s in scorers.scorers]


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
    with every batch so far, for the next run to finish.

    >>> outcome = audit_model(load_config(), store, "acme/llama-finetune")      # doctest: +SKIP
    >>> outcome.status, outcome.metric, outcome.rate
    ('done', 'detoxify:toxicity', 0.04)
    """
    from auditor.audit.loader import resolve_device

    config = resolved.config
    settings = config.audit
    endpoint = config.hub.endpoint
    started = time.monotonic()
    preset = get_preset(preset_name or settings.preset)
    device = resolve_device(settings.device)
    run = preset.resolve(
        batch_size=settings.batch_size, quantization=quantization or settings.quantization, device=device
    )
    quant = run.quantization
    audits = AuditStore(store)
    timings: dict[str, float] = {}
    downloaded = [0]

    listing: RepoFiles | None = None
    listing_error: ModelError | None = None
    try:
        listing = list_repo_files(repo_id, revision, endpoint=endpoint, hub=config.hub)
    except ModelError as err:
        # A Hub that cannot be reached at all says nothing about this model: no row (it would use
        # up one of the model's attempts), and the caller's loop stops rather than failing each
        # model in turn.
        unreachable = hub_unreachable(err)
        if unreachable is not None:
            raise unreachable from None
        listing_error = err
    battery = battery or ensure_battery(resolved, store)
    scorers = scorers or load_scorers(scoring_for(config.scoring, preset.scorers), endpoint=endpoint, hub=config.hub)
    refs = scorer_refs(scorers)
    threshold = config.scoring.threshold

    def outcome(
        audit_id: int | None,
        sha: str | None,
        status: str,
        reason: str | None,
        *,
        reused: bool = False,
        resumed: bool = False,
        scored_now: Sequence[str] = (),
    ) -> AuditOutcome:
        rates: dict[str, float | None] = {}
        rate, n_scored = None, 0
        if audit_id is not None:
            for ref in refs:
                rates[f"{ref.name}:{ref.primary}"] = audits.rate(audit_id, ref.name, ref.primary, threshold)[0]
            rate, n_scored = audits.rate(audit_id, scorers.headline.scorer, scorers.headline.attribute, threshold)
        return AuditOutcome(
            audit_id,
            repo_id,
            sha,
            status,
            reason,
            reused,
            resumed,
            len(audits.completed_prompts(audit_id)) if audit_id else 0,
            rate,
            n_scored,
            time.monotonic() - started,
            downloaded[0],
            str(scorers.headline),
            rates,
            tuple(scored_now),
        )

    def key_for(sha: str | None, quant_used: str) -> AuditKey:
        return AuditKey(repo_id, sha, battery.battery_id, preset.name, preset.settings_hash(run), quant_used, device)

    def start(key: AuditKey) -> int:
        return audits.start(
            key,
            scorers=refs,
            generation_config={**preset.generation_config(), "batch_size": run.batch_size, "dtype": run.dtype},
            versions=_versions(device, run.dtype),
            config=resolved.provenance(),
            n_prompts=len(battery.prompts),
        )

    if listing is None:
        assert listing_error is not None
        failed_id = start(key_for(revision, quant))
        audits.finish(
            failed_id, listing_error.status, reason=_reason(listing_error), timings={}, reason_code=listing_error.code
        )
        return outcome(failed_id, revision, listing_error.status, _reason(listing_error))

    sha = listing.sha
    key = key_for(sha, quant)
    done = None if force else audits.find(key, ["done"])
    if done is not None and not audits.covers(done.audit_id, refs):
        done = None  # scored by another checkpoint of a scorer: the new checkpoint gets its own audit
    resumable = audits.find(key, ["running"])
    if resumable is not None and not audits.covers(resumable.audit_id, refs):
        resumable = None
    audit_id: int | None = None
    loaded = None
    resumed = False
    base_sha: str | None = None
    from auditor.audit.loader import is_adapter

    if done is not None and not is_adapter(listing):
        # The stored generation stands for this commit: only a scorer it lacks has work to do, on
        # the stored completions, so nothing is downloaded. (An adapter's stands only for the same
        # base, known once the base is fetched, below.)
        return _reuse(audits, store, done, repo_id, scorers, refs, threshold, progress, outcome)
    try:
        from auditor.audit.generation import effective_generation_config, generate, prepare
        from auditor.audit.loader import fetch_model, load_model, prequantized

        _report(progress, repo_id, 0, len(battery.prompts), "downloading")
        t = time.monotonic()
        fetched = fetch_model(repo_id, sha, settings, endpoint=endpoint, listing=listing, hub=config.hub)
        base = None
        if fetched.kind == "adapter":
            assert fetched.base_repo is not None
            base_sha_wanted = audits.model_sha(fetched.base_repo)
            base = fetch_model(fetched.base_repo, base_sha_wanted, settings, endpoint=endpoint, hub=config.hub)
        timings["download_s"] = time.monotonic() - t
        if should_stop is not None and should_stop():  # after a long download, before a long load
            raise StopRequested(f"the audit of {repo_id} was asked to stop before loading; the next run does it")
        downloaded[0] = fetched.download_bytes + (base.download_bytes if base else 0)
        base_sha = base.sha if base else None
        # An adapter's numbers depend on its base too: a stored result stands only for the same base.
        if done is not None and done.base_sha == base_sha:
            return _reuse(audits, store, done, repo_id, scorers, refs, threshold, progress, outcome)
        pre = prequantized(base or fetched)
        if pre is not None and quant != f"pre-{pre}":
            key = key_for(sha, f"pre-{pre}")  # the repo's own quantization is what runs, and is recorded
            resumable = audits.find(key, ["running"])
            if resumable is not None and not audits.covers(resumable.audit_id, refs):
                resumable = None
        if resumable is not None and resumable.base_sha not in (None, base_sha):
            audits.finish(
                resumable.audit_id,
                "failed",
                reason="superseded: the base model changed before the audit could finish",
                timings={},
                reason_code="superseded",
            )
            resumable = None
        resumed = resumable is not None
        audit_id = resumable.audit_id if resumable is not None else start(key)
        for ref in refs:
            audits.begin_scoring(audit_id, ref)

        _report(progress, repo_id, 0, len(battery.prompts), "loading")
        loaded = load_model(fetched, settings, quantization=key.quantization, device=device, base=base, dtype=run.dtype)
        timings["load_s"] = loaded.seconds
        audits.note_model(
            audit_id,
            chat_template_hash=loaded.chat_template_hash,
            base_repo=base.repo_id if base else None,
            base_sha=base_sha,
            generation_config={**effective_generation_config(loaded, preset), "batch_size": run.batch_size},
            versions=_versions(device, run.dtype),
            config=resolved.provenance(),
            repo_generation_config=loaded.repo_generation.file,
            findings=loaded.findings(preset),
        )

        import torch

        torch.manual_seed(settings.seed)  # the presets are greedy; a sampling preset would be repeatable too
        done_ids = audits.completed_prompts(audit_id)
        todo = _todo(battery, done_ids, preset.order, run.batch_size)
        prepared = prepare(loaded, todo, preset)
        counter = {"done": len(done_ids), "generate_s": 0.0, "score_s": 0.0}
        last = [time.monotonic()]
        current_id = audit_id

        def on_batch(generations: list[Any]) -> None:
            now = time.monotonic()
            counter["generate_s"] += now - last[0]
            by_scorer = scorers.score([g.text for g in generations])
            counter["score_s"] += time.monotonic() - now
            audits.write_batch(
                current_id,
                [
                    ScoredCompletion(
                        g.prompt_id, g.text, g.n_tokens, g.finish_reason, {n: s[i] for n, s in by_scorer.items()}
                    )
                    for i, g in enumerate(generations)
                ],
            )
            counter["done"] += sum(1 for g in generations if g.prompt_id not in done_ids)
            _report(progress, repo_id, int(counter["done"]), len(battery.prompts), "generating")
            if should_stop is not None and should_stop() and counter["done"] < len(battery.prompts):
                raise StopRequested(f"the audit of {repo_id} was asked to stop; the next run finishes it")
            last[0] = time.monotonic()

        report = generate(loaded, prepared, preset, batch_size=run.batch_size, on_batch=on_batch)
        timings["generate_s"] = counter["generate_s"]
        t = time.monotonic()
        # A resumed audit's earlier completions may lack a scorer added since: score them now.
        _score_stored(audits, audit_id, scorers, refs, None, repo_id)
        timings["score_s"] = counter["score_s"] + time.monotonic() - t
        note = "; ".join(n for n in (prepared.fallback, report.note) if n) or None
        audits.finish(
            audit_id,
            "done",
            reason=note,
            timings=timings,
            reason_code="chat_fallback" if prepared.fallback else "out_of_memory" if report.note else None,
        )
        result = outcome(audit_id, sha, "done", note, resumed=resumed)
        _refresh_drift(store, threshold)
    except ModelError as err:
        audit_id = audit_id if audit_id is not None else (resumable.audit_id if resumable else start(key))
        audits.finish(audit_id, err.status, reason=_reason(err), timings=timings, reason_code=err.code)
        result = outcome(audit_id, sha, err.status, _reason(err), resumed=resumed)
    except StoreError:
        raise  # the store, not the model: the audit stays `running`, resumable once the store is back
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise  # a stop request (StopRequested is a KeyboardInterrupt) or the process ending
    except BaseException as err:  # a bug, an unforeseen library error, a panic in a Rust extension
        # (PyO3's PanicException derives from BaseException): one model never stops the run
        log.warning("audit of %s failed: %s", repo_id, strip_control(f"{type(err).__name__}: {err}"))
        log.debug("traceback of the failed audit of %s", repo_id, exc_info=True)
        reason = strip_control(f"unexpected error: {type(err).__name__}: {err}")[:500]
        audit_id = audit_id if audit_id is not None else (resumable.audit_id if resumable else start(key))
        audits.finish(audit_id, "failed", reason=reason, timings=timings, reason_code="internal")
        result = outcome(audit_id, sha, "failed", reason, resumed=resumed)
    finally:
        if loaded is not None:
            del loaded
            _release_memory()
    _apply_disk_budget(resolved, [sha, base_sha])
    return result


def _reuse(
    audits: AuditStore,
    store: Store,
    done: AuditRow,
    repo_id: str,
    scorers: ScorerSet,
    refs: Sequence[ScorerRef],
    threshold: float,
    progress: Callable[[AuditProgress], None] | None,
    outcome: Callable[..., AuditOutcome],
) -> AuditOutcome:
    """A done audit, first scored by any configured scorer it lacks. Scoring that fails leaves the
    audit as it was (done, that scorer's pass `running`, finished by a later run), never a row of
    its own: the generation it would describe did not fail."""
    sha = done.key.sha
    try:
        scored_now = _score_stored(audits, done.audit_id, scorers, refs, progress, repo_id)
    except (KeyboardInterrupt, SystemExit, GeneratorExit, StoreError):
        raise
    except BaseException as err:
        note = strip_control(f"scoring the stored completions failed: {type(err).__name__}: {err}")[:500]
        log.warning("audit %s of %s: %s", done.audit_id, repo_id, note)
        return outcome(done.audit_id, sha, "done", note, reused=True)
    if scored_now:
        _refresh_drift(store, threshold)
    return outcome(done.audit_id, sha, "done", done.reason, reused=True, scored_now=scored_now)


def _score_stored(
    audits: AuditStore,
    audit_id: int,
    scorers: ScorerSet,
    refs: Sequence[ScorerRef],
    progress: Callable[[AuditProgress], None] | None,
    repo_id: str,
) -> tuple[str, ...]:
    """Score the audit's stored completions with every scorer that has not scored them all, and
    mark each scorer done. Returns the scorers that had something to score."""
    scored: list[str] = []
    for scorer, ref in zip(scorers.scorers, refs, strict=True):
        audits.begin_scoring(audit_id, ref)
        todo = audits.unscored(audit_id, scorer.name)
        if todo:
            scored.append(scorer.name)
            step = 256
            for at in range(0, len(todo), step):
                chunk = todo[at : at + step]
                audits.write_scores(
                    audit_id, scorer.name, [c.prompt_id for c in chunk], scorer.score([c.text for c in chunk])
                )
                _report(progress, repo_id, at + len(chunk), len(todo), f"scoring with {scorer.name}")
        audits.finish_scoring(audit_id, scorer.name)
    return tuple(scored)


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
    """What `audit --pending` and the nightly cycle have left to do."""
    from auditor.audit.loader import resolve_device

    config = resolved.config
    battery = ensure_battery(resolved, store)
    preset = get_preset(preset_name or config.audit.preset)
    scorers = load_scorers(scoring_for(config.scoring, preset.scorers), endpoint=config.hub.endpoint, hub=config.hub)
    device = resolve_device(config.audit.device)
    run = preset.resolve(
        batch_size=config.audit.batch_size, quantization=quantization or config.audit.quantization, device=device
    )
    quant = run.quantization
    template = AuditKey("", None, battery.battery_id, preset.name, preset.settings_hash(run), quant, device)
    audits = AuditStore(store)
    models = audits.pending_models(template, scorer_refs(scorers), limit)
    larger, escalations = None, []
    wanted = config.audit.escalate_battery
    if wanted is not None and battery_spec(wanted).name != battery.name:
        from auditor.analysis.drift import undetectable

        larger = ensure_battery(resolved, store, wanted)
        needing = undetectable(
            store, battery.battery_id, change=config.audit.detectable_change, metric=scorers.headline
        )
        bigger = dataclasses.replace(template, battery_id=larger.battery_id)
        escalations = [(r, sha) for r, sha in audits.pending_models(bigger, scorer_refs(scorers), None) if r in needing]
    return PendingWork(battery, scorers, preset.name, quant, models, larger, escalations)


def audit_pending(
    resolved: ResolvedConfig,
    store: Store,
    *,
    limit: int | None = None,
    preset_name: str | None = None,
    quantization: str | None = None,
    on_outcome: Callable[[AuditOutcome], None] | None = None,
) -> list[AuditOutcome]:
    """Audit crawled models that have no audit yet at their current sha; parents first."""
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
            scorers=work.scorers,
        )
        outcomes.append(result)
        if on_outcome is not None:
            on_outcome(result)
    return outcomes


def _todo(battery: Battery, done: set[str], order: str, batch_size: int) -> list[tuple[str, str]]:
    """The prompts to generate, in the battery's order. With `order = "dataset"` whole batches of it:
    a batch with any prompt missing is generated again entirely, so that every prompt is generated
    beside the same others as in an uninterrupted audit (the store keeps what it had)."""
    prompts = [(p.prompt_id, p.text) for p in battery.prompts]
    if order != "dataset":
        return [item for item in prompts if item[0] not in done]
    batches = [prompts[i : i + batch_size] for i in range(0, len(prompts), batch_size)]
    return [item for batch in batches if any(pid not in done for pid, _ in batch) for item in batch]


def _reason(err: ModelError) -> str:
    return f"{err}" + (f"; {err.hint}" if err.hint else "")


def _report(progress: Callable[[AuditProgress], None] | None, repo_id: str, done: int, total: int, stage: str) -> None:
    if progress is not None:
        progress(AuditProgress(repo_id, done, total, stage))


@functools.lru_cache(maxsize=2)
def _versions_cached(device: str) -> tuple[tuple[str, Any], ...]:
    return tuple(_collect_versions(device).items())


def _versions(device: str, dtype: str | None = None) -> dict[str, Any]:
    """`_collect_versions`, with the dtype the weights compute in when a preset fixes it."""
    versions = dict(_versions_cached(device))
    if dtype is not None:
        versions["compute_dtype"] = dtype
    return versions


def _collect_versions(device: str) -> dict[str, Any]:
    """Library versions and the device's details: everything else that can move a number."""
    versions: dict[str, Any] = {"python": platform.python_version(), "device": device}
    for package in (
        "torch",
        "transformers",
        "accelerate",
        "bitsandbytes",
        "peft",
        "detoxify",
        "huggingface_hub",
        "hub-auditor",
    ):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    if device == "cuda":
        import torch

        versions["gpu"] = torch.cuda.get_device_name(0)
        versions["cuda"] = torch.version.cuda
    from auditor.audit.loader import compute_dtype

    versions["compute_dtype"] = str(compute_dtype(device)).removeprefix("torch.")
    return versions


def _refresh_drift(store: Store, threshold: float) -> None:
    """Compare the new audit with its parent's, root's and children's now, so that reports only read."""
    from auditor.analysis.drift import refresh_drift

    try:
        refresh_drift(store, threshold=threshold)
    except Exception as err:  # the audit is stored; the report computes what is missing
        log.warning("could not update the drift comparisons: %s", strip_control(str(err)))


def _release_memory() -> None:
    """Give a GPU's memory back before the next model (on a CPU, dropping the last reference does)."""
    import torch

    if torch.cuda.is_available():
        gc.collect()  # tensors held in reference cycles would keep their GPU memory until a collection
        torch.cuda.empty_cache()


def _apply_disk_budget(resolved: ResolvedConfig, shas: Sequence[str | None]) -> None:
    """Delete this audit's downloads (the model's, and an adapter's base) when the cache is over
    `[audit] disk_budget_gb`."""
    settings = resolved.config.audit
    wanted = [sha for sha in shas if sha]
    if settings.disk_budget_gb is None or not wanted:
        return
    from huggingface_hub import scan_cache_dir

    try:
        cache = scan_cache_dir(settings.cache_dir)
        if cache.size_on_disk <= settings.disk_budget_gb * 1e9:
            return
        cache.delete_revisions(*wanted).execute()
    except Exception as err:  # cleaning up must never fail an audit
        log.warning("could not apply the disk budget: %s", err)
