"""Human-readable sizes and durations for tables and summaries (reading them: agent.config.sizes,
agent.config.durations)."""

from __future__ import annotations


def size(n: int | float | None) -> str:
    if n is None:
        return "-"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def rate(nbytes: int, seconds: float) -> str:
    """Rates in MiB/s like the limits (`--limit-upload 4MiB/s`), so the two compare directly."""
    if seconds <= 0:
        return "-"
    r = nbytes / seconds / (1 << 20)
    return f"{r:.0f} MiB/s" if r >= 10 else f"{r:.2f} MiB/s"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"
