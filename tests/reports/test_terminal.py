"""Untrusted text is inert on the terminal; the crawl summary renders as documented."""

from __future__ import annotations

import json

import pytest

from crawlers import CrawlProgress
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
    walking = CrawlProgress("full, walk", 2, 3, 5, 7, 0, "listing children")
    scanning = CrawlProgress("full, scan", 0, 0, 5, 9, 0, "scanning the Hub listing", pages=8, pages_expected=2200)

    with CrawlProgressDisplay(interval_s=3600) as display:
        display(walking)
        display(walking)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "5 models seen, 2 listings done, 3 pending, 7 requests" in err
    with CrawlProgressDisplay(interval_s=3600) as display:
        display(scanning)
    assert "8 pages of about 2,200 read, 9 requests" in capsys.readouterr().err


def test_a_full_crawl_says_how_it_went_and_what_it_spent_of_the_quota(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "200")
    summary = {
        **_summary("gemma"),
        "mode": "full",
        "strategy": {"strategy": "scan", "reason": "scan (cheaper): about 2,211 requests (...)"},
        "scan": {"pages": 2200, "hub_models": 2_199_123, "indexed": 601_234},
        "quota": {
            "bucket": "api",
            "quota": 1000,
            "window_s": 300,
            "lowest_remaining": 4,
            "pauses": 2,
            "paused_s": 412.5,
            "rate_limited": 0,
        },
        "confirmed": {"deleted": 3, "still_there": 1},
    }
    render_crawl_summary(summary)
    out = capsys.readouterr().out
    assert "crawl 3 (full, by scan): 40 models" in out
    assert "strategy: scan (cheaper): about 2,211 requests" in out
    assert "scan: 2,200 pages, 2,199,123 models on the Hub, 601,234 of them naming a base model" in out
    assert "api quota 1,000 per 300 s: lowest left 4; paused 2 times (412.5 s) for the window to reset;" in out
    assert "0 answered 429" in out and "3 deleted, 1 still there" in out
