"""Human-readable sizes and durations for tables and summaries."""

from __future__ import annotations

from agent.errors import UsageError


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


def parse_size(text: str) -> int:
    """Bytes from `500MiB`, `2GiB`, `128M`, `1.5G` (binary) or `4GB` (decimal); UsageError otherwise."""
    t = text.strip().lower().replace(" ", "")
    mult = {"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gib": 1 << 30,
            "t": 1 << 40, "tib": 1 << 40, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
    num = t.rstrip("kmgtib")
    try:
        return int(float(num) * mult[t[len(num):]])
    except (ValueError, KeyError, OverflowError):  # OverflowError: "inf"
        raise UsageError(f"cannot read the size {text!r}; use forms like 500MiB or 2GiB") from None
