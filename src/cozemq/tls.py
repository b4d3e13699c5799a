"""Client TLS from settings, the same way for every backend that builds an ssl.SSLContext."""

from __future__ import annotations

import ssl

from .errors import ConfigurationError


def client_context(prefix: str, ca_file: str | None, cert_file: str | None,
                   key_file: str | None) -> ssl.SSLContext:
    """A verifying client context; ``prefix`` names the settings in errors (e.g. "NATS_TLS")."""
    if bool(cert_file) != bool(key_file):
        raise ConfigurationError(f"{prefix}_CERT_FILE and {prefix}_KEY_FILE must be set together")
    try:
        context = ssl.create_default_context(cafile=ca_file)
        if cert_file and key_file:
            context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"{prefix}_* files could not be loaded: {exc}") from None
    return context
