"""Inject storage faults from a small declarative plan (for tests).

Tests describe the failures they want ("the first two gets of data/ keys are throttled") and
read back what was injected, rather than hand-writing a failing backend per test.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from backends.base import Backend, Leftover, ObjectInfo, PutMode, read_spool
from backends.errors import BackendError, NotFound, TransientError
from backends.middleware.wrapper import Middleware

_EVERY = frozenset({"put", "get", "head", "list", "delete", "list_leftovers", "remove_leftover"})
ACTIONS: dict[str, frozenset[str]] = {  # action -> operations it applies to
    "transient": _EVERY,
    "transient_after_write": frozenset({"put", "delete"}),
    "not_found": frozenset({"get", "head"}),
    "corrupt": frozenset({"get"}),
    "truncate": frozenset({"get"}),
    "permanent": _EVERY,
    "raise": _EVERY,
    "delay": _EVERY,
}


@dataclass
class Rule:
    """One fault: `times` matching calls (-1: every one) of `operation` on keys matching `key`.

    `key` is a regular expression searched in the key (the prefix for list, "" for list_leftovers,
    the leftover's name for remove_leftover); anchor it with ^ and $ to match whole keys. For
    list, `after` entries are yielded before the fault.
    `raise` raises `error`; `delay` sleeps `seconds` and then performs the call normally.
    """

    operation: str
    action: str = "transient"
    key: str = ""
    times: int = 1
    retry_after: float | None = None
    after: int = 0
    seconds: float = 0.0
    error: BaseException | type[BaseException] | None = None
    _pattern: re.Pattern = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown fault action {self.action!r}")
        if self.operation not in ACTIONS[self.action]:
            raise ValueError(f"fault {self.action!r} does not apply to {self.operation!r}")
        if self.action == "raise" and self.error is None:
            raise ValueError("a 'raise' fault needs an error")
        self._pattern = re.compile(self.key)


def _rule(spec: Rule | Mapping[str, Any]) -> Rule:
    """A private copy, so counting down `times` never alters the caller's plan."""
    return dataclasses.replace(spec) if isinstance(spec, Rule) else Rule(**spec)


@dataclass(frozen=True)
class Injection:
    """A record of one injected fault."""

    operation: str
    key: str
    action: str


class FaultyBackend(Middleware):
    """Applies the first rule with hits left that matches each call; at most one fault per call."""

    def __init__(self, inner: Backend, plan: Iterable[Rule | Mapping[str, Any]] = (), *,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(inner)
        self._rules = [_rule(r) for r in plan]
        self._sleep = sleep
        self._lock = threading.Lock()
        self._log: list[Injection] = []

    @property
    def log(self) -> list[Injection]:
        """Faults injected so far, in order."""
        with self._lock:
            return list(self._log)

    def add(self, rule: Rule | Mapping[str, Any]) -> None:
        with self._lock:
            self._rules.append(_rule(rule))

    def _take(self, operation: str, key: str) -> Rule | None:
        with self._lock:
            for rule in self._rules:
                if rule.operation == operation and rule.times != 0 and rule._pattern.search(key):
                    if rule.times > 0:
                        rule.times -= 1
                    self._log.append(Injection(operation, key, rule.action))
                    return rule
        return None

    def _fail(self, rule: Rule, operation: str, key: str) -> None:
        """Raise the error of a failing action; return for actions that let the call proceed."""
        what = f"injected {rule.action} fault on {operation} {key!r}"
        if rule.action in ("transient", "transient_after_write"):
            raise TransientError(what, retry_after=rule.retry_after)
        if rule.action == "not_found":
            raise NotFound(key)
        if rule.action == "permanent":
            raise BackendError(what)
        if rule.action == "raise":
            raise rule.error  # type: ignore[misc]
        if rule.action == "delay":
            self._sleep(rule.seconds)

    def _simple(self, operation: str, key: str, call: Callable[[], Any]) -> Any:
        rule = self._take(operation, key)
        if rule is not None and rule.action != "transient_after_write":
            self._fail(rule, operation, key)
        result = call()
        if rule is not None and rule.action == "transient_after_write":
            self._fail(rule, operation, key)
        return result

    def put(self, key, data, *, mode=PutMode.OVERWRITE, retain_until=None) -> None:
        self._simple("put", key, lambda: self.inner.put(key, data, mode=mode, retain_until=retain_until))

    def put_file(self, key, file, size, *, mode=PutMode.OVERWRITE, retain_until=None) -> None:
        self.put(key, read_spool(file, size), mode=mode, retain_until=retain_until)

    def head(self, key) -> ObjectInfo:
        return self._simple("head", key, lambda: self.inner.head(key))

    def delete(self, key) -> None:
        self._simple("delete", key, lambda: self.inner.delete(key))

    def list_leftovers(self, older_than: float) -> Sequence[Leftover]:
        return self._simple("list_leftovers", "", lambda: self.inner.list_leftovers(older_than))

    def remove_leftover(self, leftover: Leftover) -> None:
        self._simple("remove_leftover", leftover.name, lambda: self.inner.remove_leftover(leftover))

    def get(self, key, *, offset=0, length=None) -> bytes:
        rule = self._take("get", key)
        if rule is not None:
            self._fail(rule, "get", key)
        data = self.inner.get(key, offset=offset, length=length)
        if rule is not None and rule.action == "corrupt":
            if not data:
                return b"\x00"
            i = len(data) // 2
            return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:]
        if rule is not None and rule.action == "truncate":
            return data[:len(data) // 2]
        return data

    def list(self, prefix="") -> Iterator[ObjectInfo]:
        rule = self._take("list", prefix)
        if rule is None or rule.action == "delay":
            if rule is not None:
                self._sleep(rule.seconds)
            yield from self.inner.list(prefix)
            return
        yield from itertools.islice(self.inner.list(prefix), rule.after)
        self._fail(rule, "list", prefix)
