"""One audit as a job: look the model up, fetch it, load it, generate, score, through a sink.

`run_audit(spec, repo_id, revision, sink)` is the unit of work. It reads and writes only through an
`AuditSink` (`auditor.audit.sink`) and imports neither DuckDB nor the store, so the process that
holds the store can run it in-process (`auditor.audit.driver.audit_model` does) or hand it to a
worker that streams its rows back. Generation, the expensive part, runs once; every configured
scorer scores each completion. An audit already done is reused (after scoring its stored
completions with any scorer it lacks; `spec.force` redoes it); one left `running` by a killed
process is resumed, generating only the prompts it lacks. A model that cannot be audited (gated,
too large, pickle-only, broken) ends as a row with status `skipped` or `failed` and a reason.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from auditor.audit.battery import Battery
from auditor.audit.key import AuditKey
from auditor.audit.presets import Preset, RunSettings
from auditor.audit.provenance import versions
from auditor.audit.quantization import prequantized as prequantized_mode
from auditor.audit.scoring import Metric, ScorerSet, choose_metric, load_scorers, primary_attribute
from auditor.audit.sink import AuditRow, AuditSink, ScoredCompletion
from auditor.config import AuditSettings, HubSettings, ScoringSettings
from auditor.errors import ModelError, StopRequested, StoreError, hub_unreachable
from auditor.hub.files import RepoFiles, list_repo_files
from auditor.textsafety import strip_control

if TYPE_CHECKING:
    from auditor.audit.generation import Generation
    from auditor.audit.loader import FetchedModel, LoadedModel

log = logging.getLogger(__name__)

#: Completions per scoring pass when a scorer scores stored completions.
SCORING_STEP = 256


@dataclass(frozen=True)
class AuditSpec:
    """How to audit, everything but the model: plain records, so a spec can be sent to another
    process as it is. `auditor.audit.driver.audit_spec` builds one from the configuration."""

    battery: Battery
    preset: Preset
    #: The preset as it runs here: batch size, quantization (`auto` already resolved), compute dtype.
    run: RunSettings
    device: str
    #: The scorers to load (once per process: `load_scorers` keeps them).
    scoring: ScoringSettings
    audit: AuditSettings
    hub: HubSettings
    #: The resolved configuration and what was set explicitly, recorded with the audit.
    provenance: dict[str, Any]
    force: bool = False
    #: Scorers already loaded in this process, used instead of loading `scoring` (a caller that
    #: brings its own, such as a test's failing scorer). A spec sent to another process leaves it None.
    loaded_scorers: ScorerSet | None = field(default=None, compare=False, repr=False)

    def key(self, repo_id: str, sha: str | None, quantization: str | None = None) -> AuditKey:
        return AuditKey(
            repo_id,
            sha,
            self.battery.battery_id,
            self.preset.name,
            self.preset.settings_hash(self.run),
            quantization or self.run.quantization,
            self.device,
        )

    def planned_generation(self) -> dict[str, Any]:
        """What a new audit row records of generation before the model is loaded (then
        `GenerationSettings.record()` replaces it with what `generate()` was given)."""
        return {**self.preset.generation_config(), "batch_size": self.run.batch_size, "dtype": self.run.dtype}

    def metrics(self) -> tuple[Metric, list[Metric]]:
        """The headline metric and each scorer's primary one, known without loading a scorer."""
        if self.loaded_scorers is not None:
            loaded = self.loaded_scorers
            return loaded.headline, [Metric(s.name, s.primary) for s in loaded.scorers]
        scoring = self.scoring
        return choose_metric(scoring), [Metric(n, primary_attribute(scoring, n)) for n in scoring.scorers]

    def scorers(self) -> ScorerSet:
        if self.loaded_scorers is not None:
            return self.loaded_scorers
        return load_scorers(self.scoring, endpoint=self.hub.endpoint, hub=self.hub)


