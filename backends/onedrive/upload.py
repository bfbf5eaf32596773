"""Upload sessions: our own fragment loop instead of msgraph-core's LargeFileUploadTask.

LargeFileUploadTask (msgraph-core 1.5.2) fails on the open-ended `nextExpectedRanges: ["N-"]`
that Graph documents, and sends fragments one byte too long otherwise (recipes, section 5).
The loop here sends fragments whose size is a multiple of 320 KiB, as Graph requires, with a
Content-Range each and no Authorization header (the upload URL is pre-authenticated).

When a fragment fails with a 5xx or a dropped connection, the server may or may not have kept
it, so the loop asks the session where to go on (GET uploadUrl -> nextExpectedRanges) and
resumes from there, a few times per upload. Anything else ends the upload: the session is
cancelled and the error goes up (throttling and 4xx are for the caller and the retry middleware).
"""

from __future__ import annotations

import httpx

FRAGMENT_UNIT = 320 << 10
MAX_FRAGMENT = 60 << 20  # Graph refuses larger fragments
MAX_RESUMES = 5


def check_fragment_size(size: int) -> int:
    if size <= 0 or size % FRAGMENT_UNIT or size > MAX_FRAGMENT:
        raise ValueError(f"upload fragment size must be a positive multiple of 320 KiB up to 60 MiB, not {size}")
    return size


def next_offset(ranges: list[str] | None, total: int) -> int:
    """The first byte the server still expects ("N-" or "N-M" forms); total when none is missing."""
    if not ranges:
        return total
    return min(int(r.split("-", 1)[0]) for r in ranges)


async def send_fragments(http: httpx.AsyncClient, upload_url: str, data: bytes | memoryview, fragment: int,
                         start: int = 0) -> None:
    """Send `data` from `start` until the session answers 200/201 (the item is committed)."""
    view, total = memoryview(data), len(data)
    offset, resumes = start, 0
    try:
        while True:
            end = min(offset + fragment, total)
            failure: BaseException | None = None
            try:
                reply = await http.put(upload_url, content=bytes(view[offset:end]),
                                       headers={"Content-Range": f"bytes {offset}-{end - 1}/{total}"})
            except httpx.TransportError as exc:
                failure, reply = exc, None
            if reply is not None:
                if reply.status_code in (200, 201):
                    return
                if reply.status_code == 202:
                    offset = next_offset(reply.json().get("nextExpectedRanges"), total)
                    continue
                if reply.status_code < 500:
                    reply.raise_for_status()
                failure = httpx.HTTPStatusError(f"fragment {offset}-{end - 1} failed: {reply.status_code}",
                                                request=reply.request, response=reply)
            assert failure is not None  # the transport error, or set just above for the reply
            resumes += 1
            if resumes > MAX_RESUMES:
                raise failure
            status = await http.get(upload_url)  # where does the server want us to go on?
            if status.status_code != 200:  # e.g. 404: the session ended (maybe committed): let the caller decide
                raise failure
            offset = next_offset(status.json().get("nextExpectedRanges"), total)
            if offset >= total:  # everything arrived but the commit reply was lost
                raise failure
    except BaseException:
        try:
            await http.delete(upload_url)  # cancel: Graph would otherwise keep the fragments for days
        except httpx.HTTPError:
            pass
        raise
