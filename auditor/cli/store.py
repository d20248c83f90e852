"""The store as a whole: `auditor store info|migrate|rewrite`, `auditor sql`, `auditor export`,
and `auditor config`, which shows what every command resolves."""

from __future__ import annotations

from pathlib import Path

import click

from auditor.cli.invocation import Invocation, configured
from auditor.cli.options import format_option


@click.group()
def store() -> None:
    """The DuckDB store."""


@store.command("info")
@format_option("table", "json")
@configured()
def store_info(inv: Invocation, fmt: str) -> None:
    """Schema version, table sizes and the last crawls.

    \b
    Example:
      auditor store info --store night.duckdb
    """
    import json

    from auditor.store.info import describe_store
    from reports.terminal import make_console, safe_text

    with inv.read_store() as opened:
        info = describe_store(opened)
    if fmt == "json":
        click.echo(json.dumps(info, indent=2, default=str))
        return
    console = make_console()
    console.print(f"store {safe_text(info['path'])}: schema version {info['schema_version']}")
    for table, n in info["tables"].items():
        console.print(f"  {table:<18} {n:>10} rows")
    for run in info["crawls"]:
        console.print(
            f"  crawl {run['crawl_id']} {run['mode']:<11} {run['strategy'] or '':<4} {run['status']:<7}"
            f" {run['started_at']}"
            f"  requests {run['requests']}" + (f"  error: {safe_text(run['error'])}" if run["error"] else "")
        )


@store.command("migrate")
@configured()
def store_migrate(inv: Invocation) -> None:
    """Create the store, or bring it to this version's schema.

    \b
    Example:
      auditor store migrate --store night.duckdb
    """
    with inv.write_store(remove_if_left_empty=False) as opened:
        click.echo(f"{opened.path}: schema version {opened.version()}")


@store.command("rewrite")
@configured()
def store_rewrite(inv: Invocation) -> None:
    """Rewrite the store in the storage format the DuckDB CLI 1.5 and MotherDuck read.

    DuckDB 2.0 creates files in a storage format that no DuckDB before 2.0 reads. The auditor
    creates new stores in DuckDB 1.5's format; this rewrites a store an earlier auditor created in
    the 2.0 format, and keeps the original as <store>.before-rewrite. A store DuckDB 1.5 reads
    already is left as it is. It holds the file for writing while it copies (it waits for other
    writers like any writer, store.write_wait_s).

    \b
    Example:
      auditor store rewrite --store night.duckdb && duckdb -readonly night.duckdb -c "SELECT count(*) FROM models"
    """
    from auditor.store.fileformat import rewrite_store

    settings = inv.config.store
    done = rewrite_store(settings.path, busy_timeout_s=settings.write_wait_s)
    if done.kept is None:
        click.echo(
            f"{done.path}: already in the {done.before or 'an older'} storage format, which DuckDB 1.5 reads; unchanged"
        )
        return
    click.echo(
        f"{done.path}: rewritten from the {done.before} to the {done.after} storage format"
        f" ({sum(done.rows.values())} rows in {len(done.rows)} tables); the original is kept as {done.kept}"
    )


@click.command("sql")
@click.argument("query")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="Stop the query after this long: while it runs, a cycle or crawl cannot write to the store.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    metavar="ROWS",
    help="Print at most this many rows (a notice on stderr says when there were more).",
)
@format_option("table", "json", "csv", "markdown")
@configured()
def sql(inv: Invocation, query: str, timeout: float, limit: int, fmt: str) -> None:
    """Run one read-only SQL query on the store and print the result.

    While the query runs no other process can write to the store: a cycle or a crawl that needs to
    waits for it. So a query is stopped after --timeout seconds (exit 1, the store untouched), and
    at most --limit rows are read and printed.

    \b
    Example:
      auditor sql "SELECT child, delta, q_value FROM drift WHERE drifted ORDER BY delta DESC LIMIT 10"
      auditor sql --timeout 120 --limit 100000 --format csv "SELECT * FROM models" > models.csv
    """
    from auditor.store.database import USER_QUERY_STOP_MARGIN_S
    from reports.tables import render_records

    wait = inv.config.store.write_wait_s
    if timeout + USER_QUERY_STOP_MARGIN_S > wait:
        click.echo(
            f"warning: --timeout {timeout:g} s is longer than a writer waits for readers"
            f" ([store] write_wait_s = {wait:g} s): a cycle or crawl that needs the store meanwhile"
            " may give up with 'store is busy'",
            err=True,
        )
    with inv.read_store() as opened:
        result = opened.run_read_query(query, timeout_s=timeout, limit=limit)
    render_records(result.records, fmt=fmt)
    if result.truncated:
        click.echo(
            f"note: the output was cut at {limit} rows (the query returns more); see more with"
            " --limit ROWS, or page through them with ORDER BY ... LIMIT ... OFFSET ...",
            err=True,
        )


@click.command("export")
@click.option(
    "--parquet",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder to write one Parquet file per public table and view into.",
)
@configured()
def export(inv: Invocation, directory: Path) -> None:
    """Write the store's public tables and views as Parquet files.

    \b
    Example:
      auditor export --parquet ./export
    """
    from auditor.store.info import export_parquet

    with inv.read_store() as opened:
        written = export_parquet(opened, directory)
    for name, rows in written.items():
        click.echo(f"{directory / (name + '.parquet')}: {rows} rows")


@click.command("config")
@configured(store=False)
def show_config(inv: Invocation) -> None:
    """Print the resolved configuration and where each explicit setting came from.

    \b
    Example:
      AUDITOR_CRAWL_CONCURRENCY=8 auditor config
    """
    import json

    click.echo(json.dumps(inv.resolved.provenance(), indent=2))
