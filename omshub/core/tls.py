"""TLS for ``omshub web``: the server's context from the settings, and the one its clients use.

Both live here, below every layer, because the server (``omshub.web``), the stack's health check
(``omshub.stack``) and the CLI all need them. A certificate or key that cannot be used is a
``ConfigError`` naming the setting, raised before the server binds anything.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from omshub.core.errors import ConfigError
from omshub.core.settings import Settings


def _no_passphrase() -> bytes:
    # without a callback OpenSSL would ask for an encrypted key's passphrase on the terminal
    # and block a process started by the stack: refuse such a key instead
    raise ConfigError(
        "OMSHUB_WEB_TLS_KEY is encrypted; give omshub web an unencrypted key "
        "(openssl pkey -in key.pem -out plain.pem), readable by its user only"
    )


def _readable(path: Path, variable: str) -> None:
    if not path.is_file():
        raise ConfigError(f"{variable} {path} does not exist (or is not a file)")
    try:
        path.open("rb").close()
    except OSError as exc:
        raise ConfigError(f"{variable} {path} cannot be read: {exc.strerror}") from None


def server_context(settings: Settings) -> ssl.SSLContext | None:
    """The context ``omshub web`` serves HTTPS with, or None for plain HTTP (no certificate set).

    Python's defaults for a server (TLS 1.2 or later, its cipher list); no client certificates.
    """
    if settings.web_tls_cert is None or settings.web_tls_key is None:
        return None
    cert, key = settings.web_tls_cert.expanduser(), settings.web_tls_key.expanduser()
    _readable(cert, "OMSHUB_WEB_TLS_CERT")
    _readable(key, "OMSHUB_WEB_TLS_KEY")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key, password=_no_passphrase)
    except ssl.SSLError as exc:
        raise ConfigError(
            f"cannot serve TLS with OMSHUB_WEB_TLS_CERT {cert} and OMSHUB_WEB_TLS_KEY {key}: "
            f"{exc.reason or exc} (both must be PEM, and the key the certificate's)"
        ) from None
    return context


def client_context(settings: Settings) -> ssl.SSLContext | None:
    """The context the CLI and the health check call ``omshub web`` with (None for HTTP).

    It trusts the system's CAs and, when this process can read it, the server's own certificate
    (partial chains allowed, so a self-signed or internal certificate works without a CA bundle).
    The host name is checked as usual: the certificate must name the host in ``settings.web_url``.
    """
    if settings.web_tls_cert is None:
        return None
    context = ssl.create_default_context()
    cert = settings.web_tls_cert.expanduser()
    try:
        context.load_verify_locations(cafile=cert)
    except (OSError, ssl.SSLError):
        pass  # not on this machine or not ours to read: the system's CAs must vouch for it
    else:
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context
