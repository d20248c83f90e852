"""Where an audit's rows go: the `AuditSink` protocol, its records, and an in-memory sink.

The audit job (`auditor.audit.job.run_audit`) reads and writes only through a sink, so it runs
wherever its sink is: beside the store (`auditor.store.audits.AuditStore` is the sink the driver
passes), in another process or on another machine (a sink that forwards each call to the process
holding the store), or with no store at all (`MemorySink`, for tests and dry runs). Every argument
and result is a plain record, so a call can cross a process boundary as it is.

The calls follow the store's rules: an audit row is `running` until `finish`; `write_batch` and
`write_scores` keep only what the audit lacks (a resumed audit may hand over a batch that partly
landed before); a scorer is `begin_scoring`-ed before it writes and `finish_scoring`-ed after.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from auditor.audit.key import AuditKey, ScorerRef
from auditor.audit.scoring import Score


@dataclass(frozen=True)
class AuditRow:
    """An audit as the sink has it: its key, status and, for an adapter, the base commit it ran on."""

    audit_id: int
    key: AuditKey
    status: str
    reason: str | None
    n_completions: int | None
    started_at: datetime
    finished_at: datetime | None
    base_sha: str | None


@dataclass(frozen=True)
class ScoredCompletion:
    """One generated completion and every scorer's scores of it."""

    prompt_id: str
    text: str
    n_tokens: int
    finish_reason: str
    #: scorer name -> its scores of this text
    scores: dict[str, Score]


@dataclass(frozen=True)
class StoredCompletion:
    """A completion already in the sink, waiting for a scorer added after it was generated."""

    prompt_id: str
    text: str


class AuditSink(Protocol):
    """What the audit job may ask of the place its rows go. `AuditStore` is the store's."""

    def find(self, key: AuditKey, statuses: Sequence[str]) -> AuditRow | None:
        """The newest audit with this key and one of these statuses."""
        ...

    def covers(self, audit_id: int, scorers: Sequence[ScorerRef]) -> bool:
        """Whether every scorer the audit already has is the same checkpoint as in `scorers`."""
        ...

    def model_sha(self, repo_id: str) -> str | None:
        """The commit the crawl recorded for a model (an adapter's base is fetched at it)."""
        ...

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
        """A new `running` audit; returns its id."""
        ...

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
        """What is known once the model is loaded."""
        ...

    def note_truncated(self, audit_id: int, n_truncated: int) -> None:
        """How many of the battery's prompts the model is given only the end of (`audits.n_truncated`)."""
        ...

    def begin_scoring(self, audit_id: int, scorer: ScorerRef) -> None: ...

    def completed_prompts(self, audit_id: int) -> set[str]: ...

    def write_batch(self, audit_id: int, results: Sequence[ScoredCompletion]) -> None:
        """One batch of completions with every scorer's scores, together or not at all."""
        ...

    def unscored(self, audit_id: int, scorer: str) -> list[StoredCompletion]: ...

    def write_scores(self, audit_id: int, scorer: str, prompt_ids: Sequence[str], scores: Sequence[Score]) -> None: ...

    def finish_scoring(self, audit_id: int, scorer: str) -> None: ...

    def finish(
        self,
        audit_id: int,
        status: str,
        *,
        reason: str | None,
        timings: dict[str, float],
        reason_code: str | None = None,
    ) -> None:
        """The audit's last word: `done`, `failed` or `skipped`, and why."""
        ...


@dataclass
class MemoryAudit:
    """One audit held by a `MemorySink`: the columns of `audits` a job writes."""

    key: AuditKey
    status: str
    scorers: dict[str, ScorerRef]
    scoring_status: dict[str, str]
    generation_config: dict[str, Any]
    versions: dict[str, Any]
    config: dict[str, Any]
    n_prompts: int
    started_at: datetime
    reason: str | None = None
    reason_code: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    finished_at: datetime | None = None
    base_repo: str | None = None
    base_sha: str | None = None
    chat_template_hash: str | None = None
    repo_generation_config: dict[str, Any] | None = None
    findings: tuple[str, ...] | None = None
    n_truncated: int | None = None


