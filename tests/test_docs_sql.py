"""Every SQL example of the README and docs/ runs in the DuckDB CLI 1.5, read-only, on a store that
real audits wrote: the store is a public interface, and 1.5 is the newest duckdb CLI before DuckDB
2.0, whose storage format no earlier DuckDB reads (auditor/store/fileformat.py).

The examples are found by parsing the docs (every ```sql block, split into statements by DuckDB's
own parser), so an example added or changed there is checked here without touching this file.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from auditor.audit.driver import audit_model
from auditor.simhub import SimHub
from auditor.store import Store
from crawlers import CrawlOptions, crawl_lineage
from tests.helpers.audits import ACCEPTED_TOKEN, audit_config, audit_world

ROOT = Path(__file__).resolve().parents[1]
#: The `duckdb` command of the `duckdb-cli` package (the test extra), beside this Python.
DUCKDB_CLI = Path(sys.executable).with_name("duckdb")
_SQL_BLOCK = re.compile(r"^```sql[ \t]*\n(.*?)^```", re.S | re.M)


def sql_examples() -> list[tuple[str, str]]:
    """(where, statement) for each statement of each ```sql block in README.md and docs/*.md."""
    found = []
    for doc in (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))):
        text = doc.read_text(encoding="utf-8")
        for block in _SQL_BLOCK.finditer(text):
            line = text.count("\n", 0, block.start()) + 1
            for statement in duckdb.extract_statements(block.group(1)):
                found.append((f"{doc.relative_to(ROOT)}, the sql block at line {line}", statement.query.strip()))
    return found


@pytest.fixture(scope="module")
def audited_store(tiny_assets: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A crawled tree with the planted toxic finetune and its parent audited (so drift has a row)."""
    tmp = tmp_path_factory.mktemp("docs-sql")
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("HF_TOKEN", ACCEPTED_TOKEN)
    with SimHub(audit_world(tiny_assets, size=20)) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        resolved = audit_config(hub, tiny_assets, tmp / "cache")
        path = tmp / "docs.duckdb"
        with Store.open(path) as store:
            crawl_lineage(resolved, store, CrawlOptions())
            for repo_id in ("meta-llama/Llama-3.1-8B-Instruct", "planted/llama-toxic-sft"):
                assert audit_model(resolved, store, repo_id).status == "done"
            assert store.query("SELECT count(*) FROM drift WHERE drifted")[0][0] >= 1
    monkeypatch.undo()
    yield path


def test_the_docs_have_sql_examples() -> None:
    assert len(sql_examples()) >= 5  # the README's: a parser that finds none would pass the test below


def test_every_sql_example_runs_in_the_duckdb_cli_1_5_read_only(audited_store: Path) -> None:
    assert DUCKDB_CLI.exists(), f"no {DUCKDB_CLI}: install the test extra (pip install -e '.[test]')"
    version = subprocess.run([DUCKDB_CLI, "--version"], capture_output=True, text=True, check=True).stdout
    assert version.startswith("v1.5."), version
    failures = []
    for where, statement in sql_examples():
        done = subprocess.run(
            [DUCKDB_CLI, "-readonly", str(audited_store), "-c", statement], capture_output=True, text=True, timeout=60
        )
        output = done.stdout + done.stderr
        if done.returncode != 0 or "Error" in output:
            failures.append(f"{where}:\n{statement}\n-> exit {done.returncode}: {output.strip()[-600:]}")
    assert not failures, "\n\n".join(failures)
