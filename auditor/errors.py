"""One error hierarchy for the whole tool.

    AuditorError                 anything the user can act on; carries a hint
    ├── ConfigError              a config file, environment variable or flag is wrong
    ├── StoreError               the DuckDB store cannot be used
    │   ├── StoreVersionError    the file was written by a newer auditor
    │   └── StoreBusyError       another process holds the write lock
    ├── HubError                 the Hub (or its stand-in) refused or failed a request
    │   └── HubUnavailableError  retries are exhausted: the Hub is down or unreachable
    ├── CrawlError               a crawl could not proceed (bad roots, ...)
    └── ModelError               one model cannot be audited; becomes an audit row, never stops a run
        ├── ModelSkipped         by policy or access: gated, too large, pickle weights, remote code
        └── ModelFailed          broken or unsupported: missing, corrupt, unknown architecture

Apart from the tree, `StopRequested` (a `KeyboardInterrupt`) is raised at a safe point when a
stop was asked for (SIGTERM, Ctrl-C): the work in hand stays resumable and the next run resumes it.

Every message says what happened and to what; `hint` says what to do next. The CLI turns these
into a one-screen message (a traceback only with `--debug`). A failure that concerns one model is
never raised past the loop that handles that model: it becomes a row with a status and a reason.
"""

from __future__ import annotations


class AuditorError(Exception):
    """Base class: `str(err)` is the message; `hint` is the next step for the user."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class ConfigError(AuditorError):
    exit_code = 2


class StoreError(AuditorError):
    pass


class StoreVersionError(StoreError):
    pass


class StoreBusyError(StoreError):
    pass


class HubError(AuditorError):
    pass


class HubUnavailableError(HubError):
    pass


class CrawlError(AuditorError):
    pass


class ModelError(AuditorError):
    """One model cannot be audited. `status` is what its audit row records; `code` says why in a word.

    Codes in `PERMANENT_CODES` describe the commit itself (its weights, its code, its size), so
    auditing the same commit again would end the same way; the others (access, the network) may
    clear up, and a later run tries again.
    """

    status = "failed"

    def __init__(self, message: str, *, hint: str | None = None, code: str = "unknown") -> None:
        super().__init__(message, hint=hint)
        self.code = code


class ModelSkipped(ModelError):
    status = "skipped"


class ModelFailed(ModelError):
    status = "failed"


#: Reasons that do not change until the model does (or a setting does).
PERMANENT_CODES = frozenset(
    {
        "pickle",
        "remote_code",
        "too_large",
        "no_weights",
        "corrupt",
        "unsupported",
        "no_tokenizer",
        "no_config",
        "bad_adapter",
        "bad_json",
    }
)


class StopRequested(KeyboardInterrupt):
    """A stop was asked for (SIGTERM or Ctrl-C) and the work stopped at a safe point.

    A `KeyboardInterrupt`, so that nothing that handles one model's failure swallows it: the
    interrupted crawl or audit is left resumable, exactly as after Ctrl-C.
    """
