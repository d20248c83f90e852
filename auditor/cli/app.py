"""The root `auditor` group and the entry point that turns errors into exit codes.

The exit-code table: a click usage error exits with click's code (2); Ctrl-C and an abort 130;
an `AuditorError` its own `exit_code` (1, or 2 for configuration errors), and so does any error
that says the Hub cannot be reached (`auditor.errors.hub_unreachable`), however deep it was
raised. Each is a one-screen message with a hint on stderr; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import sys

import click

from auditor import __version__
from auditor.cli.logs import configure_logging
from auditor.errors import AuditorError


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
    configure_logging(debug)


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
