"""One asyncio event loop in a background thread, for calling an async-only SDK from sync code.

msgraph-sdk is async-only and its httpx connection pool is bound to the loop that first used it,
so `asyncio.run()` per call breaks on the second call ("Event loop is closed"). One long-lived
loop owned by the backend fixes that, and `run_coroutine_threadsafe` makes the sync methods safe
to call from any number of threads at once: their requests interleave on the loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any, Coroutine, TypeVar

T = TypeVar("T")


class LoopThread:
    """Owns one event loop running forever in a daemon thread until `close()`."""

    def __init__(self, name: str = "agent-async") -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()
        self._closed = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run `coro` on the loop and wait for its result; its exception is raised here."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("LoopThread.run called from its own loop: this would deadlock")
        if self._closed:
            coro.close()
            raise RuntimeError("LoopThread is closed")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"async call did not finish within {timeout}s") from None
        except BaseException:
            future.cancel()  # e.g. KeyboardInterrupt in the caller: do not leave the request running
            raise

    def close(self, finalizer: Coroutine[Any, Any, Any] | None = None, timeout: float = 10) -> None:
        """Run `finalizer` (closing clients) on the loop, then stop the loop and join its thread."""
        if self._closed:
            if finalizer is not None:
                finalizer.close()
            return
        try:
            if finalizer is not None:
                self.run(finalizer, timeout)
        finally:
            self._closed = True
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
            if not self._thread.is_alive():
                self._loop.close()
