"""`auditor report`: what the audits found, per model, per family tree, per scorer pair and per run."""

from __future__ import annotations

import click

from auditor.cli.invocation import Invocation, configured
from auditor.cli.options import compared_metric, format_option, metric_options, report_metric
from auditor.cli.report_drift import report_drift


@click.group()
def report() -> None:
    """Reports on what the audits found."""


report.add_command(report_drift)


@report.command("model")
@click.argument("repo_id")
@click.option(
    "--worst",
    type=int,
    default=5,
    show_default=True,
    help="How many of the most toxic completions to show (behind a content warning).",
)
@metric_options
@format_option("table", "json", "csv", "markdown")
@configured()
def report_model(
    inv: Invocation, repo_id: str, worst: int, scorer: str | None, attribute: str | None, fmt: str
) -> None:
    """One model: its audits over time, rates per stratum, its ancestors' rates, its worst completions.

    \b
    Examples:
      auditor report model planted/llama-toxic-sft --worst 3
      auditor report model planted/llama-toxic-sft --scorer detoxify --attribute insult
    """
    from auditor.analysis.summaries import model_view
    from auditor.errors import AuditorError
    from reports.summaries import render_model

    with inv.read_store() as opened:
        metric = report_metric(inv.resolved, scorer, attribute, opened)
        view = model_view(opened, repo_id, threshold=inv.config.scoring.threshold, worst=worst, metric=metric)
    if view.metadata is None and not view.audits:
        raise AuditorError(
            f"{repo_id} is neither crawled nor audited in this store",
            hint="check the id, or run `auditor audit` on it first",
        )
    render_model(view, fmt=fmt)


@report.command("scorers")
@click.option("--model", "repo_id", default=None, help="Only this model's newest audit scored by both.")
@click.option(
    "--first",
    default=None,
    help="scorer:attribute (default: detoxify's primary attribute, toxicity).",
)
@click.option(
    "--second",
    default=None,
    help="scorer:attribute (default: hf-classifier's primary attribute, hate).",
)
@click.option(
    "--disagreements",
    type=int,
    default=5,
    show_default=True,
    help="How many of the completions they disagree on most to show (behind a content warning).",
)
@format_option("table", "json", "csv", "markdown")
@configured()
def report_scorers(
    inv: Invocation, repo_id: str | None, first: str | None, second: str | None, disagreements: int, fmt: str
) -> None:
    """How often two scorers agree on the same completions: Cohen's kappa and the 2x2 table at the
    threshold, per model and overall, and the completions where they disagree most.

    \b
    Examples:
      auditor report scorers
      auditor report scorers --first detoxify:insult --second hf-classifier:hate --model planted/llama-toxic-sft
    """
    from auditor.analysis.agreement import scorer_agreement
    from reports.agreement import render_agreement

    with inv.read_store() as opened:
        a = report_metric(inv.resolved, *_metric_parts(first or "detoxify"), opened)
        b = report_metric(inv.resolved, *_metric_parts(second or "hf-classifier"), opened)
        view = scorer_agreement(
            opened, a, b, threshold=inv.config.scoring.threshold, disagreements=disagreements, repo_id=repo_id
        )
    render_agreement(view, fmt=fmt)


def _metric_parts(text: str) -> tuple[str, str | None]:
    from auditor.config import SCORER_NAMES
    from auditor.errors import AuditorError

    scorer, _, attribute = text.partition(":")
    if scorer not in SCORER_NAMES:
        raise AuditorError(
            f"unknown scorer {scorer!r} in {text!r}", hint="use scorer:attribute, e.g. detoxify:toxicity"
        )
    return scorer, attribute or None


@report.command("runs")
@click.option("--recent", type=int, default=10, show_default=True, help="How many crawls and audits to list.")
@format_option("table", "json", "csv", "markdown")
@configured()
def report_runs(inv: Invocation, recent: int, fmt: str) -> None:
    """Recent crawls and audits, and why audits failed or were skipped.

    \b
    Example:
      auditor report runs --recent 20
    """
    from auditor.analysis.summaries import runs_view
    from reports.summaries import render_runs

    with inv.read_store() as opened:
        runs = runs_view(opened, recent=recent)
    render_runs(runs, fmt=fmt)


@report.command("tree")
@click.argument("root")
@click.option("--depth", type=int, default=3, show_default=True, help="Generations shown below the root.")
@click.option(
    "--max-children",
    type=int,
    default=20,
    show_default=True,
    help="Children shown per model (the most drifted and downloaded first).",
)
@metric_options
@format_option("table", "json", "csv", "markdown", help="Output format (table draws the tree).")
@configured()
def report_tree(
    inv: Invocation, root: str, depth: int, max_children: int, scorer: str | None, attribute: str | None, fmt: str
) -> None:
    """A family tree, each model with its rate and its drift against its parent.

    \b
    Example:
      auditor report tree meta-llama/Llama-3.1-8B-Instruct --depth 2
    """
    from auditor.analysis.summaries import tree_view
    from reports.summaries import render_tree

    # The arrows are `report drift`'s comparisons at the configured threshold.
    metric = compared_metric(inv, scorer, attribute)
    threshold = inv.config.scoring.threshold
    with inv.read_store() as opened:
        node = tree_view(
            opened,
            root,
            depth=depth,
            max_children=max_children,
            threshold=threshold,
            alpha=inv.config.scoring.alpha,
            min_effect=inv.config.scoring.min_effect,
            metric=metric,
        )
    render_tree(node, fmt=fmt)
