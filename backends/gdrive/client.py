"""Building the Drive v3 service from the discovery document that ships with the SDK.

`build_from_document` with a rewritten rootUrl is the one way to reach a test server that also
moves media uploads (`build(client_options=...)` keeps https for /upload; see the recipes).
httplib2 connections are not thread-safe, so each thread gets its own service object and
connection; the parsed discovery document and the credentials are shared.
"""

from __future__ import annotations

import copy
import json
import os
import threading

import googleapiclient
import httplib2
from google_auth_httplib2 import AuthorizedHttp
from googleapiclient import discovery
from googleapiclient.http import build_http

FOLDER_MIME = "application/vnd.google-apps.folder"
FILE_FIELDS = "id,name,mimeType,size,md5Checksum,createdTime,modifiedTime"
LIST_FIELDS = f"nextPageToken,files({FILE_FIELDS})"


def discovery_document(endpoint: str | None) -> dict:
    """The bundled Drive v3 document, pointed at `endpoint` (a test server) when given."""
    path = os.path.join(os.path.dirname(googleapiclient.__file__), "discovery_cache", "documents", "drive.v3.json")
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    if endpoint:
        root = endpoint if endpoint.endswith("/") else endpoint + "/"
        doc["rootUrl"] = root
        doc["baseUrl"] = root + doc["servicePath"]
        doc["mtlsRootUrl"] = root
    return doc


def quote(text: str) -> str:
    """A string literal for a Drive `q` expression."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


class DriveClient:
    """Per-thread `files()` resources over one set of credentials."""

    def __init__(self, credentials, *, endpoint: str | None = None, timeout: float = 120.0) -> None:
        self._doc = discovery_document(endpoint)
        self._credentials = credentials
        self._timeout = timeout
        self._local = threading.local()

    def files(self):
        """This thread's `files` resource (kept: the SDK builds ~16 methods per resource, ~15 ms)."""
        files = getattr(self._local, "files", None)
        if files is None:
            http = build_http()  # excludes 308 from redirects: resumable uploads use it
            http.timeout = self._timeout
            authed = AuthorizedHttp(self._credentials, http=http)
            files = discovery.build_from_document(copy.deepcopy(self._doc), http=authed).files()
            self._local.files, self._local.http = files, http
        return files

    def close(self) -> None:
        """Close this thread's connections (other threads' close when they end)."""
        http: httplib2.Http | None = getattr(self._local, "http", None)
        if http is not None:
            http.close()
            self._local.files = self._local.http = None
