"""The model, runs and tree reports as a person sees them: NO_COLOR, a fixed width, hostile text."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# `small_store` (a root and a child with one audit each) is in tests/reports/conftest.py.


def _run(store: Path, *args: str, width: int = 100) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": str(width), "TERM": "dumb"}
    return subprocess.run(
        [sys.executable, "-m", "auditor", *args, "--store", str(store)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_a_completion_full_of_escapes_and_markup_prints_inert(small_store: Path) -> None:
    out = _run(small_store, "report", "model", "user/child", "--worst", "1")
    assert out.returncode == 0, out.stderr
    assert "\x1b" not in out.stdout and "\x07" not in out.stdout
    assert "[bold red]shout[/] red" in out.stdout  # the markup is shown, not obeyed
    assert "Content warning" in out.stdout.split("Most toxic completions")[0]
    markdown = _run(small_store, "report", "model", "user/child", "--format", "markdown")
    assert "\x1b" not in markdown.stdout


def test_the_tree_at_a_fixed_width(small_store: Path) -> None:
    assert _run(small_store, "report", "drift", "--format", "json").returncode == 0  # fills the pairs
    out = _run(small_store, "report", "tree", "org/root")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "org/root: 0.0%",
        "└── user/child (finetune): 75.0% ↑ +75.0 pp",
    ]
    flat = json.loads(_run(small_store, "report", "tree", "org/root", "--format", "json").stdout)
    assert flat["children"][0]["drifted"] is True and flat["children"][0]["rate"] == 0.75


def test_runs_and_model_reports(small_store: Path) -> None:
    runs = _run(small_store, "report", "runs", "--format", "json")
    assert runs.returncode == 0 and [c["crawl_id"] for c in json.loads(runs.stdout)["crawls"]] == [1]
    table = _run(small_store, "report", "runs")
    assert "Recent crawls" in table.stdout and "Recent audits" in table.stdout
    model = json.loads(_run(small_store, "report", "model", "user/child", "--format", "json").stdout)
    assert [s["rate"] for s in model["strata"]] == [0.75]
    assert model["ancestors"][0]["ancestor"] == "org/root" and model["ancestors"][0]["rate"] == 0.0
    missing = _run(small_store, "report", "model", "nobody/x")
    assert missing.returncode == 1 and "neither crawled nor audited" in missing.stderr


def test_export_writes_every_public_table_as_parquet(small_store: Path, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    out = _run(small_store, "export", "--parquet", str(tmp_path / "export"))
    assert out.returncode == 0, out.stderr
    files = {p.stem: p for p in (tmp_path / "export").glob("*.parquet")}
    assert {"models", "lineage", "audits", "completions", "scores", "drift", "lineage_closure"} <= set(files)
    assert pq.read_table(files["scores"]).num_rows == 40 and pq.read_table(files["models"]).num_rows == 2


def test_drift_plot_as_png_and_svg(small_store: Path, tmp_path: Path) -> None:
    png = _run(small_store, "report", "drift", "--plot", str(tmp_path / "d.png"), "--format", "json")
    assert png.returncode == 0, png.stderr
    assert (tmp_path / "d.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = _run(small_store, "report", "drift", "--plot", str(tmp_path / "d.svg"))
    assert svg.returncode == 0 and "<svg" in (tmp_path / "d.svg").read_text()
    bad = _run(small_store, "report", "drift", "--plot", str(tmp_path / "d.gif"))
    assert bad.returncode == 1 and "name a .png or .svg file" in bad.stderr


def test_sql_reads_the_store_and_nothing_else(small_store: Path, tmp_path: Path) -> None:
    for query, needle in (
        (f"COPY (SELECT 1) TO '{tmp_path / 'x.csv'}'", "only one SELECT"),
        ("SELECT * FROM read_csv('/etc/hostname')", "the query failed"),
        ("SELECT 1; SELECT 2", "only one SELECT"),
        ("ATTACH 'other.duckdb' AS o", "only one SELECT"),
    ):
        out = _run(small_store, "sql", query)
        assert out.returncode == 1 and needle in out.stderr, (query, out.stderr)
    assert not (tmp_path / "x.csv").exists()
    ok = _run(
        small_store,
        "sql",
        "SELECT a.repo_id, b.repo_id FROM models a JOIN models b USING (family) WHERE a.repo_id < b.repo_id",
        "--format",
        "json",
    )
    assert json.loads(ok.stdout) == [{"repo_id": "org/root", "repo_id_2": "user/child"}]


def test_csv_and_markdown_keep_hostile_text_inert(small_store: Path) -> None:
    csv_out = _run(
        small_store, "sql", "SELECT text FROM completions WHERE text LIKE '%shout%' LIMIT 1", "--format", "csv"
    )
    assert "\x1b" not in csv_out.stdout and "\x07" not in csv_out.stdout and "shout" in csv_out.stdout
    formula = _run(small_store, "sql", "SELECT '=HYPERLINK(1)' AS x", "--format", "csv")
    assert formula.stdout.splitlines()[1] == "'=HYPERLINK(1)"
    markdown = _run(small_store, "sql", "SELECT 'a\\|b' AS \"x|y\"", "--format", "markdown")
    assert markdown.stdout.splitlines()[0] == "| x\\|y |" and markdown.stdout.splitlines()[2] == "| a\\\\\\|b |"


def test_drift_table_at_a_fixed_width(small_store: Path) -> None:
    out = _run(small_store, "report", "drift")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].rstrip() == (
        "Drift against the parent on detoxify:toxicity (toxic: score above 0.5; intervals: paired bootstrap)"
    )
    assert all(len(line) <= 100 for line in lines)  # the terminal's width, never more
    body = "\n".join(lines)
    for cell in ("user/", "child", "org/r", "oot", "0.0%", "75.0%", "+75.0", "[+55.0", "+90.0", "up"):
        assert cell in body
    assert "detectable" not in body  # a thirteenth column would fold the numbers at this width
    wide = _run(small_store, "report", "drift", width=120).stdout.splitlines()
    assert all(len(line) <= 120 for line in wide)
    assert "detecta" in "\n".join(wide) and "│ 45.0 " in "\n".join(wide)


def test_drift_json_carries_the_smallest_detectable_change(small_store: Path) -> None:
    """20 paired prompts, 15 toxic for the child only and none for the parent only: d = 15 discordant.
    12 to 3 gives p = 2 * P(X <= 3 | Bin(15, 1/2)) = 2 * 576/32768 = 0.035 <= 0.05, 11 to 4 gives 0.118,
    so the smallest detectable change is (2 * 12 - 15) / 20 = 0.45. At alpha 0.01 it takes 13 to 2
    (p = 0.0074; 12 to 3 is 0.035): 0.55. Below 2 / 2**15 = 6.1e-5 no split of 15 reaches alpha."""
    for alpha, expected in (("0.05", 0.45), ("0.01", 0.55), ("0.00001", None)):
        out = _run(small_store, "report", "drift", "--format", "json", "--alpha", alpha)
        assert out.returncode == 0, out.stderr
        (row,) = json.loads(out.stdout)
        assert (row["n_paired"], row["delta"]) == (20, 0.75)
        assert row["min_detectable"] == (pytest.approx(expected, abs=1e-12) if expected else None)
    csv_out = _run(small_store, "report", "drift", "--format", "csv").stdout.splitlines()
    assert "min_detectable" in csv_out[0].split(",")
    markdown = _run(small_store, "report", "drift", "--format", "markdown").stdout
    assert "detectable (pp)" in markdown and "| 45.0 |" in markdown


def test_a_family_or_model_the_store_never_crawled_is_an_error_naming_the_closest(shared_small_store: Path) -> None:
    """A typo in a report's filter is an error with the name probably meant, not an empty report."""
    from auditor.analysis.drift import DriftFilters, drift_rows
    from auditor.analysis.summaries import tree_view
    from auditor.errors import AuditorError
    from auditor.store import Store

    at = {"threshold": 0.5, "alpha": 0.05, "min_effect": 0.01}
    with Store.open(shared_small_store, read_only=True) as store:
        drift_rows(store, filters=DriftFilters(family="llama"), **at)  # a known family: no error
        with pytest.raises(AuditorError, match="no crawled model is of the family 'lama'") as family:
            drift_rows(store, filters=DriftFilters(family="lama"), **at)
        with pytest.raises(AuditorError, match="'org/rooot' is not a crawled model") as tree:
            tree_view(store, "org/rooot", **at)
        with pytest.raises(AuditorError, match="'nosuch/model' is not a crawled model") as unknown:
            drift_rows(store, filters=DriftFilters(root="nosuch/model"), **at)
    assert family.value.hint == "did you mean 'llama'? the families: llama"
    assert tree.value.hint == "did you mean 'org/root'?"
    assert unknown.value.hint is not None and unknown.value.hint.startswith("check the id")
