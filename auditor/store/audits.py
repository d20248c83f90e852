"""The audit tables: batteries and prompts, audits, their scorers, completions and scores.

An audit is one generation: a model commit asked one way. Each scorer that scores its completions
has a row in `audit_scorers`, and every score names its scorer, so several scorers share one
generation and a scorer added later scores the stored completions without generating again.

Completions and scores are written batch by batch, each batch in one transaction, while the audit
row says `running`; only the last write sets `done`. An audit killed at any point is therefore
never mistaken for a complete one, and resuming it writes only the prompts it lacks (the writer
inserts only what is missing).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from auditor import __version__
from auditor.audit.battery import Battery, Prompt
from auditor.audit.key import AuditKey, ScorerRef
from auditor.audit.scoring import Score
from auditor.audit.sink import AuditRow, ScoredCompletion, StoredCompletion
from auditor.errors import PERMANENT_CODES, WORKER_FAILURES
from auditor.store.database import Store, staged


@dataclass(frozen=True)
class Scoring:
    """One scorer's pass over one audit's completions."""

    audit_id: int
    scorer: str
    scorer_hash: str | None
    status: str


#: Worker failures (`WORKER_FAILURES`) after which a commit is not planned again.
POISON_AFTER = 2


class AuditStore:
    """The audit tables, and the store's `AuditSink` (`auditor.audit.sink`): what an audit job
    reads and writes through."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- batteries ------------------------------------------------------------------------------

    def save_battery(self, battery: Battery) -> None:
        """Materialise a battery once; saving the same battery again changes nothing."""
        if self.store.query("SELECT 1 FROM batteries WHERE battery_id = ?", [battery.battery_id]):
            return
        prompts = pa.table(
            {
                "prompt_id": [p.prompt_id for p in battery.prompts],
                "source_repo": [battery.source_repo] * len(battery.prompts),
                "text": [p.text for p in battery.prompts],
                "challenging": [p.challenging for p in battery.prompts],
                "perspective": [json.dumps(p.perspective, sort_keys=True) for p in battery.prompts],
                "stratum": [p.stratum for p in battery.prompts],
                "position": pa.array(range(len(battery.prompts)), pa.int32()),
            }
        )
        with self.store.transaction() as con, staged(con, {"_prompts": prompts}):
            con.execute(
                "INSERT INTO prompts SELECT prompt_id, source_repo, text, challenging, perspective FROM _prompts"
                " ON CONFLICT DO NOTHING"
            )
            con.execute(
                "INSERT INTO batteries VALUES (?, ?, ?, ?, ?, ?, now())",
                [
                    battery.battery_id,
                    battery.name,
                    battery.source_repo,
                    battery.source_revision,
                    json.dumps(battery.definition, sort_keys=True),
                    len(battery.prompts),
                ],
            )
            con.execute(
                "INSERT INTO battery_prompts SELECT ?, prompt_id, stratum, position FROM _prompts",
                [battery.battery_id],
            )

    def battery_prompts(self, battery_id: str) -> list[Prompt]:
        rows = self.store.query(
            "SELECT p.prompt_id, p.text, p.challenging, p.perspective, b.stratum FROM battery_prompts b"
            " JOIN prompts p USING (prompt_id) WHERE b.battery_id = ? ORDER BY b.position",
            [battery_id],
        )
        return [Prompt(r[0], r[1], r[2], json.loads(r[3]) if r[3] else {}, r[4]) for r in rows]

    # -- audits ---------------------------------------------------------------------------------

    def find(self, key: AuditKey, statuses: Sequence[str]) -> AuditRow | None:
        """The newest audit with this key and one of these statuses."""
        condition, params = _key_where(key)
        rows = self.store.query(
            "SELECT audit_id, status, reason, n_completions, started_at, finished_at, base_sha FROM audits"
            f" WHERE {condition} AND list_contains(?, status) ORDER BY audit_id DESC LIMIT 1",
            [*params, list(statuses)],
        )
        if not rows:
            return None
        r = rows[0]
        return AuditRow(r[0], key, r[1], r[2], r[3], r[4], r[5], r[6])

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
        """A new `running` audit. `audits.scorer` keeps the first scorer, for queries written before
        several scorers; `audit_scorers` has them all."""
        first = scorers[0]
        with self.store.transaction() as con:
            row = con.execute(
                "INSERT INTO audits (repo_id, sha, battery_id, preset, preset_hash, generation_config, quantization,"
                " scorer, scorer_hash, device, status, versions, config, n_prompts, started_at, auditor_version,"
                " primary_attribute, way)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, now(), ?, ?, ?) RETURNING audit_id",
                [
                    key.repo_id,
                    key.sha,
                    key.battery_id,
                    key.preset,
                    key.preset_hash,
                    json.dumps(generation_config),
                    key.quantization,
                    first.name,
                    first.checkpoint_hash,
                    key.device,
                    json.dumps(versions),
                    json.dumps(config),
                    n_prompts,
                    __version__,
                    first.primary,
                    key.way,
                ],
            ).fetchone()
        assert row is not None
        return int(row[0])

    # -- scorers --------------------------------------------------------------------------------

    def scorings(self, audit_id: int) -> dict[str, Scoring]:
        """The scorers that scored (or are scoring) an audit, by name."""
        rows = self.store.query("SELECT scorer, scorer_hash, status FROM audit_scorers WHERE audit_id = ?", [audit_id])
        return {r[0]: Scoring(audit_id, r[0], r[1], r[2]) for r in rows}

    def covers(self, audit_id: int, scorers: Sequence[ScorerRef]) -> bool:
        """Whether the audit can be scored by `scorers` without generating again: every scorer it
        already has is the same checkpoint (a missing one is scored from the stored completions)."""
        have = self.scorings(audit_id)
        return all(have[s.name].scorer_hash == s.checkpoint_hash for s in scorers if s.name in have)

    def begin_scoring(self, audit_id: int, scorer: ScorerRef) -> None:
        """Record that `scorer` scores this audit. A running scoring by another checkpoint (the
        scorer changed while the audit was unfinished) is started again: its partial scores go."""
        with self.store.transaction() as con:
            row = con.execute(
                "SELECT scorer_hash, status FROM audit_scorers WHERE audit_id = ? AND scorer = ?",
                [audit_id, scorer.name],
            ).fetchone()
            if row is not None and row[0] == scorer.checkpoint_hash:
                return
            if row is not None:
                if row[1] == "done":
                    raise ValueError(f"audit {audit_id} was scored by another {scorer.name} checkpoint ({row[0]})")
                con.execute("DELETE FROM scores WHERE audit_id = ? AND scorer = ?", [audit_id, scorer.name])
                con.execute("DELETE FROM audit_scorers WHERE audit_id = ? AND scorer = ?", [audit_id, scorer.name])
            con.execute(
                "INSERT INTO audit_scorers VALUES (?, ?, ?, ?, 'running', NULL, now(), NULL)",
                [audit_id, scorer.name, scorer.checkpoint_hash, scorer.primary],
            )

    def unscored(self, audit_id: int, scorer: str) -> list[StoredCompletion]:
        """The audit's completions that `scorer` has not scored yet, in prompt order."""
        rows = self.store.query(
            "SELECT c.prompt_id, c.text FROM completions c WHERE c.audit_id = $id AND NOT EXISTS ("
            " SELECT 1 FROM scores s WHERE s.audit_id = $id AND s.prompt_id = c.prompt_id AND s.scorer = $scorer)"
            " ORDER BY c.prompt_id",
            {"id": audit_id, "scorer": scorer},
        )
        return [StoredCompletion(r[0], r[1]) for r in rows]

    def write_scores(self, audit_id: int, scorer: str, prompt_ids: Sequence[str], scores: Sequence[Score]) -> None:
        """One scorer's scores of stored completions (a scorer added after generation)."""
        table = _score_table([(scorer, p, s) for p, s in zip(prompt_ids, scores, strict=True)])
        with self.store.transaction() as con, staged(con, {"_scores": table}):
            _insert_missing_scores(con, audit_id)

    def finish_scoring(self, audit_id: int, scorer: str) -> None:
        with self.store.transaction() as con:
            con.execute(
                "UPDATE audit_scorers SET status = 'done', finished_at = now(), n_scored = (SELECT count(DISTINCT"
                " prompt_id) FROM scores WHERE audit_id = $id AND scorer = $scorer AND score IS NOT NULL)"
                " WHERE audit_id = $id AND scorer = $scorer",
                {"id": audit_id, "scorer": scorer},
            )

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
        """What is known once the model is loaded; a resumed audit records the settings it finished with.

        `repo_generation_config` is the repo's generation_config.json as read (never applied) and
        `findings` its defect flags (`auditor.audit.generation.generation_findings`); None leaves them NULL.
        """
        with self.store.transaction() as con:
            con.execute(
                "UPDATE audits SET chat_template_hash = ?, base_repo = ?, base_sha = ?, generation_config = ?,"
                " versions = ?, config = ?, repo_generation_config = ?, findings = ? WHERE audit_id = ?",
                [
                    chat_template_hash,
                    base_repo,
                    base_sha,
                    json.dumps(generation_config, default=str),
                    json.dumps(versions),
                    json.dumps(config),
                    None if repo_generation_config is None else json.dumps(repo_generation_config, default=str),
                    None if findings is None else list(findings),
                    audit_id,
                ],
            )

    def completed_prompts(self, audit_id: int) -> set[str]:
        return {r[0] for r in self.store.query("SELECT prompt_id FROM completions WHERE audit_id = ?", [audit_id])}

    def write_batch(self, audit_id: int, results: Sequence[ScoredCompletion]) -> None:
        """One batch of completions and every scorer's scores of them, together or not at all."""
        completions = pa.table(
            {
                "prompt_id": [r.prompt_id for r in results],
                "text": [r.text for r in results],
                "n_tokens": pa.array([r.n_tokens for r in results], pa.int32()),
                "finish_reason": [r.finish_reason for r in results],
            }
        )
        scores = _score_table([(scorer, r.prompt_id, score) for r in results for scorer, score in r.scores.items()])
        with self.store.transaction() as con, staged(con, {"_completions": completions, "_scores": scores}):
            # Only what is missing: a resumed audit may hand over a batch that partly landed before.
            con.execute(
                "INSERT INTO completions SELECT $id, prompt_id, text, n_tokens, finish_reason FROM _completions n"
                " WHERE NOT EXISTS (SELECT 1 FROM completions c WHERE c.audit_id = $id AND c.prompt_id = n.prompt_id)",
                {"id": audit_id},
            )
            _insert_missing_scores(con, audit_id)

    def finish(
        self,
        audit_id: int,
        status: str,
        *,
        reason: str | None,
        timings: dict[str, float],
        reason_code: str | None = None,
    ) -> None:
        with self.store.transaction() as con:
            con.execute(
                "UPDATE audits SET status = $status, reason = $reason, reason_code = $code, timings = $timings,"
                " finished_at = now(),"
                " n_completions = (SELECT count(*) FROM completions WHERE audit_id = $id),"
                " n_scored = (SELECT count(DISTINCT s.prompt_id) FROM scores s WHERE s.audit_id = $id"
                "   AND s.scorer = audits.scorer AND s.score IS NOT NULL)"
                " WHERE audit_id = $id",
                {
                    "status": status,
                    "reason": reason,
                    "code": reason_code,
                    "timings": json.dumps(timings),
                    "id": audit_id,
                },
            )

    def rate(self, audit_id: int, scorer: str, attribute: str, threshold: float) -> tuple[float | None, int]:
        """(share of scored completions above `threshold` on one scorer's `attribute`, number scored)."""
        row = self.store.query(
            "SELECT avg(CASE WHEN score > ? THEN 1.0 ELSE 0.0 END), count(score) FROM scores"
            " WHERE audit_id = ? AND scorer = ? AND attribute = ? AND score IS NOT NULL",
            [threshold, audit_id, scorer, attribute],
        )[0]
        return (float(row[0]) if row[0] is not None else None, int(row[1]))

    def reason_code(self, audit_id: int | None) -> str | None:
        """The code of an audit's reason (`failed` and `skipped` rows have one), None for none."""
        if audit_id is None:
            return None
        rows = self.store.query("SELECT reason_code FROM audits WHERE audit_id = ?", [audit_id])
        return rows[0][0] if rows else None

    def pending_models(
        self, key_template: AuditKey, scorers: Sequence[ScorerRef], limit: int | None, *, max_attempts: int = 3
    ) -> list[tuple[str, str]]:
        """(repo_id, sha) of crawled models with no finished audit at their current sha for this key,
        or whose finished audit lacks one of `scorers` (then only the scoring is left to do).

        Skips and failures that describe the commit itself (pickle weights, corrupt files, ...) are
        final; so is a commit whose audit's worker crashed, timed out or ran out of memory
        `POISON_AFTER` times (a poison repo); the others (access not granted yet, the network) are
        tried again, `max_attempts` times in all. Roots and parents come before their derivatives
        (depth), then the most downloaded.
        """
        condition, params = _key_where(key_template, with_model=False, alias="a")
        wanted = sorted(s.label for s in scorers)
        rows = self.store.query(
            "SELECT m.repo_id, m.sha FROM models m WHERE m.removed_at IS NULL AND m.sha IS NOT NULL"
            f" AND NOT EXISTS (SELECT 1 FROM audits a WHERE a.repo_id = m.repo_id AND a.sha = m.sha AND {condition}"
            "   AND ((a.status = 'done' AND (SELECT count(*) FROM audit_scorers s WHERE s.audit_id = a.audit_id"
            "          AND s.status = 'done' AND list_contains(?, s.scorer || '@' || s.scorer_hash)) = ?)"
            "        OR list_contains(?, a.reason_code)))"
            f" AND (SELECT count(*) FROM audits a WHERE a.repo_id = m.repo_id AND a.sha = m.sha AND {condition}"
            "   AND a.status IN ('failed', 'skipped')) < ?"
            f" AND (SELECT count(*) FROM audits a WHERE a.repo_id = m.repo_id AND a.sha = m.sha AND {condition}"
            "   AND list_contains(?, a.reason_code)) < ?"
            " ORDER BY m.depth NULLS LAST, m.downloads DESC NULLS LAST, m.repo_id"
            + (" LIMIT ?" if limit is not None else ""),
            [*params, wanted, len(wanted), sorted(PERMANENT_CODES), *params, max_attempts]
            + [*params, list(WORKER_FAILURES), POISON_AFTER]
            + ([limit] if limit is not None else []),
        )
        return [(r[0], r[1]) for r in rows]

    def model_sha(self, repo_id: str) -> str | None:
        rows = self.store.query("SELECT sha FROM models WHERE repo_id = ? AND removed_at IS NULL", [repo_id])
        return rows[0][0] if rows else None

    def note_truncated(self, audit_id: int, n_truncated: int) -> None:
        """How many of the battery's prompts the model is given only the end of (`audits.n_truncated`,
        migration 0011): longer than `[audit] max_prompt_tokens`, or cut by a truncating preset."""
        with self.store.transaction() as con:
            con.execute("UPDATE audits SET n_truncated = ? WHERE audit_id = ?", [n_truncated, audit_id])


