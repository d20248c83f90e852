"""Untrusted text is inert on the terminal; the crawl summary renders as documented."""

from __future__ import annotations

import json

import pytest

from reports.crawl import render_crawl_summary
from reports.progress import CrawlProgressDisplay
from reports.terminal import safe_text, strip_control

NASTY = "evil/\x1b[2J\x1b]0;pwned\x07model[bold red]X[/]\u202e\r\x08"


def test_escape_sequences_control_characters_and_markup_are_inert() -> None:
    cleaned = strip_control(NASTY)
    assert "\x1b" not in cleaned and "\x07" not in cleaned and "\r" not in cleaned and "\u202e" not in cleaned
    assert cleaned == "evil/model[bold red]X[/]"
    assert safe_text(NASTY) == "evil/model\\[bold red]X\\[/]"
    assert strip_control("line one\n\tline two") == "line one\n\tline two"


def _summary(family: str) -> dict[str, object]:
    return {
        "crawl_id": 3,
        "mode": "incremental",
        "resumed": False,
        "requests": 12,
        "models": [{"family": family, "relation": "finetune", "new": 2, "changed": 1, "removed": 0}],
        "edges": [{"family": family, "relation": "finetune", "added": 2, "removed": 1}],
        "defects": {"cycle": 2},
        "tree": {family: 40},
        "missing_roots": ["nobody/\x1b[31mred"],
        "totals": {
            "models_in_tree": 40,
            "edges_in_tree": 44,
            "models_new": 2,
            "models_changed": 1,
            "models_removed": 0,
            "edges_new": 2,
            "edges_removed": 1,
            "defects": 2,
            "models_seen": 3,
        },
    }


def test_summary_table_is_plain_under_no_color(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "100")
    render_crawl_summary(_summary(NASTY))
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "crawl 3 (incremental): 40 models and 44 edges in the tree; 12 requests" in out
    assert "evil/model[bold red]X[/]" in out  # shown literally, not as bold red
    assert "nobody/red" in out and "lineage defects in the store: cycle 2" in out


def test_summary_as_json_is_one_object(capsys: pytest.CaptureFixture[str]) -> None:
    render_crawl_summary(_summary("gemma"), fmt="json")
    assert json.loads(capsys.readouterr().out)["totals"]["models_new"] == 2


def test_progress_off_a_terminal_is_a_periodic_line(capsys: pytest.CaptureFixture[str]) -> None:
    class Progress:
        mode, stage, models_seen, listed, pending, requests, failed = "full", "listing children", 5, 2, 3, 7, 0

    with CrawlProgressDisplay(interval_s=3600) as display:
        display(Progress())
        display(Progress())
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "5 models seen, 2 listings done, 3 pending, 7 requests" in err
