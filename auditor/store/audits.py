"""The audit tables: batteries and prompts, audits, completions and scores.

An audit's completions and scores are written batch by batch, each batch in one transaction, while
the audit row says `running`; only the last write sets `done`. An audit killed at any point is
therefore never mistaken for a complete one, and resuming it writes only the prompts it lacks
(the primary keys make a duplicate impossible).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa

from auditor import __version__
from auditor.battery import Battery, Prompt
from auditor.errors import PERMANENT_CODES
from auditor.store.database import Store, staged


@dataclass(frozen=True)
class AuditKey:
    """What makes two audits the same measurement: the same model commit, battery, way of asking
    (preset and its settings), quantization, scorer checkpoint and kind of device."""

    repo_id: str
    sha: str | None
    battery_id: str
    preset: str
    preset_hash: str
    quantization: str
    scorer: str
    scorer_hash: str
    device: str

    def where(self, *, with_model: bool = True) -> tuple[str, list[Any]]:
        """A SQL condition on `audits` matching this key (optionally ignoring repo and sha)."""
        clauses = [
            "battery_id = ?",
            "preset = ?",
            "preset_hash = ?",
            "quantization = ?",
            "scorer = ?",
            "scorer_hash IS NOT DISTINCT FROM ?",
            "device = ?",
        ]
        params: list[Any] = [
            self.battery_id,
            self.preset,
            self.preset_hash,
            self.quantization,
            self.scorer,
            self.scorer_hash,
            self.device,
        ]
        if with_model:
            clauses[:0] = ["repo_id = ?", "sha IS NOT DISTINCT FROM ?"]
            params[:0] = [self.repo_id, self.sha]
        return " AND ".join(clauses), params


@dataclass(frozen=True)
class AuditRow:
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
    prompt_id: str
    text: str
    n_tokens: int
    finish_reason: str
    scores: dict[str, float | None]
    score_reason: str | None


class AuditStore:
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
        condition, params = key.where()
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
        generation_config: dict[str, Any],
        versions: dict[str, Any],
        config: dict[str, Any],
        n_prompts: int,
        primary_attribute: str,
    ) -> int:
        with self.store.transaction() as con:
            row = con.execute(
                "INSERT INTO audits (repo_id, sha, battery_id, preset, preset_hash, generation_config, quantization,"
                " scorer, scorer_hash, device, status, versions, config, n_prompts, started_at, auditor_version,"
                " primary_attribute)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, now(), ?, ?) RETURNING audit_id",
                [
                    key.repo_id,
                    key.sha,
                    key.battery_id,
                    key.preset,
                    key.preset_hash,
                    json.dumps(generation_config),
                    key.quantization,
                    key.scorer,
                    key.scorer_hash,
                    key.device,
                    json.dumps(versions),
                    json.dumps(config),
                    n_prompts,
                    __version__,
                    primary_attribute,
                ],
            ).fetchone()
        assert row is not None
        return int(row[0])

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
    ) -> None:
        """What is known once the model is loaded; a resumed audit records the settings it finished with."""
        with self.store.transaction() as con:
            con.execute(
                "UPDATE audits SET chat_template_hash = ?, base_repo = ?, base_sha = ?, generation_config = ?,"
                " versions = ?, config = ? WHERE audit_id = ?",
                [
                    chat_template_hash,
                    base_repo,
                    base_sha,
                    json.dumps(generation_config, default=str),
                    json.dumps(versions),
                    json.dumps(config),
                    audit_id,
                ],
            )

    def completed_prompts(self, audit_id: int) -> set[str]:
        return {r[0] for r in self.store.query("SELECT prompt_id FROM completions WHERE audit_id = ?", [audit_id])}

    def write_batch(self, audit_id: int, results: Sequence[ScoredCompletion]) -> None:
        """One batch of completions and their scores, together or not at all."""
        completions = pa.table(
            {
                "prompt_id": [r.prompt_id for r in results],
                "text": [r.text for r in results],
                "n_tokens": pa.array([r.n_tokens for r in results], pa.int32()),
                "finish_reason": [r.finish_reason for r in results],
            }
        )
        score_rows = [
            (r.prompt_id, attribute, value, None if value is not None else r.score_reason or "no score")
            for r in results
            for attribute, value in r.scores.items()
        ]
        scores = pa.table(
            {
                "prompt_id": pa.array([s[0] for s in score_rows], pa.string()),
                "attribute": pa.array([s[1] for s in score_rows], pa.string()),
                "score": pa.array([s[2] for s in score_rows], pa.float64()),
                "reason": pa.array([s[3] for s in score_rows], pa.string()),
            }
        )
        with self.store.transaction() as con, staged(con, {"_completions": completions, "_scores": scores}):
            # Only what is missing: a resumed audit may hand over a batch that partly landed before.
            con.execute(
                "INSERT INTO completions SELECT $id, prompt_id, text, n_tokens, finish_reason FROM _completions n"
                " WHERE NOT EXISTS (SELECT 1 FROM completions c WHERE c.audit_id = $id AND c.prompt_id = n.prompt_id)",
                {"id": audit_id},
            )
            con.execute(
                "INSERT INTO scores SELECT $id, prompt_id, attribute, score, reason FROM _scores n"
                " WHERE NOT EXISTS (SELECT 1 FROM scores s WHERE s.audit_id = $id AND s.prompt_id = n.prompt_id"
                " AND s.attribute = n.attribute)",
                {"id": audit_id},
            )

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
                " n_scored = (SELECT count(DISTINCT prompt_id) FROM scores WHERE audit_id = $id AND score IS NOT NULL)"
                " WHERE audit_id = $id",
                {
                    "status": status,
                    "reason": reason,
                    "code": reason_code,
                    "timings": json.dumps(timings),
                    "id": audit_id,
                },
            )

    def rate(self, audit_id: int, attribute: str, threshold: float) -> tuple[float | None, int]:
        """(share of scored completions above `threshold` on `attribute`, number scored)."""
        row = self.store.query(
            "SELECT avg(CASE WHEN score > ? THEN 1.0 ELSE 0.0 END), count(score) FROM scores"
            " WHERE audit_id = ? AND attribute = ? AND score IS NOT NULL",
            [threshold, audit_id, attribute],
        )[0]
        return (float(row[0]) if row[0] is not None else None, int(row[1]))

    def pending_models(
        self, key_template: AuditKey, limit: int | None, *, max_attempts: int = 3
    ) -> list[tuple[str, str]]:
        """(repo_id, sha) of crawled models with no finished audit at their current sha for this key.

        Skips and failures that describe the commit itself (pickle weights, corrupt files, ...) are
        final; the others (access not granted yet, the network) are tried again, `max_attempts` times
        in all. Roots and parents come before their derivatives (depth), then the most downloaded.
        """
        condition, params = key_template.where(with_model=False)
        rows = self.store.query(
            "SELECT m.repo_id, m.sha FROM models m WHERE m.removed_at IS NULL AND m.sha IS NOT NULL"
            f" AND NOT EXISTS (SELECT 1 FROM audits a WHERE a.repo_id = m.repo_id AND a.sha = m.sha AND {condition}"
            "   AND (a.status = 'done' OR list_contains(?, a.reason_code)))"
            f" AND (SELECT count(*) FROM audits a WHERE a.repo_id = m.repo_id AND a.sha = m.sha AND {condition}"
            "   AND a.status IN ('failed', 'skipped')) < ?"
            " ORDER BY m.depth NULLS LAST, m.downloads DESC NULLS LAST, m.repo_id"
            + (" LIMIT ?" if limit is not None else ""),
            [*params, sorted(PERMANENT_CODES), *params, max_attempts] + ([limit] if limit is not None else []),
        )
        return [(r[0], r[1]) for r in rows]

    def model_sha(self, repo_id: str) -> str | None:
        rows = self.store.query("SELECT sha FROM models WHERE repo_id = ? AND removed_at IS NULL", [repo_id])
        return rows[0][0] if rows else None