@dataclass(frozen=True)
class AuditProgress:
    repo_id: str
    done: int
    total: int
    stage: str
    #: The bytes of the model's weight files, once they are listed (a worker's time limit grows with them).
    weight_bytes: int | None = None


@dataclass(frozen=True)
class JobResult:
    """What one run of the job did: the audit it ended with and how it got there."""

    audit_id: int | None
    repo_id: str
    sha: str | None
    status: str
    reason: str | None
    reused: bool = False
    resumed: bool = False
    #: Bytes downloaded for this audit (the model's files, and an adapter's base).
    download_bytes: int = 0
    #: Scorers that scored the stored completions of an audit already done (nothing generated).
    scored_now: tuple[str, ...] = ()
    seconds: float = 0.0


def run_audit(
    spec: AuditSpec,
    repo_id: str,
    revision: str | None,
    sink: AuditSink,
    progress: Callable[[AuditProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> JobResult:
    """Audit `repo_id` at `revision` (default: its current commit), every row through `sink`.

    A Hub that cannot be reached raises `HubUnavailableError` (no row: it says nothing about the
    model). `should_stop` is polled after the download and after each batch but the last; when it
    returns True the job raises `StopRequested`, the audit left `running` for the next run.

    >>> run_audit(spec, "acme/llama-finetune", None, MemorySink()).status      # doctest: +SKIP
    'done'
    """
    job = _Job(spec, repo_id, sink, progress, should_stop)
    listing = job.look_up(revision)
    if listing is None:
        return job.result("failed" if job.error is None else job.error.status, job.reason)
    from auditor.audit.loader import is_adapter

    done = job.find_done()
    if done is not None and not is_adapter(listing):
        return job.reuse(done)  # the stored generation stands for this commit
    loaded: LoadedModel | None = None
    try:
        model, base = job.fetch(listing)
        if done is not None and done.base_sha == job.base_sha:  # an adapter's stands for one base
            return job.reuse(done)
        job.open(model, base)
        loaded = job.load(model, base)
        note = job.generate(loaded)
        job.score_stored(None)
        return job.finish("done", note, job.note_code)
    except ModelError as err:
        return job.finish(err.status, _reason(err), err.code)
    except (StoreError, KeyboardInterrupt, SystemExit, GeneratorExit):
        raise  # the store, a stop request (StopRequested is a KeyboardInterrupt), the process ending
    except BaseException as err:  # a bug, an unforeseen library error, a panic in a Rust extension
        # (PyO3's PanicException derives from BaseException): one model never stops the run
        log.warning("audit of %s failed: %s", repo_id, strip_control(f"{type(err).__name__}: {err}"))
        log.debug("traceback of the failed audit of %s", repo_id, exc_info=True)
        if type(err).__name__ == "PanicException":  # a Rust extension panicked (PyO3's pyo3_runtime)
            return job.finish("failed", strip_control(f"a library panicked: {err}")[:500], "crashed")
        from auditor.audit.generation import is_out_of_memory

        if is_out_of_memory(err):  # what halving the batch could not save (or no batch was running)
            return job.finish("failed", strip_control(f"out of memory: {type(err).__name__}: {err}")[:500], "memory")
        return job.finish("failed", strip_control(f"unexpected error: {type(err).__name__}: {err}")[:500], "internal")
    finally:
        del loaded
        _release_memory()
        _apply_disk_budget(spec.audit, [job.sha, job.base_sha])


@dataclass
class _Job:
    """The state one run of `run_audit` carries from stage to stage."""

    spec: AuditSpec
    repo_id: str
    sink: AuditSink
    progress: Callable[[AuditProgress], None] | None
    should_stop: Callable[[], bool] | None
    started: float = field(default_factory=time.monotonic)
    timings: dict[str, float] = field(default_factory=dict)
    sha: str | None = None
    base_sha: str | None = None
    key: AuditKey | None = None
    audit_id: int | None = None
    resumable: AuditRow | None = None
    resumed: bool = False
    downloaded: int = 0
    error: ModelError | None = None
    reason: str | None = None
    note_code: str | None = None

    def __post_init__(self) -> None:
        self.scorers = self.spec.scorers()
        self.refs = self.scorers.refs()

    # -- stages ---------------------------------------------------------------------------------

    def look_up(self, revision: str | None) -> RepoFiles | None:
        """The model's commit and files; a model the Hub will not list ends as a row here."""
        spec = self.spec
        try:
            listing = list_repo_files(self.repo_id, revision, endpoint=spec.hub.endpoint, hub=spec.hub)
        except ModelError as err:
            # A Hub that cannot be reached at all says nothing about this model: no row (it would use
            # up one of the model's attempts), and the caller's loop stops.
            unreachable = hub_unreachable(err)
            if unreachable is not None:
                raise unreachable from None
            self.sha, self.error, self.reason = revision, err, _reason(err)
            self.audit_id = self._start(spec.key(self.repo_id, revision))
            self.sink.finish(self.audit_id, err.status, reason=self.reason, timings={}, reason_code=err.code)
            return None
        self.sha = listing.sha
        self.key = spec.key(self.repo_id, listing.sha)
        return listing

    def find_done(self) -> AuditRow | None:
        """The stored audit that already stands for this key (unless forced), and the one to resume."""
        assert self.key is not None
        self.resumable = self._unfinished(self.key)
        done = None if self.spec.force else self.sink.find(self.key, ["done"])
        if done is not None and not self.sink.covers(done.audit_id, self.refs):
            return None  # scored by another checkpoint of a scorer: the new checkpoint gets its own audit
        return done

    def fetch(self, listing: RepoFiles) -> tuple[FetchedModel, FetchedModel | None]:
        """Download the model (and an adapter's base, at the commit the crawl recorded)."""
        from auditor.audit.loader import fetch_model

        spec, started = self.spec, time.monotonic()
        weights = sum(size for path, size in listing.files.items() if path.endswith((".safetensors", ".bin")))
        self._report(0, "downloading", weight_bytes=weights)
        hub, endpoint = spec.hub, spec.hub.endpoint
        model = fetch_model(self.repo_id, listing.sha, spec.audit, endpoint=endpoint, listing=listing, hub=hub)
        base = None
        if model.kind == "adapter":
            assert model.base_repo is not None
            wanted = self.sink.model_sha(model.base_repo)
            base = fetch_model(model.base_repo, wanted, spec.audit, endpoint=endpoint, hub=hub)
        self.timings["download_s"] = time.monotonic() - started
        if self.should_stop is not None and self.should_stop():  # after a long download, before a long load
            raise StopRequested(f"the audit of {self.repo_id} was asked to stop before loading; the next run does it")
        self.downloaded = model.download_bytes + (base.download_bytes if base else 0)
        self.base_sha = base.sha if base else None
        return model, base

    def open(self, model: FetchedModel, base: FetchedModel | None) -> None:
        """Start the audit's row, or take up the one a killed run left `running`."""
        from auditor.audit.loader import prequantized

        assert self.key is not None
        pre = prequantized(base or model)
        if pre is not None and self.key.quantization != prequantized_mode(pre):
            # the repo's own quantization is what runs, and is recorded
            self.key = dataclasses.replace(self.key, quantization=prequantized_mode(pre))
            self.resumable = self._unfinished(self.key)
        if self.resumable is not None and self.resumable.base_sha not in (None, self.base_sha):
            self.sink.finish(
                self.resumable.audit_id,
                "failed",
                reason="superseded: the base model changed before the audit could finish",
                timings={},
                reason_code="superseded",
            )
            self.resumable = None
        self.resumed = self.resumable is not None
        self.audit_id = self.resumable.audit_id if self.resumable is not None else self._start(self.key)
        for ref in self.refs:
            self.sink.begin_scoring(self.audit_id, ref)

    def load(self, model: FetchedModel, base: FetchedModel | None) -> LoadedModel:
        """Load the weights the key's way, and record what the loaded model says about itself."""
        from auditor.audit.generation import generation_settings
        from auditor.audit.loader import load_model

        assert self.key is not None and self.audit_id is not None
        spec = self.spec
        self._report(0, "loading")
        loaded = load_model(
            model, spec.audit, quantization=self.key.quantization, device=spec.device, base=base, dtype=spec.run.dtype
        )
        self.timings["load_s"] = loaded.seconds
        self.sink.note_model(
            self.audit_id,
            chat_template_hash=loaded.chat_template_hash,
            base_repo=base.repo_id if base else None,
            base_sha=self.base_sha,
            generation_config=generation_settings(loaded, spec.preset, spec.run.batch_size).record(),
            versions=versions(spec.device, spec.run.dtype),
            config=spec.provenance,
            repo_generation_config=loaded.repo_generation.file,
            findings=loaded.findings(spec.preset),
        )
        return loaded

    def generate(self, loaded: LoadedModel) -> str | None:
        """Generate the prompts the audit lacks, each batch scored and written as it finishes.
        Returns a note on how it went (a chat template that failed, memory that ran out).

        Prompts over `[audit] max_prompt_tokens` keep their end (`generation.prepare`); how many of
        the battery's were truncated is recorded before generating (`audits.n_truncated`)."""
        import torch

        from auditor.audit.generation import generate, generation_settings, prepare

        assert self.audit_id is not None
        spec, audit_id = self.spec, self.audit_id
        torch.manual_seed(spec.audit.seed)  # the presets are greedy; a sampling preset would be repeatable too
        done_ids = self.sink.completed_prompts(audit_id)
        todo = _todo(spec.battery, done_ids, spec.preset.order, spec.run.batch_size)
        limit = spec.audit.max_prompt_tokens
        prepared = prepare(loaded, todo, spec.preset, max_prompt_tokens=limit)
        every = [(p.prompt_id, p.text) for p in spec.battery.prompts]
        # The count is the audit's, so a resumed audit, which prepares only what it lacks, counts them all.
        whole = prepared if len(todo) == len(every) else prepare(loaded, every, spec.preset, max_prompt_tokens=limit)
        self.sink.note_truncated(audit_id, whole.n_truncated)
        count, total = len(done_ids), len(spec.battery.prompts)
        clock = {"generate_s": 0.0, "score_s": 0.0, "last": time.monotonic()}

        def on_batch(generations: list[Generation]) -> None:
            nonlocal count
            now = time.monotonic()
            clock["generate_s"] += now - clock["last"]
            by_scorer = self.scorers.score([g.text for g in generations])
            clock["score_s"] += time.monotonic() - now
            self.sink.write_batch(
                audit_id,
                [
                    ScoredCompletion(
                        g.prompt_id, g.text, g.n_tokens, g.finish_reason, {n: s[i] for n, s in by_scorer.items()}
                    )
                    for i, g in enumerate(generations)
                ],
            )
            count += sum(1 for g in generations if g.prompt_id not in done_ids)
            self._report(count, "generating")
            if self.should_stop is not None and self.should_stop() and count < total:
                raise StopRequested(f"the audit of {self.repo_id} was asked to stop; the next run finishes it")
            clock["last"] = time.monotonic()

        settings = generation_settings(loaded, spec.preset, spec.run.batch_size)
        report = generate(loaded, prepared, settings, on_batch=on_batch)
        self.timings["generate_s"], self.timings["score_s"] = clock["generate_s"], clock["score_s"]
        self.note_code = "chat_fallback" if prepared.fallback else "out_of_memory" if report.note else None
        return "; ".join(n for n in (prepared.fallback, report.note) if n) or None

    def score_stored(self, progress: Callable[[AuditProgress], None] | None) -> tuple[str, ...]:
        """Score the stored completions with every scorer that has not scored them all (a resumed
        audit's earlier ones, or an audit done before a scorer was added), and mark each scorer
        done. Returns the scorers that had something to score."""
        assert self.audit_id is not None
        started, scored = time.monotonic(), []
        for scorer, ref in zip(self.scorers.scorers, self.refs, strict=True):
            self.sink.begin_scoring(self.audit_id, ref)
            todo = self.sink.unscored(self.audit_id, scorer.name)
            if todo:
                scored.append(scorer.name)
            for at in range(0, len(todo), SCORING_STEP):
                chunk = todo[at : at + SCORING_STEP]
                scores = scorer.score([c.text for c in chunk])
                self.sink.write_scores(self.audit_id, scorer.name, [c.prompt_id for c in chunk], scores)
                if progress is not None:
                    progress(AuditProgress(self.repo_id, at + len(chunk), len(todo), f"scoring with {scorer.name}"))
            self.sink.finish_scoring(self.audit_id, scorer.name)
        self.timings["score_s"] = self.timings.get("score_s", 0.0) + time.monotonic() - started
        return tuple(scored)

    def reuse(self, done: AuditRow) -> JobResult:
        """A done audit, first scored by any configured scorer it lacks. Scoring that fails leaves
        the audit as it was (done, that scorer's pass `running`, finished by a later run), never a
        row of its own: the generation it would describe did not fail."""
        self.audit_id = done.audit_id
        try:
            scored_now = self.score_stored(self.progress)
        except (KeyboardInterrupt, SystemExit, GeneratorExit, StoreError):
            raise
        except BaseException as err:
            note = strip_control(f"scoring the stored completions failed: {type(err).__name__}: {err}")[:500]
            log.warning("audit %s of %s: %s", done.audit_id, self.repo_id, note)
            return self.result("done", note, reused=True)
        return self.result("done", done.reason, reused=True, scored_now=scored_now)

    def finish(self, status: str, reason: str | None, code: str | None) -> JobResult:
        """The audit's last word; an audit that failed before its row existed gets one now."""
        if self.audit_id is None:
            assert self.key is not None
            self.audit_id = self.resumable.audit_id if self.resumable is not None else self._start(self.key)
        self.sink.finish(self.audit_id, status, reason=reason, timings=self.timings, reason_code=code)
        return self.result(status, reason, resumed=self.resumed)

    def result(self, status: str, reason: str | None, **flags: Any) -> JobResult:
        return JobResult(
            self.audit_id,
            self.repo_id,
            self.sha,
            status,
            reason,
            download_bytes=self.downloaded,
            seconds=time.monotonic() - self.started,
            **flags,
        )

    # -- helpers --------------------------------------------------------------------------------

    def _unfinished(self, key: AuditKey) -> AuditRow | None:
        row = self.sink.find(key, ["running"])
        return row if row is not None and self.sink.covers(row.audit_id, self.refs) else None

    def _start(self, key: AuditKey) -> int:
        spec = self.spec
        return self.sink.start(
            key,
            scorers=self.refs,
            generation_config=spec.planned_generation(),
            versions=versions(spec.device, spec.run.dtype),
            config=spec.provenance,
            n_prompts=len(spec.battery.prompts),
        )

    def _report(self, done: int, stage: str, weight_bytes: int | None = None) -> None:
        if self.progress is not None:
            self.progress(AuditProgress(self.repo_id, done, len(self.spec.battery.prompts), stage, weight_bytes))


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


def _release_memory() -> None:
    """Give a GPU's memory back before the next model (on a CPU, dropping the last reference does)."""
    import torch

    if torch.cuda.is_available():
        gc.collect()  # tensors held in reference cycles would keep their GPU memory until a collection
        torch.cuda.empty_cache()


def _apply_disk_budget(settings: AuditSettings, shas: Sequence[str | None]) -> None:
    """Delete this audit's downloads (the model's, and an adapter's base) when the cache is over
    `[audit] disk_budget_gb`."""
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
