"""OneDrive backend (msgraph-sdk): see backend.py for the design, docs/backends-onedrive.md for use.

`OneDriveBackend` is imported lazily, so `backends.onedrive.auth` (the login flow, which needs
only msal) does not pay for importing the Graph SDK.
"""

from __future__ import annotations

from typing import Any

__all__ = ["OneDriveBackend"]


def __getattr__(name: str) -> Any:
    if name == "OneDriveBackend":
        from backends.onedrive.backend import OneDriveBackend

        return OneDriveBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
