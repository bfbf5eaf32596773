"""Wire formats of the Drive fake: error type, timestamps, `fields` selection, multipart bodies and the
`q` subset. Anything outside the subset is a 400, as a real server would refuse unknown syntax."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Callable

_LITERAL = r"'((?:[^'\\]|\\.)*)'"
_CLAUSES = [(re.compile(rf"^{_LITERAL} in parents$"), "parent"), (re.compile(rf"^name = {_LITERAL}$"), "name"),
            (re.compile(rf"^name contains {_LITERAL}$"), "contains"),
            (re.compile(rf"^mimeType (=|!=) {_LITERAL}$"), "mime"),
            (re.compile(r"^trashed = (true|false)$"), "trashed")]


class DriveError(Exception):
    def __init__(self, status: int, reason: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.reason, self.message, self.headers = status, reason, message, headers or {}


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def select_fields(obj: dict, spec: str | None, default: tuple[str, ...]) -> dict:
    """A loose `fields` filter: top-level names, one level of `files(a,b)`, or `*`."""
    if spec is None:
        return {k: obj[k] for k in default if k in obj}
    if spec.strip() == "*":
        return dict(obj)
    out, depth, token, sub = {}, 0, "", {}
    for ch in spec + ",":
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            name, _, inner = token.strip().partition("(")
            sub[name] = inner[:-1] if inner else None
            token = ""
        else:
            token += ch
    for name, inner in sub.items():
        if name in obj:
            value = obj[name]
            if inner is not None and isinstance(value, list):
                value = [select_fields(v, inner, ()) for v in value]
            out[name] = value
    return out


def parse_multipart(body: bytes, content_type: str) -> tuple[dict, bytes]:
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not match:
        raise DriveError(400, "badContent", "multipart body without a boundary")
    parts = body.split(b"--" + match.group(1).encode())[1:-1]  # drop the preamble and the closing "--"
    if len(parts) != 2:
        raise DriveError(400, "badContent", f"expected 2 parts, got {len(parts)}")
    # One line ending for the whole body, as the first delimiter line shows: a payload ending in
    # "\r" in an "\n" body must keep its "\r" (guessing per part lost it: about one upload in 256).
    eol = b"\r\n" if parts[0].startswith(b"\r\n") else b"\n"
    payloads = []
    for part in parts:
        part = part[len(eol):] if part.startswith(eol) else part
        crlf, lf = part.find(b"\r\n\r\n"), part.find(b"\n\n")
        cut, skip = (crlf, 4) if crlf != -1 and (lf == -1 or crlf < lf) else (lf, 2)
        if cut == -1:
            raise DriveError(400, "badContent", "multipart part without headers")
        payload = part[cut + skip:]
        payload = payload[:-len(eol)] if payload.endswith(eol) else payload
        payloads.append(payload)
    return json.loads(payloads[0] or b"{}"), payloads[1]


def query_filter(q: str, root_id: str) -> Callable[[dict], bool]:
    """A predicate for clauses joined by " and " ('<id>' in parents, name =/contains, mimeType =/!=, trashed)."""
    tests = []
    for clause in filter(None, (c.strip() for c in q.split(" and "))):
        for regex, kind in _CLAUSES:
            m = regex.match(clause)
            if m:
                tests.append((kind, m.groups()))
                break
        else:
            raise DriveError(400, "invalid", f"Invalid Value: unsupported query clause {clause!r}")

    def keep(f: dict) -> bool:
        for kind, args in tests:
            if kind == "parent" and (root_id if _unquote(args[0]) == "root" else _unquote(args[0])) not in f["parents"]:
                return False
            if (kind == "name" and f["name"] != _unquote(args[0])) or \
                    (kind == "contains" and _unquote(args[0]) not in f["name"]) or \
                    (kind == "mime" and (f["mimeType"] == _unquote(args[1])) != (args[0] == "=")) or \
                    (kind == "trashed" and args[0] == "true"):
                return False
        return f["id"] != root_id

    return keep