class MemorySink:
    """An `AuditSink` that keeps everything in dictionaries, with the store's rules.

    >>> sink = MemorySink(known_shas={"acme/base": "0" * 40})
    >>> outcome = run_audit(spec, "acme/adapter", None, sink)                 # doctest: +SKIP
    >>> sorted(sink.completions)[:1]                                          # doctest: +SKIP
    [(1, 'rtp-000017')]
    """

    def __init__(self, known_shas: dict[str, str] | None = None) -> None:
        self.audits: dict[int, MemoryAudit] = {}
        #: (audit_id, prompt_id) -> (text, n_tokens, finish_reason)
        self.completions: dict[tuple[int, str], tuple[str, int, str]] = {}
        #: (audit_id, prompt_id, scorer, attribute) -> (score, reason); a NULL score has a reason
        self.scores: dict[tuple[int, str, str, str], tuple[float | None, str | None]] = {}
        self.known_shas = dict(known_shas or {})
        self._ids = itertools.count(1)

    def find(self, key: AuditKey, statuses: Sequence[str]) -> AuditRow | None:
        found = [i for i, a in self.audits.items() if a.key == key and a.status in statuses]
        return self._row(max(found)) if found else None

    def covers(self, audit_id: int, scorers: Sequence[ScorerRef]) -> bool:
        have = self.audits[audit_id].scorers
        return all(have[s.name].checkpoint_hash == s.checkpoint_hash for s in scorers if s.name in have)

    def model_sha(self, repo_id: str) -> str | None:
        return self.known_shas.get(repo_id)

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
        audit_id = next(self._ids)
        self.audits[audit_id] = MemoryAudit(
            key, "running", {}, {}, dict(generation_config), dict(versions), dict(config), n_prompts, _now()
        )
        return audit_id

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
        audit = self.audits[audit_id]
        audit.chat_template_hash, audit.base_repo, audit.base_sha = chat_template_hash, base_repo, base_sha
        audit.generation_config, audit.versions, audit.config = dict(generation_config), dict(versions), dict(config)
        audit.repo_generation_config = repo_generation_config
        audit.findings = None if findings is None else tuple(findings)

    def note_truncated(self, audit_id: int, n_truncated: int) -> None:
        self.audits[audit_id].n_truncated = n_truncated

    def begin_scoring(self, audit_id: int, scorer: ScorerRef) -> None:
        audit = self.audits[audit_id]
        have = audit.scorers.get(scorer.name)
        if have is not None and have.checkpoint_hash == scorer.checkpoint_hash:
            return
        if have is not None:
            if audit.scoring_status[scorer.name] == "done":
                raise ValueError(f"audit {audit_id} was scored by another {scorer.name} checkpoint")
            for k in [k for k in self.scores if k[0] == audit_id and k[2] == scorer.name]:
                del self.scores[k]
        audit.scorers[scorer.name] = scorer
        audit.scoring_status[scorer.name] = "running"

    def completed_prompts(self, audit_id: int) -> set[str]:
        return {p for a, p in self.completions if a == audit_id}

    def write_batch(self, audit_id: int, results: Sequence[ScoredCompletion]) -> None:
        for r in results:
            self.completions.setdefault((audit_id, r.prompt_id), (r.text, r.n_tokens, r.finish_reason))
            for scorer, score in r.scores.items():
                self._keep_score(audit_id, r.prompt_id, scorer, score)

    def unscored(self, audit_id: int, scorer: str) -> list[StoredCompletion]:
        scored = {p for a, p, s, _ in self.scores if a == audit_id and s == scorer}
        return [
            StoredCompletion(p, text)
            for (a, p), (text, _, _) in sorted(self.completions.items())
            if a == audit_id and p not in scored
        ]

    def write_scores(self, audit_id: int, scorer: str, prompt_ids: Sequence[str], scores: Sequence[Score]) -> None:
        for prompt_id, score in zip(prompt_ids, scores, strict=True):
            self._keep_score(audit_id, prompt_id, scorer, score)

    def finish_scoring(self, audit_id: int, scorer: str) -> None:
        self.audits[audit_id].scoring_status[scorer] = "done"

    def finish(
        self,
        audit_id: int,
        status: str,
        *,
        reason: str | None,
        timings: dict[str, float],
        reason_code: str | None = None,
    ) -> None:
        audit = self.audits[audit_id]
        audit.status, audit.reason, audit.reason_code = status, reason, reason_code
        audit.timings, audit.finished_at = dict(timings), _now()

    def _keep_score(self, audit_id: int, prompt_id: str, scorer: str, score: Score) -> None:
        for attribute, value in score.values.items():
            reason = None if value is not None else score.reason or "no score"
            self.scores.setdefault((audit_id, prompt_id, scorer, attribute), (value, reason))

    def _row(self, audit_id: int) -> AuditRow:
        a = self.audits[audit_id]
        n = sum(1 for i, _ in self.completions if i == audit_id) if a.finished_at else None
        return AuditRow(audit_id, a.key, a.status, a.reason, n, a.started_at, a.finished_at, a.base_sha)


def _now() -> datetime:
    return datetime.now(UTC)
