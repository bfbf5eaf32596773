"""A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps every accepted message in memory.

Optionally with STARTTLS or implicit TLS (a self-signed certificate made on the spot; clients trust it
through `ca_file`) and AUTH PLAIN/LOGIN against a dict of users. Used by the notification tests and
by end-to-end tests of `agent run` (e.g. bad SMTP credentials).
"""

from __future__ import annotations

import email
import email.policy
import socket
import ssl
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Iterator

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.servers.tls import self_signed


@dataclass
class SmtpServer:
    host: str
    port: int
    ca_file: str | None                     # the certificate to trust (None without TLS)
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)  # (MAIL FROM, RCPT TOs)
    logins: list[str] = field(default_factory=list)         # users that authenticated
    failed_logins: list[str] = field(default_factory=list)
    tls_sessions: int = 0                   # messages that arrived over TLS
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_DATA(self, smtp, session, envelope) -> str:
        msg = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        with self.server._lock:
            self.server.messages.append(msg)
            self.server.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            # session.ssl is set by STARTTLS; implicit TLS shows on the transport
            tls = session.ssl is not None or smtp.transport.get_extra_info("ssl_object") is not None
            self.server.tls_sessions += tls
        return "250 Message accepted"


def _authenticator(server: SmtpServer, users: dict[str, str]):
    def check(smtp, session, envelope, mechanism, auth_data) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login, password = auth_data.login.decode(), auth_data.password.decode()
        ok = users.get(login) == password
        with server._lock:
            (server.logins if ok else server.failed_logins).append(login)
        return AuthResult(success=ok, handled=False)
    return check


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost: (cert.pem, key.pem)."""
    return self_signed(directory, "localhost")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def smtp_server(tls_dir: Path | None = None, *, implicit_tls: bool = False,
                users: dict[str, str] | None = None) -> Iterator[SmtpServer]:
    """Run a server for the duration of the block.

    tls_dir: make a certificate there and offer STARTTLS (required before MAIL), or with
    implicit_tls speak TLS from the first byte (port-465 style). users: require AUTH with these
    passwords (only over TLS, as real servers do)."""
    tls_ctx = ca_file = None
    if tls_dir is not None:
        cert, key = make_certificate(tls_dir)
        tls_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls_ctx.load_cert_chain(cert, key)
        ca_file = str(cert)
    elif implicit_tls or users:
        raise ValueError("implicit_tls and users need tls_dir")
    kwargs: dict = {}
    if tls_ctx is not None and implicit_tls:
        kwargs["ssl_context"] = tls_ctx
    elif tls_ctx is not None:
        kwargs.update(tls_context=tls_ctx, require_starttls=True)
    for attempt in range(5):  # the port is free when picked; another process may take it first
        server = SmtpServer("127.0.0.1", _free_port(), ca_file)
        if users is not None:
            kwargs.update(authenticator=_authenticator(server, users), auth_required=True, auth_require_tls=True)
        controller = Controller(_Handler(server), hostname=server.host, port=server.port, **kwargs)
        try:
            controller.start()
            break
        except Exception:
            try:
                controller.stop()
            except Exception:
                pass
            if attempt == 4:
                raise
    try:
        yield server
    finally:
        controller.stop()
