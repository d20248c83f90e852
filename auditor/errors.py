"""One error hierarchy for the whole tool.

    AuditorError                 anything the user can act on; carries a hint
    ├── ConfigError              a config file, environment variable or flag is wrong
    ├── StoreError               the DuckDB store cannot be used
    │   ├── StoreVersionError    the file was written by a newer auditor
    │   ├── StoreFormatError     the file is in a DuckDB storage format the installed duckdb cannot read
    │   └── StoreBusyError       another process holds the write lock
    ├── HubError                 the Hub (or its stand-in) refused or failed a request
    │   └── HubUnavailableError  retries are exhausted: the Hub is down or unreachable
    ├── CrawlError               a crawl could not proceed (bad roots, ...)
    ├── BatteryError             a battery is unknown, or its prompt dataset cannot be read
    ├── ScorerError              a scorer is unknown, or its checkpoint cannot be loaded
    ├── CycleBusyError           another nightly cycle (or daemon) holds the lock of this store
    └── ModelError               one model cannot be audited; becomes an audit row, never stops a run
        ├── ModelSkipped         by policy or access: gated, too large, pickle weights, remote code
        └── ModelFailed          broken or unsupported: missing, corrupt, unknown architecture

Apart from the tree, `StopRequested` (a `KeyboardInterrupt`) is raised at a safe point when a
stop was asked for (SIGTERM, Ctrl-C): the work in hand stays resumable and the next run resumes it.

Every message says what happened and to what; `hint` says what to do next. The CLI turns these
into a one-screen message (a traceback only with `--debug`). A failure that concerns one model is
never raised past the loop that handles that model: it becomes a row with a status and a reason.

`hub_unreachable` is the one place that recognises a Hub that cannot be reached (a transport
failure of huggingface_hub's HTTP client, or its offline mode) in whatever error a library raised,
and says it as a `HubUnavailableError`.
"""

from __future__ import annotations

import sys
from typing import Any


class AuditorError(Exception):
    """Base class: `str(err)` is the message; `hint` is the next step for the user."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def __reduce__(self) -> tuple[Any, ...]:
        # An error raised in an audit's worker process reaches the parent pickled
        # (`auditor.audit.worker`). Exception's own reduce passes `args` alone to the class, which
        # would drop the keyword-only `hint` and `code`; these go back in through `__dict__`.
        return (_rebuild, (type(self), str(self), self.__dict__))


class ConfigError(AuditorError):
    exit_code = 2


class StoreError(AuditorError):
    pass


class StoreVersionError(StoreError):
    pass


class StoreFormatError(StoreError):
    pass


class StoreBusyError(StoreError):
    pass


class HubError(AuditorError):
    pass


class HubUnavailableError(HubError):
    pass


class CrawlError(AuditorError):
    pass


class BatteryError(AuditorError):
    """A battery is unknown, or its RealToxicityPrompts-format dataset cannot be read (`auditor.audit.battery`)."""


class ScorerError(AuditorError):
    """A scorer is unknown, or its checkpoint is missing or cannot be loaded (`auditor.audit.scoring`)."""


class CycleBusyError(AuditorError):
    """Another cycle or daemon holds the lock beside this store (`schedules.lock`)."""

    exit_code = 3


def hub_unreachable(err: BaseException) -> HubUnavailableError | None:
    """`err` as a HubUnavailableError when it, or an error it was raised from, says the Hub could not
    be reached; None otherwise.

    Two kinds say so. A transport error of httpx2, huggingface_hub 2.x's HTTP client (its
    `TransportError` covers refused and dropped connections, DNS and TLS failures, timeouts and
    proxies: httpx2/_exceptions.py, the hierarchy in the module docstring), which huggingface_hub's
    backoff raises once its retries of network errors and timeouts are spent (utils/_http.py
    `_DEFAULT_RETRY_ON_EXCEPTIONS`). And huggingface_hub's `OfflineModeIsEnabled`, raised for every
    request while `HF_HUB_OFFLINE` is set (utils/_http.py `hf_request_event_hook`). Neither module is
    imported here: an error of theirs can only exist once they are.

    >>> hub_unreachable(ValueError("no")) is None
    True
    """
    httpx2 = sys.modules.get("httpx2")
    hub_errors = sys.modules.get("huggingface_hub.errors")
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if hub_errors is not None and isinstance(current, hub_errors.OfflineModeIsEnabled):
            return HubUnavailableError(
                f"HF_HUB_OFFLINE is set, so no request may reach the Hub ({_one_line(current)})",
                hint="unset HF_HUB_OFFLINE to reach the Hub; `auditor demo` and `auditor crawl --sim` need no network",
            )
        if httpx2 is not None and isinstance(current, httpx2.TransportError):
            return HubUnavailableError(
                f"cannot reach the Hub at {_origin(current)}: {type(current).__name__}: {_one_line(current)}",
                hint="check the network and the endpoint (HF_ENDPOINT or [hub] endpoint), then run the same"
                " command again; a crawl or an audit resumes where it stopped",
            )
        current = current.__cause__ or current.__context__
    return None


def _origin(err: BaseException) -> str:
    """`scheme://host:port` of the request an httpx2 error is about (its `request` property raises
    RuntimeError when the error was made without one)."""
    try:
        url = err.request.url  # type: ignore[attr-defined]
    except (AttributeError, RuntimeError):
        return "the configured endpoint"
    return f"{url.scheme}://{url.netloc.decode('ascii', 'replace')}"


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


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


#: Codes of an audit whose worker process did not come back (`auditor.audit.worker`): it crashed
#: (a signal, a panic that killed it, an exit), ran past `[audit] max_minutes`, or past
#: `[audit] max_memory_gb`. A commit that ended so twice is not tried again (a poison repo).
WORKER_FAILURES = ("crashed", "timeout", "memory")


def _rebuild(cls: type[AuditorError], message: str, state: dict[str, Any]) -> AuditorError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


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
        "missing_weights",
        "config_mismatch",
    }
)


class StopRequested(KeyboardInterrupt):
    """A stop was asked for (SIGTERM or Ctrl-C) and the work stopped at a safe point.

    A `KeyboardInterrupt`, so that nothing that handles one model's failure swallows it: the
    interrupted crawl or audit is left resumable, exactly as after Ctrl-C.
    """
