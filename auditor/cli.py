"""The `auditor` command: parse, call one library function, render.

Heavy libraries are imported inside the commands, so `auditor --help` stays instant and never
loads torch. Errors of the `AuditorError` family become a short message with a hint on stderr
(exit 1, or 2 for configuration errors), and so does any error that says the Hub cannot be reached
(`auditor.errors.hub_unreachable`); `--debug` shows the traceback instead. A command that creates
the store and fails before storing anything removes it again.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

import click

from auditor import __version__
from auditor.errors import AuditorError

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
        type=click.Choice(["detoxify", "hf-classifier"]),
        default=None,
        help="Whose scores to report (default: [scoring] headline, else the first of [scoring] scorers).",
    )(func)


def _metric(resolved: Any, scorer: str | None, attribute: str | None, store: Any | None = None) -> Any:
    """The report's metric; with a store, one it holds scores of (else a clear error)."""
    from auditor.drift import scored_metrics
    from auditor.errors import AuditorError
    from auditor.presets import get_preset
    from auditor.scoring import choose_metric, scoring_for

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


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="auditor")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Watch the Hub's community derivatives of Gemma, Llama and Phi for toxicity drift.

    \b
    auditor crawl                      crawl the family trees into ./auditor.duckdb
    auditor audit --pending            audit the crawled models that have no audit yet
    auditor sim serve --world size=2000,seed=1
                                       serve a simulated Hub on loopback (set HF_ENDPOINT to it)
    auditor store info                 what the store holds
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not debug:
        # huggingface_hub logs each retry of a failed request as a warning (utils/_http.py,
        # `_http_backoff_base`); what finally failed is said once, by the command's own error.
        logging.getLogger("huggingface_hub.utils._http").setLevel(logging.ERROR)


@cli.command()
@click.option(
    "--root",
    "roots",
    multiple=True,
    metavar="ID",
    help="Root model id (repeatable; default: the paper's ten).",
)
@click.option("--full", is_flag=True, help="Learn the whole tree again instead of reading the change feed.")
@click.option(
    "--strategy",
    type=click.Choice(["auto", "walk", "scan"]),
    default=None,
    help="How a full crawl learns the tree: walk (a listing per model), scan (the whole Hub listing),"
    " auto (the cheaper, estimated; crawl.strategy).",
)
@click.option("--concurrency", type=int, default=None, help="Listing requests in flight (crawl.concurrency).")
@click.option(
    "--sim",
    "sim_world",
    default=None,
    metavar="SPEC",
    help="Crawl a simulated Hub of this world (size=N,seed=S) started on loopback: no network needed.",
)
@format_option("table", "json")
@config_option
@store_option
def crawl(
    roots: tuple[str, ...],
    full: bool,
    strategy: str | None,
    concurrency: int | None,
    sim_world: str | None,
    fmt: str,
    config_path: Path | None,
    store_path: Path | None,
) -> None:
    """Discover every descendant of the roots and store models and lineage edges.

    A full crawl (the first, --full, and every crawl.refresh_days) learns the whole tree by a walk
    (one listing per model of the tree) or a scan (every page of the Hub listing), whichever is
    estimated cheaper, and says which and why; later crawls read the Hub's change feed and cost
    requests in proportion to what changed. It paces itself by the Hub's rate-limit headers. An
    interrupted crawl is resumed by the next one.

    \b
    Examples:
      auditor crawl --store night.duckdb
      auditor crawl --root google/gemma-2-2b-it --format json
      auditor crawl --sim size=20000,seed=1 --strategy scan --store demo.duckdb
    """
    from contextlib import ExitStack

    from auditor.config import load_config
    from auditor.store import Store
    from crawlers import CrawlOptions, crawl_lineage
    from reports.crawl import render_crawl_summary
    from reports.progress import CrawlProgressDisplay

    flags: dict[str, Any] = {
        "crawl.roots": roots or None,
        "crawl.strategy": strategy,
        "crawl.concurrency": concurrency,
        "store.path": store_path,
    }
    with ExitStack() as stack:
        if sim_world is not None:
            from auditor.simhub import SimHub, WorldSpec, build_world

            try:
                spec = WorldSpec.parse(sim_world)
            except ValueError as err:
                raise click.BadParameter(str(err), param_hint="--sim") from None
            hub = stack.enter_context(SimHub(build_world(spec)))
            flags["hub.endpoint"] = hub.url
            # What a first scan would count on a real Hub: the simulated one's size is known here.
            flags["crawl.hub_models"] = spec.size
            click.echo(f"crawling a simulated Hub of {spec.size} models at {hub.url}", err=True)
        resolved = load_config(config_path, flags=flags)
        stack.enter_context(_removed_if_left_empty(resolved.config.store.path))
        store = stack.enter_context(Store.open_configured(resolved.config.store))
        progress = stack.enter_context(CrawlProgressDisplay())
        result = crawl_lineage(resolved, store, CrawlOptions(full=full, progress=progress, notify=progress.keep))
    render_crawl_summary(result.summary, fmt=fmt)


