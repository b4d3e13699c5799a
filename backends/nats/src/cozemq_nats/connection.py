"""Turning settings into nats-py connect options: servers, auth and TLS."""

from __future__ import annotations

import base64
import os
import ssl
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import nkeys

from cozemq.errors import ConfigurationError
from cozemq.tls import client_context

from .settings import NatsSettings

SCHEMES = ("nats", "tls", "ws", "wss")


def parse_servers(raw: str, source: str) -> list[str]:
    """Split a comma-separated server list and check each URL; bare host:port gets nats://."""
    servers = []
    for item in raw.split(","):
        url = item.strip()
        if not url:
            raise ConfigurationError(f"{source}: empty entry in the server list {raw!r}")
        if "://" not in url:
            url = "nats://" + url
        parts = urlsplit(url)
        shown = redact(url)
        if parts.scheme not in SCHEMES:
            raise ConfigurationError(
                f"{source}: {shown!r} has scheme {parts.scheme!r}; allowed: "
                + ", ".join(s + "://" for s in SCHEMES)
            )
        try:
            port = parts.port
        except ValueError:
            raise ConfigurationError(f"{source}: {shown!r} has an invalid port") from None
        if not parts.hostname:
            raise ConfigurationError(f"{source}: {shown!r} has no host, e.g. nats://127.0.0.1:4222")
        if parts.path not in ("", "/") or parts.query:
            raise ConfigurationError(f"{source}: {shown!r} must be scheme://host:port only")
        del port
        servers.append(url)
    return servers


def redact(url: str) -> str:
    """The URL without any user:password part."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return f"{parts.scheme}://***@{host}"


def _seed_bytes(value: str) -> bytes:
    """NATS_NKEY_SEED holds a seed or the path of a file holding one."""
    if value.startswith("S") and len(value) > 50 and not os.path.exists(value):
        return value.encode()
    try:
        with open(value, "rb") as f:
            for line in f.read().splitlines():
                line = line.strip()
                if line.startswith(b"S"):
                    return line
    except OSError as exc:
        raise ConfigurationError(
            f"NATS_NKEY_SEED: not a seed and not a readable file ({exc.strerror})"
        ) from None
    raise ConfigurationError("NATS_NKEY_SEED: the file holds no NKey seed (a line starting 'S')")


def _signer(seed: bytes) -> Callable[[str], bytes]:
    try:
        nkeys.from_seed(bytearray(seed)).wipe()
    except Exception:
        raise ConfigurationError("NATS_NKEY_SEED: not a valid NKey seed") from None

    def sign(nonce: str) -> bytes:
        keypair = nkeys.from_seed(bytearray(seed))
        try:
            return base64.b64encode(keypair.sign(nonce.encode()))
        finally:
            keypair.wipe()

    return sign


def auth_options(s: NatsSettings) -> dict[str, Any]:
    """Coze's order: JWT (signed with the NKey seed), then user/password, then token.

    A creds file, or an NKey seed alone, work too.
    """
    if s.jwt_token is not None:
        if s.nkey_seed is None:
            raise ConfigurationError(
                "NATS_JWT_TOKEN is set but NATS_NKEY_SEED is not: the server's nonce must be "
                "signed with the user's NKey seed"
            )
        jwt = s.jwt_token.get_secret_value().encode()
        return {"user_jwt_cb": lambda: jwt,
                "signature_cb": _signer(_seed_bytes(s.nkey_seed.get_secret_value()))}
    if s.creds_file:
        if not os.path.isfile(s.creds_file):
            raise ConfigurationError(f"NATS_CREDS_FILE: {s.creds_file!r} is not a file")
        return {"user_credentials": s.creds_file}
    if s.username:
        password = s.password.get_secret_value() if s.password else ""
        return {"user": s.username, "password": password}
    if s.token is not None:
        return {"token": s.token.get_secret_value()}
    if s.nkey_seed is not None:
        seed = _seed_bytes(s.nkey_seed.get_secret_value())
        _signer(seed)
        return {"nkeys_seed_str": seed.decode()}
    return {}


def tls_context(s: NatsSettings, servers: list[str]) -> ssl.SSLContext | None:
    wants_tls = any(u.startswith(("tls://", "wss://")) for u in servers)
    if not (wants_tls or s.tls_ca_file or s.tls_cert_file):
        return None
    return client_context("NATS_TLS", s.tls_ca_file, s.tls_cert_file, s.tls_key_file)
