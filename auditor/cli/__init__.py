"""The `auditor` command: parse, call one library function, render.

One module per command group; `app` holds the root group and the entry point with its exit-code
table, `invocation` the `@configured` decorator through which every command resolves its config
once and opens its store once, `options` the options several commands share, and `logs` what the
libraries may print. Heavy libraries are imported inside the commands, so `auditor --help` stays
instant and never loads torch. Errors of the `AuditorError` family become a short message with a
hint on stderr (exit 1, or 2 for configuration errors), and so does any error that says the Hub
cannot be reached (`auditor.errors.hub_unreachable`); `--debug` shows the traceback instead. A
command that creates the store and fails before storing anything removes it again.
"""

from __future__ import annotations

from auditor.cli import audit, crawl, cycle, report, sim, store
from auditor.cli.app import cli, main

__all__ = ["cli", "main"]

# The commands, registered here by module (not by name, so that each module stays reachable as
# `auditor.cli.<module>`).
for _command in (
    crawl.crawl,
    audit.audit,
    cycle.run_command,
    cycle.schedule_command,
    cycle.status_command,
    sim.demo_command,
    report.report,
    store.sql,
    store.export,
    sim.sim,
    store.store,
    store.show_config,
):
    cli.add_command(_command)
