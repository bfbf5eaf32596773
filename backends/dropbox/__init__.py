"""Dropbox backend (dropbox:///PATH), through the official `dropbox` SDK.

Modules: `backend` (the Backend), `client` (SDK client construction), `errors` (the one place
SDK exceptions become backend errors) and `auth` (token file and `agent login dropbox`).
Importing this package does not import the SDK; `backends.dropbox.backend` does.
"""
