"""Options that several commands share, and the metric a report is about."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from auditor.config import SCORER_NAMES

if TYPE_CHECKING:
    from auditor.audit.scoring import Metric
    from auditor.cli.invocation import Invocation
    from auditor.config import ResolvedConfig
    from auditor.store import Store

F = TypeVar("F", bound=Callable[..., Any])


def config_option(func: F) -> F:
    """`--config PATH` on every command."""
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="TOML config file (default: ./auditor.toml when present).",
    )(func)


def format_option(*choices: str, help: str = "Output format.") -> Callable[[F], F]:
    """`--format` with these choices (the first is the default)."""

    def decorate(func: F) -> F:
        return click.option(
            "--format", "fmt", type=click.Choice(list(choices)), default=choices[0], show_default=True, help=help
        )(func)

    return decorate


def store_option(func: F) -> F:
    """`--store PATH` on every command that touches the store."""
    return click.option(
        "--store",
        "store_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="DuckDB store file (default: store.path, ./auditor.duckdb).",
    )(func)


def metric_options(func: F) -> F:
    """`--scorer` and `--attribute`: which scorer's attribute a report is about."""
    func = click.option(
        "--attribute",
        default=None,
        help="The scorer's attribute (default: its primary one; detoxify: toxicity, hf-classifier: hate).",
    )(func)
    return click.option(
        "--scorer",
        type=click.Choice(SCORER_NAMES),
        default=None,
        help="Whose scores to report (default: [scoring] headline, else the first of [scoring] scorers).",
    )(func)


def report_metric(
    resolved: ResolvedConfig, scorer: str | None, attribute: str | None, store: Store | None = None
) -> Metric:
    """The report's metric; with a store, one it holds scores of (else a clear error).

    >>> report_metric(load_config(), "detoxify", "insult")           # doctest: +SKIP
    Metric(scorer='detoxify', attribute='insult')
    """
    from auditor.analysis.drift import scored_metrics
    from auditor.audit.presets import get_preset
    from auditor.audit.scoring import choose_metric, scoring_for
    from auditor.errors import AuditorError

    config = resolved.config
    metric = choose_metric(scoring_for(config.scoring, get_preset(config.audit.preset).scorers), scorer, attribute)
    if store is not None:
        known = scored_metrics(store)
        if known and metric not in known:
            raise AuditorError(
                f"this store has no scores of {metric}",
                hint="choose --scorer/--attribute among: " + ", ".join(str(m) for m in known),
            )
    return metric


def compared_metric(inv: Invocation, scorer: str | None, attribute: str | None) -> Metric:
    """The report's metric, once every comparable pair of audits has its statistics at the
    configured threshold (a short write, or a warning when a cycle holds the store).

    The store is opened twice: `complete_drift` may write the missing pairs in between, and DuckDB
    lets a process hold a file read-only or for writing, not both.
    """
    from auditor.analysis.drift import complete_drift

    threshold = inv.config.scoring.threshold
    with inv.read_store() as opened:
        metric = report_metric(inv.resolved, scorer, attribute, opened)
    if not complete_drift(inv.config.store, threshold=threshold, metric=metric):
        click.echo(
            f"warning: some audits are not compared yet at threshold {threshold:g} and the store is busy"
            " (a cycle is writing); showing the comparisons stored so far. Run the report again later.",
            err=True,
        )
    return metric
