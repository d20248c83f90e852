"""One command's run: its config, resolved once, and its store, opened once.

`@configured(...)` gives a command `--config` (and `--store`) and hands it an `Invocation` in
place of those options and of the options that only set config keys. The invocation resolves the
config on first use, in the documented order (defaults < file < environment < flags), and keeps
it; `read_store()` and `write_store()` open the `[store]` it names. Reports open read-only, so a
wrong path is an error and never a new empty file; a writer the command created is deleted again
when the command fails before storing anything in it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from auditor.cli.options import config_option, store_option

if TYPE_CHECKING:
    from auditor.config import Config, ResolvedConfig
    from auditor.store import Store


class Invocation:
    """The config and store of one command, each made once, when the command first needs it.

    >>> inv = Invocation(None, {"store.path": "night.duckdb"})
    >>> inv.config.store.path.name
    'night.duckdb'
    """

    def __init__(self, config_path: Path | None, flags: Mapping[str, Any]) -> None:
        self.config_path = config_path
        self._flags = dict(flags)
        self._resolved: ResolvedConfig | None = None

    def add_flags(self, flags: Mapping[str, Any]) -> None:
        """Set more keys as flags (a command that learns them as it starts, like `crawl --sim`)."""
        if self._resolved is not None:
            raise RuntimeError("flags added after the config was resolved")
        self._flags.update(flags)

    @property
    def resolved(self) -> ResolvedConfig:
        """The resolved config and what was set explicitly, resolved on first use."""
        if self._resolved is None:
            from auditor.config import load_config

            self._resolved = load_config(self.config_path, flags=self._flags)
        return self._resolved

    @property
    def config(self) -> Config:
        return self.resolved.config

    @contextmanager
    def read_store(self) -> Iterator[Store]:
        """The store, read-only: it must exist, and a writer at work is waited for (store.read_wait_s)."""
        from auditor.store import Store

        with Store.open_configured(self.config.store, read_only=True) as store:
            yield store

    @contextmanager
    def write_store(self, *, remove_if_left_empty: bool = True) -> Iterator[Store]:
        """The store for writing, created and migrated as needed; with `remove_if_left_empty`, a
        store this opens new is deleted again if the block fails before storing anything."""
        from auditor.store import Store

        with (
            removed_if_left_empty(self.config.store.path) if remove_if_left_empty else nullcontext(),
            Store.open_configured(self.config.store) as store,
        ):
            yield store

    @contextmanager
    def store_removed_if_left_empty(self) -> Iterator[None]:
        """For a command whose library call opens the store itself: `removed_if_left_empty` on it."""
        with removed_if_left_empty(self.config.store.path):
            yield


def configured(
    flags: Mapping[str, str] | None = None, *, store: bool = True
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a command `--config` and (with `store`) `--store`, and call it with an `Invocation`
    as its first argument. `flags` maps config keys to the command's parameters that set them;
    those parameters reach the command only through the config. A parameter left unset, or a
    repeatable one given no value, sets nothing.

    >>> @click.command()                                                   # doctest: +SKIP
    ... @click.option("--cron", default=None, help="Cron expression (cycle.schedule).")
    ... @configured({"cycle.schedule": "cron"})
    ... def schedule(inv: Invocation) -> None:
    ...     click.echo(inv.config.cycle.schedule)
    """
    keys = dict(flags or {})

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(command)
        def invoke(*, config_path: Path | None, store_path: Path | None = None, **params: Any) -> None:
            given = {key: params.pop(name) for key, name in keys.items()}
            values = {key: None if value == () else value for key, value in given.items()}
            return command(Invocation(config_path, {"store.path": store_path, **values}), **params)

        return config_option(store_option(invoke) if store else invoke)

    return decorate


@contextmanager
def removed_if_left_empty(path: Path) -> Iterator[None]:
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
