"""Middleware: each stack keeps the storage contract, and each layer does what it promises."""

from __future__ import annotations

import logging
import random
import tempfile
import threading
import time

import pytest

from backends.base import Capabilities, PutMode
from backends.errors import (
    AlreadyExists,
    AuthError,
    BackendError,
    InvalidKey,
    InvalidRange,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    TransientError,
)
from backends.memory import MemoryBackend
from backends.middleware import (
    Accounting,
    AccountingBackend,
    BandwidthLimitBackend,
    BandwidthLimiter,
    ConnectionLimitBackend,
    FaultyBackend,
    Middleware,
    ReadOnlyBackend,
    RetryBackend,
    Rule,
    compose,
)
from backends.middleware.faulty import Injection
from backends.middleware.limits import SLICE
from tests.backends.conformance import Conformance

MiB = 1 << 20


class FakeTime:
    """A clock that moves only when something sleeps, so timing tests are instant and exact."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.on_sleep = None

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep is not None:
            self.on_sleep()


def fast_limiter() -> BandwidthLimiter:
    return BandwidthLimiter(1 << 40)  # real limiter code path, no measurable wait


# -- every stack passes the conformance suite ------------------------------------------------

STACKS = {
    "retry": lambda: RetryBackend(MemoryBackend()),
    "connection-limit": lambda: ConnectionLimitBackend(MemoryBackend(), 2),
    "bandwidth": lambda: BandwidthLimitBackend(MemoryBackend(), fast_limiter(), fast_limiter()),
    "accounting": lambda: AccountingBackend(MemoryBackend()),
    "faulty-empty-plan-under-retry": lambda: RetryBackend(FaultyBackend(MemoryBackend(), [])),
    "compose-default": lambda: compose(MemoryBackend()),
    "compose-full": lambda: compose(MemoryBackend(), max_connections=3, upload_limiter=fast_limiter(),
                                    download_limiter=fast_limiter(), accounting=Accounting()),
}


class TestMiddlewareConformance(Conformance):
    large_object_size = 1 << 20

    @pytest.fixture(params=sorted(STACKS))
    def backend(self, request):
        return STACKS[request.param]()

    @pytest.fixture
    def leave_leftover(self, backend):
        """Left in the memory backend under the stack: every layer must pass the calls through."""
        while isinstance(backend, Middleware):
            backend = backend.inner
        return backend.interrupted_put


# -- retry -----------------------------------------------------------------------------------

def retrying(plan, fake: FakeTime, **kwargs):
    """Retry over accounting (which counts the attempts that reach storage) over faults."""
    memory = MemoryBackend()
    faulty = FaultyBackend(memory, plan)
    counted = AccountingBackend(faulty)
    kwargs.setdefault("rng", random.Random(7))
    retry = RetryBackend(counted, sleep=fake.sleep, clock=fake.clock, **kwargs)
    return retry, counted, faulty, memory


def test_retry_succeeds_after_transient_faults():
    fake = FakeTime()
    retry, counted, faulty, memory = retrying([Rule("get", key="^obj$", times=3)], fake)
    memory.put("obj", b"payload")
    assert retry.get("obj") == b"payload"
    assert counted.snapshot().operations["get"] == 4
    assert len(fake.sleeps) == 3 and retry.retries == 3
    assert faulty.log == [Injection("get", "obj", "transient")] * 3


def test_retry_backoff_is_capped_full_jitter():
    fake = FakeTime()
    retry, *_ = retrying([Rule("head", times=-1)], fake, max_attempts=12, base_delay=0.5, max_delay=4,
                         deadline=10_000)
    with pytest.raises(TransientError):
        retry.head("x")
    assert len(fake.sleeps) == 11
    for n, delay in enumerate(fake.sleeps, start=1):
        assert 0 <= delay <= min(4, 0.5 * 2 ** (n - 1))
    assert len(set(fake.sleeps)) == len(fake.sleeps)  # jittered, not a fixed schedule


def test_retry_stops_after_max_attempts():
    fake = FakeTime()
    retry, counted, *_ = retrying([Rule("put", times=-1)], fake, max_attempts=4)
    with pytest.raises(TransientError, match=r"gave up after 4 attempts over \d+\.\ds"):
        retry.put("k", b"v")
    assert counted.snapshot().operations["put"] == 4
    assert len(fake.sleeps) == 3


def test_retry_respects_deadline():
    fake = FakeTime()
    retry, counted, *_ = retrying([Rule("get", times=-1)], fake, max_attempts=1000, base_delay=1,
                                  max_delay=10, deadline=60)
    with pytest.raises(TransientError, match="gave up after") as info:
        retry.get("k")
    attempts = counted.snapshot().operations["get"]
    assert 5 < attempts < 1000
    assert f"after {attempts} attempts" in str(info.value)
    assert fake.now <= 60
    assert isinstance(info.value.__cause__, TransientError)


def test_retry_counts_time_spent_in_attempts_against_deadline():
    fake = FakeTime()
    # each attempt takes 20 s (a timeout) and then fails: the 60 s deadline allows only three
    retry, counted, *_ = retrying([Rule("get", times=-1)], fake, max_attempts=100, base_delay=0.001,
                                  deadline=60)

    class Slow(Middleware):
        def get(self, key, *, offset=0, length=None):
            fake.now += 20
            return self.inner.get(key, offset=offset, length=length)

    counted.inner = Slow(counted.inner)
    with pytest.raises(TransientError, match="after 3 attempts"):
        retry.get("k")


def test_retry_honours_retry_after():
    fake = FakeTime()
    retry, counted, faulty, memory = retrying([Rule("head", times=2, retry_after=7.5)], fake, base_delay=0.01)
    memory.put("h", b"abc")
    assert retry.head("h").size == 3
    assert fake.sleeps == [7.5, 7.5]


def test_retry_after_beyond_deadline_gives_up_at_once():
    fake = FakeTime()
    retry, counted, *_ = retrying([Rule("head", times=-1, retry_after=120)], fake, deadline=60)
    with pytest.raises(TransientError, match="after 1 attempt ") as info:
        retry.head("h")
    assert info.value.retry_after == 120
    assert fake.sleeps == [] and counted.snapshot().operations["head"] == 1


@pytest.mark.parametrize("error", [AuthError("expired"), PermissionDenied("no"), QuotaExceeded("full"),
                                   AlreadyExists("k"), InvalidRange("past end"), BackendError("boom"),
                                   NotFound("k")])
def test_retry_never_retries_permanent_errors(error):
    fake = FakeTime()
    retry, counted, *_ = retrying([Rule("get", action="raise", error=error, times=-1)], fake)
    with pytest.raises(type(error)):
        retry.get("k")
    assert counted.snapshot().operations["get"] == 1
    assert fake.sleeps == [] and retry.retries == 0


def test_retry_does_not_retry_real_not_found():
    fake = FakeTime()
    retry, counted, *_ = retrying([], fake)
    with pytest.raises(NotFound):
        retry.get("missing")
    with pytest.raises(NotFound):
        retry.head("missing")
    assert counted.snapshot().operations["get"] == 1 and counted.snapshot().operations["head"] == 1
    assert fake.sleeps == []


def test_create_with_lost_response_resolves_to_success():
    fake = FakeTime()
    retry, counted, faulty, memory = retrying([Rule("put", action="transient_after_write")], fake)
    retry.put("data/ab/chunk", b"chunk bytes", mode=PutMode.CREATE)
    assert memory.get("data/ab/chunk") == b"chunk bytes"
    assert faulty.log == [Injection("put", "data/ab/chunk", "transient_after_write")]
    assert counted.snapshot().operations["put"] == 2
    assert counted.snapshot().errors == {"TransientError": 1, "AlreadyExists": 1}


def test_create_retry_finding_other_data_raises_already_exists():
    fake = FakeTime()
    retry, counted, faulty, memory = retrying([Rule("put", action="transient")], fake)
    fake.on_sleep = lambda: memory.put("k", b"someone else's")  # a concurrent writer wins meanwhile
    with pytest.raises(AlreadyExists):
        retry.put("k", b"mine", mode=PutMode.CREATE)
    assert memory.get("k") == b"someone else's"


def test_create_retry_same_size_other_bytes_raises_already_exists():
    fake = FakeTime()
    retry, counted, faulty, memory = retrying([Rule("put", action="transient")], fake)
    fake.on_sleep = lambda: memory.put("k", b"MINE")
    with pytest.raises(AlreadyExists):
        retry.put("k", b"mine", mode=PutMode.CREATE)
    assert counted.snapshot().operations["get"] == 1  # sizes matched, so the bytes were compared


def test_create_first_attempt_already_exists_is_not_compared():
    fake = FakeTime()
    retry, counted, faulty, memory = retrying([], fake)
    memory.put("k", b"same")
    with pytest.raises(AlreadyExists):
        retry.put("k", b"same", mode=PutMode.CREATE)
    stats = counted.snapshot()
    assert stats.operations["head"] == 0 and stats.operations["get"] == 0


def test_retry_logs_operation_key_attempt_delay_but_never_data(caplog):
    fake = FakeTime()
    retry, *_ = retrying([Rule("put", times=1)], fake, logger=logging.getLogger("test.retry"))
    with caplog.at_level(logging.WARNING, logger="test.retry"):
        retry.put("index/seg-1", b"top-secret-payload")
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert "put" in message and "index/seg-1" in message and "attempt 1/8" in message
    assert f"{fake.sleeps[0]:.2f}s" in message
    assert "top-secret-payload" not in message


def _populate(backend, n: int) -> list[str]:
    keys = [f"many/{i:04d}" for i in range(n)]
    for key in keys:
        backend.put(key, b"x")
    return keys


def test_list_retries_failure_before_first_entry():
    fake = FakeTime()
    retry, counted, faulty, memory = retrying([Rule("list", after=0, times=2)], fake)
    keys = _populate(memory, 10)
    assert [i.key for i in retry.list("many/")] == keys
    assert counted.snapshot().operations["list"] == 3 and len(fake.sleeps) == 2


def test_list_restarts_mid_listing_without_duplicates():
    fake = FakeTime()
    plan = [Rule("list", after=37, times=1), Rule("list", after=80, times=1), Rule("list", after=10, times=1)]
    retry, counted, faulty, memory = retrying(plan, fake)
    keys = _populate(memory, 120)
    assert [i.key for i in retry.list("many/")] == keys
    assert len(faulty.log) == 3 and counted.snapshot().operations["list"] == 4


class Shuffled(Middleware):
    """Lists in a different order on every call, as some providers do."""

    def __init__(self, inner, seed: int) -> None:
        super().__init__(inner)
        self._rng = random.Random(seed)

    def list(self, prefix=""):
        items = list(self.inner.list(prefix))
        self._rng.shuffle(items)
        return iter(items)


def test_list_restart_is_correct_when_order_changes():
    fake = FakeTime()
    memory = MemoryBackend()
    keys = _populate(memory, 100)
    faulty = FaultyBackend(Shuffled(memory, seed=3), [Rule("list", after=30), Rule("list", after=60)])
    retry = RetryBackend(faulty, sleep=fake.sleep, clock=fake.clock)
    listed = [i.key for i in retry.list("many/")]
    assert len(listed) == len(set(listed)) == 100
    assert sorted(listed) == keys


def test_list_gives_up_without_progress():
    fake = FakeTime()
    retry, counted, faulty, memory = retrying([Rule("list", times=-1)], fake, max_attempts=3)
    _populate(memory, 5)
    with pytest.raises(TransientError, match="after 3 attempts"):
        list(retry.list("many/"))
    assert counted.snapshot().operations["list"] == 3


# -- connection limit ------------------------------------------------------------------------

class Concurrency(Middleware):
    """Records the most calls ever in flight at once."""

    def __init__(self, inner) -> None:
        super().__init__(inner)
        self._lock = threading.Lock()
        self.current = self.peak = 0

    def _enter(self):
        with self._lock:
            self.current += 1
            self.peak = max(self.peak, self.current)
        time.sleep(0.002)

    def _leave(self):
        with self._lock:
            self.current -= 1

    def put(self, key, data, **kw):
        self._enter()
        try:
            return self.inner.put(key, data, **kw)
        finally:
            self._leave()

    def get(self, key, **kw):
        self._enter()
        try:
            return self.inner.get(key, **kw)
        finally:
            self._leave()


def test_connection_limit_is_never_exceeded():
    probe = Concurrency(MemoryBackend())
    limited = ConnectionLimitBackend(probe, 3)
    errors = []

    def work(n):
        try:
            for i in range(10):
                limited.put(f"c/{n}-{i}", b"x")
                assert limited.get(f"c/{n}-{i}") == b"x"
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert probe.peak == 3  # reached, never exceeded
    assert limited.capabilities.max_connections == 3
    assert ConnectionLimitBackend(MemoryBackend(), 100).capabilities.max_connections == 16


def test_paused_listing_does_not_hold_a_connection():
    memory = MemoryBackend()
    _populate(memory, 5)
    limited = ConnectionLimitBackend(memory, 1)
    listing = limited.list("many/")
    assert next(listing).key == "many/0000"
    done = threading.Event()
    thread = threading.Thread(target=lambda: (limited.put("other", b"y"), done.set()), daemon=True)
    thread.start()
    assert done.wait(2), "a paused listing kept the only connection slot"
    assert [i.key for i in listing] == [f"many/{i:04d}" for i in range(1, 5)]


def test_connection_limit_list_yields_entries_before_failure():
    memory = MemoryBackend()
    _populate(memory, 5)
    limited = ConnectionLimitBackend(FaultyBackend(memory, [Rule("list", after=3)]), 1)
    seen = []
    with pytest.raises(TransientError):
        for info in limited.list("many/"):
            seen.append(info.key)
    assert seen == ["many/0000", "many/0001", "many/0002"]
    limited.put("after", b"z")  # the slot was released


# -- bandwidth -------------------------------------------------------------------------------

def test_token_bucket_rate_with_fake_clock():
    fake = FakeTime()
    limiter = BandwidthLimiter(10 * MiB, burst=SLICE, clock=fake.clock, sleep=fake.sleep)
    total = 100 * MiB
    for _ in range(total // SLICE):
        limiter.consume(SLICE)
    expected = (total - SLICE) / (10 * MiB)
    assert fake.now == pytest.approx(expected, rel=0.01)


def test_token_bucket_large_request_and_burst():
    fake = FakeTime()
    limiter = BandwidthLimiter(MiB, burst=MiB, clock=fake.clock, sleep=fake.sleep)
    limiter.consume(MiB)  # the full bucket passes at once
    assert fake.sleeps == []
    limiter.consume(3 * MiB)  # larger than the burst: owed, then paid by waiting
    assert fake.now == pytest.approx(3.0, rel=0.01)
    fake.now += 100  # idle time refills only up to the burst
    limiter.consume(2 * MiB)
    assert fake.now - 103 == pytest.approx(1.0, rel=0.01)


def test_token_bucket_rate_change_and_unlimited():
    fake = FakeTime()
    limiter = BandwidthLimiter(MiB, burst=SLICE, clock=fake.clock, sleep=fake.sleep)
    for _ in range(16):
        limiter.consume(SLICE)
    first = fake.now
    assert first == pytest.approx(15 * SLICE / MiB, rel=0.01)
    limiter.rate = 4 * MiB
    for _ in range(64):
        limiter.consume(SLICE)
    assert fake.now - first == pytest.approx(64 * SLICE / (4 * MiB), rel=0.01)
    limiter.rate = None
    before = len(fake.sleeps)
    for _ in range(1000):
        limiter.consume(MiB)
    assert len(fake.sleeps) == before
    with pytest.raises(ValueError):
        limiter.rate = 0


class RecordingLimiter(BandwidthLimiter):
    def __init__(self) -> None:
        super().__init__(None)
        self.charges: list[int] = []

    def consume(self, n: int) -> None:
        self.charges.append(n)


def test_bandwidth_backend_charges_puts_up_and_gets_down_in_slices():
    up, down = RecordingLimiter(), RecordingLimiter()
    backend = BandwidthLimitBackend(MemoryBackend(), up, down)
    backend.put("k", bytes(3 * SLICE + 100))
    assert up.charges == [SLICE, SLICE, SLICE, 100] and down.charges == []
    assert len(backend.get("k", offset=10, length=SLICE + 5)) == SLICE + 5
    assert down.charges == [SLICE, 5]
    backend.head("k")
    list(backend.list())
    assert len(up.charges) == 4 and len(down.charges) == 2


def test_spooled_puts_are_charged_and_counted_by_their_size():
    """Packs arrive through put_file: the upload limit and the byte counts must see them too."""
    up = RecordingLimiter()
    acct = AccountingBackend(BandwidthLimitBackend(MemoryBackend(), up, None))
    with tempfile.TemporaryFile() as f:
        f.write(bytes(2 * SLICE + 7) + b"not stored")
        f.flush()
        acct.put_file("pack", f, 2 * SLICE + 7, mode=PutMode.CREATE)
    assert up.charges == [SLICE, SLICE, 7]
    assert acct.snapshot().bytes_up == 2 * SLICE + 7 and acct.get("pack") == bytes(2 * SLICE + 7)
    with pytest.raises(PermissionDenied), tempfile.TemporaryFile() as f:
        ReadOnlyBackend(MemoryBackend()).put_file("x", f, 0)


def test_bandwidth_real_time_shared_by_threads():
    limiter = BandwidthLimiter(2 * MiB, burst=SLICE)
    backend = BandwidthLimitBackend(MemoryBackend(), upload=limiter)
    threads = [threading.Thread(target=backend.put, args=(f"t/{n}", bytes(MiB))) for n in range(4)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    assert 1.6 <= elapsed <= 2.6
    assert len(list(backend.list("t/"))) == 4


# -- accounting ------------------------------------------------------------------------------

def test_accounting_counts_operations_bytes_and_errors():
    acct = AccountingBackend(MemoryBackend())
    acct.put("a", b"12345")
    acct.put("b", memoryview(b"xyz"))
    assert acct.get("a") == b"12345"
    assert acct.get("a", offset=1, length=2) == b"23"
    acct.head("b")
    assert len(list(acct.list(""))) == 2
    acct.delete("b")
    with pytest.raises(NotFound):
        acct.get("b")
    with pytest.raises(AlreadyExists):
        acct.put("a", b"again", mode=PutMode.CREATE)
    with pytest.raises(InvalidKey):
        acct.head("BAD")
    stats = acct.snapshot()
    assert dict(stats.operations) == {"put": 3, "get": 3, "head": 2, "list": 1, "delete": 1}
    assert stats.bytes_up == 8 and stats.bytes_down == 7 and stats.objects_listed == 2
    assert dict(stats.errors) == {"NotFound": 1, "AlreadyExists": 1, "InvalidKey": 1}
    assert stats.total_operations == 10 and stats.total_errors == 3
    with pytest.raises(TypeError):
        stats.operations["put"] = 0  # a snapshot cannot be altered
    acct.put("c", b"")
    assert stats.operations["put"] == 3 and acct.snapshot().operations["put"] == 4


def test_accounting_is_thread_safe():
    shared = Accounting()
    backends = [AccountingBackend(MemoryBackend(), shared) for _ in range(2)]

    def work(n):
        for i in range(200):
            backends[n % 2].put(f"k/{n}-{i}", b"ab")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats = shared.snapshot()
    assert stats.operations["put"] == 1600 and stats.bytes_up == 3200


def test_compose_accounting_counts_logical_operations_once():
    fake = FakeTime()
    memory = MemoryBackend()
    memory.put("k", b"abc")
    faulty = FaultyBackend(memory, [Rule("get", times=2)])
    acct = Accounting()
    backend = compose(faulty, accounting=acct, retry={"sleep": fake.sleep, "clock": fake.clock})
    assert backend.get("k") == b"abc"
    stats = acct.snapshot()
    assert stats.operations["get"] == 1 and stats.bytes_down == 3 and stats.errors == {}
    assert len(faulty.log) == 2


# -- read-only -------------------------------------------------------------------------------

def test_read_only_refuses_writes_and_passes_reads():
    memory = MemoryBackend()
    memory.put("snapshots/1", b"snap")
    ro = ReadOnlyBackend(memory)
    with pytest.raises(PermissionDenied, match="read-only"):
        ro.put("snapshots/2", b"new")
    with pytest.raises(PermissionDenied, match="read-only"):
        ro.put("snapshots/1", b"overwrite", mode=PutMode.OVERWRITE)
    with pytest.raises(PermissionDenied, match="read-only"):
        ro.delete("snapshots/1")
    with pytest.raises(InvalidKey):
        ro.put("../escape", b"x")
    assert ro.get("snapshots/1") == b"snap"
    assert ro.get("snapshots/1", offset=1, length=2) == b"na"
    assert ro.head("snapshots/1").size == 4
    assert [i.key for i in ro.list("")] == ["snapshots/1"]
    with pytest.raises(NotFound):
        ro.get("snapshots/2")
    assert ro.location == "memory://memory"


def test_compose_read_only_refuses_before_counting():
    memory = MemoryBackend()
    acct = Accounting()
    backend = compose(memory, read_only=True, accounting=acct)
    with pytest.raises(PermissionDenied):
        backend.put("k", b"v")
    assert list(memory.list()) == []
    assert acct.snapshot().total_operations == 0


# -- leftovers of interrupted writes -----------------------------------------------------------

class FlakyLeftovers(Middleware):
    """The first call of each leftover operation fails, as over a connection that was reset."""

    def __init__(self, inner) -> None:
        super().__init__(inner)
        self.calls = {"list": 0, "remove": 0}

    def list_leftovers(self, older_than):
        self.calls["list"] += 1
        if self.calls["list"] == 1:
            raise TransientError("connection reset")
        return self.inner.list_leftovers(older_than)

    def remove_leftover(self, leftover):
        self.calls["remove"] += 1
        if self.calls["remove"] == 1:
            raise TransientError("connection reset")
        self.inner.remove_leftover(leftover)


def test_leftover_calls_are_retried_and_counted():
    fake = FakeTime()
    memory = MemoryBackend()
    memory.interrupted_put("data/ab/x", b"partial")
    flaky = FlakyLeftovers(memory)
    acct = Accounting()
    stack = AccountingBackend(RetryBackend(flaky, sleep=fake.sleep, clock=fake.clock, rng=random.Random(1)), acct)
    [found] = stack.list_leftovers(0)
    stack.remove_leftover(found)
    assert memory.list_leftovers(0) == []
    assert flaky.calls == {"list": 2, "remove": 2} and len(fake.sleeps) == 2
    stats = acct.snapshot()
    assert stats.operations["list"] == 1 and stats.operations["delete"] == 1 and stats.objects_listed == 1


def test_read_only_lists_leftovers_but_refuses_to_remove_them():
    memory = MemoryBackend()
    memory.interrupted_put("data/ab/x", b"partial")
    ro = compose(memory, read_only=True)
    [found] = ro.list_leftovers(0)
    with pytest.raises(PermissionDenied, match="read-only"):
        ro.remove_leftover(found)
    assert [f.ref for f in memory.list_leftovers(0)] == [found.ref]


# -- faulty ----------------------------------------------------------------------------------

def test_faulty_actions():
    fake = FakeTime()
    memory = MemoryBackend()
    payload = bytes(range(100))
    memory.put("data/x", payload)
    faulty = FaultyBackend(memory, [
        {"operation": "get", "key": "^data/", "action": "corrupt"},
        {"operation": "get", "key": "^data/", "action": "truncate"},
        {"operation": "get", "key": "^data/", "action": "not_found"},
        {"operation": "head", "action": "permanent"},
        {"operation": "delete", "action": "delay", "seconds": 3},
        {"operation": "put", "action": "transient", "retry_after": 2.5},
    ], sleep=fake.sleep)
    corrupted = faulty.get("data/x")
    assert len(corrupted) == 100 and sum(a != b for a, b in zip(corrupted, payload)) == 1
    assert faulty.get("data/x") == payload[:50]
    with pytest.raises(NotFound):
        faulty.get("data/x")
    assert faulty.get("data/x") == payload  # rules used up
    with pytest.raises(BackendError) as info:
        faulty.head("data/x")
    assert not isinstance(info.value, TransientError)
    faulty.delete("nothing")
    assert fake.sleeps == [3]
    with pytest.raises(TransientError) as transient:
        faulty.put("k", b"v")
    assert transient.value.retry_after == 2.5
    assert list(memory.list("k")) == []  # a plain transient fault happens before the write
    assert [i.action for i in faulty.log] == ["corrupt", "truncate", "not_found", "permanent", "delay",
                                              "transient"]


def test_faulty_transient_after_write_and_always():
    memory = MemoryBackend()
    faulty = FaultyBackend(memory, [Rule("put", action="transient_after_write", key="^w$"),
                                    Rule("head", key="flaky", times=-1)])
    with pytest.raises(TransientError):
        faulty.put("w", b"written")
    assert memory.get("w") == b"written"
    faulty.put("w", b"again")  # used up
    for _ in range(5):
        with pytest.raises(TransientError):
            faulty.head("a/flaky/b")
    with pytest.raises(NotFound):
        faulty.head("a/solid")
    assert len(faulty.log) == 6


def test_faulty_plan_is_validated_and_not_mutated():
    rule = Rule("get", times=2)
    faulty = FaultyBackend(MemoryBackend(), [rule])
    faulty.inner.put("k", b"v")
    for _ in range(2):
        with pytest.raises(TransientError):
            faulty.get("k")
    assert rule.times == 2
    with pytest.raises(ValueError):
        Rule("get", action="explode")
    with pytest.raises(ValueError):
        Rule("put", action="corrupt")
    with pytest.raises(ValueError):
        Rule("get", action="raise")


def test_faulty_is_thread_safe():
    memory = MemoryBackend()
    memory.put("k", b"v")
    faulty = FaultyBackend(memory, [Rule("get", times=50)])
    failures = []

    def work():
        for _ in range(40):
            try:
                faulty.get("k")
            except TransientError:
                failures.append(1)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(failures) == 50 and len(faulty.log) == 50


# -- compose ---------------------------------------------------------------------------------

def test_compose_order_and_delegation():
    memory = MemoryBackend("m")
    backend = compose(memory, read_only=True, accounting=Accounting(), max_connections=2,
                      upload_limiter=fast_limiter(), download_limiter=None)
    layers = []
    layer = backend
    while isinstance(layer, Middleware):
        layers.append(type(layer))
        layer = layer.inner
    assert layers == [ReadOnlyBackend, AccountingBackend, RetryBackend, BandwidthLimitBackend,
                      ConnectionLimitBackend]
    assert layer is memory
    assert backend.location == "memory://m"
    assert backend.capabilities == Capabilities(max_connections=2)


def test_compose_minimal_and_default_connection_limit():
    memory = MemoryBackend()
    backend = compose(memory, retry=False)
    assert isinstance(backend, ConnectionLimitBackend) and backend.inner is memory
    assert backend.max_connections == memory.capabilities.max_connections


def test_close_reaches_the_backend():
    closed = []

    class Closing(MemoryBackend):
        def close(self):
            closed.append(True)

    with compose(Closing(), accounting=Accounting(), read_only=True):
        pass
    assert closed == [True]
