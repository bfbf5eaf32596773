"""Suspicious nights: new data far above the source's usual and mostly incompressible.

Ransomware that encrypts files rewrites them with bytes that look random: the next backup finds far
more new data than the source's nights usually bring, and that data no longer compresses. Either
alone is ordinary (a big update compresses; a few photos do not, but are small), so a night is
flagged only when all of these hold (defaults in Thresholds, reasons in docs/suspicious-nights.md):

- the source has at least `min_history` earlier incremental snapshots (a first backup has none to
  compare with, and its own new data, the whole disk, is no night's change: it never counts);
- the night's new data is above `factor` times the usual, the median of the last `history` nights
  (a median, so one earlier big night does not raise the bar), and above `min_new_bytes`;
  the nights' sizes travel in each snapshot's stats (`recent_nights`), so a retention policy that
  keeps few snapshots (`--keep-last 1`) does not shorten the history;
- its stored size (zstd, then AES-GCM) is at least `min_ratio` of its raw size.

The verdict goes into the snapshot's manifest, so it outlives the run and every listing can show it.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, replace

from agent.config import units
from agent.repo.snapshots import Snapshot


@dataclass(frozen=True)
class Thresholds:
    enabled: bool = True
    factor: float = 5.0              # new data above this many times the usual ...
    min_new_bytes: int = 256 << 20   # ... and above this much (a tiny usual must not flag ordinary nights)
    min_ratio: float = 0.6           # stored / raw of the new data at least this: mostly incompressible
    min_history: int = 3             # earlier incremental nights needed before anything is judged
    history: int = 14                # nights the usual is the median of

    def override(self, *, enabled: bool | None = None, factor: float | None = None, min_new_bytes: int | None = None,
                 min_ratio: float | None = None, min_history: int | None = None,
                 history: int | None = None) -> Thresholds:
        """These thresholds with the values given (not None) instead: flags over the file over defaults."""
        given = {"enabled": enabled, "factor": factor, "min_new_bytes": min_new_bytes, "min_ratio": min_ratio,
                 "min_history": min_history, "history": history}
        return replace(self, **{k: v for k, v in given.items() if v is not None})  # type: ignore[arg-type]

    def describe(self) -> str:
        return (f"factor {self.factor:g}, at least {units.size(self.min_new_bytes)}, stored/raw at least "
                f"{self.min_ratio:g}, after {self.min_history} nights (median of the last {self.history})")


#: nights' new data carried in each snapshot (more than any sensible `history`, so that one can be raised)
KEPT_NIGHTS = 62


def recent_nights(earlier: list[Snapshot]) -> list[int]:
    """New data of the source's latest incremental nights, oldest first: as the newest earlier snapshot
    carries them, else (snapshots written before they were carried) from the snapshots themselves."""
    if not earlier:
        return []
    carried = earlier[-1].stats.get("recent_nights")
    if isinstance(carried, list):
        return [int(n) for n in carried][-KEPT_NIGHTS:]
    return [int(s.stats.get("new_bytes", 0) or 0) for s in earlier if s.parent is not None][-KEPT_NIGHTS:]


def evaluate(nights: list[int], new_bytes: int, new_raw: int, new_sealed: int, t: Thresholds) -> dict | None:
    """The suspicion note for a night with this new data, or None. `nights`: recent_nights before it;
    `new_raw`/`new_sealed`: its new data blobs before and after compression and encryption."""
    if not t.enabled or new_bytes <= 0 or new_raw <= 0:
        return None
    nights = nights[-t.history:]
    if len(nights) < max(1, t.min_history):
        return None
    usual = int(statistics.median(nights))
    ratio = new_sealed / new_raw
    if new_bytes <= t.factor * usual or new_bytes <= t.min_new_bytes or ratio < t.min_ratio:
        return None
    return {"new_bytes": new_bytes, "usual_bytes": usual, "nights": len(nights), "stored_ratio": round(ratio, 4),
            "factor": round(new_bytes / usual, 1) if usual else 0.0,  # 0: the usual is no new data at all
            "thresholds": asdict(t)}


def describe(note: dict) -> str:
    """One line for people: "new data 12.0 MiB, 24x the usual 512.0 KiB (median of 4 nights), 100% of it
    stored (incompressible)"."""
    usual = int(note.get("usual_bytes", 0))
    times = f"{note.get('factor', 0):g}x the usual {units.size(usual)}" if usual else \
        f"the usual being {units.size(0)}"
    return (f"new data {units.size(int(note.get('new_bytes', 0)))}, {times} (median of {note.get('nights')} "
            f"nights), {float(note.get('stored_ratio', 0)):.0%} of it left after compression (incompressible)")
