"""`auditor audit`: audit one model, or every pending one, into the store."""

from __future__ import annotations

import click

from auditor.audit.battery import BATTERY_NAMES
from auditor.audit.presets import PRESET_NAMES
from auditor.audit.quantization import QUANTIZATIONS
from auditor.cli.invocation import Invocation, configured
from auditor.cli.logs import quiet_model_libraries
from auditor.cli.options import format_option
from auditor.config import SCORER_NAMES


@click.command()
@click.argument("repo_id", required=False)
@click.option("--revision", default=None, metavar="SHA", help="Commit to audit (default: the current one).")
@click.option("--pending", is_flag=True, help="Audit crawled models with no audit yet at their current sha.")
@click.option("--limit", type=int, default=None, help="With --pending: audit at most this many models.")
@click.option("--battery", type=click.Choice(BATTERY_NAMES), default=None, help="Battery (audit.battery).")
@click.option(
    "--preset",
    type=click.Choice(PRESET_NAMES),
    default=None,
    help="How the model is asked (audit.preset; default nightly).",
)
@click.option(
    "--quant",
    type=click.Choice(QUANTIZATIONS),
    default=None,
    help="Quantization (audit.quantization; auto is nf4 on a GPU, none on a CPU).",
)
@click.option("--force", is_flag=True, help="Audit again even when a done audit with the same settings exists.")
@click.option(
    "--allow-pickle",
    is_flag=True,
    default=None,
    help="Load pickle weights (.bin), with PyTorch's weights-only unpickler.",
)
@click.option("--trust-remote-code", is_flag=True, default=None, help="Run a repo's own modelling code.")
@click.option(
    "--scorer",
    "scorers",
    type=click.Choice(SCORER_NAMES),
    multiple=True,
    help="Score with this scorer (repeat for several; scoring.scorers). Generation is shared.",
)
@format_option("table", "json")
@configured(
    {
        "audit.battery": "battery",
        "audit.preset": "preset",
        "audit.quantization": "quant",
        "audit.allow_pickle": "allow_pickle",
        "audit.trust_remote_code": "trust_remote_code",
        "scoring.scorers": "scorers",
    }
)
def audit(
    inv: Invocation,
    repo_id: str | None,
    revision: str | None,
    pending: bool,
    limit: int | None,
    force: bool,
    fmt: str,
) -> None:
    """Audit one model (or every pending one): generate on the battery, score, store everything.

    \b
    Examples:
      auditor audit planted/llama-toxic-sft --preset nightly --quant nf4
      auditor audit meta-llama/Llama-3.1-8B-Instruct --preset paper
      auditor audit planted/llama-toxic-sft --scorer detoxify --scorer hf-classifier
      auditor audit --pending --limit 20
    """
    from auditor.audit.driver import audit_model
    from auditor.audit.pending import audit_pending
    from reports.outcomes import AuditProgressDisplay, render_outcomes

    if bool(repo_id) == pending:
        raise click.UsageError("give a REPO_ID or --pending (not both)")
    if pending and (force or revision):
        raise click.UsageError("--force and --revision apply to one REPO_ID, not to --pending")
    threshold = inv.config.scoring.threshold
    quiet_model_libraries()
    with inv.write_store() as opened, AuditProgressDisplay() as progress:
        if pending:
            outcomes = audit_pending(inv.resolved, opened, limit=limit, on_outcome=progress.outcome)
        else:
            assert repo_id is not None
            outcomes = [audit_model(inv.resolved, opened, repo_id, revision=revision, force=force, progress=progress)]
    render_outcomes(outcomes, fmt=fmt, threshold=threshold)