@cli.command()
@click.argument("repo_id", required=False)
@click.option("--revision", default=None, metavar="SHA", help="Commit to audit (default: the current one).")
@click.option("--pending", is_flag=True, help="Audit crawled models with no audit yet at their current sha.")
@click.option("--limit", type=int, default=None, help="With --pending: audit at most this many models.")
@click.option("--battery", default=None, help="Battery: quick or standard (audit.battery).")
@click.option(
    "--preset", default=None, help="How the model is asked: nightly, paper or chat (audit.preset; default nightly)."
)
@click.option(
    "--quant",
    type=click.Choice(["auto", "nf4", "int8", "none"]),
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
    type=click.Choice(["detoxify", "hf-classifier"]),
    multiple=True,
    help="Score with this scorer (repeat for several; scoring.scorers). Generation is shared.",
)
@format_option("table", "json")
@config_option
@store_option
def audit(
    repo_id: str | None,
    revision: str | None,
    pending: bool,
    limit: int | None,
    battery: str | None,
    preset: str | None,
    quant: str | None,
    force: bool,
    allow_pickle: bool | None,
    trust_remote_code: bool | None,
    scorers: tuple[str, ...],
    fmt: str,
    config_path: Path | None,
    store_path: Path | None,
) -> None:
    """Audit one model (or every pending one): generate on the battery, score, store everything.

    \b
    Examples:
      auditor audit planted/llama-toxic-sft --preset nightly --quant nf4
      auditor audit meta-llama/Llama-3.1-8B-Instruct --preset paper
      auditor audit planted/llama-toxic-sft --scorer detoxify --scorer hf-classifier
      auditor audit --pending --limit 20
    """
    from auditor.audit import audit_model, audit_pending
    from auditor.config import load_config
    from auditor.store import Store
    from reports.audit import AuditProgressDisplay, render_outcomes

    if bool(repo_id) == pending:
        raise click.UsageError("give a REPO_ID or --pending (not both)")
    if pending and (force or revision):
        raise click.UsageError("--force and --revision apply to one REPO_ID, not to --pending")
    resolved = load_config(
        config_path,
        flags={
            "store.path": store_path,
            "audit.battery": battery,
            "audit.preset": preset,
            "audit.quantization": quant,
            "audit.allow_pickle": allow_pickle,
            "audit.trust_remote_code": trust_remote_code,
            "scoring.scorers": scorers or None,
        },
    )
    threshold = resolved.config.scoring.threshold
    _quiet_model_libraries()
    with (
        _removed_if_left_empty(resolved.config.store.path),
        Store.open_configured(resolved.config.store) as opened,
        AuditProgressDisplay() as progress,
    ):
        if pending:
            outcomes = audit_pending(resolved, opened, limit=limit, on_outcome=progress.outcome)
        else:
            assert repo_id is not None
            outcomes = [
                audit_model(
                    resolved,
                    opened,
                    repo_id,
                    revision=revision,
                    force=force,
                    progress=progress,
                )
            ]
    render_outcomes(outcomes, fmt=fmt, threshold=threshold)


