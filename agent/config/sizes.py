"""The one reader of sizes (`512`, `4k`, `16MiB`, `1.5G`, `4GB`) for every flag and config field.

Single letters and IEC names are binary (K = KiB = 1024) because disks, packs and chunks are
counted in powers of two; the SI names with a B (`kB`, `MB`, `GB`, `TB`) are decimal, as on a
drive's label. The table is in docs/configuration.md.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from agent.errors import UsageError

MULTIPLIERS = {
    "": 1, "b": 1,
    "k": 1 << 10, "ki": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mi": 1 << 20, "mib": 1 << 20,
    "g": 1 << 30, "gi": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "ti": 1 << 40, "tib": 1 << 40,
    "p": 1 << 50, "pi": 1 << 50, "pib": 1 << 50,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "pb": 10**15,
}
_SIZE = re.compile(r"(\d+(?:\.\d+)?|\.\d+)([a-z]*)")
EXAMPLES = "512, 4k, 16MiB, 1.5G, 4GB"


def parse_size(text: str, *, what: str = "") -> int:
    """Bytes (rounded down to a whole byte); UsageError for anything else. `what` names the flag or field."""
    of = f" for {what}" if what else ""
    t = "".join(text.split()).lower()
    m = _SIZE.fullmatch(t)
    if not m or m.group(2) not in MULTIPLIERS:
        raise UsageError(f"cannot read the size {text!r}{of}; use forms like {EXAMPLES} (K, M, G, KiB, MiB, GiB are "
                         "powers of 1024; kB, MB, GB powers of 1000)")
    try:
        return int(Decimal(m.group(1)) * MULTIPLIERS[m.group(2)])
    except InvalidOperation:  # pragma: no cover - the pattern admits only plain decimals
        raise UsageError(f"cannot read the size {text!r}{of}") from None


def format_size(n: int) -> str:
    """The largest binary unit that holds `n` exactly (`4KiB`, `16MiB`), else plain bytes: a form
    parse_size reads back to the same number, for messages that echo a setting."""
    for unit in ("PiB", "TiB", "GiB", "MiB", "KiB"):
        mult = MULTIPLIERS[unit.lower()]
        if n and n % mult == 0:
            return f"{n // mult}{unit}"
    return str(n)
