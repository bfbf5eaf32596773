"""A fault-injecting HTTP/1.1 reverse proxy for backend tests (asyncio, stdlib only).

It sits between a cloud SDK and a local server (moto_server, fake-gcs-server). It parses HTTP
framing (Content-Length and chunked bodies), so a fault hits one request even on a keep-alive
connection. Faults are chosen by a regex on "METHOD /path?query" and used up after `times` hits:

    with FaultProxy(upstream_port) as proxy:
        proxy.add(Fault("status", 503, S3_SLOWDOWN, match=r"^PUT /bkt/", times=2))
        ... point the SDK at proxy.url ...
        proxy.log  # [(request line, "pass" | fault kind), ...]

Besides faults, `rate` caps the bytes per second relayed in each direction (shared by every
connection, like one link), and the proxy counts the requests it holds at once (`in_flight`,
`max_in_flight`), so a test can see how many requests a client keeps in flight.

Kinds: "status" answers with a canned response without forwarding; "reset" drops the client
connection with a TCP RST before forwarding; "delay" sleeps, then forwards; "cut_response"
forwards, relays half of the response, then resets; "lose_response" forwards (the server acts
on the request) and resets without relaying any of the reply.

botocore sends `Expect: 100-continue` on PUTs: the proxy answers 100 itself and strips the
header upstream, otherwise the client would wait for a 100 that the canned faults never send.
"""

from __future__ import annotations

import asyncio
import re
import socket
import struct
import threading
from dataclasses import dataclass

S3_SLOWDOWN = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
               b"<Message>Please reduce your request rate.</Message></Error>")
S3_INTERNAL = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code>'
               b"<Message>We encountered an internal error. Please try again.</Message></Error>")


def gcs_error(code: int, message: str) -> bytes:
    """A JSON error body in the shape the GCS JSON API returns."""
    return (f'{{"error": {{"code": {code}, "message": "{message}", '
            f'"errors": [{{"message": "{message}", "reason": "injected"}}]}}}}').encode()


@dataclass
class Fault:
    kind: str  # "status" | "reset" | "delay" | "cut_response" | "lose_response"
    status: int = 503
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    seconds: float = 0.0
    match: str = ""  # regex searched in "METHOD /path?query"; empty matches every request
    times: int = 1  # how many matching requests it hits
    content_type: str = "application/xml"


async def _read_head(reader: asyncio.StreamReader) -> tuple[bytes, str, dict[str, str]]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return head, lines[0], headers


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    """The raw body bytes as framed on the wire (chunk markers and trailers kept)."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        out = bytearray()
        while True:
            line = await reader.readuntil(b"\r\n")
            out += line
            size = int(line.split(b";")[0].strip(), 16)
            if size == 0:
                while True:  # trailers, then the blank line
                    trailer = await reader.readuntil(b"\r\n")
                    out += trailer
                    if trailer == b"\r\n":
                        return bytes(out)
            out += await reader.readexactly(size + 2)
    length = int(headers.get("content-length", "0") or 0)
    return await reader.readexactly(length) if length else b""


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with SO_LINGER 0, so the peer sees a TCP RST rather than an orderly FIN."""
    sock = writer.get_extra_info("socket")
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    writer.transport.abort()


class FaultProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self._plan: list[Fault] = []
        self.log: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self.port = 0
        self.rate = 0.0  # bytes per second per direction; 0: no cap
        self._next_free = {"up": 0.0, "down": 0.0}  # when each direction's link is free again (loop time)
        self.in_flight = 0
        self.max_in_flight = 0
        self.spans: list[tuple[str, float, float]] = []  # (request line, start, end) of relayed requests

    def most_at_once(self, pattern: str = "") -> int:
        """The most requests matching `pattern` that the proxy held at the same time."""
        with self._lock:
            spans = [(a, b) for line, a, b in self.spans if re.search(pattern, line)]
        events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
        most = now = 0
        for _, step in events:
            now += step
            most = max(most, now)
        return most

    def reset_counts(self) -> None:
        """Start counting requests in flight afresh."""
        with self._lock:
            self.max_in_flight = self.in_flight

    async def _paced(self, writer: asyncio.StreamWriter, data: bytes, direction: str) -> None:
        """Write `data`, no faster than `rate` together with the other connections' traffic that way."""
        if not self.rate:
            writer.write(data)
            await writer.drain()
            return
        loop = asyncio.get_running_loop()
        step = 64 << 10
        for pos in range(0, len(data), step):
            piece = data[pos:pos + step]
            start = max(loop.time(), self._next_free[direction])
            self._next_free[direction] = start + len(piece) / self.rate
            wait = self._next_free[direction] - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(piece)
            await writer.drain()

    def _count(self, delta: int) -> None:
        with self._lock:
            self.in_flight += delta
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, *faults: Fault) -> None:
        with self._lock:
            self._plan.extend(faults)

    def clear(self) -> None:
        with self._lock:
            self._plan.clear()
            self.log.clear()
            self.spans.clear()

    def requests(self, pattern: str = "") -> list[tuple[str, str]]:
        """Logged (request line, outcome) pairs whose request line matches `pattern`."""
        with self._lock:
            return [entry for entry in self.log if re.search(pattern, entry[0])]

    def _pick(self, request_line: str) -> Fault | None:
        with self._lock:
            chosen = None
            for fault in self._plan:
                if fault.times > 0 and re.search(fault.match, request_line):
                    fault.times -= 1
                    chosen = fault
                    break
            self.log.append((request_line, chosen.kind if chosen else "pass"))
            return chosen

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        up_r = up_w = None
        counted = False
        try:
            while True:
                try:
                    head, request_line, headers = await _read_head(client_r)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                if headers.get("expect", "").lower() == "100-continue":
                    client_w.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                    await client_w.drain()
                    head = re.sub(rb"(?im)^expect:[^\r\n]*\r\n", b"", head)
                body = await _read_body(client_r, headers)
                self._count(1)
                counted = True
                started = asyncio.get_running_loop().time()
                fault = self._pick(request_line)
                kind = fault.kind if fault else "pass"
                if kind == "reset":
                    _reset(client_w)
                    return
                if kind == "status":
                    extra = "".join(f"{k}: {v}\r\n" for k, v in fault.headers)
                    client_w.write(
                        f"HTTP/1.1 {fault.status} Injected\r\nContent-Length: {len(fault.body)}\r\n"
                        f"Content-Type: {fault.content_type}\r\n{extra}\r\n".encode() + fault.body)
                    await client_w.drain()
                    self._count(-1)
                    counted = False
                    continue
                if kind == "delay":
                    await asyncio.sleep(fault.seconds)
                if up_w is None:
                    up_r, up_w = await asyncio.open_connection(*self.upstream, limit=1 << 20)
                await self._paced(up_w, head + body, "up")
                while True:  # skip interim 1xx answers
                    resp_head, status_line, resp_headers = await _read_head(up_r)
                    code = int(status_line.split()[1])
                    if not 100 <= code < 200:
                        break
                if request_line.startswith("HEAD ") or code in (204, 304):
                    resp_body = b""
                elif "content-length" in resp_headers or "chunked" in resp_headers.get("transfer-encoding", ""):
                    resp_body = await _read_body(up_r, resp_headers)
                else:  # no framing: the body runs until upstream closes
                    resp_body = await up_r.read()
                    up_w.close()
                    up_r = up_w = None
                if kind == "lose_response":
                    _reset(client_w)
                    return
                if kind == "cut_response":
                    client_w.write(resp_head + resp_body[: len(resp_body) // 2])
                    await client_w.drain()
                    _reset(client_w)
                    return
                await self._paced(client_w, resp_head + resp_body, "down")
                self._count(-1)
                counted = False
                with self._lock:
                    self.spans.append((request_line, started, asyncio.get_running_loop().time()))
                if resp_headers.get("connection", "").lower() == "close":
                    return
        except (asyncio.CancelledError, ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            if counted:
                self._count(-1)
            for writer in (client_w, up_w):
                if writer is not None and not writer.is_closing():
                    writer.close()

    def start(self) -> FaultProxy:
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def boot() -> None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, limit=1 << 20)
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()

        def run() -> None:
            self._loop.run_until_complete(boot())
            self._loop.run_forever()
            self._loop.close()

        threading.Thread(target=run, name="fault-proxy", daemon=True).start()
        if not ready.wait(5):
            raise RuntimeError("fault proxy did not start")
        return self

    def stop(self) -> None:
        async def shutdown() -> None:
            self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
