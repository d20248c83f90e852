"""`auditor audit`: audit one model, or every pending one, into the store."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import click

from auditor.audit.battery import BATTERY_NAMES
from auditor.audit.presets import PRESET_NAMES
from auditor.audit.quantization import QUANTIZATIONS
from auditor.cli.invocation import Invocation, configured
from auditor.cli.logs import quiet_model_libraries
from auditor.cli.options import format_option
from auditor.config import SCORER_NAMES
from auditor.errors import CycleBusyError


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

    It runs alone on its store: it holds the nightly cycle's lock (<store>.lock) from start to end,
    so that it never audits the same models as a cycle (`auditor run`, the scheduler) or another
    `auditor audit` beside it. When one of those holds the lock it exits at once with code 3,
    saying which process holds it; wait for that one to finish, or stop it, and run it again.

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
    # The lock comes before anything that reaches the Hub, loads a model or opens the store.
    with _alone_on(inv.config.store.path, "auditor audit " + ("--pending" if pending else str(repo_id))):
        quiet_model_libraries()
        with inv.write_store() as opened, AuditProgressDisplay() as progress:
            if pending:
                outcomes = audit_pending(inv.resolved, opened, limit=limit, on_outcome=progress.outcome)
            else:
                assert repo_id is not None
                outcomes = [
                    audit_model(inv.resolved, opened, repo_id, revision=revision, force=force, progress=progress)
                ]
    render_outcomes(outcomes, fmt=fmt, threshold=threshold)


@contextmanager
def _alone_on(store_path: Path, command: str) -> Iterator[None]:
    """Hold the cycle lock of the store at `store_path` (`schedules.lock`) for the block, noting
    `command` in it; a `CycleBusyError` that says who holds it when a cycle or another audit does."""
    from schedules.lock import CycleLock, cycle_lock_path, holder

    path = cycle_lock_path(store_path)
    existed = path.exists()
    with ExitStack() as stack:
        try:
            lock = stack.enter_context(CycleLock(path, what="audit"))
        except CycleBusyError:
            raise _busy(store_path, path, holder(path)) from None
        lock.note(command=command)
        try:
            yield
        finally:
            # A store this command created and removed again (it failed before storing anything:
            # `removed_if_left_empty`) leaves no lock file beside it either. It is unlinked while still
            # held; only a command started on the same new store within this instant could be left
            # holding the unlinked file while a later one makes a new lock.
            if not existed and not store_path.exists():
                path.unlink(missing_ok=True)


def _busy(store_path: Path, lock_path: Path, info: dict[str, Any] | None) -> CycleBusyError:
    """The error of an audit turned away by the cycle lock, naming the process that holds it."""
    if info is None:  # let go between our attempt and this look
        return CycleBusyError(
            f"the cycle lock of store {store_path} ({lock_path}) was held a moment ago, so this audit did not start",
            hint="run the same command again",
        )
    pid = info.get("pid") or "?"
    command = str(info.get("command") or "")
    if command.startswith("auditor audit"):
        return CycleBusyError(
            f"another audit ({command!r}, pid {pid}) holds the cycle lock of store {store_path} ({lock_path});"
            " two audits at once would audit the same models twice",
            hint=f"wait for it to finish and run this again, or stop it (kill {pid}: an audit stopped"
            " at any point is resumed by the next one)",
        )
    cycle = f"cycle #{info['cycle_id']}, " if info.get("cycle_id") is not None else ""
    return CycleBusyError(
        f"a nightly cycle ({cycle}pid {pid}) holds the cycle lock of store {store_path} ({lock_path});"
        " an audit beside it would audit the same models twice",
        hint=f"wait for the cycle to finish (`auditor status` shows it) and run this again, or stop it"
        f" (kill -TERM {pid}: it stops at a safe point and the next cycle resumes its work); the cycle"
        " audits the pending models itself",
    )
