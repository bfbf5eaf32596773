"""Sending content: one multipart request for small objects, a resumable session for large ones.

A resumable session sends `chunk_size` pieces (a multiple of 256 KiB, as Drive requires); if one
fails, the SDK asks the session where it stands and resends only that piece (`chunk_retries`),
instead of the retry middleware starting the whole object again. The file appears in Drive only
when the last byte arrives, so listings never show a partial object. Drive's md5Checksum of the
stored bytes is compared with ours, so corruption on the way is caught, not stored.
"""

from __future__ import annotations

import hashlib
import io

from googleapiclient.http import MediaIoBaseUpload

from backends.errors import BackendError, TransientError
from backends.gdrive.client import FILE_FIELDS, DriveClient

CHUNK_ALIGN = 256 << 10
_MIME = "application/octet-stream"


class _BytesUpload(MediaIoBaseUpload):
    """Chunks as bytes, not as slices of one stream: the SDK resends a failed chunk's body as is,
    and a stream slice it already read would go out empty (the request then hangs until timeout)."""

    def has_stream(self) -> bool:
        return False


class Uploader:
    def __init__(self, client: DriveClient, *, resumable_threshold: int, chunk_size: int, chunk_retries: int) -> None:
        if chunk_size <= 0 or chunk_size % CHUNK_ALIGN:
            raise BackendError(f"chunk_size must be a positive multiple of {CHUNK_ALIGN} bytes (256 KiB)")
        self._client = client
        self._threshold = resumable_threshold
        self._chunk_size = chunk_size
        self._chunk_retries = chunk_retries

    def _media(self, blob: bytes) -> MediaIoBaseUpload:
        if len(blob) > self._threshold:
            return _BytesUpload(io.BytesIO(blob), _MIME, chunksize=self._chunk_size, resumable=True)
        return MediaIoBaseUpload(io.BytesIO(blob), _MIME, resumable=False)

    def _send(self, request, blob: bytes, *, new_file: bool) -> dict:
        if request.resumable is None:
            reply = request.execute()
        else:
            reply = None
            while reply is None:
                _, reply = request.next_chunk(num_retries=self._chunk_retries)
        stored = reply.get("md5Checksum")
        if stored and stored != hashlib.md5(blob).hexdigest():
            if new_file:  # or a retried CREATE would find it and take it for its own
                self._client.files().delete(fileId=reply["id"], supportsAllDrives=True).execute()
            raise TransientError(f"Drive stored {reply.get('size')} bytes with md5 {stored}, "
                                 "not what was sent; the upload was damaged on the way")
        return reply

    def create(self, parent: str, name: str, blob: bytes) -> dict:
        """A new file `name` in `parent` (Drive does not check the name is free: see Tree.settle)."""
        request = self._client.files().create(body={"name": name, "parents": [parent], "mimeType": _MIME},
                                              media_body=self._media(blob), fields=FILE_FIELDS,
                                              supportsAllDrives=True)
        return self._send(request, blob, new_file=True)

    def replace(self, file_id: str, blob: bytes) -> dict:
        """New content for an existing file: the id stays, readers see the old bytes until it is done."""
        request = self._client.files().update(fileId=file_id, media_body=self._media(blob), fields=FILE_FIELDS,
                                              supportsAllDrives=True)
        return self._send(request, blob, new_file=False)
