"""The cycle lock: one nightly cycle at a time, and a dead cycle's lock taken over.

The lock is a file beside the store (`<store>.lock`) held with an exclusive `flock` for as long as
the cycle runs, with the holder's PID and start time written in it. The kernel releases a flock
when its process dies, however it dies, so a lock left by a killed cycle is free; the file it left
says who held it, and the next cycle reports that it took over.
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

from auditor.errors import AuditorError


class CycleBusyError(AuditorError):
    exit_code = 3


@dataclass(frozen=True)
class Previous:
    """What the lock file said when it was taken: a cycle that ended, or one that died."""

    pid: int | None
    started_at: float | None
    finished: bool


class CycleLock:
    """`with CycleLock(path): ...` runs the body alone, or raises CycleBusyError at once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: IO[str] | None = None
        self.previous: Previous | None = None

    def __enter__(self) -> CycleLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = _read(handle.read())
            handle.close()
            raise CycleBusyError(
                f"another cycle is running (pid {holder.get('pid', '?')}, lock {self.path})",
                hint="wait for it to finish; a cycle that died leaves the lock free for the next one",
            ) from None
        handle.seek(0)
        old = _read(handle.read())
        self.previous = Previous(old.get("pid"), old.get("started_at"), bool(old.get("finished"))) if old else None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "started_at": time.time(), "finished": False}))
        handle.flush()
        self._handle = handle
        return self

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


def _read(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text) if text.strip() else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