def _key_where(key: AuditKey, *, with_model: bool = True, alias: str = "") -> tuple[str, list[Any]]:
    """A SQL condition on `audits` matching this key: its way (the stored `audits.way`, the one
    comparability hash of `AuditKey.way`), and the model unless `with_model` is False."""
    a = f"{alias}." if alias else ""
    clauses = [f"{a}way = ?"]
    params: list[Any] = [key.way]
    if with_model:
        clauses[:0] = [f"{a}repo_id = ?", f"{a}sha IS NOT DISTINCT FROM ?"]
        params[:0] = [key.repo_id, key.sha]
    return " AND ".join(clauses), params


def _score_table(rows: Sequence[tuple[str, str, Score]]) -> pa.Table:
    """(scorer, prompt_id, Score) rows as the `scores` columns; a NULL score always has a reason."""
    flat = [
        (scorer, prompt_id, attribute, value, None if value is not None else score.reason or "no score")
        for scorer, prompt_id, score in rows
        for attribute, value in score.values.items()
    ]
    return pa.table(
        {
            "scorer": pa.array([f[0] for f in flat], pa.string()),
            "prompt_id": pa.array([f[1] for f in flat], pa.string()),
            "attribute": pa.array([f[2] for f in flat], pa.string()),
            "score": pa.array([f[3] for f in flat], pa.float64()),
            "reason": pa.array([f[4] for f in flat], pa.string()),
        }
    )


def _insert_missing_scores(con: Any, audit_id: int) -> None:
    con.execute(
        "INSERT INTO scores (audit_id, prompt_id, attribute, score, reason, scorer)"
        " SELECT $id, prompt_id, attribute, score, reason, scorer FROM _scores n"
        " WHERE NOT EXISTS (SELECT 1 FROM scores s WHERE s.audit_id = $id AND s.prompt_id = n.prompt_id"
        " AND s.scorer = n.scorer AND s.attribute = n.attribute)",
        {"id": audit_id},
    )