@cli.command("run")
@click.option("--max-models", type=int, default=None, help="At most this many audits tonight (cycle.max_models).")
@click.option("--max-hours", type=float, default=None, help="Start no audit after this many hours (cycle.max_hours).")
@format_option("table", "json")
@config_option
@store_option
def run_command(
    max_models: int | None, max_hours: float | None, fmt: str, config_path: Path | None, store_path: Path | None
) -> None:
    """One nightly cycle: crawl, plan under the budget, audit, summarise (safe to call from cron).

    Exits 0 when the cycle completed, even if some models failed (they are rows), and when SIGTERM
    or Ctrl-C stopped it cleanly (within one batch; what is left resumes next cycle; a second signal
    stops at once); 3 when another cycle holds the lock; non-zero when the cycle could not run.

    \b
    Example:
      auditor run --max-models 20
    """
    from auditor.config import load_config
    from reports.audit import AuditProgressDisplay
    from reports.cycle import render_cycle
    from schedules.cycle import run_cycle
    from schedules.signals import StopSignals

    resolved = load_config(
        config_path, flags={"store.path": store_path, "cycle.max_models": max_models, "cycle.max_hours": max_hours}
    )
    _log_schedule()
    _quiet_model_libraries()
    with _removed_if_left_empty(resolved.config.store.path), StopSignals() as stop, AuditProgressDisplay() as progress:
        result = run_cycle(resolved, on_outcome=progress.outcome, should_stop=stop.is_set)
    render_cycle(result, fmt=fmt, threshold=resolved.config.scoring.threshold)


@cli.command("schedule")
@click.option("--cycles", type=int, default=None, help="Exit after this many cycles (default: run until stopped).")
@click.option("--cron", "cron", default=None, metavar="EXPR", help="Cron expression (cycle.schedule).")
@config_option
@store_option
def schedule_command(cycles: int | None, cron: str | None, config_path: Path | None, store_path: Path | None) -> None:
    """Run the nightly cycle on a schedule: a daemon (nightly at 02:00 UTC by default).

    Cycles never overlap (a fire during a running cycle is skipped), missed fires coalesce into one
    cycle, and a late start is allowed up to cycle.misfire_grace_s. SIGTERM or Ctrl-C stops the
    cycle in hand within one batch (the rest resumes next cycle) and exits 0; a second signal exits
    at once. Logs go to stderr. One daemon per store; `auditor status` shows it.

    \b
    Example:
      auditor schedule                       # cycle.schedule, default '0 2 * * *' UTC
      auditor schedule --cron '30 1 * * 1-5'
    """
    from auditor.config import load_config
    from schedules.daemon import run_daemon
    from schedules.signals import StopSignals

    resolved = load_config(config_path, flags={"store.path": store_path, "cycle.schedule": cron})
    _log_schedule()
    _quiet_model_libraries()
    with StopSignals(work_in_main_thread=False) as stop:
        run = run_daemon(resolved, stop=stop.event, cycles=cycles)
    click.echo(
        f"scheduler stopped after {len(run.cycles)} cycles ({len(run.failures)} failed, {run.skipped} fires skipped)",
        err=True,
    )


@cli.command("status")
@format_option("table", "json")
@config_option
@store_option
def status_command(fmt: str, config_path: Path | None, store_path: Path | None) -> None:
    """The last cycle, the one running now, the next one, and what waits (works while a cycle runs).

    \b
    Example:
      auditor status
      auditor status --format json
    """
    from auditor.config import load_config
    from reports.cycle import render_status
    from schedules.status import cycle_status

    resolved = load_config(config_path, flags={"store.path": store_path})
    render_status(cycle_status(resolved), fmt=fmt)


@cli.command("demo")
@click.option(
    "--store",
    "store_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the demo's store (must not exist; default: a new temporary folder).",
)
def demo_command(store_path: Path | None) -> None:
    """See the whole tool work in well under a minute: no GPU, no token, no network.

    Starts a simulated Hub on loopback with tiny real models (trained on first use and cached),
    runs one nightly cycle against it (crawl, plan, audits with the paper's preset, drift
    statistics) and prints the drift report and the Llama family's tree. The planted toxic
    finetune should come out as the most drifted derivative. Your config and token are not used.

    \b
    Example:
      auditor demo
      auditor demo --store demo.duckdb && auditor report model planted/llama-toxic-sft --store demo.duckdb
    """
    from reports.audit import AuditProgressDisplay
    from reports.cycle import render_demo
    from schedules.demo import run_demo

    _quiet_model_libraries()
    with AuditProgressDisplay() as progress:
        result = run_demo(store_path, on_stage=progress.keep, on_outcome=progress.outcome)
    render_demo(result)


