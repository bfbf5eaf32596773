"""A real HTTP server on 127.0.0.1 that records every POST, for webhook notifications.

`statuses` scripts the answers: e.g. [500, 200] fails the first request and accepts the retry; the
last entry repeats, so [503] always fails. Used by the notification tests and end-to-end tests of
`agent run`.
"""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


@dataclass
class WebhookServer:
    url: str
    requests: list[Request] = field(default_factory=list)


@contextmanager
def webhook_server(statuses: list[int] | None = None, path: str = "/hook") -> Iterator[WebhookServer]:
    """Serve until the block ends; every request is recorded, answered from `statuses` (default 200)."""
    answers = list(statuses or [200])
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                record.requests.append(Request(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                status = answers.pop(0) if len(answers) > 1 else answers[0]
            payload = b'{"ok": true}' if status < 400 else b'{"error": "scripted failure"}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, fmt, *args) -> None:  # keep pytest output clean
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    record = WebhookServer(f"http://127.0.0.1:{httpd.server_address[1]}{path}")
    thread = threading.Thread(target=httpd.serve_forever, name="webhook-server", daemon=True)
    thread.start()
    try:
        yield record
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)
