"""The simulated Hub in a process of its own, as benchmarks, demos and end-to-end tests want it.

A separate process keeps the Hub's work off the crawler's interpreter (two cores, two GILs), and
lets a test kill the crawler without touching the Hub.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


@dataclass
class SimHubProcess:
    url: str
    process: subprocess.Popen[str]

    def admin(self, path: str, payload: Any = None) -> Any:
        """Call a `/_sim/` endpoint: GET without a payload, POST with one."""
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method="POST" if data is not None else "GET",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=600) as response:
            return json.loads(response.read())


@contextmanager
def simhub_process(world: str, *, port: int = 0) -> Iterator[SimHubProcess]:
    """Run `auditor sim serve --world WORLD` until the block ends; yields its URL and admin calls.

    >>> with simhub_process("size=2000,seed=1") as hub:        # doctest: +SKIP
    ...     print(hub.admin("/_sim/truth")["nodes"])
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "auditor", "sim", "serve", "--world", world, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        if not url.startswith("http"):
            process.wait(timeout=10)
            error = process.stderr.read() if process.stderr else ""
            raise RuntimeError(f"the simulated Hub did not start: {error.strip()[-500:]}")
        yield SimHubProcess(url=url, process=process)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
