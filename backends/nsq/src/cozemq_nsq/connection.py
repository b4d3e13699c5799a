"""MQ_NAME_SERVER parsing, nsqlookupd queries and TLS options.

The rule for MQ_NAME_SERVER (comma-separated, entries may be mixed):

- ``http://host:port`` or ``https://host:port``: an nsqlookupd HTTP address;
- ``host:port`` or ``tcp://host:port``: an nsqd TCP address (what Coze Studio sets), except
  port 4161, nsqlookupd's well-known HTTP port, which is taken as nsqlookupd.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from cozemq.errors import BrokerUnavailable, ConfigurationError
from cozemq.tls import client_context

from .settings import NsqSettings

LOOKUPD_DEFAULT_HTTP_PORT = 4161


@dataclass(frozen=True)
class Addresses:
    nsqd: tuple[tuple[str, int], ...] = ()
    """nsqd TCP addresses, (host, port)."""
    lookupd: tuple[str, ...] = ()
    """nsqlookupd HTTP base URLs, http(s)://host:port."""
    shown: tuple[str, ...] = field(default=())


def parse_name_server(raw: str | None, source: str = "MQ_NAME_SERVER") -> Addresses:
    if not raw or not raw.strip():
        raise ConfigurationError(
            f"set {source} to nsqd's TCP address (e.g. 127.0.0.1:4150) or nsqlookupd's HTTP "
            "address (e.g. http://127.0.0.1:4161); comma-separate several"
        )
    nsqd: list[tuple[str, int]] = []
    lookupd: list[str] = []
    for item in raw.split(","):
        entry = item.strip()
        if not entry:
            raise ConfigurationError(f"{source}: empty entry in {raw!r}")
        url = entry if "://" in entry else "tcp://" + entry
        parts = urlsplit(url)
        if parts.scheme not in ("tcp", "http", "https"):
            raise ConfigurationError(
                f"{source}: {entry!r} has scheme {parts.scheme!r}; use host:port or tcp:// for "
                "nsqd, http:// or https:// for nsqlookupd"
            )
        if parts.username is not None or parts.password is not None:
            raise ConfigurationError(
                f"{source}: {parts.scheme}://***@... credentials do not belong in the address; "
                "use NSQ_AUTH_SECRET"
            )
        try:
            port = parts.port
        except ValueError:
            raise ConfigurationError(f"{source}: {entry!r} has an invalid port") from None
        host = parts.hostname
        if not host:
            raise ConfigurationError(f"{source}: {entry!r} has no host, e.g. 127.0.0.1:4150")
        if port is None:
            raise ConfigurationError(
                f"{source}: {entry!r} has no port (nsqd TCP is usually 4150, nsqlookupd HTTP "
                "4161)"
            )
        if parts.path not in ("", "/") or parts.query:
            raise ConfigurationError(f"{source}: {entry!r} must be [scheme://]host:port only")
        if parts.scheme in ("http", "https") or port == LOOKUPD_DEFAULT_HTTP_PORT:
            scheme = "http" if parts.scheme == "tcp" else parts.scheme
            lookupd.append(f"{scheme}://{_host(host)}:{port}")
        else:
            nsqd.append((host, port))
    shown = tuple([f"{_host(h)}:{p}" for h, p in nsqd] + lookupd)
    return Addresses(tuple(nsqd), tuple(lookupd), shown)


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def lookupd_nodes(lookupd: tuple[str, ...], timeout: float) -> list[tuple[str, int]]:
    """The TCP addresses of every nsqd registered with any of these nsqlookupd."""
    client = AsyncHTTPClient()
    found: list[tuple[str, int]] = []
    errors: list[str] = []
    for base in lookupd:
        try:
            response = await client.fetch(
                base + "/nodes", headers={"Accept": "application/vnd.nsq; version=1.0"},
                connect_timeout=timeout, request_timeout=timeout,
            )
            data: Any = json.loads(response.body)
        except (OSError, HTTPClientError, ValueError) as exc:
            errors.append(f"{base}: {exc}")
            continue
        for producer in data.get("producers", ()):
            address = (str(producer.get("broadcast_address") or producer.get("hostname")),
                       int(producer["tcp_port"]))
            if address not in found:
                found.append(address)
    if not found:
        reason = "; ".join(errors) or "it knows no nsqd (is nsqd started with " \
            "--lookupd-tcp-address?)"
        raise BrokerUnavailable(f"nsqlookupd {', '.join(lookupd)} gave no nsqd: {reason}")
    return found


def tls_options(s: NsqSettings) -> dict[str, Any] | None:
    """pynsq's tls_options (tornado ssl options), or None when TLS is off."""
    if not (s.tls or s.tls_ca_file or s.tls_cert_file):
        return None
    # pynsq takes file names, not a context: load them once here so a bad file fails now.
    client_context("NSQ_TLS", s.tls_ca_file, s.tls_cert_file, s.tls_key_file)
    options: dict[str, Any] = {
        "cert_reqs": ssl.CERT_NONE if s.tls_insecure else ssl.CERT_REQUIRED,
        "ssl_version": ssl.PROTOCOL_TLS_CLIENT,
    }
    if s.tls_ca_file:
        options["ca_certs"] = s.tls_ca_file
    if s.tls_cert_file and s.tls_key_file:
        options["certfile"] = s.tls_cert_file
        options["keyfile"] = s.tls_key_file
    return options
