"""A real SMTP server for tests: aiosmtpd on a free loopback port, optionally with STARTTLS,
implicit TLS or a login, recording every message it accepts.

Certificates are made here with `cryptography` (a self-signed one for 127.0.0.1), so TLS is
tested for real without files in the repository.
"""

from __future__ import annotations

import datetime
import email
import email.policy
import ipaddress
import logging
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support import free_port

HOST = "127.0.0.1"
# aiosmtpd logs every command at info; the tests' own assertions say what matters.
logging.getLogger("mail.log").setLevel(logging.WARNING)


@dataclass
class Mailbox:
    """What the server accepted, and how it answers recipients: by local part, a code and text."""

    messages: list[EmailMessage] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)  # e.g. {"nobody": "550 no such user"}

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802 (aiosmtpd's name)
        answer = self.refuse.get(address.split("@", 1)[0])
        if answer:
            return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 Message accepted"


@dataclass
class SmtpServer:
    port: int
    mailbox: Mailbox
    ca_file: Path | None = None


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1 (the certificate is its own CA)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "steward-test-smtp")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@contextmanager
def smtp_server(directory: Path | None = None, *, security: str = "none",
                login: tuple[str, str] | None = None) -> Iterator[SmtpServer]:
    """An SMTP server: security "none", "starttls" (required) or "tls" (implicit); with `login`,
    AUTH is required and only that username and password are accepted."""
    mailbox = Mailbox()
    port = free_port()
    options: dict = {}
    ca_file = None
    if security != "none":
        assert directory is not None, "TLS needs a directory for the certificate"
        ca_file, key_file = self_signed(directory)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(ca_file, key_file)
        options |= {"ssl_context": context} if security == "tls" else {"tls_context": context, "require_starttls": True}
    if login is not None:
        def authenticate(server, session, envelope, mechanism, auth_data):
            ok = isinstance(auth_data, LoginPassword) and (auth_data.login.decode(), auth_data.password.decode()) == login
            return AuthResult(success=ok, handled=False)

        # aiosmtpd's "TLS first" check knows STARTTLS only; with implicit TLS the session is TLS anyway.
        options |= {"authenticator": authenticate, "auth_required": True, "auth_require_tls": security == "starttls"}
    controller = Controller(mailbox, hostname=HOST, port=port, server_hostname=HOST, **options)
    controller.start()
    try:
        yield SmtpServer(port, mailbox, ca_file)
    finally:
        controller.stop()