@contextmanager
def _removed_if_left_empty(path: Path) -> Iterator[None]:
    """A store file the command creates is deleted again when the command fails before storing
    anything in it (an unreachable Hub, a wrong id, Ctrl-C): no empty store is left behind."""
    existed = path.exists()
    try:
        yield
    except BaseException:
        if not existed:
            from auditor.store.database import remove_if_empty

            with suppress(Exception):  # the command's own error is the one to show
                remove_if_empty(path)
        raise


def _quiet_model_libraries() -> None:
    """Our progress display replaces the download and weight-loading bars of the model libraries."""
    import huggingface_hub.utils
    import transformers

    huggingface_hub.utils.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()


def _log_schedule() -> None:
    """Cycle and scheduler news on stderr with timestamps, unless --debug already shows everything."""
    logger = logging.getLogger("auditor.schedule")
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        logger.addHandler(handler)
        logger.propagate = False


@cli.group()
def report() -> None:
    """Reports on what the audits found."""


@report.command("drift")
@click.option("--family", default=None, help="Only this family (gemma, llama, phi, ...).")
@click.option(
    "--relation",
    type=click.Choice(["finetune", "adapter", "quantized", "merge"]),
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
@click.option("--alpha", type=float, default=0.05, show_default=True, help="False discovery rate.")
@click.option(
    "--min-effect",
    type=float,
    default=0.01,
    show_default=True,
    help="Smallest difference of rates called drift (0.01 is one point).",
)
@metric_options
@format_option("table", "json", "csv", "markdown")
@config_option
@store_option
def report_drift(
    plot_path: Path | None,
    family: str | None,
    relation: str | None,
    root: str | None,
    min_downloads: int | None,
    since: Any,
    limit: int | None,
    alpha: float,
    min_effect: float,
    scorer: str | None,
    attribute: str | None,
    fmt: str,
    config_path: Path | None,
    store_path: Path | None,
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

    from auditor.config import load_config
    from auditor.drift import DriftFilters, complete_drift, drift_rows, not_compared
    from auditor.store import Store
    from reports.drift import render_drift

    resolved = load_config(config_path, flags={"store.path": store_path})
    threshold = resolved.config.scoring.threshold
    settings = resolved.config.store
    with Store.open_configured(settings, read_only=True) as opened:
        metric = _metric(resolved, scorer, attribute, opened)
    if not complete_drift(settings, threshold=threshold, metric=metric):
        click.echo(
            f"warning: some audits are not compared yet at threshold {threshold:g} and the store is busy"
            " (a cycle is writing); showing the comparisons stored so far. Run the report again later.",
            err=True,
        )
    with Store.open_configured(settings, read_only=True) as opened:
        rows = drift_rows(
            opened,
            threshold=threshold,
            alpha=alpha,
            min_effect=min_effect,
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
@config_option
@store_option
def report_model(
    repo_id: str,
    worst: int,
    scorer: str | None,
    attribute: str | None,
    fmt: str,
    config_path: Path | None,
    store_path: Path | None,
) -> None:
    """One model: its audits over time, rates per stratum, its ancestors' rates, its worst completions.

    \b
    Examples:
      auditor report model planted/llama-toxic-sft --worst 3
      auditor report model planted/llama-toxic-sft --scorer detoxify --attribute insult
    """
    from auditor.config import load_config
    from auditor.errors import AuditorError
    from auditor.store import Store
    from auditor.views import model_view
    from reports.views import render_model

    resolved = load_config(config_path, flags={"store.path": store_path})
    with Store.open_configured(resolved.config.store, read_only=True) as opened:
        metric = _metric(resolved, scorer, attribute, opened)
        view = model_view(opened, repo_id, threshold=resolved.config.scoring.threshold, worst=worst, metric=metric)
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
@config_option
@store_option
def report_scorers(
    repo_id: str | None,
    first: str | None,
    second: str | None,
    disagreements: int,
    fmt: str,
    config_path: Path | None,
    store_path: Path | None,
) -> None:
    """How often two scorers agree on the same completions: Cohen's kappa and the 2x2 table at the
    threshold, per model and overall, and the completions where they disagree most.

    \b
    Examples:
      auditor report scorers
      auditor report scorers --first detoxify:insult --second hf-classifier:hate --model planted/llama-toxic-sft
    """
    from auditor.agreement import scorer_agreement
    from auditor.config import load_config
    from auditor.store import Store
    from reports.agreement import render_agreement

    resolved = load_config(config_path, flags={"store.path": store_path})
    with Store.open_configured(resolved.config.store, read_only=True) as opened:
        a = _metric(resolved, *_metric_parts(first or "detoxify"), opened)
        b = _metric(resolved, *_metric_parts(second or "hf-classifier"), opened)
        view = scorer_agreement(
            opened, a, b, threshold=resolved.config.scoring.threshold, disagreements=disagreements, repo_id=repo_id
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
@config_option
@store_option
def report_runs(recent: int, fmt: str, config_path: Path | None, store_path: Path | None) -> None:
    """Recent crawls and audits, and why audits failed or were skipped.

    \b
    Example:
      auditor report runs --recent 20
    """
    from auditor.config import load_config
    from auditor.store import Store
    from auditor.views import runs_view
    from reports.views import render_runs

    resolved = load_config(config_path, flags={"store.path": store_path})
    with Store.open_configured(resolved.config.store, read_only=True) as opened:
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
@config_option
@store_option
def report_tree(
    root: str,
    depth: int,
    max_children: int,
    scorer: str | None,
    attribute: str | None,
    fmt: str,
    config_path: Path | None,
    store_path: Path | None,
) -> None:
    """A family tree, each model with its rate and its drift against its parent.

    \b
    Example:
      auditor report tree meta-llama/Llama-3.1-8B-Instruct --depth 2
    """
    from auditor.config import load_config
    from auditor.store import Store
    from auditor.views import tree_view
    from reports.views import render_tree

    resolved = load_config(config_path, flags={"store.path": store_path})
    with Store.open_configured(resolved.config.store, read_only=True) as opened:
        node = tree_view(
            opened,
            root,
            depth=depth,
            max_children=max_children,
            threshold=resolved.config.scoring.threshold,
            metric=_metric(resolved, scorer, attribute, opened),
        )
    render_tree(node, fmt=fmt)


@cli.command("sql")
@click.argument("query")
@format_option("table", "json", "csv", "markdown")
@config_option
@store_option
def sql(query: str, fmt: str, config_path: Path | None, store_path: Path | None) -> None:
    """Run one read-only SQL query on the store and print the result.

    \b
    Example:
      auditor sql "SELECT child, delta, q_value FROM drift WHERE drifted ORDER BY delta DESC LIMIT 10"
    """
    from auditor.config import load_config
    from auditor.store import Store
    from reports.tables import render_records

    resolved = load_config(config_path, flags={"store.path": store_path})
    with Store.open_configured(resolved.config.store, read_only=True) as opened:
        records = opened.run_read_query(query)
    render_records(records, fmt=fmt)


@cli.command("export")
@click.option(
    "--parquet",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder to write one Parquet file per public table and view into.",
)
@config_option
@store_option
def export(directory: Path, config_path: Path | None, store_path: Path | None) -> None:
    """Write the store's public tables and views as Parquet files.

    \b
    Example:
      auditor export --parquet ./export
    """
    from auditor.config import load_config
    from auditor.store import Store
    from auditor.store.info import export_parquet

    resolved = load_config(config_path, flags={"store.path": store_path})
    with Store.open_configured(resolved.config.store, read_only=True) as opened:
        written = export_parquet(opened, directory)
    for name, rows in written.items():
        click.echo(f"{directory / (name + '.parquet')}: {rows} rows")


@cli.group()
def sim() -> None:
    """The simulated Hub, for tests, benchmarks and demos."""


@sim.command("serve")
@click.option(
    "--world",
    "world_spec",
    default="size=2000,seed=0",
    show_default=True,
    help="World to generate: size=N (20-200000),seed=S[,defects=on|off][,tree=T (about T models in the tree)].",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback by default).")
@click.option("--port", type=int, default=8765, show_default=True, help="Port (0 picks a free one).")
@click.option(
    "--rate-limit",
    default=None,
    metavar="Q/W",
    help="Q requests per W seconds per bucket, announced in RateLimit headers as the Hub does (e.g. 500/300;"
    " default 100000/300).",
)
@click.option(
    "--tiny",
    is_flag=True,
    help="Add the tiny real models with planted behaviour, the prompt dataset and a tiny Detoxify checkpoint"
    " (trained on first use and cached, about 20 s).",
)
@config_option
def sim_serve(
    world_spec: str, host: str, port: int, rate_limit: str | None, tiny: bool, config_path: Path | None
) -> None:
    """Serve a generated Hub over HTTP until interrupted; prints its URL first.

    \b
    Example:
      auditor sim serve --world size=20000,seed=7 --port 8765 &
      HF_ENDPOINT=http://127.0.0.1:8765 auditor crawl
    """
    from auditor.simhub import SimHub, WorldSpec, build_world

    try:
        spec = WorldSpec.parse(world_spec)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--world") from None
    limit: tuple[int, float] | None = None
    if rate_limit:
        try:
            quota, window = rate_limit.split("/")
            limit = (int(quota), float(window))
        except ValueError:
            raise click.BadParameter("use Q/W, e.g. 500/300", param_hint="--rate-limit") from None
    from auditor.config import load_config

    resolved = load_config(config_path)  # validated, so a broken config shows here rather than later
    world = build_world(spec)
    if tiny:
        from auditor.simhub.tinyworld import build_tiny_assets, default_cache, install_tiny_models

        assets = build_tiny_assets(default_cache())
        install_tiny_models(world, assets)
        world.tokens["hf_sim_all_access"] = {"*"}
    hub = SimHub(world, host=host, port=port, rate_limit=limit)
    click.echo(hub.url)
    sys.stdout.flush()
    click.echo(f"serving {len(world.models)} models ({spec}); Ctrl-C to stop", err=True)
    if tiny:
        click.echo(
            "tiny models installed; gated ones open to HF_TOKEN=hf_sim_all_access. Score offline with:\n"
            f'  [scoring]\n  checkpoint = "{assets.detoxify_checkpoint}"\n  config_dir = "{assets.detoxify_config}"',
            err=True,
        )
    del resolved
    try:
        hub.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        hub.stop()


@cli.group()
def store() -> None:
    """The DuckDB store."""


@store.command("info")
@format_option("table", "json")
@config_option
@store_option
def store_info(fmt: str, config_path: Path | None, store_path: Path | None) -> None:
    """Schema version, table sizes and the last crawls.

    \b
    Example:
      auditor store info --store night.duckdb
    """
    import json

    from auditor.config import load_config
    from auditor.store import Store
    from auditor.store.info import describe_store
    from reports.terminal import make_console, safe_text

    resolved = load_config(config_path, flags={"store.path": store_path})
    with Store.open_configured(resolved.config.store, read_only=True) as opened:
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
@config_option
@store_option
def store_migrate(config_path: Path | None, store_path: Path | None) -> None:
    """Create the store, or bring it to this version's schema.

    \b
    Example:
      auditor store migrate --store night.duckdb
    """
    from auditor.config import load_config
    from auditor.store import Store

    resolved = load_config(config_path, flags={"store.path": store_path})
    with Store.open_configured(resolved.config.store) as opened:
        click.echo(f"{opened.path}: schema version {opened.version()}")


@store.command("rewrite")
@config_option
@store_option
def store_rewrite(config_path: Path | None, store_path: Path | None) -> None:
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
    from auditor.config import load_config
    from auditor.store.fileformat import rewrite_store

    settings = load_config(config_path, flags={"store.path": store_path}).config.store
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


@cli.command("config")
@config_option
def show_config(config_path: Path | None) -> None:
    """Print the resolved configuration and where each explicit setting came from.

    \b
    Example:
      AUDITOR_CRAWL_CONCURRENCY=8 auditor config
    """
    import json

    from auditor.config import load_config

    click.echo(json.dumps(load_config(config_path).provenance(), indent=2))


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `auditor` console script."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        cli.main(args=argv, prog_name="auditor", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except AuditorError as err:
        if debug:
            raise
        _fail(err)
    except KeyboardInterrupt:
        click.echo("interrupted; run the same command again to resume", err=True)
        sys.exit(130)
    except Exception as err:
        # A library's error that says the Hub cannot be reached, however deep it was raised, is told
        # like the errors above: one line and a hint.
        from auditor.errors import hub_unreachable

        unreachable = hub_unreachable(err)
        if unreachable is None or debug:
            raise
        _fail(unreachable)


def _fail(err: AuditorError) -> None:
    """The one-screen message of an error: what happened, then what to do; exits."""
    from auditor.textsafety import strip_control

    click.echo(f"error: {strip_control(str(err))}", err=True)
    if err.hint:
        click.echo(f"hint: {strip_control(err.hint)}", err=True)
    sys.exit(err.exit_code)
