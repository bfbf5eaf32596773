"""Amazon S3 and S3-compatible object stores, through boto3.

Choices, and why:
- Retrying is botocore's "standard" mode (throttling, 5xx, resets and timeouts, with backoff and
  a retry quota). This module has no loop of its own; what outlives the SDK's attempts becomes
  `TransientError` for the retry middleware.
- CREATE sends `If-None-Match: *` on PutObject and on CompleteMultipartUpload, so it is atomic for
  multipart objects too. s3transfer's upload_fileobj cannot pass that header to the completion
  call, so multipart uses the low-level calls on a small thread pool, and aborts on failure so
  no orphaned parts are billed. A writer killed mid-upload (or whose abort failed) cannot abort:
  `list_leftovers` finds such uploads under the prefix and `remove_leftover` aborts them (a
  lifecycle rule, terraform/, is the backstop for repositories nobody prunes).
- If an SDK retry of a CREATE meets the object its own first attempt stored (the reply was
  lost), the stored bytes are compared: identical bytes mean success, not AlreadyExists.
- On an Object Lock bucket `delete` removes every version of the key, oldest first, so data is
  really gone (a plain delete would only add a delete marker); a version under retention stops
  it with `ObjectLocked` while the newest version is still the current object.
- Credentials come only from the AWS chain (environment, profile, instance role), never a URL.
- Object Lock retention is extended with PutObjectRetention on the current version (one request
  per object; agent.maintenance.retain decides which objects and how rarely). The bucket's default
  rule says what every new version got, so nothing asks S3 per object what its retention is.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Iterator, Sequence
from urllib.parse import SplitResult

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    IncompleteReadError,
    NoAuthTokenError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
    SSOError,
    TokenRetrievalError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from backends.base import (
    Backend,
    Capabilities,
    Leftover,
    LockPolicy,
    ObjectInfo,
    PutMode,
    check_range,
    endpoint_label,
    http_range,
    validate_key,
    validate_prefix,
)
from backends.errors import (
    AlreadyExists,
    AuthError,
    BackendError,
    InvalidKey,
    InvalidRange,
    NotFound,
    ObjectLocked,
    PermissionDenied,
    QuotaExceeded,
    TransientError,
    Unsupported,
)

UPLOAD = "multipart upload"  # the kind of leftover a killed multipart upload is
MIN_PART_SIZE = 5 << 20  # S3 refuses smaller parts, except the last
MAX_PARTS = 10_000
MAX_OBJECT_SIZE = 5 << 40

_AUTH_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "TokenRefreshRequired",
               "InvalidClientTokenId", "UnrecognizedClientException", "AuthFailure", "ExpiredTokenException"}
_DENIED_CODES = {"AccessDenied", "AllAccessDisabled", "AccountProblem", "403", "Forbidden"}
_CONFLICT_CODES = {"PreconditionFailed", "ConditionalRequestConflict"}
_TRANSIENT_CODES = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "Throttling",
                    "ThrottlingException", "TooManyRequests", "RequestLimitExceeded", "BandwidthLimitExceeded"}
_TRANSIENT_STATUS = {429, 500, 502, 503, 504}
_CREDENTIAL_ERRORS = (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError, ProfileNotFound,
                      NoAuthTokenError, TokenRetrievalError, SSOError)
_URL_OPTIONS = {"endpoint", "region", "storage_class", "sse", "kms_key", "path_style", "profile",
                "object_lock", "lock_mode"}


def _flag(value: str | None) -> bool | None:
    if value is None:
        return None
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise BackendError(f"expected 1 or 0, got {value!r}")


def _retry_after(headers: dict) -> float | None:
    try:
        return float(headers["retry-after"])
    except (KeyError, TypeError, ValueError):
        return None


class S3Backend(Backend):
    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None,
                 region: str | None = None, storage_class: str | None = None, sse: str | None = None,
                 sse_kms_key_id: str | None = None, path_style: bool | None = None, profile: str | None = None,
                 object_lock: bool = False, lock_mode: str = "GOVERNANCE",
                 multipart_threshold: int = 64 << 20, part_size: int = 16 << 20, part_concurrency: int = 4,
                 max_connections: int = 16, max_attempts: int = 5, connect_timeout: float = 10,
                 read_timeout: float = 60, list_page_size: int = 1000, session: boto3.session.Session | None = None):
        """`session` lets tests hand in explicit credentials; by default the AWS chain is used."""
        if not bucket:
            raise BackendError("an s3:// URL needs a bucket: s3://BUCKET/PREFIX")
        if sse_kms_key_id and sse is None:
            sse = "aws:kms"
        if sse not in (None, "AES256", "aws:kms"):
            raise BackendError(f"sse must be AES256 or aws:kms, not {sse!r}")
        if lock_mode not in ("GOVERNANCE", "COMPLIANCE"):
            raise BackendError(f"lock_mode must be GOVERNANCE or COMPLIANCE, not {lock_mode!r}")
        if part_size < MIN_PART_SIZE:
            raise BackendError(f"part_size must be at least {MIN_PART_SIZE} bytes")
        prefix = prefix.strip("/")
        if prefix and any(p in ("", ".", "..") for p in prefix.split("/")):
            raise BackendError(f"invalid prefix {prefix!r}")
        self.bucket = bucket
        self._root = prefix + "/" if prefix else ""
        self._endpoint = endpoint_url
        self._storage_class = storage_class
        self._sse = sse
        self._kms_key = sse_kms_key_id
        self._lock_mode = lock_mode
        self._threshold = multipart_threshold
        self._part_size = part_size
        self._part_concurrency = part_concurrency
        self._page_size = list_page_size
        self.capabilities = Capabilities(
            range_reads=True, conditional_put=True, object_lock=object_lock, atomic_overwrite=True,
            max_connections=max_connections, preferred_object_size=32 << 20,
            max_object_size=min(MAX_OBJECT_SIZE, part_size * MAX_PARTS))
        if path_style is None:  # custom endpoints (MinIO, Ceph, moto) rarely have wildcard DNS
            path_style = endpoint_url is not None
        config = Config(
            retries={"mode": "standard", "total_max_attempts": max_attempts},
            connect_timeout=connect_timeout, read_timeout=read_timeout,
            max_pool_connections=max_connections + part_concurrency,
            s3={"addressing_style": "path" if path_style else "auto"},
        )
        try:
            session = session or boto3.session.Session(profile_name=profile)
            self._client = session.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)
        except (BotoCoreError, ValueError) as exc:
            raise self._translate(exc, None) from exc

    @classmethod
    def from_url(cls, url: SplitResult, options: dict[str, str], **tuning) -> S3Backend:
        """s3://bucket/prefix?endpoint=&region=&storage_class=&sse=&kms_key=&path_style=&profile=&object_lock=&lock_mode=

        `tuning` passes constructor arguments that have no place in a URL (tests lower thresholds).
        """
        if "@" in url.netloc:
            raise BackendError("credentials never go in an s3:// URL; use the AWS chain "
                               "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, or an instance role)")
        unknown = sorted(set(options) - _URL_OPTIONS)
        if unknown:
            raise BackendError(f"unknown s3:// option(s) {', '.join(unknown)}; "
                               f"known: {', '.join(sorted(_URL_OPTIONS))}")
        endpoint = options.get("endpoint")
        if endpoint and "://" not in endpoint:
            endpoint = "https://" + endpoint
        return cls(url.netloc, url.path, endpoint_url=endpoint, region=options.get("region"),
                   storage_class=options.get("storage_class"), sse=options.get("sse"),
                   sse_kms_key_id=options.get("kms_key"), path_style=_flag(options.get("path_style")),
                   profile=options.get("profile"), object_lock=bool(_flag(options.get("object_lock"))),
                   lock_mode=options.get("lock_mode", "GOVERNANCE").upper(), **tuning)

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self._root}{self._endpoint_text()}"

    def _endpoint_text(self) -> str:
        return endpoint_label(self._endpoint)

    def _name(self, key: str) -> str:
        return self._root + validate_key(key)

    def _translate(self, exc: BaseException, key: str | None) -> BackendError:
        """The one place where botocore exceptions become backend errors."""
        what = f"s3://{self.bucket}/{self._root}{key or ''}"
        if isinstance(exc, BackendError):
            return exc
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            meta = exc.response.get("ResponseMetadata", {})
            code = str(error.get("Code", ""))
            status = meta.get("HTTPStatusCode", 0)
            text = str(error.get("Message", ""))
            message = f"{what}: {code or status} {text}".rstrip()
            if code == "NoSuchBucket":
                return BackendError(f"bucket {self.bucket!r} does not exist{self._endpoint_text()}; "
                                    "create it first or fix the URL")
            if code in ("NoSuchKey", "NotFound", "404") or status == 404:
                return NotFound(key or what)
            if code in _CONFLICT_CODES or status == 412:
                return AlreadyExists(key or what)
            if code == "InvalidRange" or status == 416:
                return InvalidRange(message)
            if code in _AUTH_CODES:
                return AuthError(message)
            if code in _DENIED_CODES or status == 403:
                if "object lock" in text.lower() or "retention" in text.lower():
                    return ObjectLocked(message)
                return PermissionDenied(message)
            if code in ("QuotaExceeded", "XMinioStorageFull"):
                return QuotaExceeded(message)
            if code in _TRANSIENT_CODES or status in _TRANSIENT_STATUS:
                return TransientError(message, retry_after=_retry_after(meta.get("HTTPHeaders", {})))
            return BackendError(message)
        if isinstance(exc, _CREDENTIAL_ERRORS):
            return AuthError(f"{what}: {exc}")
        if isinstance(exc, (BotoConnectionError, HTTPClientError, IncompleteReadError)):
            return TransientError(f"{what}: {exc}")
        return BackendError(f"{what}: {exc}")

    # -- writes -------------------------------------------------------------------------------

    def _write_args(self, retain_until: datetime | None) -> dict:
        args: dict = {}
        if self._storage_class:
            args["StorageClass"] = self._storage_class
        if self._sse:
            args["ServerSideEncryption"] = self._sse
        if self._kms_key:
            args["SSEKMSKeyId"] = self._kms_key
        if retain_until is not None:
            if not self.capabilities.object_lock:
                raise Unsupported(f"{self.location}: retention needs a bucket with Object Lock "
                                  "(and object_lock=1 in the URL)")
            if retain_until.tzinfo is None:
                raise ValueError("retain_until must be timezone-aware")
            args["ObjectLockMode"] = self._lock_mode
            args["ObjectLockRetainUntilDate"] = retain_until
        return args

    def put(self, key, data, *, mode=PutMode.OVERWRITE, retain_until=None) -> None:
        name = self._name(key)
        blob = data if isinstance(data, bytes) else bytes(data)
        args = self._write_args(retain_until)
        if mode is PutMode.CREATE:
            args["IfNoneMatch"] = "*"
        try:
            if len(blob) <= self._threshold:
                self._client.put_object(Bucket=self.bucket, Key=name, Body=blob, **args)
            else:
                self._put_multipart(name, blob, args)
        except (ClientError, BotoCoreError) as exc:
            if mode is PutMode.CREATE and self._is_own_retried_create(exc, name, blob):
                return
            raise self._translate(exc, key) from exc

    def _put_multipart(self, name: str, blob: bytes, args: dict) -> None:
        complete_args = {"IfNoneMatch": args.pop("IfNoneMatch")} if "IfNoneMatch" in args else {}
        checksum = {}
        if self._client.meta.config.request_checksum_calculation == "when_supported":
            checksum = {"ChecksumAlgorithm": "CRC32"}  # what s3transfer sends too
        upload_id = self._client.create_multipart_upload(Bucket=self.bucket, Key=name, **args, **checksum)["UploadId"]
        view = memoryview(blob)

        def send(number: int, start: int) -> dict:
            reply = self._client.upload_part(Bucket=self.bucket, Key=name, UploadId=upload_id, PartNumber=number,
                                             Body=bytes(view[start:start + self._part_size]), **checksum)
            part = {"PartNumber": number, "ETag": reply["ETag"]}
            if "ChecksumCRC32" in reply:
                part["ChecksumCRC32"] = reply["ChecksumCRC32"]
            return part

        starts = range(0, len(blob), self._part_size)
        try:
            with ThreadPoolExecutor(max_workers=min(self._part_concurrency, len(starts))) as pool:
                futures = [pool.submit(send, n, start) for n, start in enumerate(starts, 1)]
                try:
                    parts = [f.result() for f in futures]
                except BaseException:
                    for f in futures:
                        f.cancel()
                    raise
            self._client.complete_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload_id,
                                                   MultipartUpload={"Parts": parts}, **complete_args)
        except BaseException:
            try:
                self._client.abort_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload_id)
            except (ClientError, BotoCoreError):
                pass  # a lifecycle rule for incomplete uploads (see docs) removes what is left
            raise

    def _is_own_retried_create(self, exc: BaseException, name: str, blob: bytes) -> bool:
        """After an SDK retry, a CREATE conflict may be our own first attempt: same bytes = success."""
        if not isinstance(exc, ClientError) or exc.response.get("Error", {}).get("Code") not in _CONFLICT_CODES:
            return False
        if not exc.response.get("ResponseMetadata", {}).get("RetryAttempts"):
            return False
        try:
            reply = self._client.get_object(Bucket=self.bucket, Key=name)
            if reply["ContentLength"] != len(blob):
                reply["Body"].close()
                return False
            return reply["Body"].read() == blob
        except (ClientError, BotoCoreError):
            return False

    # -- reads --------------------------------------------------------------------------------

    def get(self, key, *, offset=0, length=None) -> bytes:
        name = self._name(key)
        span = http_range(offset, length)
        if length == 0:  # HTTP cannot ask for zero bytes
            check_range(self.head(key).size, offset, 0)
            return b""
        args = {"Range": span} if span else {}
        try:
            reply = self._client.get_object(Bucket=self.bucket, Key=name, **args)
            body = reply["Body"].read()
        except ClientError as exc:
            error = exc.response.get("Error", {})
            if error.get("Code") != "InvalidRange":
                raise self._translate(exc, key) from exc
            # S3 refuses a range starting at the end, which the contract allows (as b"")
            size = int(error["ActualObjectSize"]) if "ActualObjectSize" in error else self.head(key).size
            check_range(size, offset, length)
            return b""
        except BotoCoreError as exc:
            raise self._translate(exc, key) from exc
        if args and "ContentRange" not in reply:  # a server that ignored the Range header
            body = body[offset:None if length is None else offset + length]
        if length is not None and len(body) != length:
            # S3 shortens a range that runs past the end instead of refusing it
            raise InvalidRange(f"range {offset}+{length} past end of {key}")
        return body

    def head(self, key) -> ObjectInfo:
        try:
            reply = self._client.head_object(Bucket=self.bucket, Key=self._name(key))
        except (ClientError, BotoCoreError) as exc:
            raise self._translate(exc, key) from exc
        etag = reply.get("ETag", "").strip('"') or None
        return ObjectInfo(key, reply["ContentLength"], reply.get("LastModified"), etag)

    def list(self, prefix="") -> Iterator[ObjectInfo]:
        """Objects under the prefix; keys that are not valid (console folder markers, foreign files) are skipped."""
        validate_prefix(prefix)
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._root + prefix, PaginationConfig={"PageSize": self._page_size})
        try:
            for page in pages:
                for obj in page.get("Contents", ()):
                    key = obj["Key"][len(self._root):]
                    try:
                        validate_key(key)
                    except BackendError:
                        continue
                    yield ObjectInfo(key, obj["Size"], obj.get("LastModified"), obj.get("ETag", "").strip('"') or None)
        except (ClientError, BotoCoreError) as exc:
            raise self._translate(exc, prefix or None) from exc

    # -- unfinished multipart uploads -------------------------------------------------------------

    def list_leftovers(self, older_than: float) -> Sequence[Leftover]:
        """Multipart uploads under the prefix that were never completed nor aborted and saw no
        activity (start, or a part's upload) for `older_than` seconds; S3 bills their parts.

        Aged by the last activity, not the start alone: a long upload still sending parts is
        not left over (and some S3 servers report a made-up start time).
        """
        found = []
        now = datetime.now(UTC)
        try:
            pages = self._client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=self._root)
            for page in pages:
                for upload in page.get("Uploads", ()):
                    key = upload["Key"][len(self._root):]
                    try:
                        validate_key(key)
                    except BackendError:
                        continue  # not one of ours (see `list`)
                    parts = self._parts(upload["Key"], upload["UploadId"])
                    if parts is None:
                        continue  # completed or aborted meanwhile
                    size, last_part = parts
                    active = max(upload["Initiated"], last_part) if last_part else upload["Initiated"]
                    age = max(0.0, (now - active).total_seconds())
                    if age >= older_than:
                        found.append(Leftover(UPLOAD, key, size, age, upload["UploadId"]))
        except (ClientError, BotoCoreError) as exc:
            raise self._translate(exc, None) from exc
        return found

    def _parts(self, name: str, upload_id: str) -> tuple[int, datetime | None] | None:
        """Bytes the upload's parts hold and when the last one arrived; None when the upload ended."""
        pages = self._client.get_paginator("list_parts").paginate(Bucket=self.bucket, Key=name, UploadId=upload_id)
        try:
            parts = [part for page in pages for part in page.get("Parts", ())]
        except ClientError as exc:
            if isinstance(self._translate(exc, name), NotFound):  # NoSuchUpload
                return None
            raise
        return sum(p["Size"] for p in parts), max((p["LastModified"] for p in parts), default=None)

    def remove_leftover(self, leftover: Leftover) -> None:
        """Abort the upload: its parts go, and no object is touched (an abort cannot delete one)."""
        if leftover.kind != UPLOAD:
            raise InvalidKey(f"not a leftover of this backend: {leftover.kind} {leftover.name!r}")
        try:
            self._client.abort_multipart_upload(Bucket=self.bucket, Key=self._name(leftover.name),
                                                UploadId=leftover.ref)
        except (ClientError, BotoCoreError) as exc:
            error = self._translate(exc, leftover.name)
            if not isinstance(error, NotFound):  # NoSuchUpload: gone already
                raise error from exc

    # -- Object Lock retention -------------------------------------------------------------------

    def lock_policy(self) -> LockPolicy | None:
        try:
            reply = self._client.get_object_lock_configuration(Bucket=self.bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ObjectLockConfigurationNotFoundError":
                return None
            raise self._translate(exc, None) from exc
        except BotoCoreError as exc:
            raise self._translate(exc, None) from exc
        config = reply.get("ObjectLockConfiguration", {})
        rule = config.get("Rule", {}).get("DefaultRetention")
        if config.get("ObjectLockEnabled") != "Enabled" or not rule:
            return None
        days = int(rule.get("Days") or 0) + 365 * int(rule.get("Years") or 0)  # S3 counts a year as 365 days
        return LockPolicy(rule["Mode"], timedelta(days=days)) if days > 0 else None

    def extend_retention(self, key, mode, until) -> None:
        if until.tzinfo is None:
            raise ValueError("until must be timezone-aware")
        if mode not in ("GOVERNANCE", "COMPLIANCE"):
            raise BackendError(f"retention mode must be GOVERNANCE or COMPLIANCE, not {mode!r}")
        try:  # never with BypassGovernanceRetention: S3 then refuses any date earlier than the current one
            self._client.put_object_retention(Bucket=self.bucket, Key=self._name(key),
                                              Retention={"Mode": mode, "RetainUntilDate": until})
        except (ClientError, BotoCoreError) as exc:
            error = self._translate(exc, key)
            if isinstance(error, ObjectLocked):  # "not authorized to perform s3:PutObjectRetention"
                error = PermissionDenied(str(error))
            raise error from exc

    # -- deletes ------------------------------------------------------------------------------

    def delete(self, key) -> None:
        name = self._name(key)
        try:
            if self.capabilities.object_lock:
                self._delete_all_versions(key, name)
            else:
                self._client.delete_object(Bucket=self.bucket, Key=name)
        except (ClientError, BotoCoreError) as exc:
            raise self._translate(exc, key) from exc

    def _delete_all_versions(self, key: str, name: str) -> None:
        versions = []
        pages = self._client.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=name)
        for page in pages:  # S3 lists the versions of a key newest first
            versions += [v for v in page.get("Versions", []) + page.get("DeleteMarkers", []) if v["Key"] == name]
        # oldest first: if a locked version stops us, the newest one is still the current object
        for version in sorted(reversed(versions), key=lambda v: v["LastModified"]):
            try:
                self._client.delete_object(Bucket=self.bucket, Key=name, VersionId=version["VersionId"])
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "AccessDenied" and self._is_locked(name, version):
                    raise ObjectLocked(f"s3://{self.bucket}/{self._root}{key}: version {version['VersionId']} "
                                       "is under retention") from exc
                raise

    def _is_locked(self, name: str, version: dict) -> bool:
        if "Size" not in version:
            return False  # a delete marker carries no retention
        try:
            reply = self._client.head_object(Bucket=self.bucket, Key=name, VersionId=version["VersionId"])
        except (ClientError, BotoCoreError):
            return False
        until = reply.get("ObjectLockRetainUntilDate")
        held = reply.get("ObjectLockLegalHoldStatus") == "ON"
        return held or (until is not None and until > datetime.now(UTC))

    def close(self) -> None:
        self._client.close()
