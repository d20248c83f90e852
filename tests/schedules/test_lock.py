"""The cycle lock across real processes."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from schedules.lock import CycleBusyError, CycleLock

HOLD = (
    "import sys, time\nfrom pathlib import Path\nfrom schedules.lock import CycleLock\n"
    "with CycleLock(Path(sys.argv[1])):\n    print('held', flush=True)\n    time.sleep(60)\n"
)


def test_a_second_cycle_is_refused_while_the_first_runs(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "s.lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(CycleBusyError, match=f"pid {holder.pid}"), CycleLock(tmp_path / "s.lock"):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # Killed mid-cycle: the lock is free, and the next cycle knows it took over.
    with CycleLock(tmp_path / "s.lock") as lock:
        assert lock.took_over and lock.previous is not None and lock.previous.pid == holder.pid
    with CycleLock(tmp_path / "s.lock") as lock:
        assert not lock.took_over  # the last one finished
