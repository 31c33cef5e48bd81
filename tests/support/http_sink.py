"""An HTTP server on loopback that records what it is asked for: where tests send webhooks."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Sink:
    """Records the paths it is asked for, and their headers; answers a path in `redirects` with a
    302 to the URL given there, any other with 204."""

    url: str
    paths: list[str] = field(default_factory=list)
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)
    received: threading.Event = field(default_factory=threading.Event)


def serve_sink() -> Iterator[Sink]:
    """A `Sink` on a free loopback port while the generator is open (a fixture's body)."""
    sink = Sink("")

    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> None:
            sink.paths.append(self.path)
            sink.headers[self.path] = dict(self.headers.items())
            sink.received.set()
            location = sink.redirects.get(self.path)
            self.send_response(302 if location else 204)
            if location:
                self.send_header("Location", location)
            self.end_headers()

        do_GET = do_POST = _record  # noqa: N815 - http.server's names

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    sink.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, name="webhook-sink", daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
