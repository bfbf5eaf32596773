"""healthchecks.io-style pings per source: `URL/start` before the backup, `URL` when it completed,
`URL/fail` (the reason as body) when it did not. The service alerts on a fail and on a missing ping,
which also catches a machine that is switched off or a timer that never fires.

A ping never raises: the backup's result matters more than its monitoring. Failures come back as
one line that names only scheme://host (the path of a ping URL is its secret).
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from typing import Literal
from urllib.parse import urlsplit

Kind = Literal["start", "success", "fail"]
TIMEOUT_S = 10.0


def ping(url: str, kind: Kind, body: str = "", timeout_s: float = TIMEOUT_S) -> str | None:
    """Send one ping; None when it was delivered, else what went wrong (without the URL's path)."""
    target = url.rstrip("/") + {"start": "/start", "success": "", "fail": "/fail"}[kind]
    data = body.encode()[:100_000]  # healthchecks.io keeps the first 100 kB of a body
    req = urllib.request.Request(target, data=data if data else None, method="POST" if data else "GET",
                                 headers={"User-Agent": "agent-backup", "Content-Type": "text/plain; charset=utf-8"})
    where = urlsplit(url).scheme + "://" + (urlsplit(url).netloc.rpartition("@")[2])
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            resp.read()
        return None
    except urllib.error.HTTPError as exc:
        exc.close()
        return f"healthcheck ping ({kind}) to {where} answered HTTP {exc.code}"
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        text = " ".join(str(reason).split()) or reason.__class__.__name__
        return f"healthcheck ping ({kind}) to {where} failed: {text}"
