"""Progress events: plain dataclasses the engine emits and the CLI renders (rich or JSON lines)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union


@dataclass(frozen=True)
class Started:
    operation: str
    total_bytes: int


@dataclass(frozen=True)
class Advanced:
    done_bytes: int
    new_bytes: int = 0
    stored_bytes: int = 0


@dataclass(frozen=True)
class Warning:  # noqa: A001 - the event's name in JSON output
    message: str


@dataclass(frozen=True)
class Finished:
    operation: str


Event = Union[Started, Advanced, Warning, Finished]
Listener = Callable[[Event], None]


def ignore(event: Event) -> None:
    """The default listener: engine code never needs to check for None."""
