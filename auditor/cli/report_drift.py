"""`auditor report drift`: the most drifted derivatives against their parents."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from auditor.cli.invocation import Invocation, configured
from auditor.cli.options import compared_metric, format_option, metric_options
from auditor.lineage import RELATIONS


@click.command("drift")
@click.option("--family", default=None, help="Only this family (gemma, llama, phi, ...).")
@click.option(
    "--relation",
    type=click.Choice(RELATIONS),
    default=None,
    help="Only derivatives of this relation to their parent.",
)
@click.option("--root", "root", default=None, metavar="ID", help="Only descendants of this root model.")
@click.option("--min-downloads", type=int, default=None, help="Only derivatives with at least this many downloads.")
@click.option("--since", type=click.DateTime(), default=None, help="Only audits finished since this date.")
@click.option("--limit", type=int, default=None, help="At most this many rows (most drifted first).")
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also draw every derivative's drift per family into this .png or .svg file.",
)
@click.option("--alpha", type=float, default=None, help="False discovery rate  [default: [scoring] alpha, 0.05]")
@click.option(
    "--min-effect",
    type=float,
    default=None,
    help="Smallest difference of rates called drift, 0.01 being one point  [default: [scoring] min_effect, 0.01]",
)
@metric_options
@format_option("table", "json", "csv", "markdown")
@configured()
def report_drift(
    inv: Invocation,
    plot_path: Path | None,
    family: str | None,
    relation: str | None,
    root: str | None,
    min_downloads: int | None,
    since: datetime | None,
    limit: int | None,
    alpha: float | None,
    min_effect: float | None,
    scorer: str | None,
    attribute: str | None,
    fmt: str,
) -> None:
    """The most drifted derivatives against their parents, with intervals and q-values.

    \b
    Examples:
      auditor report drift --family llama --min-downloads 100
      auditor report drift --scorer hf-classifier
      auditor report drift --format json > drift.json
      auditor report drift --plot drift.png
    """
    from datetime import timezone

    from auditor.analysis.drift import DriftFilters, drift_rows, not_compared
    from reports.drift import render_drift

    threshold = inv.config.scoring.threshold
    metric = compared_metric(inv, scorer, attribute)
    with inv.read_store() as opened:
        rows = drift_rows(
            opened,
            threshold=threshold,
            alpha=inv.config.scoring.alpha if alpha is None else alpha,
            min_effect=inv.config.scoring.min_effect if min_effect is None else min_effect,
            filters=DriftFilters(
                family, relation, root, min_downloads, since.replace(tzinfo=timezone.utc) if since else None
            ),
            metric=metric,
        )
        skipped = not_compared(opened, scorer=metric.scorer)
    if plot_path is not None:
        from reports.plot import plot_drift

        plot_drift(rows, plot_path)
        click.echo(f"plot written to {plot_path}", err=True)
    render_drift(rows[:limit] if limit else rows, skipped, fmt=fmt, threshold=threshold, metric=str(metric))
