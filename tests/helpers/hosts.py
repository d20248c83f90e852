"""Other hosts on loopback, besides the simulated Hub."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler
from typing import Any


class RecordingHandler(BaseHTTPRequestHandler):
    """A second host on loopback that notes every request and the Authorization it carried.

    Subclass it with a `seen` list of its own (the `other_host` fixture does).
    """

    seen: list[tuple[str, str | None]]

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("Authorization")))
        body = b"[]"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return
