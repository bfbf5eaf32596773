"""Google Drive backend (gdrive://); `login` is the `agent login gdrive` flow."""

from backends.gdrive.auth import default_token_path, login
from backends.gdrive.backend import GDriveBackend

__all__ = ["GDriveBackend", "default_token_path", "login"]
