"""Secrets out of `--debug` output: the SDKs' debug logging prints request headers (botocore: the
Authorization header with the access key id and signature, the session token, the canonical request
and the signature itself), and a debug log ends up in bug reports and tickets.

One logging filter on the root handler rewrites every record, whichever library logged it: the
message is formatted with its arguments first, then credential-shaped values are cut out, and so is
the value of any environment variable that holds a secret (agent.config.secrets).
"""

from __future__ import annotations

import logging
import os
import re
from typing import Iterable

REDACTED = "<redacted>"
_MIN_SECRET = 6  # shorter environment values would redact ordinary words

# (what precedes the secret, kept) + the secret itself, replaced
_PATTERNS = [
    # headers in a dict repr or on a line: 'Authorization': b'AWS4-HMAC-SHA256 ...', Authorization: Bearer ...
    re.compile(r"""((?:proxy-)?authorization['"]?\s*[:=]\s*b?['"]?)[^'"\r\n]+""", re.IGNORECASE),
    # SigV4 pieces, in headers, canonical requests and presigned query strings
    re.compile(r"""((?:x-amz-security-token|x-amz-credential|x-amz-signature|x-goog-signature|x-goog-credential)"""
               r"""['"]?\s*[:=]\s*b?['"]?)[^'"&\s,]+""", re.IGNORECASE),
    re.compile(r"""((?:credential|signature)=)[^'"&\s,]+""", re.IGNORECASE),
    re.compile(r"(Signature:\s*)[0-9a-fA-F]{32,}"),  # botocore.auth logs the signature on its own line
    # credentials and tokens as keys of a dict, JSON or a query: aws_secret_access_key='...', "access_token": "..."
    re.compile(r"""((?:aws_access_key_id|aws_secret_access_key|aws_session_token|access_token|refresh_token|"""
               r"""id_token|client_secret|private_key|password)['"]?\s*[:=]\s*b?['"]?)[^'"&\s,}]+""", re.IGNORECASE),
    re.compile(r"(bearer\s+)[A-Za-z0-9\-._~+/]+=*", re.IGNORECASE),
    # a password in a URL's user part, as an SDK repeats an endpoint: http://user:secret@host
    re.compile(r"""([a-z][a-z0-9+.-]*://[^/\s:@'"]*:)[^@/\s'"]+(?=@)""", re.IGNORECASE),
]


def redact(text: str, values: Iterable[str] = ()) -> str:
    """`text` without credential-shaped values and without any of `values`."""
    for value in values:
        text = text.replace(value, REDACTED)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
    return text


def secret_values() -> list[str]:
    """Values of the environment's secret variables, longest first (one inside another is still cut)."""
    from agent.config.secrets import is_secret

    found = {v for k, v in os.environ.items() if is_secret(k) and len(v) >= _MIN_SECRET}
    return sorted(found, key=len, reverse=True)


class RedactSecrets(logging.Filter):
    """Rewrites each record in place: formatted message, exception and stack text, all redacted."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        super().__init__()
        self._values = list(values)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a library's bad format string: keep its template, drop the args
            message, record.args = str(record.msg), None
        record.msg, record.args = redact(message, self._values), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self._values)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self._values)
        return True


def install() -> RedactSecrets:
    """Filter every handler of the root logger (where every library's records end up)."""
    redactor = RedactSecrets(secret_values())
    for handler in logging.getLogger().handlers:
        handler.addFilter(redactor)
    return redactor
