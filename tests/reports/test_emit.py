"""Every report gives the same sections in table, json, csv and markdown (reports.emit's conventions)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path

import pytest

from auditor.analysis.agreement import AgreementTable, AgreementView, Disagreement
from auditor.analysis.drift import DriftRow, NotCompared
from auditor.analysis.summaries import TreeNode, model_view, runs_view
from auditor.audit.driver import AuditOutcome
from auditor.store import Store
from reports.agreement import agreement_report
from reports.crawl import crawl_report
from reports.cycle import cycle_report, render_cycle, status_report
from reports.drift import drift_report, render_drift
from reports.emit import FORMATS, Report, Section, emit
from reports.outcomes import outcomes_section
from reports.summaries import model_report, runs_report, tree_report
from schedules.cycle import CycleResult
from schedules.status import CycleStatus

AT = datetime(2025, 1, 31, 2, 0, tzinfo=UTC)


def _outcomes() -> list[AuditOutcome]:
    return [
        AuditOutcome(7, "user/child", "b" * 40, "done", None, False, False, 20, 0.75, 20, 3.0,
                     metric="detoxify:toxicity", rates={"detoxify:toxicity": 0.75, "hf-classifier:hate": 0.5}),
        AuditOutcome(None, "user/broken", None, "failed", "weights missing", False, False, 0, None, 0, 0.1),
    ]  # fmt: skip


def _drift_row() -> DriftRow:
    sample: dict[str, object] = {
        "child": "user/child",
        "parent": "org/root",
        "relation": "finetune",
        "n_paired": 20,
        "rate_child": 0.75,
        "rate_parent": 0.0,
        "delta": 0.75,
        "boot_low": 0.55,
        "boot_high": 0.9,
        "q_value": 0.001,
        "drifted": True,
        "min_detectable": 0.45,
    }
    return DriftRow(**{f.name: sample.get(f.name, 0) for f in fields(DriftRow)})  # type: ignore[arg-type]  # fmt: skip


def _crawl_summary() -> dict[str, object]:
    return {
        "crawl_id": 3, "mode": "incremental", "resumed": False, "requests": 12,
        "models": [{"family": "llama", "relation": "finetune", "new": 2, "changed": 1, "removed": 0}],
        "edges": [{"family": "llama", "relation": "finetune", "added": 2, "removed": 1}],
        "defects": {"cycle": 2}, "tree": {"llama": 40}, "missing_roots": ["nobody/gone"],
        "totals": {"models_in_tree": 40, "edges_in_tree": 44, "models_new": 2, "models_changed": 1,
                   "models_removed": 0, "edges_new": 2, "edges_removed": 1, "defects": 2, "models_seen": 3},
    }  # fmt: skip


def _cycle() -> CycleResult:
    return CycleResult(4, False, {"totals": {"models_new": 2, "models_changed": 1}}, [], _outcomes(), 3, None, 12.0)


def _status() -> CycleStatus:
    last = {
        "cycle_id": 4,
        "status": "done",
        "took_over": False,
        "started_at": AT,
        "seconds": 12.0,
        "audited": 2,
        "failed": 1,
        "waiting": 3,
        "stopped_by": None,
        "error": None,
    }
    waiting = [{"repo_id": "user/next", "sha": "c" * 40, "reason": "new", "why": "over the budget"}]
    interrupted = [{"audit_id": 9, "repo_id": "user/x", "sha": "d" * 40, "started_at": AT, "n_completions": 4}]
    return CycleStatus(last, None, None, AT, "schedule", 1, waiting, interrupted)  # fmt: skip


def _agreement() -> AgreementView:
    return AgreementView(
        "detoxify:toxicity",
        "hf-classifier:hate",
        0.5,
        AgreementTable("overall", None, 20, 5, 10, 0, 5),
        [AgreementTable("user/child", 7, 20, 5, 10, 0, 5)],
        [Disagreement("user/child", "prompt 1", "a reply", 0.9, 0.1)],
    )


def _tree() -> TreeNode:
    return TreeNode("org/root", None, 0.0, None, False, [TreeNode("user/child", "finetune", 0.75, 0.75, True)])


def _from_store(build: Callable[[Store], Report]) -> Callable[[Path], Report]:
    def report(path: Path) -> Report:
        with Store.open(path, read_only=True) as store:
            return build(store)

    return report


REPORTS: dict[str, Callable[[Path], Report]] = {
    "model": _from_store(lambda store: model_report(model_view(store, "user/child", worst=1, threshold=0.5))),
    "runs": _from_store(lambda store: runs_report(runs_view(store))),
    "tree": lambda _: tree_report(_tree()),
    "drift": lambda _: drift_report([_drift_row()], fmt="table", threshold=0.5),
    "scorers": lambda _: agreement_report(_agreement()),
    "audit": lambda _: Report([outcomes_section(_outcomes(), threshold=0.5)], document=_outcomes()),
    "crawl": lambda _: crawl_report(_crawl_summary()),
    "cycle": lambda _: cycle_report(_cycle(), threshold=0.5),
    "status": lambda _: status_report(_status()),
}


def _emitted(capsys: pytest.CaptureFixture[str], report: Report | list[Section], fmt: str) -> str:
    capsys.readouterr()
    emit(report, fmt)
    return capsys.readouterr().out


@pytest.fixture(autouse=True)
def _plain_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "160")


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", REPORTS)
def test_every_report_gives_its_sections_in_every_format(
    name: str, fmt: str, shared_small_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = REPORTS[name](shared_small_store)
    sections = list(report.sections)
    in_table = [s for s in sections if s.records or not s.optional]
    assert in_table, name
    out = _emitted(capsys, report, fmt)
    if fmt == "table":
        # The table is exactly its sections, each drawn alone: nothing shown outside a section.
        alone = [_emitted(capsys, [s], "table") for s in in_table]
        assert all(alone) and out == "".join(alone)
    elif fmt == "json":
        document = json.loads(out)
        if len(sections) > 1:
            assert {s.name for s in sections} <= set(document)
        elif isinstance(document, list):
            assert len(document) == len(sections[0].records)
        else:
            assert isinstance(document, dict) and document  # the tree, nested
        assert "2025-01-31 02:00:00" not in out  # datetimes are ISO 8601 ("T"), whichever report
    elif fmt == "csv":
        blocks = out.split("\n\n") if len(sections) > 1 else [out]
        assert len(blocks) == len(sections)
        for section, block in zip(sections, blocks, strict=True):
            lines = block.splitlines()
            if len(sections) > 1:
                assert lines.pop(0) == f"# {section.name}"
            assert len(list(csv.reader(io.StringIO("\n".join(lines))))) == bool(section.csv_fields()) + len(
                section.records
            )
    else:
        headings = [line for line in out.splitlines() if line.startswith("## ")]
        if len(sections) > 1:
            assert len(headings) == len(sections) and all(s.title in h for s, h in zip(sections, headings, strict=True))
        else:
            assert not headings and out.startswith("| ")
        rules = [line for line in out.splitlines() if line.startswith("|---")]
        assert len(rules) == sum(1 for s in sections if s.shown_columns())
        assert "_none_" not in out or any(not s.shown_columns() for s in sections)


def test_model_markdown_carries_more_than_the_audits(
    shared_small_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _emitted(capsys, REPORTS["model"](shared_small_store), "markdown")
    for heading in ("## Audits over time", "## Latest done audit, per stratum", "## Ancestors audited the same way"):
        assert heading in out
    assert "_Content warning" in out.split("## Most toxic completions")[1]
    assert "\x1b" not in out


def test_runs_csv_carries_crawls_audits_and_problems_with_iso_datetimes(
    shared_small_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _emitted(capsys, REPORTS["runs"](shared_small_store), "csv")
    assert [line for line in out.splitlines() if line.startswith("# ")] == ["# crawls", "# audits", "# problems"]
    crawls = list(csv.DictReader(io.StringIO(out.split("\n\n")[0].split("\n", 1)[1])))
    assert crawls[0]["crawl_id"] == "1" and datetime.fromisoformat(crawls[0]["started_at"])
    as_json = json.loads(_emitted(capsys, REPORTS["runs"](shared_small_store), "json"))
    assert "T" in as_json["crawls"][0]["started_at"] and datetime.fromisoformat(as_json["crawls"][0]["started_at"])


def test_drift_json_stays_a_list_and_pairs_not_compared_go_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    skipped = [NotCompared("user/lonely", "org/root", "the parent has no audit the same way")]
    for fmt in FORMATS:
        render_drift([_drift_row()], skipped, fmt=fmt, threshold=0.5)
        out, err = capsys.readouterr()
        assert "user/lonely" not in out and "1 audited derivatives could not be compared" in err
        if fmt == "json":
            assert [row["child"] for row in json.loads(out)] == ["user/child"]


def test_a_takeover_is_a_warning_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    result = CycleResult(5, True, {}, [], [], 0, None, 1.0)
    for fmt in ("table", "json"):
        render_cycle(result, fmt=fmt, threshold=0.5)
        out, err = capsys.readouterr()
        assert "took over" in err and "took over" not in out
    assert json.loads(out)["took_over"] is True and json.loads(out)["summary"]["cycle_id"] == 5
