"""Where the RocketMQ 5.x client connects: the proxy's gRPC endpoint, and the name server."""

from __future__ import annotations

from dataclasses import dataclass

from cozemq.errors import ConfigurationError

from .settings import RocketMQSettings

NAMESRV_PORT = 9876
"""Coze's compose sets MQ_NAME_SERVER to the name server on this port (its 4.x client)."""
PROXY_GRPC_PORT = 8081
"""The proxy's gRPC port in RocketMQ's own images and docs."""


@dataclass(frozen=True)
class Endpoints:
    proxy: str
    """host:port[;host:port...] for the gRPC client."""
    namesrv: str | None
    """host:port[;...] of the name server, when known."""
    mapped_from: str | None = None
    """The MQ_NAME_SERVER value a name-server address was mapped from, for error messages."""


def split_addresses(raw: str, source: str) -> list[str]:
    addresses = []
    for part in raw.replace(",", ";").split(";"):
        part = part.strip()
        if not part:
            continue
        for prefix in ("http://", "https://", "grpc://", "rmq://"):
            if part.startswith(prefix):
                part = part[len(prefix):]
        host, sep, port = part.rstrip("/").rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigurationError(
                f"{source}={raw!r}: each address must be host:port, e.g. 127.0.0.1:8081"
            )
        addresses.append(f"{host}:{int(port)}")
    if not addresses:
        raise ConfigurationError(f"{source} is empty; set it to host:port")
    return addresses


def resolve_endpoints(own: RocketMQSettings, name_server: str | None) -> Endpoints:
    """RMQ_PROXY_ENDPOINT wins; else MQ_NAME_SERVER is the proxy, unless it names port 9876
    (Coze's name-server form), which maps to the proxy's gRPC port 8081 on the same host."""
    namesrv = (";".join(split_addresses(own.namesrv_addr, "RMQ_NAMESRV_ADDR"))
               if own.namesrv_addr else None)
    if own.proxy_endpoint:
        proxy = split_addresses(own.proxy_endpoint, "RMQ_PROXY_ENDPOINT")
        if namesrv is None and name_server:
            given = split_addresses(name_server, "MQ_NAME_SERVER")
            if given != proxy:
                namesrv = ";".join(given)
        return Endpoints(";".join(proxy), namesrv)
    if not name_server:
        raise ConfigurationError(
            "set MQ_NAME_SERVER (or RMQ_PROXY_ENDPOINT) to the RocketMQ 5 proxy's gRPC endpoint, "
            "e.g. 127.0.0.1:8081"
        )
    given = split_addresses(name_server, "MQ_NAME_SERVER")
    if all(a.rpartition(":")[2] == str(NAMESRV_PORT) for a in given):
        proxy = [f"{a.rpartition(':')[0]}:{PROXY_GRPC_PORT}" for a in given]
        return Endpoints(";".join(proxy), namesrv or ";".join(given), mapped_from=name_server)
    return Endpoints(";".join(given), namesrv)
