"""Google Cloud Storage, through google-cloud-storage (JSON API).

Choices, and why:
- Retrying is the library's own (api_core Retry, also used by its resumable uploads), with the
  delays and deadline as constructor arguments; what outlives it becomes `TransientError`.
- CREATE is `ifGenerationMatch=0`, atomic on the server. If a retry of a CREATE meets the object
  its own first attempt stored (the reply was lost), size and checksums decide: identical means
  success, not AlreadyExists.
- Objects above `resumable_threshold` go through a resumable session in `chunk_size` pieces, so a
  failed chunk is resent alone; smaller ones are one request. The library cannot send more than
  8 MiB in one request, so a threshold above 8 MiB acts as 8 MiB.
- Ranged reads ask for an inclusive byte range; GCS shortens a range that runs past the end, so
  the length is checked here.
- Application Default Credentials normally; anonymous credentials against an emulator (an
  explicit endpoint, or STORAGE_EMULATOR_HOST).
- A killed resumable upload leaves only its session, never an object, and GCS drops the session
  after a week: there is nothing to clean, so `list_leftovers` keeps the default (none).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import os
from typing import Iterator
from urllib.parse import SplitResult

import google.auth.exceptions as auth_exceptions
import google_crc32c
import requests
import urllib3
from google.api_core import exceptions as api_exceptions
from google.api_core.retry import Retry
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.cloud.storage.exceptions import DataCorruption, InvalidResponse

from backends.base import (
    Backend,
    Capabilities,
    ObjectInfo,
    PutMode,
    check_range,
    endpoint_label,
    validate_key,
    validate_prefix,
)
from backends.errors import (
    AlreadyExists,
    AuthError,
    BackendError,
    InvalidRange,
    NotFound,
    ObjectLocked,
    PermissionDenied,
    QuotaExceeded,
    TransientError,
    Unsupported,
)

CHUNK_ALIGN = 256 << 10  # resumable chunks must be multiples of 256 KiB
MAX_OBJECT_SIZE = 5 << 40
LIBRARY_MULTIPART_MAX = 8 << 20  # google-cloud-storage sends objects up to this size in one request

_TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
_TRANSIENT_TYPES = (
    requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError, requests.exceptions.Timeout,
    http.client.BadStatusLine, http.client.IncompleteRead, http.client.ResponseNotReady,
    urllib3.exceptions.ProtocolError, urllib3.exceptions.TimeoutError, urllib3.exceptions.PoolError,
    urllib3.exceptions.SSLError, ConnectionError,
)
# what the library and its transport raise; anything else is a bug and propagates as is
_LIBRARY_ERRORS = (api_exceptions.GoogleAPIError, auth_exceptions.GoogleAuthError, requests.exceptions.RequestException,
                   urllib3.exceptions.HTTPError, http.client.HTTPException, OSError, DataCorruption, InvalidResponse)
_LOCK_MODES = {"UNLOCKED": "Unlocked", "GOVERNANCE": "Unlocked", "LOCKED": "Locked", "COMPLIANCE": "Locked"}
_URL_OPTIONS = {"endpoint", "project", "object_lock", "lock_mode"}


def _retryable(exc: BaseException) -> bool:
    """Throttling, 5xx, 408, resets and timeouts: the set the library itself retries by default."""
    if isinstance(exc, _TRANSIENT_TYPES):
        return True
    if isinstance(exc, api_exceptions.GoogleAPICallError):
        return exc.code in _TRANSIENT_STATUS
    if isinstance(exc, InvalidResponse):
        return exc.response.status_code in _TRANSIENT_STATUS
    if isinstance(exc, auth_exceptions.TransportError):
        return bool(exc.args) and isinstance(exc.args[0], BaseException) and _retryable(exc.args[0])
    return False


def _flag(value: str | None) -> bool:
    if value is None or value.lower() in ("0", "false", "no", "off"):
        return False
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    raise BackendError(f"expected 1 or 0, got {value!r}")


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    if response is None:
        return None
    try:
        return float(response.headers["Retry-After"])
    except (AttributeError, KeyError, TypeError, ValueError):
        return None


def _crc32c(data: bytes) -> str:
    return base64.b64encode(google_crc32c.Checksum(data).digest()).decode()


class GCSBackend(Backend):
    def __init__(self, bucket: str, prefix: str = "", *, endpoint: str | None = None, project: str | None = None,
                 object_lock: bool = False, lock_mode: str = "Unlocked", resumable_threshold: int = 8 << 20,
                 chunk_size: int = 32 << 20, max_connections: int = 10, connect_timeout: float = 10,
                 read_timeout: float = 60, retry_initial: float = 1.0, retry_maximum: float = 32.0,
                 retry_timeout: float = 120.0, list_page_size: int = 1000, client: storage.Client | None = None):
        """`client` lets tests and embedders pass a prepared client; by default ADC or the emulator is used."""
        if not bucket:
            raise BackendError("a gs:// URL needs a bucket: gs://BUCKET/PREFIX")
        if chunk_size <= 0 or chunk_size % CHUNK_ALIGN:
            raise BackendError(f"chunk_size must be a positive multiple of {CHUNK_ALIGN} bytes")
        if lock_mode.upper() not in _LOCK_MODES:
            raise BackendError(f"lock_mode must be Unlocked (GOVERNANCE) or Locked (COMPLIANCE), not {lock_mode!r}")
        prefix = prefix.strip("/")
        if prefix and any(p in ("", ".", "..") for p in prefix.split("/")):
            raise BackendError(f"invalid prefix {prefix!r}")
        self.bucket_name = bucket
        self._root = prefix + "/" if prefix else ""
        self._endpoint = endpoint or os.environ.get("STORAGE_EMULATOR_HOST")
        self._lock_mode = _LOCK_MODES[lock_mode.upper()]
        self._threshold = resumable_threshold
        self._chunk_size = chunk_size
        self._page_size = list_page_size
        self._timeout = (connect_timeout, read_timeout)
        self._retry = Retry(predicate=_retryable, initial=retry_initial, maximum=retry_maximum,
                            multiplier=2.0, timeout=retry_timeout)
        # requests keeps 10 connections per host by default; callers should not run more at once
        self.capabilities = Capabilities(
            range_reads=True, conditional_put=True, object_lock=object_lock, atomic_overwrite=True,
            max_connections=max_connections, preferred_object_size=32 << 20, max_object_size=MAX_OBJECT_SIZE)
        try:
            self._client = client or self._make_client(endpoint, project)
        except (auth_exceptions.GoogleAuthError, api_exceptions.GoogleAPIError) as exc:
            raise self._translate(exc, None) from exc
        self._bucket = self._client.bucket(bucket)

    @staticmethod
    def _make_client(endpoint: str | None, project: str | None) -> storage.Client:
        if endpoint or os.environ.get("STORAGE_EMULATOR_HOST"):  # an emulator takes no credentials
            options = {"api_endpoint": endpoint} if endpoint else None
            return storage.Client(project=project or "agent", credentials=AnonymousCredentials(),
                                  client_options=options)
        return storage.Client(project=project) if project else storage.Client()

    @classmethod
    def from_url(cls, url: SplitResult, options: dict[str, str], **tuning) -> GCSBackend:
        """gs://bucket/prefix?endpoint=&project=&object_lock=&lock_mode=

        `tuning` passes constructor arguments that have no place in a URL (tests lower thresholds).
        """
        if "@" in url.netloc:
            raise BackendError("credentials never go in a gs:// URL; use Application Default Credentials "
                               "(gcloud auth application-default login, GOOGLE_APPLICATION_CREDENTIALS, "
                               "or the VM's service account)")
        unknown = sorted(set(options) - _URL_OPTIONS)
        if unknown:
            raise BackendError(f"unknown gs:// option(s) {', '.join(unknown)}; "
                               f"known: {', '.join(sorted(_URL_OPTIONS))}")
        return cls(url.netloc, url.path, endpoint=options.get("endpoint"), project=options.get("project"),
                   object_lock=_flag(options.get("object_lock")), lock_mode=options.get("lock_mode", "Unlocked"),
                   **tuning)

    @property
    def location(self) -> str:
        return f"gs://{self.bucket_name}/{self._root}{self._endpoint_text()}"

    def _endpoint_text(self) -> str:
        return endpoint_label(self._endpoint)

    def _name(self, key: str) -> str:
        return self._root + validate_key(key)

    def _translate(self, exc: BaseException, key: str | None, *, bucket_op: bool = False) -> BackendError:
        """The one place where library exceptions become backend errors.

        `bucket_op`: the call cannot miss an object (an upload, a listing), so a 404 means the bucket.
        """
        what = f"gs://{self.bucket_name}/{self._root}{key or ''}"
        if isinstance(exc, BackendError):
            return exc
        if isinstance(exc, api_exceptions.RetryError):  # the retry deadline passed
            cause = exc.cause or exc
            return TransientError(f"{what}: gave up retrying: {cause}", retry_after=_retry_after(cause))
        if isinstance(exc, api_exceptions.GoogleAPICallError):
            message = f"{what}: {exc.code} {exc.message}"
            reasons = {e.get("reason") for e in (exc.errors or []) if isinstance(e, dict)}
            if exc.code == 404:
                if bucket_op or "bucket does not exist" in str(exc.message).lower():
                    return BackendError(f"bucket {self.bucket_name!r} does not exist{self._endpoint_text()}; "
                                        "create it first or fix the URL")
                return NotFound(key or what)
            if exc.code == 412:
                return AlreadyExists(key or what)
            if exc.code == 416:
                return InvalidRange(message)
            if exc.code == 401:
                return AuthError(message)
            if exc.code == 403:
                lowered = str(exc.message).lower()
                if "retention" in lowered or " hold" in lowered or "retentionPolicyNotMet" in reasons:
                    return ObjectLocked(message)
                if reasons & {"quotaExceeded", "storageQuotaExceeded"}:
                    return QuotaExceeded(message)
                return PermissionDenied(message)
            if _retryable(exc):
                return TransientError(message, retry_after=_retry_after(exc))
            return BackendError(message)
        if isinstance(exc, (auth_exceptions.DefaultCredentialsError, auth_exceptions.RefreshError)):
            return AuthError(f"{what}: {exc}")
        if _retryable(exc) or isinstance(exc, DataCorruption):
            return TransientError(f"{what}: {exc}")
        return BackendError(f"{what}: {exc}")

    # -- writes -------------------------------------------------------------------------------

    def put(self, key, data, *, mode=PutMode.OVERWRITE, retain_until=None) -> None:
        name = self._name(key)
        payload = data if isinstance(data, bytes) else bytes(data)
        blob = self._bucket.blob(name, chunk_size=self._chunk_size)
        if retain_until is not None:
            if not self.capabilities.object_lock:
                raise Unsupported(f"{self.location}: retention needs a bucket with object retention enabled "
                                  "(and object_lock=1 in the URL)")
            if retain_until.tzinfo is None:
                raise ValueError("retain_until must be timezone-aware")
            blob.retention.mode = self._lock_mode
            blob.retention.retain_until_time = retain_until
        retried: list[BaseException] = []
        retry = self._retry
        conditions = {}
        if mode is PutMode.CREATE:
            conditions["if_generation_match"] = 0

            def note_retry(exc: BaseException) -> bool:
                if _retryable(exc):
                    retried.append(exc)
                    return True
                return False

            retry = self._retry.with_predicate(note_retry)
        # the library itself goes resumable only above 8 MiB or for an unknown size: a smaller
        # object above our threshold is handed over with its size unknown
        size: int | None = len(payload)
        if self._threshold < len(payload) <= LIBRARY_MULTIPART_MAX:
            size = None
        try:
            blob.upload_from_file(io.BytesIO(payload), size=size,
                                  content_type="application/octet-stream", timeout=self._timeout,
                                  retry=retry, **conditions)
        except _LIBRARY_ERRORS as exc:
            if retried and isinstance(exc, api_exceptions.PreconditionFailed) and self._holds(name, payload):
                return  # our first attempt landed; its reply was lost
            raise self._translate(exc, key, bucket_op=True) from exc

    def _holds(self, name: str, payload: bytes) -> bool:
        """Whether the stored object has exactly these bytes (size, CRC32C and, when known, MD5)."""
        try:
            blob = self._bucket.get_blob(name, timeout=self._timeout, retry=self._retry)
        except _LIBRARY_ERRORS:  # any doubt means "not ours"
            return False
        if blob is None or blob.size != len(payload) or blob.crc32c != _crc32c(payload):
            return False
        return blob.md5_hash is None or blob.md5_hash == base64.b64encode(hashlib.md5(payload).digest()).decode()

    # -- reads --------------------------------------------------------------------------------

    def get(self, key, *, offset=0, length=None) -> bytes:
        name = self._name(key)
        if offset < 0 or (length is not None and length < 0):
            raise ValueError("offset and length must be non-negative")
        if length == 0:  # HTTP cannot ask for zero bytes
            check_range(self.head(key).size, offset, 0)
            return b""
        start = offset if (offset or length is not None) else None
        end = offset + length - 1 if length is not None else None  # inclusive
        try:
            data = self._bucket.blob(name).download_as_bytes(start=start, end=end, timeout=self._timeout,
                                                            retry=self._retry)
        except api_exceptions.RequestRangeNotSatisfiable:
            # GCS refuses a range starting at the end, which the contract allows (as b"")
            check_range(self.head(key).size, offset, length)
            return b""
        except _LIBRARY_ERRORS as exc:
            raise self._translate(exc, key) from exc
        if length is not None and len(data) != length:
            raise InvalidRange(f"range {offset}+{length} past end of {key}")
        return data

    def head(self, key) -> ObjectInfo:
        try:
            blob = self._bucket.get_blob(self._name(key), timeout=self._timeout, retry=self._retry)
        except _LIBRARY_ERRORS as exc:
            raise self._translate(exc, key) from exc
        if blob is None:
            raise NotFound(key)
        return ObjectInfo(key, blob.size, blob.updated, blob.etag)

    def list(self, prefix="") -> Iterator[ObjectInfo]:
        """Objects under the prefix; keys that are not valid (folder markers, foreign files) are skipped."""
        validate_prefix(prefix)
        blobs = self._client.list_blobs(self._bucket, prefix=self._root + prefix, page_size=self._page_size,
                                        fields="items(name,size,updated,etag),nextPageToken",
                                        timeout=self._timeout, retry=self._retry)
        try:
            for blob in blobs:
                key = blob.name[len(self._root):]
                try:
                    validate_key(key)
                except BackendError:
                    continue
                yield ObjectInfo(key, blob.size, blob.updated, blob.etag)
        except _LIBRARY_ERRORS as exc:
            raise self._translate(exc, prefix or None, bucket_op=True) from exc

    def delete(self, key) -> None:
        try:
            self._bucket.blob(self._name(key)).delete(timeout=self._timeout, retry=self._retry)
        except _LIBRARY_ERRORS as exc:
            error = self._translate(exc, key)
            if not isinstance(error, NotFound):  # absent is fine; a missing bucket is not
                raise error from exc

    def close(self) -> None:
        self._client.close()
