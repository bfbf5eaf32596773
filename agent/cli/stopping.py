"""SIGTERM (systemd stopping the service, `kill`) ends a backup like a deadline: running uploads
finish, the index is saved, and the next run resumes. A second signal falls back to the default."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def graceful_stop() -> Iterator[threading.Event]:
    event = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield event
        return

    def handler(signum, frame) -> None:
        event.set()
        signal.signal(signum, signal.SIG_DFL)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield event
    finally:
        signal.signal(signal.SIGTERM, previous)
