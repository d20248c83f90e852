"""An audit in a worker process: the worker measures, the parent holds the store.

A repo is hostile input, and some of what it can do is not an exception: a tokenizer whose regex
makes its Rust code panic, a chat template that renders forever, a config that makes the loader
allocate gigabytes. So the audit job (`auditor.audit.job.run_audit`) runs in a process of its
own. The parent sends it the spec (plain records) and the repo; the worker runs the job with a
`PipeSink`, which forwards every sink call to the parent, and the parent answers each from its
own sink (the store). The store never leaves the parent, and every batch is written before the
worker goes on, so a worker that dies loses at most the batch it was making.

The parent holds the limits:

- wall clock: `[audit] max_minutes` for 1,000 prompts of a model of up to about a billion
  parameters (2 GB of 16-bit weights), scaled up with the battery's prompts and, once the worker
  has the file listing, with the weights' bytes;
- memory: `[audit] max_memory_gb` (default 80% of the machine's), an `RLIMIT_DATA` on the worker,
  so that an allocation over it fails inside the worker (a CPU or CUDA out-of-memory error halves
  the batch first; what still fails ends the audit as `memory`);
- a stop request (SIGTERM to the cycle, Ctrl-C): the job checks at every batch; a worker that does
  not answer within `STOP_GRACE_S` is killed and its audit left `running`, for the next run.

A worker that crashes (a signal, a panic that ended it, an exit), runs past its time or is killed
ends its audit as a `failed` row with the code `crashed`, `timeout` or `memory` and a reason that
says which; the parent starts a fresh worker for the next audit. A commit that failed so twice is
not planned again (`AuditStore.pending_models`). The worker is kept between audits, so torch,
transformers and the scorers load once per night, not once per model.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import pickle
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from auditor.audit.job import AuditProgress, AuditSpec, JobResult, run_audit
from auditor.audit.key import AuditKey, ScorerRef
from auditor.audit.scoring import Score
from auditor.audit.sink import AuditRow, AuditSink, ScoredCompletion, StoredCompletion
from auditor.errors import AuditorError, StopRequested
from auditor.textsafety import strip_control

log = logging.getLogger(__name__)

#: Seconds a worker has to reach its next check after a stop is asked, before it is killed.
STOP_GRACE_S = 15.0
#: Seconds a worker may take to start and load the scorers before its first audit's clock starts.
STARTUP_S = 600.0
#: Seconds between the parent's looks at the worker, its deadline and the stop flag.
POLL_S = 0.25
#: Weights of this many bytes (a billion parameters in 16 bits) take the unscaled time limit.
UNIT_BYTES = 2e9


def time_limit_s(spec: AuditSpec, weight_bytes: int | None = None) -> float:
    """The wall-clock seconds an audit may take: `[audit] max_minutes` per 1,000 prompts and per
    2 GB of weights, never less than `max_minutes`.

    >>> time_limit_s(spec_with(max_minutes=60, prompts=330))                     # doctest: +SKIP
    3600.0
    """
    prompts = max(1.0, len(spec.battery.prompts) / 1000)
    size = max(1.0, (weight_bytes or 0) / UNIT_BYTES)
    return spec.audit.max_minutes * 60 * prompts * size


def memory_limit_bytes(max_memory_gb: float | None) -> int | None:
    """The worker's `RLIMIT_DATA`: `[audit] max_memory_gb`, else 80% of the machine's memory."""
    if max_memory_gb is not None:
        return int(max_memory_gb * 1e9)
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not a POSIX system that says
        return None
    return int(total * 0.8)


class AuditWorker:
    """One worker process, started on first use and again after it dies; `run` audits one model.

    >>> with AuditWorker() as worker:                                             # doctest: +SKIP
    ...     result = worker.run(spec, "acme/llama-finetune", None, AuditStore(store))
    """

    def __init__(self) -> None:
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self._memory: int | None = None

    def __enter__(self) -> AuditWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Ask the worker to end, and end it if it does not."""
        if self._conn is not None:
            with contextlib.suppress(OSError, ValueError):
                self._conn.send(("close",))
            self._conn.close()
        if self._process is not None:
            self._process.join(timeout=5)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
        self._process, self._conn = None, None

    def run(
        self,
        spec: AuditSpec,
        repo_id: str,
        revision: str | None,
        sink: AuditSink,
        progress: Callable[[AuditProgress], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> JobResult:
        """`run_audit` in the worker, its sink calls answered from `sink`, under the limits."""
        conn = self._started(memory_limit_bytes(spec.audit.max_memory_gb))
        # Until the worker has its scorers (a fresh worker imports torch and loads them first), the
        # clock is the start-up's; the audit's own limit runs from then.
        audit = _Watched(spec, repo_id, revision, time.monotonic(), max(STARTUP_S, time_limit_s(spec)))
        conn.send(("audit", spec, repo_id, revision))
        try:
            return self._follow(conn, audit, sink, progress, should_stop)
        except BaseException:
            # Whatever ends the parent's side early (a Ctrl-C, an error of its own) must not leave a
            # worker in the middle of an audit for the next call: it is ended, and the next starts fresh.
            if not audit.over:
                self.close()
            raise

    def _follow(
        self,
        conn: Connection,
        audit: _Watched,
        sink: AuditSink,
        progress: Callable[[AuditProgress], None] | None,
        should_stop: Callable[[], bool] | None,
    ) -> JobResult:
        """Answer the worker's calls until its audit ends."""
        spec = audit.spec
        while True:
            message = self._next(conn, audit, should_stop)
            if message is None:  # the worker is gone, or over its time: it has been ended
                audit.over = True
                return self._failed(audit, sink, should_stop)
            kind = message[0]
            if kind == "call":
                self._answer(conn, audit, sink, message[1], message[2], message[3])
            elif kind == "progress":
                update: AuditProgress = message[1]
                if update.weight_bytes is not None:
                    audit.limit_s = time_limit_s(spec, update.weight_bytes)
                if progress is not None:
                    progress(update)
            elif kind == "should_stop":
                conn.send(("reply", bool(should_stop is not None and should_stop())))
            elif kind == "refs":
                audit.refs = message[1]
                audit.started, audit.limit_s = time.monotonic(), time_limit_s(spec)
            elif kind == "done":
                audit.over = True
                result: JobResult = message[1]
                return result
            elif kind == "raised":
                audit.over = True  # the worker is idle again: the error is the audit's, not the worker's
                raise message[1]

    # -- the parent's side of one audit ---------------------------------------------------------

    def _started(self, memory: int | None) -> Connection:
        if self._process is not None and (not self._process.is_alive() or memory != self._memory):
            self.close()
        if self._conn is None:
            # `spawn`: a fresh interpreter. A forked child would inherit the parent's threads' locks
            # (logging, the HTTP client's pools), its DuckDB connection and any CUDA state, which
            # CUDA does not support across fork (docs.pytorch.org, "Multiprocessing best practices").
            context = multiprocessing.get_context("spawn")
            parent, child = context.Pipe()
            levels = {name: logging.getLogger(name).getEffectiveLevel() for name in _LOGGERS}
            process = context.Process(target=_serve, args=(child, memory, levels), name="auditor-worker", daemon=True)
            process.start()
            child.close()
            self._process, self._conn, self._memory = process, parent, memory
        assert self._conn is not None
        return self._conn

    def _next(self, conn: Connection, audit: _Watched, should_stop: Callable[[], bool] | None) -> Any | None:
        """The worker's next message, or None once the worker is gone or has been ended (why is
        in `audit.ended`). Raises StopRequested when a stop was asked and the worker does not
        reach its next check in time (its audit stays `running`)."""
        assert self._process is not None
        while True:
            # The limits are checked before every message too: a worker that keeps talking is held
            # to them as one that has gone quiet.
            now = time.monotonic()
            if now - audit.started <= audit.limit_s and conn.poll(POLL_S):
                try:
                    return conn.recv()
                except (EOFError, OSError):
                    audit.ended = self._why_gone()
                    return None
            now = time.monotonic()
            if not self._process.is_alive():
                audit.ended = self._why_gone()
                return None
            if now - audit.started > audit.limit_s:
                self._kill()
                audit.ended = (
                    "timeout",
                    f"the audit ran past its time limit of {audit.limit_s / 60:.1f} min ([audit] max_minutes,"
                    " scaled by the battery's prompts and the weights' size) and was stopped",
                )
                return None
            if should_stop is not None and should_stop():
                audit.stop_asked = audit.stop_asked or now
                if now - audit.stop_asked > STOP_GRACE_S:
                    self._kill()
                    raise StopRequested(
                        f"the audit of {audit.repo_id} did not stop within {STOP_GRACE_S:g} s and its worker was"
                        " ended; the next run finishes it"
                    )

    def _answer(self, conn: Connection, audit: _Watched, sink: AuditSink, name: str, args: Any, kwargs: Any) -> None:
        if name not in _SINK_CALLS:
            self._kill()
            raise AuditorError(f"the audit worker asked for {name!r}, which is not a sink call")
        audit.saw_call(name, args, kwargs)
        try:
            value = getattr(sink, name)(*args, **kwargs)
        except BaseException as err:  # the job decides: a StoreError ends the audit left `running`
            conn.send(("raise", _portable(err)))
            return
        audit.saw_result(name, value)
        conn.send(("reply", value))

    def _failed(self, audit: _Watched, sink: AuditSink, should_stop: Callable[[], bool] | None) -> JobResult:
        """The row of an audit whose worker did not come back, and the next audit's fresh worker."""
        self.close()
        if should_stop is not None and should_stop():
            raise StopRequested(f"the audit of {audit.repo_id} was stopped with its worker; the next run finishes it")
        code, reason = audit.ended or ("crashed", "the audit's worker process ended without a word")
        log.warning("audit of %s: %s", audit.repo_id, reason)
        seconds = time.monotonic() - audit.started
        if audit.audit_id is not None and audit.audit_id in audit.done_ids:
            # It was scoring the stored completions of a done audit: that generation did not fail.
            note = f"scoring the stored completions failed: {reason}"
            return JobResult(audit.audit_id, audit.repo_id, audit.sha, "done", note, reused=True, seconds=seconds)
        audit_id = audit.audit_id
        if audit_id is None:
            if audit.refs is None:
                raise AuditorError(
                    f"the audit worker failed before the audit of {audit.repo_id} began: {reason}",
                    hint="run `auditor audit` on one model with `--debug`; check the scorers' settings ([scoring])",
                )
            audit_id = _start_row(audit, sink)
        sink.finish(audit_id, "failed", reason=reason, timings={"seconds": seconds}, reason_code=code)
        return JobResult(audit_id, audit.repo_id, audit.sha, "failed", reason, seconds=seconds)

    def _why_gone(self) -> tuple[str, str]:
        assert self._process is not None
        self._process.join(timeout=5)
        exit_code = self._process.exitcode
        if exit_code is not None and exit_code < 0:
            name = signal.Signals(-exit_code).name
            also = " (the kernel's out-of-memory killer sends it too)" if -exit_code == signal.SIGKILL else ""
            return "crashed", f"the audit's worker process was killed by {name}{also}"
        return "crashed", f"the audit's worker process exited with code {exit_code} in the middle of the audit"

    def _kill(self) -> None:
        if self._process is not None and self._process.is_alive():
            self._process.kill()
            self._process.join()


@dataclass
class _Watched:
    """What the parent knows of the audit a worker is running: enough to record its end."""

    spec: AuditSpec
    repo_id: str
    revision: str | None
    started: float
    limit_s: float
    refs: list[ScorerRef] | None = None
    key: AuditKey | None = None
    audit_id: int | None = None
    done_ids: set[int] = field(default_factory=set)
    stop_asked: float | None = None
    ended: tuple[str, str] | None = None
    #: The worker finished with this audit (a result, an error it raised, or its end).
    over: bool = False

    @property
    def sha(self) -> str | None:
        return self.key.sha if self.key is not None else self.revision

    def saw_call(self, name: str, args: Sequence[Any], kwargs: dict[str, Any]) -> None:
        if name in ("find", "start"):
            self.key = args[0]
        elif name in ("begin_scoring", "note_model", "write_batch", "write_scores"):
            self.audit_id = args[0]

    def saw_result(self, name: str, value: Any) -> None:
        if name == "start":
            self.audit_id = value
        elif name == "find" and isinstance(value, AuditRow) and value.status == "done":
            self.done_ids.add(value.audit_id)


def _start_row(audit: _Watched, sink: AuditSink) -> int:
    """A row for an audit whose worker ended before the job started one."""
    from auditor.audit.provenance import versions

    spec = audit.spec
    assert audit.refs is not None
    return sink.start(
        audit.key or spec.key(audit.repo_id, audit.revision),
        scorers=audit.refs,
        generation_config=spec.planned_generation(),
        versions=versions(spec.device, spec.run.dtype),
        config=spec.provenance,
        n_prompts=len(spec.battery.prompts),
    )


def _portable(err: BaseException) -> BaseException:
    """`err` if it survives pickling, else a RuntimeError that says what it was."""
    try:
        pickle.loads(pickle.dumps(err))
    except Exception:
        return RuntimeError(strip_control(f"{type(err).__name__}: {err}")[:1000])
    return err


# -- the worker's side ----------------------------------------------------------------------------


#: Loggers whose levels the worker takes from its parent (the root, and those `auditor.cli.logs` sets).
_LOGGERS = ("", "huggingface_hub.utils._http")


def _serve(conn: Connection, memory: int | None, levels: dict[str, int]) -> None:
    """The worker process: audits one model after another until told to close."""
    import resource

    # The parent decides when to stop: a SIGINT or SIGTERM sent to the whole process group must not
    # end the worker mid-batch (it would be recorded as a crash); the parent ends it when it must.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent()
    if memory is not None:
        # RLIMIT_DATA counts the heap and private anonymous mappings (Linux 4.7 and later: man 2
        # setrlimit), which is where tensors live; file-backed mappings of the weights are not counted.
        resource.setrlimit(resource.RLIMIT_DATA, (memory, memory))
    logging.basicConfig(level=levels.get("", logging.WARNING), format="%(levelname)s %(name)s: %(message)s")
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    _quiet_progress_bars()
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message[0] != "audit":
            return
        _, spec, repo_id, revision = message
        sink = PipeSink(conn)
        try:
            scorers = spec.scorers()
            conn.send(("refs", scorers.refs()))
            result = run_audit(spec, repo_id, revision, sink, sink.progress, sink.should_stop)
        except BaseException as err:  # to the parent, which raises it: the Hub unreachable, a stop, the store
            conn.send(("raised", _portable(err)))
            continue
        conn.send(("done", result))


def _quiet_progress_bars() -> None:
    """The parent shows each audit's progress; the libraries' own download and weight-loading bars
    would only break its lines."""
    import huggingface_hub.utils
    import transformers

    huggingface_hub.utils.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()


def _die_with_parent() -> None:
    """Have the kernel end this worker if the parent dies (Linux `prctl(PR_SET_PDEATHSIG)`), so that
    a killed cycle leaves no worker generating behind it."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        PR_SET_PDEATHSIG = 1  # linux/prctl.h
        ctypes.CDLL(name, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class PipeSink:
    """An `AuditSink` whose every call is answered by the parent process's sink."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        self._conn.send(("call", name, args, kwargs))
        return self._reply()

    def _reply(self) -> Any:
        kind, value = self._conn.recv()
        if kind == "raise":
            raise value
        return value

    def progress(self, update: AuditProgress) -> None:
        self._conn.send(("progress", update))

    def should_stop(self) -> bool:
        self._conn.send(("should_stop",))
        return bool(self._reply())

    def find(self, key: AuditKey, statuses: Sequence[str]) -> AuditRow | None:
        return self._call("find", key, list(statuses))  # type: ignore[no-any-return]

    def covers(self, audit_id: int, scorers: Sequence[ScorerRef]) -> bool:
        return self._call("covers", audit_id, list(scorers))  # type: ignore[no-any-return]

    def model_sha(self, repo_id: str) -> str | None:
        return self._call("model_sha", repo_id)  # type: ignore[no-any-return]

    def start(
        self,
        key: AuditKey,
        *,
        scorers: Sequence[ScorerRef],
        generation_config: dict[str, Any],
        versions: dict[str, Any],
        config: dict[str, Any],
        n_prompts: int,
    ) -> int:
        return self._call(  # type: ignore[no-any-return]
            "start",
            key,
            scorers=list(scorers),
            generation_config=generation_config,
            versions=versions,
            config=config,
            n_prompts=n_prompts,
        )

    def note_truncated(self, audit_id: int, n_truncated: int) -> None:
        self._call("note_truncated", audit_id, n_truncated)

    def note_model(
        self,
        audit_id: int,
        *,
        chat_template_hash: str | None,
        base_repo: str | None,
        base_sha: str | None,
        generation_config: dict[str, Any],
        versions: dict[str, Any],
        config: dict[str, Any],
        repo_generation_config: dict[str, Any] | None = None,
        findings: Sequence[str] | None = None,
    ) -> None:
        self._call(
            "note_model",
            audit_id,
            chat_template_hash=chat_template_hash,
            base_repo=base_repo,
            base_sha=base_sha,
            generation_config=generation_config,
            versions=versions,
            config=config,
            repo_generation_config=repo_generation_config,
            findings=None if findings is None else list(findings),
        )

    def begin_scoring(self, audit_id: int, scorer: ScorerRef) -> None:
        self._call("begin_scoring", audit_id, scorer)

    def completed_prompts(self, audit_id: int) -> set[str]:
        return self._call("completed_prompts", audit_id)  # type: ignore[no-any-return]

    def write_batch(self, audit_id: int, results: Sequence[ScoredCompletion]) -> None:
        self._call("write_batch", audit_id, list(results))

    def unscored(self, audit_id: int, scorer: str) -> list[StoredCompletion]:
        return self._call("unscored", audit_id, scorer)  # type: ignore[no-any-return]

    def write_scores(self, audit_id: int, scorer: str, prompt_ids: Sequence[str], scores: Sequence[Score]) -> None:
        self._call("write_scores", audit_id, scorer, list(prompt_ids), list(scores))

    def finish_scoring(self, audit_id: int, scorer: str) -> None:
        self._call("finish_scoring", audit_id, scorer)

    def finish(
        self,
        audit_id: int,
        status: str,
        *,
        reason: str | None,
        timings: dict[str, float],
        reason_code: str | None = None,
    ) -> None:
        self._call("finish", audit_id, status, reason=reason, timings=timings, reason_code=reason_code)


#: The calls a worker may ask of the parent's sink (the `AuditSink` protocol, and nothing else).
_SINK_CALLS = frozenset(
    name for name in vars(PipeSink) if not name.startswith("_") and name not in ("progress", "should_stop")
)
