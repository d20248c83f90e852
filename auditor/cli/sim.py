"""The simulated Hub: `auditor sim serve`, and `auditor demo`, which runs a cycle against one."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from auditor.cli.invocation import Invocation, configured
from auditor.cli.logs import quiet_model_libraries


@click.group()
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
@configured(store=False)
def sim_serve(inv: Invocation, world_spec: str, host: str, port: int, rate_limit: str | None, tiny: bool) -> None:
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
    resolved = inv.resolved  # validated, so a broken config shows here rather than later
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


@click.command("demo")
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
    from reports.cycle import render_demo
    from reports.outcomes import AuditProgressDisplay
    from schedules.demo import run_demo

    quiet_model_libraries()
    with AuditProgressDisplay() as progress:
        result = run_demo(store_path, on_stage=progress.keep, on_outcome=progress.outcome)
    render_demo(result)
