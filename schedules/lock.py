"""The cycle lock: one nightly cycle at a time, and a dead cycle's lock taken over.

The lock is a file beside the store (`<store>.lock`) held with an exclusive `flock` for as long as
the cycle runs, with the holder's PID and start time written in it. The kernel releases a flock
when its process dies, however it dies, so a lock left by a killed cycle is free; the file it left
says who held it, and the next cycle reports that it took over.

The scheduler daemon holds a lock of the same kind (`<store>.daemon`) for its whole life, so that
one daemon serves a store, and writes its schedule and next run there for `auditor status`.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from auditor.errors import CycleBusyError  # defined in errors.py; still importable from here
from auditor.store.sidecars import sidecars


@dataclass(frozen=True)
class Previous:
    """What the lock file said when it was taken: a cycle that ended, or one that died."""

    pid: int | None
    started_at: float | None
    finished: bool


class CycleLock:
    """`with CycleLock(path): ...` runs the body alone, or raises CycleBusyError at once."""

    def __init__(self, path: Path, *, what: str = "cycle") -> None:
        self.path = path
        self.what = what
        self._handle: IO[str] | None = None
        self._info: dict[str, Any] = {}
        self.previous: Previous | None = None

    def __enter__(self) -> CycleLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")
        try:
            _lock_exclusive(handle.fileno())
        except BlockingIOError:
            handle.seek(0)
            holder = _read(handle.read())
            handle.close()
            raise CycleBusyError(
                f"another {self.what} is running (pid {holder.get('pid', '?')}, lock {self.path})",
                hint=f"wait for it to finish, or stop it; a {self.what} that died leaves the lock free",
            ) from None
        handle.seek(0)
        old = _read(handle.read())
        self.previous = Previous(old.get("pid"), old.get("started_at"), bool(old.get("finished"))) if old else None
        self._handle = handle
        self._info = {"pid": os.getpid(), "started_at": time.time(), "finished": False}
        self._write()
        return self

    def note(self, **info: Any) -> None:
        """Add facts for readers of the lock file (`holder`): JSON values only."""
        self._info.update(info)
        self._write()

    def _write(self) -> None:
        assert self._handle is not None
        self._handle.seek(0)
        self._handle.truncate()
        self._handle.write(json.dumps(self._info, default=str))
        self._handle.flush()

    @property
    def took_over(self) -> bool:
        """The previous holder never finished: it was killed, or the machine went down."""
        return self.previous is not None and not self.previous.finished

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        handle = self._handle
        if handle is None:
            return
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "started_at": None, "finished": True}))
        handle.flush()
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        handle.close()
        self._handle = None


def cycle_lock_path(store_path: Path) -> Path:
    """The cycle lock of the store at `store_path`."""
    return sidecars(store_path).cycle_lock


def daemon_lock_path(store_path: Path) -> Path:
    """The scheduler daemon's lock of the store at `store_path`."""
    return sidecars(store_path).daemon_lock


def _lock_exclusive(fd: int) -> None:
    """Take the lock, or raise BlockingIOError. `holder` (`auditor status`) takes a shared lock on
    it for an instant to see whether it is held: a short retry keeps that from turning a cycle away."""
    deadline = time.monotonic() + 0.5
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def holder(path: Path) -> dict[str, Any] | None:
    """What the live holder of the lock at `path` wrote in it; None when nobody holds it."""
    try:
        handle = open(path, encoding="utf-8")  # noqa: SIM115 (closed by the with below)
    except OSError:
        return None
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            for _ in range(5):  # the holder may be rewriting the file this very instant
                handle.seek(0)
                info = _read(handle.read())
                if info:
                    return info
                time.sleep(0.01)
            return {"pid": None}
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return None


def _read(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text) if text.strip() else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
